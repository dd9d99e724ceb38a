"""Dedup by (gateway, seq): each batch applied once, bounded memory, state survives a restart."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from api.dedup import SeqDedup


def test_new_then_duplicate_then_window_slides() -> None:
    d = SeqDedup(window=64)
    assert d.check("gw-1", 10) == "new"
    assert d.check("gw-1", 10) == "duplicate"
    assert d.check("gw-1", 9) == "new"  # late but inside the window
    assert d.check("gw-1", 9) == "duplicate"
    assert d.check("gw-2", 10) == "new"  # gateways are independent
    assert d.check("gw-1", 200) == "new"  # slides the window
    assert d.check("gw-1", 10) == "stale"  # far below the window: dropped
    assert d.check("gw-1", 199) == "new"


def test_counter_reset_is_recognised_after_a_few_stale_batches() -> None:
    d = SeqDedup(window=64)
    d.check("gw-1", 10_000)
    assert [d.check("gw-1", s) for s in (0, 1, 2)] == ["stale", "stale", "reset"]
    assert d.check("gw-1", 3) == "new"
    assert d.check("gw-1", 2) == "duplicate"


def test_state_round_trip_and_dirty_tracking() -> None:
    d = SeqDedup(window=64)
    for s in (1, 2, 5):
        d.check("gw-1", s)
    d.check("gw-2", 7)
    assert d.dirty() == {"gw-1", "gw-2"}
    state = d.state()
    d.clean()
    assert d.dirty() == set()
    e = SeqDedup(window=64)
    e.restore(state)
    assert [e.check("gw-1", s) for s in (1, 2, 3, 5)] == ["duplicate", "duplicate", "new", "duplicate"]
    assert e.check("gw-2", 7) == "duplicate"
    assert len(state["gw-1"][1]) == 8  # 64 bits per gateway, whatever the traffic


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 300)), max_size=400))
def test_matches_a_set_within_the_window(msgs: list[tuple[str, int]]) -> None:
    """Differential: against an unbounded set, for sequences that never fall behind the window."""
    d = SeqDedup(window=512)
    seen: set[tuple[str, int]] = set()
    for gw, seq in msgs:
        verdict = d.check(gw, seq)
        assert verdict == ("duplicate" if (gw, seq) in seen else "new")
        seen.add((gw, seq))
