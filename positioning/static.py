"""Static fixes: phone-mode scans (or any group of readings taken at one place) positioned one by one.

A fix is positioned from its own readings only. The device's earlier scans inform its RSSI offset
(a prior for the next scan), the scans up to its time choose the exponent when nobody gave it
(``positioning.exponent``) and each anchor's 1 m power when no survey did: calibration, never its
position, so the order of scans carries no information beyond calibration. Two batch solves: every fix
alone (a free offset), then, with the calibration the scans up to each fix's time show, every fix again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from positioning.calibration import SurveyPoints
from positioning.const import (
    ACCURACY_MAX_M,
    ACCURACY_MIN_M,
    DEVICE_HEIGHT_M,
    DEVICE_OFFSET_MAX_DB,
    DEVICE_OFFSET_PRIOR_DB,
    LOSS_MIN_MARGIN_DB,
    MIN_ANCHORS_FOR_OFFSET,
    P0_LEARN_MAX_DB,
    P0_MIN_LINKS,
    P0_PRIOR_WEIGHT,
    PATH_LOSS_N_BOUNDS,
    SENSITIVITY_DBM,
)
from positioning.exponent import FREE_OFFSET_DB, MAX_WINDOWS, MIN_HEARD, ExponentChoice, profile_costs
from positioning.filtering import Aggregates, aggregate
from positioning.fingerprint import (
    RadioMap,
    choose_fusion_weight,
    fuse,
    held_back_sd_m,
    knn_locate,
    knn_sd,
    missing_level,
)
from positioning.maps import NO_ZONE, SiteMap
from positioning.multilateration import FixSolution, posterior_mean, solve, subset
from positioning.problems import build_problem, uncertainty_bound
from positioning.radio import AnchorTable, distance

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Leave-one-out also holds back the surveyor's points this close in time: they share the held-back point's
# time-correlated shadowing (1-2 s). Not longer: 30 s hid a grid survey's nearest points (5 s apart).
SURVEY_BLOCK_S = 3.0
OFFSET_SCAN_NOISE_DB = 4.0  # a single scan's offset estimate is this noisy (on top of its solver variance)


@dataclass(frozen=True, slots=True)
class StaticFixes:
    """One entry per fix, in the order of the input fix ids."""

    x: FloatArray
    y: FloatArray
    floor: IntArray
    accuracy_m: FloatArray
    zone: IntArray  # index into SiteMap.zone_ids, or -1
    offset: FloatArray
    offset_sd: FloatArray  # its uncertainty (dB)
    exponent_scale: float = 1.0  # of the anchors' exponents, as learned by the last fix (1.0: not learned)
    exponent_windows: int = 0  # scans the learning used


def locate_static(anchors: AnchorTable, site: SiteMap, fix: IntArray, device: IntArray, fix_t: FloatArray,
                  anchor: IntArray, rssi: FloatArray, p0: FloatArray, n_fixes: int,
                  offset_prior: FloatArray | None = None, sens: float = SENSITIVITY_DBM,
                  device_height: float = DEVICE_HEIGHT_M, alive: npt.NDArray[np.bool_] | None = None,
                  learn_exponent: bool = False, learn_p0: bool = False) -> StaticFixes:
    """Position ``n_fixes`` fixes. Readings are columns (fix id, device id, anchor index, rssi, 1 m power);
    ``fix_t`` orders each device's scans for its offset. With ``learn_exponent`` each fix uses the
    exponent the scans up to its time favour (``positioning.exponent``); with ``learn_p0`` each anchor's
    1 m power deviates from ``p0`` by what the scans up to the fix's time show (``_p0_deviations``)."""
    agg = aggregate(fix, anchor, rssi, p0)
    p0_group = agg.aux
    alive_mask = np.ones(len(anchors), dtype=bool) if alive is None else alive
    scale, choice = np.ones(n_fixes), ExponentChoice()
    if learn_exponent and n_fixes:
        scale, choice = _exponent_per_fix(anchors, site, agg, p0_group, fix_t, n_fixes, sens, device_height,
                                          alive_mask)
    fix_device = np.zeros(n_fixes, dtype=np.int64)
    fix_device[fix] = device
    n_dev = int(device.max()) + 1 if device.shape[0] else 0
    prior_off = np.zeros(n_dev) if offset_prior is None else offset_prior.astype(np.float64)
    solve_args = (anchors, site, agg, scale, n_fixes, sens, device_height, alive_mask)
    # Every fix alone, its offset free within the device's prior.
    x, y, floor, _, off, off_sd, n_heard = _solve_all(p0_group, *solve_args, prior_off[fix_device],
                                                       np.full(n_fixes, DEVICE_OFFSET_PRIOR_DB))
    # What the scans up to each fix's time tell: its device's offset, the anchors' 1 m power.
    if learn_p0 and n_fixes:
        p0_group = p0_group + _p0_deviations(anchors, agg, p0_group, scale, x, y, floor, fix_t, n_fixes, sens,
                                             device_height)
    off_mean, off_prior_sd = _causal_offsets(fix_device, fix_t, scale, off, off_sd,
                                             n_heard >= MIN_ANCHORS_FOR_OFFSET, prior_off)
    out_x, out_y, out_f, out_acc, out_off, out_off_sd, _ = _solve_all(p0_group, *solve_args, off_mean, off_prior_sd)
    zone = np.full(n_fixes, NO_ZONE, dtype=np.int64)
    for f, raster in enumerate(site.floors):
        m = out_f == f
        if m.any():
            zone[m] = raster.zone_at(out_x[m], out_y[m])
    return StaticFixes(out_x, out_y, out_f, out_acc, zone, out_off, out_off_sd, choice.scale, choice.windows)


