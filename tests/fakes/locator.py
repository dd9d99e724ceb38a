"""A scripted stand-in for ``positioning.live.LiveLocator``: each device is placed at the anchor it
hears loudest, and its zone is the one given for that anchor. Deterministic and simple, so pipeline
tests check the wiring (windows, storage, acks, restart) independently of the positioning core."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from positioning.live import Fix, Readings, StepResult, ZoneEvent


class FakeLocator:
    def __init__(self, anchors: Mapping[str, tuple[float, float, str]], zones: Mapping[str, str | None]) -> None:
        self.anchors = dict(anchors)  # anchor -> (x, y, floor)
        self.zones = dict(zones)  # anchor -> zone
        self.buffer: list[tuple[float, str, str, float]] = []
        self.zone: dict[str, str | None] = {}
        self.advanced: list[float] = []
        self.pushed = 0

    def push(self, r: Readings) -> Mapping[str, int]:
        known = np.array([a in self.anchors for a in r.anchor], dtype=bool)
        for i in np.flatnonzero(known):
            self.buffer.append((float(r.t[i]), str(r.device[i]), str(r.anchor[i]), float(r.rssi[i])))
        self.pushed += int(known.sum())
        return {"unknown_anchor": int((~known).sum())}

    def advance(self, now: float) -> StepResult:
        self.advanced.append(now)
        due = [b for b in self.buffer if b[0] <= now]
        self.buffer = [b for b in self.buffer if b[0] > now]
        best: dict[str, tuple[float, str, float]] = {}
        for t, dev, anchor, rssi in due:
            cur = best.get(dev)
            if cur is None or rssi > cur[2] or (rssi == cur[2] and t > cur[0]):
                best[dev] = (max(t, cur[0]) if cur else t, anchor, rssi)
            else:
                best[dev] = (max(t, cur[0]), cur[1], cur[2])
        fixes, events = [], []
        for dev in sorted(best):
            t, anchor, _ = best[dev]
            x, y, floor = self.anchors[anchor]
            zone = self.zones.get(anchor)
            prev = self.zone.get(dev)
            if zone != prev:
                if prev is not None:
                    events.append(ZoneEvent("zone_exit", dev, t, prev, floor))
                if zone is not None:
                    events.append(ZoneEvent("zone_enter", dev, t, zone, floor))
                self.zone[dev] = zone
            fixes.append(Fix(dev, t, x, y, floor, 2.0, zone))
        return StepResult(tuple(fixes), tuple(events), {})

    def snapshot(self) -> dict[str, Any]:
        return {"zone": dict(self.zone)}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.zone = dict(state.get("zone", {}))
