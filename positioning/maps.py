"""Rasterised venue maps for fast vectorized lookups: walkable cells, innermost zone, nearest walkable.

A ``SiteMap`` has one raster per floor (same indices as the ``AnchorTable``'s floors). Built from a
venue (walkable areas with their holes, zones) or, without a venue, as open rectangles around the
anchors. Connectors are kept as arrays for the tracker's floor changes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import shapely
from scipy import ndimage
from scipy.spatial import cKDTree

from positioning.radio import AnchorTable
from positioning.venue import Venue, walkable_shape, zone_shape

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

RASTER_RES_M = 0.25  # fine enough for 0.3 m walls; a 120 x 80 m floor is 154k cells
# Without a venue the engine does not know where the space ends. It keeps devices within the anchors'
# footprint plus a small margin: beyond the outermost receivers RSSI hardly tells how far out a device
# is, and a wide box drags estimates outwards (it holds more area far out than near in). A box 3 m
# wider on each side (and narrow layouts widened to 12 m) put the engine 1.2x the weighted centroid's
# median error over rooms, corridors and halls of the independent hall generator; this one 0.95x.
OPEN_MARGIN_M = 1.0  # devices may be this far outside the anchors' bounding box
OPEN_NARROW_SHARE = 0.5  # a row of anchors (a corridor) is widened to this share of their spacing
OPEN_MIN_EXTENT_M = 4.0  # ... and to at least this (anchors mounted side by side still leave a room)
OPEN_SINGLE_EXTENT_M = 12.0  # a lone anchor on its floor: the space around it
MAX_RASTER_CELLS = 4_000_000  # coarsen the raster for very large open areas
NO_ZONE = -1


@dataclass(frozen=True, slots=True)
class FloorRaster:
    x0: float
    y0: float
    res: float
    walkable: BoolArray  # (ny, nx)
    zone: npt.NDArray[np.int32]  # (ny, nx) index into SiteMap.zone_ids of the innermost zone, or -1
    nearest_i: npt.NDArray[np.int32]  # (ny, nx) row of the nearest walkable cell
    nearest_j: npt.NDArray[np.int32]

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.walkable.shape[0]), int(self.walkable.shape[1]))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        ny, nx = self.shape
        return (self.x0, self.y0, self.x0 + nx * self.res, self.y0 + ny * self.res)

    def cells(self, x: FloatArray, y: FloatArray) -> tuple[IntArray, IntArray, BoolArray]:
        ny, nx = self.shape
        j = np.floor((x - self.x0) / self.res).astype(np.int64)
        i = np.floor((y - self.y0) / self.res).astype(np.int64)
        inside = (i >= 0) & (i < ny) & (j >= 0) & (j < nx)
        return np.clip(i, 0, ny - 1), np.clip(j, 0, nx - 1), inside

    def is_walkable(self, x: FloatArray, y: FloatArray) -> BoolArray:
        i, j, inside = self.cells(x, y)
        return np.asarray(inside & self.walkable[i, j], dtype=bool)

    def zone_at(self, x: FloatArray, y: FloatArray) -> npt.NDArray[np.int32]:
        i, j, inside = self.cells(x, y)
        return np.where(inside, self.zone[i, j], NO_ZONE).astype(np.int32)

    def snap(self, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Points moved to the nearest walkable cell centre when they are not walkable."""
        i, j, inside = self.cells(x, y)
        ok = inside & self.walkable[i, j]
        ni, nj = self.nearest_i[i, j], self.nearest_j[i, j]
        sx = np.where(ok, x, self.x0 + (nj + 0.5) * self.res)
        sy = np.where(ok, y, self.y0 + (ni + 0.5) * self.res)
        return sx, sy


