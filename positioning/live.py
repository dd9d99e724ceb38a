"""The live locator: the one code path from readings to fixes and zone events.

The engine service feeds it each window of MQTT readings; ``instore locate`` feeds it a file one
second at a time. Both call ``push`` with columns and ``advance(now)``; ``advance`` processes every
buffered reading with ``t <= now`` and returns one fix per device heard since the last call (its
``t`` is the time of the device's latest reading) and the zone events that the fixes caused.

This first version is a placeholder (weighted centroid, no hysteresis); the positioning issue
replaces the internals behind the same interface.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from shapely import Point, prepared

from positioning.venue import Venue, zone_shape

EventType = Literal["zone_enter", "zone_exit", "dwell", "visit_end", "floor_change"]
RSSI_MIN_DBM: Final = -130.0
RSSI_MAX_DBM: Final = 0.0


@dataclass(frozen=True, slots=True)
class Readings:
    """A columnar batch of readings: equal-length arrays. ``tx_power`` is NaN where not sent."""

    t: npt.NDArray[np.float64]
    device: npt.NDArray[np.object_]
    anchor: npt.NDArray[np.object_]
    rssi: npt.NDArray[np.float64]
    tx_power: npt.NDArray[np.float64]

    @staticmethod
    def from_columns(t: Sequence[float] | npt.ArrayLike, device: Sequence[str] | npt.ArrayLike,
                     anchor: Sequence[str] | npt.ArrayLike, rssi: Sequence[float] | npt.ArrayLike,
                     tx_power: Sequence[float | None] | npt.ArrayLike | None = None) -> Readings:
        t_arr = np.asarray(t, dtype=np.float64)
        n = t_arr.shape[0]
        tx = np.full(n, np.nan) if tx_power is None else np.array(
            [np.nan if v is None else v for v in tx_power], dtype=np.float64)  # type: ignore[union-attr]
        return Readings(t_arr, np.asarray(device, dtype=object), np.asarray(anchor, dtype=object),
                        np.asarray(rssi, dtype=np.float64), tx)

    def __len__(self) -> int:
        return int(self.t.shape[0])


@dataclass(frozen=True, slots=True)
class Fix:
    device: str
    t: float
    x: float
    y: float
    floor: str | None
    accuracy_m: float
    zone: str | None  # innermost zone after hysteresis


@dataclass(frozen=True, slots=True)
class ZoneEvent:
    type: EventType
    device: str
    t: float
    zone: str | None
    floor: str | None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StepResult:
    fixes: tuple[Fix, ...]
    events: tuple[ZoneEvent, ...]
    dropped: Mapping[str, int]  # reason -> count


@dataclass(frozen=True, slots=True)
class AnchorInfo:
    id: str
    x: float
    y: float
    z: float
    floor: str | None
    rssi_1m: float
    path_loss_n: float


def anchors_from_venue(venue: Venue) -> tuple[AnchorInfo, ...]:
    out = [AnchorInfo(a.id, a.x, a.y, a.z, a.floor, a.rssi_1m, a.path_loss_n) for a in venue.anchors]
    out += [AnchorInfo(b.id, b.x, b.y, b.z, b.floor, b.rssi_1m, b.path_loss_n) for b in venue.beacons]
    return tuple(out)


class LiveLocator:
    """Causal, incremental positioning of many devices. Not thread-safe: one owner calls it."""

    def __init__(self, anchors: Sequence[AnchorInfo], venue: Venue | None = None) -> None:
        self._anchors = {a.id: a for a in anchors}
        self._venue = venue
        self._buffer: list[Readings] = []
        self._zone: dict[str, str | None] = {}
        self._zones = [] if venue is None else [
            (z.id, z.floor, prepared.prep(zone_shape(z)), zone_shape(z).area) for z in venue.zones]

    def push(self, readings: Readings) -> Mapping[str, int]:
        """Buffer readings (any order). Returns drops by reason (unknown anchor, implausible RSSI)."""
        known = np.array([a in self._anchors for a in readings.anchor], dtype=bool)
        plausible = np.isfinite(readings.rssi) & (readings.rssi <= RSSI_MAX_DBM) & (readings.rssi >= RSSI_MIN_DBM)
        keep = known & plausible
        self._buffer.append(Readings(readings.t[keep], readings.device[keep], readings.anchor[keep],
                                     readings.rssi[keep], readings.tx_power[keep]))
        return {"unknown_anchor": int((~known).sum()), "implausible_rssi": int((known & ~plausible).sum())}

    def advance(self, now: float) -> StepResult:
        if not self._buffer:
            return StepResult((), (), {})
        allr = _concat(self._buffer)
        due = allr.t <= now
        later = ~due
        self._buffer = [Readings(allr.t[later], allr.device[later], allr.anchor[later], allr.rssi[later],
                                 allr.tx_power[later])] if later.any() else []
        fixes: list[Fix] = []
        events: list[ZoneEvent] = []
        for dev in sorted(set(allr.device[due].tolist())):
            m = due & (allr.device == dev)
            anchors = [self._anchors[a] for a in allr.anchor[m]]
            w = 10.0 ** (allr.rssi[m] / 10.0)
            x = float(np.sum(w * np.array([a.x for a in anchors])) / w.sum())
            y = float(np.sum(w * np.array([a.y for a in anchors])) / w.sum())
            floor = anchors[int(np.argmax(allr.rssi[m]))].floor
            t = float(allr.t[m].max())
            zone = self._innermost(floor, x, y)
            prev = self._zone.get(dev)
            if zone != prev:
                if prev is not None:
                    events.append(ZoneEvent("zone_exit", dev, t, prev, floor))
                if zone is not None:
                    events.append(ZoneEvent("zone_enter", dev, t, zone, floor))
                self._zone[dev] = zone
            fixes.append(Fix(dev, t, x, y, floor, 5.0, zone))
        return StepResult(tuple(fixes), tuple(events), {})

    def _innermost(self, floor: str | None, x: float, y: float) -> str | None:
        p = Point(x, y)
        best: tuple[float, str] | None = None
        for zid, zfloor, shape, area in self._zones:
            if zfloor == floor and shape.contains(p) and (best is None or area < best[0]):
                best = (area, zid)
        return None if best is None else best[1]

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state to persist (zone membership), for restart without re-entering stays."""
        return {"zone": dict(self._zone)}

    def restore(self, state: Mapping[str, Any]) -> None:
        self._zone = dict(state.get("zone", {}))


def _concat(parts: list[Readings]) -> Readings:
    if len(parts) == 1:
        return parts[0]
    return Readings(np.concatenate([p.t for p in parts]), np.concatenate([p.device for p in parts]),
                    np.concatenate([p.anchor for p in parts]), np.concatenate([p.rssi for p in parts]),
                    np.concatenate([p.tx_power for p in parts]))
