"""ESPresense and Theengs / OpenMQTTGateway messages, in the shapes those projects publish, to readings."""

from __future__ import annotations

import json

import pytest

from beacon_gateway.adapters import (
    NodeReading,
    espresense_subscriptions,
    node_columns,
    parse_espresense,
    parse_node_message,
    parse_theengs,
    theengs_subscriptions,
)
from beacon_gateway.errors import AdapterError, GatewayError

UUID = "e5ca1ade-f007-ba11-0000-000000000000"
T = 1763870000.5

# ESPresense BleFingerprint::report() fields: id, idType, rssi@1m, rssi, raw, distance, speed, mac, interval
ESPRESENSE_IBEACON = {
    "id": f"iBeacon:{UUID}-100-1",
    "idType": 1,
    "rssi@1m": -59,
    "rssi": -72,
    "raw": 3.21,
    "distance": 2.87,
    "speed": 0.02,
    "mac": "c1a2b3c4d5e6",
    "interval": 1015,
}
# OpenMQTTGateway docs: the usual iBeacon payload, and the one with presenceUseBeaconUuid (MAC moved to "mac")
OMG_IBEACON = {
    "id": "60:87:57:4C:9B:C2", "mac_type": 1, "rssi": -78, "distance": 7.85288, "brand": "GENERIC",
    "model": "iBeacon", "model_id": "IBEACON", "mfid": "4c00", "uuid": "1de4b189115e45f6b44e509352269977",
    "major": 0, "minor": 0, "txpower": -66,
}
OMG_IBEACON_UUID_ID = {**OMG_IBEACON, "id": "1de4b189115e45f6b44e509352269977", "mac": "60:87:57:4C:9B:C2"}


def esp_topic(room: str = "gw-01", device: str = f"iBeacon:{UUID}-100-1") -> str:
    return f"espresense/devices/{device}/{room}"


def test_espresense_ibeacon_to_reading() -> None:
    r = parse_espresense(esp_topic(), json.dumps(ESPRESENSE_IBEACON), T)
    assert r == NodeReading(t=T, beacon_id=f"ibeacon:{UUID}-100-1", anchor="gw-01", rssi=-72.0, tx_power=-59.0)


def test_espresense_uuid_without_dashes_and_uppercase_is_canonicalised() -> None:
    doc = {**ESPRESENSE_IBEACON, "id": "iBeacon:E5CA1ADEF007BA110000000000000000-65535-0"}
    r = parse_espresense(esp_topic(), json.dumps(doc).encode(), T)
    assert r.beacon_id == f"ibeacon:{UUID}-65535-0"


def test_espresense_falls_back_to_topic_id_when_payload_id_is_an_alias() -> None:
    doc = {**ESPRESENSE_IBEACON, "id": "badge-anna"}
    r = parse_espresense(esp_topic(), json.dumps(doc), T)
    assert r.beacon_id == f"ibeacon:{UUID}-100-1"


def test_espresense_custom_prefix_and_anchor_check() -> None:
    topic = f"mall/presence/devices/iBeacon:{UUID}-1-2/gw-07"
    r = parse_espresense(topic, json.dumps({**ESPRESENSE_IBEACON, "id": f"iBeacon:{UUID}-1-2"}), T,
                         prefix="mall/presence", anchors={"gw-07"})
    assert (r.anchor, r.beacon_id) == ("gw-07", f"ibeacon:{UUID}-1-2")
    with pytest.raises(AdapterError) as err:
        parse_espresense(topic, json.dumps(ESPRESENSE_IBEACON), T, prefix="mall/presence", anchors={"gw-01"})
    assert err.value.reason == "unknown_anchor"


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (esp_topic(device="c1a2b3c4d5e6"), {"id": "c1a2b3c4d5e6", "rssi": -70, "mac": "c1a2b3c4d5e6"}, "not_ibeacon"),
        (esp_topic(device="apple:1005:9-26"), {"id": "apple:1005:9-26", "rssi": -70}, "not_ibeacon"),
        (esp_topic(), {**ESPRESENSE_IBEACON, "rssi": "loud"}, "bad_rssi"),
        (esp_topic(), {**ESPRESENSE_IBEACON, "rssi": 12}, "implausible_rssi"),
        (esp_topic(), {k: v for k, v in ESPRESENSE_IBEACON.items() if k != "rssi"}, "bad_rssi"),
        (esp_topic(device="iBeacon:x-1-2"), {**ESPRESENSE_IBEACON, "id": f"iBeacon:{UUID}-70000-1"}, "not_ibeacon"),
        ("espresense/rooms/gw-01/telemetry", ESPRESENSE_IBEACON, "bad_topic"),
        ("espresense/devices/only-id", ESPRESENSE_IBEACON, "bad_topic"),
    ],
)
def test_espresense_rejections_carry_reasons(topic: str, payload: dict[str, object], reason: str) -> None:
    with pytest.raises(AdapterError) as err:
        parse_espresense(topic, json.dumps(payload), T)
    assert err.value.reason == reason
    assert "c1a2b3c4d5e6" not in str(err.value)  # no MAC in error messages (they end up in logs)


