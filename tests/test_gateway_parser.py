"""Advertisement parsing: known frames, canonical ids, allow-lists, and Hypothesis over arbitrary bytes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beacon_gateway.advertisements import (
    AdvertParser,
    AllowList,
    BeaconAdvert,
    Rejected,
    decode_line,
    parse_advertisement,
)
from beacon_gateway.errors import ConfigError
from beacon_gateway.wire import is_canonical_beacon_id

UUID = "e2c56db5-dffb-48d2-b060-d0f5a71096e0"
EDDY = "0000feaa-0000-1000-8000-00805f9b34fb"


def ibeacon_bytes(uuid: str = UUID, major: int = 1, minor: int = 2, power: int = -59) -> bytes:
    return b"\x02\x15" + bytes.fromhex(uuid.replace("-", "")) + major.to_bytes(2, "big") + minor.to_bytes(2, "big") + (
        power & 0xFF).to_bytes(1, "big")


def altbeacon_bytes(id1: str = UUID, id2: int = 3, id3: int = 4, ref: int = -60, reserved: bool = True) -> bytes:
    return b"\xbe\xac" + bytes.fromhex(id1.replace("-", "")) + id2.to_bytes(2, "big") + id3.to_bytes(2, "big") + (
        ref & 0xFF).to_bytes(1, "big") + (b"\x00" if reserved else b"")


def eddystone_uid_bytes(ns: str = "00112233445566778899", inst: str = "aabbccddeeff", tx: int = -20,
                        rfu: bool = True) -> bytes:
    return b"\x00" + (tx & 0xFF).to_bytes(1, "big") + bytes.fromhex(ns) + bytes.fromhex(inst) + (
        b"\x00\x00" if rfu else b"")


def test_ibeacon() -> None:
    r = parse_advertisement({0x004C: ibeacon_bytes(major=65535, minor=0, power=-59)}, {})
    assert r == BeaconAdvert(f"ibeacon:{UUID}-65535-0", "ibeacon", -59, uuid=UUID)


def test_ibeacon_with_trailing_bytes_is_accepted() -> None:
    r = parse_advertisement({0x004C: ibeacon_bytes() + b"\x01\x02"}, {})
    assert isinstance(r, BeaconAdvert) and r.id == f"ibeacon:{UUID}-1-2"


def test_altbeacon_any_company_and_without_reserved_byte() -> None:
    for company in (0x0118, 0xFFFF, 0x004C):
        for reserved in (True, False):
            r = parse_advertisement({company: altbeacon_bytes(reserved=reserved)}, {})
            assert r == BeaconAdvert(f"altbeacon:{UUID}-3-4", "altbeacon", -60, uuid=UUID)


@pytest.mark.parametrize("key", [EDDY, "feaa", "0xFEAA", EDDY.upper()])
def test_eddystone_uid_any_uuid_spelling_and_without_rfu(key: str) -> None:
    for rfu in (True, False):
        r = parse_advertisement({}, {key: eddystone_uid_bytes(rfu=rfu)})
        assert r == BeaconAdvert("eddystone-uid:00112233445566778899-aabbccddeeff", "eddystone-uid", -20,
                                 namespace="00112233445566778899")


@pytest.mark.parametrize(
    ("mfr", "svc", "reason"),
    [
        ({0x004C: ibeacon_bytes()[:20]}, {}, "malformed"),
        ({0x004C: b"\x10\x05\x01\x18"}, {}, "not_beacon"),  # Apple "nearby" frame of a phone
        ({0x0006: b"\x01\x09\x20"}, {}, "not_beacon"),  # Microsoft CDP
        ({0x0118: b"\xbe\xac\x01"}, {}, "malformed"),
        ({}, {EDDY: b"\x10\x00\x03goo"}, "not_beacon"),  # Eddystone-URL
        ({}, {EDDY: b"\x00\xe8\x00"}, "malformed"),
        ({}, {EDDY: b""}, "malformed"),
        ({}, {EDDY: b"\x77\x00"}, "malformed"),
        ({}, {}, "not_beacon"),
    ],
)
def test_rejections(mfr: dict[int, bytes], svc: dict[str, bytes], reason: str) -> None:
    r = parse_advertisement(mfr, svc)
    assert isinstance(r, Rejected) and r.reason == reason


def test_valid_frame_wins_over_a_malformed_one() -> None:
    r = parse_advertisement({0x004C: b"\x02\x15\x00", 0x0118: altbeacon_bytes()}, {})
    assert isinstance(r, BeaconAdvert) and r.kind == "altbeacon"


def test_allow_list_by_uuid_and_namespace() -> None:
    allow = AllowList.build([UUID.upper().replace("-", "")], ["0x00112233445566778899"])
    parser = AdvertParser(allow)
    assert isinstance(parser.parse({0x004C: ibeacon_bytes()}, {}), BeaconAdvert)
    assert isinstance(parser.parse({0x0118: altbeacon_bytes()}, {}), BeaconAdvert)  # id1 is the UUID
    assert isinstance(parser.parse({}, {EDDY: eddystone_uid_bytes()}), BeaconAdvert)
    other = parser.parse({0x004C: ibeacon_bytes(uuid="11111111-2222-3333-4444-555555555555")}, {})
    assert isinstance(other, Rejected) and other.reason == "not_allowed"
    other_ns = parser.parse({}, {EDDY: eddystone_uid_bytes(ns="ffffffffffffffffffff")})
    assert isinstance(other_ns, Rejected) and other_ns.reason == "not_allowed"
    # only uuids configured: Eddystone beacons are not forwarded
    only_uuids = AdvertParser(AllowList.build([UUID], None))
    assert isinstance(only_uuids.parse({}, {EDDY: eddystone_uid_bytes()}), Rejected)
    # changing the allow-list takes effect for cached adverts too
    parser.set_allow(AllowList.build(["11111111-2222-3333-4444-555555555555"], None))
    assert isinstance(parser.parse({0x004C: ibeacon_bytes()}, {}), Rejected)


def test_bad_allow_list_entries_are_refused() -> None:
    with pytest.raises(ConfigError):
        AllowList.build(["not-a-uuid"], None)
    with pytest.raises(ConfigError):
        AllowList.build(None, ["0011"])


def test_cache_is_bounded() -> None:
    parser = AdvertParser(cache_max=10)
    for minor in range(50):
        r = parser.parse({0x004C: ibeacon_bytes(minor=minor)}, {})
        assert isinstance(r, BeaconAdvert) and r.id.endswith(f"-1-{minor}")
    assert len(parser._cache) <= 10


@given(uuid=st.uuids(), major=st.integers(0, 0xFFFF), minor=st.integers(0, 0xFFFF), power=st.integers(-128, 127))
def test_ibeacon_round_trip(uuid: object, major: int, minor: int, power: int) -> None:
    r = parse_advertisement({0x004C: ibeacon_bytes(str(uuid), major, minor, power)}, {})
    assert r == BeaconAdvert(f"ibeacon:{uuid}-{major}-{minor}", "ibeacon", power, uuid=str(uuid))
    assert is_canonical_beacon_id(r.id)


@given(ns=st.binary(min_size=10, max_size=10), inst=st.binary(min_size=6, max_size=6), tx=st.integers(-128, 127))
def test_eddystone_round_trip(ns: bytes, inst: bytes, tx: int) -> None:
    r = parse_advertisement({}, {EDDY: eddystone_uid_bytes(ns.hex(), inst.hex(), tx)})
    assert isinstance(r, BeaconAdvert) and r.tx_power == tx and is_canonical_beacon_id(r.id)


@settings(max_examples=300)
@given(
    mfr=st.dictionaries(st.sampled_from([0x004C, 0x0118, 0x0006, 0xFFFF]),
                        st.one_of(st.binary(max_size=40), st.binary(max_size=30).map(lambda b: b"\x02\x15" + b),
                                  st.binary(max_size=30).map(lambda b: b"\xbe\xac" + b)), max_size=3),
    svc=st.dictionaries(st.sampled_from([EDDY, "feaa", "180f"]),
                        st.one_of(st.binary(max_size=30), st.binary(max_size=25).map(lambda b: b"\x00" + b)),
                        max_size=2),
)
def test_garbage_bytes_never_raise_and_ids_are_canonical(mfr: dict[int, bytes], svc: dict[str, bytes]) -> None:
    r = parse_advertisement(mfr, svc)
    if isinstance(r, BeaconAdvert):
        assert is_canonical_beacon_id(r.id)
        assert -128 <= r.tx_power <= 127
    else:
        assert r.reason in ("not_beacon", "malformed")


def test_decode_line_shapes() -> None:
    line = json.dumps({"manufacturer_data": {"76": ibeacon_bytes().hex()}, "rssi": -70, "local_name": "x"})
    assert decode_line(line) == {"id": f"ibeacon:{UUID}-1-2", "kind": "ibeacon", "tx_power": -59, "error": None}
    eddy = decode_line(json.dumps({"service_data": {EDDY: eddystone_uid_bytes().hex()}, "service_uuids": [EDDY]}))
    assert eddy["kind"] == "eddystone-uid" and eddy["tx_power"] == -20
    for bad in ("", "garbage", "[]", '{"manufacturer_data": {"apple": "00"}}', '{"manufacturer_data": {"76": "0g"}}',
                '{"manufacturer_data": [1]}', '{"rssi": "x"}', "{}", '{"service_data": {"feaa": "00"}}'):
        out = decode_line(bad)
        assert out["id"] is None and out["kind"] is None and isinstance(out["error"], str) and out["error"]


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=200), st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(
        st.sampled_from(["manufacturer_data", "service_data", "rssi", "t", "76", "feaa", "x"]), children,
        max_size=4)),
    max_leaves=20).map(lambda v: json.dumps(v))))
def test_decode_line_never_raises(line: str) -> None:
    out = decode_line(line)
    assert set(out) == {"id", "kind", "tx_power", "error"}
    assert (out["id"] is None) == (out["error"] is not None)
