"""The pipeline core with an in-memory store, a scripted locator and a hand-moved clock."""

from __future__ import annotations

import itertools
import json

import pytest

from api.errors import IngestError
from api.messages import ReadingsIn, Routes, decode_message
from api.pipeline import Pipeline
from api.pseudonyms import Pseudonymizer
from beacon_gateway.wire import MAX_BATCH_READINGS, readings_topic, status_topic
from positioning.venue import Venue, parse_venue
from tests.conftest import CORNER_STORE
from tests.fakes.clock import FakeClock
from tests.fakes.locator import FakeLocator
from tests.fakes.store import FakeStore

BEACON = "ibeacon:f7826da6-4fa2-4e98-8024-bc5b71e0893e-1-7"
OTHER = "ibeacon:f7826da6-4fa2-4e98-8024-bc5b71e0893e-1-8"


@pytest.fixture(scope="module")
def venue() -> Venue:
    return parse_venue(CORNER_STORE.read_text(encoding="utf-8"), str(CORNER_STORE))


def make_locator(venue: Venue) -> FakeLocator:
    zones = {"gw-1": None, "gw-2": "entrance", "gw-3": "checkout", "gw-6": "c-fragrance"}
    return FakeLocator({a.id: (a.x, a.y, a.floor) for a in venue.anchors}, zones)


def batch(gw: str, seq: int, t0: float, readings: list[tuple[str, float]], venue: str = "corner-store") -> tuple[
        str, bytes]:
    body = {"v": 1, "gw": gw, "seq": seq, "t0": t0, "dt": [0.1 * i for i in range(len(readings))],
            "id": [b for b, _ in readings], "rssi": [r for _, r in readings], "tx": [-59] * len(readings)}
    return readings_topic(venue, gw), json.dumps(body).encode()


def routes(venue: Venue) -> Routes:
    return Routes(venue.id, {a.id for a in venue.anchors})


def make(venue: Venue, store: FakeStore, clock: FakeClock) -> tuple[Pipeline, FakeLocator, Pseudonymizer]:
    loc = make_locator(venue)
    pseudo = Pseudonymizer(b"test-secret")
    return Pipeline(venue, loc, store, pseudo, started_wall=clock()), loc, pseudo  # type: ignore[arg-type]


def offer(p: Pipeline, venue: Venue, topic: str, payload: bytes, token: object, wall: float) -> None:
    try:
        p.offer(decode_message(topic, payload, routes(venue), wall), token, wall)
    except IngestError as exc:
        p.refuse(exc, topic, token, wall)


def test_readings_become_positions_sessions_and_acks(venue: Venue) -> None:
    clock, store = FakeClock(), FakeStore()
    p, _, pseudo = make(venue, store, clock)
    t0 = clock() - 2.0
    offer(p, venue, *batch("gw-2", 1, t0, [(BEACON, -60), (OTHER, -80)]), token="m1", wall=clock())
    offer(p, venue, *batch("gw-6", 1, t0, [(OTHER, -55)]), token="m2", wall=clock())
    c = p.commit(clock.advance(0.5))
    assert set(c.acks) == {"m1", "m2"}
    dev, other = pseudo.one(BEACON), pseudo.one(OTHER)
    assert BEACON not in json.dumps([e for e in c.events])  # only pseudonyms leave the ingest
    by_dev = {f.device: f for f in store.positions}
    assert by_dev[dev].zone == "entrance" and by_dev[dev].t == pytest.approx(t0)  # positions carry reading time
    assert by_dev[other].zone == "c-fragrance"
    assert {(s.device, s.zone) for s in store.open_sessions()} == {(dev, "entrance"), (other, "c-fragrance")}
    assert [e["type"] for e in c.events] == ["zone_enter", "zone_enter"]
    assert p.counters.readings_applied == 3 and p.counters.batches_applied == 2


def test_duplicate_batches_are_applied_once_and_still_acked(venue: Venue) -> None:
    clock, store = FakeClock(), FakeStore()
    p, loc, _ = make(venue, store, clock)
    topic, payload = batch("gw-2", 5, clock() - 1, [(BEACON, -60)])
    for tok in ("a", "b", "c"):
        offer(p, venue, topic, payload, tok, clock())
    c = p.commit(clock.advance(0.5))
    assert loc.pushed == 1
    assert p.counters.duplicates == 2
    assert set(c.acks) == {"a", "b", "c"}


