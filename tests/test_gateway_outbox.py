"""The SQLite outbox: seq persisted across reopen, ack deletes, bounds drop the oldest and count it."""

from __future__ import annotations

from pathlib import Path

from beacon_gateway.batching import Batcher
from beacon_gateway.outbox import Outbox


def test_fresh_outbox_starts_seq_at_wall_clock_ms_and_persists_it(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", max_batches=10, max_bytes=10**6, wall=lambda: 1763870000.25)
    assert ob.next_seq == 1763870000250
    seqs = [ob.append(lambda s: f"batch {s}".encode()) for _ in range(3)]
    assert seqs == [1763870000250, 1763870000251, 1763870000252]
    assert ob.ack(seqs[0]) and not ob.ack(seqs[0])
    ob.close()
    again = Outbox(tmp_path / "o.sqlite", max_batches=10, max_bytes=10**6, wall=lambda: 1.0)  # clock went back
    assert again.next_seq == seqs[-1] + 1
    assert again.pending() == [(seqs[1], f"batch {seqs[1]}".encode()), (seqs[2], f"batch {seqs[2]}".encode())]
    assert again.pending(after_seq=seqs[1]) == [(seqs[2], f"batch {seqs[2]}".encode())]
    assert again.depth == 2 and again.bytes == 2 * len(f"batch {seqs[1]}")


def test_bounds_drop_oldest_first_and_count(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", max_batches=4, max_bytes=10**6, wall=lambda: 0.0)
    for _ in range(10):
        ob.append(lambda s: b"x" * 10)
    assert [s for s, _ in ob.pending()] == [6, 7, 8, 9] and ob.dropped == 6 and ob.depth == 4
    by_bytes = Outbox(tmp_path / "b.sqlite", max_batches=100, max_bytes=35, wall=lambda: 0.0)
    for _ in range(5):
        by_bytes.append(lambda s: b"y" * 10)
    assert [s for s, _ in by_bytes.pending()] == [2, 3, 4] and by_bytes.bytes == 30 and by_bytes.dropped == 2
    ob.close()
    assert Outbox(tmp_path / "o.sqlite", max_batches=4, max_bytes=10**6).dropped == 6


def test_batcher_period_size_and_columns() -> None:
    b = Batcher(period_s=1.0, max_readings=3)
    assert not b.due(0.0) and b.take() is None
    assert not b.add(100.0, "a", -70, -59, now=10.0)
    assert not b.due(10.5) and b.due(11.0)
    assert not b.add(100.25, "b", -71, None, now=10.6)
    assert b.add(100.5, "c", -72, -60, now=10.7)  # full
    batch = b.take()
    assert batch is not None and len(b) == 0
    assert (batch.t0, batch.dt, batch.ids, batch.rssi, batch.tx) == (
        100.0, [0.0, 0.25, 0.5], ["a", "b", "c"], [-70, -71, -72], [-59, None, -60])
    b.configure(0.1, 10)
    b.add(200.0, "d", -70, None, now=20.0)
    assert b.due(20.1)
