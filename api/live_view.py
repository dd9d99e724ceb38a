"""What the API and the dashboard read: an immutable view of the engine's latest state.

The engine thread replaces the view after each commit (one reference assignment, so readers in
other threads always see a consistent view); the SSE stream sends the pre-serialised frame.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from api.const import LIVE_MAX_AGE_S, RECENT_EVENTS_KEPT
from api.pipeline import Committed, Pipeline
from positioning.live import Fix
from positioning.venue import Venue

FRAME_DECIMALS: Final = 2  # centimetres are plenty for dots on a map


@dataclass(frozen=True, slots=True)
class View:
    version: int = 0
    wall: float = 0.0
    watermark: float | None = None
    positions: tuple[Fix, ...] = ()
    occupancy: dict[str, int] = field(default_factory=dict)
    gateways: tuple[dict[str, Any], ...] = ()
    events: tuple[dict[str, Any], ...] = ()
    frame: bytes = b"{}"
    by_device: Mapping[str, Fix] = field(default_factory=dict)  # the same positions, by device


class LiveView:
    """An outlet of the pipeline; ``view`` is safe to read from any thread."""

    def __init__(self, venue: Venue, pipeline: Pipeline | None = None) -> None:
        self.venue = venue
        self.pipeline = pipeline
        self.view = View()
        self.changed = threading.Condition()
        self._events: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS_KEPT)
        self.extra_events: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS_KEPT)  # offers, from other outlets
        self._zone_floor = {z.id: z.floor for z in venue.zones}

    def emit(self, c: Committed) -> None:
        p = self.pipeline
        if p is None:
            return
        for e in c.events:
            self._events.append(e)
        while self.extra_events:
            self._events.append(self.extra_events.popleft())
        horizon = (c.watermark or 0.0) - LIVE_MAX_AGE_S
        positions = tuple(sorted((f for f in p.latest.values() if f.t >= horizon), key=lambda f: f.device))
        occupancy = p.occupancy()
        gateways = tuple(_gateway_dict(g) for g in p.gateway_rows())
        events = tuple(self._events)
        frame = {
            "t": c.watermark,
            "wall": c.wall,
            "positions": [[f.device, f.floor, round(f.x, FRAME_DECIMALS), round(f.y, FRAME_DECIMALS), f.zone,
                           round(f.accuracy_m, 1)] for f in positions],
            "occupancy": occupancy,
            "gateways": {"up": sum(g["state"] == "up" for g in gateways),
                         "down": sum(g["state"] == "down" for g in gateways),
                         "unknown": sum(g["state"] == "unknown" for g in gateways),
                         "down_ids": [g["id"] for g in gateways if g["state"] == "down"][:50]},
            "events": list(events[-12:]),
            "counters": {"readings": p.counters.readings_applied, "fixes": p.counters.fixes,
                         "messages": p.counters.messages, "errors": sum(p.counters.errors.values()),
                         "duplicates": p.counters.duplicates},
        }
        view = View(self.view.version + 1, c.wall, c.watermark, positions, occupancy, gateways, events,
                    json.dumps(frame, separators=(",", ":"), default=str).encode(), {f.device: f for f in positions})
        with self.changed:
            self.view = view
            self.changed.notify_all()


def _gateway_dict(g: Any) -> dict[str, Any]:
    return {"id": g.id, "state": g.state, "reason": g.reason, "last_seen": g.last_seen, "readings": g.readings,
            "health": dict(g.health)}


def fix_dict(f: Fix) -> dict[str, Any]:
    """A position in the wire shape of ``instore/v1/<venue>/positions/<device>``."""
    return {"device": f.device, "t": f.t, "x": round(f.x, 3), "y": round(f.y, 3), "floor": f.floor,
            "accuracy_m": round(f.accuracy_m, 2), "zone": f.zone}
