"""Walkable graph and shortest routes through a venue, across floors via its connectors.

``build_nav_graph(venue)`` turns each floor's walkable area (holes are walls, counters and voids)
into a visibility graph: its nodes are the corners of the walkable area shrunk by a shoulder's
clearance, connector ends and any extra waypoints; an edge joins two nodes on a floor when the
straight segment between them stays inside that shrunken area, so routes never cut through walls
or furniture and keep off them by ``NAV_CLEARANCE_M``. Connectors (escalators, lifts, stairs) join
floors with their own travel time; an escalator runs one way (``a`` to ``b``) when the venue has
another escalator running back between the same floors, both ways otherwise.

``route(graph, (floor, x, y), (floor, x, y))`` returns the shortest route in time as a polyline with
floors, its walking length and its duration at ``WALK_SPEED_MPS``. Pure code: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry
from shapely.ops import nearest_points

from positioning.errors import PositioningError
from positioning.venue import Connector, Venue, walkable_shape

NAV_CLEARANCE_M: Final = 0.35  # people keep about a shoulder's width off walls and counters
VISIBILITY_SLACK_M: Final = 0.05  # a segment running along the shrunken boundary still counts as clear
SNAP_MAX_M: Final = 15.0  # farther than this from anywhere walkable, a point is not in the venue
WALK_SPEED_MPS: Final = 1.2  # typical unhurried walking speed in a mall
MIN_EDGE_M: Final = 1e-6  # coincident nodes are joined with a zero-length edge

Place = tuple[str, float, float]  # (floor id, x, y)


class NavigationError(PositioningError):
    """A route that cannot be made: a point outside the walkable area, or no way between two points."""


@dataclass(frozen=True, slots=True)
class RoutePoint:
    floor: str
    x: float
    y: float


def floors_along(points: Sequence[RoutePoint]) -> tuple[str, ...]:
    """The floors a polyline visits, in order (consecutive repeats collapsed)."""
    out: list[str] = []
    for p in points:
        if not out or out[-1] != p.floor:
            out.append(p.floor)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Route:
    """A polyline with floors; a floor change appears as two consecutive points on different floors.

    ``length_m`` is the distance walked on floors (connector rides excluded); ``seconds`` is the
    walking time at ``WALK_SPEED_MPS`` plus the connectors' travel times.
    """

    points: tuple[RoutePoint, ...]
    length_m: float
    seconds: float
    connectors: tuple[str, ...] = ()

    @property
    def floors(self) -> tuple[str, ...]:
        return floors_along(self.points)


@dataclass(frozen=True, slots=True)
class _FloorSpace:
    walkable: BaseGeometry  # where people can be at all
    free: BaseGeometry  # walkable shrunk by the clearance: where routes run
    clear: BaseGeometry  # free grown by the slack: the visibility test


@dataclass(slots=True)
class NavGraph:
    """The venue's walkable graph. ``graph`` is a networkx DiGraph whose edges carry ``seconds``,
    ``length_m`` and, for floor changes, ``connector``; node attributes are ``floor``, ``x``, ``y``.
    Waypoint ``i`` given to ``build_nav_graph`` is node ``("wp", i)``.
    """

    venue: Venue
    graph: Any  # nx.DiGraph
    spaces: dict[str, _FloorSpace]
    floor_nodes: dict[str, list[Any]]
    floor_xy: dict[str, npt.NDArray[np.float64]]
    waypoints: tuple[Place, ...] = field(default=())
    _csr: Any = None
    _pred: dict[int, npt.NDArray[np.int64]] = field(default_factory=dict)

    def snap(self, place: Place) -> Place:
        """The nearest point where routes run (inside the walkable area, off walls by the clearance)."""
        floor, x, y = place
        space = self.spaces.get(floor)
        if space is None:
            raise NavigationError(f"unknown floor {floor!r} (floors: {', '.join(self.spaces)})")
        p = Point(x, y)
        if space.free.covers(p):
            return (floor, float(x), float(y))
        if space.free.is_empty:
            raise NavigationError(f"floor {floor!r} has no walkable area")
        q = nearest_points(space.free, p)[0]
        if q.distance(p) > SNAP_MAX_M:
            raise NavigationError(f"({x:g}, {y:g}) on floor {floor!r} is {q.distance(p):.1f} m from the walkable "
                                  f"area")
        return (floor, float(q.x), float(q.y))

    def is_walkable(self, floor: str, x: float, y: float) -> bool:
        space = self.spaces.get(floor)
        return space is not None and bool(space.walkable.covers(Point(x, y)))

    def visible(self, floor: str, a: tuple[float, float], b: tuple[float, float]) -> bool:
        """Whether the straight walk from ``a`` to ``b`` on ``floor`` stays clear of walls and holes."""
        space = self.spaces[floor]
        if math.dist(a, b) < MIN_EDGE_M:
            return bool(space.clear.covers(Point(a)))
        return bool(space.clear.covers(shapely.linestrings([a, b])))


def _escalator_one_way(connectors: Sequence[Connector], c: Connector) -> bool:
    return c.kind == "escalator" and any(
        o.id != c.id and o.kind == "escalator" and o.a.floor == c.b.floor and o.b.floor == c.a.floor
        for o in connectors)


def _ring_vertices(geom: BaseGeometry) -> npt.NDArray[np.float64]:
    parts = [g for g in getattr(geom, "geoms", [geom]) if not g.is_empty and g.geom_type == "Polygon"]
    coords = [np.asarray(ring.coords, dtype=np.float64)[:-1] for poly in parts
              for ring in [poly.exterior, *poly.interiors]]
    if not coords:
        return np.zeros((0, 2))
    return np.unique(np.round(np.vstack(coords), 6), axis=0)


def _visible_pairs(clear: BaseGeometry, a: npt.NDArray[np.float64],
                   b: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Vectorised visibility of the segments ``a[k] -> b[k]``."""
    if a.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    lines = shapely.linestrings(np.stack([a, b], axis=1))
    out: npt.NDArray[np.bool_] = np.asarray(shapely.covers(clear, lines), dtype=bool)
    short = np.hypot(*(a - b).T) < MIN_EDGE_M
    if short.any():
        out[short] = np.asarray(shapely.covers(clear, shapely.points(a[short])), dtype=bool)
    return out


