"""Fingerprinting: weighted kNN on a site survey's radio map, and its fusion with the model-based fix.

The distance between a query and a survey point is the RMS difference of their RSSIs over the anchors
either side heard, after removing the pair's mean difference over the anchors both heard, shrunk towards
zero (a phone 10 dB louder than the surveyor still matches the same places, but two similar patterns
at different levels are not the same place). An anchor heard by one side only is compared against a
level below the survey's sensitivity: not hearing a receiver the survey heard at -70 dBm is strong
evidence, not hearing one it barely caught is weak. The fusion weight between the fingerprint and the model
estimate is chosen by leave-one-out on the survey itself, among weights that include 0 and 1, so on
held-back survey points the fusion is never worse than the better of the two methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

KNN_K: Final = 4  # neighbours averaged; more smooths, fewer follows noise
MISSING_DBM: Final = -100.0  # an anchor heard on one side only is compared against this level ...
MISSING_BELOW_SENSITIVITY_DB: Final = 4.0  # ... or this far below the survey's sensitivity if that is lower
# A query's RSSIs less its device's offset (when known) still differ from the survey's by the device
# offset's error, which the pair's mean difference estimates, shrunk like a Gaussian mean: n anchors of
# FINGERPRINT_SPREAD_DB spread against the offset's uncertainty (QUERY_OFFSET_SD_DB when not given).
FINGERPRINT_SPREAD_DB: Final = 5.0  # a scan's mean vs the survey's at the same spot, per anchor
QUERY_OFFSET_SD_DB: Final = 3.5
MIN_OFFSET_SD_DB: Final = 1.0  # a learned offset is referenced to the model's anchors, not to the survey itself
MIN_COMMON: Final = 2  # a survey point sharing fewer heard anchors with the query is not a neighbour
FUSION_WEIGHTS: Final = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))  # candidate fingerprint weights
# A fingerprint position is trusted at this share of the survey's held-back median error: holding a
# point back leaves a hole, so that error overstates the fingerprint between survey points (fused static
# fixes on `bench survey` hold 59-71 % of their errors within accuracy_m at x0.5; the live locator uses
# it until it has learned the spread from the tracked windows themselves).
LOO_ERROR_SHARE: Final = 0.5
FUSION_TOLERANCE: Final = 0.05  # leave-one-out errors this close count as equal (see choose_fusion_weight)
# Survey points compared per query: the half of the survey nearest its strongest receivers, within these
# bounds (a geometric preselection: far points whose pattern happens to match are not candidates).
MIN_CANDIDATES: Final = 160
MAX_CANDIDATES: Final = 640
SEED_ANCHORS: Final = 3
CHUNK_ELEMENTS: Final = 4_000_000  # queries per block: (queries x candidates x anchors) within this
QUERY_ANCHORS: Final = 16  # anchors compared: those the query heard best ...
NEAR_ANCHORS: Final = 16  # ... and those nearest its strongest one (silence there is evidence too)


@dataclass(frozen=True, slots=True)
class RadioMap:
    """Survey points: position, floor, and mean RSSI per anchor (NaN where not heard)."""

    x: FloatArray
    y: FloatArray
    floor: IntArray
    rssi: FloatArray  # (points, anchors)
    device: IntArray | None = None  # survey device of each point (for blocked leave-one-out)
    t: FloatArray | None = None  # time of each point
    missing_dbm: float = MISSING_DBM  # the level "not heard" is compared as

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True, slots=True)
class KnnFix:
    x: FloatArray
    y: FloatArray
    floor: IntArray
    spread_m: FloatArray  # weighted spread of the neighbours: the fingerprint's own uncertainty
    ok: npt.NDArray[np.bool_]  # False where no survey point qualified


def knn_locate(radio_map: RadioMap, query: FloatArray, floor_hint: IntArray | None = None,
               exclude: IntArray | None = None, k: int = KNN_K,
               anchor_xy: tuple[FloatArray, FloatArray] | None = None, block_s: float = 0.0,
               offset: FloatArray | None = None, offset_sd: FloatArray | None = None) -> KnnFix:
    """Weighted kNN for queries (Q, anchors) of mean RSSI (NaN = not heard).

    ``offset`` (Q,) is each query device's RSSI offset relative to the survey (subtracted), with
    ``offset_sd`` its uncertainty: the surer it is, the less the pair's own mean difference counts.

    ``exclude`` (Q,) names one survey point per query to leave out (leave-one-out); -1 for none. With
    ``block_s`` > 0, the survey points of the same survey device within ``block_s`` seconds of it are
    left out too (a walking survey's neighbouring points are near copies of the held-back one).
    With ``floor_hint``, only survey points on that floor are candidates. With ``anchor_xy`` (anchor
    positions), only the survey points nearest any of the query's SEED_ANCHORS strongest anchors are
    compared (half the survey, within MIN_CANDIDATES..MAX_CANDIDATES), over the QUERY_ANCHORS anchors
    the query heard best and the NEAR_ANCHORS nearest its strongest one (all anchors when there are no
    more than that): cost per query stays bounded however large the survey and the venue are.
    """
    q_n, n_a = query.shape
    n_p = len(radio_map)
    out_x, out_y = np.full(q_n, np.nan), np.full(q_n, np.nan)
    out_f = np.zeros(q_n, dtype=np.int64)
    out_s = np.full(q_n, np.nan)
    ok = np.zeros(q_n, dtype=bool)
    if n_p == 0 or q_n == 0:
        return KnnFix(out_x, out_y, out_f, out_s, ok)
    fill = radio_map.missing_dbm
    if offset is not None:
        query = query - offset[:, None]
    sd = np.full(q_n, QUERY_OFFSET_SD_DB) if offset_sd is None else np.maximum(offset_sd, MIN_OFFSET_SD_DB)
    shrink = (FINGERPRINT_SPREAD_DB / sd) ** 2
    qv = np.where(np.isnan(query), -np.inf, query)
    by_level = np.argsort(-qv, axis=1, kind="stable")
    strongest = by_level[:, 0]
    if n_a <= QUERY_ANCHORS + NEAR_ANCHORS:
        q_anchors = np.broadcast_to(np.arange(n_a), (q_n, n_a))
        repeated = np.zeros((q_n, n_a), dtype=bool)
    else:
        top = by_level[:, :QUERY_ANCHORS]
        if anchor_xy is not None:
            ax, ay = anchor_xy
            d_a = np.hypot(ax[None, :] - ax[strongest][:, None], ay[None, :] - ay[strongest][:, None])
            near_a = np.argpartition(d_a, NEAR_ANCHORS - 1, axis=1)[:, :NEAR_ANCHORS]
        else:
            near_a = by_level[:, QUERY_ANCHORS:QUERY_ANCHORS + NEAR_ANCHORS]
        q_anchors = np.concatenate([top, near_a], axis=1)
        repeated = np.zeros(q_anchors.shape, dtype=bool)
        repeated[:, QUERY_ANCHORS:] = (near_a[:, :, None] == top[:, None, :]).any(axis=2)
    n_cand = min(max(n_p // 2, MIN_CANDIDATES), MAX_CANDIDATES)
    limit = anchor_xy is not None and n_p > n_cand
    width = n_cand if limit else n_p
    q_val_all = np.take_along_axis(query, q_anchors, axis=1)  # (Q, Aq)
    q_heard = ~np.isnan(q_val_all)
    q_val = np.where(q_heard, q_val_all, fill)
    chunk = max(1, CHUNK_ELEMENTS // max(1, width * q_anchors.shape[1], n_p if limit else 1))
    for start in range(0, q_n, chunk):
        sl = slice(start, min(q_n, start + chunk))
        if limit:
            assert anchor_xy is not None
            cd = _near_strongest(radio_map, anchor_xy, by_level[sl], np.isfinite(qv[sl]),
                                 None if floor_hint is None else floor_hint[sl], n_cand)
        else:
            cd = np.broadcast_to(np.arange(n_p), (sl.stop - sl.start, n_p))  # (q, C)
        m_raw = radio_map.rssi[cd[:, :, None], q_anchors[sl][:, None, :]]  # (q, C, Aq)
        m_heard = ~np.isnan(m_raw)
        m_val = np.where(m_heard, m_raw, fill)
        qh = q_heard[sl][:, None, :]
        both = qh & m_heard
        n_both = both.sum(axis=2)
        diff = q_val[sl][:, None, :] - m_val
        # The pair's offset: their mean difference over the anchors both heard, shrunk towards zero.
        shift = np.where(both, diff, 0.0).sum(axis=2) / (n_both + shrink[sl, None])
        resid = diff - shift[:, :, None]
        used = (qh | m_heard) & ~repeated[sl][:, None, :]
        dist = np.sqrt((np.where(used, resid, 0.0) ** 2).sum(axis=2) / np.maximum(used.sum(axis=2), 1))
        dist = np.where(n_both >= MIN_COMMON, dist, np.inf)
        if floor_hint is not None:
            dist = np.where(radio_map.floor[cd] == floor_hint[sl, None], dist, np.inf)
        if exclude is not None:
            ex = exclude[sl, None]
            out = cd == ex
            if block_s > 0 and radio_map.device is not None and radio_map.t is not None:
                exc = np.maximum(ex, 0)
                out |= ((ex >= 0) & (radio_map.device[cd] == radio_map.device[exc])
                        & (np.abs(radio_map.t[cd] - radio_map.t[exc]) < block_s))
            dist = np.where(out, np.inf, dist)
        kk = min(k, dist.shape[1])
        pick = np.argpartition(dist, kk - 1, axis=1)[:, :kk]
        near = np.take_along_axis(cd, pick, axis=1)
        d_near = np.take_along_axis(dist, pick, axis=1)
        w = np.where(np.isfinite(d_near), 1.0 / (d_near + 0.5), 0.0)
        wsum = w.sum(axis=1)
        good = wsum > 0
        w = w / np.where(good, wsum, 1.0)[:, None]
        px, py = radio_map.x[near], radio_map.y[near]
        ex_ = (w * px).sum(axis=1)
        ey_ = (w * py).sum(axis=1)
        spread = np.sqrt((w * ((px - ex_[:, None]) ** 2 + (py - ey_[:, None]) ** 2)).sum(axis=1))
        best = near[np.arange(near.shape[0]), np.argmax(w, axis=1)]
        out_x[sl] = np.where(good, ex_, np.nan)
        out_y[sl] = np.where(good, ey_, np.nan)
        out_f[sl] = radio_map.floor[best]
        out_s[sl] = spread
        ok[sl] = good
    return KnnFix(out_x, out_y, out_f, out_s, ok)


def _near_strongest(radio_map: RadioMap, anchor_xy: tuple[FloatArray, FloatArray], by_level: IntArray,
                    heard: npt.NDArray[np.bool_], floor_hint: IntArray | None, n_cand: int) -> IntArray:
    """Per query, the ``n_cand`` survey points nearest any of its SEED_ANCHORS strongest heard anchors."""
    ax, ay = anchor_xy
    rows = np.arange(by_level.shape[0])
    d_pts = np.full((by_level.shape[0], len(radio_map)), np.inf)
    for j in range(min(SEED_ANCHORS, by_level.shape[1])):  # near any of the strongest few (one may be shadowed)
        s_j = by_level[:, j]
        d_j = np.hypot(radio_map.x[None, :] - ax[s_j][:, None], radio_map.y[None, :] - ay[s_j][:, None])
        d_pts = np.minimum(d_pts, np.where(heard[rows, s_j][:, None], d_j, np.inf))
    if floor_hint is not None:
        d_pts = np.where(radio_map.floor[None, :] == floor_hint[:, None], d_pts, np.inf)
    out: IntArray = np.argpartition(d_pts, n_cand - 1, axis=1)[:, :n_cand]
    return out


def held_back_sd_m(loo_median_m: float) -> float:
    """The least a fingerprint position's sd is taken as, from the survey's held-back median error."""
    return LOO_ERROR_SHARE * loo_median_m if np.isfinite(loo_median_m) else 0.0


def knn_sd(spread_m: FloatArray, least_m: float) -> FloatArray:
    """How far a fingerprint position is trusted (m): its neighbours' spread, but at least ``least_m``."""
    out: FloatArray = np.maximum(np.nan_to_num(spread_m), least_m)
    return out


def missing_level(sensitivity_dbm: float) -> float:
    """The level "not heard" is compared as, for a survey whose receivers stop at ``sensitivity_dbm``."""
    return min(MISSING_DBM, sensitivity_dbm - MISSING_BELOW_SENSITIVITY_DB)


def choose_fusion_weight(truth_x: FloatArray, truth_y: FloatArray, model_x: FloatArray, model_y: FloatArray,
                         knn_x: FloatArray, knn_y: FloatArray) -> float:
    """The fingerprint weight (0..1) for held-back survey points: the largest whose median error is within
    FUSION_TOLERANCE of the best weight's and no worse than either method alone.

    Holding a survey point back leaves a hole one survey spacing wide where the fingerprint has to
    interpolate; a query between survey points is nearer to one, so leave-one-out understates the
    fingerprint's accuracy, and among weights that do about as well the fingerprint's side is taken.
    """
    usable = np.isfinite(knn_x) & np.isfinite(model_x)
    if usable.sum() < 3:
        return 0.0
    errs = []
    for w in FUSION_WEIGHTS:
        fx = w * knn_x[usable] + (1 - w) * model_x[usable]
        fy = w * knn_y[usable] + (1 - w) * model_y[usable]
        errs.append(float(np.median(np.hypot(fx - truth_x[usable], fy - truth_y[usable]))))
    err = np.array(errs)
    limit = min(err.min() * (1.0 + FUSION_TOLERANCE), err[0], err[-1])
    return float(np.asarray(FUSION_WEIGHTS)[np.flatnonzero(err <= limit + 1e-9).max()])


def fuse(model_x: FloatArray, model_y: FloatArray, knn: KnnFix, weight: float) -> tuple[FloatArray, FloatArray]:
    """Weighted combination where the fingerprint answered; the model alone elsewhere."""
    use = knn.ok & np.isfinite(knn.x)
    x = np.where(use, weight * np.nan_to_num(knn.x) + (1 - weight) * model_x, model_x)
    y = np.where(use, weight * np.nan_to_num(knn.y) + (1 - weight) * model_y, model_y)
    return x, y
