"""Stays in zones from sampled positions or from a zone column, with the truth_visits.csv rules.

A stay is a run of samples of one device inside one zone; a leave-and-return within
``STAY_JOIN_GAP_S`` does not split it. Containing zones count too (inside a counter means inside its
store). Used for the ground truth and, on the engine's zone column, by the scorer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import shapely

from positioning.venue import Venue, zone_shape

STAY_JOIN_GAP_S: Final = 5.0  # ARCHITECTURE.md: a leave-and-return within 5 s does not split a stay


@dataclass(frozen=True, slots=True)
class Stays:
    """Columns ``device, zone, start, end`` (seconds, same time base as the samples)."""

    device: npt.NDArray[np.object_]
    zone: npt.NDArray[np.object_]
    start: npt.NDArray[np.float64]
    end: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.start.shape[0])

    @property
    def dwell(self) -> npt.NDArray[np.float64]:
        return self.end - self.start

    @staticmethod
    def empty() -> Stays:
        return Stays(np.zeros(0, dtype=object), np.zeros(0, dtype=object), np.zeros(0), np.zeros(0))

    @staticmethod
    def concat(parts: Sequence[Stays]) -> Stays:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Stays.empty()
        out = Stays(np.concatenate([p.device for p in parts]), np.concatenate([p.zone for p in parts]),
                    np.concatenate([p.start for p in parts]), np.concatenate([p.end for p in parts]))
        order = np.lexsort((out.zone.astype(str), out.start, out.device.astype(str)))
        return Stays(out.device[order], out.zone[order], out.start[order], out.end[order])


def runs(device: npt.NDArray[np.object_], t: npt.NDArray[np.float64], inside: npt.NDArray[np.bool_],
         sample_s: float, join_gap_s: float = STAY_JOIN_GAP_S) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Stays of one zone: ``(first, last)`` row indices into the samples, which must be sorted by
    (device, t). Two inside samples of a device further apart than ``join_gap_s + sample_s`` (the
    device was out for more than ``join_gap_s``) start a new stay."""
    idx = np.flatnonzero(inside)
    if idx.size == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z
    dev = device[idx]
    tt = t[idx]
    new = np.ones(idx.size, dtype=bool)
    new[1:] = (dev[1:] != dev[:-1]) | (np.diff(tt) > join_gap_s + sample_s + 1e-9)
    starts = np.flatnonzero(new)
    ends = np.concatenate([starts[1:] - 1, [idx.size - 1]])
    return idx[starts], idx[ends]


def stays_from_positions(venue: Venue, device: npt.NDArray[np.object_], t: npt.NDArray[np.float64],
                         x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], floor: npt.NDArray[np.object_],
                         sample_s: float = 1.0) -> Stays:
    """Every stay of every device in every zone (true position inside the polygon)."""
    order = np.lexsort((t, device.astype(str)))
    device, t, x, y, floor = device[order], t[order], x[order], y[order], floor[order]
    parts = []
    for z in venue.zones:
        on = floor == z.floor
        inside = np.zeros(t.size, dtype=bool)
        if on.any():
            shape = zone_shape(z)
            shapely.prepare(shape)
            inside[on] = shapely.intersects_xy(shape, x[on], y[on])
        first, last = runs(device, t, inside, sample_s)
        if first.size:
            parts.append(Stays(device[first], np.full(first.size, z.id, dtype=object), t[first], t[last]))
    return Stays.concat(parts)


def stays_from_zone_column(device: npt.NDArray[np.object_], t: npt.NDArray[np.float64],
                           zone: npt.NDArray[np.object_], containers: Mapping[str, Sequence[str]],
                           sample_s: float = 1.0) -> Stays:
    """Stays read off an innermost-zone column (the engine's P.csv), containing zones included."""
    order = np.lexsort((t, device.astype(str)))
    device, t, zone = device[order], t[order], zone[order]
    labels = {str(z) for z in zone.tolist() if z}
    parts = []
    for zid in sorted(labels | {c for z in labels for c in containers.get(z, ())}):
        members = [z for z in labels if z == zid or zid in containers.get(z, ())]
        inside = np.isin(zone, np.array(members, dtype=object))
        first, last = runs(device, t, inside, sample_s)
        if first.size:
            parts.append(Stays(device[first], np.full(first.size, zid, dtype=object), t[first], t[last]))
    return Stays.concat(parts)


def zone_containers(venue: Venue) -> dict[str, list[str]]:
    """For each zone, the zones that contain it (a counter's store)."""
    shapes = {z.id: zone_shape(z) for z in venue.zones}
    grown = {k: v.buffer(0.01) for k, v in shapes.items()}
    return {z.id: [o.id for o in venue.zones
                   if o.id != z.id and o.floor == z.floor and grown[o.id].covers(shapes[z.id])]
            for z in venue.zones}


def innermost_zone(venue: Venue, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64],
                   floor: npt.NDArray[np.object_]) -> npt.NDArray[np.object_]:
    """The innermost zone id at each position ('' when in none)."""
    out = np.full(x.size, "", dtype=object)
    best = np.full(x.size, np.inf)
    for z in venue.zones:
        on = np.flatnonzero(floor == z.floor)
        if on.size == 0:
            continue
        shape = zone_shape(z)
        shapely.prepare(shape)
        hit = on[shapely.intersects_xy(shape, x[on], y[on])]
        area = shape.area
        better = hit[area < best[hit]]
        out[better] = z.id
        best[better] = area
    return out


@dataclass(frozen=True, slots=True)
class RouteSteps:
    """Each device's path through the zones: runs of the same innermost zone ('' = in none)."""

    device: npt.NDArray[np.object_]
    step: npt.NDArray[np.int64]
    zone: npt.NDArray[np.object_]
    floor: npt.NDArray[np.object_]
    start: npt.NDArray[np.float64]
    end: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.start.shape[0])


def zone_routes(venue: Venue, device: npt.NDArray[np.object_], t: npt.NDArray[np.float64],
                x: npt.NDArray[np.float64], y: npt.NDArray[np.float64],
                floor: npt.NDArray[np.object_]) -> RouteSteps:
    """The sequence of innermost zones each device went through (for flows between zones)."""
    order = np.lexsort((t, device.astype(str)))
    device, t, x, y, floor = device[order], t[order], x[order], y[order], floor[order]
    zone = innermost_zone(venue, x, y, floor)
    if t.size == 0:
        z = np.zeros(0, dtype=object)
        return RouteSteps(z, np.zeros(0, dtype=np.int64), z, z, np.zeros(0), np.zeros(0))
    new = np.ones(t.size, dtype=bool)
    new[1:] = (device[1:] != device[:-1]) | (zone[1:] != zone[:-1]) | (floor[1:] != floor[:-1])
    starts = np.flatnonzero(new)
    ends = np.concatenate([starts[1:] - 1, [t.size - 1]])
    dev = device[starts]
    first_of_device = np.ones(starts.size, dtype=bool)
    first_of_device[1:] = dev[1:] != dev[:-1]
    group_start = np.maximum.accumulate(np.where(first_of_device, np.arange(starts.size), 0))
    step = np.arange(starts.size) - group_start
    return RouteSteps(dev, step.astype(np.int64), zone[starts], floor[starts], t[starts], t[ends])