def _solve_all(p0_group: FloatArray, anchors: AnchorTable, site: SiteMap, agg: Aggregates, scale: FloatArray,
               n_fixes: int, sens: float, device_height: float, alive_mask: npt.NDArray[np.bool_],
               off_mean: FloatArray, off_sd: FloatArray
               ) -> tuple[FloatArray, FloatArray, IntArray, FloatArray, FloatArray, FloatArray, IntArray]:
    """Every fix in one batch, each with its offset prior (``off_mean``, ``off_sd``) and exponent scale:
    positions, floors, accuracy, offsets and their sd, and how many anchors each fix heard."""
    prob, heard, _, _, _, _ = build_problem(anchors, site, agg.group, agg.anchor, agg.mean, agg.var, agg.count,
                                         p0_group, n_fixes, off_mean, off_sd, sens, device_height, alive_mask)
    k_n = scale[:, None]
    prob = replace(prob, n=np.clip(prob.n * k_n, *PATH_LOSS_N_BOUNDS), cn=np.clip(prob.cn * k_n, *PATH_LOSS_N_BOUNDS))
    sol = posterior_mean(prob, solve(prob))
    n_heard = (heard >= 0).sum(axis=1)
    x, y, acc = _fallback_where_few(anchors, sol, heard, n_heard)
    # The strongest anchor's reach bounds the claim (positioning.problems.uncertainty_bound), reckoned with
    # the fix's own offset only where enough anchors pin it; with fewer it runs off (a lone reading's
    # reach shrank to nothing and claimed 0.5 m), so the device's prior offset is used.
    own = np.where(n_heard >= 3, sol.offset, off_mean)
    acc = np.minimum(acc, uncertainty_bound(prob, own, None, x, y))
    floor = anchors.floor[heard[:, 0]]
    for f, raster in enumerate(site.floors):
        m = floor == f
        if m.any():
            x[m], y[m] = raster.snap(x[m], y[m])
    return x, y, floor, acc, sol.offset, np.sqrt(np.maximum(sol.cov[:, 2, 2], 0.0)), n_heard


