"""Tracking: a particle filter per device, vectorized over all devices of a step.

Each particle has a position, a floor, a velocity, a heading and a mode (standing or walking). Walkers
keep a walking pace (it drifts slowly around WALK_SPEED) and a heading that turns slowly, under a speed
limit; standing particles barely move and keep facing the way they walked. Moves that would cross a
non-walkable cell (walls, counter furniture, voids) are refused, and floors change only near a connector
end (escalator, lift, stairs) — or anywhere, slowly, when there is no venue. The measurement model is
the radio model's likelihood of the window's filtered RSSI at where each particle was when the readings
were taken, with the device offset marginalised around its estimate, a robust (Huber-like) loss, the
learned losses of obstacles on the line of sight and of the carrier's body (anchors behind its heading),
and the censoring likelihood of near receivers that did not hear the device. Each particle carries its
own estimate of the offset (Rao-Blackwellised: a mean and a variance per particle, updated from the
links it expects well clear of sensitivity, weighed against the device-level learner's estimate, which
it adopts once that has converged), so the readings' level tells positions apart even where their
pattern cannot (beyond the last anchors every range stretches alike). A small share of particles is
redrawn each step around the window's multilateration fix, so a lost track recovers. Random draws come
from one generator per device, seeded by its id: results do not depend on other devices.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy.special import log_ndtr

from positioning.const import (
    ACCURACY_MAX_M,
    ACCURACY_MIN_M,
    DEVICE_HEIGHT_M,
    DEVICE_OFFSET_MAX_DB,
    FLOOR_LOSS_DB,
    MIN_DISTANCE_M,
    SHADOWING_DB,
)
from positioning.maps import SiteMap, WallTables, wall_tables
from positioning.radio import AnchorTable, body_share

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

PARTICLES: Final = 256  # per device; enough for a 10 m anchor grid with walls
WALK_SPEED: Final = 1.0  # m/s, a shopper's usual walking pace
WALK_SPEED_SD: Final = 0.35  # m/s, spread of paces
WALK_SPEED_MIN: Final = 0.3  # m/s, slower than this is standing
SPEED_MAX: Final = 1.8  # m/s, brisk walking; shoppers do not run
SPEED_TAU_S: Final = 10.0  # s, how long a walker keeps its pace
TURN_SD: Final = 0.35  # rad per sqrt(s): how fast a walker's heading wanders
POSITION_JITTER: Final = 0.25  # m per sqrt(s): diffusion that lets particles leave dead ends
# Shoppers alternate between walking and standing (at a counter, a shop window, a till). A particle is
# in one of the two modes: standing particles barely move, so a standing shopper's windows accumulate
# (time averages the shadowing away), while walking ones follow the walker.
STILL_JITTER: Final = 0.05  # m per sqrt(s): shifting weight at a counter
STILL_MEAN_S: Final = 15.0  # mean time a standing shopper stays before walking on (short: a start is caught fast)
WALK_MEAN_S: Final = 30.0  # mean time a walker walks before stopping
STILL_SHARE_NEW: Final = 0.5  # share of a new track's (and of injected) particles that start standing
MOVE_SUBSTEPS: Final = 4  # wall checks along a move
MAX_DT_S: Final = 10.0  # a longer gap re-seeds the device from its fix
CONNECTOR_RADIUS_M: Final = 5.0  # particles this close to a connector end may change floor
CONNECTOR_RATE: Final = 0.08  # per second: chance that a particle near a connector takes it
OPEN_FLOOR_RATE: Final = 0.01  # per second: floor change anywhere when there is no venue
INJECT_FRACTION: Final = 0.05  # share of particles redrawn around the window's fix each step
INIT_SPREAD_M: Final = 3.0  # minimum spread of a new track around its first fix
LOST_MEAN_E2: Final = 9.0  # mean squared standardized residual of the best particle above which a window is unexplained
LOST_WINDOWS: Final = 3  # consecutive unexplained windows before a track is re-seeded from its fix
INJECT_MAX_ACC_M: Final = 8.0  # only a fix at least this confident seeds particles
FLOOR_SWITCH_SHARE: Final = 0.6  # weight share another floor needs before the estimate switches to it
CENSOR_NEGLIGIBLE_Z: Final = 8.0  # a silent anchor predicted 8 sigma below sensitivity costs nothing
ROBUST_CLIP: Final = 3.0  # standardized residuals are clipped here in the likelihood
NEAR_ANCHORS: Final = 8  # per particle, the nearest anchors whose silence counts against it
NEAR_CELL_M: Final = 1.0  # resolution of the nearest-anchor lookup
OTHER_FLOOR_M: Final = 4.0  # an anchor one floor up or down ranks as this much farther
OFFSET_DRIFT_DB2_PER_S: Final = 0.02  # a device's offset drifts slowly (phone moved to a pocket)
TRACK_OFFSET_MARGIN_DB: Final = 9.0  # links expected this far above sensitivity update a particle's offset
TRACK_OFFSET_MIN_SD_DB: Final = 1.5  # the offset is never known better than this (windows' shadowing is correlated)
SHARED_OFFSET_BELOW_DB2: Final = 12.0  # dB^2: the device-level offset is converged (its floor is 9)
RESAMPLE_ESS: Final = 0.5  # resample when the effective sample size drops below this share


def _near_anchor_tables(anchors: AnchorTable, site: SiteMap) -> tuple[list[IntArray], list[tuple[float, float]]]:
    """Per floor, a grid of the NEAR_ANCHORS anchors nearest to each cell (other floors count as
    OTHER_FLOOR_M farther, so the anchors right above and below are among them)."""
    tables, origins = [], []
    m = min(NEAR_ANCHORS, len(anchors))
    for f, raster in enumerate(site.floors):
        x0, y0, x1, y1 = raster.bounds
        cx = np.arange(x0 + NEAR_CELL_M / 2, x1, NEAR_CELL_M)
        cy = np.arange(y0 + NEAR_CELL_M / 2, y1, NEAR_CELL_M)
        gx, gy = np.meshgrid(cx, cy)
        d = np.hypot(gx[:, :, None] - anchors.x, gy[:, :, None] - anchors.y)
        d = d + OTHER_FLOOR_M * np.abs(anchors.floor_level[anchors.floor] - anchors.floor_level[f])
        near = np.argpartition(d, m - 1, axis=2)[:, :, :m] if m < len(anchors) else np.argsort(d, axis=2)
        tables.append(near.astype(np.int64))
        origins.append((x0, y0))
    return tables, origins


def device_seed(device: str, seed: int = 0) -> int:
    return zlib.crc32(device.encode("utf-8")) ^ (seed * 0x9E3779B1 & 0xFFFFFFFF)


@dataclass(frozen=True, slots=True)
class Observation:
    """Filtered readings of D devices in one step, padded to K heard anchors."""

    anchor: IntArray  # (D, K) anchor index; -1 padding
    mean: FloatArray  # (D, K)
    var: FloatArray  # (D, K)
    silent: BoolArray  # (D, A) anchors that were listening (alive) and did not hear the device
    offset: FloatArray  # (D,) device RSSI offset estimate
    offset_var: FloatArray  # (D,) its variance: the likelihood marginalises the offset over it
    sens: FloatArray  # (D,) sensitivity, dBm
    silent_q: FloatArray  # (D,) chance a receiver in range heard none of the device's adverts (packet loss)
    # Optional pseudo-measurement (fingerprint kNN position and its sd); NaN where there is none.
    pseudo_x: FloatArray | None = None
    pseudo_y: FloatArray | None = None
    pseudo_sd: FloatArray | None = None
    age: FloatArray | None = None  # (D,) how long before the step's time the readings were taken, on average
    wall_db: float = 0.0  # loss per obstacle on the line of sight (0: walls not modelled)
    body_db: float = 0.0  # loss of an anchor squarely behind a walking carrier (0: no body model)


@dataclass(frozen=True, slots=True)
class TrackEstimate:
    x: FloatArray
    y: FloatArray
    floor: IntArray
    accuracy_m: FloatArray
    heading_x: FloatArray  # mean of the particles' heading unit vectors: its length (0..1) is how sure
    heading_y: FloatArray
    walking: FloatArray  # weight of walking particles, 0..1


class ParticleTracker:
    """Particle clouds for many devices, stored as (devices, particles) arrays."""

    def __init__(self, anchors: AnchorTable, site: SiteMap, device_height: float = DEVICE_HEIGHT_M,
                 particles: int = PARTICLES, seed: int = 0) -> None:
        self.anchors = anchors
        self.site = site
        self.h = device_height
        self.p = particles
        self.seed = seed
        self.slot: dict[str, int] = {}
        self.rngs: list[np.random.Generator] = []
        cap = 64
        self.px = np.zeros((cap, particles))
        self.py = np.zeros((cap, particles))
        self.pf = np.zeros((cap, particles), dtype=np.int64)
        self.vx = np.zeros((cap, particles))
        self.vy = np.zeros((cap, particles))
        self.hd = np.zeros((cap, particles))  # heading (rad): where a walker goes, where a standing carrier faces
        self.still = np.zeros((cap, particles), dtype=bool)
        self.logw = np.zeros((cap, particles))
        # The device's RSSI offset as each particle's path implies it (mean and variance; Rao-Blackwellised).
        self.po = np.zeros((cap, particles))
        self.po_var = np.zeros((cap, particles))
        self.last_t = np.full(cap, -np.inf)
        self.est_floor = np.zeros(cap, dtype=np.int64)
        self.alive = np.zeros(cap, dtype=bool)
        self.lost_n = np.zeros(cap, dtype=np.int64)
        self.az_abs = anchors.abs_z(device_height)
        self.near_table, self.near_origin = _near_anchor_tables(anchors, site)
        self.walls: WallTables | None = wall_tables(site, anchors) if site.has_venue else None

    # ------------------------------------------------------------------ bookkeeping
    def _slots(self, devices: list[str]) -> IntArray:
        out = np.empty(len(devices), dtype=np.int64)
        for i, d in enumerate(devices):
            s = self.slot.get(d)
            if s is None:
                s = len(self.slot)
                self.slot[d] = s
                self.rngs.append(np.random.default_rng(device_seed(d, self.seed)))
                if s >= self.px.shape[0]:
                    self._grow()
            out[i] = s
        return out

    def _grow(self) -> None:
        self.px = np.concatenate([self.px, np.zeros_like(self.px)])
        self.py = np.concatenate([self.py, np.zeros_like(self.py)])
        self.pf = np.concatenate([self.pf, np.zeros_like(self.pf)])
        self.vx = np.concatenate([self.vx, np.zeros_like(self.vx)])
        self.vy = np.concatenate([self.vy, np.zeros_like(self.vy)])
        self.hd = np.concatenate([self.hd, np.zeros_like(self.hd)])
        self.still = np.concatenate([self.still, np.zeros_like(self.still)])
        self.logw = np.concatenate([self.logw, np.zeros_like(self.logw)])
        self.po = np.concatenate([self.po, np.zeros_like(self.po)])
        self.po_var = np.concatenate([self.po_var, np.zeros_like(self.po_var)])
        self.last_t = np.concatenate([self.last_t, np.full_like(self.last_t, -np.inf)])
        self.est_floor = np.concatenate([self.est_floor, np.zeros_like(self.est_floor)])
        self.alive = np.concatenate([self.alive, np.zeros_like(self.alive)])
        self.lost_n = np.concatenate([self.lost_n, np.zeros_like(self.lost_n)])

    def forget(self, device: str) -> None:
        s = self.slot.get(device)
        if s is not None:
            self.alive[s] = False
            self.last_t[s] = -np.inf

    # ------------------------------------------------------------------ one step
    def step(self, devices: list[str], t: FloatArray, obs: Observation, fix_x: FloatArray, fix_y: FloatArray,
             fix_floor: IntArray, fix_acc: FloatArray) -> TrackEstimate:
        """Advance the listed devices to their times ``t`` and weigh them by ``obs``."""
        s = self._slots(devices)
        d_n, p_n = len(devices), self.p
        dt = t - self.last_t[s]
        fresh = ~self.alive[s] | (dt > MAX_DT_S) | ~np.isfinite(dt)
        dt = np.where(fresh, 0.0, np.clip(dt, 0.0, MAX_DT_S))
        noise = np.stack([self.rngs[k].standard_normal((p_n, 7)) for k in s])  # (D, P, 7)
        unif = np.stack([self.rngs[k].random(2 * p_n + 1) for k in s])  # (D, 2P+1)
        u_mode = unif[:, p_n + 1:]

        px, py, pf = self.px[s], self.py[s], self.pf[s]
        vx, vy, logw, still, hd = self.vx[s], self.vy[s], self.logw[s], self.still[s], self.hd[s]
        po, po_var = self.po[s], self.po_var[s] + OFFSET_DRIFT_DB2_PER_S * dt[:, None]
        random_heading = np.arctan2(noise[:, :, 3], noise[:, :, 2])
        spread = np.maximum(fix_acc, INIT_SPREAD_M)[:, None]

        # Seed new tracks around their fix.
        if fresh.any():
            px[fresh] = fix_x[fresh, None] + noise[fresh, :, 0] * spread[fresh]
            py[fresh] = fix_y[fresh, None] + noise[fresh, :, 1] * spread[fresh]
            pf[fresh] = fix_floor[fresh, None]
            vx[fresh] = 0.0
            vy[fresh] = 0.0
            hd[fresh] = random_heading[fresh]
            logw[fresh] = 0.0
            still[fresh] = u_mode[fresh] < STILL_SHARE_NEW
            po[fresh] = obs.offset[fresh, None]
            po_var[fresh] = obs.offset_var[fresh, None]
            self.est_floor[s[fresh]] = fix_floor[fresh]

        # Motion: standing particles may start walking and walkers may stop (a two-mode model). A walker
        # keeps a walking pace (its speed reverts to WALK_SPEED) and a heading that turns slowly; a
        # particle that starts walking picks a random heading. Moves across non-walkable cells are refused.
        p_go = 1.0 - np.exp(-dt / STILL_MEAN_S)[:, None]
        p_stop = 1.0 - np.exp(-dt / WALK_MEAN_S)[:, None]
        was_still = still
        still = np.where(still, u_mode >= p_go, u_mode < p_stop)
        speed = np.hypot(vx, vy)
        start = ~still & (was_still | (speed < 1e-9))
        heading = np.where(start, random_heading, hd + TURN_SD * np.sqrt(dt)[:, None] * noise[:, :, 3])
        hd = np.where(still, hd, heading)  # a carrier who stops keeps facing the way it walked
        rho = np.exp(-dt / SPEED_TAU_S)[:, None]
        speed = np.where(start, WALK_SPEED, WALK_SPEED + rho * (speed - WALK_SPEED))
        speed = speed + np.where(start, 1.0, np.sqrt(1.0 - rho * rho)) * WALK_SPEED_SD * noise[:, :, 6]
        speed = np.where(still, 0.0, np.clip(speed, WALK_SPEED_MIN, SPEED_MAX))
        nvx, nvy = speed * np.cos(heading), speed * np.sin(heading)
        jit = np.where(still, STILL_JITTER, POSITION_JITTER) * np.sqrt(dt)[:, None]
        dx = nvx * dt[:, None] + jit * noise[:, :, 4]
        dy = nvy * dt[:, None] + jit * noise[:, :, 5]
        ok = self._path_walkable(px, py, pf, dx, dy)
        px = np.where(ok, px + dx, px)
        py = np.where(ok, py + dy, py)
        # A walker that meets a wall stops; next step it sets off again at a walking pace, on a new random heading.
        vx = np.where(ok, nvx, 0.0)
        vy = np.where(ok, nvy, 0.0)

        # Floor changes.
        px, py, pf = self._floor_changes(px, py, pf, dt, unif[:, :p_n])

        # Fresh particles are snapped into walkable space.
        if fresh.any():
            px, py = self._snap(px, py, pf, fresh)

        # Redraw a share of particles around the window's fix (sensor resetting).
        n_inj = max(1, round(INJECT_FRACTION * p_n))
        has_fix = np.isfinite(fix_x) & ~fresh & (fix_acc < INJECT_MAX_ACC_M)
        if has_fix.any():
            rows = np.flatnonzero(has_fix)
            ix = fix_x[rows, None] + noise[rows, :n_inj, 0] * spread[rows]
            iy = fix_y[rows, None] + noise[rows, :n_inj, 1] * spread[rows]
            # Overwrite the lowest-weight particles.
            worst = np.argsort(logw[rows], axis=1)[:, :n_inj]
            r_idx = rows[:, None]
            w_old = np.exp(logw[rows] - logw[rows].max(axis=1, keepdims=True))
            w_old /= w_old.sum(axis=1, keepdims=True)
            po[r_idx, worst] = (w_old * po[rows]).sum(axis=1)[:, None]  # the cloud's offset
            po_var[r_idx, worst] = (w_old * po_var[rows]).sum(axis=1)[:, None]
            px[r_idx, worst] = ix
            py[r_idx, worst] = iy
            pf[r_idx, worst] = fix_floor[rows, None]
            vx[r_idx, worst] = 0.0
            vy[r_idx, worst] = 0.0
            hd[r_idx, worst] = random_heading[rows, :n_inj]
            still[r_idx, worst] = u_mode[rows, :n_inj] < STILL_SHARE_NEW
            logw[r_idx, worst] = np.max(logw[rows], axis=1, keepdims=True) - 3.0
            snap_mask = np.zeros(d_n, dtype=bool)
            snap_mask[rows] = True
            px, py = self._snap(px, py, pf, snap_mask)

        # Measurement update.
        # A device-level estimate that has converged (many anchors well clear of sensitivity told it) is
        # handed to every particle: a shared offset keeps a level that does not fit a position against
        # it. A young one is not: early estimates can be wrong and sure-looking (a quiet phone held at
        # -6 dB when it was -15 sat in a corner for two minutes).
        shared = (obs.offset_var < SHARED_OFFSET_BELOW_DB2)[:, None]
        po = np.where(shared, obs.offset[:, None], po)
        po_var = np.where(shared, obs.offset_var[:, None], po_var)
        ll, mean_e2, shift, info = self._loglik(px, py, pf, vx, vy, hd, po, po_var, obs)
        po = np.clip(po + shift, -DEVICE_OFFSET_MAX_DB, DEVICE_OFFSET_MAX_DB)
        po_var = np.maximum(1.0 / (1.0 / po_var + info), TRACK_OFFSET_MIN_SD_DB**2)
        lost = np.min(mean_e2, axis=1) > LOST_MEAN_E2
        if obs.pseudo_x is not None and obs.pseudo_y is not None and obs.pseudo_sd is not None:
            has = np.isfinite(obs.pseudo_x) & np.isfinite(obs.pseudo_sd)
            qx, qy = np.nan_to_num(obs.pseudo_x)[:, None], np.nan_to_num(obs.pseudo_y)[:, None]
            var = np.maximum(np.nan_to_num(obs.pseudo_sd), 0.5)[:, None] ** 2
            ll = ll - np.where(has[:, None], 0.5 * ((px - qx) ** 2 + (py - qy) ** 2) / var, 0.0)
        logw = logw + ll
        logw -= logw.max(axis=1, keepdims=True)
        w = np.exp(logw)
        w /= w.sum(axis=1, keepdims=True)

        # Estimate on the dominant floor (with hysteresis).
        est_floor = self._choose_floor(s, pf, w)
        on = (pf == est_floor[:, None])
        w_on = np.where(on, w, 0.0)
        w_on /= np.maximum(w_on.sum(axis=1, keepdims=True), 1e-300)
        ex = (w_on * px).sum(axis=1)
        ey = (w_on * py).sum(axis=1)
        var = (w_on * ((px - ex[:, None]) ** 2 + (py - ey[:, None]) ** 2)).sum(axis=1)
        acc = np.clip(np.sqrt(var), ACCURACY_MIN_M, ACCURACY_MAX_M)
        walking = np.where(still, 0.0, w_on).sum(axis=1)
        hx, hy = (w_on * np.cos(hd)).sum(axis=1), (w_on * np.sin(hd)).sum(axis=1)
        ex, ey = self._snap_points(ex, ey, est_floor)

        # Resample where the effective sample size is low (systematic, per device).
        ess = 1.0 / np.sum(w * w, axis=1)
        rs = ess < RESAMPLE_ESS * p_n
        if rs.any():
            rows = np.flatnonzero(rs)
            cw = np.cumsum(w[rows], axis=1)
            cw[:, -1] = 1.0
            u = (unif[rows, p_n:p_n + 1] + np.arange(p_n)[None, :]) / p_n
            lift = 2.0 * np.arange(rows.shape[0])[:, None]  # rows side by side on one sorted axis
            flat = np.searchsorted((cw + lift).ravel(), (u + lift).ravel())
            pick = np.minimum(flat.reshape(rows.shape[0], p_n) - np.arange(rows.shape[0])[:, None] * p_n, p_n - 1)
            r_idx = rows[:, None]
            px[rows], py[rows], pf[rows] = px[r_idx, pick], py[r_idx, pick], pf[r_idx, pick]
            vx[rows], vy[rows], still[rows] = vx[r_idx, pick], vy[r_idx, pick], still[r_idx, pick]
            hd[rows], po[rows], po_var[rows] = hd[r_idx, pick], po[r_idx, pick], po_var[r_idx, pick]
            logw[rows] = 0.0
        else:
            logw = np.log(np.maximum(w, 1e-300))

        self.px[s], self.py[s], self.pf[s] = px, py, pf
        self.vx[s], self.vy[s], self.logw[s], self.still[s], self.hd[s] = vx, vy, logw, still, hd
        self.po[s], self.po_var[s] = po, po_var
        self.last_t[s] = t
        self.alive[s] = True
        self.est_floor[s] = est_floor
        # A lost track (no particle explains several windows in a row) re-seeds from its fix next step.
        self.lost_n[s] = np.where(lost, self.lost_n[s] + 1, 0)
        relost = (self.lost_n[s] >= LOST_WINDOWS) & np.isfinite(fix_x)
        if relost.any():
            self.alive[s[relost]] = False
            self.lost_n[s[relost]] = 0
        return TrackEstimate(ex, ey, est_floor, acc, hx, hy, walking)

    # ------------------------------------------------------------------ pieces
    def _path_walkable(self, px: FloatArray, py: FloatArray, pf: IntArray, dx: FloatArray,
                       dy: FloatArray) -> BoolArray:
        ok = np.ones(px.shape, dtype=bool)
        for f, raster in enumerate(self.site.floors):
            m = pf == f
            if not m.any():
                continue
            x0, y0, ddx, ddy = px[m], py[m], dx[m], dy[m]
            good = np.ones(x0.shape, dtype=bool)
            for k in range(1, MOVE_SUBSTEPS + 1):
                frac = k / MOVE_SUBSTEPS
                good &= raster.is_walkable(x0 + ddx * frac, y0 + ddy * frac)
            ok[m] = good
        return ok

    def _floor_changes(self, px: FloatArray, py: FloatArray, pf: IntArray, dt: FloatArray,
                       u: FloatArray) -> tuple[FloatArray, FloatArray, IntArray]:
        n_floors = len(self.site.floors)
        if n_floors < 2:
            return px, py, pf
        site = self.site
        if site.has_venue:
            if site.conn_fa.shape[0] == 0:
                return px, py, pf
            p_take = 1.0 - np.exp(-CONNECTOR_RATE * dt)[:, None]
            for c in range(site.conn_fa.shape[0]):
                near = (pf == site.conn_fa[c]) & (np.hypot(px - site.conn_xa[c], py - site.conn_ya[c])
                                                  < CONNECTOR_RADIUS_M)
                take = near & (u < p_take)
                if take.any():
                    px = np.where(take, px - site.conn_xa[c] + site.conn_xb[c], px)
                    py = np.where(take, py - site.conn_ya[c] + site.conn_yb[c], py)
                    pf = np.where(take, site.conn_fb[c], pf)
                    u = np.where(take, 2.0, u)  # one change per step
            return px, py, pf
        p_take = 1.0 - np.exp(-OPEN_FLOOR_RATE * dt)[:, None]
        take = u < p_take
        if take.any():
            shift = 1 + np.floor(u / np.maximum(p_take, 1e-12) * (n_floors - 1)).astype(np.int64)
            pf = np.where(take, (pf + shift) % n_floors, pf)
        return px, py, pf

    def _snap(self, px: FloatArray, py: FloatArray, pf: IntArray, rows: BoolArray) -> tuple[FloatArray, FloatArray]:
        for f, raster in enumerate(self.site.floors):
            m = (pf == f) & rows[:, None]
            if m.any():
                sx, sy = raster.snap(px[m], py[m])
                px[m], py[m] = sx, sy
        return px, py

    def _snap_points(self, x: FloatArray, y: FloatArray, floor: IntArray) -> tuple[FloatArray, FloatArray]:
        x, y = x.copy(), y.copy()
        for f, raster in enumerate(self.site.floors):
            m = floor == f
            if m.any():
                x[m], y[m] = raster.snap(x[m], y[m])
        return x, y

    def _loglik(self, px: FloatArray, py: FloatArray, pf: IntArray, vx: FloatArray, vy: FloatArray,
                hd: FloatArray, po: FloatArray, po_var: FloatArray, obs: Observation
                ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Log-likelihood of each particle, its mean squared standardised residual, the shift of its offset
        this window implies (posterior mean minus prior mean) and the window's information on the offset."""
        heard = obs.anchor >= 0
        ai = np.where(heard, obs.anchor, 0)
        # Residuals share the device's offset error c ~ N(0, s2). Profiling it out gives the Gaussian
        # marginal's quadratic form: min_c sum((e - c)^2 / v) + c^2 / s2. The residuals left after the
        # common shift are clipped (Huber-like), so one wild reading cannot dominate, while the shift
        # itself keeps its full prior penalty (a wrong floor reads as a large common shift).
        # Computed in float32: (devices x particles x anchors) is the largest array of a step.
        f32 = np.float32
        inv_v = np.where(heard, 1.0 / obs.var, 0.0).astype(f32)[:, None, :]
        e = self._heard_residuals(px, py, pf, vx, vy, hd, po, ai, obs)  # (D, P, K), zero where not heard
        s2 = np.maximum(po_var, 1e-6).astype(f32)
        info = inv_v.sum(axis=2)  # (D, 1)
        # The offset is updated from the links each particle expects well above sensitivity only: a link
        # near it is heard when lucky, and its readings would pull the offset up.
        sure = (obs.mean[:, None, :] - e) > (obs.sens[:, None, None] + TRACK_OFFSET_MARGIN_DB)
        inv_sure = np.where(sure, inv_v, f32(0.0))
        info_sure = inv_sure.sum(axis=2)
        shift_sure = (e * inv_sure).sum(axis=2) / (1.0 / s2 + info_sure)
        shift = ((e * inv_v).sum(axis=2) / (1.0 / s2 + info)).astype(f32)
        lim = (ROBUST_CLIP * np.sqrt(obs.var)).astype(f32)[:, None, :]
        e -= shift[:, :, None]
        np.clip(e, -lim, lim, out=e)
        e *= e
        e *= inv_v
        q = e.sum(axis=2, dtype=np.float64) + (shift * shift).astype(np.float64) / s2
        ll = -0.5 * q
        k_heard = np.maximum(heard.sum(axis=1), 1)[:, None]
        mean_e2 = q / k_heard
        # Censoring, per particle: the anchors nearest to each particle that stayed silent.
        near = self._near_anchors(px, py, pf)  # (D, P, M)
        rows = np.arange(px.shape[0])[:, None, None]
        cens = obs.silent[rows, near]
        if cens.any():
            cmu = self._mu_at(px, py, pf, near, po, obs.wall_db)
            z = (obs.sens[:, None, None] - cmu) / SHADOWING_DB
            live = cens & (z < CENSOR_NEGLIGIBLE_Z)  # far below sensitivity: silence costs nothing
            if live.any():
                # Silent: below sensitivity, or above it but every advert lost.
                q = np.broadcast_to(np.clip(obs.silent_q, 1e-12, 1.0 - 1e-12)[:, None, None], z.shape)[live]
                lc = np.logaddexp(log_ndtr(z[live]) + np.log1p(-q), np.log(q))
                add = np.zeros(z.shape)
                add[live] = lc
                ll += add.sum(axis=2)
        # The device's own offset estimate (learned from its track) weighs particles whose offset strays.
        ll -= 0.5 * (po - obs.offset[:, None]) ** 2 / np.maximum(obs.offset_var, 1e-6)[:, None]
        return ll, mean_e2, shift_sure.astype(np.float64), info_sure.astype(np.float64)

    def _heard_residuals(self, px: FloatArray, py: FloatArray, pf: IntArray, vx: FloatArray, vy: FloatArray,
                         hd: FloatArray, po: FloatArray, ai: IntArray, obs: Observation) -> npt.NDArray[np.float32]:
        """measured - expected RSSI of each heard anchor for each particle, float32, 0 for padding."""
        a = self.anchors
        f32 = np.float32
        heard = obs.anchor >= 0
        if obs.age is not None:
            # Where each particle was when the readings were taken (it has moved on since).
            back = np.maximum(obs.age, 0.0)[:, None]
            px, py = px - vx * back, py - vy * back
        # c = measured - (rssi_1m + offset), so e = c + 5 n log10(d^2) + slab losses.
        c = np.where(heard, obs.mean - a.rssi_1m[ai], 0.0).astype(f32)[:, None, :] - po.astype(f32)[:, :, None]
        n5 = np.where(heard, 5.0 * a.path_loss_n[ai], 0.0).astype(f32)[:, None, :]
        dx = px.astype(f32)[:, :, None] - a.x[ai].astype(f32)[:, None, :]
        d2 = dx * dx
        dy = py.astype(f32)[:, :, None] - a.y[ai].astype(f32)[:, None, :]
        d2 += dy * dy
        if len(self.site.floors) == 1:
            dz = (self.az_abs[ai] - (a.floor_elevation[0] + self.h)).astype(f32)[:, None, :]
            d2 += dz * dz
            levels = None
        else:
            dev_z = (a.floor_elevation[pf] + self.h).astype(f32)[:, :, None]
            dzf = self.az_abs[ai].astype(f32)[:, None, :] - dev_z
            d2 += dzf * dzf
            levels = np.abs(a.floor_level[a.floor[ai]].astype(f32)[:, None, :]
                            - a.floor_level[pf].astype(f32)[:, :, None])
        np.maximum(d2, f32(MIN_DISTANCE_M**2), out=d2)
        body: npt.NDArray[np.floating[Any]] | None = None
        if obs.body_db > 0:
            # The carrier's body: anchors behind the way a particle walks or faces lose up to body_db.
            body = body_share(np.cos(hd).astype(f32)[:, :, None], np.sin(hd).astype(f32)[:, :, None], 1.0,
                              dx, dy, np.sqrt(d2))
            body *= f32(obs.body_db) * (n5 > 0)
        np.log10(d2, out=d2)
        d2 *= n5
        d2 += c
        if body is not None:
            d2 += body
        if self.walls is not None and obs.wall_db > 0:
            cell = self.walls.cell(px, py, pf)
            walls = self.walls.gather(pf[:, :, None], ai[:, None, :], cell[:, :, None]).astype(f32)
            walls *= f32(obs.wall_db) * (n5 > 0)
            d2 += walls
        if levels is not None:
            levels *= f32(FLOOR_LOSS_DB)
            levels *= (n5 > 0)
            d2 += levels
        return d2

    def _near_anchors(self, px: FloatArray, py: FloatArray, pf: IntArray) -> IntArray:
        out = np.zeros((*px.shape, self.near_table[0].shape[2]), dtype=np.int64)
        for f, table in enumerate(self.near_table):
            m = pf == f
            if not m.any():
                continue
            x0, y0 = self.near_origin[f]
            ny, nx = table.shape[:2]
            i = np.clip(((py[m] - y0) / NEAR_CELL_M).astype(np.int64), 0, ny - 1)
            j = np.clip(((px[m] - x0) / NEAR_CELL_M).astype(np.int64), 0, nx - 1)
            out[m] = table[i, j]
        return out

    def _mu_at(self, px: FloatArray, py: FloatArray, pf: IntArray, ai: IntArray, offset: FloatArray,
               wall_db: float = 0.0) -> FloatArray:
        """Expected RSSI of anchors ``ai`` (D, P, M), one set per particle."""
        a = self.anchors
        dz = self.az_abs[ai] - (a.floor_elevation[pf] + self.h)[:, :, None]
        d2 = (px[:, :, None] - a.x[ai]) ** 2 + (py[:, :, None] - a.y[ai]) ** 2 + dz * dz
        d2 = np.maximum(d2, MIN_DISTANCE_M**2)
        mu = a.rssi_1m[ai] + offset[:, :, None] - 5.0 * a.path_loss_n[ai] * np.log10(d2)
        levels = np.abs(a.floor_level[a.floor[ai]] - a.floor_level[pf][:, :, None])
        mu = mu - FLOOR_LOSS_DB * levels
        if self.walls is not None and wall_db > 0:
            cell = self.walls.cell(px, py, pf)
            mu = mu - wall_db * self.walls.gather(pf[:, :, None], ai, cell[:, :, None])
        return np.asarray(mu, dtype=np.float64)

    def _choose_floor(self, s: IntArray, pf: IntArray, w: FloatArray) -> IntArray:
        n_floors = len(self.site.floors)
        if n_floors == 1:
            return np.zeros(s.shape[0], dtype=np.int64)
        share = np.stack([(w * (pf == f)).sum(axis=1) for f in range(n_floors)], axis=1)
        best = np.argmax(share, axis=1)
        prev = self.est_floor[s]
        keep = share[np.arange(s.shape[0]), prev] >= 1.0 - FLOOR_SWITCH_SHARE
        return np.where(keep & (share[np.arange(s.shape[0]), best] < FLOOR_SWITCH_SHARE), prev, best)
