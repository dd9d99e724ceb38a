"""Which proximity triggers have fired for which shopper, as boolean matrices, so that a window of
positions is checked and re-armed with a few array operations instead of Python per position.

A proximity *target* is a zone with a radius and the campaigns that trigger there (one column). A
shopper has a row (assigned on first sight, released when the engine forgets them). ``all[row, col]``
says every campaign of the target fired for that shopper and has not re-armed; ``any`` that some did
(after a re-index added campaigns to the target, only the new ones are armed: ``partial`` lists the
fired ones). A pair re-arms when the shopper's last position of a window on the target's floor is
beyond radius + hysteresis, or when the shopper is positioned on another floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ROWS_START: Final = 1024  # rows allocated up front; doubled when full


class FiredTriggers:
    def __init__(self) -> None:
        self._row: dict[str, int] = {}
        self._free: list[int] = []
        self._next = 0
        self.targets: list[tuple[str, frozenset[str]]] = []  # column -> (zone, campaign ids)
        self.all: BoolArray = np.zeros((ROWS_START, 0), dtype=bool)
        self.any: BoolArray = np.zeros((ROWS_START, 0), dtype=bool)
        self.partial: dict[tuple[int, int], frozenset[str]] = {}  # (row, column) -> campaigns fired, when not all

    # ------------------------------------------------------------------------------------ rows

    def rows(self, shoppers: Sequence[str]) -> IntArray:
        """Row of each shopper (assigning rows to new ones)."""
        missing = set(shoppers).difference(self._row)
        for s in sorted(missing):
            self._row[s] = self._take()
        return np.fromiter(map(self._row.__getitem__, shoppers), dtype=np.int64, count=len(shoppers))

    def _take(self) -> int:
        if self._free:
            return self._free.pop()
        if self._next >= self.all.shape[0]:
            grow = self.all.shape[0]
            self.all = np.vstack([self.all, np.zeros((grow, self.all.shape[1]), dtype=bool)])
            self.any = np.vstack([self.any, np.zeros((grow, self.any.shape[1]), dtype=bool)])
        self._next += 1
        return self._next - 1

    def release(self, shopper: str) -> None:
        row = self._row.pop(shopper, None)
        if row is None:
            return
        self.all[row] = False
        self.any[row] = False
        if self.partial:
            for key in [k for k in self.partial if k[0] == row]:
                del self.partial[key]
        self._free.append(row)

    def keep_only(self, shoppers: set[str]) -> None:
        """Release every row but those of ``shoppers`` (the engine's shoppers in memory)."""
        for s in [s for s in self._row if s not in shoppers]:
            self.release(s)

    # ------------------------------------------------------------------------------------ targets

    def retarget(self, targets: Sequence[tuple[str, frozenset[str]]]) -> None:
        """New columns after a re-index. What fired stays fired per (zone, campaign): a target keeps the
        fired campaigns it still has; campaigns new to it are armed."""
        fired_by_zone: dict[str, dict[int, set[str]]] = {}  # zone -> row -> campaigns fired there
        for col, (zone, ids) in enumerate(self.targets):
            for row in np.flatnonzero(self.any[:, col]).tolist():
                done = ids if self.all[row, col] else self.partial.get((row, col), frozenset())
                fired_by_zone.setdefault(zone, {}).setdefault(row, set()).update(done)
        n = self.all.shape[0]
        self.all = np.zeros((n, len(targets)), dtype=bool)
        self.any = np.zeros((n, len(targets)), dtype=bool)
        self.partial = {}
        for col, (zone, ids) in enumerate(targets):
            for row, fired_here in fired_by_zone.get(zone, {}).items():
                kept = frozenset(fired_here & ids)
                if not kept:
                    continue
                self.any[row, col] = True
                if kept == ids:
                    self.all[row, col] = True
                else:
                    self.partial[(row, col)] = kept
        self.targets = list(targets)

    # ------------------------------------------------------------------------------------ per window

    def rearm(self, rows: IntArray, col0: int, near_pos: IntArray, near_col: IntArray) -> None:
        """Re-arm what the shoppers of this floor's window (``rows``, one per position) moved away from.

        ``(near_pos, near_col)`` are the (position, floor column) pairs within radius + hysteresis; a
        shopper positioned twice is judged by their last position; columns of other floors re-arm."""
        n = rows.size
        if n == 0 or self.any.shape[1] == 0:
            return
        _, idx = np.unique(rows[::-1], return_index=True)
        last = n - 1 - idx
        urows = rows[last]
        fired = self.any[urows]
        if not fired.any():
            return
        slot = np.full(n, -1, dtype=np.int64)
        slot[last] = np.arange(last.size)
        u = slot[near_pos]
        ok = u >= 0
        within = np.zeros_like(fired)
        within[u[ok], col0 + near_col[ok]] = True
        cu, cc = np.nonzero(fired & ~within)
        if cu.size:
            r = urows[cu]
            self.any[r, cc] = False
            self.all[r, cc] = False
            if self.partial:
                for key in zip(r.tolist(), cc.tolist(), strict=True):
                    self.partial.pop(key, None)

    def fire(self, row: int, col: int) -> None:
        self.all[row, col] = True
        self.any[row, col] = True
        if self.partial:
            self.partial.pop((row, col), None)

    def shopper_count(self) -> int:
        return len(self._row)


__all__ = ["FiredTriggers"]
