"""Shopper wayfinding over the venue's walkable graph: routes to zones and points of interest with
turn-by-turn steps, and what is near a place.

``Wayfinder(venue)`` is built once per venue (``wayfinder_for`` caches it): it takes
``positioning.navigation.build_nav_graph`` and adds, for every destination (each zone's target point —
its entrance, or a walkable point inside it — and each point of interest), the graph nodes that
destination sees and how far they are. A query then costs one Dijkstra (scipy) from the shopper's place
over the graph plus a temporary start node; the time to *every* destination is a vectorised minimum over
the nodes it sees, so ``nearby`` costs one Dijkstra, not one per destination. Routes keep the graph's
guarantees: they never cross walls, counters or voids, and change floors only on connectors.

Bearings are in venue degrees: 0 = the venue's +y axis ("north" of the floor plan), clockwise, so
90 = +x. ``compass_deg`` adds the venue origin's ``bearing_deg`` when the venue file has an origin.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry import Point, Polygon

from positioning.navigation import (
    WALK_SPEED_MPS,
    NavGraph,
    NavigationError,
    RoutePoint,
    build_nav_graph,
    floors_along,
)
from positioning.venue import Venue, Zone, zone_shape

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Place = tuple[str, float, float]

STRAIGHT_DEG: Final = 20.0  # direction changes below this read as "keep straight": the legs are merged
SLIGHT_DEG: Final = 50.0  # below this a turn is "slight"
SHARP_DEG: Final = 135.0  # above this a turn is "sharp"; near 180 it is a U-turn
U_TURN_DEG: Final = 170.0
MIN_LEG_M: Final = 0.3  # shorter walking legs (snapping jitter at nodes) are folded into their neighbours
MIN_STEP_M: Final = 2.0  # a jog shorter than this around a corner is not worth its own instruction
MIN_EDGE_S: Final = 1e-6  # zero-cost edges would vanish from the sparse matrix
COMPASS: Final = ("north", "north-east", "east", "south-east", "south", "south-west", "west", "north-west")
CACHE_MAX: Final = 4  # venues whose wayfinders are kept (one per served venue; tests load a few)


class WayfindingError(ValueError):
    """A place or destination that cannot be routed; ``field`` names the request field at fault."""

    def __init__(self, field: str, message: str, error: str = "invalid") -> None:
        super().__init__(message)
        self.field = field
        self.error = error


@dataclass(frozen=True, slots=True)
class Destination:
    kind: str  # "zone" | "poi"
    id: str
    name: str
    category: str  # the zone's kind (counter, store, ...) or the POI's kind (toilet, atm, ...)
    floor: str
    x: float  # where routes to it end: the zone's entrance, or a walkable point inside it
    y: float
    brand: str | None
    nodes: IntArray  # graph nodes it sees ...
    dists: FloatArray  # ... and how far they are (m)


@dataclass(frozen=True, slots=True)
class Step:
    kind: str  # "walk" | "connector" | "arrive"
    floor: str
    x: float  # where the step starts
    y: float
    instruction: str
    distance_m: float = 0.0
    seconds: float = 0.0
    bearing_deg: float | None = None
    turn: str | None = None  # "straight", "slight left", "left", "sharp left", "u-turn", ... (None on the first leg)
    connector: str | None = None
    connector_kind: str | None = None
    to_floor: str | None = None


@dataclass(frozen=True, slots=True)
class Way:
    """A route from a place to a destination: polyline with floors, walking length, duration, steps."""

    points: tuple[RoutePoint, ...]
    length_m: float
    seconds: float
    connectors: tuple[str, ...]
    steps: tuple[Step, ...]

    @property
    def floors(self) -> tuple[str, ...]:
        return floors_along(self.points)


@dataclass(frozen=True, slots=True)
class Reach:
    """One Dijkstra from a place: arrival seconds at every graph node and the predecessor tree."""

    start: Place  # snapped into the walkable area
    snapped_m: float  # how far the given place was moved to get there
    seconds: FloatArray
    pred: IntArray


@dataclass(frozen=True, slots=True)
class Nearby:
    destination: Destination
    distance_m: float  # straight line to the zone (0 inside it) or to the POI
    bearing_deg: float | None  # straight towards its target point; None when there
    way: Way | None  # walking route, None when unreachable


def bearing_deg(dx: float, dy: float) -> float:
    """Venue degrees of a direction: 0 = +y, 90 = +x."""
    return math.degrees(math.atan2(dx, dy)) % 360.0


def compass_name(bearing: float) -> str:
    return COMPASS[int(((bearing % 360.0) + 22.5) // 45.0) % 8]


def turn_name(delta: float) -> str:
    """A signed change of heading (degrees, clockwise positive) in words."""
    a = abs(delta)
    side = "right" if delta > 0 else "left"
    if a < STRAIGHT_DEG:
        return "straight"
    if a >= U_TURN_DEG:
        return "u-turn"
    if a < SLIGHT_DEG:
        return f"slight {side}"
    if a > SHARP_DEG:
        return f"sharp {side}"
    return side


class Wayfinder:
    def __init__(self, venue: Venue, nav: NavGraph | None = None) -> None:
        self.venue = venue
        self.nav = nav if nav is not None else build_nav_graph(venue)
        g = self.nav.graph
        self._nodes: list[Any] = list(g.nodes)
        self._index = {n: k for k, n in enumerate(self._nodes)}
        self._node_floor = [str(g.nodes[n]["floor"]) for n in self._nodes]
        self._node_xy = np.array([[g.nodes[n]["x"], g.nodes[n]["y"]] for n in self._nodes],
                                 dtype=np.float64).reshape(-1, 2)
        rows, cols, secs, conn = [], [], [], {}
        for a, b, data in g.edges(data=True):
            i, j = self._index[a], self._index[b]
            rows.append(i)
            cols.append(j)
            secs.append(max(float(data["seconds"]), MIN_EDGE_S))
            if "connector" in data:
                conn[(i, j)] = str(data["connector"])
        self._rows = np.asarray(rows, dtype=np.int64)
        self._cols = np.asarray(cols, dtype=np.int64)
        self._secs = np.asarray(secs, dtype=np.float64)
        self._edge_connector = conn
        self._floor_index = {f: np.array([self._index[n] for n in self.nav.floor_nodes[f]], dtype=np.int64)
                             for f in self.nav.floor_nodes}
        self._connectors = {c.id: c for c in venue.connectors}
        self._levels = {f.id: f.level for f in venue.floors}
        self._floor_names = {f.id: f.name or f.id for f in venue.floors}
        self._outlines = {f.id: Polygon(f.outline) for f in venue.floors}
        self._zone_shapes = {z.id: zone_shape(z) for z in venue.zones}
        for shape in [*self._outlines.values(), *self._zone_shapes.values()]:
            shapely.prepare(shape)
        self.destinations: dict[tuple[str, str], Destination] = {}
        for z in venue.zones:
            self._add(self._zone_destination(z))
        for p in venue.pois:
            self._add(self._destination("poi", p.id, p.name or p.id, p.kind, p.floor, p.x, p.y, None))

    # ------------------------------------------------------------------------------------ destinations

    def _zone_destination(self, z: Zone) -> Destination | None:
        if z.entrance is not None:
            x, y = z.entrance
        else:
            space = self.nav.spaces.get(z.floor)
            inside = self._zone_shapes[z.id].intersection(space.free) if space is not None else None
            where = inside if inside is not None and not inside.is_empty else self._zone_shapes[z.id]
            pt = where.point_on_surface()
            x, y = float(pt.x), float(pt.y)
        return self._destination("zone", z.id, z.name, z.kind, z.floor, x, y, z.brand)

    def _destination(self, kind: str, ident: str, name: str, category: str, floor: str, x: float, y: float,
                     brand: str | None) -> Destination | None:
        try:
            f, sx, sy = self.nav.snap((floor, x, y))
        except NavigationError:
            return None  # nowhere walkable near it: not a destination
        nodes, dists = self._visible_nodes((f, sx, sy))
        return Destination(kind, ident, name, category, f, sx, sy, brand, nodes, dists)

    def _add(self, d: Destination | None) -> None:
        if d is not None:
            self.destinations[(d.kind, d.id)] = d

    def destination(self, kind: str, ident: str) -> Destination | None:
        return self.destinations.get((kind, ident))

    def _visible_nodes(self, place: Place) -> tuple[IntArray, FloatArray]:
        floor, x, y = place
        idx = self._floor_index.get(floor)
        if idx is None or idx.size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        xy = self._node_xy[idx]
        here = np.broadcast_to(np.array([x, y]), xy.shape)
        d = np.hypot(*(xy - here).T)
        ok = self._visible(floor, here, xy, d)
        return idx[ok], d[ok]

    def _visible(self, floor: str, a: FloatArray, b: FloatArray, d: FloatArray) -> npt.NDArray[np.bool_]:
        clear = self.nav.spaces[floor].clear
        out = np.asarray(shapely.covers(clear, shapely.linestrings(np.stack([a, b], axis=1))), dtype=bool)
        short = d < 1e-6
        if short.any():
            out[short] = np.asarray(shapely.covers(clear, shapely.points(a[short])), dtype=bool)
        return out

    # ------------------------------------------------------------------------------------ places

    def check_place(self, floor: str, x: float, y: float) -> None:
        """Refuse an unknown floor or a point outside the floor's outline (``WayfindingError`` naming the field)."""
        outline = self._outlines.get(floor)
        if outline is None:
            raise WayfindingError("floor", f"unknown floor {floor!r} (floors: {', '.join(self._outlines)})",
                                  "unknown_floor")
        if not outline.covers(Point(x, y)):
            raise WayfindingError("x", f"({x:g}, {y:g}) is outside the outline of floor {floor!r}",
                                  "off_map")

    def zones_at(self, floor: str | None, x: float, y: float) -> list[Zone]:
        """Zones containing the point, innermost (smallest) first."""
        if floor is None:
            return []
        p = Point(x, y)
        inside = [z for z in self.venue.zones if z.floor == floor and self._zone_shapes[z.id].covers(p)]
        return sorted(inside, key=lambda z: self._zone_shapes[z.id].area)

    def floor_name(self, floor: str) -> str:
        return self._floor_names.get(floor, floor)

    def floor_level(self, floor: str) -> int | None:
        return self._levels.get(floor)

    def zone_distance(self, zone_id: str, floor: str, x: float, y: float) -> float | None:
        z = self.venue.zone(zone_id)
        if z.floor != floor:
            return None
        return float(self._zone_shapes[zone_id].distance(Point(x, y)))

    # ------------------------------------------------------------------------------------ routing

    def reach(self, place: Place, field: str = "x") -> Reach:
        """One Dijkstra from ``place`` to every graph node (``WayfindingError`` when it is off the walkable area)."""
        from scipy.sparse import csr_matrix
        from scipy.sparse.csgraph import dijkstra

        try:
            start = self.nav.snap(place)
        except NavigationError as exc:
            raise WayfindingError(field, str(exc), "off_map") from None
        snapped_m = math.hypot(start[1] - place[1], start[2] - place[2])
        nodes, dists = self._visible_nodes(start)
        n = len(self._nodes)
        rows = np.concatenate([self._rows, np.full(nodes.size, n, dtype=np.int64)])
        cols = np.concatenate([self._cols, nodes])
        secs = np.concatenate([self._secs, np.maximum(dists / WALK_SPEED_MPS, MIN_EDGE_S)])
        matrix = csr_matrix((secs, (rows, cols)), shape=(n + 1, n + 1))
        seconds, pred = dijkstra(matrix, directed=True, indices=n, return_predecessors=True)
        return Reach(start, snapped_m, np.asarray(seconds, dtype=np.float64), np.asarray(pred, dtype=np.int64))

    def way(self, r: Reach, dest: Destination) -> Way | None:
        """The quickest route from ``r.start`` to ``dest``; None when there is none."""
        return self.ways(r, [dest])[0]

    def ways(self, r: Reach, dests: Sequence[Destination]) -> list[Way | None]:
        floor, sx, sy = r.start
        same = [k for k, d in enumerate(dests) if d.floor == floor]
        direct = np.zeros(len(dests), dtype=bool)
        if same:
            a = np.broadcast_to(np.array([sx, sy]), (len(same), 2))
            b = np.array([[dests[k].x, dests[k].y] for k in same], dtype=np.float64)
            direct[same] = self._visible(floor, a, b, np.hypot(*(a - b).T))
        out: list[Way | None] = []
        for k, d in enumerate(dests):
            if direct[k]:
                out.append(self._build(r, d, []))
                continue
            if d.nodes.size == 0:
                out.append(None)
                continue
            total = r.seconds[d.nodes] + d.dists / WALK_SPEED_MPS
            best = int(np.argmin(total))
            if not math.isfinite(float(total[best])):
                out.append(None)
                continue
            path = [int(d.nodes[best])]
            n = len(self._nodes)
            while int(r.pred[path[-1]]) != n:
                path.append(int(r.pred[path[-1]]))
            path.reverse()
            out.append(self._build(r, d, path))
        return out

    def _build(self, r: Reach, dest: Destination, path: list[int]) -> Way:
        points = [RoutePoint(*r.start)]
        connectors: list[str] = []
        for k, i in enumerate(path):
            points.append(RoutePoint(self._node_floor[i], float(self._node_xy[i, 0]), float(self._node_xy[i, 1])))
            if k and (path[k - 1], i) in self._edge_connector:
                connectors.append(self._edge_connector[(path[k - 1], i)])
        points.append(RoutePoint(dest.floor, dest.x, dest.y))
        length = sum(math.hypot(b.x - a.x, b.y - a.y) for a, b in itertools.pairwise(points)
                     if a.floor == b.floor)
        seconds = length / WALK_SPEED_MPS + sum(self._connectors[c].seconds for c in connectors)
        return Way(tuple(points), length, seconds, tuple(connectors), self._steps(points, connectors, dest))

    def _steps(self, points: Sequence[RoutePoint], connectors: Sequence[str], dest: Destination) -> tuple[Step, ...]:
        legs: list[list[Any]] = []  # [floor, x0, y0, x1, y1] walking legs, or ["ride", connector, from, to]
        rides = iter(connectors)
        for a, b in itertools.pairwise(points):
            if a.floor != b.floor:
                legs.append(["ride", next(rides, None), a, b])
                continue
            if math.hypot(b.x - a.x, b.y - a.y) < 1e-9:
                continue
            prev = legs[-1] if legs and legs[-1][0] != "ride" else None
            if prev is not None:
                length_prev = math.hypot(prev[3] - prev[1], prev[4] - prev[2])
                delta = _signed_turn(bearing_deg(prev[3] - prev[1], prev[4] - prev[2]),
                                     bearing_deg(b.x - a.x, b.y - a.y))
                if abs(delta) < STRAIGHT_DEG or length_prev < MIN_LEG_M:
                    prev[3], prev[4] = b.x, b.y
                    continue
            legs.append([a.floor, a.x, a.y, b.x, b.y])
        legs = _fold_short(legs)
        steps: list[Step] = []
        heading: float | None = None
        for leg in legs:
            if leg[0] == "ride":
                _, cid, a, b = leg
                c = self._connectors.get(cid) if cid is not None else None
                kind = c.kind if c is not None else "connector"
                up = (self._levels.get(b.floor, 0) or 0) > (self._levels.get(a.floor, 0) or 0)
                steps.append(Step("connector", a.floor, a.x, a.y,
                                  f"Take the {kind} ({cid}) {'up' if up else 'down'} to "
                                  f"{self.floor_name(b.floor)}",
                                  seconds=float(c.seconds) if c is not None else 0.0, connector=cid,
                                  connector_kind=kind, to_floor=b.floor))
                heading = None
                continue
            floor, x0, y0, x1, y1 = leg
            d = math.hypot(x1 - x0, y1 - y0)
            if d < MIN_LEG_M and steps:
                continue
            b_deg = bearing_deg(x1 - x0, y1 - y0)
            turn = None if heading is None else turn_name(_signed_turn(heading, b_deg))
            where = compass_name(b_deg)
            if turn is None:
                text = f"Head {where} for {d:.0f} m"
            elif turn == "straight":
                text = f"Continue {where} for {d:.0f} m"
            elif turn == "u-turn":
                text = f"Turn around and walk {d:.0f} m {where}"
            else:
                text = f"Turn {turn} and walk {d:.0f} m {where}"
            steps.append(Step("walk", floor, x0, y0, text, distance_m=d, seconds=d / WALK_SPEED_MPS,
                              bearing_deg=b_deg, turn=turn))
            heading = b_deg
        steps.append(Step("arrive", dest.floor, dest.x, dest.y, f"Arrive at {dest.name}"))
        return tuple(steps)

    # ------------------------------------------------------------------------------------ nearby

    def nearby(self, place: Place, radius_m: float, r: Reach | None = None) -> list[Nearby]:
        """Destinations on the place's floor within ``radius_m`` (straight line to the zone or POI), with the
        walking route to each; sorted by walking time (unreachable last)."""
        floor, x, y = place
        r = r if r is not None else self.reach(place)
        p = Point(x, y)
        cands: list[tuple[Destination, float]] = []
        for d in self.destinations.values():
            if d.floor != floor:
                continue
            dist = float(self._zone_shapes[d.id].distance(p)) if d.kind == "zone" else math.hypot(d.x - x, d.y - y)
            if dist <= radius_m:
                cands.append((d, dist))
        ways = self.ways(r, [d for d, _ in cands])
        out = [Nearby(d, dist, None if math.hypot(d.x - x, d.y - y) < 1e-6 else bearing_deg(d.x - x, d.y - y), w)
               for (d, dist), w in zip(cands, ways, strict=True)]
        out.sort(key=lambda n: (n.way is None, n.way.seconds if n.way is not None else 0.0, n.destination.id))
        return out

    def compass(self, bearing: float | None) -> float | None:
        origin = self.venue.info.origin
        if bearing is None or origin is None:
            return None
        return (bearing + origin.bearing_deg) % 360.0


