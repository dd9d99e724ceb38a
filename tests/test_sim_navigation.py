"""The walkable graph: routes stay in the walkable area, change floors on connectors, are shortest."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import shapely

from positioning.navigation import NavigationError, Route, build_nav_graph, route, routes_from_waypoint
from positioning.venue import Venue, walkable_shape


def _segments_walkable(venue: Venue, r: Route) -> bool:
    shapes = {f: walkable_shape(venue, f).buffer(0.01) for f in venue.floor_ids}
    for a, b in itertools.pairwise(r.points):
        if a.floor != b.floor:
            continue
        if not shapes[a.floor].covers(shapely.linestrings([(a.x, a.y), (b.x, b.y)])):
            return False
    return True


def test_routes_never_cross_walls_and_are_not_longer_than_needed(mall: Venue) -> None:
    nav = build_nav_graph(mall)
    rng = np.random.default_rng(3)
    shape = walkable_shape(mall, "L1")
    x0, y0, x1, y1 = shape.bounds
    done = 0
    while done < 25:
        a, b = rng.uniform((x0, y0), (x1, y1)), rng.uniform((x0, y0), (x1, y1))
        if not (shape.contains(shapely.Point(a)) and shape.contains(shapely.Point(b))):
            continue
        r = route(nav, ("L1", *a), ("L1", *b))
        assert _segments_walkable(mall, r)
        assert r.floors == ("L1",) or r.connectors  # a same-floor trip stays on the floor unless it must not
        straight = math.dist(a, b)
        assert r.length_m >= straight - 1.0  # end points may be moved off walls by the clearance
        assert r.seconds == pytest.approx(r.length_m / 1.2 + sum(c.seconds for c in mall.connectors
                                                                if c.id in r.connectors), rel=1e-6)
        done += 1


def test_walls_force_a_detour(store: Venue) -> None:
    nav = build_nav_graph(store)
    # Either side of the middle shelf (x 7..8, y 6..12): the straight line crosses it.
    r = route(nav, ("L1", 6.0, 9.0), ("L1", 9.0, 9.0))
    assert r.length_m > 3.0 + 2.0  # around the end of a 6 m shelf
    assert _segments_walkable(store, r)
    direct = route(nav, ("L1", 6.0, 4.0), ("L1", 9.0, 4.0))
    assert direct.length_m == pytest.approx(3.0, abs=1e-6) and len(direct.points) == 2


def test_floor_changes_use_connectors_and_escalators_run_one_way(mall: Venue) -> None:
    nav = build_nav_graph(mall)
    up = route(nav, ("L1", 20.0, 35.0), ("L2", 100.0, 35.0))
    down = route(nav, ("L2", 100.0, 35.0), ("L1", 20.0, 35.0))
    assert up.floors == ("L1", "L2") and down.floors == ("L2", "L1")
    assert len(up.connectors) == 1 and len(down.connectors) == 1
    assert up.connectors[0] in ("esc-up", "lift-1") and down.connectors[0] in ("esc-down", "lift-1")
    assert _segments_walkable(mall, up) and _segments_walkable(mall, down)
    # Each floor change happens at the connector's own ends.
    ends = {(c.id, e.floor): (e.x, e.y) for c in mall.connectors for e in (c.a, c.b)}
    pts = up.points
    k = next(i for i in range(1, len(pts)) if pts[i].floor != pts[i - 1].floor)
    cid = up.connectors[0]
    assert math.dist((pts[k - 1].x, pts[k - 1].y), ends[(cid, "L1")]) < 1.0
    assert math.dist((pts[k].x, pts[k].y), ends[(cid, "L2")]) < 1.0


def test_waypoint_routes_match_point_routes(mall: Venue) -> None:
    places = [("L1", 10.0, 40.0), ("L2", 100.0, 60.0), ("L1", 20.0, 15.0)]
    nav = build_nav_graph(mall, places)
    rs = routes_from_waypoint(nav, 0)
    assert set(rs) == {0, 1, 2}
    for j, wp in enumerate(places):
        assert rs[j].seconds == pytest.approx(route(nav, places[0], wp).seconds, rel=1e-6, abs=1e-6)


def test_points_outside_the_venue_are_refused(store: Venue) -> None:
    nav = build_nav_graph(store)
    with pytest.raises(NavigationError, match="walkable"):
        route(nav, ("L1", 100.0, 100.0), ("L1", 5.0, 5.0))
    with pytest.raises(NavigationError, match="unknown floor"):
        route(nav, ("L9", 1.0, 1.0), ("L1", 5.0, 5.0))
    # A point inside counter furniture is moved to where people stand.
    r = route(nav, ("L1", 7.5, 9.0), ("L1", 5.0, 4.0))
    assert nav.is_walkable("L1", r.points[0].x, r.points[0].y)
