"""The BLE radio channel between moving devices and fixed anchors, vectorised over devices x anchors.

RSSI of one received packet (dBm, rounded to an integer)::

    P0_j + dev_i - 10 n_j log10(d_3d) - walls * wall_db - floors * slab_db - body
         + shadow_space(j, position) + shadow_time(i, j, t) + fading + channel(j, c)

- ``P0_j``, ``n_j``: the anchor's ``rssi_1m`` / ``path_loss_n`` with per-anchor deviations (receivers
  differ by a few dB); ``dev_i``: the device's TX offset (phones differ up to ~20 dB).
- ``d_3d``: 3-D distance, anchors at their height, devices at ``device_height_m`` above their slab.
- walls: holes of the walkable area the line of sight crosses (tabulated per anchor on a grid);
  floors: slabs between the device's floor and the anchor's.
- body: up to the device's body loss when the carrier's back is towards the anchor.
- shadowing (σ = ``sigma_db``): a spatially correlated Gaussian field per anchor (correlation length
  ``shadow_corr_m``; coming back to a spot gives the same shadow), plus a small AR(1) part per link
  that changes with time (people moving about).
- fading: per packet; channel: each packet is heard on one of the three advertising channels,
  which differ by a few dB per receiver.

A packet is received when its RSSI is at least the receiver's sensitivity (no reading below it),
the receiver was scanning (duty cycle), it was not lost, and the gateway was up. Gateways report
times with their own clock skew and drift, flush batches every ``batch_period_s`` with latency (so
readings arrive out of order), and re-send a few batches (duplicates).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

import numpy as np
import numpy.typing as npt
import shapely
from scipy import ndimage

from positioning.venue import Venue, walkable_shape
from simulations.errors import SimulationError

SHADOW_GRID_M: Final = 0.5  # resolution of the shadowing fields (well below the correlation length)
WALL_GRID_M: Final = 1.0  # wall-count cells: counters are 1-2 m deep; 2 m cells put their walls a cell off
SHADOW_REACH: Final = 1e4  # a hole's shadow is its copy scaled this much from the anchor (beyond any venue)
MAX_WALLS: Final = 12  # beyond this many walls a link is dead anyway
CANDIDATE_MARGIN_DB: Final = 4.0  # a link whose mid-tick mean is this far below sensitivity is skipped
FADING_TAIL: Final = 3.0  # ... plus this many fading/channel σ
N_CHANNELS: Final = 3  # BLE advertising channels 37, 38, 39
ADV_JITTER_S: Final = 0.010  # BLE advDelay: 0-10 ms added to every advertising event
NOISE_POOL: Final = 1 << 22  # pre-drawn random numbers per kind (16 MB each): far more than one tick uses
WALL_TABLE_CACHE: Final = 4  # venues whose wall tables are kept in memory (they take seconds to build)
RETRY_DELAY_S: Final = (1.0, 5.0)  # a re-sent batch arrives this much after the original
CHANNEL_HASH: Final = 997  # a prime: the channel digit of a uniform draw is independent of its duty-test bit
SCAN_WINDOW_S: Final = 1.0  # an app scan averages the packets of the last second (iOS ranging)
SCAN_POST_S: Final = 0.1  # an app's scan reaches the engine this long after it ends
DEFAULT_BEACON_INTERVAL_S: Final = (0.1, 0.35)  # fixed venue beacons advertise fast


@dataclass(frozen=True, slots=True)
class RadioConfig:
    """Every knob of the channel; the defaults follow POSITIONING.md. ``ideal()`` turns impairments off."""

    sigma_db: float = 6.0  # shadowing σ
    shadow_corr_m: float = 1.5  # correlation length of the shadowing field (~1-2 s for a walker)
    shadow_time_share: float = 0.2  # share of the shadowing variance that changes with time, not place
    shadow_time_tau_s: float = 5.0  # correlation time of that part
    fading_db: float = 3.0  # per-packet fast fading σ
    channel_db: float = 2.0  # σ of per-receiver differences between the 3 advertising channels
    wall_db: float = 3.0  # per wall, counter or shelf the line of sight crosses
    slab_db: float = 17.0  # per concrete floor slab
    body_db: tuple[float, float] = (5.0, 15.0)  # range of devices' loss when the body is in the way
    device_offset_sd_db: float = 5.0  # TX offsets between devices (phones)
    device_offset_max_db: float = 10.0  # clip: phones differ by up to ~20 dB in all
    anchor_p0_sd_db: float = 2.0  # receivers differ by a few dB from their nominal rssi_1m
    anchor_n_sd: float = 0.1  # and somewhat in their path-loss exponent
    sensitivity_dbm: tuple[float, float] = (-100.0, -95.0)  # receivers' sensitivity range
    scan_duty: tuple[float, float] = (0.6, 1.0)  # share of the time a receiver is listening
    packet_loss: float = 0.05  # collisions and interference
    outages_per_hour: float = 0.05  # per gateway
    outage_s: tuple[float, float] = (30.0, 600.0)
    clock_skew_sd_s: float = 0.05  # gateways' clock offsets (NTP-synchronised)
    clock_drift_ppm_sd: float = 20.0
    duplicate_rate: float = 0.002  # share of readings re-sent (QoS 1 retries)
    batch_period_s: float = 1.0  # gateways flush a batch this often
    latency_s: tuple[float, float] = (0.02, 0.3)  # flush to arrival at the engine
    late_batch_rate: float = 0.01  # batches held up (reconnects)
    late_batch_s: tuple[float, float] = (2.0, 10.0)
    device_height_m: float = 1.2
    beacon_interval_s: tuple[float, float] = DEFAULT_BEACON_INTERVAL_S  # phone mode: venue beacons

    def __post_init__(self) -> None:
        if self.sigma_db < 0 or self.fading_db < 0 or self.channel_db < 0:
            raise SimulationError("radio: sigma_db, fading_db and channel_db must be >= 0")
        if not 0.0 <= self.packet_loss < 1.0 or not 0.0 <= self.duplicate_rate < 1.0:
            raise SimulationError("radio: packet_loss and duplicate_rate must be in [0, 1)")
        if not 0.0 <= self.shadow_time_share <= 1.0:
            raise SimulationError("radio: shadow_time_share must be in [0, 1]")
        if self.shadow_corr_m <= 0 or self.batch_period_s <= 0:
            raise SimulationError("radio: shadow_corr_m and batch_period_s must be > 0")

    @staticmethod
    def ideal(sigma_db: float = 0.0, **overrides: object) -> RadioConfig:
        """Log-distance path loss with shadowing ``sigma_db`` only: no walls, bodies, fading, offsets,
        censoring, loss, outages or clock errors. For tests that fit the model back."""
        base = RadioConfig(sigma_db=sigma_db, shadow_time_share=0.0, fading_db=0.0, channel_db=0.0, wall_db=0.0,
                           body_db=(0.0, 0.0), device_offset_sd_db=0.0, anchor_p0_sd_db=0.0, anchor_n_sd=0.0,
                           sensitivity_dbm=(-200.0, -200.0), scan_duty=(1.0, 1.0), packet_loss=0.0,
                           outages_per_hour=0.0, clock_skew_sd_s=0.0, clock_drift_ppm_sd=0.0, duplicate_rate=0.0,
                           latency_s=(0.0, 0.0), late_batch_rate=0.0)
        return replace(base, **overrides)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class AnchorSet:
    """The fixed radios: gateways (gateway mode) or venue beacons (phone mode)."""

    ids: tuple[str, ...]
    floor: npt.NDArray[np.int64]  # index into the venue's floors
    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.float64]
    z: npt.NDArray[np.float64]  # above their own slab
    rssi_1m: npt.NDArray[np.float64]
    path_loss_n: npt.NDArray[np.float64]

    @staticmethod
    def of(venue: Venue, mode: str) -> AnchorSet:
        fidx = {f.id: i for i, f in enumerate(venue.floors)}
        items = venue.anchors if mode == "gateway" else venue.beacons
        if not items:
            raise SimulationError(f"venue {venue.id!r} has no {'anchors' if mode == 'gateway' else 'beacons'} "
                                  f"for {mode} mode")
        return AnchorSet(tuple(a.id for a in items), np.array([fidx[a.floor] for a in items], dtype=np.int64),
                         np.array([a.x for a in items]), np.array([a.y for a in items]),
                         np.array([a.z for a in items]), np.array([a.rssi_1m for a in items]),
                         np.array([a.path_loss_n for a in items]))

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, slots=True)
class _Grid:
    x0: float
    y0: float
    res: float
    nx: int
    ny: int

    def cell(self, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        i = np.clip(((x - self.x0) / self.res).astype(np.int64), 0, self.nx - 1)
        j = np.clip(((y - self.y0) / self.res).astype(np.int64), 0, self.ny - 1)
        return j * self.nx + i

    def centres(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        xs = self.x0 + (np.arange(self.nx) + 0.5) * self.res
        ys = self.y0 + (np.arange(self.ny) + 0.5) * self.res
        gx, gy = np.meshgrid(xs, ys)
        return gx.ravel(), gy.ravel()


def _grid(venue: Venue, res: float) -> _Grid:
    xs = [p[0] for f in venue.floors for p in f.outline]
    ys = [p[1] for f in venue.floors for p in f.outline]
    x0, y0 = min(xs), min(ys)
    return _Grid(x0, y0, res, max(1, int(np.ceil((max(xs) - x0) / res))), max(1, int(np.ceil((max(ys) - y0) / res))))


def wall_counts(venue: Venue, floor_id: str, ax: float, ay: float, px: npt.NDArray[np.float64],
                py: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """How many walkable holes of ``floor_id`` the line of sight from ``(ax, ay)`` to each point enters.

    A convex hole blocks the points of its shadow: the hole and everything behind it as seen from the
    anchor (the convex hull of the hole and of the hole scaled far out from the anchor). An anchor
    mounted on a counter's edge is blocked by it only towards the counter. Other holes: their convex
    hull's shadow (holes are walls, counters and shelving: convex or nearly)."""
    counts = np.zeros(px.shape, dtype=np.int64)
    src = np.array([ax, ay])
    for w in venue.walkable_on(floor_id):
        for h in w.holes:
            ring = np.asarray(h, dtype=np.float64)
            far = src + (ring - src) * SHADOW_REACH
            shadow = shapely.convex_hull(shapely.multipoints(np.vstack([ring, far])))
            counts += shapely.intersects_xy(shadow, px, py)
    return counts


