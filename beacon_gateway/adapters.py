"""Server-side adapters for third-party BLE nodes: ESPresense, Theengs Gateway and OpenMQTTGateway.

Pure functions: a topic, a payload and the receive time in; one ``NodeReading`` out (the same
reading columns our own gateways send: ``t``, canonical beacon id, anchor, ``rssi``, ``tx_power``),
or an ``AdapterError`` whose ``reason`` is a counter key. The anchor comes from the topic: the
ESPresense room (``<prefix>/devices/<id>/<room>``) or the Theengs / OpenMQTTGateway gateway name
(``<prefix>/<gateway>/BTtoMQTT[/<mac-or-uuid>]``). MAC addresses in those payloads are never kept,
and error messages never quote payload values, so no MAC leaks into logs either.

Formats, as those projects publish them::

    espresense/devices/iBeacon:e5ca1ade-f007-ba11-0000-000000000000-100-1/gw-01
    {"id":"iBeacon:e5ca1ade-f007-ba11-0000-000000000000-100-1","idType":1,"rssi@1m":-59,"rssi":-72,
     "raw":3.21,"distance":2.87,"speed":0.02,"mac":"c1a2b3c4d5e6","interval":1015}

    home/gw-01/BTtoMQTT/6087574C9BC2   (MAC without colons, or the UUID with presenceUseBeaconUuid)
    {"id":"60:87:57:4C:9B:C2","mac_type":1,"rssi":-78,"distance":7.85,"brand":"GENERIC","model":"iBeacon",
     "model_id":"IBEACON","mfid":"4c00","uuid":"1de4b189115e45f6b44e509352269977","major":0,"minor":0,
     "txpower":-66}

Theengs / OMG messages that carry raw ``manufacturerdata`` or ``servicedata`` hex instead of decoded
fields are run through our own advertisement parser, so AltBeacon and Eddystone-UID work too.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from beacon_gateway.advertisements import BeaconAdvert, parse_advertisement
from beacon_gateway.errors import AdapterError
from beacon_gateway.wire import RSSI_MAX_DBM, RSSI_MIN_DBM, ibeacon_id

DEFAULT_ESPRESENSE_PREFIX: Final = "espresense"  # ESPresense's default root topic
DEFAULT_THEENGS_PREFIX: Final = "home"  # Theengs Gateway and OpenMQTTGateway default base topic
MAX_NODE_PAYLOAD_BYTES: Final = 16_384  # one advert per message; anything larger is not a node message
TX_POWER_MIN_DBM: Final = -128  # a signed byte, as beacons send it
TX_POWER_MAX_DBM: Final = 20  # above: a firmware that lost the sign (ESPresense issue 1286); dropped

_ESPRESENSE_IBEACON: Final = re.compile(
    r"^ibeacon:([0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12})-(\d{1,5})-(\d{1,5})$",
    re.IGNORECASE,
)
_HEX: Final = re.compile(r"^(?:[0-9a-fA-F]{2})*$")


@dataclass(frozen=True, slots=True)
class NodeReading:
    """One reading from a third-party node, in the engine's reading columns."""

    t: float
    beacon_id: str
    anchor: str
    rssi: float
    tx_power: float | None


def espresense_subscriptions(prefix: str = DEFAULT_ESPRESENSE_PREFIX) -> list[str]:
    """MQTT topic filters that receive every ESPresense device report."""
    return [f"{prefix}/devices/+/+"]


def theengs_subscriptions(prefix: str = DEFAULT_THEENGS_PREFIX) -> list[str]:
    """MQTT topic filters for Theengs Gateway / OpenMQTTGateway BLE reports (with and without id suffix)."""
    return [f"{prefix}/+/BTtoMQTT/+", f"{prefix}/+/BTtoMQTT"]


def is_espresense_topic(topic: str, prefix: str = DEFAULT_ESPRESENSE_PREFIX) -> bool:
    return _espresense_room(topic, prefix) is not None


def is_theengs_topic(topic: str, prefix: str = DEFAULT_THEENGS_PREFIX) -> bool:
    return _theengs_gateway(topic, prefix) is not None


