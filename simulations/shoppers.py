"""Shopper agents: arrivals by hour of day, goal-driven walks on the walkable graph, browsing, exits.

Shoppers come from a deterministic customer base (customer ``k``'s devices and habits depend only
on the seed and ``k``), so a regular who comes back another day carries the same beacon ids. A
shopper's visit is a plan of actions (walk to a place, dwell, leave) made on arrival; the places
are entrances, browse spots inside zones, spots in front of shop doors and points of interest,
all inside the walkable area, and every walk follows a route of ``positioning.navigation``, so
agents never cross walls, counters or voids. Floors change only on connectors.

Movement is vectorised: ``Crowd.step`` moves every walking agent along its route with numpy; only
agents that finish an action run Python code to pick the next one.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import shapely
from shapely.ops import nearest_points

from positioning.navigation import NavGraph, NavigationError, Route, RoutePoint, build_nav_graph, waypoint_route
from positioning.venue import Venue, zone_shape
from simulations.errors import SimulationError

# Customers and their devices.
APP_UUID: Final = "8a0d3c6e-6a54-4c1e-9d2f-5b7e1f0a4c21"  # the mall app's iBeacon UUID (as in the demo venues)
TAG_UUID: Final = "c7a1f2e0-3b4d-4e5f-8a9b-0c1d2e3f4a5b"  # cart and basket tags
PHONE_MAJOR_BASE: Final = 10_000  # app phones use majors from here, clear of the venue beacons' majors
MINORS_PER_MAJOR: Final = 60_000
CARRY_WEIGHTS: Final = {"phone": 0.55, "tag": 0.3, "both": 0.15}  # what a beacon-carrying shopper carries
OPT_IN_RATE: Final = 0.6  # share of app users who accepted marketing
REGULARS_SHARE: Final = 0.02  # regulars: about as many as the shoppers of one run (one day)
RETURNING_RATE: Final = 0.3  # share of arrivals that are regulars (so they come back across days)
CUSTOMER_BASE_FACTOR: Final = 50  # customer base size per expected arrival
PHONE_ADV_INTERVALS_S: Final = (0.2, 0.35, 0.5, 0.75, 1.0)  # apps advertising in the background
PHONE_ADV_WEIGHTS: Final = (0.1, 0.2, 0.3, 0.2, 0.2)
TAG_ADV_INTERVALS_S: Final = (0.5, 1.0, 2.0)  # battery tags advertise slowly
TAG_ADV_WEIGHTS: Final = (0.3, 0.5, 0.2)
SCAN_PERIODS_S: Final = (1.0, 1.0, 2.0)  # apps ranging every second, some every other second
SPEED_MEAN_MPS: Final = 1.1  # walking speed of shoppers
SPEED_SD_MPS: Final = 0.2
SPEED_RANGE_MPS: Final = (0.5, 1.5)
WALK_PAUSE_PER_S: Final = 0.02  # a walker stops about once a minute of walking
WALK_PAUSE_S: Final = (2.0, 8.0)
STANDING_TURN_S: Final = 20.0  # someone standing turns about this often

# Visits.
OTHER_EXIT_RATE: Final = 0.6  # shoppers who leave by another door than they came in
PASSER_BY_RATE: Final = 0.2  # arrivals that walk through without entering a shop
GOALS_MEAN: Final = 2.0  # extra goals beyond the first (Poisson)
GOALS_MAX: Final = 6
CHECKOUT_RATE: Final = 0.4  # shoppers who browsed a store with a checkout pay there
TOILET_RATE: Final = 0.08
GLANCE_RATE: Final = 0.3  # chance of stopping briefly at a shop window between goals
FLOOR_CHANGE_PENALTY_M: Final = 60.0  # goal ordering prefers finishing a floor first
DWELL_S: Final = {  # (median seconds, log-normal sigma) per kind of stop
    "counter": (90.0, 0.6),
    "store": (40.0, 0.7),
    "area": (480.0, 0.5),
    "checkout": (120.0, 0.5),
    "toilet": (180.0, 0.4),
    "glance": (6.0, 0.4),
}
GOAL_WEIGHTS: Final = {"counter": 1.0, "store": 1.0, "area": 0.6}
FOOD_HOURS: Final = (11, 12, 13, 17, 18, 19)  # areas (food courts) draw three times more then
MEAN_VISIT_S: Final = 1500.0  # used to size the crowd already inside at the start

# Places.
SPOT_AREA_M2: Final = 25.0  # one browse spot per this much of a zone's area
SPOTS_RANGE: Final = (2, 8)
SPOT_TRIES: Final = 400
BUSY_HOURS: Final = (  # relative arrival intensity per local hour (weekday); the mall opens 10-22
    0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.05, 0.15, 0.35, 0.6,
    0.9, 0.85, 0.8, 0.85, 0.9, 0.95, 1.0, 0.95, 0.75, 0.45, 0.1, 0.03)
WEEKEND_FACTOR: Final = 1.4

# Agent states.
IDLE: Final = 0  # not yet arrived
WALK: Final = 1
DWELL: Final = 2
RIDE: Final = 3
GONE: Final = 4
LEG_GAP_M: Final = 1.0  # spacing between legs in the route pool's global arc length
RIDE_SAMPLES: Final = 21  # positions tabulated along a connector ride
DEFAULT_RIDE_S: Final = 30.0  # a connector the route names but the venue lacks (never expected)


@dataclass(frozen=True, slots=True)
class Place:
    floor: str
    x: float
    y: float
    kind: str  # entrance, spot, glance, poi
    zone: str | None = None
    zone_kind: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """A beacon a shopper carries. ``tx_offset_db`` is how much louder than nominal it really is."""

    id: str
    kind: str  # phone | tag
    adv_interval_s: float
    tx_offset_db: float
    tx_power: float  # the iBeacon measured power it advertises
    body_loss_db: float  # loss when the carrier's body is between it and a receiver
    scan_period_s: float  # phone mode: how often the app reports a scan


@dataclass(frozen=True, slots=True)
class Customer:
    index: int
    speed_mps: float
    devices: tuple[DeviceSpec, ...]
    has_app: bool
    opted_in: bool
    regular: bool


def customer(seed: int, index: int, base_size: int, device_offset_sd_db: float = 5.0,
             device_offset_max_db: float = 10.0, body_db: tuple[float, float] = (5.0, 15.0)) -> Customer:
    """Customer ``index`` of the base: a pure function of the seed and the index."""
    rng = np.random.default_rng([seed, index, 0xC057])
    speed = float(np.clip(rng.normal(SPEED_MEAN_MPS, SPEED_SD_MPS), *SPEED_RANGE_MPS))
    carry = str(rng.choice(list(CARRY_WEIGHTS), p=list(CARRY_WEIGHTS.values())))
    devices: list[DeviceSpec] = []
    major, minor = divmod(index, MINORS_PER_MAJOR)
    if carry in ("phone", "both"):
        off = float(np.clip(rng.normal(0.0, device_offset_sd_db), -device_offset_max_db, device_offset_max_db))
        devices.append(DeviceSpec(
            id=f"ibeacon:{APP_UUID}-{PHONE_MAJOR_BASE + major}-{minor + 1}", kind="phone",
            adv_interval_s=float(rng.choice(PHONE_ADV_INTERVALS_S, p=PHONE_ADV_WEIGHTS)),
            tx_offset_db=off, tx_power=-59.0,  # phones advertise the default whatever they really send
            body_loss_db=float(rng.uniform(*body_db)), scan_period_s=float(rng.choice(SCAN_PERIODS_S))))
    if carry in ("tag", "both"):
        off = float(np.clip(rng.normal(0.0, device_offset_sd_db / 2.5), -device_offset_max_db, device_offset_max_db))
        devices.append(DeviceSpec(
            id=f"ibeacon:{TAG_UUID}-{1 + major}-{minor + 1}", kind="tag",
            adv_interval_s=float(rng.choice(TAG_ADV_INTERVALS_S, p=TAG_ADV_WEIGHTS)),
            tx_offset_db=off, tx_power=float(round(-59.0 + off + rng.normal(0.0, 1.0))),  # tags are calibrated
            body_loss_db=float(rng.uniform(body_db[0] * 0.5, body_db[0])),  # a cart is beside, not behind, the body
            scan_period_s=1.0))
    has_app = carry in ("phone", "both")
    return Customer(index, speed, tuple(devices), has_app, has_app and bool(rng.random() < OPT_IN_RATE),
                    index < max(1, int(base_size * REGULARS_SHARE)))


def busy_factor(venue: Venue, t: float) -> float:
    """Relative arrival intensity at epoch time ``t`` from the local hour and day of week."""
    try:
        tz: dt.tzinfo = zoneinfo.ZoneInfo(venue.info.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        tz = dt.UTC
    local = dt.datetime.fromtimestamp(t, tz)
    frac = local.minute / 60.0
    h = local.hour
    value = BUSY_HOURS[h] * (1 - frac) + BUSY_HOURS[(h + 1) % 24] * frac
    return value * (WEEKEND_FACTOR if local.weekday() >= 5 else 1.0)


def local_hour(venue: Venue, t: float) -> int:
    try:
        tz: dt.tzinfo = zoneinfo.ZoneInfo(venue.info.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        tz = dt.UTC
    return dt.datetime.fromtimestamp(t, tz).hour


# ------------------------------------------------------------------------------------------------ places


@dataclass(slots=True)
class PlaceBook:
    """Where shoppers go, as navigation waypoints; routes between them are cached by source."""

    venue: Venue
    places: list[Place]
    nav: NavGraph
    entrances: list[int]
    spots: dict[str, list[int]]  # zone id -> browse spots
    glances: list[int]  # in front of shop doors
    toilets: list[int]
    zone_kind: dict[str, str]
    containers: dict[str, list[str]]  # zone id -> zones containing it
    _goals: dict[bool, tuple[list[str], npt.NDArray[np.float64]]] = field(default_factory=dict)
    _checkouts: dict[str, str | None] = field(default_factory=dict)

    def route(self, a: int, b: int) -> Route | None:
        return waypoint_route(self.nav, a, b)

    def goals(self, meal_time: bool) -> tuple[list[str], npt.NDArray[np.float64]]:
        """Zones a shopper may pick as goals, and their probabilities."""
        if meal_time not in self._goals:
            zones = [z for z, s in self.spots.items() if s and self.zone_kind[z] in GOAL_WEIGHTS]
            w = np.array([GOAL_WEIGHTS[self.zone_kind[z]] * (3.0 if meal_time and self.zone_kind[z] == "area" else 1.0)
                          for z in zones])
            self._goals[meal_time] = (zones, w / w.sum() if w.size else w)
        return self._goals[meal_time]

    def checkout_in(self, zone: str) -> str | None:
        """The checkout inside ``zone`` (a store's tills), if any."""
        if zone not in self._checkouts:
            found = [o for o in self.spots if self.zone_kind[o] == "checkout" and self.spots[o]
                     and zone in self.containers.get(o, [])]
            self._checkouts[zone] = found[0] if found else None
        return self._checkouts[zone]

    def xy(self, i: int) -> tuple[str, float, float]:
        return self.nav.waypoints[i]


def _sample_in(geom: shapely.Geometry, rng: np.random.Generator, n: int) -> list[tuple[float, float]]:
    if geom.is_empty:
        return []
    x0, y0, x1, y1 = geom.bounds
    out: list[tuple[float, float]] = []
    for _ in range(SPOT_TRIES // 50):
        xs = rng.uniform(x0, x1, 50)
        ys = rng.uniform(y0, y1, 50)
        inside = shapely.contains_xy(geom, xs, ys)
        out.extend(zip(xs[inside].tolist(), ys[inside].tolist(), strict=True))
        if len(out) >= n:
            break
    return out[:n]


def build_places(venue: Venue, seed: int) -> PlaceBook:
    rng = np.random.default_rng([seed, 0x97ACE])
    probe = build_nav_graph(venue)  # to learn where routes run, before adding the places
    places: list[Place] = []
    entrances: list[int] = []
    spots: dict[str, list[int]] = {}
    glances: list[int] = []
    toilets: list[int] = []

    def add(p: Place) -> int:
        try:
            floor, x, y = probe.snap((p.floor, p.x, p.y))
        except NavigationError:
            return -1
        places.append(Place(floor, x, y, p.kind, p.zone, p.zone_kind))
        return len(places) - 1

    for z in venue.zones:
        if z.kind == "entrance" and z.entrance is not None:
            entrances.append(add(Place(z.floor, z.entrance[0], z.entrance[1], "entrance", z.id, z.kind)))
    if not entrances:
        for p in venue.pois:
            if p.kind == "entrance":
                entrances.append(add(Place(p.floor, p.x, p.y, "entrance")))
    if not entrances:  # no doors drawn: people appear at the first floor's widest open point
        lowest = min(venue.floors, key=lambda f: f.level).id
        pt = probe.spaces[lowest].free.representative_point()
        entrances.append(add(Place(lowest, float(pt.x), float(pt.y), "entrance")))
    entrances = [e for e in entrances if e >= 0]

    for z in venue.zones:
        if z.kind in ("corridor", "entrance"):
            continue
        free = probe.spaces[z.floor].free
        area = zone_shape(z).intersection(free)
        n = int(np.clip(round(area.area / SPOT_AREA_M2), *SPOTS_RANGE))
        ids = [add(Place(z.floor, x, y, "spot", z.id, z.kind)) for x, y in _sample_in(area, rng, n)]
        spots[z.id] = [i for i in ids if i >= 0]
        if z.entrance is not None and z.kind in ("store", "counter", "area"):
            g = add(Place(z.floor, z.entrance[0], z.entrance[1], "glance", z.id, z.kind))
            if g >= 0:
                glances.append(g)
    for p in venue.pois:
        if p.kind == "toilet":
            t = add(Place(p.floor, p.x, p.y, "poi", None, "toilet"))
            if t >= 0:
                toilets.append(t)
    if not entrances:
        raise SimulationError(f"venue {venue.id!r}: no entrance or walkable area to start shoppers from")

    nav = build_nav_graph(venue, [(p.floor, p.x, p.y) for p in places])
    shapes = {z.id: zone_shape(z) for z in venue.zones}
    containers = {
        z.id: [o.id for o in venue.zones if o.id != z.id and o.floor == z.floor
               and shapes[o.id].buffer(0.01).covers(shapes[z.id])]
        for z in venue.zones}
    return PlaceBook(venue, places, nav, entrances, spots, glances, toilets, {z.id: z.kind for z in venue.zones},
                     containers)


# ------------------------------------------------------------------------------------------------ plans

Action = tuple[str, int, float]  # ("walk", place, 0) | ("dwell", place, seconds) | ("exit", place, 0)


def _dwell(rng: np.random.Generator, kind: str) -> float:
    median, sigma = DWELL_S[kind]
    return float(median * math.exp(rng.normal(0.0, sigma)))


def plan_visit(book: PlaceBook, rng: np.random.Generator, hour: int, start: int) -> tuple[list[Action], bool]:
    """A visit from entrance ``start``: ``(actions, passer_by)``."""
    exits = book.entrances
    end = int(rng.choice(exits))
    if len(exits) > 1 and rng.random() < OTHER_EXIT_RATE:
        end = int(rng.choice([e for e in exits if e != start]))
    actions: list[Action] = []
    if rng.random() < PASSER_BY_RATE or not book.spots:
        for g in rng.choice(book.glances, size=min(len(book.glances), int(rng.integers(0, 3))), replace=False) \
                if book.glances else []:
            actions += [("walk", int(g), 0.0), ("dwell", int(g), _dwell(rng, "glance"))]
        actions.append(("walk", end, 0.0))
        actions.append(("exit", end, 0.0))
        return actions, True

    zones, weights = book.goals(hour in FOOD_HOURS)
    n_goals = min(len(zones), 1 + int(min(rng.poisson(GOALS_MEAN), GOALS_MAX - 1)))
    goals = [zones[k] for k in rng.choice(len(zones), size=n_goals, replace=False, p=weights)] if zones else []
    # Order the goals greedily by distance, finishing a floor before changing.
    here = book.xy(start)
    ordered: list[str] = []
    while goals:
        def cost(z: str, here: tuple[str, float, float] = here) -> float:
            f, x, y = book.xy(book.spots[z][0])
            return math.hypot(x - here[1], y - here[2]) + (0.0 if f == here[0] else FLOOR_CHANGE_PENALTY_M)
        nxt = min(goals, key=cost)
        goals.remove(nxt)
        ordered.append(nxt)
        here = book.xy(book.spots[nxt][0])

    paid: set[str] = set()
    for z in ordered:
        kind = book.zone_kind[z]
        n_spots = 1 if kind in ("counter", "area") else 1 + int(min(rng.poisson(1.0), 3))
        spots = book.spots[z]
        for k in rng.permutation(len(spots))[:n_spots].tolist():
            actions += [("walk", spots[k], 0.0), ("dwell", spots[k], _dwell(rng, kind))]
        for c in [*book.containers.get(z, []), z]:
            checkout = book.checkout_in(c)
            if checkout is not None and c not in paid and rng.random() < CHECKOUT_RATE:
                paid.add(c)
                s = book.spots[checkout][int(rng.integers(0, len(book.spots[checkout])))]
                actions += [("walk", s, 0.0), ("dwell", s, _dwell(rng, "checkout"))]
        if book.glances and rng.random() < GLANCE_RATE:
            g = int(rng.choice(book.glances))
            actions += [("walk", g, 0.0), ("dwell", g, _dwell(rng, "glance"))]
    if book.toilets and rng.random() < TOILET_RATE:
        t = int(rng.choice(book.toilets))
        actions += [("walk", t, 0.0), ("dwell", t, _dwell(rng, "toilet"))]
    actions.append(("walk", end, 0.0))
    actions.append(("exit", end, 0.0))
    return actions, False


# ------------------------------------------------------------------------------------------------ crowd


@dataclass(frozen=True, slots=True)
class _WalkLeg:
    leg: int  # id in the route pool


@dataclass(frozen=True, slots=True)
class _Ride:
    connector: str
    table: int  # id of the tabulated ride
    seconds: float


class _RoutePool:
    """Every walking leg in use, concatenated so that all walkers move in one vectorised step.

    Leg ``L``'s points sit at ``start[L]:end[L]``; ``key`` is a global arc length (the leg's own arc
    length plus its ``base``), increasing across legs, so one ``searchsorted`` serves every walker.
    Buffers grow by doubling: adding a leg costs its own size."""

    def __init__(self) -> None:
        self.n_legs = 0
        self.n_points = 0
        self.x = np.zeros(256)
        self.y = np.zeros(256)
        self.key = np.zeros(256)
        self.start = np.zeros(64, dtype=np.int64)
        self.end = np.zeros(64, dtype=np.int64)
        self.base = np.zeros(64)
        self.leg_length = np.zeros(64)
        self.floor_arr = np.zeros(64, dtype=np.int64)

    @staticmethod
    def _fit(arr: npt.NDArray[Any], n: int) -> npt.NDArray[Any]:
        if n <= arr.size:
            return arr
        out = np.zeros(max(n, 2 * arr.size), dtype=arr.dtype)
        out[: arr.size] = arr
        return out

    def add(self, xs: npt.NDArray[np.float64], ys: npt.NDArray[np.float64], floor: int) -> int:
        seg = np.hypot(np.diff(xs), np.diff(ys))
        cum = np.concatenate([[0.0], np.cumsum(seg)])
        leg, p0, p1 = self.n_legs, self.n_points, self.n_points + xs.size
        base = 0.0 if leg == 0 else float(self.base[leg - 1] + self.leg_length[leg - 1] + LEG_GAP_M)
        self.x, self.y, self.key = (self._fit(a, p1) for a in (self.x, self.y, self.key))
        self.start, self.end, self.floor_arr = (self._fit(a, leg + 1) for a in (self.start, self.end, self.floor_arr))
        self.base, self.leg_length = (self._fit(a, leg + 1) for a in (self.base, self.leg_length))
        self.x[p0:p1], self.y[p0:p1], self.key[p0:p1] = xs, ys, cum + base
        self.start[leg], self.end[leg], self.floor_arr[leg] = p0, p1, floor
        self.base[leg], self.leg_length[leg] = base, float(cum[-1])
        self.n_legs, self.n_points = leg + 1, p1
        return leg

    def compile(self) -> None:
        """Nothing to do (kept for callers that prepared the pool before stepping)."""

    def positions(self, leg: npt.NDArray[np.int64], s: npt.NDArray[np.float64]) -> tuple[
            npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        key = self.base[leg] + s
        k = np.searchsorted(self.key[: self.n_points], key, side="right") - 1
        k = np.clip(k, self.start[leg], np.maximum(self.end[leg] - 2, self.start[leg]))
        k1 = np.minimum(k + 1, self.end[leg] - 1)
        span = self.key[k1] - self.key[k]
        frac = np.where(span > 0, (key - self.key[k]) / np.where(span > 0, span, 1.0), 0.0)
        frac = np.clip(frac, 0.0, 1.0)
        return self.x[k] + (self.x[k1] - self.x[k]) * frac, self.y[k] + (self.y[k1] - self.y[k]) * frac


@dataclass(slots=True)
class Shopper:
    agent: int
    customer: Customer
    plan: deque[Action]
    legs: deque[_WalkLeg | _Ride]
    place: int
    arrival_t: float
    passer_by: bool
    exit_t: float | None = None


class Crowd:
    """All shoppers of a run: state arrays for vectorised movement plus each shopper's plan."""

    def __init__(self, book: PlaceBook, floor_index: dict[str, int], seed: int = 0) -> None:
        self.rng = np.random.default_rng([seed, 0xC80D])
        self.book = book
        self.floor_index = floor_index
        self.pool = _RoutePool()
        self._legs_cache: dict[tuple[int, int], list[_WalkLeg | _Ride] | None] = {}
        self._rides: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64]]] = []
        self._ride_ids: dict[tuple[str, int], int] = {}
        self.shoppers: list[Shopper] = []
        cap = 64
        self.state = np.zeros(cap, dtype=np.int8)
        self.x = np.zeros(cap)
        self.y = np.zeros(cap)
        self.floor = np.zeros(cap, dtype=np.int64)
        self.heading = np.zeros(cap)
        self.speed = np.ones(cap)
        self.leg = np.zeros(cap, dtype=np.int64)
        self.s = np.zeros(cap)
        self.until = np.zeros(cap)  # end of a dwell or ride
        self.ride_t0 = np.zeros(cap)
        self.ride = np.zeros(cap, dtype=np.int64)

    # -- routes
    def _legs(self, a: int, b: int) -> list[_WalkLeg | _Ride] | None:
        key = (a, b)
        if key not in self._legs_cache:
            r = self.book.route(a, b)
            self._legs_cache[key] = None if r is None else self._compile(r)
        return self._legs_cache[key]

    def _compile(self, r: Route) -> list[_WalkLeg | _Ride]:
        legs: list[_WalkLeg | _Ride] = []
        pts = r.points
        run = [pts[0]]
        conn = iter(r.connectors)
        for p in pts[1:]:
            if p.floor != run[-1].floor:
                self._flush(run, legs)
                cid = next(conn, "connector")
                legs.append(self._ride(cid, run[-1], p))
                run = [p]
            else:
                run.append(p)
        self._flush(run, legs)
        return legs

    def _flush(self, run: list[RoutePoint], legs: list[_WalkLeg | _Ride]) -> None:
        if len(run) < 2:
            return
        xs = np.array([p.x for p in run])
        ys = np.array([p.y for p in run])
        legs.append(_WalkLeg(self.pool.add(xs, ys, self.floor_index[run[0].floor])))

    def _ride(self, cid: str, a: RoutePoint, b: RoutePoint) -> _Ride:
        connector = next((c for c in self.book.venue.connectors if c.id == cid), None)
        seconds = connector.seconds if connector is not None else DEFAULT_RIDE_S
        key = (cid, self.floor_index[a.floor])
        if key not in self._ride_ids:
            f = np.linspace(0.0, 1.0, RIDE_SAMPLES)
            xs = a.x + (b.x - a.x) * f
            ys = a.y + (b.y - a.y) * f
            floors = np.where(f < 0.5, self.floor_index[a.floor], self.floor_index[b.floor])
            # Over a void the rider is shown at the nearest walkable point of the floor they are on.
            for k in range(RIDE_SAMPLES):
                fid = b.floor if f[k] >= 0.5 else a.floor
                if not self.book.nav.is_walkable(fid, float(xs[k]), float(ys[k])):
                    walk = self.book.nav.spaces[fid].walkable
                    q = nearest_points(walk, shapely.Point(float(xs[k]), float(ys[k])))[0]
                    xs[k], ys[k] = q.x, q.y
            self._rides.append((xs, ys, floors.astype(np.int64)))
            self._ride_ids[key] = len(self._rides) - 1
        return _Ride(cid, self._ride_ids[key], float(seconds))

    # -- agents
    def _grow(self, n: int) -> None:
        cap = len(self.state)
        if n <= cap:
            return
        new = max(n, cap * 2)
        for name in ("state", "x", "y", "floor", "heading", "speed", "leg", "s", "until", "ride_t0", "ride"):
            old = getattr(self, name)
            arr = np.zeros(new, dtype=old.dtype)
            arr[:cap] = old
            setattr(self, name, arr)
        self.speed[cap:] = 1.0

    def add(self, cust: Customer, plan: list[Action], place: int, arrival_t: float, passer_by: bool,
            dwell_left: float = 0.0) -> Shopper:
        i = len(self.shoppers)
        self._grow(i + 1)
        sh = Shopper(i, cust, deque(plan), deque(), place, arrival_t, passer_by)
        self.shoppers.append(sh)
        f, x, y = self.book.xy(place)
        self.x[i], self.y[i], self.floor[i] = x, y, self.floor_index[f]
        self.speed[i] = cust.speed_mps
        self.heading[i] = self.rng.uniform(-math.pi, math.pi)
        if dwell_left > 0:
            self.state[i] = DWELL
            self.until[i] = arrival_t + dwell_left
        else:
            self.state[i] = DWELL
            self.until[i] = arrival_t
        return sh

    def _next(self, i: int, now: float) -> None:
        """Start agent ``i``'s next leg or action at ``now``."""
        sh = self.shoppers[i]
        while True:
            if sh.legs:
                leg = sh.legs.popleft()
                if isinstance(leg, _WalkLeg):
                    self.state[i] = WALK
                    self.leg[i] = leg.leg
                    self.s[i] = 0.0
                    self.until[i] = now  # no pause pending
                    return
                self.state[i] = RIDE
                self.ride[i] = leg.table
                self.ride_t0[i] = now
                self.until[i] = now + leg.seconds
                return
            if not sh.plan:
                self.state[i] = GONE
                sh.exit_t = now
                return
            kind, place, seconds = sh.plan.popleft()
            if kind == "walk":
                if place == sh.place:
                    continue
                legs = self._legs(sh.place, place)
                if legs is None:  # unreachable: skip this goal
                    while sh.plan and sh.plan[0][0] == "dwell" and sh.plan[0][1] == place:
                        sh.plan.popleft()
                    continue
                sh.legs.extend(legs)
                sh.place = place
            elif kind == "dwell":
                self.state[i] = DWELL
                self.until[i] = now + seconds
                self.heading[i] = self.rng.uniform(-math.pi, math.pi)  # facing the shelf, the counter, a friend
                return
            else:
                self.state[i] = GONE
                sh.exit_t = now
                return

    def step(self, t0: float, t1: float) -> None:
        """Move everyone from ``t0`` to ``t1``; actions that end in between start their successor at ``t1``."""
        n = len(self.shoppers)
        if n == 0:
            return
        dt_s = t1 - t0
        state = self.state[:n]
        old_x, old_y = self.x[:n].copy(), self.y[:n].copy()
        walking = np.flatnonzero(state == WALK)
        done: list[int] = []
        if walking.size:
            # Walkers stop now and then for a few seconds (a phone, a shop window, a friend).
            paused = self.until[walking] > t0
            start = ~paused & (self.rng.random(walking.size) < WALK_PAUSE_PER_S * dt_s)
            if start.any():
                self.until[walking[start]] = t0 + self.rng.uniform(*WALK_PAUSE_S, int(start.sum()))
                paused |= start
            legs = self.leg[walking]
            s = self.s[walking] + np.where(paused, 0.0, self.speed[walking] * dt_s)
            length = self.pool.leg_length[legs]
            arrived = s >= length
            s = np.minimum(s, length)
            self.s[walking] = s
            xs, ys = self.pool.positions(legs, s)
            self.x[walking], self.y[walking] = xs, ys
            self.floor[walking] = self.pool.floor_arr[legs]
            done += walking[arrived].tolist()
        riding = np.flatnonzero(state == RIDE)
        for i in riding.tolist():
            xs, ys, floors = self._rides[int(self.ride[i])]
            dur = max(self.until[i] - self.ride_t0[i], 1e-9)
            k = int(np.clip(round((t1 - self.ride_t0[i]) / dur * (RIDE_SAMPLES - 1)), 0, RIDE_SAMPLES - 1))
            self.x[i], self.y[i], self.floor[i] = xs[k], ys[k], floors[k]
            if t1 >= self.until[i]:
                done.append(i)
        standing = state == DWELL
        dwelling = np.flatnonzero(standing & (self.until[:n] <= t1))
        done += dwelling.tolist()
        # Headings follow the direction of motion; people standing turn now and then.
        dx, dy = self.x[:n] - old_x, self.y[:n] - old_y
        moved = np.hypot(dx, dy) > 0.05
        self.heading[:n] = np.where(moved, np.arctan2(dy, dx), self.heading[:n])
        turn = np.flatnonzero(standing & (self.rng.random(n) < dt_s / STANDING_TURN_S))
        if turn.size:
            self.heading[turn] = self.rng.uniform(-math.pi, math.pi, turn.size)
        for i in done:
            self._next(i, t1)

    def active(self) -> npt.NDArray[np.int64]:
        n = len(self.shoppers)
        st = self.state[:n]
        return np.flatnonzero((st == WALK) | (st == DWELL) | (st == RIDE))