def wall_tables(venue: Venue, anchors: AnchorSet, grid: _Grid) -> npt.NDArray[np.uint8]:
    """Wall counts per (device floor, anchor, cell): walls between a device and an anchor on its floor.
    A link to another floor has none: it leaves the height of the walls within a few metres and its
    slab loss dominates. Only cells a device can be in (walkable space and a cell around it) get counts."""
    px, py = grid.centres()
    out = np.zeros((len(venue.floors), len(anchors), px.size), dtype=np.uint8)
    for fi, f in enumerate(venue.floors):
        area = walkable_shape(venue, f.id).buffer(grid.res)
        cells = np.flatnonzero(shapely.contains_xy(area, px, py)) if venue.walkable_on(f.id) else np.arange(px.size)
        cache: dict[tuple[float, float], npt.NDArray[np.uint8]] = {}
        for j in np.flatnonzero(anchors.floor == fi):
            key = (float(anchors.x[j]), float(anchors.y[j]))
            if key not in cache:
                counts = wall_counts(venue, f.id, key[0], key[1], px[cells], py[cells])
                cache[key] = np.minimum(counts, MAX_WALLS).astype(np.uint8)
            out[fi, j, cells] = cache[key]
    return out


_WALL_TABLES: dict[tuple[Venue, tuple[str, ...]], npt.NDArray[np.uint8]] = {}


