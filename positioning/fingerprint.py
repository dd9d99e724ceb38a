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
QUERY_CHUNK: Final = 512  # queries per vectorized block (memory: chunk x points x anchors)


@dataclass(frozen=True, slots=True)
class RadioMap:
    """Survey points: position, floor, and mean RSSI per anchor (NaN where not heard)."""

    x: FloatArray
    y: FloatArray
    floor: IntArray
    rssi: FloatArray  # (points, anchors)

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
               exclude: IntArray | None = None, k: int = KNN_K) -> KnnFix:
    """Weighted kNN for queries (Q, anchors) of mean RSSI (NaN = not heard).

    ``exclude`` (Q,) names one survey point per query to leave out (leave-one-out); -1 for none.
    With ``floor_hint``, only survey points on that floor are candidates.
    """
    q_n = query.shape[0]
    out_x, out_y = np.full(q_n, np.nan), np.full(q_n, np.nan)
    out_f = np.zeros(q_n, dtype=np.int64)
    out_s = np.full(q_n, np.nan)
    ok = np.zeros(q_n, dtype=bool)
    m_heard = ~np.isnan(radio_map.rssi)
    m_val = np.where(m_heard, radio_map.rssi, MISSING_DBM)
    for start in range(0, q_n, QUERY_CHUNK):
        sl = slice(start, min(q_n, start + QUERY_CHUNK))
        q = query[sl]
        q_heard = ~np.isnan(q)
        q_val = np.where(q_heard, q, MISSING_DBM)
        both = q_heard[:, None, :] & m_heard[None, :, :]  # (Q, P, A)
        n_both = both.sum(axis=2)
        # Offset-free: remove each pair's mean difference over the anchors both heard.
        diff = q_val[:, None, :] - m_val[None, :, :]
        shift = np.where(both, diff, 0.0).sum(axis=2) / np.maximum(n_both, 1)
        resid = diff - shift[:, :, None]
        one_side = q_heard[:, None, :] ^ m_heard[None, :, :]
        resid = np.where(one_side, np.clip(resid, -MISSING_PENALTY_DB, MISSING_PENALTY_DB), resid)
        used = both | one_side
        dist = np.sqrt((np.where(used, resid, 0.0) ** 2).sum(axis=2) / np.maximum(used.sum(axis=2), 1))
        dist = np.where(n_both >= MIN_COMMON, dist, np.inf)
        if floor_hint is not None:
            dist = np.where(radio_map.floor[None, :] == floor_hint[sl, None], dist, np.inf)
        if exclude is not None:
            ex = exclude[sl]
            rows = np.flatnonzero(ex >= 0)
            dist[rows, ex[rows]] = np.inf
        kk = min(k, dist.shape[1])
        near = np.argpartition(dist, kk - 1, axis=1)[:, :kk]
        d_near = np.take_along_axis(dist, near, axis=1)
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
