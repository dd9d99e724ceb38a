"""Builds the venues shipped in ``simulations/venues/``: the two-floor demo mall and a small store.

The YAML files are generated from this code (``python -m simulations.venue_builder``) so the
layout stays consistent: shop walls, doors and counter furniture are holes of the walkable area,
zones match the rooms, and gateways sit on a staggered ceiling grid.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from positioning.venue import (
    Anchor,
    Beacon,
    Connector,
    ConnectorEnd,
    Floor,
    Origin,
    Poi,
    Venue,
    VenueInfo,
    Walkable,
    Zone,
    dump_venue,
    validate_venue,
)

VENUES_DIR: Final = Path(__file__).resolve().parent / "venues"

MALL_W: Final = 120.0  # m, east-west
MALL_H: Final = 80.0  # m, north-south
CONCOURSE_Y: Final = (30.0, 50.0)  # the main corridor between the two shop rows
SOUTH_ROW_Y: Final = (4.0, 30.0)  # shops on the south side; 0..4 is back of house
NORTH_ROW_Y: Final = (50.0, 76.0)  # shops on the north side; 76..80 is back of house
WALL_T: Final = 0.3  # m, partition wall thickness
CEILING_Z: Final = 3.5  # m, gateway mounting height
GATEWAY_ROW_SPACING: Final = 10.0  # m, rows of the staggered gateway grid
GATEWAY_COL_SPACING: Final = 12.0  # m, columns; odd rows shift by half of this
GATEWAY_RSSI_1M: Final = -59.0
GATEWAY_PATH_LOSS_N: Final = 2.2  # typical open-plan retail fit
APP_UUID: Final = "8a0d3c6e-6a54-4c1e-9d2f-5b7e1f0a4c21"  # the mall's own iBeacon UUID

Rect = tuple[float, float, float, float]  # x0, y0, x1, y1


def rect(x0: float, y0: float, x1: float, y1: float) -> tuple[tuple[float, float], ...]:
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


@dataclass
class _FloorPlan:
    floor: str
    zones: list[Zone]
    holes: list[tuple[tuple[float, float], ...]]
    beacons: list[Beacon]

    def hole(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.holes.append(rect(x0, y0, x1, y1))

    def zone(self, zid: str, kind: str, name: str, r: Rect, brand: str | None = None,
             entrance: tuple[float, float] | None = None,
             holes: tuple[tuple[tuple[float, float], ...], ...] = ()) -> None:
        self.zones.append(Zone(id=zid, kind=kind, name=name, floor=self.floor, polygon=rect(*r), holes=holes,
                               brand=brand, entrance=entrance))


def _slug(name: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "-" for c in name.replace("'", ""))
    return "-".join(p for p in out.split("-") if p)


def _shop_row(plan: _FloorPlan, prefix: str, names: list[str], x0: float, x1: float, y_back: float,
              y_front: float, door_frac: float = 0.6) -> None:
    """Shops side by side between x0 and x1, with partition walls and a front wall with a door."""
    width = (x1 - x0) / len(names)
    lo, hi = min(y_back, y_front), max(y_back, y_front)
    for i, name in enumerate(names):
        sx0, sx1 = x0 + i * width, x0 + (i + 1) * width
        door = width * door_frac
        dx0, dx1 = (sx0 + sx1 - door) / 2, (sx0 + sx1 + door) / 2
        wy0, wy1 = (y_front - WALL_T, y_front) if y_front > y_back else (y_front, y_front + WALL_T)
        plan.hole(sx0, wy0, dx0, wy1)
        plan.hole(dx1, wy0, sx1, wy1)
        plan.hole(sx1 - WALL_T / 2, lo, min(sx1 + WALL_T / 2, MALL_W), hi)
        plan.zone(f"{prefix}-{i + 1:02d}", "store", name, (sx0, lo, sx1, hi), brand=_slug(name),
                  entrance=((sx0 + sx1) / 2, y_front))
    plan.hole(max(x0 - WALL_T / 2, 0.0), lo, x0 + WALL_T / 2, hi)


def _hall(plan: _FloorPlan, zid: str, name: str, counters: list[str], x0: float, x1: float) -> None:
    """A department-store hall on the south row with a grid of brand counters and a checkout."""
    y0, y1 = SOUTH_ROW_Y
    plan.zone(zid, "store", name, (x0, y0, x1, y1), brand=_slug(name), entrance=((x0 + x1) / 2, y1))
    # Front wall with two wide openings onto the concourse.
    plan.hole(x0, y1 - WALL_T, x0 + 8, y1)
    plan.hole(x0 + 22, y1 - WALL_T, x0 + 38, y1)
    plan.hole(x0 + 52, y1 - WALL_T, x1, y1)
    plan.hole(x1 - WALL_T / 2, y0, x1 + WALL_T / 2, y1)
    cols = [x0 + 7 + 11.5 * c for c in range(5)]
    rows = [15.0, 24.0]
    k = 0
    for cy in rows:
        for cx in cols:
            if k >= len(counters):
                break
            brand = counters[k]
            k += 1
            zone_id = f"{zid}-c{k:02d}"
            plan.zone(zone_id, "counter", brand, (cx - 4, cy - 3.5, cx + 4, cy + 3.5), brand=_slug(brand),
                      entrance=(cx, cy - 3.5 if cy < 20 else cy + 3.5),
                      holes=(rect(cx - 1.5, cy - 1.0, cx + 1.5, cy + 1.0),))
            plan.hole(cx - 1.5, cy - 1.0, cx + 1.5, cy + 1.0)
            plan.beacons.append(Beacon(id=f"ibeacon:{APP_UUID}-{_level(plan.floor) + 1}-{len(plan.beacons) + 1}",
                                       floor=plan.floor, x=cx, y=cy, z=1.2))
    plan.zone(f"{zid}-checkout", "checkout", f"{name} checkout", (x0 + 20, y0 + 0.5, x0 + 40, y0 + 6.5),
              entrance=(x0 + 30, y0 + 6.5))
    plan.hole(x0 + 24, y0 + 1.5, x0 + 36, y0 + 2.5)


def _kiosk(plan: _FloorPlan, zid: str, name: str, cx: float, cy: float) -> None:
    plan.zone(zid, "counter", name, (cx - 3, cy - 2, cx + 3, cy + 2), brand=_slug(name), entrance=(cx, cy - 2),
              holes=(rect(cx - 1.0, cy - 0.75, cx + 1.0, cy + 0.75),))
    plan.hole(cx - 1.0, cy - 0.75, cx + 1.0, cy + 0.75)


def _level(floor: str) -> int:
    return int(floor[1:]) - 1


def _gateways(floor: str) -> list[Anchor]:
    out: list[Anchor] = []
    rows = int(MALL_H // GATEWAY_ROW_SPACING)
    for r in range(rows):
        y = GATEWAY_ROW_SPACING / 2 + r * GATEWAY_ROW_SPACING
        x = GATEWAY_COL_SPACING / 2 if r % 2 == 0 else GATEWAY_COL_SPACING
        while x < MALL_W:
            out.append(Anchor(id=f"gw-{floor.lower()}-{len(out) + 1:02d}", floor=floor, x=x, y=y, z=CEILING_Z,
                              rssi_1m=GATEWAY_RSSI_1M, path_loss_n=GATEWAY_PATH_LOSS_N))
            x += GATEWAY_COL_SPACING
    return out


def _common(plan: _FloorPlan) -> None:
    """Back of house, the atrium void, the lift shaft, the service block and the concourse zones."""
    f = plan.floor
    if f == "L1":  # the south entrance passage cuts through the back of house
        plan.hole(0, 0, 60, SOUTH_ROW_Y[0])
        plan.hole(66, 0, MALL_W, SOUTH_ROW_Y[0])
    else:
        plan.hole(0, 0, MALL_W, SOUTH_ROW_Y[0])
    plan.hole(0, NORTH_ROW_Y[1], MALL_W, MALL_H)
    plan.hole(54, 36, 66, 44)  # atrium void with the escalators
    plan.hole(28, 46, 32, 49)  # lift shaft, free-standing in the concourse
    # Service block with toilets at the west end of the north row.
    plan.hole(12 - WALL_T / 2, 50, 12 + WALL_T / 2, 76)
    plan.hole(0, 50, 3, 50 + WALL_T)
    plan.hole(9, 50, 12, 50 + WALL_T)
    void = (rect(54, 36, 66, 44),)
    lift = (rect(28, 46, 32, 49),)
    cy0, cy1 = CONCOURSE_Y
    west_x0 = 6.0 if f == "L1" else 0.0
    east_x1 = 114.0 if f == "L1" else MALL_W
    plan.zone(f"{f.lower()}-corridor-w", "corridor", f"{f} west concourse", (west_x0, cy0, 50, cy1), holes=lift)
    plan.zone(f"{f.lower()}-corridor-c", "corridor", f"{f} atrium", (50, cy0, 70, cy1), holes=void)
    plan.zone(f"{f.lower()}-corridor-e", "corridor", f"{f} east concourse", (70, cy0, east_x1, cy1))
    if f == "L1":
        plan.zone("l1-entrance-w", "entrance", "West entrance", (0, cy0, 6, cy1), entrance=(0, 40))
        plan.zone("l1-entrance-e", "entrance", "East entrance", (114, cy0, 120, cy1), entrance=(120, 40))


def build_demo_mall() -> Venue:
    floors = tuple(
        Floor(id=fid, level=lvl, elevation_m=lvl * 5.0, outline=rect(0, 0, MALL_W, MALL_H),
              name=name)
        for fid, lvl, name in (("L1", 0, "Ground floor: beauty and accessories"), ("L2", 1, "First floor: fashion"))
    )
    plans = {f.id: _FloorPlan(f.id, [], [], []) for f in floors}

    l1 = plans["L1"]
    _common(l1)
    _hall(l1, "l1-beauty-hall", "Maison Beaute", [
        "Lancome", "Estee Lauder", "Dior Beauty", "Chanel Beauty", "Clinique",
        "Shiseido", "MAC Cosmetics", "Sulwhasoo", "La Mer", "Kiehl's"], 0, 60)
    # South main entrance: a passage from the street to the concourse.
    l1.zone("l1-entrance-s", "entrance", "South entrance", (60, 0, 66, 6), entrance=(63, 0))
    l1.zone("l1-passage-s", "corridor", "South passage", (60, 6, 66, 30))
    _shop_row(l1, "l1-s", ["Pandora", "Swarovski", "Sephora", "Innisfree"], 66, 120, 4, 30)
    _shop_row(l1, "l1-n", ["Apple", "Starbucks", "Muji", "Lego", "Uniqlo", "Nike", "Adidas", "Zara", "H&M"],
              12, 120, 76, 50)
    _kiosk(l1, "l1-kiosk-1", "Godiva", 20, 40)
    _kiosk(l1, "l1-kiosk-2", "Jo Malone", 96, 40)

    l2 = plans["L2"]
    _common(l2)
    _hall(l2, "l2-fashion-hall", "Galerie Mode", [
        "Coach", "Michael Kors", "Longchamp", "Tumi", "Furla",
        "Kate Spade", "Tory Burch", "Fossil", "Ray-Ban", "Montblanc"], 0, 60)
    _shop_row(l2, "l2-s", ["Levi's", "Gap", "Massimo Dutti", "Cos"], 60, 120, 4, 30)
    _shop_row(l2, "l2-n", ["Mango", "Bershka", "Pull and Bear", "Vans", "Converse", "Skechers"], 12, 72, 76, 50)
    # Food court on the east half of the north row, with counters inside.
    l2.zone("l2-food-court", "area", "Food court", (72, 50, 120, 76), entrance=(96, 50))
    l2.hole(72 - WALL_T / 2, 50, 72 + WALL_T / 2, 76)
    for i, name in enumerate(["Din Tai Fung", "Pizza Express", "Wagamama", "Haagen-Dazs"]):
        cx = 78 + i * 12
        l2.zone(f"l2-food-{i + 1}", "counter", name, (cx - 4, 68, cx + 4, 75.5), brand=_slug(name),
                entrance=(cx, 68), holes=(rect(cx - 3, 72.5, cx + 3, 75.5),))
        l2.hole(cx - 3, 72.5, cx + 3, 75.5)
    _kiosk(l2, "l2-kiosk-1", "Daniel Wellington", 20, 40)
    _kiosk(l2, "l2-kiosk-2", "Casetify", 96, 40)

    anchors = [a for f in floors for a in _gateways(f.id)]
    connectors = (
        Connector("esc-up", "escalator", ConnectorEnd("L1", 52, 38), ConnectorEnd("L2", 68, 38), 25.0),
        Connector("esc-down", "escalator", ConnectorEnd("L2", 52, 42), ConnectorEnd("L1", 68, 42), 25.0),
        Connector("lift-1", "lift", ConnectorEnd("L1", 30, 45), ConnectorEnd("L2", 30, 45), 45.0),
    )
    pois = [
        Poi("l1-wc", "toilet", "L1", 6, 70, "Toilets"),
        Poi("l2-wc", "toilet", "L2", 6, 70, "Toilets"),
        Poi("l1-info", "information", "L1", 40, 34, "Information desk"),
        Poi("l1-door-w", "entrance", "L1", 0.5, 40, "West doors"),
        Poi("l1-door-e", "entrance", "L1", 119.5, 40, "East doors"),
        Poi("l1-door-s", "entrance", "L1", 63, 0.5, "South doors"),
        Poi("l1-atm", "atm", "L1", 47, 49, "ATM"),
        Poi("l2-cashier", "cashier", "L2", 30, 7, "Galerie Mode cashier"),
    ]
    return Venue(
        info=VenueInfo("demo-mall", "Demo Mall", "Asia/Shanghai", Origin(31.23, 121.47, 0.0)),
        floors=floors,
        anchors=tuple(anchors),
        beacons=tuple(b for p in plans.values() for b in p.beacons),
        zones=tuple(z for p in plans.values() for z in p.zones),
        walkable=tuple(Walkable(fid, rect(0, 0, MALL_W, MALL_H), tuple(p.holes)) for fid, p in plans.items()),
        connectors=connectors,
        pois=tuple(pois),
    )


def build_corner_store() -> Venue:
    """A single 20 x 15 m store: entrance, three counters, a checkout, shelves, six gateways."""
    floor = Floor("L1", 0, 0.0, rect(0, 0, 20, 15), "Shop floor")
    shelves = [rect(3, 6, 4, 12), rect(7, 6, 8, 12), rect(11, 6, 12, 12)]
    zones = [
        Zone("store", "store", "Corner Store", "L1", rect(0, 0, 20, 15), brand="corner-store", entrance=(10, 0)),
        Zone("entrance", "entrance", "Entrance", "L1", rect(8, 0, 12, 2.5), entrance=(10, 0)),
        Zone("checkout", "checkout", "Checkout", "L1", rect(14, 0.5, 19.5, 4.5), entrance=(14, 2.5)),
        Zone("c-skincare", "counter", "Skincare counter", "L1", rect(14, 7, 19.5, 10.5), brand="lumiere",
             entrance=(14, 8.75)),
        Zone("c-fragrance", "counter", "Fragrance counter", "L1", rect(14, 11, 19.5, 14.5), brand="aura",
             entrance=(14, 12.75)),
        Zone("c-makeup", "counter", "Makeup counter", "L1", rect(0.5, 12.5, 12, 14.5), brand="palette",
             entrance=(6, 12.5)),
    ]
    holes = [*shelves, rect(17, 1, 19.5, 2), rect(18.5, 8, 19.5, 10), rect(18.5, 11.5, 19.5, 14),
             rect(1, 14, 11.5, 14.5)]
    anchors = [Anchor(f"gw-{i + 1}", "L1", x, y, 3.0, rssi_1m=-59.0, path_loss_n=2.2)
               for i, (x, y) in enumerate([(3, 3), (10, 3), (17, 3), (3, 12), (10, 12), (17, 12)])]
    beacons = [Beacon(f"ibeacon:{APP_UUID}-100-{i + 1}", "L1", x, y, 2.5)
               for i, (x, y) in enumerate([(1, 1), (19, 7), (19, 14), (1, 14)])]
    return Venue(
        info=VenueInfo("corner-store", "Corner Store", "Europe/Paris", Origin(48.8566, 2.3522, 0.0)),
        floors=(floor,),
        anchors=tuple(anchors),
        beacons=tuple(beacons),
        zones=tuple(zones),
        walkable=(Walkable("L1", rect(0, 0, 20, 15), tuple(holes)),),
        pois=(Poi("door", "entrance", "L1", 10, 0.5, "Door"),),
    )


SHIPPED: Final = {"demo-mall.yaml": build_demo_mall, "corner-store.yaml": build_corner_store}


def write_shipped(directory: Path = VENUES_DIR) -> list[Path]:
    out = []
    for name, build in SHIPPED.items():
        venue = build()
        validate_venue(venue, name)
        path = directory / name
        path.write_text(f"# Generated by `python -m simulations.venue_builder`; edit the builder, not this file.\n"
                        f"{dump_venue(venue)}", encoding="utf-8")
        out.append(path)
    return out


if __name__ == "__main__":
    for p in write_shipped():
        sys.stdout.write(f"wrote {p}\n")
