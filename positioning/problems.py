"""Building batch multilateration problems from filtered (fix, anchor) aggregates."""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from positioning.const import (
    ACCURACY_MIN_M,
    CENSOR_MARGIN_DB,
    FLOOR_LOSS_DB,
    MAX_ANCHORS_PER_FIX,
    MAX_CENSOR_ANCHORS,
    SHADOWING_DB,
)
from positioning.maps import SiteMap
from positioning.multilateration import FixProblem
from positioning.radio import AnchorTable

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

HULL_ANCHORS: Final = 4  # the strongest few anchors bound where a fix may be
HULL_MARGIN_M: Final = 10.0  # how far outside their box
CELL_RMS_SHARE: Final = 1.0 / np.sqrt(6.0)  # RMS radius of a square cell, per unit of its side
FEW_ADVERTS: Final = 3  # with fewer adverts in a window, silence may be packet loss: censor more cautiously


def smallest_per_group(group: IntArray, key: FloatArray, k: int) -> tuple[IntArray, IntArray]:
    """Rows of a table sorted by ``group`` holding the ``k`` smallest keys of each group, and each one's
    rank within its group (0 = smallest). A (groups, longest group) matrix sorted row by row, which is
    much cheaper than one global sort; ties keep the row order."""
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if group.shape[0] else np.zeros(0, np.int64)
    lens = np.diff(np.r_[starts, group.shape[0]])
    table = np.full((starts.shape[0], int(lens.max()) if lens.shape[0] else 1), np.inf)
    table[np.repeat(np.arange(starts.shape[0]), lens), np.arange(group.shape[0]) - np.repeat(starts, lens)] = key
    top = np.argsort(table, axis=1, kind="stable")[:, :k]
    valid = top < lens[:, None]
    return (starts[:, None] + top)[valid], np.nonzero(valid)[1]


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
    if group.shape[0] > 1 and bool(np.any(group[1:] < group[:-1])):
        by_group = np.argsort(group, kind="stable")
        group, anchor, count = group[by_group], anchor[by_group], count[by_group]
        mean, var, p0 = mean[by_group], var[by_group], p0[by_group]
    heard_any = np.zeros((n_fix, len(anchors)), dtype=bool)  # every anchor that heard, not only the top K
    heard_any[group, anchor] = True
    max_count = np.zeros(n_fix, dtype=np.int64)
    np.maximum.at(max_count, group, count)
    src, rank = smallest_per_group(group, -mean, k_max)  # the strongest K of each fix
    g, an, mn, vr, p0s = group[src], anchor[src], mean[src], var[src], p0[src]
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
    tx, ty = a.x[np.where(has, top, 0)], a.y[np.where(has, top, 0)]
    m = HULL_MARGIN_M
    box = np.stack([np.where(has, tx, np.inf).min(axis=1) - m, np.where(has, ty, np.inf).min(axis=1) - m,
                    np.where(has, tx, -np.inf).max(axis=1) + m, np.where(has, ty, -np.inf).max(axis=1) + m], axis=1)
    heard_some = has[:, 0]  # a fix nobody heard keeps the floor's bounds
    bounds[:, :2] = np.where(heard_some[:, None], np.maximum(bounds[:, :2], box[:, :2]), bounds[:, :2])
    bounds[:, 2:] = np.where(heard_some[:, None], np.minimum(bounds[:, 2:], box[:, 2:]), bounds[:, 2:])
    prob = FixProblem(
        ax=a.x[hi], ay=a.y[hi], dz=abs_z[hi] - dev_z[:, None], p0=p0m - loss, n=a.path_loss_n[hi], r=r,
        w=np.where(heard >= 0, 1.0 / v, 0.0),
        cx=a.x[near], cy=a.y[near], cdz=abs_z[near] - dev_z[:, None], cp0=a.rssi_1m[near], cn=a.path_loss_n[near],
        cmask=cmask, sens=sens + np.where(max_count >= FEW_ADVERTS, 0.0, CENSOR_MARGIN_DB),
        off0=off0, off_sd=off_sd, lo=bounds[:, :2], hi=bounds[:, 2:],
    )
    return prob, heard, r, v, max_count, heard_any


def uncertainty_bound(prob: FixProblem, offset: FloatArray, spacing: float | None, x: FloatArray,
                      y: FloatArray) -> FloatArray:
    """The most the uncertainty (m, RMS radius) of an estimate at (x, y) can honestly be, from the fix's
    strongest anchor: how far from the anchor horizontally its reading lets the device be, one shadowing
    sd out, combined with how far the estimate is from that anchor, and (``spacing`` given: anchors that
    far apart) the RMS radius of that anchor's cell. Under a ceiling anchor the fit's covariance sees a
    flat range (the height dominates) and claims metres it has not got. Inf where nothing was heard."""
    far = np.clip(10.0 ** ((prob.p0[:, 0] + offset - (prob.r[:, 0] - SHADOWING_DB)) / (10.0 * prob.n[:, 0])),
                  0.5, 60.0)
    reach = np.sqrt(np.maximum(far**2 - prob.dz[:, 0] ** 2, ACCURACY_MIN_M**2))
    reach = np.hypot(reach, np.hypot(x - prob.ax[:, 0], y - prob.ay[:, 0]))
    if spacing is not None:
        reach = np.minimum(reach, CELL_RMS_SHARE * spacing)
    out: FloatArray = np.where(prob.w[:, 0] > 0, reach, np.inf)
    return out