def test_restart_restores_dedup_and_zone_state(venue: Venue) -> None:
    clock, store = FakeClock(), FakeStore()
    p, _, pseudo = make(venue, store, clock)
    first = batch("gw-3", 1, clock() - 1, [(BEACON, -50)])
    offer(p, venue, *first, token=1, wall=clock())
    p.commit(clock.advance(0.5))
    assert [e.type for e in store.events] == ["zone_enter"]

    p2, loc2, _ = make(venue, store, clock)  # a new process on the same database
    offer(p2, venue, *first, token=2, wall=clock())  # the broker redelivers the unacked message
    offer(p2, venue, *batch("gw-3", 2, clock(), [(BEACON, -50)]), token=3, wall=clock())
    p2.commit(clock.advance(0.5))
    assert p2.counters.duplicates == 1
    assert loc2.pushed == 1
    assert [e.type for e in store.events] == ["zone_enter"]  # the stay went on: not entered twice
    assert len([s for s in store.open_sessions() if s.device == pseudo.one(BEACON)]) == 1
    assert p2.watermark is not None and p2.watermark >= clock() - 1


def test_backlog_is_advanced_in_steps_of_at_most_a_second(venue: Venue) -> None:
    clock, store = FakeClock(), FakeStore()
    p, loc, _ = make(venue, store, clock)
    offer(p, venue, *batch("gw-2", 1, clock() - 30, [(BEACON, -60)]), token=None, wall=clock())
    p.commit(clock())
    for k in range(1, 11):
        offer(p, venue, *batch("gw-2", 1 + k, clock() - 30 + k, [(BEACON, -60)]), token=None, wall=clock())
    loc.advanced.clear()
    p.commit(clock.advance(0.5))
    steps = loc.advanced
    assert len(steps) >= 10
    assert all(0 < b - a <= 1.0 + 1e-9 for a, b in itertools.pairwise(steps))
    assert len({f.t for f in store.positions}) == 11  # one position per second of readings


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{not json", "bad_json"),
    (b"[1, 2]", "schema"),
    (json.dumps({"v": 1, "gw": "gw-1", "seq": 1, "t0": 5.0, "dt": [0.1], "id": ["x"], "rssi": [-50, -60],
                 "tx": [None]}).encode(), "schema"),
    (json.dumps({"v": 1, "gw": "gw-2", "seq": 1, "t0": 5.0, "dt": [], "id": [], "rssi": [], "tx": []}).encode(),
     "topic_mismatch"),
    (json.dumps({"v": 1, "gw": "gw-1", "seq": 1, "t0": 5.0, "dt": [0.0] * (MAX_BATCH_READINGS + 1),
                 "id": ["x"] * (MAX_BATCH_READINGS + 1), "rssi": [-50] * (MAX_BATCH_READINGS + 1),
                 "tx": [None] * (MAX_BATCH_READINGS + 1)}).encode(), "oversized"),
    (b"x" * 3_000_000, "oversized"),
])
def test_malformed_messages_are_counted_by_reason(venue: Venue, payload: bytes, reason: str) -> None:
    clock, store = FakeClock(), FakeStore()
    p, _, _ = make(venue, store, clock)
    offer(p, venue, readings_topic("corner-store", "gw-1"), payload, token="t", wall=clock())
    offer(p, venue, *batch("gw-2", 1, clock(), [(BEACON, -60)]), token="u", wall=clock())  # others go on
    c = p.commit(clock.advance(0.5))
    assert p.counters.errors == {reason: 1}
    assert p.counters.last_errors[-1]["reason"] == reason
    assert set(c.acks) == {"t", "u"}
    assert len(store.positions) == 1


def test_unknown_gateways_rooms_and_venues_are_refused(venue: Venue) -> None:
    r = routes(venue)
    cases = [(readings_topic("corner-store", "gw-99"), "unknown_gateway"),
             (readings_topic("other-venue", "gw-1"), "wrong_venue"),
             ("espresense/devices/iBeacon:x/kitchen", "unknown_anchor"),
             ("home/gw-99/BTtoMQTT/AABBCC", "unknown_anchor"),
             ("something/else", "unknown_topic")]
    for topic, reason in cases:
        with pytest.raises(IngestError) as info:
            decode_message(topic, b"{}", r, 1.0)
        assert info.value.reason == reason


