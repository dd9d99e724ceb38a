"""A second, deliberately different BLE channel: an open hall, receivers on a grid, walkers and standers.

instore's own simulator (``radio.py``) is what the engine was developed against; tuning to one simulator
is a risk, so this generator shares no code or modelling choice with it beyond the log-distance law:

- shadowing is a sum of random plane waves per receiver (not a filtered grid), plus an AR(1) part per
  link that changes with time;
- fading is Rician per packet (K factor), not Gaussian in dB: deep fades, a skewed tail;
- receivers differ in 1 m power and exponent; devices in TX offset; the carrier's body takes up to
  ``body_db`` from receivers behind the way it walks (it keeps facing that way when it stops);
- shoppers walk at 0.7-1.5 m/s between random spots and stand 5-60 s at half of them;
- packets arrive late and out of order, a few twice; RSSI is an integer; a receiver hears a packet
  above its sensitivity with probability ``hear``.

``anchors.csv`` gives only ``anchor,x,y,z`` (what a real deployment knows), unless
``give_params`` is set. Everything is seeded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

PLANE_WAVES = 24  # per receiver: enough for a Gaussian-looking field
STEP_S = 0.1  # motion and fading time step
DEVICE_HEIGHT_M = 1.2


@dataclass(frozen=True, slots=True)
class HallConfig:
    width_m: float = 40.0
    depth_m: float = 30.0
    spacing_m: float = 10.0  # receiver grid, jittered by 1 m
    receiver_z_m: float = 3.0
    p0_dbm: float = -62.0  # mean 1 m power
    p0_sd_db: float = 2.0  # receivers differ
    n: float = 2.2  # mean path-loss exponent
    n_sd: float = 0.15
    sigma_db: float = 6.0  # total shadowing
    corr_m: float = 2.0  # shadowing correlation length
    time_share: float = 0.3  # share of the shadowing variance that changes with time
    tau_s: float = 1.5  # its correlation time
    rice_k: float = 4.0  # Rician K factor of per-packet fading
    offset_sd_db: float = 6.0  # devices' TX offsets (clipped at +-12 dB)
    body_db: float = 8.0  # most a body takes (each carrier: 50-100% of it)
    adverts_hz: float = 5.0
    hear: float = 0.8  # chance a receiver catches a packet above its sensitivity
    sensitivity_dbm: float = -95.0
    devices: int = 12
    duration_s: float = 300.0
    stop_share: float = 0.5  # share of reached spots where the shopper stands
    duplicates: float = 0.03
    give_params: bool = False  # anchors.csv with rssi_1m and path_loss_n (the nominal values)


@dataclass(frozen=True, slots=True)
class HallData:
    anchor_ids: tuple[str, ...]
    anchor_x: FloatArray
    anchor_y: FloatArray
    anchor_z: float
    nominal_p0: float | None  # what an anchors file would say (None: not given)
    nominal_n: float | None
    t: FloatArray  # readings, in arrival order
    device: npt.NDArray[np.object_]
    anchor: npt.NDArray[np.object_]
    rssi: FloatArray
    truth_t: FloatArray  # per device, every STEP_S
    truth_device: npt.NDArray[np.object_]
    truth_x: FloatArray
    truth_y: FloatArray


@dataclass(frozen=True, slots=True)
class Receivers:
    """The receivers of a hall and each one's fixed shadowing field (plane waves)."""

    x: FloatArray
    y: FloatArray
    p0: FloatArray
    n10: FloatArray  # 10 x exponent
    kx: FloatArray  # (receivers, PLANE_WAVES)
    ky: FloatArray
    phase: FloatArray

    def space(self, cfg: HallConfig, x: float, y: float) -> FloatArray:
        """The fixed part of the shadowing at (x, y), per receiver."""
        space_sd = cfg.sigma_db * math.sqrt(1.0 - cfg.time_share)
        field: FloatArray = space_sd * math.sqrt(2.0 / PLANE_WAVES) * np.cos(self.kx * x + self.ky * y
                                                                              + self.phase).sum(axis=1)
        return field

    def links(self, cfg: HallConfig, x: float, y: float, heading: float) -> tuple[FloatArray, FloatArray]:
        """Per receiver, the 3-D distance from a device at (x, y) and how far it is behind the device's
        back (0 in front or beside, 1 straight behind) for a carrier facing ``heading``."""
        hx, hy = self.x - x, self.y - y
        horiz = np.maximum(np.hypot(hx, hy), 1e-6)
        d3 = np.sqrt(hx * hx + hy * hy + (cfg.receiver_z_m - DEVICE_HEIGHT_M) ** 2)
        behind = np.clip(-(hx * math.cos(heading) + hy * math.sin(heading)) / horiz, 0.0, 1.0)
        return d3, behind


