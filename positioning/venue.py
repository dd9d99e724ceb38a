"""The venue model: floors, anchors, beacons, zones, walkable areas, connectors and points of interest.

A venue is one YAML document (see ARCHITECTURE.md, "Coordinates and venue file"). ``parse_venue``
turns its text into frozen dataclasses and rejects real problems with a message that names the
file, the path of the bad field and the offending value. The caller opens files; this module does
no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import yaml
from shapely import STRtree
from shapely.geometry import LinearRing, Point, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from positioning.errors import VenueError

SCHEMA_VERSION: Final = 1
DEFAULT_ANCHOR_Z_M: Final = 3.0  # gateways hang from the ceiling
DEFAULT_RSSI_1M_DBM: Final = -59.0  # typical iBeacon measured power
DEFAULT_PATH_LOSS_N: Final = 2.0  # free-space exponent; indoor fits are usually 1.8-3
DEFAULT_BEACON_Z_M: Final = 2.5  # fixed beacons are mounted above head height
DEFAULT_FLOOR_HEIGHT_M: Final = 5.0  # slab-to-slab when a floor gives no elevation
DEFAULT_CONNECTOR_SECONDS: Final[Mapping[str, float]] = {"escalator": 25.0, "lift": 45.0, "stairs": 30.0}
GEOMETRY_TOLERANCE_M: Final = 0.01  # rounding slack for "inside the outline" and "contains"
OVERLAP_TOLERANCE_M2: Final = 0.01  # shared edges and float noise are not overlaps
ENTRANCE_TOLERANCE_M: Final = 2.0  # a zone entrance may sit in the doorway just outside the polygon

ZONE_KINDS: Final = ("counter", "store", "corridor", "entrance", "checkout", "area")
CONNECTOR_KINDS: Final = ("escalator", "lift", "stairs")

Point2 = tuple[float, float]
Ring = tuple[Point2, ...]


@dataclass(frozen=True, slots=True)
class Origin:
    lat: float
    lon: float
    bearing_deg: float = 0.0


@dataclass(frozen=True, slots=True)
class VenueInfo:
    id: str
    name: str
    timezone: str
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class Floor:
    id: str
    level: int
    elevation_m: float
    outline: Ring
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Anchor:
    """A fixed radio node at a known position: a gateway that hears beacons (gateway mode)."""

    id: str
    floor: str
    x: float
    y: float
    z: float = DEFAULT_ANCHOR_Z_M
    kind: str = "gateway"
    rssi_1m: float = DEFAULT_RSSI_1M_DBM
    path_loss_n: float = DEFAULT_PATH_LOSS_N


@dataclass(frozen=True, slots=True)
class Beacon:
    """A fixed iBeacon that shopper apps range (phone mode); ``id`` is the canonical beacon id."""

    id: str
    floor: str
    x: float
    y: float
    z: float = DEFAULT_BEACON_Z_M
    rssi_1m: float = DEFAULT_RSSI_1M_DBM
    path_loss_n: float = DEFAULT_PATH_LOSS_N


@dataclass(frozen=True, slots=True)
class Zone:
    id: str
    kind: str
    name: str
    floor: str
    polygon: Ring
    holes: tuple[Ring, ...] = ()
    brand: str | None = None
    entrance: Point2 | None = None


@dataclass(frozen=True, slots=True)
class Walkable:
    floor: str
    polygon: Ring
    holes: tuple[Ring, ...] = ()


@dataclass(frozen=True, slots=True)
class ConnectorEnd:
    floor: str
    x: float
    y: float


@dataclass(frozen=True, slots=True)
class Connector:
    id: str
    kind: str
    a: ConnectorEnd
    b: ConnectorEnd
    seconds: float


@dataclass(frozen=True, slots=True)
class Poi:
    id: str
    kind: str
    floor: str
    x: float
    y: float
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Venue:
    info: VenueInfo
    floors: tuple[Floor, ...]
    anchors: tuple[Anchor, ...] = ()
    beacons: tuple[Beacon, ...] = ()
    zones: tuple[Zone, ...] = ()
    walkable: tuple[Walkable, ...] = ()
    connectors: tuple[Connector, ...] = ()
    pois: tuple[Poi, ...] = ()
    schema: int = SCHEMA_VERSION
    _floor_index: Mapping[str, Floor] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_floor_index", {f.id: f for f in self.floors})

    @property
    def id(self) -> str:
        return self.info.id

    def floor(self, floor_id: str) -> Floor:
        found = self._floor_index.get(floor_id)
        if found is None:
            raise KeyError(floor_id)
        return found

    @property
    def floor_ids(self) -> tuple[str, ...]:
        return tuple(f.id for f in self.floors)

    def anchors_on(self, floor_id: str) -> tuple[Anchor, ...]:
        return tuple(a for a in self.anchors if a.floor == floor_id)

    def beacons_on(self, floor_id: str) -> tuple[Beacon, ...]:
        return tuple(b for b in self.beacons if b.floor == floor_id)

    def zones_on(self, floor_id: str) -> tuple[Zone, ...]:
        return tuple(z for z in self.zones if z.floor == floor_id)

    def walkable_on(self, floor_id: str) -> tuple[Walkable, ...]:
        return tuple(w for w in self.walkable if w.floor == floor_id)

    def zone(self, zone_id: str) -> Zone:
        for z in self.zones:
            if z.id == zone_id:
                return z
        raise KeyError(zone_id)


# --------------------------------------------------------------------------------------------
# Parsing: a small path-aware reader so every error names the field it is about.


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, problem: str) -> VenueError:
        return VenueError(self.source, path, problem)

    def mapping(self, value: object, path: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a mapping, got {_show(value)}")
        return value

    def seq(self, value: object, path: str) -> Sequence[Any]:
        if not isinstance(value, list | tuple):
            raise self.fail(path, f"expected a list, got {_show(value)}")
        return value

    def required(self, m: Mapping[str, Any], key: str, path: str) -> Any:
        if key not in m or m[key] is None:
            raise self.fail(_join(path, key), "missing required field")
        return m[key]

    def string(self, m: Mapping[str, Any], key: str, path: str, default: str | None = None) -> str:
        value = m.get(key)
        if value is None:
            if default is not None:
                return default
            raise self.fail(_join(path, key), "missing required field")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.fail(_join(path, key), f"expected a string, got {_show(value)}")
        text = str(value)
        if not text.strip():
            raise self.fail(_join(path, key), "must not be empty")
        return text

    def opt_string(self, m: Mapping[str, Any], key: str, path: str) -> str | None:
        if m.get(key) is None:
            return None
        return self.string(m, key, path)

    def number(self, m: Mapping[str, Any], key: str, path: str, default: float | None = None) -> float:
        value = m.get(key)
        if value is None:
            if default is not None:
                return default
            raise self.fail(_join(path, key), "missing required field")
        return self.as_number(value, _join(path, key))

    def as_number(self, value: object, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, f"expected a number, got {_show(value)}")
        if not math.isfinite(value):
            raise self.fail(path, f"expected a finite number, got {value!r}")
        return float(value)

    def integer(self, m: Mapping[str, Any], key: str, path: str, default: int | None = None) -> int:
        value = m.get(key)
        if value is None:
            if default is not None:
                return default
            raise self.fail(_join(path, key), "missing required field")
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(_join(path, key), f"expected an integer, got {_show(value)}")
        return value

    def point(self, value: object, path: str) -> Point2:
        pair = self.seq(value, path)
        if len(pair) != 2:
            raise self.fail(path, f"expected a point [x, y], got {_show(value)}")
        return (self.as_number(pair[0], f"{path}[0]"), self.as_number(pair[1], f"{path}[1]"))

    def ring(self, value: object, path: str) -> Ring:
        points = self.seq(value, path)
        ring = tuple(self.point(p, f"{path}[{i}]") for i, p in enumerate(points))
        if len(ring) > 1 and ring[0] == ring[-1]:
            ring = ring[:-1]
        if len(ring) < 3:
            raise self.fail(path, f"a polygon needs at least 3 distinct points, got {len(ring)}")
        shape = LinearRing(ring)
        if not shape.is_simple:
            raise self.fail(path, "self-intersecting polygon")
        if Polygon(ring).area <= 0.0:
            raise self.fail(path, "polygon has zero area")
        return ring

    def rings(self, value: object, path: str) -> tuple[Ring, ...]:
        if value is None:
            return ()
        return tuple(self.ring(r, f"{path}[{i}]") for i, r in enumerate(self.seq(value, path)))

    def items(self, doc: Mapping[str, Any], key: str) -> list[tuple[str, Mapping[str, Any]]]:
        raw = doc.get(key)
        if raw is None:
            return []
        return [(f"{key}[{i}]", self.mapping(item, f"{key}[{i}]")) for i, item in enumerate(self.seq(raw, key))]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: object) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def parse_venue(text: str, source: str = "venue.yaml") -> Venue:
    """Parse and validate a venue document. Raises ``VenueError`` naming file, path and problem."""
    r = _Reader(source)
    try:
        doc_raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise r.fail(where, f"not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if doc_raw is None:
        raise r.fail("", "empty file")
    doc = r.mapping(doc_raw, "(top level)")

    schema = r.integer(doc, "schema", "")
    if schema != SCHEMA_VERSION:
        raise r.fail("schema", f"unsupported schema version {schema!r} (supported: {SCHEMA_VERSION})")

    v = r.mapping(r.required(doc, "venue", ""), "venue")
    origin = None
    if v.get("origin") is not None:
        o = r.mapping(v["origin"], "venue.origin")
        origin = Origin(
            lat=r.number(o, "lat", "venue.origin"),
            lon=r.number(o, "lon", "venue.origin"),
            bearing_deg=r.number(o, "bearing_deg", "venue.origin", 0.0),
        )
    info = VenueInfo(
        id=r.string(v, "id", "venue"),
        name=r.string(v, "name", "venue"),
        timezone=r.string(v, "timezone", "venue"),
        origin=origin,
    )

    r.required(doc, "floors", "")
    floors: list[Floor] = []
    for i, (path, f) in enumerate(r.items(doc, "floors")):
        level = r.integer(f, "level", path, i)
        floors.append(
            Floor(
                id=r.string(f, "id", path),
                level=level,
                elevation_m=r.number(f, "elevation_m", path, level * DEFAULT_FLOOR_HEIGHT_M),
                outline=r.ring(r.required(f, "outline", path), f"{path}.outline"),
                name=r.opt_string(f, "name", path),
            )
        )
    if not floors:
        raise r.fail("floors", "a venue needs at least one floor")
    _check_unique(r, "floors", [f.id for f in floors])
    floor_ids = [f.id for f in floors]

    def floor_ref(m: Mapping[str, Any], path: str) -> str:
        fid = r.string(m, "floor", path)
        if fid not in floor_ids:
            raise r.fail(_join(path, "floor"), f"unknown floor {fid!r} (floors: {', '.join(floor_ids)})")
        return fid

    if doc.get("anchors") is None and doc.get("beacons") is None:
        raise r.fail("anchors", "missing required field (a venue needs anchors or beacons)")

    anchors = [
        Anchor(
            id=r.string(a, "id", path),
            floor=floor_ref(a, path),
            x=r.number(a, "x", path),
            y=r.number(a, "y", path),
            z=r.number(a, "z", path, DEFAULT_ANCHOR_Z_M),
            kind=r.string(a, "kind", path, "gateway"),
            rssi_1m=r.number(a, "rssi_1m", path, DEFAULT_RSSI_1M_DBM),
            path_loss_n=r.number(a, "path_loss_n", path, DEFAULT_PATH_LOSS_N),
        )
        for path, a in r.items(doc, "anchors")
    ]
    beacons = [
        Beacon(
            id=r.string(b, "id", path).strip().lower(),
            floor=floor_ref(b, path),
            x=r.number(b, "x", path),
            y=r.number(b, "y", path),
            z=r.number(b, "z", path, DEFAULT_BEACON_Z_M),
            rssi_1m=r.number(b, "rssi_1m", path, DEFAULT_RSSI_1M_DBM),
            path_loss_n=r.number(b, "path_loss_n", path, DEFAULT_PATH_LOSS_N),
        )
        for path, b in r.items(doc, "beacons")
    ]
    _check_unique(r, "anchors", [a.id for a in anchors])
    _check_unique(r, "beacons", [b.id for b in beacons])
    for i, b in enumerate(beacons):
        if b.id in {a.id for a in anchors}:
            raise r.fail(f"beacons[{i}].id", f"duplicate id {b.id!r} (also an anchor id)")

    zones: list[Zone] = []
    for path, z in r.items(doc, "zones"):
        kind = r.string(z, "kind", path)
        if kind not in ZONE_KINDS:
            raise r.fail(f"{path}.kind", f"unknown zone kind {kind!r} (kinds: {', '.join(ZONE_KINDS)})")
        zone_id = r.string(z, "id", path)
        entrance = r.point(z["entrance"], f"{path}.entrance") if z.get("entrance") is not None else None
        zones.append(
            Zone(
                id=zone_id,
                kind=kind,
                name=r.string(z, "name", path, zone_id),
                floor=floor_ref(z, path),
                polygon=r.ring(r.required(z, "polygon", path), f"{path}.polygon"),
                holes=r.rings(z.get("holes"), f"{path}.holes"),
                brand=r.opt_string(z, "brand", path),
                entrance=entrance,
            )
        )
    _check_unique(r, "zones", [z.id for z in zones])

    walkable = [
        Walkable(
            floor=floor_ref(w, path),
            polygon=r.ring(r.required(w, "polygon", path), f"{path}.polygon"),
            holes=r.rings(w.get("holes"), f"{path}.holes"),
        )
        for path, w in r.items(doc, "walkable")
    ]

    connectors: list[Connector] = []
    for path, c in r.items(doc, "connectors"):
        kind = r.string(c, "kind", path)
        if kind not in CONNECTOR_KINDS:
            raise r.fail(f"{path}.kind", f"unknown connector kind {kind!r} (kinds: {', '.join(CONNECTOR_KINDS)})")
        ends = []
        for end_key in ("a", "b"):
            end_path = f"{path}.{end_key}"
            e = r.mapping(r.required(c, end_key, path), end_path)
            ends.append(ConnectorEnd(floor=floor_ref(e, end_path), x=r.number(e, "x", end_path),
                                     y=r.number(e, "y", end_path)))
        seconds = r.number(c, "seconds", path, DEFAULT_CONNECTOR_SECONDS[kind])
        if seconds <= 0:
            raise r.fail(f"{path}.seconds", f"must be positive, got {seconds!r}")
        connectors.append(Connector(id=r.string(c, "id", path), kind=kind, a=ends[0], b=ends[1], seconds=seconds))
    _check_unique(r, "connectors", [c.id for c in connectors])

    pois = [
        Poi(
            id=r.string(p, "id", path),
            kind=r.string(p, "kind", path),
            floor=floor_ref(p, path),
            x=r.number(p, "x", path),
            y=r.number(p, "y", path),
            name=r.opt_string(p, "name", path),
        )
        for path, p in r.items(doc, "pois")
    ]
    _check_unique(r, "pois", [p.id for p in pois])

    venue = Venue(info, tuple(floors), tuple(anchors), tuple(beacons), tuple(zones), tuple(walkable),
                  tuple(connectors), tuple(pois))
    _check_geometry(r, venue)
    return venue


def _check_unique(r: _Reader, key: str, ids: Sequence[str]) -> None:
    seen: dict[str, int] = {}
    for i, item_id in enumerate(ids):
        if item_id in seen:
            raise r.fail(f"{key}[{i}].id", f"duplicate id {item_id!r} (first at {key}[{seen[item_id]}])")
        seen[item_id] = i


def _check_geometry(r: _Reader, venue: Venue) -> None:
    outlines = {f.id: Polygon(f.outline).buffer(GEOMETRY_TOLERANCE_M) for f in venue.floors}

    def inside(floor: str, x: float, y: float, path: str, what: str) -> None:
        if not outlines[floor].covers(Point(x, y)):
            raise r.fail(path, f"{what} ({x:g}, {y:g}) is outside the outline of floor {floor!r}")

    for i, a in enumerate(venue.anchors):
        inside(a.floor, a.x, a.y, f"anchors[{i}]", f"anchor {a.id!r} at")
    for i, b in enumerate(venue.beacons):
        inside(b.floor, b.x, b.y, f"beacons[{i}]", f"beacon {b.id!r} at")
    for i, p in enumerate(venue.pois):
        inside(p.floor, p.x, p.y, f"pois[{i}]", f"point of interest {p.id!r} at")
    for i, c in enumerate(venue.connectors):
        for key, end in (("a", c.a), ("b", c.b)):
            inside(end.floor, end.x, end.y, f"connectors[{i}].{key}", f"connector end of {c.id!r} at")
    for i, w in enumerate(venue.walkable):
        if not outlines[w.floor].covers(Polygon(w.polygon)):
            raise r.fail(f"walkable[{i}].polygon", f"extends outside the outline of floor {w.floor!r}")

    shapes: list[BaseGeometry] = []
    for i, z in enumerate(venue.zones):
        shell = Polygon(z.polygon)
        if not outlines[z.floor].covers(shell):
            raise r.fail(f"zones[{i}].polygon", f"zone {z.id!r} extends outside the outline of floor {z.floor!r}")
        shape = zone_shape(z)
        shapes.append(shape)
        if z.entrance is not None and shell.distance(Point(z.entrance)) > ENTRANCE_TOLERANCE_M:
            raise r.fail(f"zones[{i}].entrance", f"entrance {list(z.entrance)} is not on or inside zone {z.id!r}")

    tree = STRtree(shapes)
    pairs = tree.query(shapes, predicate="intersects") if shapes else ([], [])  # a venue may have no zones
    for i, j in zip(*pairs, strict=True):
        za, zb = venue.zones[int(i)], venue.zones[int(j)]
        if i >= j or za.floor != zb.floor:
            continue
        sa, sb = shapes[int(i)], shapes[int(j)]
        if sa.intersection(sb).area <= OVERLAP_TOLERANCE_M2:
            continue
        grown_a, grown_b = sa.buffer(GEOMETRY_TOLERANCE_M), sb.buffer(GEOMETRY_TOLERANCE_M)
        if grown_a.covers(sb) or grown_b.covers(sa):
            continue
        raise r.fail(f"zones[{j}].polygon",
                     f"zone {zb.id!r} overlaps zone {za.id!r} (zones[{i}]) without one containing the other")


def zone_shape(zone: Zone) -> BaseGeometry:
    """The zone's area as a shapely geometry (holes removed)."""
    shell: BaseGeometry = Polygon(zone.polygon)
    if zone.holes:
        shell = shell.difference(unary_union([Polygon(h) for h in zone.holes]))
    return shell