class Channel:
    """Precomputed channel of one venue and anchor set: true anchor parameters, receivers' traits,
    wall tables and shadowing fields. Deterministic for a seed."""

    def __init__(self, venue: Venue, anchors: AnchorSet, config: RadioConfig, seed: int) -> None:
        self.venue = venue
        self.anchors = anchors
        self.config = config
        rng = np.random.default_rng([seed, 0x7AD10])
        g = len(anchors)
        self.n_floors = len(venue.floors)
        self.p0 = (anchors.rssi_1m + rng.normal(0.0, config.anchor_p0_sd_db, g)).astype(np.float32)
        self.n10 = (10.0 * np.maximum(anchors.path_loss_n + rng.normal(0.0, config.anchor_n_sd, g), 1.0)).astype(
            np.float32)
        self.sens = rng.uniform(*config.sensitivity_dbm, g).astype(np.float32)
        self.duty = rng.uniform(*config.scan_duty, g).astype(np.float32)
        self.channel = rng.normal(0.0, config.channel_db, (g, N_CHANNELS)).astype(np.float32)
        self.skew = rng.normal(0.0, config.clock_skew_sd_s, g)
        self.drift = rng.normal(0.0, config.clock_drift_ppm_sd * 1e-6, g)
        self.flush_phase = rng.uniform(0.0, config.batch_period_s, g)
        self.adv_interval = rng.uniform(*config.beacon_interval_s, g)  # phone mode: beacons' own interval
        elev = np.array([f.elevation_m for f in venue.floors])
        levels = np.array([f.level for f in venue.floors])
        self.ax = anchors.x.astype(np.float32)
        self.ay = anchors.y.astype(np.float32)
        self.az = (elev[anchors.floor] + anchors.z).astype(np.float32)
        self.device_z = (elev + config.device_height_m).astype(np.float32)  # per floor
        self.slab = (np.abs(levels[:, None] - levels[anchors.floor][None, :]) * config.slab_db).astype(np.float32)
        self.wall_grid = _grid(venue, WALL_GRID_M)
        self.shadow_grid = _grid(venue, SHADOW_GRID_M)
        self.walls = self._wall_tables() if config.wall_db > 0 else None
        # Static budget per (device floor, wall cell, anchor): P0 - slabs - walls; rows gathered per device.
        walls_db = (np.zeros((self.n_floors, len(anchors), self.wall_grid.nx * self.wall_grid.ny), dtype=np.float32)
                    if self.walls is None else self.walls.astype(np.float32) * np.float32(config.wall_db))
        static = self.p0[None, :, None] - self.slab[:, :, None] - walls_db
        self.static_rows = np.ascontiguousarray(static.transpose(0, 2, 1))
        space_sd = config.sigma_db * np.sqrt(1.0 - config.shadow_time_share)
        self.time_sd = float(config.sigma_db * np.sqrt(config.shadow_time_share))
        shadow = self._shadow_fields(rng, space_sd) if space_sd > 0 else None
        # Per (floor, shadow cell, anchor): rows gathered per device.
        self.shadow_rows = None if shadow is None else np.ascontiguousarray(shadow.transpose(0, 2, 1))

    def _wall_tables(self) -> npt.NDArray[np.uint8]:
        key = (self.venue, self.anchors.ids)
        table = _WALL_TABLES.get(key)
        if table is None:
            table = wall_tables(self.venue, self.anchors, self.wall_grid)
            if len(_WALL_TABLES) >= WALL_TABLE_CACHE:
                _WALL_TABLES.pop(next(iter(_WALL_TABLES)))
            _WALL_TABLES[key] = table
        return table

    def _shadow_fields(self, rng: np.random.Generator, sd: float) -> npt.NDArray[np.float32]:
        g = self.shadow_grid
        noise = rng.standard_normal((self.n_floors * len(self.anchors), g.ny, g.nx), dtype=np.float32)
        s = self.config.shadow_corr_m / 2.0 / g.res  # Gaussian kernel: correlation e^-1 at shadow_corr_m
        field = ndimage.gaussian_filter(noise, sigma=(0.0, s, s), mode="wrap")
        field /= np.maximum(field.reshape(field.shape[0], -1).std(axis=1), 1e-6)[:, None, None]
        out: npt.NDArray[np.float32] = (field * sd).astype(np.float32).reshape(self.n_floors, len(self.anchors),
                                                                              g.nx * g.ny)
        return out

    def site_db(self, floor: npt.NDArray[np.int64], x: npt.NDArray[np.float64],
                y: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
        """Everything but distance and the device, per (device, anchor): the anchor's P0, slabs, walls
        and spatial shadowing at these positions. Computed per floor with row gathers (fast)."""
        wall_cell = self.wall_grid.cell(x, y)
        shadow_cell = self.shadow_grid.cell(x, y) if self.shadow_rows is not None else None
        if self.n_floors == 1:
            out: npt.NDArray[np.float32] = self.static_rows[0][wall_cell]
            if shadow_cell is not None and self.shadow_rows is not None:
                out += self.shadow_rows[0][shadow_cell]
            return out
        out = np.empty((x.size, len(self.anchors)), dtype=np.float32)
        for f in np.unique(floor).tolist():
            rows = np.flatnonzero(floor == f)
            block = self.static_rows[f][wall_cell[rows]]
            if shadow_cell is not None and self.shadow_rows is not None:
                block += self.shadow_rows[f][shadow_cell[rows]]
            out[rows] = block
        return out

    def path_loss_db(self, floor: npt.NDArray[np.int64], x: npt.NDArray[np.float64],
                     y: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
        """10 n log10(d_3d) per (device, anchor)."""
        dx = x.astype(np.float32)[:, None] - self.ax[None, :]
        dy = y.astype(np.float32)[:, None] - self.ay[None, :]
        dz = self.device_z[floor][:, None] - self.az[None, :]
        d2 = dx * dx
        d2 += dy * dy
        d2 += dz * dz
        np.maximum(d2, np.float32(0.01), out=d2)
        out: npt.NDArray[np.float32] = np.log10(d2)
        out *= self.n10[None, :] * np.float32(0.5)
        return out

    def mean_db(self, floor: npt.NDArray[np.int64], x: npt.NDArray[np.float64],
                y: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
        """Mean RSSI (devices x anchors) of a nominal device with its body out of the way: path loss,
        walls, slabs and the spatial shadowing at these positions. Time-varying parts excluded."""
        out = self.site_db(floor, x, y)
        out -= self.path_loss_db(floor, x, y)
        return out


@dataclass(frozen=True, slots=True)
class DeviceRadio:
    """Radio traits of the devices taking part in one tick (rows aligned with positions)."""

    index: npt.NDArray[np.int64]  # global device index
    adv_interval: npt.NDArray[np.float64]
    adv_phase: npt.NDArray[np.float64]
    tx_offset: npt.NDArray[np.float32]
    tx_power: npt.NDArray[np.float32]
    body_loss: npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Motion:
    """Where the carriers are at the start and end of the tick (rows aligned with DeviceRadio)."""

    floor: npt.NDArray[np.int64]
    x0: npt.NDArray[np.float64]
    y0: npt.NDArray[np.float64]
    x1: npt.NDArray[np.float64]
    y1: npt.NDArray[np.float64]
    heading: npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ReadingChunk:
    """Readings as columns. ``t`` is what the receiver reports (its clock), ``true_t`` the air time,
    ``arrival`` when the engine gets it, ``batch`` the flush number of the receiving gateway."""

    t: npt.NDArray[np.float64]
    device: npt.NDArray[np.int64]
    anchor: npt.NDArray[np.int64]
    rssi: npt.NDArray[np.int16]
    tx_power: npt.NDArray[np.float32]
    scan: npt.NDArray[np.int64]
    arrival: npt.NDArray[np.float64]
    batch: npt.NDArray[np.int64]

    @staticmethod
    def empty() -> ReadingChunk:
        z = np.zeros(0)
        zi = np.zeros(0, dtype=np.int64)
        return ReadingChunk(z, zi, zi, np.zeros(0, dtype=np.int16), np.zeros(0, dtype=np.float32), zi, z, zi)

    @staticmethod
    def concat(parts: list[ReadingChunk]) -> ReadingChunk:
        parts = [p for p in parts if len(p)]
        if not parts:
            return ReadingChunk.empty()
        return ReadingChunk(*(np.concatenate([getattr(p, k) for p in parts]) for k in ReadingChunk.__slots__))

    def take(self, idx: npt.NDArray[np.int64] | npt.NDArray[np.bool_]) -> ReadingChunk:
        return ReadingChunk(*(getattr(self, k)[idx] for k in ReadingChunk.__slots__))

    def __len__(self) -> int:
        return int(self.t.shape[0])


def add_duplicates(chunk: ReadingChunk, rate: float, rng: np.random.Generator) -> ReadingChunk:
    """Re-sent readings (QoS 1 retries after a lost acknowledgement) arriving 1-5 s later."""
    if rate <= 0 or not len(chunk):
        return chunk
    dup = np.flatnonzero(rng.random(len(chunk)) < rate)
    if dup.size == 0:
        return chunk
    again = chunk.take(dup)
    return ReadingChunk.concat([chunk, ReadingChunk(again.t, again.device, again.anchor, again.rssi, again.tx_power,
                                                    again.scan, again.arrival + rng.uniform(*RETRY_DELAY_S, dup.size),
                                                    again.batch)])


def _expand(counts: npt.NDArray[np.int32]) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    """For groups with these sizes: (group of each item, position of the item in its group)."""
    total = int(counts.sum())
    group = np.repeat(np.arange(counts.size, dtype=np.int32), counts)
    starts = (np.cumsum(counts) - counts).astype(np.int32)
    return group, np.arange(total, dtype=np.int32) - starts[group]


class NoisePool:
    """Pre-drawn standard normal and uniform numbers handed out as slices at random offsets: the
    per-packet draws cost a copy instead of a transform. Deterministic for the generator's seed."""

    def __init__(self, rng: np.random.Generator, size: int = NOISE_POOL) -> None:
        self.rng = rng
        self._normal = rng.standard_normal(size, dtype=np.float32)
        self._uniform = rng.random(size, dtype=np.float32)

    def _slice(self, pool: npt.NDArray[np.float32], n: int) -> npt.NDArray[np.float32]:
        if n > pool.size // 2:
            return np.resize(pool[int(self.rng.integers(0, pool.size)):], n) if n else pool[:0].copy()
        start = int(self.rng.integers(0, pool.size - n))
        return pool[start:start + n].copy()

    def normal(self, n: int) -> npt.NDArray[np.float32]:
        return self._slice(self._normal, n)

    def uniform(self, n: int) -> npt.NDArray[np.float32]:
        return self._slice(self._uniform, n)


class RadioState:
    """Time-varying state of the channel: the AR(1) shadowing per link, outages, scan counters."""

    def __init__(self, channel: Channel, seed: int, start_t: float) -> None:
        self.ch = channel
        self.rng = np.random.default_rng([seed, 0x5747E])
        self.start_t = start_t
        self.link = np.zeros((0, len(channel.anchors)), dtype=np.float32)
        self._cache = np.zeros((0, len(channel.anchors)), dtype=np.float32)  # static budgets of still devices
        self._cache_x = np.zeros(0)
        self._cache_y = np.zeros(0)
        self._cache_h = np.zeros(0)
        self._cache_f = np.zeros(0, dtype=np.int64)
        self._cache_ok = np.zeros(0, dtype=bool)
        self.scan_count = np.zeros(0, dtype=np.int64)
        self._cur_start = np.full(len(channel.anchors), -np.inf)
        self._cur_end = np.full(len(channel.anchors), -np.inf)
        self._next_start = self._draw_outages(start_t, len(channel.anchors))
        self.noise = NoisePool(self.rng)
        self._duty_ok = (channel.duty * np.float32(1.0 - channel.config.packet_loss)).astype(np.float32)

    def _draw_outages(self, t: npt.NDArray[np.float64] | float, n: int) -> npt.NDArray[np.float64]:
        rate = self.ch.config.outages_per_hour / 3600.0
        if rate <= 0:
            return np.full(n, np.inf)
        return t + self.rng.exponential(1.0 / rate, n)

    def _grow(self, n_devices: int) -> None:
        if n_devices > self.link.shape[0]:
            new = max(n_devices, 2 * self.link.shape[0], 64)
            link = np.zeros((new, len(self.ch.anchors)), dtype=np.float32)
            old = self.link.shape[0]
            link[:old] = self.link
            link[old:] = self.rng.standard_normal(link[old:].shape, dtype=np.float32)  # stationary start
            link[old:] *= np.float32(self.ch.time_sd)
            self.link = link
            cache = np.zeros((new, len(self.ch.anchors)), dtype=np.float32)
            cache[:old] = self._cache
            self._cache = cache
            for name in ("_cache_x", "_cache_y", "_cache_h", "_cache_f", "_cache_ok"):
                arr = getattr(self, name)
                grown = np.zeros(new, dtype=arr.dtype)
                grown[:old] = arr
                setattr(self, name, grown)
            counts = np.zeros(new, dtype=np.int64)
            counts[: self.scan_count.size] = self.scan_count
            self.scan_count = counts

    def up(self, t0: float, t1: float) -> npt.NDArray[np.bool_]:
        """Which anchors are up during ``[t0, t1)``; starts outages as they fall due."""
        due = self._next_start < t1
        if due.any():
            lo, hi = self.ch.config.outage_s
            self._cur_start[due] = self._next_start[due]
            self._cur_end[due] = self._next_start[due] + self.rng.uniform(lo, hi, int(due.sum()))
            self._next_start[due] = self._draw_outages(self._cur_end[due], int(due.sum()))
        return ~((self._cur_start < t1) & (self._cur_end > t0))

    def _link_shadow(self, dev: npt.NDArray[np.int64], dt_s: float) -> npt.NDArray[np.float32]:
        self._grow(int(dev.max()) + 1 if dev.size else 0)
        sd = self.ch.time_sd
        if sd <= 0 or dev.size == 0:
            return np.zeros((dev.size, len(self.ch.anchors)), dtype=np.float32)
        a = np.float32(np.exp(-dt_s / self.ch.config.shadow_time_tau_s))
        b = np.float32(np.sqrt(1.0 - a * a))
        cur = self.link[dev]  # in dB: the link's shadow σ is already applied
        cur *= a
        noise = self.noise.normal(cur.size).reshape(cur.shape)
        noise *= b * np.float32(sd)
        cur += noise
        self.link[dev] = cur
        return cur

    # ------------------------------------------------------------------------------------ gateway mode

    def gateway_tick(self, t0: float, t1: float, devs: DeviceRadio, motion: Motion) -> ReadingChunk:
        """Readings heard by the gateways from the devices' advertisements in ``[t0, t1)``.

        Per link (device, gateway) the budget is computed once per tick, with the distance term at
        the start and end of the tick interpolated to each packet's time. Links that cannot reach
        the receiver's sensitivity even with a 3σ fading peak are skipped before per-packet work."""
        ch, cfg = self.ch, self.ch.config
        n = devs.index.size
        g = len(ch.anchors)
        if n == 0:
            return ReadingChunk.empty()
        up = self.up(t0, t1)
        self._grow(int(devs.index.max()) + 1)
        moving = (motion.x0 != motion.x1) | (motion.y0 != motion.y1)
        # A device standing still keeps its static budget (site, device, body, distance): reuse it.
        dev = devs.index
        reuse = (~moving & self._cache_ok[dev] & (self._cache_x[dev] == motion.x1) & (self._cache_y[dev] == motion.y1)
                 & (self._cache_h[dev] == motion.heading) & (self._cache_f[dev] == motion.floor))
        fresh = np.flatnonzero(~reuse)
        base = np.empty((n, g), dtype=np.float32)
        dpl = np.zeros((n, g), dtype=np.float32)
        if fresh.size < n:
            base[reuse] = self._cache[dev[reuse]]
        if fresh.size:
            base[fresh] = self._static_budget(fresh, devs, motion, dpl)
            still = fresh[~moving[fresh]]
            if still.size:
                d = dev[still]
                self._cache[d] = base[still]
                self._cache_x[d], self._cache_y[d] = motion.x1[still], motion.y1[still]
                self._cache_h[d], self._cache_f[d] = motion.heading[still], motion.floor[still]
                self._cache_ok[d] = True
            self._cache_ok[dev[fresh[moving[fresh]]]] = False
        if ch.time_sd > 0:
            base += self._link_shadow(dev, t1 - t0)
        tail = np.float32(FADING_TAIL * float(np.hypot(cfg.fading_db, cfg.channel_db)))
        base -= ch.sens[None, :]  # from here on: margin over the receiver's sensitivity
        cand = base >= -tail
        moving_rows = np.flatnonzero(moving)
        if moving_rows.size:  # the nearer end of the tick counts for walkers
            cand[moving_rows] = (base[moving_rows] - np.maximum(dpl[moving_rows], np.float32(0.0))) >= -tail
        if not up.all():
            cand &= up[None, :]
        # Advertising events of each device in [t0, t1): the k-th is at fraction f0 + k fi of the tick,
        # so a link's margin for its k-th packet is a_p + k b_p. Devices with more packets first: the
        # links still sending in pass k are then a prefix of the link arrays (slices, not gathers).
        first = np.ceil((t0 - devs.adv_phase) / devs.adv_interval)
        count = (np.ceil((t1 - devs.adv_phase) / devs.adv_interval) - first).astype(np.int32)
        perm = np.argsort(-count, kind="stable").astype(np.int32)
        flat = np.flatnonzero(cand[perm].ravel()).astype(np.int32)
        if flat.size == 0:
            return ReadingChunk.empty()
        ci = flat // np.int32(g)
        cj = flat - ci * np.int32(g)
        ci = perm[ci]
        flat = ci * np.int32(g) + cj  # into the device-ordered matrices
        tau0 = devs.adv_phase + first * devs.adv_interval
        f0 = ((tau0 - t0) / (t1 - t0)).astype(np.float32)
        fi = (devs.adv_interval / (t1 - t0)).astype(np.float32)
        dp_c = dpl.ravel()[flat]
        a_p = base.ravel()[flat]
        a_p -= dp_c * f0[ci]
        b_p = dp_c
        b_p *= -fi[ci]
        count_p = count[ci]  # non-increasing
        duty_p = self._duty_ok[cj]
        chan_p = cj * np.int32(N_CHANNELS)
        fading = np.float32(cfg.fading_db)
        neg_count = -count_p
        parts_link: list[npt.NDArray[np.int32]] = []
        parts_k: list[int] = []
        parts_rssi: list[npt.NDArray[np.float32]] = []
        for k in range(int(count_p[0]) if count_p.size else 0):
            n_k = int(np.searchsorted(neg_count, -k, side="left"))  # links with more than k packets
            if n_k == 0:
                break
            margin = a_p[:n_k].copy()
            if k:
                margin += np.float32(k) * b_p[:n_k]
            if cfg.fading_db > 0:
                noise = self.noise.normal(n_k)
                noise *= fading
                margin += noise
            u = self.noise.uniform(n_k)
            if cfg.channel_db > 0:
                # The packet's advertising channel, from the duty test's uniform but independent of it.
                chan = (u * np.float32(N_CHANNELS * CHANNEL_HASH)).astype(np.int32)
                chan %= np.int32(N_CHANNELS)
                chan += chan_p[:n_k]
                margin += ch.channel.ravel()[chan]
            heard = margin >= 0.0
            heard &= u < duty_p[:n_k]
            idx = np.flatnonzero(heard).astype(np.int32)
            parts_link.append(idx)
            parts_k.append(k)
            parts_rssi.append(margin[idx])
        if not parts_link:
            return ReadingChunk.empty()
        link = np.concatenate(parts_link)
        kk = np.repeat(np.array(parts_k, dtype=np.float64), [p.size for p in parts_link])
        i = ci[link]
        j = cj[link]
        rssi = np.concatenate(parts_rssi)
        rssi += ch.sens[j]
        tau = tau0[i] + kk * devs.adv_interval[i]
        tau += self.noise.uniform(tau.size) * np.float32(ADV_JITTER_S)
        return self._report(devs, i, j, tau, np.rint(rssi).astype(np.int16), devs.tx_power[i],
                            np.full(i.size, -1, dtype=np.int64))

    def _static_budget(self, rows: npt.NDArray[np.int64], devs: DeviceRadio, motion: Motion,
                       dpl: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Budget at the start of the tick without the time-varying shadow, for these device rows;
        fills ``dpl`` (the change of the distance term over the tick) for the moving ones."""
        ch, cfg = self.ch, self.ch.config
        fl = motion.floor[rows]
        x0, y0, x1, y1 = motion.x0[rows], motion.y0[rows], motion.x1[rows], motion.y1[rows]
        xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
        base = ch.site_db(fl, xm, ym)
        base += devs.tx_offset[rows][:, None]
        if cfg.body_db[1] > 0:
            # Body shadowing: the carrier's back towards the anchor (horizontal part of the path only).
            dx = ch.ax[None, :] - xm.astype(np.float32)[:, None]
            dy = ch.ay[None, :] - ym.astype(np.float32)[:, None]
            dz = ch.az[None, :] - ch.device_z[fl][:, None]
            norm = dx * dx
            norm += dy * dy
            norm += dz * dz
            np.sqrt(norm, out=norm)
            heading = motion.heading[rows]
            cos_back = dx
            cos_back *= (-np.cos(heading).astype(np.float32))[:, None]
            dy *= (-np.sin(heading).astype(np.float32))[:, None]
            cos_back += dy
            cos_back /= norm  # = cos(angle to the anchor) x horizontal share of the path
            np.clip(cos_back, 0.0, 1.0, out=cos_back)
            cos_back *= devs.body_loss[rows][:, None]
            base -= cos_back
        pl0 = ch.path_loss_db(fl, x0, y0)
        base -= pl0  # the budget at the start of the tick; minus dpl x fraction of the tick later
        moving = (x0 != x1) | (y0 != y1)
        if moving.any():
            m = np.flatnonzero(moving)
            dpl[rows[m]] = ch.path_loss_db(fl[m], x1[m], y1[m]) - pl0[m]
        return base

    def _report(self, devs: DeviceRadio, i: npt.NDArray[np.int64], j: npt.NDArray[np.int64],
                tau: npt.NDArray[np.float64], rssi: npt.NDArray[np.int16], tx: npt.NDArray[np.float32],
                scan: npt.NDArray[np.int64]) -> ReadingChunk:
        """Receiver clocks, batching and latency."""
        ch, cfg, rng = self.ch, self.ch.config, self.rng
        g = len(ch.anchors)
        t_rep = tau + ch.skew[j]
        if cfg.clock_drift_ppm_sd > 0:
            t_rep += ch.drift[j] * (tau - self.start_t)
        period = cfg.batch_period_s
        batch = np.ceil((tau - ch.flush_phase[j]) / period).astype(np.int64)
        lat = rng.uniform(*cfg.latency_s, g)
        if cfg.late_batch_rate > 0:
            late = rng.random(g) < cfg.late_batch_rate
            lat[late] += rng.uniform(*cfg.late_batch_s, int(late.sum()))
        arrival = batch * period + (ch.flush_phase + lat)[j]
        return ReadingChunk(t_rep, devs.index[i], j.astype(np.int64), rssi, tx.astype(np.float32), scan, arrival,
                            batch)

    # ------------------------------------------------------------------------------------ phone mode

    def phone_tick(self, t0: float, t1: float, devs: DeviceRadio, motion: Motion,
                   scan_period: npt.NDArray[np.float64]) -> ReadingChunk:
        """Scans the phones complete in ``[t0, t1)``: per scan, one averaged RSSI per beacon heard
        (as iOS ranging reports). ``tx_power`` is the beacon's advertised measured power."""
        ch, cfg, rng = self.ch, self.ch.config, self.rng
        n = devs.index.size
        if n == 0:
            return ReadingChunk.empty()
        self._grow(int(devs.index.max()) + 1)
        up = self.up(t0, t1)
        first = np.ceil((t0 - devs.adv_phase) / scan_period)
        count = (np.ceil((t1 - devs.adv_phase) / scan_period) - first).astype(np.int32)
        has = np.flatnonzero(count > 0)
        if has.size == 0:
            return ReadingChunk.empty()
        sidx, k = _expand(count[has])
        row = has[sidx]  # device row of each scan
        end = devs.adv_phase[row] + (first[row] + k) * scan_period[row]
        frac = np.clip((end - SCAN_WINDOW_S / 2 - t0) / (t1 - t0), 0.0, 1.0)
        sx = motion.x0[row] + (motion.x1[row] - motion.x0[row]) * frac
        sy = motion.y0[row] + (motion.y1[row] - motion.y0[row]) * frac
        sf = motion.floor[row]
        base = ch.mean_db(sf, sx, sy)
        base += devs.tx_offset[row][:, None]  # the phone's receive offset
        base += self._link_shadow(devs.index, t1 - t0)[row]
        dx = ch.ax[None, :] - sx[:, None].astype(np.float32)
        dy = ch.ay[None, :] - sy[:, None].astype(np.float32)
        dh = np.sqrt(dx * dx + dy * dy)
        hd = motion.heading[row]
        cos_back = -(dx * np.cos(hd)[:, None].astype(np.float32) + dy * np.sin(hd)[:, None].astype(np.float32)) \
            / np.maximum(dh, np.float32(0.1))
        base -= devs.body_loss[row][:, None] * np.clip(cos_back, 0.0, 1.0)
        margin = CANDIDATE_MARGIN_DB + FADING_TAIL * float(np.hypot(cfg.fading_db, cfg.channel_db))
        cand = (base + np.float32(margin) >= ch.sens[None, :]) & up[None, :]
        si, bj = np.nonzero(cand)
        if si.size == 0:
            return ReadingChunk.empty()
        window = np.minimum(scan_period[row[si]], SCAN_WINDOW_S)
        n_adv = np.maximum(1, np.floor(window / ch.adv_interval[bj]).astype(np.int32))
        link, _ = _expand(n_adv)
        rssi = base[si[link], bj[link]].copy()
        if cfg.fading_db > 0:
            rssi += rng.standard_normal(link.size, dtype=np.float32) * np.float32(cfg.fading_db)
        if cfg.channel_db > 0:
            rssi += ch.channel[bj[link], rng.integers(0, N_CHANNELS, link.size)]
        heard = (rssi >= ch.sens[bj[link]]) & (rng.random(link.size, dtype=np.float32)
                                                < ch.duty[bj[link]] * (1.0 - cfg.packet_loss))
        hits = np.bincount(link[heard], minlength=si.size)
        total = np.bincount(link[heard], weights=rssi[heard], minlength=si.size)
        ok = hits > 0
        si, bj = si[ok], bj[ok]
        mean = np.rint(total[ok] / hits[ok]).astype(np.int16)
        drow = row[si]
        dev = devs.index[drow]
        # Scan numbers count per device; the scan's time is its end, on the phone's clock.
        scan_no = self.scan_count[devs.index[row]] + k
        self.scan_count[devs.index[has]] += count[has]
        t_scan = end[si]
        ch_skew = np.zeros(si.size)
        tx = ch.anchors.rssi_1m[bj].astype(np.float32)
        return ReadingChunk(t_scan + ch_skew, dev, bj.astype(np.int64), mean, tx, scan_no[si], t_scan + SCAN_POST_S,
                            scan_no[si])
