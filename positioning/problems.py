"""Building batch multilateration problems from filtered (fix, anchor) aggregates."""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from positioning.const import CENSOR_MARGIN_DB, FLOOR_LOSS_DB, MAX_ANCHORS_PER_FIX, MAX_CENSOR_ANCHORS
from positioning.maps import SiteMap
from positioning.multilateration import FixProblem
from positioning.radio import AnchorTable

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

HULL_ANCHORS: Final = 4  # the strongest few anchors bound where a fix may be
HULL_MARGIN_M: Final = 10.0  # how far outside their box
FEW_ADVERTS: Final = 3  # with fewer adverts in a window, silence may be packet loss: censor more cautiously


def build_problem(anchors: AnchorTable, site: SiteMap, group: IntArray, anchor: IntArray, mean: FloatArray,
                  var: FloatArray, count: IntArray, p0: FloatArray, n_fix: int, off0: FloatArray, off_sd: FloatArray,
                  sens: float, device_height: float, alive: npt.NDArray[np.bool_]
                  ) -> tuple[FixProblem, IntArray, FloatArray, FloatArray, IntArray, npt.NDArray[np.bool_]]:
    """A FixProblem from (fix, anchor) aggregates: the strongest K heard anchors, and the nearest live
    anchors on the same floor that did not hear, as censoring. Also returns the padded heard anchors,
    their means and variances, each fix's largest reading count (how many adverts it sent) and the
    (fix, anchor) matrix of every anchor that heard the fix."""
    a = anchors
    k_max = MAX_ANCHORS_PER_FIX
    order = np.lexsort((-mean, group))
    g, an, mn, vr, p0s, ct = group[order], anchor[order], mean[order], var[order], p0[order], count[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if g.shape[0] else np.zeros(0, dtype=np.int64)
    rank = np.arange(g.shape[0]) - np.repeat(starts, np.diff(np.r_[starts, g.shape[0]]))
    keep = rank < k_max
    heard_any = np.zeros((n_fix, len(anchors)), dtype=bool)  # every anchor that heard, not only the top K
    heard_any[g, an] = True
    max_count = np.zeros(n_fix, dtype=np.int64)
    np.maximum.at(max_count, g, ct)
    g, an, mn, vr, p0s, rank = g[keep], an[keep], mn[keep], vr[keep], p0s[keep], rank[keep]
    heard = np.full((n_fix, k_max), -1, dtype=np.int64)
    r = np.zeros((n_fix, k_max))
    v = np.ones((n_fix, k_max))
    p0m = np.full((n_fix, k_max), -59.0)
    heard[g, rank], r[g, rank], v[g, rank], p0m[g, rank] = an, mn, vr, p0s
    hi = np.where(heard >= 0, heard, 0)
    floor = a.floor[hi[:, 0]]
    abs_z = a.abs_z(device_height)
    dev_z = a.floor_elevation[floor] + device_height
    loss = FLOOR_LOSS_DB * np.abs(a.floor_level[a.floor[hi]] - a.floor_level[floor][:, None])
    # Censoring: the nearest live anchors on the floor of the strongest one that did not hear.
    same = a.floor[None, :] == floor[:, None]
    d = np.hypot(a.x[None, :] - a.x[hi[:, 0]][:, None], a.y[None, :] - a.y[hi[:, 0]][:, None])
    cand = same & alive[None, :] & ~heard_any
    d = np.where(cand, d, np.inf)
    u = min(MAX_CENSOR_ANCHORS, len(a))
    near = np.argpartition(d, u - 1, axis=1)[:, :u] if u < len(a) else np.argsort(d, axis=1)[:, :u]
    near = np.take_along_axis(near, np.argsort(np.take_along_axis(d, near, axis=1), axis=1, kind="stable"), 1)
    cmask = np.isfinite(np.take_along_axis(d, near, axis=1))
    bounds = np.array([rs.bounds for rs in site.floors], dtype=np.float64)[floor]
    # A device is near the anchors that hear it best: bound the fix to their box plus a margin, so a
    # fit cannot escape to a far corner where every anchor is equally far (and no censoring reaches).
    top = heard[:, :HULL_ANCHORS]
    has = top >= 0
    tx, ty = np.where(has, a.x[np.where(has, top, 0)], np.nan), np.where(has, a.y[np.where(has, top, 0)], np.nan)
    bounds[:, 0] = np.maximum(bounds[:, 0], np.nanmin(tx, axis=1) - HULL_MARGIN_M)
    bounds[:, 1] = np.maximum(bounds[:, 1], np.nanmin(ty, axis=1) - HULL_MARGIN_M)
    bounds[:, 2] = np.minimum(bounds[:, 2], np.nanmax(tx, axis=1) + HULL_MARGIN_M)
    bounds[:, 3] = np.minimum(bounds[:, 3], np.nanmax(ty, axis=1) + HULL_MARGIN_M)
    prob = FixProblem(
        ax=a.x[hi], ay=a.y[hi], dz=abs_z[hi] - dev_z[:, None], p0=p0m - loss, n=a.path_loss_n[hi], r=r,
        w=np.where(heard >= 0, 1.0 / v, 0.0),
        cx=a.x[near], cy=a.y[near], cdz=abs_z[near] - dev_z[:, None], cp0=a.rssi_1m[near], cn=a.path_loss_n[near],
        cmask=cmask, sens=sens + np.where(max_count >= FEW_ADVERTS, 0.0, CENSOR_MARGIN_DB),
        off0=off0, off_sd=off_sd, lo=bounds[:, :2], hi=bounds[:, 2:],
    )
    return prob, heard, r, v, max_count, heard_any