def test_third_party_nodes_are_normalised_and_macs_dropped(venue: Venue) -> None:
    r = routes(venue)
    esp = decode_message("espresense/devices/iBeacon:F7826DA6-4FA2-4E98-8024-BC5B71E0893E-1-7/gw-4",
                         json.dumps({"id": "iBeacon:F7826DA6-4FA2-4E98-8024-BC5B71E0893E-1-7", "rssi": -71,
                                     "rssi@1m": -59, "mac": "aa:bb:cc:dd:ee:ff"}).encode(), r, 100.0)
    assert isinstance(esp, ReadingsIn)
    assert (esp.gateway, esp.beacon.tolist(), esp.rssi.tolist(), esp.t.tolist()) == ("gw-4", [BEACON], [-71.0],
                                                                                      [100.0])
    theengs = decode_message("home/gw-5/BTtoMQTT/AABBCCDDEEFF",
                             json.dumps({"id": "AA:BB:CC:DD:EE:FF", "uuid": "f7826da64fa24e988024bc5b71e0893e",
                                         "major": 1, "minor": 7, "rssi": -66, "txpower": -59}).encode(), r, 5.0)
    assert isinstance(theengs, ReadingsIn)
    assert theengs.beacon.tolist() == [BEACON] and theengs.gateway == "gw-5"
    assert "aa:bb" not in repr(theengs).lower()
    with pytest.raises(IngestError) as info:
        decode_message("home/gw-5/BTtoMQTT/AABB", json.dumps({"id": "AA:BB", "rssi": -50}).encode(), r, 5.0)
    assert "AA:BB" not in str(info.value)  # refused without quoting the MAC


def test_gateway_down_on_offline_status_and_on_silence(venue: Venue) -> None:
    clock, store = FakeClock(), FakeStore()
    p, _, _ = make(venue, store, clock)
    offer(p, venue, *batch("gw-1", 1, clock(), [(BEACON, -60)]), token=None, wall=clock())
    offer(p, venue, status_topic("corner-store", "gw-2"), b'{"state": "online", "config_version": 3}', None, clock())
    p.commit(clock.advance(0.1))
    state = {g.id: g for g in store.gateways()}
    assert state["gw-1"].state == "up" and state["gw-2"].state == "up"
    assert state["gw-2"].health["config_version"] == 3

    offer(p, venue, status_topic("corner-store", "gw-2"), b"offline", None, clock())  # last will
    p.commit(clock.advance(0.1))
    assert {g.id: g.state for g in store.gateways()}["gw-2"] == "down"

    clock.advance(59.0)
    p.commit(clock())
    assert {g.id: g.state for g in store.gateways()}["gw-1"] == "up"
    clock.advance(30.0)  # 89 s of silence: must be down by now (limit: 90 s)
    p.commit(clock())
    gws = {g.id: g for g in store.gateways()}
    assert gws["gw-1"].state == "down" and gws["gw-1"].reason == "silent"
    assert gws["gw-3"].state == "down" and gws["gw-3"].reason == "never seen"

    offer(p, venue, *batch("gw-1", 2, clock(), [(BEACON, -60)]), token=None, wall=clock())
    p.commit(clock.advance(0.1))
    assert {g.id: g.state for g in store.gateways()}["gw-1"] == "up"  # healthy again on the next success


def test_event_time_follows_the_wall_clock_when_data_stops(venue: Venue) -> None:
    clock, store = FakeClock(), FakeStore()
    p, _, _ = make(venue, store, clock)
    offer(p, venue, *batch("gw-2", 1, clock(), [(BEACON, -60)]), token=None, wall=clock())
    p.commit(clock())
    w0 = p.watermark
    assert w0 is not None
    clock.advance(12.0)
    p.commit(clock())
    assert p.watermark is not None and p.watermark >= w0 + 9.0


def test_phone_scans_enter_the_same_pipeline(venue: Venue) -> None:
    clock, store = FakeClock(), FakeStore()
    p, loc, pseudo = make(venue, store, clock)
    device = p.offer_scan("app-42", "s1", clock(), ["gw-3", "gw-9"], [-50.0, -60.0], [None, -59.0], clock())
    p.commit(clock.advance(0.5))
    assert device == pseudo.app("app-42") and device != pseudo.one("app-42")
    assert loc.pushed == 1 and p.counters.dropped == {"unknown_anchor": 1}
    assert [(f.device, f.zone) for f in store.positions] == [(device, "checkout")]


def test_flows_and_occupancy_per_minute(venue: Venue) -> None:
    clock, store = FakeClock(1_700_000_000.0), FakeStore()
    p, _, _pseudo = make(venue, store, clock)
    t = clock()
    offer(p, venue, *batch("gw-2", 1, t, [(BEACON, -50)]), token=None, wall=clock())
    p.commit(clock.advance(0.5))
    offer(p, venue, *batch("gw-3", 1, t + 2, [(BEACON, -50)]), token=None, wall=clock())
    p.commit(clock.advance(0.5))
    assert list(store.flows_.values()) == [1]
    assert next(iter(store.flows_))[1:] == ("entrance", "checkout")
    assert p.occupancy() == {"checkout": 1}
    offer(p, venue, *batch("gw-3", 2, t + 70, [(BEACON, -50)]), token=None, wall=clock())
    p.commit(clock.advance(0.5))
    rows = {o.zone: o.devices for o in store.occupancy}
    assert rows["checkout"] == 1 and rows["entrance"] == 0 and len(rows) == len(venue.zones)