@dataclass(frozen=True, slots=True)
class _Channel:
    """The time-varying part of a hall's channel: AR(1) shadowing per link and Rician fading per packet."""

    time_sd: float
    rho: float
    los: float
    scatter: float

    @classmethod
    def of(cls, cfg: HallConfig) -> _Channel:
        return cls(cfg.sigma_db * math.sqrt(cfg.time_share), math.exp(-STEP_S / cfg.tau_s),
                   math.sqrt(cfg.rice_k / (cfg.rice_k + 1.0)), math.sqrt(0.5 / (cfg.rice_k + 1.0)))

    def shadow_step(self, rng: np.random.Generator, shadow: FloatArray) -> FloatArray:
        step: FloatArray = self.rho * shadow + rng.normal(0.0, self.time_sd * math.sqrt(1.0 - self.rho**2),
                                                          shadow.shape[0])
        return step

    def fading_db(self, rng: np.random.Generator, g: int) -> FloatArray:
        amp = (self.los + self.scatter * rng.standard_normal(g)) ** 2 + (self.scatter * rng.standard_normal(g)) ** 2
        out: FloatArray = 10.0 * np.log10(np.maximum(amp, 1e-9))
        return out


def _receivers(cfg: HallConfig, rng: np.random.Generator) -> Receivers:
    xs = np.arange(cfg.spacing_m / 2, cfg.width_m, cfg.spacing_m)
    ys = np.arange(cfg.spacing_m / 2, cfg.depth_m, cfg.spacing_m)
    gx, gy = (a.ravel() for a in np.meshgrid(xs, ys))
    ax, ay = gx + rng.normal(0.0, 1.0, gx.size), gy + rng.normal(0.0, 1.0, gy.size)
    g = ax.size
    p0 = cfg.p0_dbm + rng.normal(0.0, cfg.p0_sd_db, g)
    n10 = 10.0 * (cfg.n + rng.normal(0.0, cfg.n_sd, g))
    # Spatial shadowing: random plane waves with wavenumbers around 1 / corr_m.
    kdir = rng.uniform(0.0, 2.0 * np.pi, (g, PLANE_WAVES))
    kmag = rng.rayleigh(1.0 / cfg.corr_m, (g, PLANE_WAVES))
    phase = rng.uniform(0.0, 2.0 * np.pi, (g, PLANE_WAVES))
    return Receivers(ax, ay, p0, n10, kmag * np.cos(kdir), kmag * np.sin(kdir), phase)


def generate(cfg: HallConfig, seed: int) -> HallData:
    rng = np.random.default_rng([seed, 0x4A11])
    rx = _receivers(cfg, rng)
    ax, ay, p0, n10 = rx.x, rx.y, rx.p0, rx.n10
    g = ax.size
    ch = _Channel.of(cfg)
    rows_t: list[FloatArray] = []
    rows_dev: list[npt.NDArray[np.object_]] = []
    rows_anchor: list[npt.NDArray[np.int64]] = []
    rows_rssi: list[FloatArray] = []
    tr_t: list[float] = []
    tr_dev: list[str] = []
    tr_x: list[float] = []
    tr_y: list[float] = []
    for d in range(cfg.devices):
        name = f"d{d}"
        offset = float(np.clip(rng.normal(0.0, cfg.offset_sd_db), -12.0, 12.0))
        body = rng.uniform(0.5, 1.0) * cfg.body_db
        x, y = rng.uniform(2.0, cfg.width_m - 2.0), rng.uniform(2.0, cfg.depth_m - 2.0)
        tx, ty, speed, stand, heading = x, y, 0.0, 0.0, rng.uniform(0.0, 2.0 * np.pi)
        shadow_t = np.zeros(g)
        start = rng.uniform(0.0, 30.0)
        next_advert = start
        for k in range(int(cfg.duration_s / STEP_S)):
            t = start + k * STEP_S
            dx, dy = tx - x, ty - y
            dist = math.hypot(dx, dy)
            if stand > 0.0:
                stand -= STEP_S
            elif dist < 0.3:
                if rng.random() < cfg.stop_share:
                    stand = rng.uniform(5.0, 60.0)
                tx, ty = rng.uniform(1.0, cfg.width_m - 1.0), rng.uniform(1.0, cfg.depth_m - 1.0)
                speed = rng.uniform(0.7, 1.5)
            else:
                step = min(dist, speed * STEP_S)
                x, y, heading = x + dx / dist * step, y + dy / dist * step, math.atan2(dy, dx)
            shadow_t = ch.shadow_step(rng, shadow_t)
            tr_t.append(t)
            tr_dev.append(name)
            tr_x.append(x)
            tr_y.append(y)
            if t < next_advert:
                continue
            next_advert += 1.0 / cfg.adverts_hz
            d3, behind = rx.links(cfg, x, y, heading)
            fade = ch.fading_db(rng, g)
            space = rx.space(cfg, x, y)
            level = p0 + offset - n10 * np.log10(d3) + space + shadow_t + fade - body * behind
            heard = np.flatnonzero((level >= cfg.sensitivity_dbm) & (rng.random(g) < cfg.hear))
            again = heard[rng.random(heard.size) < cfg.duplicates]
            idx = np.concatenate([heard, again])
            rows_t.append(t + rng.uniform(0.0, 0.02, idx.size))
            rows_dev.append(np.full(idx.size, name, dtype=object))
            rows_anchor.append(idx)
            rows_rssi.append(np.round(level[idx]))
    t_all = np.concatenate(rows_t)
    arrival = np.argsort(t_all + rng.exponential(0.5, t_all.size), kind="stable")  # late and out of order
    ids = tuple(f"g{j}" for j in range(g))
    anchor_of = np.array(ids, dtype=object)[np.concatenate(rows_anchor)]
    return HallData(ids, ax, ay, cfg.receiver_z_m, cfg.p0_dbm if cfg.give_params else None,
                    cfg.n if cfg.give_params else None, t_all[arrival], np.concatenate(rows_dev)[arrival],
                    anchor_of[arrival], np.concatenate(rows_rssi)[arrival], np.array(tr_t),
                    np.array(tr_dev, dtype=object), np.array(tr_x), np.array(tr_y))


