"""Simulated malls: shoppers walking, their beacons heard by gateways (or phones ranging beacons).

Two ways in, one code path:

- ``World(venue, shoppers=N, ...)`` advances second by second (``advance()`` returns a ``Tick`` of
  readings and true positions); without ``duration_s`` it keeps about N shoppers inside (following
  the hour of day when ``follow_clock``) and can run for hours. This is what the live demo and the
  synthetic gateways drive.
- ``simulate(venue, shoppers=N, duration_s=D, ...)`` runs a World over ``[start_t, start_t + D)``
  with exactly N beacon-carrying shoppers in the venue over the run and returns a
  ``SimulationResult``: readings as columns, true positions per second, true zone stays.

``mode="gateway"``: venue gateways hear shoppers' beacons (anchor = gateway id). ``mode="phone"``:
shoppers' app phones range the venue's beacons (anchor = beacon id, ``scan`` column set).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from positioning.venue import Venue
from simulations.errors import SimulationError
from simulations.radio import (
    AnchorSet,
    Channel,
    DeviceRadio,
    Motion,
    RadioConfig,
    RadioState,
    ReadingChunk,
    add_duplicates,
)
from simulations.shoppers import (
    CUSTOMER_BASE_FACTOR,
    DWELL,
    GONE,
    MEAN_VISIT_S,
    REGULARS_SHARE,
    RETURNING_RATE,
    Crowd,
    Customer,
    DeviceSpec,
    PlaceBook,
    build_places,
    busy_factor,
    customer,
    local_hour,
    plan_visit,
)
from simulations.truth import Stays, stays_from_positions

Mode = Literal["gateway", "phone"]
DEFAULT_START_T: Final = 1763791200.0  # Saturday 22 Nov 2025, 14:00 in Shanghai: a busy afternoon
DEFAULT_TICK_S: Final = 1.0  # truth positions once per second, as truth_positions.csv requires
ARRIVAL_GRID_S: Final = 60.0  # resolution of the hour-of-day arrival curve for fixed-size runs
MIN_BUSY: Final = 0.02  # arrivals never stop completely (staff, late shoppers)
CUSTOMER_BASE_MIN: Final = 1000
CROWD_CONTROL_S: Final = 10.0  # a streaming world closes a gap to the wanted crowd over about this long


@dataclass(frozen=True, slots=True)
class PositionChunk:
    t: npt.NDArray[np.float64]
    device: npt.NDArray[np.int64]
    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.float64]
    floor: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.t.shape[0])


@dataclass(frozen=True, slots=True)
class Tick:
    """What happened in ``[t0, t1)``: readings (device/anchor as indices into ``World.device_ids`` /
    ``World.anchor_ids``) and where every present device truly is at ``t1``."""

    t0: float
    t1: float
    readings: ReadingChunk
    positions: PositionChunk
    arrived: tuple[int, ...]  # shopper numbers
    left: tuple[int, ...]
    scans: ReadingChunk | None = None  # app scans of the venue beacons (phone mode, or phone_scans=True)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    id: str
    kind: str  # phone | tag
    customer: int
    has_app: bool
    opted_in: bool
    regular: bool
    tx_offset_db: float
    tx_power: float
    adv_interval_s: float


@dataclass(frozen=True, slots=True)
class ShopperInfo:
    number: int
    customer: int
    devices: tuple[str, ...]
    arrival_t: float
    exit_t: float | None
    passer_by: bool
    regular: bool
    inside_at_start: bool


class World:
    """The simulated venue, advanced tick by tick. Deterministic for a seed."""

    def __init__(self, venue: Venue, shoppers: int, *, duration_s: float | None = None, seed: int = 0,
                 radio: RadioConfig | None = None, start_t: float = DEFAULT_START_T, mode: Mode = "gateway",
                 tick_s: float = DEFAULT_TICK_S, follow_clock: bool = True, places: PlaceBook | None = None,
                 channel: Channel | None = None, phone_scans: bool = False) -> None:
        if shoppers < 0:
            raise SimulationError(f"shoppers must be >= 0, got {shoppers}")
        if duration_s is not None and duration_s <= 0:
            raise SimulationError(f"duration must be > 0 s, got {duration_s:g}")
        if tick_s <= 0:
            raise SimulationError(f"tick must be > 0 s, got {tick_s:g}")
        if mode not in ("gateway", "phone"):
            raise SimulationError(f"mode must be 'gateway' or 'phone', got {mode!r}")
        self.venue = venue
        self.mode: Mode = mode
        self.seed = seed
        self.tick_s = tick_s
        self.start_t = start_t
        self.t = start_t
        self.follow_clock = follow_clock
        self.target = shoppers
        self.duration_s = duration_s
        self.radio_config = radio or RadioConfig()
        self.floor_ids = venue.floor_ids
        self.floor_index = {f: i for i, f in enumerate(self.floor_ids)}
        self.anchors = AnchorSet.of(venue, mode)
        self.anchor_ids = self.anchors.ids
        self.channel = channel if channel is not None else Channel(venue, self.anchors, self.radio_config, seed)
        self.radio = RadioState(self.channel, seed, start_t)
        self.places = places if places is not None else build_places(venue, seed)
        # Gateway mode can also produce the app's scans of the venue beacons, from the same shoppers.
        self.scan_radio: RadioState | None = None
        self.scan_anchor_ids: tuple[str, ...] = self.anchor_ids if mode == "phone" else ()
        if phone_scans and mode == "gateway" and venue.beacons:
            beacons = AnchorSet.of(venue, "phone")
            self.scan_anchor_ids = beacons.ids
            self.scan_radio = RadioState(Channel(venue, beacons, self.radio_config, seed + 1), seed + 1, start_t)
        self.crowd = Crowd(self.places, self.floor_index, seed)
        self.rng = np.random.default_rng([seed, 0xA55, int(start_t) % (1 << 32)])  # who comes depends on the day
        self.base_size = max(CUSTOMER_BASE_MIN, CUSTOMER_BASE_FACTOR * max(shoppers, 1))
        self._inside: set[int] = set()  # customers in the venue now
        self._used: set[int] = set()  # customers who came during this run
        # Devices (a returning customer's devices keep their index).
        self.device_ids: list[str] = []
        self.device_info: list[DeviceInfo] = []
        self._device_index: dict[str, int] = {}
        self._dev_owner = np.full(0, -1, dtype=np.int64)
        self._dev_cols: dict[str, npt.NDArray[np.float64]] = {}
        self.shopper_info: list[ShopperInfo] = []
        self._arrivals: list[tuple[float, int]] = []
        self._next_arrival = 0
        self._schedule_start()

    # ------------------------------------------------------------------------------ population

    def _draw_customer(self, allow_seen: bool) -> int:
        regulars = max(1, int(self.base_size * REGULARS_SHARE))
        for _ in range(1000):
            if self.rng.random() < RETURNING_RATE:
                k = int(self.rng.integers(0, regulars))
            else:
                k = int(self.rng.integers(regulars, self.base_size))
            if k in self._inside or (not allow_seen and k in self._used):
                continue
            return k
        raise SimulationError("customer base exhausted")

    def _busy(self, t: float) -> float:
        return max(busy_factor(self.venue, t), MIN_BUSY) if self.follow_clock else 1.0

    def _schedule_start(self) -> None:
        n = self.target
        if self.duration_s is not None:
            d = self.duration_s
            inside = round(n * MEAN_VISIT_S / (MEAN_VISIT_S + d))
            later = n - inside
            grid = np.arange(self.start_t, self.start_t + d, ARRIVAL_GRID_S)
            w = np.array([self._busy(float(g)) for g in grid])
            cdf = np.concatenate([[0.0], np.cumsum(w)]) / w.sum()
            u = np.sort(self.rng.random(later))
            pos = np.interp(u, cdf, np.arange(cdf.size)) * ARRIVAL_GRID_S
            times = self.start_t + np.minimum(pos, d - 1e-3)
            self._arrivals = [(float(tt), self._draw_customer(False)) for tt in times]
            for tt, k in self._arrivals:
                self._used.add(k)
                del tt
        else:
            peak = max(self._busy(self.start_t + h * 3600.0) for h in range(24)) if self.follow_clock else 1.0
            inside = round(n * self._busy(self.start_t) / peak)
        for _ in range(inside):
            self._arrive(self.start_t, self._draw_customer(self.duration_s is None), already_inside=True)

    def _steady_arrivals(self, t0: float, t1: float) -> list[tuple[float, int]]:
        peak = 1.0
        if self.follow_clock:
            peak = max(self._busy(t0 + h * 3600.0) for h in range(24))
        wanted = self.target * self._busy(t0) / peak
        # Steady arrivals plus a pull towards the wanted crowd (visits end at uneven rates).
        rate = wanted / MEAN_VISIT_S + max(0.0, wanted - len(self._inside)) / CROWD_CONTROL_S
        k = int(self.rng.poisson(rate * (t1 - t0)))
        return [(float(t), self._draw_customer(True)) for t in np.sort(self.rng.uniform(t0, t1, k))]

    def _device(self, spec: DeviceSpec, cust: Customer) -> int:
        idx = self._device_index.get(spec.id)
        if idx is not None:
            return idx
        idx = len(self.device_ids)
        self.device_ids.append(_app_pseudonym(self.seed, cust.index) if self.mode == "phone" and spec.kind == "phone"
                               else spec.id)
        self.device_info.append(DeviceInfo(self.device_ids[-1], spec.kind, cust.index, cust.has_app, cust.opted_in,
                                           cust.regular, spec.tx_offset_db, spec.tx_power, spec.adv_interval_s))
        self._device_index[spec.id] = idx
        cap = self._dev_owner.size
        if idx >= cap:
            new = max(64, 2 * cap)
            owner = np.full(new, -1, dtype=np.int64)
            owner[:cap] = self._dev_owner
            self._dev_owner = owner
            for name in ("interval", "phase", "offset", "tx", "body", "scan", "phone"):
                col = np.zeros(new)
                if name in self._dev_cols:
                    col[:cap] = self._dev_cols[name]
                self._dev_cols[name] = col
        c = self._dev_cols
        c["interval"][idx] = spec.adv_interval_s
        c["phase"][idx] = float(self.rng.uniform(0.0, spec.adv_interval_s))
        c["offset"][idx] = spec.tx_offset_db
        c["tx"][idx] = spec.tx_power
        c["body"][idx] = spec.body_loss_db
        c["scan"][idx] = spec.scan_period_s
        c["phone"][idx] = 1.0 if spec.kind == "phone" else 0.0
        return idx

    def _arrive(self, t: float, k: int, already_inside: bool = False) -> int:
        cfg = self.radio_config
        cust = customer(self.seed, k, self.base_size, cfg.device_offset_sd_db, cfg.device_offset_max_db, cfg.body_db)
        rng = np.random.default_rng([self.seed, k, int(t * 1000) % (2**32), 0x91A])
        start = int(rng.choice(self.places.entrances))
        plan, passer = plan_visit(self.places, rng, local_hour(self.venue, t), start)
        place, dwell_left = start, 0.0
        if already_inside:  # mid-visit: drop the plan's beginning and stand at one of its stops
            stops = [n for n, a in enumerate(plan) if a[0] == "dwell"]
            if stops:
                n = int(rng.choice(stops))
                place = plan[n][1]
                dwell_left = float(rng.uniform(0.0, plan[n][2]))
                plan = plan[n + 1:]
        sh = self.crowd.add(cust, plan, place, t, passer, dwell_left)
        self._inside.add(k)
        devs = tuple(self._device(d, cust) for d in cust.devices)
        for d in devs:
            self._dev_owner[d] = sh.agent
        self.shopper_info.append(ShopperInfo(sh.agent, k, tuple(self.device_ids[d] for d in devs), t, None, passer,
                                             cust.regular, already_inside))
        return sh.agent

    # ------------------------------------------------------------------------------ stepping

    @property
    def now(self) -> float:
        return self.t

    def advance(self, until: float | None = None) -> Tick:
        """Advance one tick (or less, to ``until``): arrivals, movement, radio, truth."""
        t0, t1 = self.t, self.t + self.tick_s
        if until is not None:
            if until <= t0:
                raise SimulationError(f"cannot advance to {until:.3f}: the world is at {t0:.3f}")
            t1 = min(t1, until)
        crowd = self.crowd
        n_before = len(crowd.shoppers)
        was_in = crowd.state[:n_before] != GONE  # everyone added is inside until they leave
        arrived: list[int] = []
        if self.duration_s is not None:
            while self._next_arrival < len(self._arrivals) and self._arrivals[self._next_arrival][0] < t1:
                ta, k = self._arrivals[self._next_arrival]
                self._next_arrival += 1
                arrived.append(self._arrive(ta, k))
        else:
            for ta, k in self._steady_arrivals(t0, t1):
                arrived.append(self._arrive(ta, k))
        n_agents = len(crowd.shoppers)
        on_air = np.ones(n_agents, dtype=bool)  # carriers inside at some point of the tick
        on_air[:n_before] = was_in
        x0 = crowd.x[:n_agents].copy()
        y0 = crowd.y[:n_agents].copy()
        crowd.step(t0, t1)
        left = np.flatnonzero(on_air & (crowd.state[:n_agents] == GONE)).tolist()
        for i in left:
            sh = crowd.shoppers[i]
            self._inside.discard(sh.customer.index)
            info = self.shopper_info[i]
            self.shopper_info[i] = ShopperInfo(info.number, info.customer, info.devices, info.arrival_t, sh.exit_t,
                                               info.passer_by, info.regular, info.inside_at_start)
        n_dev = len(self.device_ids)
        owner = self._dev_owner[:n_dev]
        devs = np.flatnonzero(on_air[owner])
        if self.mode == "phone":
            devs = devs[self._dev_cols["phone"][devs] > 0] if devs.size else devs
        readings = self._radio_tick(t0, t1, devs, owner, x0, y0)
        scans = readings if self.mode == "phone" else None
        if self.scan_radio is not None and devs.size:
            phones = devs[self._dev_cols["phone"][devs] > 0]
            scans = self._radio_tick(t0, t1, phones, owner, x0, y0, self.scan_radio)
        # Truth at t1 for every device still inside.
        inside_now = crowd.state[owner[devs]] != GONE if devs.size else np.zeros(0, dtype=bool)
        truth_devs = devs[inside_now]
        ag = owner[truth_devs]
        positions = PositionChunk(np.full(truth_devs.size, t1), truth_devs, crowd.x[ag].copy(), crowd.y[ag].copy(),
                                  crowd.floor[ag].copy())
        self.t = t1
        return Tick(t0, t1, readings, positions, tuple(arrived), tuple(left), scans)

    def _radio_tick(self, t0: float, t1: float, devs: npt.NDArray[np.int64], owner: npt.NDArray[np.int64],
                    x0: npt.NDArray[np.float64], y0: npt.NDArray[np.float64],
                    scan_radio: RadioState | None = None) -> ReadingChunk:
        if devs.size == 0:
            return ReadingChunk.empty()
        crowd, c = self.crowd, self._dev_cols
        ag = owner[devs]
        radio = DeviceRadio(devs, c["interval"][devs], c["phase"][devs], c["offset"][devs].astype(np.float32),
                            c["tx"][devs].astype(np.float32), c["body"][devs].astype(np.float32))
        # Walkers between t0 and t1; a shopper standing still has the same start and end.
        motion = Motion(crowd.floor[ag], x0[ag], y0[ag], crowd.x[ag], crowd.y[ag], crowd.heading[ag])
        if scan_radio is not None:
            return scan_radio.phone_tick(t0, t1, radio, motion, c["scan"][devs])
        if self.mode == "gateway":
            return self.radio.gateway_tick(t0, t1, radio, motion)
        return self.radio.phone_tick(t0, t1, radio, motion, c["scan"][devs])

    def app_id(self, device: int) -> str:
        """The app's pseudonym of the phone ``device`` (what it posts its scans as)."""
        return _app_pseudonym(self.seed, self.device_info[device].customer)

    def shopper_positions(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64],
                                         npt.NDArray[np.int64]]:
        """(shopper numbers, x, y, floor index) of everyone inside now — for live truth overlays."""
        a = self.crowd.active()
        return a, self.crowd.x[a].copy(), self.crowd.y[a].copy(), self.crowd.floor[a].copy()

    @property
    def inside(self) -> int:
        return int(self.crowd.active().size)


