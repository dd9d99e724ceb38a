"""Readings from third-party BLE nodes: ESPresense and Theengs Gateway / OpenMQTTGateway.

ESPresense publishes ``espresense/devices/<id>/<room>`` with ``{"id": "iBeacon:<uuid>-<major>-<minor>",
"rssi": -72, "rssi@1m": -65, ...}``; Theengs / OMG publish ``<prefix>/<gateway>/BTtoMQTT/<mac>`` with
``{"uuid": "<32 hex>", "major": 1, "minor": 2, "rssi": -70, "txpower": -59, ...}``. Only the beacon id,
RSSI and transmit power are kept: MAC addresses in these payloads are never read into a reading.
"""

from __future__ import annotations

import json
from typing import Any, Final

import numpy as np

from api.errors import IngestError
from api.messages import ReadingsIn, ThirdPartyDecoder
from beacon_gateway.wire import ibeacon_id, is_canonical_beacon_id

THIRD_PARTY_MAX_BYTES: Final = 16_384  # one advertisement per message: anything bigger is not one


def _load(topic: str, payload: bytes) -> dict[str, Any]:
    if len(payload) > THIRD_PARTY_MAX_BYTES:
        raise IngestError("oversized", f"{topic}: {len(payload)} bytes")
    try:
        doc = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IngestError("bad_json", f"{topic}: {exc}") from None
    if not isinstance(doc, dict):
        raise IngestError("schema", f"{topic}: expected a JSON object")
    return doc


def _rssi(topic: str, doc: dict[str, Any]) -> float:
    value = doc.get("rssi")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise IngestError("schema", f"{topic}: rssi missing or not a number")
    return float(value)


def _one(anchor: str, beacon: str, rssi: float, tx: float | None, t: float, source: str) -> ReadingsIn:
    return ReadingsIn(anchor, None, np.array([t]), np.array([beacon], dtype=object), np.array([rssi]),
                      np.array([np.nan if tx is None else float(tx)]), source=source)


def decode_espresense(topic: str, anchor: str, payload: bytes, received_t: float) -> ReadingsIn:
    doc = _load(topic, payload)
    raw_id = doc.get("id")
    if not isinstance(raw_id, str):
        raise IngestError("schema", f"{topic}: id missing")
    beacon = _canonical(topic, raw_id)
    tx = doc.get("rssi@1m", doc.get("txPower"))
    tx = float(tx) if isinstance(tx, int | float) and not isinstance(tx, bool) else None
    return _one(anchor, beacon, _rssi(topic, doc), tx, received_t, "espresense")


def decode_theengs(topic: str, anchor: str, payload: bytes, received_t: float) -> ReadingsIn:
    doc = _load(topic, payload)
    uuid, major, minor = doc.get("uuid"), doc.get("major"), doc.get("minor")
    if not isinstance(uuid, str) or not isinstance(major, int) or not isinstance(minor, int):
        raise IngestError("not_ibeacon", f"{topic}: no uuid/major/minor (not an iBeacon advertisement)")
    try:
        beacon = ibeacon_id(uuid, major, minor)
    except ValueError as exc:
        raise IngestError("schema", f"{topic}: {exc}") from None
    tx = doc.get("txpower", doc.get("txPower"))
    tx = float(tx) if isinstance(tx, int | float) and not isinstance(tx, bool) else None
    return _one(anchor, beacon, _rssi(topic, doc), tx, received_t, "theengs")


def _canonical(topic: str, raw_id: str) -> str:
    text = raw_id.strip()
    low = text.lower()
    if low.startswith("ibeacon:"):
        body = low[len("ibeacon:"):]
        parts = body.rsplit("-", 2)
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            try:
                return ibeacon_id(parts[0], int(parts[1]), int(parts[2]))
            except ValueError as exc:
                raise IngestError("schema", f"{topic}: {exc}") from None
    if is_canonical_beacon_id(low):
        return low
    raise IngestError("not_ibeacon", f"{topic}: id {raw_id[:60]!r} is not a beacon id")


DECODERS: Final[dict[str, ThirdPartyDecoder]] = {"espresense": decode_espresense, "theengs": decode_theengs}