def walkable_shape(venue: Venue, floor_id: str) -> BaseGeometry:
    """Where people can walk on a floor: the union of walkable areas minus their holes.

    A floor without walkable entries is walkable everywhere inside its outline.
    """
    areas = venue.walkable_on(floor_id)
    if not areas:
        return Polygon(venue.floor(floor_id).outline)
    parts: list[BaseGeometry] = []
    for w in areas:
        shell: BaseGeometry = Polygon(w.polygon)
        if w.holes:
            shell = shell.difference(unary_union([Polygon(h) for h in w.holes]))
        parts.append(shell)
    return unary_union(parts)


def validate_venue(venue: Venue, source: str = "venue") -> None:
    """Re-check a venue built in code by round-tripping it through the parser."""
    parse_venue(dump_venue(venue), source)


# --------------------------------------------------------------------------------------------
# Saving and summarising.


def _ring_out(ring: Ring) -> list[list[float]]:
    return [[_num_out(x), _num_out(y)] for x, y in ring]


def _num_out(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(float(value), 6)


def venue_to_dict(venue: Venue) -> dict[str, Any]:
    info: dict[str, Any] = {"id": venue.info.id, "name": venue.info.name, "timezone": venue.info.timezone}
    if venue.info.origin is not None:
        o = venue.info.origin
        info["origin"] = {"lat": o.lat, "lon": o.lon, "bearing_deg": _num_out(o.bearing_deg)}
    doc: dict[str, Any] = {"schema": venue.schema, "venue": info}
    doc["floors"] = [
        {"id": f.id, "level": f.level, "elevation_m": _num_out(f.elevation_m), "outline": _ring_out(f.outline)}
        | ({"name": f.name} if f.name else {})
        for f in venue.floors
    ]
    doc["anchors"] = [
        {"id": a.id, "kind": a.kind, "floor": a.floor, "x": _num_out(a.x), "y": _num_out(a.y),
         "z": _num_out(a.z), "rssi_1m": _num_out(a.rssi_1m), "path_loss_n": _num_out(a.path_loss_n)}
        for a in venue.anchors
    ]
    doc["beacons"] = [
        {"id": b.id, "floor": b.floor, "x": _num_out(b.x), "y": _num_out(b.y), "z": _num_out(b.z),
         "rssi_1m": _num_out(b.rssi_1m), "path_loss_n": _num_out(b.path_loss_n)}
        for b in venue.beacons
    ]
    zones = []
    for z in venue.zones:
        item: dict[str, Any] = {"id": z.id, "kind": z.kind, "name": z.name}
        if z.brand:
            item["brand"] = z.brand
        item["floor"] = z.floor
        item["polygon"] = _ring_out(z.polygon)
        if z.holes:
            item["holes"] = [_ring_out(h) for h in z.holes]
        if z.entrance is not None:
            item["entrance"] = [_num_out(z.entrance[0]), _num_out(z.entrance[1])]
        zones.append(item)
    doc["zones"] = zones
    doc["walkable"] = [
        {"floor": w.floor, "polygon": _ring_out(w.polygon)} | ({"holes": [_ring_out(h) for h in w.holes]}
                                                               if w.holes else {})
        for w in venue.walkable
    ]
    doc["connectors"] = [
        {"id": c.id, "kind": c.kind,
         "a": {"floor": c.a.floor, "x": _num_out(c.a.x), "y": _num_out(c.a.y)},
         "b": {"floor": c.b.floor, "x": _num_out(c.b.x), "y": _num_out(c.b.y)},
         "seconds": _num_out(c.seconds)}
        for c in venue.connectors
    ]
    doc["pois"] = [
        {"id": p.id, "kind": p.kind, "floor": p.floor, "x": _num_out(p.x), "y": _num_out(p.y)}
        | ({"name": p.name} if p.name else {})
        for p in venue.pois
    ]
    return doc


class _FlowListDumper(yaml.SafeDumper):
    """Writes coordinate lists inline ([x, y]) so venue files stay readable."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(not isinstance(x, dict) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


def _represent_dict(dumper: yaml.SafeDumper, data: dict[str, Any]) -> yaml.Node:
    flat = all(not isinstance(v, dict | list) or (isinstance(v, list) and len(v) == 2
               and all(isinstance(x, int | float) for x in v)) for v in data.values())
    return dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=flat and len(data) > 1)


_FlowListDumper.add_representer(list, _represent_list)
_FlowListDumper.add_representer(dict, _represent_dict)


def dump_venue(venue: Venue) -> str:
    """The venue as YAML text that ``parse_venue`` reads back to an equal venue."""
    return yaml.dump(venue_to_dict(venue), Dumper=_FlowListDumper, sort_keys=False, allow_unicode=True,
                     width=1000)


@dataclass(frozen=True, slots=True)
class FloorSummary:
    id: str
    level: int
    area_m2: float
    walkable_m2: float
    anchors: int
    beacons: int
    zones_by_kind: Mapping[str, int]


def summarize_venue(venue: Venue) -> tuple[FloorSummary, ...]:
    out = []
    for f in venue.floors:
        kinds: dict[str, int] = {}
        for z in venue.zones_on(f.id):
            kinds[z.kind] = kinds.get(z.kind, 0) + 1
        out.append(
            FloorSummary(
                id=f.id,
                level=f.level,
                area_m2=float(Polygon(f.outline).area),
                walkable_m2=float(walkable_shape(venue, f.id).area),
                anchors=len(venue.anchors_on(f.id)),
                beacons=len(venue.beacons_on(f.id)),
                zones_by_kind=kinds,
            )
        )
    return tuple(out)


def format_summary(venue: Venue) -> str:
    lines = [f"{venue.info.name} ({venue.id}), timezone {venue.info.timezone}",
             f"  {len(venue.floors)} floors, {len(venue.anchors)} anchors, {len(venue.beacons)} beacons, "
             f"{len(venue.zones)} zones, {len(venue.connectors)} connectors, {len(venue.pois)} points of interest"]
    for s in summarize_venue(venue):
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(s.zones_by_kind.items())) or "no zones"
        lines.append(f"  floor {s.id} (level {s.level}): {s.area_m2:.0f} m2, walkable {s.walkable_m2:.0f} m2, "
                     f"{s.anchors} anchors, {s.beacons} beacons; {kinds}")
    for c in venue.connectors:
        lines.append(f"  connector {c.id} ({c.kind}): {c.a.floor} ({c.a.x:g}, {c.a.y:g}) <-> "
                     f"{c.b.floor} ({c.b.x:g}, {c.b.y:g}), {c.seconds:g} s")
    return "\n".join(lines)