def _app_pseudonym(seed: int, customer_index: int) -> str:
    rng = np.random.default_rng([seed, customer_index, 0xA99])
    return "app-" + "".join(f"{v:02x}" for v in rng.integers(0, 256, 8).tolist())


# ---------------------------------------------------------------------------------------------- batch


@dataclass(frozen=True, slots=True)
class SimReadings:
    """Readings as columns, in arrival order (as the engine would get them). ``scan`` is -1 in
    gateway mode; ``t`` is on the receiver's clock."""

    t: npt.NDArray[np.float64]
    device: npt.NDArray[np.object_]
    anchor: npt.NDArray[np.object_]
    rssi: npt.NDArray[np.float64]
    tx_power: npt.NDArray[np.float64]
    scan: npt.NDArray[np.int64]
    arrival: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.t.shape[0])


@dataclass(frozen=True, slots=True)
class TruthPositions:
    t: npt.NDArray[np.float64]
    device: npt.NDArray[np.object_]
    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.float64]
    floor: npt.NDArray[np.object_]

    def __len__(self) -> int:
        return int(self.t.shape[0])


@dataclass(frozen=True, slots=True)
class SimulationResult:
    venue: Venue
    mode: Mode
    seed: int
    start_t: float
    duration_s: float
    readings: SimReadings
    positions: TruthPositions
    visits: Stays
    devices: tuple[DeviceInfo, ...]
    shoppers: tuple[ShopperInfo, ...]
    anchor_ids: tuple[str, ...]