def build_nav_graph(venue: Venue, waypoints: Sequence[Place] = ()) -> NavGraph:
    """The walkable visibility graph of every floor, joined by the venue's connectors.

    ``waypoints`` are extra places (snapped into the walkable area) that become nodes ``("wp", i)``,
    so that routes between them need no per-query work.
    """
    import networkx as nx  # imported here: importing positioning stays light for `instore locate`

    graph: Any = nx.DiGraph()
    spaces: dict[str, _FloorSpace] = {}
    floor_nodes: dict[str, list[Any]] = {}
    floor_xy: dict[str, npt.NDArray[np.float64]] = {}
    for f in venue.floors:
        walk = walkable_shape(venue, f.id)
        free = walk.buffer(-NAV_CLEARANCE_M, join_style="mitre")
        clear = walk.buffer(-NAV_CLEARANCE_M + VISIBILITY_SLACK_M, join_style="mitre")
        for geom in (walk, free, clear):
            shapely.prepare(geom)
        spaces[f.id] = _FloorSpace(walk, free, clear)
        floor_nodes[f.id] = []
    nav = NavGraph(venue, graph, spaces, floor_nodes, floor_xy)

    pending: dict[str, list[tuple[Any, float, float]]] = {f.id: [] for f in venue.floors}
    for f in venue.floors:
        for k, (x, y) in enumerate(_ring_vertices(spaces[f.id].free)):
            pending[f.id].append((("corner", f.id, k), float(x), float(y)))
    for c in venue.connectors:
        for end_key, end in (("a", c.a), ("b", c.b)):
            floor, x, y = nav.snap((end.floor, end.x, end.y))
            pending[floor].append((("conn", c.id, end_key), x, y))
    snapped_waypoints: list[Place] = []
    for i, wp in enumerate(waypoints):
        floor, x, y = nav.snap(wp)
        snapped_waypoints.append((floor, x, y))
        pending[floor].append((("wp", i), x, y))
    nav.waypoints = tuple(snapped_waypoints)

    for fid, nodes in pending.items():
        for node, x, y in nodes:
            graph.add_node(node, floor=fid, x=x, y=y)
        floor_nodes[fid] = [n for n, _, _ in nodes]
        xy = np.array([[x, y] for _, x, y in nodes], dtype=np.float64).reshape(-1, 2)
        floor_xy[fid] = xy
        if len(nodes) < 2:
            continue
        ii, jj = np.triu_indices(len(nodes), 1)
        ok = _visible_pairs(spaces[fid].clear, xy[ii], xy[jj])
        lengths = np.hypot(*(xy[ii] - xy[jj]).T)
        for a, b, d in zip(ii[ok].tolist(), jj[ok].tolist(), lengths[ok].tolist(), strict=True):
            na, nb = nodes[a][0], nodes[b][0]
            attrs = {"length_m": d, "seconds": d / WALK_SPEED_MPS}
            graph.add_edge(na, nb, **attrs)
            graph.add_edge(nb, na, **attrs)

    for c in venue.connectors:
        na, nb = ("conn", c.id, "a"), ("conn", c.id, "b")
        attrs = {"length_m": 0.0, "seconds": float(c.seconds), "connector": c.id}
        graph.add_edge(na, nb, **attrs)
        if not _escalator_one_way(venue.connectors, c):
            graph.add_edge(nb, na, **attrs)
    return nav


def _path_to_route(nav: NavGraph, path: Sequence[Any], extra_points: dict[Any, Place] | None = None) -> Route:
    g = nav.graph
    points: list[RoutePoint] = []
    length = 0.0
    seconds = 0.0
    connectors: list[str] = []
    for k, node in enumerate(path):
        if extra_points is not None and node in extra_points:
            floor, x, y = extra_points[node]
        else:
            attrs = g.nodes[node]
            floor, x, y = attrs["floor"], attrs["x"], attrs["y"]
        points.append(RoutePoint(floor, float(x), float(y)))
        if k == 0:
            continue
        prev = path[k - 1]
        data = g.get_edge_data(prev, node)
        if data is None:  # an edge to or from a temporary end point
            d = math.hypot(points[-1].x - points[-2].x, points[-1].y - points[-2].y)
            length += d
            seconds += d / WALK_SPEED_MPS
        else:
            length += float(data["length_m"])
            seconds += float(data["seconds"])
            if "connector" in data:
                connectors.append(str(data["connector"]))
    return Route(tuple(points), length, seconds, tuple(connectors))


