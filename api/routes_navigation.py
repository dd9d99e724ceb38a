"""HTTP surface of shopper navigation: where am I, a route to a counter or point of interest (across
floors), and what is nearby (places and the shopper's own open offers) with distance and bearing.

Routes (all under ``/v1``):

- ``GET /shoppers/{device}/whereami``: latest position, floor, zone(s), accuracy, age.
- ``GET /navigation/route?from_device=D | from_floor=F&x=X&y=Y, to_zone=Z | to_poi=P``: polyline with
  floors, ``length_m``, ``seconds``, connectors used, turn-by-turn steps with bearings.
- ``GET /shoppers/{device}/nearby?radius_m=R``: zones and POIs on the shopper's floor within R m, and
  the shopper's open offers, each with straight-line distance, bearing and the walking route's length
  and time.
- ``GET /navigation/destinations``: every zone and POI a route can go to.

A bad request gets a 4xx ``{"error", "field", "message"}`` naming the field: ``404 unknown_device``,
``422 unknown_zone`` / ``unknown_poi`` / ``unknown_floor`` / ``off_map`` / ``missing`` / ``ambiguous``,
``409 no_route``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Final

from fastapi import APIRouter, HTTPException, Path, Query

from api.wayfinding import Destination, Reach, Way, Wayfinder, WayfindingError, bearing_deg, compass_name
from positioning.live import Fix

ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"  # pseudonyms, zone and POI ids
NEARBY_DEFAULT_M: Final = 25.0  # about the span of a mall corridor between two crossings
NEARBY_MAX_M: Final = 200.0  # beyond this "nearby" is the whole floor
COORD_LIMIT_M: Final = 100_000.0  # venue coordinates are metres from a local origin; larger is a typo
ROUND_M: Final = 2  # centimetres are plenty for a map
OFFER_KEYS: Final = ("offer_id", "campaign", "brand", "title", "body", "value", "expires", "voucher")

DeviceId = Annotated[str, Path(pattern=ID_PATTERN, description="the shopper's pseudonymous device id")]
LatestLookup = Callable[[str], Fix | None]
OffersLookup = Callable[[str, float], Sequence[dict[str, Any]]]
CampaignZones = Callable[[str], Sequence[str]]


def _refuse(status: int, error: str, field: str, message: str) -> HTTPException:
    return HTTPException(status, {"error": error, "field": field, "message": message})


def build_router(wayfinder: Wayfinder, latest: LatestLookup, offers: OffersLookup | None = None,
                 campaign_zones: CampaignZones | None = None, clock: Callable[[], float] = time.time) -> APIRouter:
    """``latest(device)`` gives the device's live fix (None when not seen recently); ``offers(shopper, now)``
    its open offers (``campaign`` and ``zone`` keys); ``campaign_zones(campaign)`` the zones of a campaign."""
    router = APIRouter(prefix="/v1", tags=["navigation"])
    venue = wayfinder.venue

    def fix_of(device: str, field: str = "device") -> Fix:
        f = latest(device)
        if f is None or f.floor is None:
            raise _refuse(404, "unknown_device", field, f"no recent position for device {device!r}")
        return f

    def reach(place: tuple[str, float, float], field: str) -> Reach:
        try:
            return wayfinder.reach(place, field)
        except WayfindingError as exc:
            raise _refuse(422, exc.error, exc.field, str(exc)) from None

    def floor_dict(floor: str) -> dict[str, Any]:
        return {"id": floor, "name": wayfinder.floor_name(floor), "level": wayfinder.floor_level(floor)}

    def direction(bearing: float | None) -> dict[str, Any]:
        return {"bearing_deg": None if bearing is None else round(bearing, 1),
                "compass_deg": None if bearing is None else _round(wayfinder.compass(bearing), 1),
                "direction": None if bearing is None else compass_name(bearing)}

    @router.get("/shoppers/{device}/whereami")
    def whereami(device: DeviceId) -> dict[str, Any]:
        f = fix_of(device)
        assert f.floor is not None
        zone = venue.zone(f.zone) if f.zone is not None else None
        return {"device": device, "t": f.t, "age_s": round(max(0.0, clock() - f.t), 1),
                "floor": floor_dict(f.floor), "x": round(f.x, ROUND_M), "y": round(f.y, ROUND_M),
                "accuracy_m": round(f.accuracy_m, 2),
                "zone": None if zone is None else {"id": zone.id, "name": zone.name, "kind": zone.kind,
                                                   "brand": zone.brand},
                "zones_here": [z.id for z in wayfinder.zones_at(f.floor, f.x, f.y)]}

    @router.get("/navigation/destinations")
    def destinations() -> dict[str, Any]:
        return {"destinations": [_destination_dict(d) for d in sorted(wayfinder.destinations.values(),
                                                                      key=lambda d: (d.kind, d.id))]}

    @router.get("/navigation/route")
    def navigate(from_device: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
                 from_floor: Annotated[str | None, Query(max_length=64)] = None,
                 x: Annotated[float | None, Query(ge=-COORD_LIMIT_M, le=COORD_LIMIT_M)] = None,
                 y: Annotated[float | None, Query(ge=-COORD_LIMIT_M, le=COORD_LIMIT_M)] = None,
                 to_zone: Annotated[str | None, Query(max_length=128)] = None,
                 to_poi: Annotated[str | None, Query(max_length=128)] = None) -> dict[str, Any]:
        # ---- where from
        given = {"from_floor": from_floor, "x": x, "y": y}
        if from_device is not None:
            if any(v is not None for v in given.values()):
                raise _refuse(422, "ambiguous", "from_device", "give from_device or from_floor/x/y, not both")
            f = fix_of(from_device, "from_device")
            assert f.floor is not None
            place = (f.floor, f.x, f.y)
        else:
            missing = [k for k, v in given.items() if v is None]
            if missing:
                raise _refuse(422, "missing", missing[0], "give from_device, or from_floor with x and y "
                                                          f"({', '.join(missing)} missing)")
            assert from_floor is not None and x is not None and y is not None
            try:
                wayfinder.check_place(from_floor, x, y)
            except WayfindingError as exc:
                raise _refuse(422, exc.error, "from_floor" if exc.field == "floor" else exc.field, str(exc)) from None
            place = (from_floor, x, y)
        # ---- where to
        if (to_zone is None) == (to_poi is None):
            raise _refuse(422, "missing" if to_zone is None else "ambiguous", "to_zone",
                          "give exactly one of to_zone or to_poi")
        if to_zone is not None:
            dest = wayfinder.destination("zone", to_zone)
            if dest is None:
                raise _refuse(422, "unknown_zone", "to_zone", f"unknown zone {to_zone!r}")
        else:
            assert to_poi is not None
            dest = wayfinder.destination("poi", to_poi)
            if dest is None:
                raise _refuse(422, "unknown_poi", "to_poi", f"unknown point of interest {to_poi!r}")
        r = reach(place, "from_device" if from_device is not None else "x")
        way = wayfinder.way(r, dest)
        if way is None:
            raise _refuse(409, "no_route", "to_zone" if to_zone is not None else "to_poi",
                          f"no walkable route from {place} to {dest.id!r}")
        start_floor, sx, sy = r.start
        straight = math.hypot(dest.x - sx, dest.y - sy) if dest.floor == start_floor else None
        return {"from": {"device": from_device, "floor": start_floor, "x": round(sx, ROUND_M),
                         "y": round(sy, ROUND_M), "snapped_m": round(r.snapped_m, 2)},
                "to": _destination_dict(dest),
                **_way_dict(way, wayfinder),
                "straight_line_m": _round(straight, 2)}

    @router.get("/shoppers/{device}/nearby")
    def nearby(device: DeviceId,
               radius_m: Annotated[float, Query(gt=0, le=NEARBY_MAX_M)] = NEARBY_DEFAULT_M) -> dict[str, Any]:
        f = fix_of(device)
        assert f.floor is not None
        place = (f.floor, f.x, f.y)
        r = reach(place, "device")
        places = []
        for n in wayfinder.nearby(place, radius_m, r):
            d = n.destination
            places.append({**_destination_dict(d), "distance_m": round(n.distance_m, 1),
                           "inside": d.kind == "zone" and n.distance_m == 0.0, **direction(n.bearing_deg),
                           **_walk(n.way)})
        return {"device": device, "t": f.t, "floor": floor_dict(f.floor), "x": round(f.x, ROUND_M),
                "y": round(f.y, ROUND_M), "radius_m": radius_m, "places": places,
                "offers": nearby_offers(device, place, r, radius_m)}

    def nearby_offers(device: str, place: tuple[str, float, float], r: Reach, radius_m: float
                      ) -> list[dict[str, Any]]:
        if offers is None:
            return []
        out = []
        for o in offers(device, clock()):
            zones = list(campaign_zones(str(o["campaign"]))) if campaign_zones is not None else []
            if o.get("zone") and o["zone"] not in zones:
                zones.append(str(o["zone"]))
            dests = [d for z in zones if (d := wayfinder.destination("zone", z)) is not None]
            ways = wayfinder.ways(r, dests)
            best = min(((w.seconds, d, w) for d, w in zip(dests, ways, strict=True) if w is not None),
                       default=None, key=lambda b: b[0])
            item: dict[str, Any] = {k: o[k] for k in OFFER_KEYS if k in o}
            if best is None:
                out.append({**item, "zone": None, "floor": None, "distance_m": None, "nearby": False,
                            **direction(None), **_walk(None)})
                continue
            _, d, w = best
            dist = wayfinder.zone_distance(d.id, place[0], place[1], place[2])
            bearing = (None if d.floor != place[0] or math.hypot(d.x - place[1], d.y - place[2]) < 1e-6
                       else bearing_deg(d.x - place[1], d.y - place[2]))
            out.append({**item, "zone": d.id, "zone_name": d.name, "floor": d.floor,
                        "distance_m": _round(dist, 1), "nearby": dist is not None and dist <= radius_m,
                        **direction(bearing), **_walk(w)})
        out.sort(key=lambda o: (o["walk_s"] is None, o["walk_s"] or 0.0))
        return out

    return router


def _round(v: float | None, nd: int) -> float | None:
    return None if v is None else round(v, nd)


def _walk(w: Way | None) -> dict[str, Any]:
    return {"walk_m": None if w is None else round(w.length_m, 1), "walk_s": None if w is None else round(w.seconds, 1),
            "connectors": [] if w is None else list(w.connectors)}


def _destination_dict(d: Destination) -> dict[str, Any]:
    return {"kind": d.kind, "id": d.id, "name": d.name, "category": d.category, "brand": d.brand, "floor": d.floor,
            "x": round(d.x, ROUND_M), "y": round(d.y, ROUND_M)}


def _way_dict(w: Way, wf: Wayfinder) -> dict[str, Any]:
    rides = [s for s in w.steps if s.kind == "connector"]
    return {
        "floors": list(w.floors),
        "length_m": round(w.length_m, 2),
        "seconds": round(w.seconds, 1),
        "connectors": [{"id": s.connector, "kind": s.connector_kind, "from_floor": s.floor, "to_floor": s.to_floor,
                        "seconds": s.seconds} for s in rides],
        "polyline": [{"floor": p.floor, "x": round(p.x, ROUND_M), "y": round(p.y, ROUND_M)} for p in w.points],
        "steps": [{"kind": s.kind, "instruction": s.instruction, "floor": s.floor, "x": round(s.x, ROUND_M),
                   "y": round(s.y, ROUND_M), "distance_m": round(s.distance_m, 1), "seconds": round(s.seconds, 1),
                   "bearing_deg": _round(s.bearing_deg, 1), "compass_deg": _round(wf.compass(s.bearing_deg), 1)
                   if s.bearing_deg is not None else None, "turn": s.turn, "connector": s.connector,
                   "to_floor": s.to_floor} for s in w.steps],
    }


__all__ = ["build_router"]
