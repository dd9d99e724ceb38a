"""The retention job: rows older than ``settings.retention_days`` are deleted, engine and campaign data
alike, on a fixed cadence of the injected clock.

Kept longer on purpose: billing rows of campaigns (offers, redemptions, purchases, exposures: budgets and
attribution are counted from them) and open stays. Positions are kept only ``POSITION_HISTORY_S``
(longer history belongs in the time-series database).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

from api.const import POSITION_HISTORY_S, RETENTION_SWEEP_S
from api.store import Store

log = logging.getLogger("instore.retention")

DAY_S: Final = 86_400.0


@dataclass(frozen=True, slots=True)
class Purged:
    t: float  # when the job ran (clock time)
    cutoff: float  # rows older than this were deleted
    engine_rows: int
    campaign_rows: int


class RetentionJob:
    """``maybe_run(now)`` purges when ``every_s`` has passed since the last attempt (the first call runs)."""

    def __init__(self, retention_days: int, store: Store, campaign_store: Any = None, *,
                 every_s: float = RETENTION_SWEEP_S, positions_keep_s: float = POSITION_HISTORY_S) -> None:
        if retention_days < 1:
            raise ValueError(f"retention_days must be >= 1, got {retention_days}")
        self.keep_s = retention_days * DAY_S
        self.store = store
        self.campaign_store = campaign_store
        self.every_s = every_s
        self.positions_keep_s = min(positions_keep_s, self.keep_s)
        self.last: Purged | None = None
        self._attempted: float | None = None  # a failed run waits a period too (no hot retry loop)
        self.runs = 0
        self.rows = 0

    def due(self, now: float) -> bool:
        return self._attempted is None or now - self._attempted >= self.every_s

    def maybe_run(self, now: float) -> Purged | None:
        return self.run(now) if self.due(now) else None

    def run(self, now: float) -> Purged:
        self._attempted = now
        cutoff = now - self.keep_s
        engine_rows = self.store.purge(cutoff, now - self.positions_keep_s)
        campaign_rows = self.campaign_store.purge_before(cutoff) if self.campaign_store is not None else 0
        self.last = Purged(now, cutoff, int(engine_rows), int(campaign_rows))
        self.runs += 1
        self.rows += self.last.engine_rows + self.last.campaign_rows
        if engine_rows or campaign_rows:
            log.info("retention: purged %d engine and %d campaign rows older than %d days", engine_rows,
                     campaign_rows, round(self.keep_s / DAY_S))
        return self.last

    def stats(self) -> dict[str, Any]:
        last = self.last
        return {"retention_days": round(self.keep_s / DAY_S, 3), "runs": self.runs, "rows_purged": self.rows,
                "last_run": None if last is None else last.t, "last_cutoff": None if last is None else last.cutoff}


__all__ = ["Purged", "RetentionJob"]