@dataclass(frozen=True, slots=True)
class SiteMap:
    floors: tuple[FloorRaster, ...]
    zone_ids: tuple[str, ...]
    zone_parent: tuple[int, ...]  # index of the smallest zone containing each zone, or -1
    zone_floor: tuple[int, ...]
    # Connectors as columns: an end on floor fa at (xa, ya) leads to floor fb at (xb, yb), both ways.
    conn_fa: IntArray
    conn_xa: FloatArray
    conn_ya: FloatArray
    conn_fb: IntArray
    conn_xb: FloatArray
    conn_yb: FloatArray
    has_venue: bool

    def zone_chain(self, zone_index: int) -> tuple[str, ...]:
        """The zone and every zone containing it, innermost first."""
        out: list[str] = []
        k = zone_index
        while k != NO_ZONE:
            out.append(self.zone_ids[k])
            k = self.zone_parent[k]
        return tuple(out)


def _grid(bounds: tuple[float, float, float, float], res: float) -> tuple[float, float, int, int, float]:
    x0, y0, x1, y1 = bounds
    while ((x1 - x0) / res) * ((y1 - y0) / res) > MAX_RASTER_CELLS:
        res *= 2.0
    nx = max(1, int(np.ceil((x1 - x0) / res)))
    ny = max(1, int(np.ceil((y1 - y0) / res)))
    return x0, y0, nx, ny, res


def _nearest(walkable: BoolArray) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    if not walkable.any():
        ny, nx = walkable.shape
        ii, jj = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        return ii.astype(np.int32), jj.astype(np.int32)
    _, (ni, nj) = ndimage.distance_transform_edt(~walkable, return_indices=True)
    return ni.astype(np.int32), nj.astype(np.int32)


def site_map_from_venue(venue: Venue, anchors: AnchorTable) -> SiteMap:
    zones = list(venue.zones)
    shapes = [zone_shape(z) for z in zones]
    areas = np.array([s.area for s in shapes])
    parent = []
    for k, (z, s) in enumerate(zip(zones, shapes, strict=True)):
        best, best_area = NO_ZONE, np.inf
        grown = s.buffer(-0.01)
        for m, (z2, s2) in enumerate(zip(zones, shapes, strict=True)):
            if m != k and z2.floor == z.floor and areas[m] > areas[k] and areas[m] < best_area \
                    and s2.buffer(0.02).covers(grown):
                best, best_area = m, areas[m]
        parent.append(best)
    floor_index = {f: i for i, f in enumerate(anchors.floor_ids)}
    rasters = []
    for f in venue.floors:
        xs = [p[0] for p in f.outline]
        ys = [p[1] for p in f.outline]
        x0, y0, nx, ny, res = _grid((min(xs), min(ys), max(xs), max(ys)), RASTER_RES_M)
        cx = x0 + (np.arange(nx) + 0.5) * res
        cy = y0 + (np.arange(ny) + 0.5) * res
        gx, gy = np.meshgrid(cx, cy)
        walk_geom = walkable_shape(venue, f.id)
        shapely.prepare(walk_geom)
        walkable = shapely.contains_xy(walk_geom, gx, gy)
        zone = np.full((ny, nx), NO_ZONE, dtype=np.int32)
        for k in np.argsort(-areas):  # largest first, so the innermost zone paints last
            if zones[k].floor != f.id:
                continue
            zs = shapes[k]
            shapely.prepare(zs)
            zone[shapely.contains_xy(zs, gx, gy)] = k
        ni, nj = _nearest(walkable)
        rasters.append(FloorRaster(x0, y0, res, walkable, zone, ni, nj))
    ordered = tuple(rasters[[fl.id for fl in venue.floors].index(fid)] for fid in anchors.floor_ids)
    fa, xa, ya, fb, xb, yb = [], [], [], [], [], []
    for c in venue.connectors:
        for p, q in ((c.a, c.b), (c.b, c.a)):
            fa.append(floor_index[p.floor])
            xa.append(p.x)
            ya.append(p.y)
            fb.append(floor_index[q.floor])
            xb.append(q.x)
            yb.append(q.y)
    return SiteMap(ordered, tuple(z.id for z in zones), tuple(parent), tuple(floor_index[z.floor] for z in zones),
                   np.array(fa, dtype=np.int64), np.array(xa, dtype=np.float64), np.array(ya, dtype=np.float64),
                   np.array(fb, dtype=np.int64), np.array(xb, dtype=np.float64), np.array(yb, dtype=np.float64),
                   has_venue=True)


