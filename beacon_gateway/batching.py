"""Columnar batching of readings: a pure core, time passed in.

Readings accumulate in columns; a batch is due when its first reading is ``period_s`` old or when
it holds ``max_readings``. ``take`` hands over the columns with ``t0`` (the first reading's time)
and ``dt`` offsets, as the wire protocol wants them.
"""

from __future__ import annotations

from dataclasses import dataclass

DT_DECIMALS = 4  # 0.1 ms: finer than BLE timestamps are worth, and it keeps payloads short


@dataclass(frozen=True, slots=True)
class Batch:
    t0: float
    dt: list[float]
    ids: list[str]
    rssi: list[float]
    tx: list[float | None]

    def __len__(self) -> int:
        return len(self.dt)


class Batcher:
    def __init__(self, period_s: float, max_readings: int) -> None:
        self.period_s = period_s
        self.max_readings = max_readings
        self._t: list[float] = []
        self._ids: list[str] = []
        self._rssi: list[float] = []
        self._tx: list[float | None] = []
        self._opened_at: float | None = None

    def configure(self, period_s: float, max_readings: int) -> None:
        self.period_s = period_s
        self.max_readings = max_readings

    def __len__(self) -> int:
        return len(self._t)

    def add(self, t: float, beacon_id: str, rssi: float, tx: float | None, now: float) -> bool:
        """Add one reading; True when the batch is full and should be taken now."""
        if self._opened_at is None:
            self._opened_at = now
        self._t.append(t)
        self._ids.append(beacon_id)
        self._rssi.append(rssi)
        self._tx.append(tx)
        return len(self._t) >= self.max_readings

    def due(self, now: float) -> bool:
        if not self._t or self._opened_at is None:
            return False
        return len(self._t) >= self.max_readings or now - self._opened_at >= self.period_s

    def take(self) -> Batch | None:
        if not self._t:
            return None
        t0 = self._t[0]
        batch = Batch(t0, [round(t - t0, DT_DECIMALS) for t in self._t], self._ids, self._rssi, self._tx)
        self._t, self._ids, self._rssi, self._tx = [], [], [], []
        self._opened_at = None
        return batch