def simulate(venue: Venue, shoppers: int, duration_s: float, seed: int = 0, radio: RadioConfig | None = None,
             start_t: float = DEFAULT_START_T, mode: Mode = "gateway", tick_s: float = DEFAULT_TICK_S,
             follow_clock: bool = True,
             on_readings: Callable[[SimReadings], None] | None = None) -> SimulationResult:
    """Simulate ``shoppers`` beacon-carrying shoppers over ``[start_t, start_t + duration_s)``.

    Readings come in arrival order. With ``on_readings`` they are handed over as they arrive (a
    few seconds behind the simulation, so memory stays bounded) and ``result.readings`` is empty.
    """
    world = World(venue, shoppers, duration_s=duration_s, seed=seed, radio=radio, start_t=start_t, mode=mode,
                  tick_s=tick_s, follow_clock=follow_clock)
    end = start_t + duration_s
    kept: list[SimReadings] = []
    heard = np.zeros(0, dtype=bool)
    arrivals = _ArrivalOrder(world)

    def deliver(chunk: ReadingChunk) -> None:
        nonlocal heard
        if not len(chunk):
            return
        if heard.size < len(world.device_ids):
            grown = np.zeros(len(world.device_ids), dtype=bool)
            grown[: heard.size] = heard
            heard = grown
        heard[chunk.device] = True
        out = _named(world, chunk)
        if on_readings is None:
            kept.append(out)
        else:
            on_readings(out)

    pos: list[PositionChunk] = [PositionChunk(*_initial_positions(world))]
    while world.t < end - 1e-9:
        tick = world.advance(until=end)
        deliver(arrivals.due(tick.readings, tick.t1))
        pos.append(tick.positions)
    deliver(arrivals.due(ReadingChunk.empty(), np.inf))
    return _collect(world, _concat_readings(kept), np.flatnonzero(heard), pos, duration_s)


