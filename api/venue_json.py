"""The venue as JSON for the dashboard and API clients: floors, walkable areas, zones, anchors, connectors."""

from __future__ import annotations

from typing import Any

from shapely.geometry import Polygon

from positioning.venue import Venue, walkable_shape


def _rings(geom: Any) -> list[dict[str, Any]]:
    polys = list(getattr(geom, "geoms", [geom]))
    out = []
    for p in polys:
        if not isinstance(p, Polygon) or p.is_empty:
            continue
        out.append({"outer": [[round(x, 2), round(y, 2)] for x, y in p.exterior.coords],
                    "holes": [[[round(x, 2), round(y, 2)] for x, y in r.coords] for r in p.interiors]})
    return out


def venue_geometry(venue: Venue) -> dict[str, Any]:
    return {
        "id": venue.id,
        "name": venue.info.name,
        "timezone": venue.info.timezone,
        "floors": [{
            "id": f.id, "name": f.name or f.id, "level": f.level,
            "outline": [list(p) for p in f.outline],
            "walkable": _rings(walkable_shape(venue, f.id)),
        } for f in sorted(venue.floors, key=lambda f: f.level)],
        "zones": [{
            "id": z.id, "kind": z.kind, "name": z.name, "brand": z.brand, "floor": z.floor,
            "polygon": [list(p) for p in z.polygon], "holes": [[list(p) for p in h] for h in z.holes],
            "entrance": list(z.entrance) if z.entrance else None,
        } for z in venue.zones],
        "anchors": [{"id": a.id, "floor": a.floor, "x": a.x, "y": a.y, "kind": a.kind} for a in venue.anchors],
        "beacons": [{"id": b.id, "floor": b.floor, "x": b.x, "y": b.y} for b in venue.beacons],
        "connectors": [{"id": c.id, "kind": c.kind, "a": {"floor": c.a.floor, "x": c.a.x, "y": c.a.y},
                        "b": {"floor": c.b.floor, "x": c.b.x, "y": c.b.y}} for c in venue.connectors],
        "pois": [{"id": p.id, "kind": p.kind, "floor": p.floor, "x": p.x, "y": p.y, "name": p.name}
                 for p in venue.pois],
    }
