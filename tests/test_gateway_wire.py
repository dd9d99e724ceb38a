"""The wire codec: Hypothesis round trips, and garbage raises nothing but WireError."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beacon_gateway.errors import WireError
from beacon_gateway.wire import (
    MAX_BATCH_READINGS,
    ReadingsBatch,
    decode_batch,
    encode_batch,
    encode_columns,
    parse_gateway_topic,
    readings_topic,
)

ids = st.builds(lambda u, a, b: f"ibeacon:{u}-{a}-{b}", st.uuids(), st.integers(0, 65535), st.integers(0, 65535))
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@st.composite
def columns(draw: st.DrawFn) -> tuple[str, int, float, list[float], list[str], list[float], list[float | None]]:
    n = draw(st.integers(0, 50))
    gw = draw(st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,20}\Z"))
    seq = draw(st.integers(0, 2**53))
    t0 = draw(st.floats(1.0, 4e9))
    dt = draw(st.lists(st.floats(-5, 60, allow_nan=False), min_size=n, max_size=n))
    bid = draw(st.lists(ids, min_size=n, max_size=n))
    rssi = draw(st.lists(st.integers(-130, 0).map(float), min_size=n, max_size=n))
    tx = draw(st.lists(st.one_of(st.none(), st.integers(-128, 20).map(float)), min_size=n, max_size=n))
    return gw, seq, t0, dt, bid, rssi, tx


@given(columns())
def test_encode_columns_round_trip(cols: tuple[str, int, float, list[float], list[str], list[float],
                                                list[float | None]]) -> None:
    gw, seq, t0, dt, bid, rssi, tx = cols
    batch = decode_batch(encode_columns(gw, seq, t0, dt, bid, rssi, tx))
    assert (batch.gw, batch.seq, batch.t0, batch.dt, batch.id, batch.rssi, batch.tx) == (gw, seq, t0, dt, bid, rssi, tx)
    assert decode_batch(encode_batch(batch)) == batch


def test_unequal_columns_are_refused_both_ways() -> None:
    with pytest.raises(WireError):
        encode_columns("gw-1", 1, 1.0, [0.0], [], [-70.0], [None])
    with pytest.raises(WireError) as err:
        decode_batch(b'{"v":1,"gw":"g","seq":1,"t0":1.0,"dt":[0.0],"id":[],"rssi":[],"tx":[]}')
    assert err.value.reason == "schema"


def test_oversized_batch_is_refused_before_validation() -> None:
    n = MAX_BATCH_READINGS + 1
    doc = {"v": 1, "gw": "g", "seq": 1, "t0": 1.0, "dt": [0] * n, "id": ["x"] * n, "rssi": [-1] * n, "tx": [None] * n}
    with pytest.raises(WireError) as err:
        decode_batch(json.dumps(doc))
    assert err.value.reason == "oversized"


@settings(max_examples=400)
@given(st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300),
    st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
                 lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(
                     st.sampled_from(["v", "gw", "seq", "t0", "dt", "id", "rssi", "tx"]), c, max_size=8)),
                 max_leaves=30).map(json.dumps),
))
def test_garbage_raises_only_wire_error(payload: bytes | str) -> None:
    try:
        batch = decode_batch(payload)
    except WireError as exc:
        assert exc.reason in ("bad_json", "schema", "oversized")
    else:
        assert isinstance(batch, ReadingsBatch)


def test_deeply_nested_json_is_a_wire_error() -> None:
    with pytest.raises(WireError):
        decode_batch("[" * 200_000 + "]" * 200_000)


def test_topics() -> None:
    t = readings_topic("demo-mall", "gw-01")
    assert t == "instore/v1/demo-mall/gw/gw-01/readings"
    assert parse_gateway_topic(t) == ("demo-mall", "gw-01", "readings")
    with pytest.raises(ValueError):
        readings_topic("demo/mall", "gw-01")