def anchor_spacing(anchors: AnchorTable) -> float | None:
    """Median distance from an anchor to its nearest neighbour on the same floor, anchors at the same
    spot (a gateway and a beacon on one mount) counted once (None when no floor has two spots)."""
    nearest: list[FloatArray] = []
    for f in np.unique(anchors.floor):
        on = anchors.floor == f
        xy = np.unique(np.round(np.stack([anchors.x[on], anchors.y[on]], axis=1), 1), axis=0)
        if xy.shape[0] < 2:
            continue
        d, _ = cKDTree(xy).query(xy, k=2)
        nearest.append(d[:, 1])
    return float(np.median(np.concatenate(nearest))) if nearest else None


def _widened(lo: float, hi: float, extent: float) -> tuple[float, float]:
    pad = max(0.0, extent - (hi - lo)) / 2.0
    return lo - pad, hi + pad


def open_site_map(anchors: AnchorTable, extra_x: FloatArray | None = None,
                  extra_y: FloatArray | None = None) -> SiteMap:
    """Without a venue: every floor is an open rectangle around all anchors and any known device
    positions (survey points), plus OPEN_MARGIN_M; a narrow layout (anchors along one corridor) is
    widened to OPEN_NARROW_SHARE of the anchors' spacing, at least OPEN_MIN_EXTENT_M."""
    xs = anchors.x if extra_x is None else np.concatenate([anchors.x, extra_x])
    ys = anchors.y if extra_y is None else np.concatenate([anchors.y, extra_y])
    spacing = anchor_spacing(anchors)
    extent = OPEN_SINGLE_EXTENT_M if spacing is None else max(OPEN_NARROW_SHARE * spacing, OPEN_MIN_EXTENT_M)
    x0, x1 = _widened(float(xs.min()), float(xs.max()), extent)
    y0, y1 = _widened(float(ys.min()), float(ys.max()), extent)
    margin = OPEN_MARGIN_M
    gx0, gy0, nx, ny, res = _grid((x0 - margin, y0 - margin, x1 + margin, y1 + margin), RASTER_RES_M * 2)
    walkable = np.ones((ny, nx), dtype=bool)
    zone = np.full((ny, nx), NO_ZONE, dtype=np.int32)
    ni, nj = _nearest(walkable)
    raster = FloorRaster(gx0, gy0, res, walkable, zone, ni, nj)
    empty_i = np.zeros(0, dtype=np.int64)
    empty_f = np.zeros(0, dtype=np.float64)
    return SiteMap(tuple(raster for _ in anchors.floor_ids), (), (), (), empty_i, empty_f, empty_f, empty_i,
                   empty_f, empty_f, has_venue=False)


WALL_CELL_M = 1.0  # resolution of the per-anchor wall-count tables (walls cost a few dB; 1 m is plenty)
WALL_RANGE_M = 40.0  # links longer than this are not counted (such anchors are rarely heard anyway)
WALL_STEP_M = 0.25  # sampling step along a line of sight (the raster's resolution)
WALL_MAX = 15  # counts saturate here


@dataclass(frozen=True, slots=True)
class WallTables:
    """Per floor, the number of obstacles (holes of the walkable area: walls, counters, shelving, and the
    outside of the building) that the line of sight from each anchor on that floor to each cell crosses,
    stacked as (floors, anchors, cells). Anchors on other floors have zeros (the slab dominates)."""

    x0: FloatArray  # (floors,) grid origins
    y0: FloatArray
    nx: IntArray  # (floors,) grid widths
    ny: IntArray
    res: float
    counts: npt.NDArray[np.uint8]  # (floors, anchors, max cells)

    def cell(self, x: FloatArray, y: FloatArray, floor: IntArray) -> IntArray:
        """Flat cell index of each point on its floor's grid (clipped to the grid)."""
        nx, ny = self.nx[floor], self.ny[floor]
        i = np.clip(((y - self.y0[floor]) / self.res).astype(np.int64), 0, ny - 1)
        j = np.clip(((x - self.x0[floor]) / self.res).astype(np.int64), 0, nx - 1)
        return np.asarray(i * nx + j, dtype=np.int64)

    def gather(self, floor: IntArray, anchor: IntArray, cell: IntArray) -> npt.NDArray[np.uint8]:
        """Counts for broadcast (floor, anchor, cell) indices, through one flat int32 index (cheaper than
        three-array fancy indexing on the tracker's (devices, particles, anchors) arrays)."""
        _, n_a, n_c = self.counts.shape
        i32 = np.int32
        flat = floor.astype(i32) * i32(n_a)
        flat = flat + anchor.astype(i32)
        flat = flat * i32(n_c)
        flat += cell.astype(i32)
        return np.take(self.counts.reshape(-1), flat)

    def at(self, anchor: IntArray, x: FloatArray, y: FloatArray, floor: IntArray) -> FloatArray:
        """Obstacles between ``anchor`` and (x, y) on ``floor`` (broadcasting)."""
        return np.asarray(self.gather(floor, anchor, self.cell(x, y, floor)), dtype=np.float64)