class _ArrivalOrder:
    """Holds readings until the engine would have them (arrival time), adds re-sent duplicates."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.rng = np.random.default_rng([world.seed, 0xD0B])
        self.pending = ReadingChunk.empty()

    def due(self, new: ReadingChunk, now: float) -> ReadingChunk:
        if self.world.mode == "gateway":
            new = add_duplicates(new, self.world.radio_config.duplicate_rate, self.rng)
        allr = ReadingChunk.concat([self.pending, new])
        ready = allr.arrival <= now
        self.pending = allr.take(~ready)
        out = allr.take(ready)
        return out.take(np.argsort(out.arrival, kind="stable"))


def _named(world: World, chunk: ReadingChunk) -> SimReadings:
    dev_names = np.array(world.device_ids, dtype=object)
    anchor_names = np.array(world.anchor_ids, dtype=object)
    return SimReadings(chunk.t, dev_names[chunk.device], anchor_names[chunk.anchor], chunk.rssi.astype(np.float64),
                       chunk.tx_power.astype(np.float64), chunk.scan, chunk.arrival)


def _concat_readings(parts: list[SimReadings]) -> SimReadings:
    if not parts:
        z = np.zeros(0)
        zo = np.zeros(0, dtype=object)
        return SimReadings(z, zo, zo, z, z, np.zeros(0, dtype=np.int64), z)
    return SimReadings(*(np.concatenate([getattr(p, k) for p in parts]) for k in SimReadings.__slots__))


def _initial_positions(world: World) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64],
                                              npt.NDArray[np.float64], npt.NDArray[np.float64],
                                              npt.NDArray[np.int64]]:
    crowd = world.crowd
    n_dev = len(world.device_ids)
    owner = world._dev_owner[:n_dev]
    devs = np.flatnonzero((owner >= 0) & np.isin(owner, crowd.active()))
    devs = devs[crowd.state[owner[devs]] == DWELL]
    if world.mode == "phone":
        devs = devs[world._dev_cols["phone"][devs] > 0]
    ag = owner[devs]
    return np.full(devs.size, world.t), devs, crowd.x[ag].copy(), crowd.y[ag].copy(), crowd.floor[ag].copy()


def _collect(world: World, readings: SimReadings, heard: npt.NDArray[np.int64], pos: list[PositionChunk],
             duration_s: float) -> SimulationResult:
    dev_names = np.array(world.device_ids, dtype=object)
    t = np.concatenate([p.t for p in pos])
    dev = np.concatenate([p.device for p in pos])
    keep = np.isin(dev, heard)
    floors = np.array(world.floor_ids, dtype=object)
    order = np.lexsort((t[keep], dev[keep]))
    xs = np.concatenate([p.x for p in pos])[keep][order]
    ys = np.concatenate([p.y for p in pos])[keep][order]
    fl = np.concatenate([p.floor for p in pos])[keep][order]
    positions = TruthPositions(t[keep][order], dev_names[dev[keep][order]], xs, ys, floors[fl])
    visits = stays_from_positions(world.venue, positions.device, positions.t, positions.x, positions.y,
                                  positions.floor, world.tick_s)
    heard_ids = set(dev_names[heard].tolist())
    devices = tuple(d for d in world.device_info if d.id in heard_ids)
    return SimulationResult(world.venue, world.mode, world.seed, world.start_t, duration_s, readings, positions,
                            visits, devices, tuple(world.shopper_info), world.anchor_ids)