def errors_at(data: HallData, t: FloatArray, device: npt.NDArray[np.object_], x: FloatArray,
              y: FloatArray) -> FloatArray:
    """Distance of each estimate from its device's true position at the estimate's time."""
    out = np.full(t.shape, np.nan)
    for d in np.unique(device):
        m, tm = device == d, data.truth_device == d
        out[m] = np.hypot(x[m] - np.interp(t[m], data.truth_t[tm], data.truth_x[tm]),
                          y[m] - np.interp(t[m], data.truth_t[tm], data.truth_y[tm]))
    return out


def centroid_baseline(data: HallData, window_s: float = 2.0, strongest: int = 3
                      ) -> tuple[FloatArray, npt.NDArray[np.object_], FloatArray, FloatArray]:
    """What presence tools do: each second, the mean RSSI per receiver over the last ``window_s`` and
    the centroid of the ``strongest`` receivers weighted by linear amplitude."""
    index = {a: j for j, a in enumerate(data.anchor_ids)}
    aj = np.array([index[a] for a in data.anchor], dtype=np.int64)
    out_t, out_d, out_x, out_y = [], [], [], []
    for d in np.unique(data.device):
        m = data.device == d
        t, a, r = data.t[m], aj[m], data.rssi[m]
        for s in range(int(np.floor(t.min())), int(np.floor(t.max())) + 1):
            w = (t > s + 1 - window_s) & (t <= s + 1)
            if not w.any():
                continue
            total = np.bincount(a[w], weights=r[w], minlength=len(index))
            count = np.bincount(a[w], minlength=len(index))
            mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
            cx, cy = strongest_centroid(mean[None, :], data.anchor_x, data.anchor_y, strongest)
            out_t.append(s + 1.0)
            out_d.append(d)
            out_x.append(float(cx[0]))
            out_y.append(float(cy[0]))
    return np.array(out_t), np.array(out_d, dtype=object), np.array(out_x), np.array(out_y)


def strongest_centroid(mean: FloatArray, ax: FloatArray, ay: FloatArray, strongest: int = 3
                       ) -> tuple[FloatArray, FloatArray]:
    """Per row of ``mean`` (mean RSSI per receiver, NaN where not heard): the centroid of the ``strongest``
    receivers weighted by linear amplitude, what BLE presence tools report."""
    level = np.nan_to_num(mean, nan=-np.inf)
    top = np.argsort(-level, axis=1)[:, :strongest]
    top_level = np.take_along_axis(level, top, axis=1)
    w = np.where(np.isfinite(top_level), 10.0 ** (top_level / 20.0), 0.0)
    x: FloatArray = (ax[top] * w).sum(axis=1) / w.sum(axis=1)
    y: FloatArray = (ay[top] * w).sum(axis=1) / w.sum(axis=1)
    return x, y


@dataclass(frozen=True, slots=True)
class Scans:
    """Readings of devices standing still, one scan per spot (the spot's position on every reading)."""

    t: FloatArray
    device: npt.NDArray[np.object_]
    anchor: npt.NDArray[np.object_]
    rssi: FloatArray
    scan: npt.NDArray[np.object_]
    x: FloatArray
    y: FloatArray


