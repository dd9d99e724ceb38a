"""Radio model: log-distance path loss with per-anchor parameters, floor attenuation and device offsets.

``rssi = rssi_1m[a] + offset[device] - 10 * n[a] * log10(d) - FLOOR_LOSS_DB * |levels crossed|``
with ``d`` the 3-D distance between the anchor and the device. Anchors are fixed radio nodes with a
known position: gateways that hear beacons (gateway mode) or fixed beacons that phones hear (phone mode).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from positioning.const import (
    DEVICE_HEIGHT_M,
    FLOOR_LOSS_DB,
    MIN_DISTANCE_M,
    REFERENCE_TX_DBM,
)
from positioning.errors import PositioningError
from positioning.venue import Venue

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
AnyFloatArray = npt.NDArray[np.floating[Any]]

DEFAULT_FLOOR_HEIGHT_M = 4.0  # slab to slab when anchors.csv names floors without elevations


@dataclass(frozen=True, slots=True)
class AnchorTable:
    """Fixed radio nodes as columns. ``floor`` indexes ``floor_ids``; heights are above the floor slab."""

    ids: tuple[str, ...]
    x: FloatArray
    y: FloatArray
    z: FloatArray  # metres above its floor's slab; NaN means "at device height"
    floor: IntArray
    floor_ids: tuple[str, ...]  # "" when the input named no floors
    floor_level: FloatArray  # per floor: level number (for slabs crossed)
    floor_elevation: FloatArray  # per floor: slab elevation in metres
    rssi_1m: FloatArray
    path_loss_n: FloatArray

    @property
    def index(self) -> Mapping[str, int]:
        return {a: i for i, a in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def with_params(self, rssi_1m: FloatArray, path_loss_n: FloatArray) -> AnchorTable:
        return replace(self, rssi_1m=np.asarray(rssi_1m, dtype=np.float64),
                       path_loss_n=np.asarray(path_loss_n, dtype=np.float64))

    def abs_z(self, device_height: float) -> FloatArray:
        """Absolute anchor heights (slab elevation + height), device height where z is unknown."""
        z = np.where(np.isnan(self.z), device_height, self.z)
        return np.asarray(self.floor_elevation[self.floor] + z, dtype=np.float64)


def anchor_table_from_venue(venue: Venue) -> AnchorTable:
    floors = venue.floors
    fidx = {f.id: i for i, f in enumerate(floors)}
    nodes: list[tuple[str, str, float, float, float, float, float]] = [
        (a.id, a.floor, a.x, a.y, a.z, a.rssi_1m, a.path_loss_n) for a in venue.anchors
    ] + [(b.id, b.floor, b.x, b.y, b.z, b.rssi_1m, b.path_loss_n) for b in venue.beacons]
    if not nodes:
        raise PositioningError(f"venue {venue.id!r} has no anchors or beacons")
    return AnchorTable(
        ids=tuple(n[0] for n in nodes),
        x=np.array([n[2] for n in nodes], dtype=np.float64),
        y=np.array([n[3] for n in nodes], dtype=np.float64),
        z=np.array([n[4] for n in nodes], dtype=np.float64),
        floor=np.array([fidx[n[1]] for n in nodes], dtype=np.int64),
        floor_ids=tuple(f.id for f in floors),
        floor_level=np.array([f.level for f in floors], dtype=np.float64),
        floor_elevation=np.array([f.elevation_m for f in floors], dtype=np.float64),
        rssi_1m=np.array([n[5] for n in nodes], dtype=np.float64),
        path_loss_n=np.array([n[6] for n in nodes], dtype=np.float64),
    )


def anchor_table(ids: Sequence[str], x: npt.ArrayLike, y: npt.ArrayLike, z: npt.ArrayLike | None = None,
                 floor: Sequence[str] | None = None, rssi_1m: npt.ArrayLike | None = None,
                 path_loss_n: npt.ArrayLike | None = None, default_rssi_1m: float = REFERENCE_TX_DBM,
                 default_n: float = 2.0) -> AnchorTable:
    """An anchor table from plain columns (``instore locate --anchors``). NaN entries take defaults."""
    n = len(ids)
    labels = [str(f) for f in floor] if floor is not None else [""] * n
    floor_ids = tuple(dict.fromkeys(labels))
    levels = _floor_levels(floor_ids)
    fidx = {f: i for i, f in enumerate(floor_ids)}

    def col(values: npt.ArrayLike | None, default: float) -> FloatArray:
        if values is None:
            return np.full(n, default, dtype=np.float64)
        arr = np.asarray(values, dtype=np.float64)
        return np.where(np.isnan(arr), default, arr)

    return AnchorTable(
        ids=tuple(ids),
        x=np.asarray(x, dtype=np.float64),
        y=np.asarray(y, dtype=np.float64),
        z=np.full(n, np.nan) if z is None else np.asarray(z, dtype=np.float64),
        floor=np.array([fidx[f] for f in labels], dtype=np.int64),
        floor_ids=floor_ids,
        floor_level=levels,
        floor_elevation=levels * DEFAULT_FLOOR_HEIGHT_M,
        rssi_1m=col(rssi_1m, default_rssi_1m),
        path_loss_n=col(path_loss_n, default_n),
    )


def _floor_levels(labels: Sequence[str]) -> FloatArray:
    """Levels for free-text floor labels: numbers when they all parse (``0``, ``1``, ``-1``, ``L2``), else order."""
    parsed: list[float] = []
    for label in labels:
        digits = label.strip().lstrip("LlFf")
        try:
            parsed.append(float(digits))
        except ValueError:
            return np.arange(len(labels), dtype=np.float64)
    return np.array(parsed, dtype=np.float64)


def expected_rssi(anchors: AnchorTable, anchor_idx: IntArray, x: FloatArray, y: FloatArray,
                  floor_idx: IntArray | None = None, device_height: float = DEVICE_HEIGHT_M,
                  offset: FloatArray | float = 0.0) -> FloatArray:
    """Mean RSSI of anchor ``anchor_idx`` for a device at (x, y) on ``floor_idx`` (broadcasting)."""
    d = distance(anchors, anchor_idx, x, y, floor_idx, device_height)
    mu = anchors.rssi_1m[anchor_idx] + offset - 10.0 * anchors.path_loss_n[anchor_idx] * np.log10(d)
    if floor_idx is not None:
        mu = mu - FLOOR_LOSS_DB * np.abs(anchors.floor_level[anchors.floor[anchor_idx]]
                                         - anchors.floor_level[floor_idx])
    return np.asarray(mu, dtype=np.float64)


def body_share(ux: AnyFloatArray, uy: AnyFloatArray, walking: AnyFloatArray | float, dx: AnyFloatArray,
               dy: AnyFloatArray, d: AnyFloatArray) -> AnyFloatArray:
    """How much of a carrier's body loss falls on a link, 0..1: for a walker heading (ux, uy) (unit
    vector), the cosine between its heading and the horizontal path from the anchor to it, (dx, dy) =
    device - anchor, over the 3-D distance ``d`` (an anchor squarely behind, at the same height, gets
    all of it; one ahead or overhead none); for someone standing, whose heading is unknown, that
    averaged over headings. ``walking`` is the weight of the walking case (0..1). Keeps float32 inputs
    in float32."""
    behind = np.clip((ux * dx + uy * dy) / d, 0.0, 1.0)
    around = np.sqrt(dx * dx + dy * dy) / d * (1.0 / np.pi)
    out: AnyFloatArray = walking * behind + (1.0 - walking) * around
    return out


def distance(anchors: AnchorTable, anchor_idx: IntArray, x: FloatArray, y: FloatArray,
             floor_idx: IntArray | None = None, device_height: float = DEVICE_HEIGHT_M) -> FloatArray:
    az = anchors.abs_z(device_height)[anchor_idx]
    dev_floor = anchors.floor[anchor_idx] if floor_idx is None else floor_idx
    dz = az - (anchors.floor_elevation[dev_floor] + device_height)
    d2 = (x - anchors.x[anchor_idx]) ** 2 + (y - anchors.y[anchor_idx]) ** 2 + dz**2
    return np.asarray(np.maximum(np.sqrt(d2), MIN_DISTANCE_M), dtype=np.float64)
