"""Gateway health counters and the status JSON published (retained) on the status topic."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Health:
    started_at: float
    adverts: int = 0
    readings: int = 0
    batches: int = 0
    batches_acked: int = 0
    adapter_restarts: int = 0
    config_version: int | None = None
    config_rejected: int = 0
    config_error: str | None = None
    drops: Counter[str] = field(default_factory=Counter)
    _rate_t: float | None = None
    _rate_adverts: int = 0
    _rate: float = 0.0

    def drop(self, reason: str, n: int = 1) -> None:
        self.drops[reason] += n

    def adverts_per_s(self, now: float) -> float:
        """Adverts per second since the previous call (the previous status)."""
        if self._rate_t is not None and now > self._rate_t:
            self._rate = (self.adverts - self._rate_adverts) / (now - self._rate_t)
        elif self._rate_t is None and now > self.started_at:
            self._rate = self.adverts / (now - self.started_at)
        self._rate_t, self._rate_adverts = now, self.adverts
        return self._rate

    def status(self, now: float, *, gateway: str, scanner: str, outbox_depth: int, outbox_bytes: int,
               outbox_dropped: int, connected: bool) -> dict[str, Any]:
        drops = dict(self.drops)
        if outbox_dropped:
            drops["outbox_full"] = outbox_dropped
        return {
            "state": "online",
            "gw": gateway,
            "t": round(now, 3),
            "uptime_s": round(now - self.started_at, 1),
            "scanner": scanner,
            "adverts": self.adverts,
            "adverts_per_s": round(self.adverts_per_s(now), 2),
            "readings": self.readings,
            "batches": self.batches,
            "batches_acked": self.batches_acked,
            "drops": drops,
            "outbox_depth": outbox_depth,
            "outbox_bytes": outbox_bytes,
            "adapter_restarts": self.adapter_restarts,
            "config_version": self.config_version,
            "config_rejected": self.config_rejected,
            "config_error": self.config_error,
            "connected": connected,
        }