_WALL_CACHE: dict[bytes, WallTables] = {}
WALL_CACHE_SIZE = 4  # venues whose tables are kept (they take a second or two to build)


def wall_tables(site: SiteMap, anchors: AnchorTable) -> WallTables:
    """Count, along each anchor's line of sight to each cell of its floor, the walkable -> obstacle
    transitions (an anchor mounted on a wall or counter does not count the one it hangs on). Cached per
    (map, anchors): engines and tests build locators for the same venue again and again."""
    h = hashlib.sha1()
    for raster in site.floors:
        h.update(np.array((*raster.bounds, raster.res)).tobytes())
        h.update(np.packbits(raster.walkable).tobytes())
    for col in (anchors.x, anchors.y, anchors.floor):
        h.update(np.ascontiguousarray(col).tobytes())
    h.update(b"venue" if site.has_venue else b"open")
    key = h.digest()
    hit = _WALL_CACHE.get(key)
    if hit is not None:
        return hit
    n_f = len(site.floors)
    shapes = []
    for raster in site.floors:
        bx0, by0, bx1, by1 = raster.bounds
        shapes.append((bx0, by0, max(1, int(np.ceil((bx1 - bx0) / WALL_CELL_M))),
                       max(1, int(np.ceil((by1 - by0) / WALL_CELL_M)))))
    cells = max(nx * ny for _, _, nx, ny in shapes)
    counts = np.zeros((n_f, len(anchors), cells), dtype=np.uint8)
    n_samples = int(np.ceil(WALL_RANGE_M / WALL_STEP_M))
    frac = (np.arange(1, n_samples + 1) / n_samples)[None, :]
    for f, raster in enumerate(site.floors):
        if not site.has_venue:
            break
        bx0, by0, nx, ny = shapes[f]
        gx, gy = (g.ravel() for g in np.meshgrid(bx0 + (np.arange(nx) + 0.5) * WALL_CELL_M,
                                                 by0 + (np.arange(ny) + 0.5) * WALL_CELL_M))
        for a in np.flatnonzero(anchors.floor == f):
            ax, ay = float(anchors.x[a]), float(anchors.y[a])
            near = np.flatnonzero(np.hypot(gx - ax, gy - ay) <= WALL_RANGE_M)
            walk = raster.is_walkable(ax + (gx[near, None] - ax) * frac, ay + (gy[near, None] - ay) * frac)
            start = raster.is_walkable(np.array([ax]), np.array([ay]))
            walk = np.concatenate([np.broadcast_to(start, (near.shape[0], 1)), walk], axis=1)
            entries = (walk[:, :-1] & ~walk[:, 1:]).sum(axis=1)
            counts[f, a, near] = np.minimum(entries, WALL_MAX).astype(np.uint8)
    out = WallTables(np.array([sh[0] for sh in shapes]), np.array([sh[1] for sh in shapes]),
                     np.array([sh[2] for sh in shapes], dtype=np.int64),
                     np.array([sh[3] for sh in shapes], dtype=np.int64), WALL_CELL_M, counts)
    if len(_WALL_CACHE) >= WALL_CACHE_SIZE:
        _WALL_CACHE.pop(next(iter(_WALL_CACHE)))
    _WALL_CACHE[key] = out
    return out
