"""Zone hysteresis, stays and visitor classification on scripted position streams."""

from __future__ import annotations

from collections.abc import Sequence

from positioning.zones import (
    VISITOR_MIN_DWELL_S,
    ZONE_SWITCH_DELAY_S,
    ZoneHysteresis,
    classify_visitors,
    stays_from_zone_column,
)

CHAIN = {"counter": ("counter", "store"), "store": ("store",), "corridor": ("corridor",)}


Event = tuple[str, str | None, float]


def feed(raw: Sequence[tuple[float, str | None]]) -> tuple[ZoneHysteresis, list[Event], list[str | None]]:
    h = ZoneHysteresis()
    events: list[tuple[str, str | None, float]] = []
    column: list[str | None] = []
    for t, z in raw:
        events += [(c.kind, c.zone, c.t) for c in h.update(t, z, CHAIN) if c.kind != "dwell"]
        column.append(h.current)
    return h, events, column


def test_enter_and_exit_wait_the_same_delay() -> None:
    raw = [(float(t), "store" if 10 <= t < 40 else None) for t in range(60)]
    _, events, _ = feed(raw)
    assert events == [("zone_enter", "store", 10 + ZONE_SWITCH_DELAY_S),
                      ("zone_exit", "store", 40 + ZONE_SWITCH_DELAY_S)]


def test_boundary_walker_does_not_flap() -> None:
    raw = [(float(t), "store" if t % 2 else "corridor") for t in range(100)]
    _, events, column = feed(raw)
    # Alternating every second never holds for the delay: at most the first settled zone.
    assert len(events) <= 1
    assert len(set(column[10:])) == 1


def test_short_pass_through_is_not_a_visit() -> None:
    # In the store for less than the delay (one fix), then back in the corridor.
    raw = [(float(t), "store" if 10 <= t < 10 + ZONE_SWITCH_DELAY_S else "corridor") for t in range(30)]
    _, events, _ = feed(raw)
    assert all(z != "store" for _, z, _ in events)


def test_containing_zones_enter_outermost_first_and_exit_innermost_first() -> None:
    raw = [(float(t), "counter" if 5 <= t < 20 else None) for t in range(40)]
    _, events, _ = feed(raw)
    kinds = [(k, z) for k, z, _ in events]
    assert kinds == [("zone_enter", "store"), ("zone_enter", "counter"),
                     ("zone_exit", "counter"), ("zone_exit", "store")]


def test_moving_from_counter_to_its_store_keeps_the_store() -> None:
    raw = [(float(t), "counter" if t < 20 else "store") for t in range(40)]
    _, events, _ = feed(raw)
    assert [(k, z) for k, z, _ in events] == [("zone_enter", "store"), ("zone_enter", "counter"),
                                              ("zone_exit", "counter")]


def test_dwell_marks_and_exit_dwell() -> None:
    h = ZoneHysteresis()
    dwell = []
    exits = []
    for t in range(200):
        for c in h.update(float(t), "store" if t < 150 else None, CHAIN):
            if c.kind == "dwell":
                dwell.append(c.extra["dwell_s"])
            if c.kind == "zone_exit":
                exits.append(c.extra["dwell_s"])
    assert dwell == [30.0, 60.0, 120.0]
    assert exits == [150.0]  # since-times of entry and exit are both shifted by the delay


def test_state_round_trip_keeps_membership() -> None:
    h, _, _ = feed([(float(t), "counter") for t in range(10)])
    again = ZoneHysteresis.from_state(h.to_state())
    assert again.current == "counter"
    assert again.update(10.0, "counter", CHAIN) == []  # no second enter after a restart


def test_stays_and_visitors_from_a_zone_column() -> None:
    devs = ["a"] * 100 + ["b"] * 10
    ts = [float(t) for t in range(100)] + [float(t) for t in range(10)]
    zones: list[str | None] = ["counter"] * 50 + [None] * 50 + ["store"] * 10
    stays = stays_from_zone_column(devs, ts, zones, CHAIN)
    got = {(s.device, s.zone): s.dwell_s for s in stays}
    assert got == {("a", "counter"): 49.0, ("a", "store"): 49.0, ("b", "store"): 9.0}
    visitors = classify_visitors(stays)
    assert visitors[("a", "counter")] is True
    assert visitors[("b", "store")] is (VISITOR_MIN_DWELL_S <= 9.0)