def route(nav: NavGraph, start: Place, goal: Place) -> Route:
    """The quickest walkable route from ``start`` to ``goal`` (each ``(floor, x, y)``).

    Points off the walkable area (inside a counter, against a wall) are first moved to the nearest
    place where people walk; ``NavigationError`` when that is farther than ``SNAP_MAX_M`` or when no
    route exists.
    """
    s = nav.snap(start)
    e = nav.snap(goal)
    if s[0] == e[0] and nav.visible(s[0], (s[1], s[2]), (e[1], e[2])):
        d = math.hypot(e[1] - s[1], e[2] - s[2])
        return Route((RoutePoint(*s), RoutePoint(*e)), d, d / WALK_SPEED_MPS)
    import networkx as nx

    src, dst = ("start",), ("goal",)
    g = nav.graph
    extra: dict[Any, Place] = {src: s, dst: e}
    # Temporary edges from the start to what it sees and from what sees the goal, on a light view.
    start_edges = _visible_edges(nav, s)
    goal_edges = _visible_edges(nav, e)
    if not start_edges or not goal_edges:
        raise NavigationError(f"no route from {start} to {goal}: an end point sees no part of the walkable graph")
    view: Any = nx.DiGraph()
    view.add_edges_from((src, n, {"seconds": d / WALK_SPEED_MPS}) for n, d in start_edges)
    view.add_edges_from((n, dst, {"seconds": d / WALK_SPEED_MPS}) for n, d in goal_edges)
    composed: Any = nx.compose(g, view)
    try:
        path = nx.dijkstra_path(composed, src, dst, weight="seconds")
    except nx.NetworkXNoPath:
        raise NavigationError(f"no route from {start} to {goal}") from None
    return _path_to_route(nav, path, extra)


def _visible_edges(nav: NavGraph, place: Place) -> list[tuple[Any, float]]:
    floor, x, y = place
    xy = nav.floor_xy.get(floor)
    if xy is None or xy.shape[0] == 0:
        return []
    here = np.broadcast_to(np.array([x, y]), xy.shape)
    ok = _visible_pairs(nav.spaces[floor].clear, here, xy)
    d = np.hypot(*(xy - here).T)
    nodes = nav.floor_nodes[floor]
    return [(nodes[k], float(d[k])) for k in np.flatnonzero(ok).tolist()]


def _csgraph(nav: NavGraph) -> tuple[list[Any], dict[Any, int], Any]:
    """The graph as a scipy sparse matrix of edge seconds (built once per NavGraph)."""
    if nav._csr is None:
        from scipy.sparse import csr_matrix

        nodes = list(nav.graph.nodes)
        index = {n: k for k, n in enumerate(nodes)}
        rows, cols, secs = [], [], []
        for a, b, data in nav.graph.edges(data=True):
            rows.append(index[a])
            cols.append(index[b])
            secs.append(max(float(data["seconds"]), MIN_EDGE_M))  # explicit zeros would vanish from the matrix
        matrix = csr_matrix((secs, (rows, cols)), shape=(len(nodes), len(nodes)))
        nav._csr = (nodes, index, matrix)
    csr: tuple[list[Any], dict[Any, int], Any] = nav._csr
    return csr


def waypoint_route(nav: NavGraph, a: int, b: int) -> Route | None:
    """Quickest route between waypoints ``a`` and ``b``; None when there is none.

    One Dijkstra per source waypoint (scipy, cached), so many agents can share the work.
    """
    src, dst = ("wp", a), ("wp", b)
    if src not in nav.graph or dst not in nav.graph:
        raise NavigationError(f"no waypoint {a if src not in nav.graph else b}")
    nodes, index, matrix = _csgraph(nav)
    pred = nav._pred.get(a)
    if pred is None:
        from scipy.sparse.csgraph import dijkstra

        _, pred_arr = dijkstra(matrix, directed=True, indices=index[src], return_predecessors=True)
        pred = np.asarray(pred_arr, dtype=np.int64)
        nav._pred[a] = pred
    k = index[dst]
    if k != index[src] and pred[k] < 0:
        return None
    path = [k]
    while path[-1] != index[src]:
        path.append(int(pred[path[-1]]))
    return _path_to_route(nav, [nodes[i] for i in reversed(path)])


def routes_from_waypoint(nav: NavGraph, index: int) -> dict[int, Route]:
    """Quickest routes from waypoint ``index`` to every reachable waypoint."""
    out: dict[int, Route] = {}
    for j in range(len(nav.waypoints)):
        r = waypoint_route(nav, index, j)
        if r is not None:
            out[j] = r
    return out