def _fold_short(legs: list[list[Any]]) -> list[list[Any]]:
    """Fold walking legs shorter than ``MIN_STEP_M`` into the next walking leg on the same floor (the
    instruction then points from the jog's start to the next corner; the polyline itself is unchanged)."""
    out: list[list[Any]] = []
    for k, leg in enumerate(legs):
        nxt = legs[k + 1] if k + 1 < len(legs) else None
        if (leg[0] != "ride" and nxt is not None and nxt[0] == leg[0]
                and math.hypot(leg[3] - leg[1], leg[4] - leg[2]) < MIN_STEP_M):
            nxt[1], nxt[2] = leg[1], leg[2]
            continue
        out.append(leg)
    return out


def _signed_turn(h0: float, h1: float) -> float:
    return (h1 - h0 + 540.0) % 360.0 - 180.0


_CACHE: dict[int, tuple[Venue, Wayfinder]] = {}
_CACHE_LOCK = threading.Lock()


def wayfinder_for(venue: Venue) -> Wayfinder:
    """The venue's wayfinder, built on first use and kept (the walkable graph costs ~0.5 s to build)."""
    with _CACHE_LOCK:
        hit = _CACHE.get(id(venue))
        if hit is not None and hit[0] is venue:
            return hit[1]
    wf = Wayfinder(venue)
    with _CACHE_LOCK:
        if len(_CACHE) >= CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[id(venue)] = (venue, wf)
    return wf


__all__ = ["Destination", "Nearby", "Reach", "Step", "Way", "Wayfinder", "WayfindingError", "bearing_deg",
           "compass_name", "turn_name", "wayfinder_for"]
