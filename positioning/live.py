"""The live locator: the one code path from readings to fixes and zone events.

The engine service feeds it each window of MQTT readings; ``instore locate`` feeds it a file one
second at a time. Both call ``push`` with columns and ``advance(now)``; ``advance`` processes every
buffered reading with ``t <= now`` and returns one fix per device heard since the last call (its
``t`` is the time of the device's latest reading) and the zone events the fixes caused.

Per step: readings are filtered per (device, anchor) (trimmed mean and variance), every device is
multilaterated in one batch solve (its fix seeds and rescues the track), the particle tracker moves
and weighs each device's cloud (walls, floors, speed limits, censoring), the device's RSSI offset is
refined, and zone hysteresis turns positions into stable zones and events.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
import numpy.typing as npt

from positioning.const import (
    ACCURACY_MAX_M,
    ACCURACY_MIN_M,
    BODY_LOSS_MAX_DB,
    BODY_LOSS_PRIOR_DB,
    DEVICE_HEIGHT_M,
    DEVICE_OFFSET_MAX_DB,
    DEVICE_OFFSET_PRIOR_DB,
    LOSS_MIN_MARGIN_DB,
    MIN_ANCHORS_FOR_OFFSET,
    P0_LEARN_MAX_DB,
    P0_MEMORY,
    P0_MIN_LINKS,
    P0_PRIOR_WEIGHT,
    PATH_LOSS_N_BOUNDS,
    REFERENCE_TX_DBM,
    RSSI_1M_BOUNDS,
    RSSI_MAX_DBM,
    RSSI_MIN_DBM,
    SENSITIVITY_DBM,
    SHADOWING_DB,
    TX_POWER_PRIOR_DB,
    WALL_LOSS_MAX_DB,
    WALL_LOSS_PRIOR_DB,
    WINDOW_CORRELATED_DB,
)
from positioning.exponent import ExponentChoice, profile_costs
from positioning.filtering import Aggregates, aggregate, plausible_rssi
from positioning.fingerprint import held_back_sd_m, knn_locate, knn_sd
from positioning.maps import NO_ZONE, SiteMap, anchor_spacing, open_site_map, site_map_from_venue
from positioning.multilateration import FixProblem, posterior_mean, solve_warm
from positioning.problems import build_problem, smallest_per_group, uncertainty_bound
from positioning.radio import AnchorTable, anchor_table_from_venue, body_share, distance, expected_rssi
from positioning.tracking import OTHER_FLOOR_M, PARTICLES, Observation, ParticleTracker, TrackEstimate
from positioning.venue import Venue
from positioning.zones import VISIT_GAP_S, ZoneHysteresis

if TYPE_CHECKING:
    from positioning.static import Fingerprints

EventType = Literal["zone_enter", "zone_exit", "dwell", "visit_end", "floor_change"]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

TX_IGNORE: Final = 0  # the anchor's rssi_1m is authoritative
TX_IS_P0: Final = 1  # the advertised measured power is this anchor's 1 m power (a beacon without rssi_1m)
TX_IS_DEVICE: Final = 2  # the device advertises it: an offset prior relative to REFERENCE_TX_DBM

ALIVE_S: Final = 60.0  # an anchor that heard nothing this long is not used as censoring evidence
SENSITIVITY_QUANTILE: Final = 0.01  # the weakest 1% of readings mark a receiver's sensitivity
SENSITIVITY_MIN_READINGS: Final = 500  # below this many readings keep the default sensitivity
PACKET_LOSS: Final = 0.3  # chance a receiver in range misses one advert; silence after k adverts: 0.3**k
OFFSET_PROCESS_DB2_PER_S: Final = 0.02  # a device's offset drifts slowly (phone moved to a pocket)
OFFSET_MIN_MARGIN_DB: Final = 12.0  # only anchors expected this far above sensitivity (2 sigma) inform the offset
LINK_MAX_M: Final = 30.0  # longer anchor-to-anchor links are censored too often to fit unbiased
LINK_MIN_READINGS: Final = 30  # a receiver's parameters move only after this many link readings
LINK_NOISE_DB: Final = 6.0  # spread of one link reading
LINK_PRIOR_P0_DB: Final = 6.0  # how far a receiver's 1 m power may drift from its nominal value
LINK_PRIOR_N: Final = 0.5  # and its exponent
P0_EVERY: Final = 5  # steps between updates of the anchor table with the learned 1 m powers (const.P0_*)
# The particle cloud's spread assumes windows err independently; shadowing repeats from second to second
# (a standing phone keeps its bias), so a share of the window's own uncertainty (its fix, fused with
# the fingerprint's when there is one) is added: all of it for a standing device, whose track settles on
# its spot's bias, and 1.2x since a fix's claim holds too few of its errors (static scans: ~60 %, not
# the 63 % of a 2-D Gaussian's RMS radius, less on some layouts); less for a walker, whose windows'
# shadowing changes every few metres. The window's uncertainty is bounded by problems.uncertainty_bound
# (its strongest anchor's reach and cell). Errors within accuracy_m: hall channel 19-24 % with the cloud
# alone, 55 % now, the simulated mall 69 % (the two want different shares); error/accuracy correlation
# on the hall 0.12 with a flat 0.8 share and no bounds, 0.23 now.
TRACK_BIAS_SHARE_STILL: Final = 1.2
TRACK_BIAS_SHARE_WALKING: Final = 0.95
FINGERPRINT_MIN_SD_M: Final = 1.0  # a kNN position is never trusted more than this, even from a tight survey
FINGERPRINT_SPREAD_MIN_SAMPLES: Final = 200  # windows compared before the learned spread replaces the survey's
FINGERPRINT_SPREAD_ALPHA: Final = 0.02  # weight of each step's median in the running one, once warm
WARM_START_S: Final = 5.0  # a track seen this recently seeds its device's next fix
TRACK_ANCHORS: Final = 24  # heard anchors the tracker weighs per device (nearest its track, else strongest)
TRACK_CORRELATED_MIN_DB: Final = 2.0  # the tracker never assumes windows cleaner than this
TRACK_CORRELATED_MAX_DB: Final = 8.0  # nor noisier
TRACK_VAR_MEMORY: Final = 20_000.0  # readings the learned window shadowing averages over
LOSS_PRIOR_WEIGHT: Final = 2_000.0  # links' worth of confidence in the body and wall loss priors
LOSS_MEMORY: Final = 50_000.0  # links the learned body and wall losses average over
LOSS_MIN_SPREAD: Final = 1.0  # sum of squared spread of the geometric factor a step needs to update a loss
BODY_LEARN_WALKING: Final = 0.8  # only devices this surely walking tell the body loss (their heading is known)
TRACK_VAR_MIN_READINGS: Final = 4  # a step with fewer usable residuals does not update it
CHI2_1_MEDIAN: Final = 0.4549364231195724  # median of a squared standard normal
TRACK_CORRELATED_DB: Final = 6.0  # shadowing per window the tracker assumes: windows seconds apart are near independent
OFFSET_WINDOW_FLOOR_DB: Final = 6.0  # least noise of one window's offset estimate
OFFSET_MIN_SD_DB: Final = 3.0  # a device's offset is never known better than this
FIX_OFFSET_MIN_SD_DB: Final = 4.0  # the per-window fix keeps freedom in the offset so it can rescue a track
EXPONENT_EVERY: Final = 3  # steps between samples of windows for the exponent (positioning.exponent)
EXPONENT_SAMPLE: Final = 64  # windows per sample


@dataclass(frozen=True, slots=True)
class Readings:
    """A columnar batch of readings: equal-length arrays. ``tx_power`` is NaN where not sent."""

    t: npt.NDArray[np.float64]
    device: npt.NDArray[np.object_]
    anchor: npt.NDArray[np.object_]
    rssi: npt.NDArray[np.float64]
    tx_power: npt.NDArray[np.float64]

    @staticmethod
    def from_columns(t: npt.ArrayLike, device: npt.ArrayLike, anchor: npt.ArrayLike, rssi: npt.ArrayLike,
                     tx_power: npt.ArrayLike | None = None) -> Readings:
        t_arr = np.asarray(t, dtype=np.float64)
        n = t_arr.shape[0]
        if tx_power is None:
            tx = np.full(n, np.nan)
        else:
            raw = np.asarray(tx_power)
            tx = (raw.astype(np.float64) if raw.dtype.kind in "fiu"
                  else np.array([np.nan if v is None else v for v in raw.tolist()], dtype=np.float64))
        return Readings(t_arr, np.asarray(device, dtype=object), np.asarray(anchor, dtype=object),
                        np.asarray(rssi, dtype=np.float64), tx)

    def __len__(self) -> int:
        return int(self.t.shape[0])


@dataclass(frozen=True, slots=True)
class Fix:
    device: str
    t: float
    x: float
    y: float
    floor: str | None
    accuracy_m: float
    zone: str | None  # innermost zone after hysteresis


@dataclass(frozen=True, slots=True)
class ZoneEvent:
    type: EventType
    device: str
    t: float
    zone: str | None
    floor: str | None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StepResult:
    fixes: tuple[Fix, ...]
    events: tuple[ZoneEvent, ...]
    dropped: Mapping[str, int]  # reason -> count


@dataclass(frozen=True, slots=True)
class AnchorInfo:
    id: str
    x: float
    y: float
    z: float
    floor: str | None
    rssi_1m: float
    path_loss_n: float


def anchors_from_venue(venue: Venue) -> tuple[AnchorInfo, ...]:
    """Anchors and beacons of a venue as plain records (kept for callers of the first interface)."""
    out = [AnchorInfo(a.id, a.x, a.y, a.z, a.floor, a.rssi_1m, a.path_loss_n) for a in venue.anchors]
    out += [AnchorInfo(b.id, b.x, b.y, b.z, b.floor, b.rssi_1m, b.path_loss_n) for b in venue.beacons]
    return tuple(out)


@dataclass(frozen=True, slots=True)
class LocatorConfig:
    device_height: float = DEVICE_HEIGHT_M
    seed: int = 0
    particles: int = PARTICLES
    zone_delay_s: float | None = None  # None: positioning.zones.ZONE_SWITCH_DELAY_S
    # Learn the venue's path-loss exponent from the devices' own windows (for anchors whose exponent
    # nobody gave: indoors it is anywhere from ~1.6 to ~3.5, and a wrong one bends every range).
    learn_exponent: bool = False
    # Learn each anchor's 1 m power from the devices' residuals (when no survey or anchor links fit it).
    learn_p0: bool = True


@dataclass(slots=True)
class _Device:
    offset: float = 0.0
    offset_var: float = DEVICE_OFFSET_PRIOR_DB**2
    offset_t: float = -np.inf
    prior_set: bool = False
    floor: int = -1
    last_t: float = -np.inf
    x: float = 0.0
    y: float = 0.0
    heading_x: float = 0.0  # the track's heading vector (its length says how sure)
    heading_y: float = 0.0
    zones: ZoneHysteresis = field(default_factory=ZoneHysteresis)


class LiveLocator:
    """Causal, incremental positioning of many devices. Not thread-safe: one owner calls it."""

    def __init__(self, anchors: AnchorTable | Sequence[AnchorInfo], venue: Venue | None = None,
                 config: LocatorConfig | None = None, site: SiteMap | None = None,
                 tx_use: IntArray | None = None, fingerprints: Fingerprints | None = None) -> None:
        self.cfg = config or LocatorConfig()
        self.fingerprints = fingerprints
        self.fp_spread = _FingerprintSpread()
        if isinstance(anchors, AnchorTable):
            table = anchors
        elif venue is not None:
            table = anchor_table_from_venue(venue)
        else:
            from positioning.radio import anchor_table as make_table

            table = make_table([a.id for a in anchors], [a.x for a in anchors], [a.y for a in anchors],
                               [a.z for a in anchors], [a.floor or "" for a in anchors],
                               [a.rssi_1m for a in anchors], [a.path_loss_n for a in anchors])
        self.anchors = table
        self.venue = venue
        self.site = site or (site_map_from_venue(venue, table) if venue is not None else open_site_map(table))
        self._spacing = anchor_spacing(table)
        self.index = dict(table.index)
        n_a = len(table)
        if tx_use is None:
            kinds = {a.id: TX_IS_DEVICE for a in venue.anchors} if venue is not None else {}
            tx_use = np.array([kinds.get(a, TX_IGNORE) for a in table.ids], dtype=np.int64)
        self.tx_use = tx_use
        self.tracker = ParticleTracker(table, self.site, self.cfg.device_height, self.cfg.particles, self.cfg.seed)
        self.devices: dict[str, _Device] = {}
        self.anchor_last = np.full(n_a, -np.inf)
        self.rssi_hist = np.zeros(int(RSSI_MAX_DBM - RSSI_MIN_DBM) + 1, dtype=np.int64)
        # Shadowing per window as the residuals at the tracked positions show it (venue-wide, learned).
        self.track_var = TRACK_CORRELATED_DB**2
        self.track_var_n = 0.0
        # Loss of an anchor squarely behind a walking carrier, learned from residuals along the heading,
        # and loss per obstacle on the line of sight, learned from residuals against obstacle counts.
        self.body = LearnedLoss(BODY_LOSS_PRIOR_DB, LOSS_PRIOR_WEIGHT, BODY_LOSS_MAX_DB)
        self.wall = LearnedLoss(WALL_LOSS_PRIOR_DB, LOSS_PRIOR_WEIGHT, WALL_LOSS_MAX_DB)
        self._buf: list[Readings] = []
        self._chain = {zid: self.site.zone_chain(k) for k, zid in enumerate(self.site.zone_ids)}
        self._bounds = np.array([r.bounds for r in self.site.floors], dtype=np.float64)
        self._links = np.zeros((n_a, 5))  # per receiver: count, sum x, sum y, sum x^2, sum x*y of link readings
        self._prior_p0 = table.rssi_1m.copy()
        self._prior_n = table.path_loss_n.copy()
        self._p0_sum = np.zeros(n_a)  # per anchor: sum and count of its links' deviations from the nominal power
        self._p0_n = np.zeros(n_a)
        self._tx_adopted = np.zeros(n_a, dtype=bool)  # phone-mode beacons whose advertised power is their nominal one
        self._exponent = ExponentChoice()
        self._n_done = not self.cfg.learn_exponent  # off, settled, or anchors hear each other (links fit it)
        self._steps = 0

    @classmethod
    def from_venue(cls, venue: Venue, config: LocatorConfig | None = None) -> LiveLocator:
        return cls(anchor_table_from_venue(venue), venue, config)

    # ------------------------------------------------------------------ input
    def push(self, readings: Readings) -> Mapping[str, int]:
        """Buffer readings (any order). Returns drops by reason (unknown anchor, implausible RSSI)."""
        idx = np.fromiter((self.index.get(a, -1) for a in readings.anchor), dtype=np.int64, count=len(readings))
        known = idx >= 0
        plausible = plausible_rssi(readings.rssi) & np.isfinite(readings.t)
        keep = known & plausible
        if keep.any():
            self._buf.append(Readings(readings.t[keep], readings.device[keep], idx[keep].astype(object),
                                      readings.rssi[keep], readings.tx_power[keep]))
        drops = {}
        if (~known).any():
            drops["unknown_anchor"] = int((~known).sum())
        if (known & ~plausible).any():
            drops["implausible_rssi"] = int((known & ~plausible).sum())
        return drops

    # ------------------------------------------------------------------ one step
    def advance(self, now: float) -> StepResult:
        if not self._buf:
            return StepResult((), tuple(self._expire(now)), {})
        allr = _concat(self._buf)
        due = allr.t <= now
        if not due.any():
            return StepResult((), tuple(self._expire(now)), {})
        later = ~due
        self._buf = [_take(allr, later)] if later.any() else []
        r = _take(allr, due)
        anchor = r.anchor.astype(np.int64)
        self._observe_anchors(anchor, r.t, r.rssi)
        self._adopt_advertised_p0(anchor, r.tx_power)
        # Anchors heard by other anchors (a gateway's own beacon, a fixed venue beacon) are links of
        # known length: they refine the receivers' radio parameters instead of being positioned.
        tx_anchor = np.fromiter((self.index.get(str(d), -1) for d in r.device), dtype=np.int64, count=len(r))
        link = (tx_anchor >= 0) & (tx_anchor != anchor)
        if link.any():
            self._learn_links(anchor[link], tx_anchor[link], r.rssi[link], r.tx_power[link])
            self._n_done = True  # links of known length fit each receiver's exponent instead
            keep = ~link
            r, anchor = _take(r, keep), anchor[keep]
            if len(r) == 0:
                return StepResult((), tuple(self._expire(now)), {})
        dev_ids, dev_code = np.unique(r.device.astype(str), return_inverse=True)
        dev_code = dev_code.astype(np.int64)
        devices = [str(d) for d in dev_ids]
        t_fix = np.full(len(devices), -np.inf)
        np.maximum.at(t_fix, dev_code, r.t)
        # The window's readings describe where the device was on average over the window, not at its end.
        n_dev = len(devices)
        age = t_fix - np.bincount(dev_code, weights=r.t, minlength=n_dev) / np.bincount(dev_code, minlength=n_dev)
        for k, d in enumerate(devices):
            st = self.devices.get(d)
            if st is None:
                st = self.devices[d] = _Device()
            if not st.prior_set:
                self._set_offset_prior(st, r, dev_code == k, anchor)

        agg = aggregate(dev_code, anchor, r.rssi, self.reading_p0(anchor, r.tx_power))
        p0_group = self._known_losses(agg, devices, t_fix)

        sens = self._sensitivity()
        offsets = np.array([self.devices[d].offset for d in devices])
        off_sd = np.array([np.sqrt(self.devices[d].offset_var) for d in devices])
        alive = now - self.anchor_last <= ALIVE_S
        prob, heard_idx, heard_mean, heard_var, max_count, heard_any = build_problem(
            self.anchors, self.site, agg.group, agg.anchor, agg.mean, agg.var, agg.count, p0_group, len(devices),
            offsets, np.maximum(off_sd, FIX_OFFSET_MIN_SD_DB), sens, self.cfg.device_height, alive)
        floor_guess = self.anchors.floor[heard_idx[:, 0]]
        # Devices with a live track start from their last estimate; new ones search from scratch.
        warm = np.array([np.isfinite(self.devices[d].last_t) and t_fix[k] - self.devices[d].last_t < WARM_START_S
                         and self.devices[d].floor == floor_guess[k] for k, d in enumerate(devices)], dtype=bool)
        theta0 = np.array([[self.devices[d].x, self.devices[d].y, self.devices[d].offset] for d in devices])
        theta0 = theta0.reshape(len(devices), 3)
        sol = posterior_mean(prob, solve_warm(prob, theta0, warm))
        self._steps += 1
        if not self._n_done and self._steps % EXPONENT_EVERY == 0:
            self._learn_exponent(prob)
        fix_ok = (heard_idx >= 0).sum(axis=1) >= 3
        fx = np.where(fix_ok, sol.x, np.nan)
        fy = np.where(fix_ok, sol.y, np.nan)
        # Fall back to the strongest anchors when fewer than three heard.
        sx, sy, sacc = self._fallback(heard_idx, heard_mean, offsets)
        init_x = np.where(fix_ok, sol.x, sx)
        init_y = np.where(fix_ok, sol.y, sy)
        init_acc = np.where(fix_ok, sol.accuracy_m, sacc)

        # The tracker sees consecutive windows; only part of a window's shadowing repeats in the next.
        t_idx, t_mean, t_var = self._track_anchors(agg, len(devices), warm, theta0, floor_guess)
        pf_var = np.maximum(t_var - WINDOW_CORRELATED_DB**2 + self.track_var, 1.0)
        obs = Observation(t_idx, t_mean, pf_var, alive[None, :] & ~heard_any, offsets,
                          off_sd**2,
                          np.full(len(devices), sens),
                          PACKET_LOSS ** max_count.astype(np.float64), body_db=self.body.value,
                          wall_db=self.wall.value,
                          age=age)
        if self.fingerprints is not None and self.fingerprints.weight > 0:
            obs = self._with_fingerprints(obs, agg.group, agg.anchor, agg.mean, len(devices), floor_guess, fx, fy)
        est = self.tracker.step(devices, t_fix, obs, np.where(fix_ok, fx, init_x), np.where(fix_ok, fy, init_y),
                                floor_guess, init_acc)
        self._update_offsets(devices, t_fix, est, heard_idx, heard_mean, heard_var, offsets, sens)
        window_acc = np.minimum(init_acc, uncertainty_bound(prob, offsets, self._spacing, est.x, est.y))
        est = replace(est, accuracy_m=_track_accuracy(est.accuracy_m, window_acc, obs.pseudo_sd, est.walking))
        fixes, events = self._zones_and_fixes(devices, t_fix, est)
        events.extend(self._expire(now))
        return StepResult(tuple(fixes), tuple(events), {})

    # ------------------------------------------------------------------ pieces
    def _known_losses(self, agg: Aggregates, devices: list[str], t_fix: FloatArray) -> FloatArray:
        """Each (device, anchor) row's 1 m power less the obstacle and body losses the device's recent track
        implies (the window's fix cannot see walls or a heading; the track can). New devices: none."""
        p0 = agg.aux
        sts = [self.devices[d] for d in devices]
        recent = np.array([np.isfinite(st.last_t) and t_fix[k] - st.last_t < WARM_START_S and st.floor >= 0
                           for k, st in enumerate(sts)], dtype=bool)
        rows = recent[agg.group]
        if not rows.any() or (self.wall.value <= 0 and self.body.value <= 0):
            return p0
        g = agg.group[rows]
        walls, share, _ = self._link_geometry(
            agg.anchor[rows], np.array([st.x for st in sts])[g], np.array([st.y for st in sts])[g],
            np.array([st.floor for st in sts], dtype=np.int64)[g], np.array([st.heading_x for st in sts])[g],
            np.array([st.heading_y for st in sts])[g])
        out = p0.copy()
        out[rows] -= self.wall.value * walls + self.body.value * share
        return out

    def _link_geometry(self, anchor: IntArray, x: FloatArray, y: FloatArray, floor: IntArray, heading_x: FloatArray,
                       heading_y: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Obstacles on the line of sight, body share and 3-D distance of links from ``anchor`` to devices
        at (x, y) on ``floor`` whose track heads (heading_x, heading_y) (its length: how sure; broadcasting)."""
        a = self.anchors
        dist = distance(a, anchor, x, y, floor, self.cfg.device_height)
        sure = np.hypot(heading_x, heading_y)
        ux, uy = heading_x / np.maximum(sure, 1e-12), heading_y / np.maximum(sure, 1e-12)
        share = np.asarray(body_share(ux, uy, sure, x - a.x[anchor], y - a.y[anchor], dist), dtype=np.float64)
        walls = (self.tracker.walls.at(anchor, x, y, floor) if self.tracker.walls is not None
                 else np.zeros(np.broadcast_shapes(anchor.shape, x.shape)))
        return walls, share, dist

    def _track_anchors(self, agg: Aggregates, n_dev: int, warm: npt.NDArray[np.bool_], theta0: FloatArray,
                       floor: IntArray) -> tuple[IntArray, FloatArray, FloatArray]:
        """The heard anchors the tracker weighs, TRACK_ANCHORS per device. A device with a track takes
        the heard anchors nearest its last estimate: chosen by geometry, not by their readings, so a far
        anchor heard only thanks to lucky shadowing is not kept for being strong (the strongest-K choice
        is biased towards such anchors; silence of the near ones is weighed as censoring). New devices
        take the strongest."""
        a, g, an = self.anchors, agg.group, agg.anchor
        key = -agg.mean
        tracked = warm[g]
        if tracked.any():
            dist = (np.hypot(a.x[an] - theta0[g, 0], a.y[an] - theta0[g, 1])
                    + OTHER_FLOOR_M * np.abs(a.floor_level[a.floor[an]] - a.floor_level[floor[g]]))
            key = np.where(tracked, dist, key)
        src, rank = smallest_per_group(g, key, TRACK_ANCHORS)
        t_idx = np.full((n_dev, TRACK_ANCHORS), -1, dtype=np.int64)
        t_mean = np.zeros((n_dev, TRACK_ANCHORS))
        t_var = np.ones((n_dev, TRACK_ANCHORS))
        t_idx[g[src], rank], t_mean[g[src], rank], t_var[g[src], rank] = an[src], agg.mean[src], agg.var[src]
        return t_idx, t_mean, t_var

    def _observe_anchors(self, anchor: IntArray, t: FloatArray, rssi: FloatArray) -> None:
        np.maximum.at(self.anchor_last, anchor, t)
        bins = np.clip(np.round(rssi - RSSI_MIN_DBM).astype(np.int64), 0, self.rssi_hist.shape[0] - 1)
        self.rssi_hist += np.bincount(bins, minlength=self.rssi_hist.shape[0])

    def _with_fingerprints(self, obs: Observation, group: IntArray, anchor: IntArray, mean: FloatArray,
                           n_dev: int, floor: IntArray, fix_x: FloatArray, fix_y: FloatArray) -> Observation:
        """Add the survey fingerprint's kNN position as a pseudo-measurement (used when the survey showed
        the kNN adds anything), as firm as its disagreement with the windows' own fixes says it is."""
        fp = self.fingerprints
        assert fp is not None
        query = np.full((n_dev, len(self.anchors)), np.nan)
        query[group, anchor] = mean
        knn = knn_locate(fp.radio_map, query, floor_hint=floor, anchor_xy=(self.anchors.x, self.anchors.y),
                         offset=obs.offset, offset_sd=np.sqrt(obs.offset_var))
        ok = knn.ok & (knn.floor == floor)
        both = ok & np.isfinite(fix_x)
        self.fp_spread.add((knn.x[both] - fix_x[both]) ** 2 + (knn.y[both] - fix_y[both]) ** 2)
        learned = self.fp_spread.sd_m()
        least = held_back_sd_m(fp.loo_knn_median_m) if learned is None else learned
        sd = knn_sd(knn.spread_m, max(least, FINGERPRINT_MIN_SD_M))
        return replace(obs, pseudo_x=np.where(ok, knn.x, np.nan), pseudo_y=np.where(ok, knn.y, np.nan),
                       pseudo_sd=np.where(ok, sd, np.nan))

    def replay(self, readings: Readings) -> Iterator[StepResult]:
        """Feed a recording second by second (by ``t``, any input order), as the live engine would see
        it: each step holds the readings of one second and ends just before the next, so every fix
        uses readings up to its own time only."""
        order = np.argsort(readings.t, kind="stable")
        sec = np.floor(readings.t[order])
        starts = np.flatnonzero(np.r_[True, sec[1:] != sec[:-1]]) if order.shape[0] else order
        for a, b in zip(starts, np.r_[starts[1:], order.shape[0]], strict=True):
            self.push(_take_idx(readings, order[a:b]))
            yield self.advance(math.nextafter(float(sec[a]) + 1.0, -math.inf))

    def reading_p0(self, anchor: IntArray, tx_power: FloatArray) -> FloatArray:
        """Each reading's 1 m power: its anchor's, or for phone-mode beacons configured without one,
        the measured power they advertise (with the deviation learned for that beacon)."""
        p0 = self.anchors.rssi_1m[anchor].copy()
        use_tx = (self.tx_use[anchor] == TX_IS_P0) & _plausible_1m_power(tx_power)
        p0[use_tx] = tx_power[use_tx] + self._p0_learned[anchor[use_tx]]
        return p0

    def _adopt_advertised_p0(self, anchor: IntArray, tx_power: FloatArray) -> None:
        """A phone-mode beacon configured without a 1 m power takes the measured power it first advertises
        as its nominal one, so the tracker, the offset and power learners and the window's fix (which takes
        each reading's advertised power) expect the same level."""
        pending = (self.tx_use == TX_IS_P0) & ~self._tx_adopted
        if not pending.any():  # gateway mode, or every beacon adopted: nothing to look at in this step
            return
        new = pending[anchor] & _plausible_1m_power(tx_power)
        if not new.any():
            return
        idx, first = np.unique(anchor[new], return_index=True)
        learned = self._p0_learned
        self._prior_p0[idx] = tx_power[new][first]
        self._tx_adopted[idx] = True
        self._set_anchors(self.anchors.with_params(self._prior_p0 + learned, self.anchors.path_loss_n))

    def _learn_links(self, rx: IntArray, tx: IntArray, rssi: FloatArray, tx_power: FloatArray) -> None:
        """Online ridge fit of each receiver's 1 m power and exponent from anchor-to-anchor readings."""
        a = self.anchors
        same = a.floor[rx] == a.floor[tx]
        dz = a.abs_z(self.cfg.device_height)[rx] - a.abs_z(self.cfg.device_height)[tx]
        d = np.maximum(np.sqrt((a.x[rx] - a.x[tx]) ** 2 + (a.y[rx] - a.y[tx]) ** 2 + dz * dz), 1.0)
        use = same & (d <= LINK_MAX_M)
        if not use.any():
            return
        rx, d = rx[use], d[use]
        # The transmitter's advertised power, relative to the reference the receivers' rssi_1m assume.
        y = rssi[use] - np.where(np.isfinite(tx_power[use]), tx_power[use] - REFERENCE_TX_DBM, 0.0)
        x = -10.0 * np.log10(d)
        for col, val in enumerate((np.ones_like(x), x, y, x * x, x * y)):
            np.add.at(self._links[:, col], rx, val)
        ready = np.flatnonzero(self._links[:, 0] >= LINK_MIN_READINGS)
        if ready.shape[0] == 0:
            return
        n0, sx, sy, sxx, sxy = (self._links[ready, c] for c in range(5))
        p0_prior, n_prior = self._prior_p0[ready], self._prior_n[ready]
        lp, ln = 1.0 / LINK_PRIOR_P0_DB**2 * LINK_NOISE_DB**2, 1.0 / LINK_PRIOR_N**2 * LINK_NOISE_DB**2
        # Normal equations of sum (y - p0 - n x)^2 + lp (p0 - p0_prior)^2 + ln (n - n_prior)^2.
        a11, a12, a22 = n0 + lp, sx, sxx + ln
        b1, b2 = sy + lp * p0_prior, sxy + ln * n_prior
        det = a11 * a22 - a12 * a12
        p0 = (a22 * b1 - a12 * b2) / det
        n = (a11 * b2 - a12 * b1) / det
        rssi_1m, path_n = a.rssi_1m.copy(), a.path_loss_n.copy()
        rssi_1m[ready] = np.clip(p0, *RSSI_1M_BOUNDS)
        path_n[ready] = np.clip(n, *PATH_LOSS_N_BOUNDS)
        self._set_anchors(a.with_params(rssi_1m, path_n))

    def _set_anchors(self, table: AnchorTable) -> None:
        """Refined radio parameters: the locator and its tracker use the same table."""
        self.anchors = table
        self.tracker.anchors = table

    @property
    def exponent_note(self) -> str | None:
        """What the exponent learning concluded (None when it was off)."""
        if not self.cfg.learn_exponent:
            return None
        if self._links[:, 0].any():
            return "path-loss exponents fitted from anchors hearing each other"
        n = float(np.median(self.anchors.path_loss_n))
        return (f"path-loss exponent learned from {self._exponent.windows} windows: n = {n:.2f}"
                f"{'' if self._exponent.scale != 1.0 else ' (the nominal value fits best)'}")

    @property
    def _p0_learned(self) -> FloatArray:
        """Each anchor's 1 m power less its nominal one: what the links or the power learning set."""
        return np.asarray(self.anchors.rssi_1m - self._prior_p0, dtype=np.float64)

    @property
    def p0_note(self) -> str | None:
        """What the anchors' 1 m power learning concluded (None when it was off or learned nothing)."""
        if not self.cfg.learn_p0 or self._links[:, 0].any() or not self._p0_n.any():
            return None
        dev = self._p0_learned
        k = int(np.argmax(np.abs(dev)))
        return (f"anchors' 1 m power learned from {int(self._p0_n.sum())} links: spread {float(np.std(dev)):.1f} dB, "
                f"largest {dev[k]:+.1f} dB ({self.anchors.ids[k]})")

    def _learn_exponent(self, prob: FixProblem) -> None:
        """Add a sample of this step's windows to the exponent choice; when it switches, device offsets and
        tracks restart (both were learned under the old exponent)."""
        ex = self._exponent
        switched = ex.add(profile_costs(prob, ex.scale, EXPONENT_SAMPLE))
        self._n_done = ex.settled
        if not switched:
            return
        self._set_anchors(self.anchors.with_params(self.anchors.rssi_1m,
                                                   np.clip(self._prior_n * ex.scale, *PATH_LOSS_N_BOUNDS)))
        for d, st in self.devices.items():
            st.offset_var = max(st.offset_var, DEVICE_OFFSET_PRIOR_DB**2)
            self.tracker.forget(d)

    def _sensitivity(self) -> float:
        total = int(self.rssi_hist.sum())
        if total < SENSITIVITY_MIN_READINGS:
            return SENSITIVITY_DBM
        k = int(np.searchsorted(np.cumsum(self.rssi_hist), SENSITIVITY_QUANTILE * total))
        return float(RSSI_MIN_DBM + k - 1.0)

    def _set_offset_prior(self, st: _Device, r: Readings, mine: npt.NDArray[np.bool_], anchor: IntArray) -> None:
        dev_tx = mine & (self.tx_use[anchor] == TX_IS_DEVICE) & np.isfinite(r.tx_power)
        if dev_tx.any():
            st.offset = float(np.median(r.tx_power[dev_tx]) - REFERENCE_TX_DBM)
            st.offset_var = TX_POWER_PRIOR_DB**2
        st.prior_set = True

    def _fallback(self, heard_idx: IntArray, heard_mean: FloatArray,
                  offsets: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """One or two anchors heard: near the strongest (between the two), with an honest spread."""
        a = self.anchors
        i0 = heard_idx[:, 0]
        i1 = np.where(heard_idx[:, 1] >= 0, heard_idx[:, 1], i0)
        d0 = _range(a.rssi_1m[i0] + offsets, a.path_loss_n[i0], heard_mean[:, 0])
        d1 = _range(a.rssi_1m[i1] + offsets, a.path_loss_n[i1], np.where(heard_idx[:, 1] >= 0, heard_mean[:, 1],
                                                                        heard_mean[:, 0]))
        f = np.where(i1 != i0, d0 / np.maximum(d0 + d1, 1e-9), 0.0)
        x = a.x[i0] + (a.x[i1] - a.x[i0]) * f
        y = a.y[i0] + (a.y[i1] - a.y[i0]) * f
        acc = np.maximum(np.maximum(d0, 3.0), np.hypot(a.x[i1] - a.x[i0], a.y[i1] - a.y[i0]) / 2)
        return x, y, acc

    def _update_offsets(self, devices: list[str], t: FloatArray, est: TrackEstimate, heard_idx: IntArray,
                        heard_mean: FloatArray, heard_var: FloatArray, offsets: FloatArray, sens: float) -> None:
        a = self.anchors
        heard = heard_idx >= 0
        hi = np.where(heard, heard_idx, 0)
        mu0 = expected_rssi(a, hi, est.x[:, None], est.y[:, None], est.floor[:, None], self.cfg.device_height)
        # Only readings from the estimated floor, and only while the strongest anchor agrees on the
        # floor: a wrong floor would read as an 18 dB offset and feed back into the track.
        same_floor = a.floor[hi] == est.floor[:, None]
        agrees = a.floor[heard_idx[:, 0]] == est.floor
        # Readings are chosen by their *expected* level, never by their measured one: a reading picked for
        # being strong (above sensitivity, or among the K strongest) carries its shadowing's luck and
        # would bias the offset upwards. Expected well above sensitivity and above the weakest kept
        # reading, an anchor is (almost) surely heard and kept, whatever its shadowing.
        full = heard.all(axis=1)
        cut = np.where(full, np.where(heard, heard_mean, np.inf).min(axis=1), -np.inf)
        floor_db = np.maximum(sens, cut)[:, None] + OFFSET_MIN_MARGIN_DB
        strong = heard & same_floor & agrees[:, None] & (mu0 + offsets[:, None] > floor_db)
        walls, share, dist = self._link_geometry(hi, est.x[:, None], est.y[:, None], est.floor[:, None],
                                                 est.heading_x[:, None], est.heading_y[:, None])
        # The losses are learned from links selected by their expected level alone (a link picked for
        # being heard carries its luck). Walls: only links that would be heard even at the highest wall
        # loss, so the links behind walls are not only the lucky ones; log-distance is regressed out with
        # the wall count (far links cross more walls). Body: walkers' links well above sensitivity.
        above = heard & same_floor & agrees[:, None] & (mu0 + offsets[:, None] > sens + LOSS_MIN_MARGIN_DB)
        worst = mu0 + offsets[:, None] - WALL_LOSS_MAX_DB * walls
        safe = above & (worst > np.maximum(sens, cut)[:, None] + LOSS_MIN_MARGIN_DB)
        raw = heard_mean - mu0
        self.body.update(raw + self.wall.value * walls, share, above & (est.walking >= BODY_LEARN_WALKING)[:, None])
        self.wall.update(raw + self.body.value * share, walls, safe, (np.log10(dist),))
        unexplained = raw + self.body.value * share + self.wall.value * walls
        resid = np.where(strong, unexplained, np.nan)
        n_strong = strong.sum(axis=1)
        if self.cfg.learn_p0 and not self._links[:, 0].any():
            self._learn_p0(hi, unexplained, above)
        self._learn_track_var(resid - offsets[:, None], heard_var, strong)
        for k, d in enumerate(devices):
            st = self.devices[d]
            if n_strong[k] < MIN_ANCHORS_FOR_OFFSET:
                continue
            z = float(np.nanmedian(resid[k]))
            # Position errors bias a window's offset estimate: a floor on its noise keeps the
            # offset from locking onto a wrong position (far away + strong vs near + weak).
            meas_var = SHADOWING_DB**2 / n_strong[k] + OFFSET_WINDOW_FLOOR_DB**2
            if np.isfinite(st.offset_t):
                st.offset_var += OFFSET_PROCESS_DB2_PER_S * max(0.0, float(t[k]) - st.offset_t)
            gain = st.offset_var / (st.offset_var + meas_var)
            st.offset = float(np.clip(st.offset + gain * (z - st.offset), -DEVICE_OFFSET_MAX_DB, DEVICE_OFFSET_MAX_DB))
            st.offset_var = max((1.0 - gain) * st.offset_var, OFFSET_MIN_SD_DB**2)
            st.offset_t = float(t[k])

    def _learn_p0(self, anchor: IntArray, e: FloatArray, used: npt.NDArray[np.bool_]) -> None:
        """Add each window's links' residuals ``e`` (measured less expected at the track; (devices, K), used
        where ``used``), less the window's mean, to their anchors' deviations from the nominal 1 m power;
        every P0_EVERY steps the anchor table takes the centred, shrunk deviations."""
        k = used.sum(axis=1)
        used = used & (k >= P0_MIN_LINKS)[:, None]
        e = e - (np.where(used, e, 0.0).sum(axis=1) / np.maximum(k, 1))[:, None]
        rows = anchor[used]
        np.add.at(self._p0_sum, rows, e[used] + self._p0_learned[rows])
        np.add.at(self._p0_n, rows, 1.0)
        full = self._p0_n > P0_MEMORY
        self._p0_sum[full] *= P0_MEMORY / self._p0_n[full]
        self._p0_n[full] = P0_MEMORY
        if self._steps % P0_EVERY == 0:
            self._apply_p0()

    def _apply_p0(self) -> None:
        """The anchor table takes the learned 1 m power deviations, centred and shrunk to the nominal value."""
        if not self._p0_n.any():
            return
        a = self.anchors
        sure = self._p0_n / (self._p0_n + P0_PRIOR_WEIGHT)
        dev = self._p0_sum / (self._p0_n + P0_PRIOR_WEIGHT)
        dev -= sure * float(np.sum(sure * dev) / np.sum(sure))
        p0 = self._prior_p0 + np.clip(dev, -P0_LEARN_MAX_DB, P0_LEARN_MAX_DB)
        self._set_anchors(a.with_params(np.clip(p0, *RSSI_1M_BOUNDS), a.path_loss_n))

    def _restore_p0(self, state: object) -> None:
        """The anchors' learned 1 m power deviations from a snapshot (unknown anchors and bad entries skipped)."""
        if not self.cfg.learn_p0 or not isinstance(state, Mapping):
            return
        for a, v in state.items():
            k = self.index.get(str(a))
            pair = _number_pair(v)
            if k is None or pair is None or pair[1] <= 0:
                continue
            n = min(pair[1], P0_MEMORY)
            self._p0_sum[k], self._p0_n[k] = pair[0] * n / pair[1], n
        self._apply_p0()

    def _learn_track_var(self, e: FloatArray, heard_var: FloatArray, used: npt.NDArray[np.bool_]) -> None:
        """Update the shadowing the tracker assumes from this step's residuals at the tracked positions:
        a robust variance (median of squares) minus the part that averages out within a window, as a
        running mean over TRACK_VAR_MEMORY readings, kept within physical limits. Clean data sharpens
        the tracker; heavy shadowing keeps it from chasing each window."""
        if used.sum() < TRACK_VAR_MIN_READINGS:
            return
        e2 = float(np.median(e[used] ** 2)) / CHI2_1_MEDIAN
        within = float(np.median(heard_var[used])) - WINDOW_CORRELATED_DB**2
        var = float(np.clip(e2 - within, TRACK_CORRELATED_MIN_DB**2, TRACK_CORRELATED_MAX_DB**2))
        n = float(used.sum())
        self.track_var_n = min(self.track_var_n + n, TRACK_VAR_MEMORY)
        self.track_var += (var - self.track_var) * n / self.track_var_n

    def _zones_and_fixes(self, devices: list[str], t: FloatArray,
                         est: TrackEstimate) -> tuple[list[Fix], list[ZoneEvent]]:
        fixes: list[Fix] = []
        events: list[ZoneEvent] = []
        raw = np.full(len(devices), NO_ZONE, dtype=np.int64)
        for f, raster in enumerate(self.site.floors):
            m = est.floor == f
            if m.any():
                raw[m] = raster.zone_at(est.x[m], est.y[m])
        delay = self.cfg.zone_delay_s
        for k, d in enumerate(devices):
            st = self.devices[d]
            fl = int(est.floor[k])
            floor_id = self.anchors.floor_ids[fl] or None
            tk = float(t[k])
            if st.floor >= 0 and st.floor != fl:
                events.append(ZoneEvent("floor_change", d, tk, None, floor_id,
                                        {"from": self.anchors.floor_ids[st.floor] or None}))
            st.floor = fl
            st.last_t = tk
            st.x, st.y = float(est.x[k]), float(est.y[k])
            st.heading_x, st.heading_y = float(est.heading_x[k]), float(est.heading_y[k])
            raw_zone = self.site.zone_ids[raw[k]] if raw[k] != NO_ZONE else None
            changes = (st.zones.update(tk, raw_zone, self._chain) if delay is None
                       else st.zones.update(tk, raw_zone, self._chain, delay))
            for c in changes:
                extra: dict[str, Any] = {"since": round(c.since, 3), **c.extra}
                events.append(ZoneEvent(c.kind, d, tk, c.zone, floor_id, extra))
            fixes.append(Fix(d, tk, float(est.x[k]), float(est.y[k]), floor_id, float(est.accuracy_m[k]),
                             st.zones.current))
        return fixes, events

    def _expire(self, now: float) -> list[ZoneEvent]:
        """Devices unseen for VISIT_GAP_S: their visit ends, they leave every zone."""
        out: list[ZoneEvent] = []
        for d, st in list(self.devices.items()):
            if np.isfinite(st.last_t) and now - st.last_t > VISIT_GAP_S:
                floor_id = self.anchors.floor_ids[st.floor] or None if st.floor >= 0 else None
                for c in st.zones.close(st.last_t):
                    out.append(ZoneEvent(c.kind, d, st.last_t, c.zone, floor_id, dict(c.extra)))
                out.append(ZoneEvent("visit_end", d, st.last_t, None, floor_id, {}))
                self.tracker.forget(d)
                del self.devices[d]
        return out

    # ------------------------------------------------------------------ persistence
    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state (zone membership, device offsets, the channel as learned: window
        shadowing, body and wall losses) for a restart without re-entering stays or relearning."""
        return {"devices": {d: {"offset": st.offset, "offset_var": st.offset_var, "floor": st.floor,
                                "x": st.x, "y": st.y,
                                "last_t": st.last_t if np.isfinite(st.last_t) else None,
                                "zones": st.zones.to_state()} for d, st in self.devices.items()},
                "channel": {"track_var": [self.track_var, self.track_var_n],
                            "body_db": [self.body.value, self.body.n], "wall_db": [self.wall.value, self.wall.n],
                            "anchor_p0": {a: [float(self._p0_sum[k]), float(self._p0_n[k])]
                                          for k, a in enumerate(self.anchors.ids) if self._p0_n[k] > 0}}}

    def restore(self, state: Mapping[str, Any]) -> None:
        channel = state.get("channel", {})
        if isinstance(channel, Mapping):
            learned = {k: pair for k, v in channel.items() if (pair := _number_pair(v)) is not None and min(pair) >= 0}
            if "track_var" in learned:
                self.track_var = float(np.clip(learned["track_var"][0], TRACK_CORRELATED_MIN_DB**2,
                                               TRACK_CORRELATED_MAX_DB**2))
                self.track_var_n = min(float(learned["track_var"][1]), TRACK_VAR_MEMORY)
            for key, loss in (("body_db", self.body), ("wall_db", self.wall)):
                if key in learned:
                    loss.value = min(float(learned[key][0]), loss.max_db)
                    loss.n = min(float(learned[key][1]), loss.memory)
            self._restore_p0(channel.get("anchor_p0"))
        devs = state.get("devices", {})
        if not isinstance(devs, Mapping):
            return
        for d, s in devs.items():
            st = _Device(offset=float(s.get("offset", 0.0)), offset_var=float(s.get("offset_var", 64.0)),
                         prior_set=True, floor=int(s.get("floor", -1)),
                         x=float(s.get("x", 0.0)), y=float(s.get("y", 0.0)),
                         last_t=float(s["last_t"]) if s.get("last_t") is not None else -np.inf,
                         zones=ZoneHysteresis.from_state(s.get("zones", {})))
            self.devices[str(d)] = st


def within_device_fit(resid: FloatArray, xs: Sequence[FloatArray], used: npt.NDArray[np.bool_]
                      ) -> tuple[FloatArray, float] | None:
    """Least-squares coefficients of ``resid`` on the factors ``xs`` (each devices x links) within each
    device (row means removed, so each device's unknown offset cancels), pooled over devices; with the
    number of links used. None when the factors barely vary or are collinear (rows with fewer than
    three links do not count)."""
    n = used.sum(axis=1)
    rows = n >= 3
    if not rows.any():
        return None
    u = used[rows]
    k = n[rows][:, None]

    def centred(v: FloatArray) -> FloatArray:
        v = v[rows]
        return np.where(u, v - np.where(u, v, 0.0).sum(axis=1, keepdims=True) / k, 0.0)

    xc = [centred(x) for x in xs]
    rc = centred(resid)
    a = np.array([[float((xi * xj).sum()) for xj in xc] for xi in xc])
    b = np.array([float((xi * rc).sum()) for xi in xc])
    if a[0, 0] < LOSS_MIN_SPREAD or np.linalg.cond(a) > 1e6:
        return None
    return np.linalg.solve(a, b), float(u.sum())


@dataclass(slots=True)
class LearnedLoss:
    """A loss (dB per unit of some geometric factor) learned online as a running mean of per-step slopes
    over ``memory`` links, starting from ``value`` worth ``n`` links, kept within [0, ``max_db``]."""

    value: float
    n: float
    max_db: float
    memory: float = LOSS_MEMORY

    def update(self, resid: FloatArray, x: FloatArray, used: npt.NDArray[np.bool_],
               controls: Sequence[FloatArray] = ()) -> None:
        """One step's links: ``resid`` measured minus expected without this loss, ``x`` its factor;
        ``controls`` are other factors regressed out with it (such as log-distance, which walls follow)."""
        fit = within_device_fit(resid, [x, *controls], used)
        if fit is None:
            return
        coef, w = fit
        self.n = min(self.n + w, self.memory)
        self.value += (float(np.clip(-coef[0], 0.0, self.max_db)) - self.value) * w / self.n


def _number_pair(v: object) -> tuple[float, float] | None:
    """A snapshot's [value, count] entry as two finite floats, or None when it is anything else."""
    if (isinstance(v, list) and len(v) == 2
            and all(isinstance(q, (int, float)) and math.isfinite(q) for q in v)):
        return float(v[0]), float(v[1])
    return None


def _plausible_1m_power(tx_power: FloatArray) -> npt.NDArray[np.bool_]:
    """Advertised measured powers that can be a 1 m RSSI (a transmit power level such as 0 or -12 dBm
    written in their place is not)."""
    lo, hi = RSSI_1M_BOUNDS
    with np.errstate(invalid="ignore"):
        return np.asarray((tx_power >= lo) & (tx_power <= hi), dtype=bool)


def _range(p0: FloatArray, n: FloatArray, rssi: FloatArray) -> FloatArray:
    return np.asarray(np.clip(10.0 ** ((p0 - rssi) / (10.0 * n)), 0.5, 60.0), dtype=np.float64)


@dataclass(slots=True)
class _FingerprintSpread:
    """How far the fingerprint's positions stray for the devices being tracked, learned from the data:
    the windows' own fixes (which do not use the fingerprint) and the kNN positions differ by both errors,
    so the spread of their difference (median squared distance / 2 ln 2 per axis, for a 2-D Gaussian)
    bounds the kNN's. The survey's held-back error cannot see how tracked windows differ from the
    survey's scans (walking, bodies, other phones, the time since the survey). Subtracting the fixes'
    claimed variance was tried: their accuracy is too rough for a difference (on the hall it exceeded the
    disagreement itself). Measured, walkers' median error: hall 2.88 m over 8 runs (2.79 m with the
    held-back error x0.5, 3.33 m x2.0, 3.81 m without the survey); demo mall with a walking survey of
    85 shoppers 3.54 m (3.91 m x0.5, 3.46 m x2.0, 3.79 m without)."""

    median_d2: float = math.nan  # running (exponentially weighted) median of squared differences
    samples: int = 0

    def add(self, d2: FloatArray) -> None:
        if d2.shape[0] == 0:
            return
        m = float(np.median(d2))
        w = max(FINGERPRINT_SPREAD_ALPHA, d2.shape[0] / (self.samples + d2.shape[0]))
        self.median_d2 = m if self.samples == 0 else (1 - w) * self.median_d2 + w * m
        self.samples += d2.shape[0]

    def sd_m(self) -> float | None:
        """The kNN's sd per axis (m), or None before FINGERPRINT_SPREAD_MIN_SAMPLES windows."""
        if self.samples < FINGERPRINT_SPREAD_MIN_SAMPLES:
            return None
        return math.sqrt(self.median_d2 / (2.0 * math.log(2.0)))


def _track_accuracy(cloud_m: FloatArray, window_m: FloatArray, pseudo_sd: FloatArray | None,
                    walking: FloatArray) -> FloatArray:
    """A track's accuracy_m: the cloud's spread and the part of the window's uncertainty that repeats
    (``walking``: the cloud's walking weight, 0..1)."""
    window_var = window_m**2
    if pseudo_sd is not None:
        has = np.isfinite(pseudo_sd)
        window_var = np.where(has, 1.0 / (1.0 / window_var + 1.0 / np.where(has, pseudo_sd, 1.0) ** 2), window_var)
    share = TRACK_BIAS_SHARE_STILL * (1.0 - walking) + TRACK_BIAS_SHARE_WALKING * walking
    out: FloatArray = np.clip(np.sqrt(cloud_m**2 + share**2 * window_var), ACCURACY_MIN_M, ACCURACY_MAX_M)
    return out


def _take_idx(r: Readings, idx: IntArray) -> Readings:
    return Readings(r.t[idx], r.device[idx], r.anchor[idx], r.rssi[idx], r.tx_power[idx])


def _take(r: Readings, m: npt.NDArray[np.bool_]) -> Readings:
    return Readings(r.t[m], r.device[m], r.anchor[m], r.rssi[m], r.tx_power[m])


def _concat(parts: list[Readings]) -> Readings:
    if len(parts) == 1:
        return parts[0]
    return Readings(np.concatenate([p.t for p in parts]), np.concatenate([p.device for p in parts]),
                    np.concatenate([p.anchor for p in parts]), np.concatenate([p.rssi for p in parts]),
                    np.concatenate([p.tx_power for p in parts]))