def standing_scans(cfg: HallConfig, seed: int, stream: int, x: FloatArray, y: FloatArray,
                   device: npt.NDArray[np.object_], offset: FloatArray, t0: FloatArray, scan_s: float) -> Scans:
    """Scans of ``scan_s`` seconds at spots (x, y) starting at ``t0``, in the hall of ``generate(cfg, seed)``
    (same receivers and fixed shadowing field); ``stream`` seeds the rest (fading, bodies, headings)."""
    rx = _receivers(cfg, np.random.default_rng([seed, 0x4A11]))
    rng = np.random.default_rng([seed, 0x5CA7, stream])
    g = rx.x.size
    ch = _Channel.of(cfg)
    ids = np.array([f"g{j}" for j in range(g)], dtype=object)
    out: dict[str, list[npt.NDArray[np.generic]]] = {k: [] for k in ("t", "device", "anchor", "rssi", "scan", "x", "y")}
    for k in range(x.shape[0]):
        heading = rng.uniform(0.0, 2.0 * np.pi)
        body = rng.uniform(0.5, 1.0) * cfg.body_db
        d3, behind = rx.links(cfg, float(x[k]), float(y[k]), heading)
        mean = rx.p0 + offset[k] - rx.n10 * np.log10(d3) + rx.space(cfg, float(x[k]), float(y[k])) - body * behind
        shadow_t = rng.normal(0.0, ch.time_sd, g)
        steps = round(scan_s / STEP_S)
        next_advert = rng.uniform(0.0, 1.0 / cfg.adverts_hz)
        for s in range(steps):
            ts = s * STEP_S
            shadow_t = ch.shadow_step(rng, shadow_t)
            if ts < next_advert:
                continue
            next_advert += 1.0 / cfg.adverts_hz
            level = mean + shadow_t + ch.fading_db(rng, g)
            heard = np.flatnonzero((level >= cfg.sensitivity_dbm) & (rng.random(g) < cfg.hear))
            out["t"].append(t0[k] + ts + rng.uniform(0.0, 0.02, heard.size))
            out["device"].append(np.full(heard.size, device[k], dtype=object))
            out["anchor"].append(ids[heard])
            out["rssi"].append(np.round(level[heard]))
            out["scan"].append(np.full(heard.size, f"s{k}", dtype=object))
            out["x"].append(np.full(heard.size, x[k]))
            out["y"].append(np.full(heard.size, y[k]))
    cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}
    return Scans(cat["t"], cat["device"].astype(object), cat["anchor"].astype(object), cat["rssi"],
                 cat["scan"].astype(object), cat["x"], cat["y"])


def scan_means(scans: Scans, anchor_ids: tuple[str, ...]) -> tuple[FloatArray, FloatArray, FloatArray,
                                                                     npt.NDArray[np.object_]]:
    """Per scan (in order of first appearance): mean RSSI per receiver (NaN: not heard), its x, y and key."""
    index = {a: j for j, a in enumerate(anchor_ids)}
    keys = np.char.add(np.char.add(scans.device.astype(str), "\x1f"), scans.scan.astype(str))
    uniq, first, row = np.unique(keys, return_index=True, return_inverse=True)
    aj = np.fromiter((index[a] for a in scans.anchor), dtype=np.int64, count=scans.anchor.shape[0])
    total = np.zeros((uniq.shape[0], len(anchor_ids)))
    count = np.zeros_like(total)
    np.add.at(total, (row, aj), scans.rssi)
    np.add.at(count, (row, aj), 1.0)
    mean = np.where(count > 0, total / np.maximum(count, 1.0), np.nan)
    return mean, scans.x[first], scans.y[first], uniq.astype(object)


def knn_baseline(survey: Scans, queries: Scans, anchor_ids: tuple[str, ...], k: int = 3,
                 missing_dbm: float = -100.0) -> tuple[npt.NDArray[np.object_], FloatArray, FloatArray]:
    """The textbook fingerprint: mean RSSI per receiver (``missing_dbm`` where not heard), Euclidean
    distance, the plain mean of the ``k`` nearest survey points. Per query scan: key, x, y."""
    m_rssi, m_x, m_y, _ = scan_means(survey, anchor_ids)
    q_rssi, _, _, q_key = scan_means(queries, anchor_ids)
    m = np.nan_to_num(m_rssi, nan=missing_dbm)
    q = np.nan_to_num(q_rssi, nan=missing_dbm)
    d2 = (q * q).sum(axis=1)[:, None] - 2.0 * q @ m.T + (m * m).sum(axis=1)[None, :]
    near = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return q_key, m_x[near].mean(axis=1), m_y[near].mean(axis=1)