def _causal_offsets(fix_device: IntArray, fix_t: FloatArray, scale: FloatArray, off: FloatArray, off_sd: FloatArray,
                    informative: npt.NDArray[np.bool_], prior_off: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Each fix's offset prior (mean, sd): its device's prior refined, in time order, by the offsets its
    earlier scans (heard by enough anchors) solved alone; a scan under another exponent scale restarts it
    (the offsets were learned under the old one). A Kalman filter per device, one scalar step per scan."""
    n = fix_device.shape[0]
    mean = np.zeros(n)
    sd = np.full(n, DEVICE_OFFSET_PRIOR_DB)
    order = np.lexsort((np.arange(n), fix_t, fix_device))
    cur_d, m, v, sc = -1, 0.0, DEVICE_OFFSET_PRIOR_DB**2, 1.0
    for k in order.tolist():
        d = int(fix_device[k])
        if d != cur_d:
            cur_d, m, v, sc = d, float(prior_off[d]), DEVICE_OFFSET_PRIOR_DB**2, float(scale[k])
        if scale[k] != sc:
            m, v, sc = float(prior_off[d]), DEVICE_OFFSET_PRIOR_DB**2, float(scale[k])
        mean[k], sd[k] = m, np.sqrt(v)
        if informative[k]:
            meas = float(off_sd[k]) ** 2 + OFFSET_SCAN_NOISE_DB**2
            g = v / (v + meas)
            m = float(np.clip(m + g * (off[k] - m), -DEVICE_OFFSET_MAX_DB, DEVICE_OFFSET_MAX_DB))
            v *= 1.0 - g
    return mean, sd


def _p0_deviations(anchors: AnchorTable, agg: Aggregates, p0_group: FloatArray, scale: FloatArray,
                   x: FloatArray, y: FloatArray, floor: IntArray, fix_t: FloatArray, n_fixes: int, sens: float,
                   device_height: float) -> FloatArray:
    """Per row of ``agg`` (fix, anchor): how much louder or quieter than ``p0_group`` the anchor is, from the
    scans up to the fix's time (causal; the scan itself included). Each scan's residuals at its own fix,
    less their mean (the device's offset and its error), are summed per anchor in time order and shrunk to
    the nominal power (const.P0_*: the same learning as the live locator's). Only links expected well above
    sensitivity (LOSS_MIN_MARGIN_DB), on the fix's floor, from scans with P0_MIN_LINKS of them."""
    g, a = agg.group, agg.anchor
    d = distance(anchors, a, x[g], y[g], floor[g], device_height)
    mu = p0_group - 10.0 * anchors.path_loss_n[a] * scale[g] * np.log10(d)  # links on the fix's floor only
    use = np.isfinite(mu) & (mu > sens + LOSS_MIN_MARGIN_DB) & (anchors.floor[a] == floor[g])
    links = np.bincount(g[use], minlength=n_fixes)
    use &= links[g] >= P0_MIN_LINKS
    e = agg.mean - mu
    e -= (np.bincount(g[use], weights=e[use], minlength=n_fixes) / np.maximum(links, 1))[g]
    # Cumulative sums per anchor over the scans in time order, read at each row's own time.
    _, t_rank = np.unique(fix_t, return_inverse=True)
    stride = int(t_rank.max()) + 2
    key = a[use] * stride + t_rank[g[use]]
    order = np.argsort(key, kind="stable")
    key_sorted = key[order]
    csum = np.r_[0.0, np.cumsum(e[use][order])]
    upto = np.searchsorted(key_sorted, a * stride + t_rank[g], side="right")
    first = np.searchsorted(key_sorted, a * stride, side="left")
    dev = (csum[upto] - csum[first]) / ((upto - first) + P0_PRIOR_WEIGHT)
    return np.asarray(np.clip(dev, -P0_LEARN_MAX_DB, P0_LEARN_MAX_DB), dtype=np.float64)


def _exponent_per_fix(anchors: AnchorTable, site: SiteMap, agg: Aggregates, p0_group: FloatArray, fix_t: FloatArray,
                      n_fixes: int, sens: float, device_height: float, alive: npt.NDArray[np.bool_]
                      ) -> tuple[FloatArray, ExponentChoice]:
    """The exponent scale each fix uses: the choice after every scan up to its time (each scan's profile
    cost depends on its own readings only, so this is causal whatever the devices' order)."""
    prob, *_ = build_problem(anchors, site, agg.group, agg.anchor, agg.mean, agg.var, agg.count, p0_group, n_fixes,
                             np.zeros(n_fixes), np.full(n_fixes, FREE_OFFSET_DB), sens, device_height, alive)
    eligible = np.flatnonzero((prob.w > 0).sum(axis=1) >= MIN_HEARD)
    order = eligible[np.argsort(fix_t[eligible], kind="stable")][:MAX_WINDOWS]
    costs = profile_costs(subset(prob, order), 1.0, order.shape[0])
    choice = ExponentChoice()
    after = np.ones(order.shape[0])
    for k in range(order.shape[0]):
        choice.add(costs[:, k:k + 1])
        after[k] = choice.scale
    seen = np.searchsorted(fix_t[order], fix_t, side="right") - 1  # the last scan at or before each fix
    scale = np.where(seen >= 0, after[np.maximum(seen, 0)], 1.0) if order.shape[0] else np.ones(n_fixes)
    return scale, choice


def _fallback_where_few(anchors: AnchorTable, sol: FixSolution, heard: IntArray,
                        n_heard: IntArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """With one or two anchors the solver is underdetermined: stay near them, say so in the accuracy."""
    a = anchors
    x, y, acc = sol.x.copy(), sol.y.copy(), sol.accuracy_m.copy()
    few = n_heard < 3
    if few.any():
        i0 = heard[few, 0]
        i1 = np.where(heard[few, 1] >= 0, heard[few, 1], i0)
        x[few] = (a.x[i0] * 2 + a.x[i1]) / 3
        y[few] = (a.y[i0] * 2 + a.y[i1]) / 3
        acc[few] = np.maximum(acc[few], np.maximum(5.0, np.hypot(a.x[i1] - a.x[i0], a.y[i1] - a.y[i0])))
    return x, y, acc


@dataclass(frozen=True, slots=True)
class Fingerprints:
    """A survey's radio map and the fusion weight chosen on it by leave-one-out."""

    radio_map: RadioMap
    weight: float
    loo_model_median_m: float
    loo_knn_median_m: float
    loo_fused_median_m: float


def build_fingerprints(anchors: AnchorTable, site: SiteMap, pts: SurveyPoints,
                       device_height: float = DEVICE_HEIGHT_M) -> Fingerprints:
    """The radio map of a survey, and the fingerprint weight that does best on held-back survey points
    (each point positioned by the model from its own readings, and by kNN on all other points)."""
    rm = RadioMap(pts.x, pts.y, pts.floor, pts.radio_map(len(anchors)), pts.device, pts.t,
                  missing_level(pts.sensitivity))
    n = len(rm)
    model = locate_static(anchors, site, pts.point, pts.device[pts.point], np.zeros(n), pts.anchor, pts.mean,
                          anchors.rssi_1m[pts.anchor], n, device_height=device_height)
    knn = knn_locate(rm, rm.rssi, floor_hint=model.floor, exclude=np.arange(n), anchor_xy=(anchors.x, anchors.y),
                     block_s=SURVEY_BLOCK_S)
    weight = choose_fusion_weight(pts.x, pts.y, model.x, model.y, knn.x, knn.y)
    fx, fy = fuse(model.x, model.y, knn, weight)

    def med(x: FloatArray, y: FloatArray) -> float:
        e = np.hypot(x - pts.x, y - pts.y)
        return float(np.nanmedian(e)) if np.isfinite(e).any() else float("nan")

    return Fingerprints(rm, weight, med(model.x, model.y), med(knn.x, knn.y), med(fx, fy))


def apply_fingerprints(fp: Fingerprints, fixes: StaticFixes, fix: IntArray, anchor: IntArray, rssi: FloatArray,
                       n_anchors: int, anchor_xy: tuple[FloatArray, FloatArray] | None = None) -> StaticFixes:
    """Fuse model fixes with kNN on the radio map (the query is each fix's mean RSSI per anchor)."""
    agg = aggregate(fix, anchor, rssi)
    query = np.full((fixes.x.shape[0], n_anchors), np.nan)
    query[agg.group, agg.anchor] = agg.mean
    knn = knn_locate(fp.radio_map, query, floor_hint=fixes.floor, anchor_xy=anchor_xy, offset=fixes.offset,
                     offset_sd=fixes.offset_sd)
    x, y = fuse(fixes.x, fixes.y, knn, fp.weight)
    # The fused fix's uncertainty: the two estimates', weighted like the positions.
    w = np.where(knn.ok, fp.weight, 0.0)
    sd = knn_sd(knn.spread_m, held_back_sd_m(fp.loo_knn_median_m))
    acc = np.clip(np.sqrt(((1.0 - w) * fixes.accuracy_m) ** 2 + (w * sd) ** 2), ACCURACY_MIN_M, ACCURACY_MAX_M)
    return replace(fixes, x=x, y=y, accuracy_m=acc)
