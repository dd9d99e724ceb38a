"""Fingerprinting: weighted kNN on a site survey's radio map, and its fusion with the model-based fix.

Features are offset-free: each vector's RSSIs minus their mean over the anchors both vectors heard,
so a phone 10 dB louder than the surveyor matches the same places. Anchors heard by only one side
count as a mismatch against a floor value. The fusion weight between the fingerprint and the model
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
MISSING_DBM: Final = -100.0  # an anchor heard on one side only is compared against this level
MISSING_PENALTY_DB: Final = 6.0  # ... but its difference is capped here (not heard is weak evidence)
MIN_COMMON: Final = 2  # a survey point sharing fewer heard anchors with the query is not a neighbour
FUSION_WEIGHTS: Final = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))  # candidate fingerprint weights
QUERY_CHUNK: Final = 256  # queries per vectorized block (memory: chunk x candidates x anchors)
CANDIDATE_POINTS: Final = 96  # survey points compared per query: the nearest to its strongest anchor
QUERY_ANCHORS: Final = 16  # anchors compared: those the query heard best


@dataclass(frozen=True, slots=True)
class RadioMap:
    """Survey points: position, floor, and mean RSSI per anchor (NaN where not heard)."""

    x: FloatArray
    y: FloatArray
    floor: IntArray
    rssi: FloatArray  # (points, anchors)
    device: IntArray | None = None  # survey device of each point (for blocked leave-one-out)
    t: FloatArray | None = None  # time of each point

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
               anchor_xy: tuple[FloatArray, FloatArray] | None = None, block_s: float = 0.0) -> KnnFix:
    """Weighted kNN for queries (Q, anchors) of mean RSSI (NaN = not heard).

    ``exclude`` (Q,) names one survey point per query to leave out (leave-one-out); -1 for none. With
    ``block_s`` > 0, the survey points of the same survey device within ``block_s`` seconds of it are
    left out too (a walking survey's neighbouring points are near copies of the held-back one).
    With ``floor_hint``, only survey points on that floor are candidates. With ``anchor_xy``
    (anchor positions), only the CANDIDATE_POINTS survey points nearest the query's strongest
    anchor are compared, over the QUERY_ANCHORS anchors the query heard best: cost per query stays
    constant however large the survey is.
    """
    q_n, n_a = query.shape
    n_p = len(radio_map)
    out_x, out_y = np.full(q_n, np.nan), np.full(q_n, np.nan)
    out_f = np.zeros(q_n, dtype=np.int64)
    out_s = np.full(q_n, np.nan)
    ok = np.zeros(q_n, dtype=bool)
    if n_p == 0 or q_n == 0:
        return KnnFix(out_x, out_y, out_f, out_s, ok)
    qv = np.where(np.isnan(query), -np.inf, query)
    n_q_anchors = min(QUERY_ANCHORS, n_a)
    q_anchors = np.argsort(-qv, axis=1, kind="stable")[:, :n_q_anchors]  # (Q, Aq) strongest first
    if anchor_xy is not None and n_p > CANDIDATE_POINTS:
        ax, ay = anchor_xy
        s0 = q_anchors[:, 0]
        d_pts = np.hypot(radio_map.x[None, :] - ax[s0][:, None], radio_map.y[None, :] - ay[s0][:, None])
        if floor_hint is not None:
            d_pts = np.where(radio_map.floor[None, :] == floor_hint[:, None], d_pts, np.inf)
        cand = np.argpartition(d_pts, CANDIDATE_POINTS - 1, axis=1)[:, :CANDIDATE_POINTS]
    else:
        cand = np.broadcast_to(np.arange(n_p), (q_n, n_p))
    q_val_all = np.take_along_axis(query, q_anchors, axis=1)  # (Q, Aq)
    q_heard = ~np.isnan(q_val_all)
    q_val = np.where(q_heard, q_val_all, MISSING_DBM)
    for start in range(0, q_n, QUERY_CHUNK):
        sl = slice(start, min(q_n, start + QUERY_CHUNK))
        cd = cand[sl]  # (q, C)
        m_raw = radio_map.rssi[cd[:, :, None], q_anchors[sl][:, None, :]]  # (q, C, Aq)
        m_heard = ~np.isnan(m_raw)
        m_val = np.where(m_heard, m_raw, MISSING_DBM)
        qh = q_heard[sl][:, None, :]
        both = qh & m_heard
        n_both = both.sum(axis=2)
        diff = q_val[sl][:, None, :] - m_val
        # Offset-free: remove each pair's mean difference over the anchors both heard.
        shift = np.where(both, diff, 0.0).sum(axis=2) / np.maximum(n_both, 1)
        resid = diff - shift[:, :, None]
        one_side = qh & ~m_heard  # the query heard it, the survey point did not
        resid = np.where(one_side, np.clip(resid, -MISSING_PENALTY_DB, MISSING_PENALTY_DB), resid)
        used = both | one_side
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


def choose_fusion_weight(truth_x: FloatArray, truth_y: FloatArray, model_x: FloatArray, model_y: FloatArray,
                         knn_x: FloatArray, knn_y: FloatArray) -> float:
    """The fingerprint weight (0..1) with the lowest median error on held-back survey points."""
    usable = np.isfinite(knn_x) & np.isfinite(model_x)
    if usable.sum() < 3:
        return 0.0
    best_w, best_err = 0.0, np.inf
    for w in FUSION_WEIGHTS:
        fx = w * knn_x[usable] + (1 - w) * model_x[usable]
        fy = w * knn_y[usable] + (1 - w) * model_y[usable]
        err = float(np.median(np.hypot(fx - truth_x[usable], fy - truth_y[usable])))
        if err < best_err - 1e-9:
            best_w, best_err = float(w), err
    return best_w


def fuse(model_x: FloatArray, model_y: FloatArray, knn: KnnFix, weight: float) -> tuple[FloatArray, FloatArray]:
    """Weighted combination where the fingerprint answered; the model alone elsewhere."""
    use = knn.ok & np.isfinite(knn.x)
    x = np.where(use, weight * np.nan_to_num(knn.x) + (1 - weight) * model_x, model_x)
    y = np.where(use, weight * np.nan_to_num(knn.y) + (1 - weight) * model_y, model_y)
    return x, y
