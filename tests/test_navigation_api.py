"""Shopper navigation through the HTTP API on the demo mall: where am I, routes across floors that never
cross walls and change floors only on connectors, what is nearby, and clear 4xx on bad requests."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
import shapely
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.routes_navigation import build_router
from api.wayfinding import Wayfinder, bearing_deg, compass_name, turn_name, wayfinder_for
from positioning.live import Fix
from positioning.navigation import WALK_SPEED_MPS, route
from positioning.venue import Venue, walkable_shape

NOW = 1_763_870_000.0



@pytest.fixture(scope="module")
def wf(mall: Venue) -> Wayfinder:
    return wayfinder_for(mall)


class Positions:
    def __init__(self) -> None:
        self.fixes: dict[str, Fix] = {}

    def put(self, device: str, floor: str, x: float, y: float, zone: str | None = None) -> None:
        self.fixes[device] = Fix(device, NOW - 2.0, x, y, floor, 1.5, zone)


@pytest.fixture
def positions() -> Positions:
    return Positions()


@pytest.fixture
def offers() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def client(wf: Wayfinder, positions: Positions, offers: list[dict[str, Any]]) -> TestClient:
    app = FastAPI()
    campaign_zones = {"lancome-spring": ("l1-beauty-hall-c01",), "longchamp-bags": ("l2-fashion-hall-c03",)}
    app.include_router(build_router(wf, positions.fixes.get, lambda shopper, now: list(offers),
                                    lambda c: campaign_zones.get(c, ()), lambda: NOW))
    return TestClient(app)


def _walkable(venue: Venue, polyline: list[dict[str, Any]]) -> bool:
    shapes = {f: walkable_shape(venue, f).buffer(0.01) for f in venue.floor_ids}
    for a, b in itertools.pairwise(polyline):
        if a["floor"] == b["floor"] and not shapes[a["floor"]].covers(
                shapely.linestrings([(a["x"], a["y"]), (b["x"], b["y"])])):
            return False
    return True


def _error(r: Any, status: int, field: str, error: str | None = None) -> None:
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert detail["field"] == field, detail
    assert field in detail["field"] and detail["message"]
    if error is not None:
        assert detail["error"] == error, detail


def test_whereami_gives_floor_zone_and_accuracy(client: TestClient, positions: Positions, mall: Venue) -> None:
    counter = mall.zone("l1-beauty-hall-c01")
    cx, cy = counter.entrance or (0.0, 0.0)
    positions.put("d-abc", "L1", cx, cy + 0.5, counter.id)
    body = client.get("/v1/shoppers/d-abc/whereami").json()
    assert body["floor"]["id"] == "L1" and body["floor"]["level"] == 0 and body["floor"]["name"]
    assert body["zone"]["id"] == counter.id and body["zone"]["brand"] == counter.brand
    assert body["x"] == pytest.approx(cx) and body["accuracy_m"] == 1.5 and body["age_s"] == 2.0
    assert "l1-beauty-hall" in body["zones_here"]  # the store around the counter
    _error(client.get("/v1/shoppers/d-nobody/whereami"), 404, "device", "unknown_device")


def test_route_from_l1_to_a_counter_on_l2_rides_a_connector(client: TestClient, mall: Venue) -> None:
    r = client.get("/v1/navigation/route", params={"from_floor": "L1", "x": 10, "y": 40,
                                                   "to_zone": "l2-fashion-hall-c03"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["floors"] == ["L1", "L2"]
    ids = [c["id"] for c in body["connectors"]]
    assert len(ids) == 1 and ids[0] in ("esc-up", "lift-1")
    conn = next(c for c in mall.connectors if c.id == ids[0])
    assert body["connectors"][0]["kind"] == conn.kind and body["connectors"][0]["to_floor"] == "L2"
    line = body["polyline"]
    assert line[0]["floor"] == "L1" and line[-1]["floor"] == "L2"
    assert _walkable(mall, line)
    k = next(i for i in range(1, len(line)) if line[i]["floor"] != line[i - 1]["floor"])
    assert math.dist((line[k - 1]["x"], line[k - 1]["y"]), (conn.a.x, conn.a.y)) < 1.0  # boards at its L1 end
    assert math.dist((line[k]["x"], line[k]["y"]), (conn.b.x, conn.b.y)) < 1.0
    walked = sum(math.dist((a["x"], a["y"]), (b["x"], b["y"])) for a, b in itertools.pairwise(line)
                 if a["floor"] == b["floor"])
    assert body["length_m"] == pytest.approx(walked, abs=0.05)
    assert body["length_m"] >= math.dist((10, 40), (body["to"]["x"], body["to"]["y"])) - 1e-6
    assert body["seconds"] == pytest.approx(body["length_m"] / WALK_SPEED_MPS + conn.seconds, abs=0.1)
    kinds = [s["kind"] for s in body["steps"]]
    assert kinds[0] == "walk" and kinds[-1] == "arrive" and "connector" in kinds
    first = body["steps"][0]
    assert first["bearing_deg"] == pytest.approx(
        bearing_deg(line[1]["x"] - line[0]["x"], line[1]["y"] - line[0]["y"]), abs=25.0)
    assert sum(s["distance_m"] for s in body["steps"]) == pytest.approx(body["length_m"], abs=1.0)
    assert body["to"]["id"] == "l2-fashion-hall-c03" and body["to"]["floor"] == "L2"
    assert body["straight_line_m"] is None  # other floor


def test_routes_match_the_navigation_core_and_never_cross_walls(client: TestClient, mall: Venue,
                                                                wf: Wayfinder) -> None:
    rng = np.random.default_rng(5)
    shape = walkable_shape(mall, "L1")
    targets = [z.id for z in mall.zones if z.kind in ("counter", "store")]
    done = 0
    while done < 12:
        x, y = rng.uniform((0, 0), (120, 80))
        if not shape.contains(shapely.Point(x, y)):
            continue
        zone = targets[int(rng.integers(len(targets)))]
        body = client.get("/v1/navigation/route", params={"from_floor": "L1", "x": x, "y": y,
                                                          "to_zone": zone}).json()
        dest = wf.destination("zone", zone)
        assert dest is not None
        ref = route(wf.nav, ("L1", x, y), (dest.floor, dest.x, dest.y))
        assert body["length_m"] == pytest.approx(ref.length_m, abs=0.02)
        assert body["seconds"] == pytest.approx(ref.seconds, abs=0.1)
        assert _walkable(mall, body["polyline"])
        if body["floors"] == ["L1"]:
            assert body["length_m"] >= body["straight_line_m"] - 1e-6
        done += 1


def test_route_from_a_device_to_a_poi(client: TestClient, positions: Positions) -> None:
    positions.put("d-walker", "L2", 100.0, 60.0)
    body = client.get("/v1/navigation/route", params={"from_device": "d-walker", "to_poi": "l1-wc"}).json()
    assert body["from"]["device"] == "d-walker" and body["floors"] == ["L2", "L1"]
    assert body["connectors"][0]["id"] in ("esc-down", "lift-1")  # never up the up-escalator
    assert body["to"] == {"kind": "poi", "id": "l1-wc", "name": "Toilets", "category": "toilet", "brand": None,
                          "floor": "L1", "x": 6.0, "y": 70.0}


@pytest.mark.parametrize(("params", "status", "field", "error"), [
    ({"from_floor": "L1", "x": 10, "y": 40, "to_zone": "nowhere"}, 422, "to_zone", "unknown_zone"),
    ({"from_floor": "L1", "x": 10, "y": 40, "to_poi": "nowhere"}, 422, "to_poi", "unknown_poi"),
    ({"from_floor": "L9", "x": 10, "y": 40, "to_poi": "l1-wc"}, 422, "from_floor", "unknown_floor"),
    ({"from_floor": "L1", "x": 500, "y": 40, "to_poi": "l1-wc"}, 422, "x", "off_map"),
    ({"from_floor": "L1", "x": 10, "to_poi": "l1-wc"}, 422, "y", "missing"),
    ({"from_floor": "L1", "x": 10, "y": 40}, 422, "to_zone", "missing"),
    ({"from_floor": "L1", "x": 10, "y": 40, "to_zone": "l1-beauty-hall", "to_poi": "l1-wc"}, 422, "to_zone",
     "ambiguous"),
    ({"from_device": "d-ghost", "to_poi": "l1-wc"}, 404, "from_device", "unknown_device"),
    ({"from_device": "d-ghost", "from_floor": "L1", "to_poi": "l1-wc"}, 422, "from_device", "ambiguous"),
])
def test_bad_route_requests_name_the_field(client: TestClient, params: dict[str, Any], status: int, field: str,
                                           error: str) -> None:
    _error(client.get("/v1/navigation/route", params=params), status, field, error)


def test_malformed_query_values_get_422(client: TestClient) -> None:
    r = client.get("/v1/navigation/route", params={"from_floor": "L1", "x": "west", "y": 4, "to_poi": "l1-wc"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "x"]
    r = client.get("/v1/shoppers/d-x/nearby", params={"radius_m": -3})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "radius_m"]


def test_point_in_a_wall_hole_is_moved_to_the_walkable_area(client: TestClient, mall: Venue) -> None:
    # (60, 40) is inside the atrium void (a walkable hole): the route starts at its edge.
    body = client.get("/v1/navigation/route", params={"from_floor": "L1", "x": 60, "y": 40,
                                                      "to_poi": "l1-info"}).json()
    assert body["from"]["snapped_m"] > 3.0
    assert walkable_shape(mall, "L1").covers(shapely.Point(body["from"]["x"], body["from"]["y"]))


def test_nearby_places_and_offers(client: TestClient, positions: Positions, offers: list[dict[str, Any]],
                                  mall: Venue) -> None:
    positions.put("d-near", "L1", 30.0, 40.0, "l1-corridor-w")
    offers += [{"offer_id": "o1", "campaign": "lancome-spring", "brand": "lancome", "title": "15% off",
                "zone": "l1-beauty-hall-c01", "expires": NOW + 3600, "voucher": "IS1.X"},
               {"offer_id": "o2", "campaign": "longchamp-bags", "brand": "longchamp", "title": "Gift",
                "zone": "l2-fashion-hall-c03", "expires": NOW + 3600, "voucher": "IS1.Y"}]
    body = client.get("/v1/shoppers/d-near/nearby", params={"radius_m": 15}).json()
    places = body["places"]
    assert places and all(p["floor"] == "L1" and p["distance_m"] <= 15 for p in places)
    ids = [p["id"] for p in places]
    assert "l1-corridor-w" in ids and "l1-info" in ids and "l2-wc" not in ids
    assert next(p for p in places if p["id"] == "l1-corridor-w")["inside"]
    walks = [p["walk_s"] for p in places]
    assert walks == sorted(walks)
    for p in places:
        assert p["walk_m"] >= math.dist((30, 40), (p["x"], p["y"])) - 0.05  # 0.1 m rounding
        if p["bearing_deg"] is not None:
            assert p["bearing_deg"] == pytest.approx(bearing_deg(p["x"] - 30, p["y"] - 40), abs=0.1)
            assert p["direction"] == compass_name(p["bearing_deg"])
    # The far-away L2 offer comes with a walk through a connector; the L1 counter's is on this floor.
    by_id = {o["offer_id"]: o for o in body["offers"]}
    assert by_id["o1"]["floor"] == "L1" and by_id["o1"]["zone"] == "l1-beauty-hall-c01"
    assert by_id["o2"]["floor"] == "L2" and by_id["o2"]["connectors"] and by_id["o2"]["distance_m"] is None
    assert not by_id["o2"]["nearby"]
    assert [o["offer_id"] for o in body["offers"]] == ["o1", "o2"]  # quickest to reach first
    bigger = client.get("/v1/shoppers/d-near/nearby", params={"radius_m": 40}).json()["places"]
    assert set(ids) < {p["id"] for p in bigger}
    _error(client.get("/v1/shoppers/d-gone/nearby"), 404, "device", "unknown_device")


def test_destinations_list_every_zone_and_poi(client: TestClient, mall: Venue) -> None:
    body = client.get("/v1/navigation/destinations").json()["destinations"]
    assert {d["id"] for d in body} == {z.id for z in mall.zones} | {p.id for p in mall.pois}


def test_words_for_turns_and_directions() -> None:
    assert compass_name(0.0) == "north" and compass_name(91.0) == "east" and compass_name(350.0) == "north"
    assert bearing_deg(1.0, 0.0) == pytest.approx(90.0) and bearing_deg(0.0, -1.0) == pytest.approx(180.0)
    assert turn_name(5.0) == "straight" and turn_name(90.0) == "right" and turn_name(-90.0) == "left"
    assert turn_name(-30.0) == "slight left" and turn_name(150.0) == "sharp right" and turn_name(179.0) == "u-turn"