@pytest.mark.parametrize("payload", [b"", b"\xff\xfe", b"[1,2]", b"null", b"{" * 100_000, b"x" * 20_000])
def test_garbage_payloads_raise_only_adapter_errors(payload: bytes) -> None:
    for parse in (parse_espresense, parse_theengs):
        topic = esp_topic() if parse is parse_espresense else "home/gw-01/BTtoMQTT/6087574C9BC2"
        with pytest.raises(AdapterError) as err:
            parse(topic, payload, T)
        assert isinstance(err.value, GatewayError)
        assert err.value.reason in ("bad_json", "oversized")


def test_omg_ibeacon_to_reading_drops_mac() -> None:
    r = parse_theengs("home/gw-02/BTtoMQTT/6087574C9BC2", json.dumps(OMG_IBEACON), T)
    assert r == NodeReading(t=T, beacon_id="ibeacon:1de4b189-115e-45f6-b44e-509352269977-0-0", anchor="gw-02",
                            rssi=-78.0, tx_power=-66.0)
    assert "60:87" not in repr(r) and "6087" not in repr(r)


def test_omg_presence_use_beacon_uuid_topic_and_payload() -> None:
    topic = "home/gw-03/BTtoMQTT/1de4b189115e45f6b44e509352269977"
    r = parse_theengs(topic, json.dumps(OMG_IBEACON_UUID_ID), T)
    assert (r.anchor, r.beacon_id) == ("gw-03", "ibeacon:1de4b189-115e-45f6-b44e-509352269977-0-0")


def test_theengs_gateway_legacy_topic_without_id_and_power_field() -> None:
    doc = {k: v for k, v in OMG_IBEACON.items() if k != "txpower"} | {"power": -61, "major": 7, "minor": 300}
    r = parse_theengs("home/TheengsGateway/BTtoMQTT", json.dumps(doc), T)
    assert (r.anchor, r.beacon_id, r.tx_power) == (
        "TheengsGateway", "ibeacon:1de4b189-115e-45f6-b44e-509352269977-7-300", -61.0)


def test_theengs_raw_manufacturer_and_service_data_use_our_parser() -> None:
    # OMG publishes undecoded adverts as hex with the company id first, little-endian (4c00 = Apple)
    ibeacon_hex = "4c000215" + UUID.replace("-", "") + "0064" + "0001" + "c5"
    r = parse_theengs("home/gw-04/BTtoMQTT/AABBCCDDEEFF", json.dumps(
        {"id": "AA:BB:CC:DD:EE:FF", "rssi": -80, "manufacturerdata": ibeacon_hex}), T)
    assert (r.beacon_id, r.tx_power) == (f"ibeacon:{UUID}-100-1", -59.0)
    eddystone_hex = "00e8" + "00112233445566778899" + "aabbccddeeff" + "0000"
    r = parse_theengs("home/gw-04/BTtoMQTT/AABBCCDDEEFF", json.dumps(
        {"id": "AA:BB:CC:DD:EE:FF", "rssi": -81, "servicedata": eddystone_hex, "servicedatauuid": "0xfeaa"}), T)
    assert (r.beacon_id, r.tx_power) == ("eddystone-uid:00112233445566778899-aabbccddeeff", -24.0)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"id": "F3:52:85", "rssi": -82, "brand": "BlueMaestro", "model_id": "BM_V23", "tempc": 24.1}, "not_ibeacon"),
        ({**OMG_IBEACON, "uuid": "not-a-uuid"}, "bad_ibeacon"),
        ({**OMG_IBEACON, "major": 70000}, "bad_ibeacon"),
        ({**OMG_IBEACON, "minor": "x"}, "bad_ibeacon"),
        ({**OMG_IBEACON, "model_id": "MS-CDP"}, "not_ibeacon"),
        ({**OMG_IBEACON, "rssi": None}, "bad_rssi"),
        ({"id": "AA", "rssi": -80, "manufacturerdata": "4c000215abcd"}, "bad_ibeacon"),
    ],
)
def test_theengs_rejections(payload: dict[str, object], reason: str) -> None:
    with pytest.raises(AdapterError) as err:
        parse_theengs("home/gw-02/BTtoMQTT/6087574C9BC2", json.dumps(payload), T)
    assert err.value.reason == reason
    assert "60:87:57" not in str(err.value)


def test_out_of_range_tx_power_becomes_unknown() -> None:
    r = parse_espresense(esp_topic(), json.dumps({**ESPRESENSE_IBEACON, "rssi@1m": 58}), T)
    assert r.tx_power is None


def test_dispatch_by_topic_and_subscriptions() -> None:
    a = parse_node_message(esp_topic(), json.dumps(ESPRESENSE_IBEACON), T)
    b = parse_node_message("home/gw-02/BTtoMQTT/6087574C9BC2", json.dumps(OMG_IBEACON), T + 1)
    assert (a.anchor, b.anchor) == ("gw-01", "gw-02")
    with pytest.raises(AdapterError) as err:
        parse_node_message("instore/v1/x/gw/gw-01/readings", b"{}", T)
    assert err.value.reason == "bad_topic"
    assert espresense_subscriptions() == ["espresense/devices/+/+"]
    assert theengs_subscriptions("omg") == ["omg/+/BTtoMQTT/+", "omg/+/BTtoMQTT"]
    cols = node_columns([a, b])
    assert cols["anchor"] == ["gw-01", "gw-02"] and cols["t"] == [T, T + 1] and cols["tx"] == [-59.0, -66.0]