def parse_espresense(topic: str, payload: bytes | str, t: float, *, prefix: str = DEFAULT_ESPRESENSE_PREFIX,
                     anchors: Container[str] | None = None) -> NodeReading:
    """A reading from an ESPresense ``<prefix>/devices/<id>/<room>`` message received at ``t``."""
    parts = _espresense_room(topic, prefix)
    if parts is None:
        raise AdapterError("bad_topic", f"not an ESPresense device topic under {prefix!r}/devices/<id>/<room>")
    topic_id, room = parts
    anchor = _check_anchor(room, anchors)
    doc = _json_object(payload)
    beacon_id = None
    for candidate in (doc.get("id"), topic_id):
        if isinstance(candidate, str):
            beacon_id = _espresense_ibeacon(candidate)
            if beacon_id is not None:
                break
    if beacon_id is None:
        raise AdapterError("not_ibeacon", "ESPresense id is not an iBeacon id (iBeacon:<uuid>-<major>-<minor>)")
    rssi = _rssi(doc.get("rssi"))
    return NodeReading(t=t, beacon_id=beacon_id, anchor=anchor, rssi=rssi, tx_power=_tx_power(doc.get("rssi@1m")))


def parse_theengs(topic: str, payload: bytes | str, t: float, *, prefix: str = DEFAULT_THEENGS_PREFIX,
                  anchors: Container[str] | None = None) -> NodeReading:
    """A reading from a Theengs Gateway / OpenMQTTGateway ``<prefix>/<gateway>/BTtoMQTT/<id>`` message."""
    gateway = _theengs_gateway(topic, prefix)
    if gateway is None:
        raise AdapterError("bad_topic", f"not a Theengs/OpenMQTTGateway topic under {prefix!r}/<gateway>/BTtoMQTT")
    anchor = _check_anchor(gateway, anchors)
    doc = _json_object(payload)
    rssi = _rssi(doc.get("rssi"))
    uuid = doc.get("uuid")
    if uuid is not None and "major" in doc and "minor" in doc:
        model = str(doc.get("model_id", "IBEACON")).upper()
        if model not in ("IBEACON", "IBEACON_V2"):
            raise AdapterError("not_ibeacon", "decoded uuid/major/minor belong to a non-iBeacon model")
        try:
            beacon_id = ibeacon_id(str(uuid), _int_field(doc, "major"), _int_field(doc, "minor"))
        except ValueError:
            raise AdapterError("bad_ibeacon", "uuid, major or minor out of range") from None
        tx = doc.get("txpower", doc.get("power"))
        return NodeReading(t=t, beacon_id=beacon_id, anchor=anchor, rssi=rssi, tx_power=_tx_power(tx))
    advert = _raw_advert(doc)
    return NodeReading(t=t, beacon_id=advert.id, anchor=anchor, rssi=rssi, tx_power=float(advert.tx_power))


def parse_node_message(topic: str, payload: bytes | str, t: float, *,
                       espresense_prefix: str = DEFAULT_ESPRESENSE_PREFIX,
                       theengs_prefix: str = DEFAULT_THEENGS_PREFIX,
                       anchors: Container[str] | None = None) -> NodeReading:
    """Dispatch on the topic to the ESPresense or Theengs/OMG adapter."""
    if _espresense_room(topic, espresense_prefix) is not None:
        return parse_espresense(topic, payload, t, prefix=espresense_prefix, anchors=anchors)
    if _theengs_gateway(topic, theengs_prefix) is not None:
        return parse_theengs(topic, payload, t, prefix=theengs_prefix, anchors=anchors)
    raise AdapterError("bad_topic", "neither an ESPresense nor a Theengs/OpenMQTTGateway topic")


def node_columns(readings: Sequence[NodeReading]) -> dict[str, list[Any]]:
    """Readings as the engine's columns: ``t``, ``id``, ``anchor``, ``rssi``, ``tx``."""
    return {
        "t": [r.t for r in readings],
        "id": [r.beacon_id for r in readings],
        "anchor": [r.anchor for r in readings],
        "rssi": [r.rssi for r in readings],
        "tx": [r.tx_power for r in readings],
    }


