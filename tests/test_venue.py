"""The venue model: shipped venues load, round trip, and every real problem is rejected by name."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from positioning.errors import VenueError
from positioning.venue import (
    DEFAULT_ANCHOR_Z_M,
    DEFAULT_PATH_LOSS_N,
    DEFAULT_RSSI_1M_DBM,
    dump_venue,
    format_summary,
    parse_venue,
    summarize_venue,
    walkable_shape,
)
from simulations.venue_builder import SHIPPED, VENUES_DIR

SQUARE = [[0, 0], [40, 0], [40, 30], [0, 30]]


def base_doc() -> dict[str, Any]:
    return {
        "schema": 1,
        "venue": {"id": "t", "name": "Test", "timezone": "UTC"},
        "floors": [{"id": "L1", "level": 0, "elevation_m": 0.0, "outline": SQUARE},
                   {"id": "L2", "level": 1, "elevation_m": 5.0, "outline": SQUARE}],
        "anchors": [{"id": "gw-1", "floor": "L1", "x": 5, "y": 5}, {"id": "gw-2", "floor": "L2", "x": 35, "y": 25}],
        "zones": [
            {"id": "s-1", "kind": "store", "name": "Store", "floor": "L1",
             "polygon": [[0, 0], [20, 0], [20, 15], [0, 15]]},
            {"id": "c-1", "kind": "counter", "name": "Counter", "brand": "b", "floor": "L1",
             "polygon": [[2, 2], [6, 2], [6, 6], [2, 6]], "entrance": [4, 2]},
        ],
        "walkable": [{"floor": "L1", "polygon": SQUARE, "holes": [[[10, 10], [12, 10], [12, 12], [10, 12]]]}],
        "connectors": [{"id": "esc", "kind": "escalator", "a": {"floor": "L1", "x": 30, "y": 20},
                        "b": {"floor": "L2", "x": 30, "y": 25}, "seconds": 20}],
        "pois": [{"id": "wc", "kind": "toilet", "floor": "L2", "x": 1, "y": 1}],
    }


def load(doc: dict[str, Any]) -> Any:
    return parse_venue(yaml.safe_dump(doc), "venue.yaml")


def rejects(doc: dict[str, Any], *fragments: str) -> str:
    with pytest.raises(VenueError) as info:
        load(doc)
    message = str(info.value)
    assert message.startswith("venue.yaml: "), message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_minimal_valid_venue_applies_documented_defaults() -> None:
    venue = load(base_doc())
    gw = venue.anchors[0]
    assert (gw.z, gw.rssi_1m, gw.path_loss_n, gw.kind) == (DEFAULT_ANCHOR_Z_M, DEFAULT_RSSI_1M_DBM,
                                                           DEFAULT_PATH_LOSS_N, "gateway")
    assert venue.floor_ids == ("L1", "L2")
    assert [z.id for z in venue.zones_on("L1")] == ["s-1", "c-1"]
    assert walkable_shape(venue, "L1").area == pytest.approx(40 * 30 - 4)
    assert walkable_shape(venue, "L2").area == pytest.approx(40 * 30)  # no walkable entry: the whole outline


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_venues_load_and_match_their_builder(name: str) -> None:
    text = (VENUES_DIR / name).read_text(encoding="utf-8")
    venue = parse_venue(text, name)
    assert venue == SHIPPED[name]()
    # The committed file is exactly what the builder writes.
    assert text.split("\n", 1)[1] == dump_venue(SHIPPED[name]())


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_round_trip_is_lossless(name: str) -> None:
    venue = SHIPPED[name]()
    again = parse_venue(dump_venue(venue), name)
    assert again == venue
    assert dump_venue(again) == dump_venue(venue)


def test_demo_mall_is_realistic() -> None:
    venue = SHIPPED["demo-mall.yaml"]()
    assert venue.id == "demo-mall"
    assert len(venue.floors) == 2
    branded = [z for z in venue.zones if z.brand and z.kind in ("store", "counter")]
    assert len(branded) >= 50
    kinds = {z.kind for z in venue.zones}
    assert {"counter", "store", "corridor", "entrance", "checkout"} <= kinds
    assert {c.kind for c in venue.connectors} >= {"escalator", "lift"}
    assert any(p.kind == "toilet" for p in venue.pois)
    for floor in venue.floors:
        outline_w = max(p[0] for p in floor.outline) - min(p[0] for p in floor.outline)
        outline_h = max(p[1] for p in floor.outline) - min(p[1] for p in floor.outline)
        assert (outline_w, outline_h) == (120, 80)
        anchors = venue.anchors_on(floor.id)
        # Gateways every 8-12 m: nearest-neighbour spacing in that band, at ceiling height.
        for a in anchors:
            nearest = min(((a.x - b.x) ** 2 + (a.y - b.y) ** 2) ** 0.5 for b in anchors if b is not a)
            assert 8.0 <= nearest <= 12.5
            assert 2.5 <= a.z <= 4.5


def test_corner_store_is_small() -> None:
    venue = SHIPPED["corner-store.yaml"]()
    assert len(venue.floors) == 1
    assert summarize_venue(venue)[0].area_m2 == pytest.approx(300.0)
    assert "corner-store" in format_summary(venue)


def test_unknown_floor() -> None:
    doc = base_doc()
    doc["anchors"][0]["floor"] = "L9"
    assert rejects(doc) == "venue.yaml: anchors[0].floor: unknown floor 'L9' (floors: L1, L2)"


@pytest.mark.parametrize("section", ["anchors", "zones", "connectors", "pois", "floors"])
def test_duplicate_ids(section: str) -> None:
    doc = base_doc()
    doc[section].append(copy.deepcopy(doc[section][0]))
    if section == "zones":
        doc[section][-1]["polygon"] = [[25, 20], [30, 20], [30, 25], [25, 25]]
    index = len(doc[section]) - 1
    rejects(doc, f"{section}[{index}].id", "duplicate id")


def test_beacon_id_may_not_repeat_an_anchor_id() -> None:
    doc = base_doc()
    doc["beacons"] = [{"id": "gw-1", "floor": "L1", "x": 1, "y": 1}]
    rejects(doc, "beacons[0].id", "duplicate id 'gw-1'")


def test_self_intersecting_polygon() -> None:
    doc = base_doc()
    doc["zones"][1]["polygon"] = [[2, 2], [6, 6], [6, 2], [2, 6]]  # a bow tie
    rejects(doc, "zones[1].polygon", "self-intersecting")


def test_zone_outside_outline() -> None:
    doc = base_doc()
    doc["zones"][1]["polygon"] = [[38, 2], [45, 2], [45, 6], [38, 6]]
    rejects(doc, "zones[1].polygon", "outside the outline of floor 'L1'")


def test_walkable_outside_outline() -> None:
    doc = base_doc()
    doc["walkable"][0]["polygon"] = [[0, 0], [50, 0], [50, 30], [0, 30]]
    rejects(doc, "walkable[0].polygon", "outside the outline")


def test_zones_overlapping_without_containment() -> None:
    doc = base_doc()
    doc["zones"].append({"id": "s-2", "kind": "store", "name": "Other", "floor": "L1",
                         "polygon": [[15, 10], [30, 10], [30, 20], [15, 20]]})
    rejects(doc, "zones[2].polygon", "overlaps zone 's-1'")


def test_containment_and_shared_edges_are_allowed() -> None:
    doc = base_doc()
    doc["zones"].append({"id": "s-2", "kind": "store", "name": "Next door", "floor": "L1",
                         "polygon": [[20, 0], [40, 0], [40, 15], [20, 15]]})
    # Same polygon on another floor never overlaps.
    doc["zones"].append({"id": "s-3", "kind": "store", "name": "Upstairs", "floor": "L2",
                         "polygon": [[15, 10], [30, 10], [30, 20], [15, 20]]})
    venue = load(doc)
    assert len(venue.zones) == 4


def test_zone_with_hole_may_surround_another_zone() -> None:
    doc = base_doc()
    doc["zones"][0]["holes"] = [[[8, 8], [12, 8], [12, 12], [8, 12]]]
    doc["zones"].append({"id": "kiosk", "kind": "counter", "name": "Kiosk", "floor": "L1",
                         "polygon": [[8, 8], [12, 8], [12, 12], [8, 12]]})
    assert len(load(doc).zones) == 3


def test_anchor_outside_floor() -> None:
    doc = base_doc()
    doc["anchors"][1]["x"] = 41
    rejects(doc, "anchors[1]", "outside the outline of floor 'L2'")


def test_anchor_on_the_outline_edge_is_inside() -> None:
    doc = base_doc()
    doc["anchors"][1]["x"] = 40
    assert load(doc).anchors[1].x == 40


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda d: d["venue"].pop("timezone"), "venue.timezone"),
        (lambda d: d.pop("floors"), "floors"),
        (lambda d: d["floors"][0].pop("outline"), "floors[0].outline"),
        (lambda d: d["anchors"][0].pop("x"), "anchors[0].x"),
        (lambda d: d["zones"][0].pop("polygon"), "zones[0].polygon"),
        (lambda d: d["connectors"][0].pop("b"), "connectors[0].b"),
        (lambda d: d.pop("schema"), "schema"),
        (lambda d: d.pop("anchors"), "anchors"),
    ],
)
def test_missing_fields(mutate: Any, path: str) -> None:
    doc = base_doc()
    mutate(doc)
    rejects(doc, f": {path}: missing required field")


@pytest.mark.parametrize(
    ("mutate", "path", "what"),
    [
        (lambda d: d["anchors"][0].__setitem__("x", "five"), "anchors[0].x", "expected a number, got str 'five'"),
        (lambda d: d["anchors"][0].__setitem__("z", True), "anchors[0].z", "expected a number"),
        (lambda d: d["floors"][0].__setitem__("level", 0.5), "floors[0].level", "expected an integer"),
        (lambda d: d.__setitem__("zones", {"id": 1}), "zones", "expected a list"),
        (lambda d: d["zones"][0].__setitem__("polygon", [[0, 0], [1, "a"], [1, 1]]), "zones[0].polygon[1][1]",
         "expected a number"),
        (lambda d: d["zones"][0].__setitem__("polygon", [[0, 0], [1, 1]]), "zones[0].polygon",
         "at least 3 distinct points"),
        (lambda d: d["zones"][0].__setitem__("kind", "shop"), "zones[0].kind", "unknown zone kind 'shop'"),
        (lambda d: d["connectors"][0].__setitem__("kind", "slide"), "connectors[0].kind", "unknown connector kind"),
        (lambda d: d["venue"].__setitem__("name", ["x"]), "venue.name", "expected a string"),
        (lambda d: d.__setitem__("schema", 2), "schema", "unsupported schema version 2"),
    ],
)
def test_wrong_types(mutate: Any, path: str, what: str) -> None:
    doc = base_doc()
    mutate(doc)
    rejects(doc, f": {path}: ", what)


def test_zone_entrance_far_outside_is_rejected() -> None:
    doc = base_doc()
    doc["zones"][1]["entrance"] = [30, 25]
    rejects(doc, "zones[1].entrance", "not on or inside")


def test_not_yaml_and_empty_file() -> None:
    with pytest.raises(VenueError, match=r"^v.yaml: line 1, column \d+: not valid YAML"):
        parse_venue("floors: [", "v.yaml")
    with pytest.raises(VenueError, match="empty file"):
        parse_venue("", "v.yaml")
    with pytest.raises(VenueError, match="expected a mapping"):
        parse_venue("- 1\n- 2\n", "v.yaml")


def test_beacons_only_venue_is_valid_and_ids_are_lowercased() -> None:
    doc = base_doc()
    doc.pop("anchors")
    doc["beacons"] = [{"id": "iBeacon:ABCDEF01-0000-0000-0000-000000000000-1-2", "floor": "L1", "x": 3, "y": 3}]
    venue = load(doc)
    assert venue.beacons[0].id == "ibeacon:abcdef01-0000-0000-0000-000000000000-1-2"
    assert venue.anchors == ()


def test_a_venue_without_zones_loads() -> None:
    doc = base_doc()
    doc["zones"] = []
    assert load(doc).zones == ()