# ------------------------------------------------------------------------------------------ helpers


def _strip_prefix(topic: str, prefix: str) -> list[str] | None:
    head = prefix.rstrip("/") + "/"
    if not topic.startswith(head):
        return None
    return topic[len(head):].split("/")


def _espresense_room(topic: str, prefix: str) -> tuple[str, str] | None:
    rest = _strip_prefix(topic, prefix)
    if rest is None or len(rest) != 3 or rest[0] != "devices" or not rest[1] or not rest[2]:
        return None
    return rest[1], rest[2]


def _theengs_gateway(topic: str, prefix: str) -> str | None:
    rest = _strip_prefix(topic, prefix)
    if rest is None or len(rest) not in (2, 3) or rest[1] != "BTtoMQTT" or not rest[0]:
        return None
    if len(rest) == 3 and not rest[2]:
        return None
    return rest[0]


def _check_anchor(anchor: str, anchors: Container[str] | None) -> str:
    if anchors is not None and anchor not in anchors:
        raise AdapterError("unknown_anchor", f"node {anchor!r} is not an anchor of the venue")
    return anchor


def _json_object(payload: bytes | str) -> Mapping[str, Any]:
    if len(payload) > MAX_NODE_PAYLOAD_BYTES:
        raise AdapterError("oversized", f"{len(payload)} bytes > {MAX_NODE_PAYLOAD_BYTES}")
    try:
        doc = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise AdapterError("bad_json", "payload is not JSON") from None
    if not isinstance(doc, dict):
        raise AdapterError("bad_json", f"expected a JSON object, got {type(doc).__name__}")
    return doc


def _espresense_ibeacon(value: str) -> str | None:
    m = _ESPRESENSE_IBEACON.match(value.strip())
    if m is None:
        return None
    major, minor = int(m.group(2)), int(m.group(3))
    if major > 0xFFFF or minor > 0xFFFF:
        return None
    return ibeacon_id(m.group(1), major, minor)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _rssi(value: object) -> float:
    rssi = _number(value)
    if rssi is None:
        raise AdapterError("bad_rssi", "rssi is missing or not a number")
    if not RSSI_MIN_DBM <= rssi <= RSSI_MAX_DBM:
        raise AdapterError("implausible_rssi", f"rssi {rssi:g} dBm outside [{RSSI_MIN_DBM}, {RSSI_MAX_DBM}]")
    return rssi


def _tx_power(value: object) -> float | None:
    tx = _number(value)
    if tx is None or not TX_POWER_MIN_DBM <= tx <= TX_POWER_MAX_DBM:
        return None
    return tx


def _int_field(doc: Mapping[str, Any], key: str) -> int:
    value = _number(doc.get(key))
    if value is None or value != int(value):
        raise AdapterError("bad_ibeacon", f"{key} is not an integer")
    return int(value)


def _raw_advert(doc: Mapping[str, Any]) -> BeaconAdvert:
    """Decode OMG/Theengs raw ``manufacturerdata`` (company id little-endian first) or ``servicedata``."""
    manufacturer: dict[int, bytes] = {}
    service: dict[str, bytes] = {}
    mfd = doc.get("manufacturerdata")
    if isinstance(mfd, str) and _HEX.match(mfd) and len(mfd) >= 4:
        raw = bytes.fromhex(mfd)
        manufacturer[raw[0] | (raw[1] << 8)] = raw[2:]
    svd, svu = doc.get("servicedata"), doc.get("servicedatauuid")
    if isinstance(svd, str) and isinstance(svu, str) and _HEX.match(svd):
        service[svu] = bytes.fromhex(svd)
    if not manufacturer and not service:
        raise AdapterError("not_ibeacon", "no decoded iBeacon fields and no raw advertisement data")
    result = parse_advertisement(manufacturer, service)
    if isinstance(result, BeaconAdvert):
        return result
    raise AdapterError("not_ibeacon" if result.reason == "not_beacon" else "bad_ibeacon", result.detail)
