"""Radio calibration from a site survey (readings at known points) and from anchors that hear each other.

Per anchor, the 1 m power and path-loss exponent are fitted by maximum likelihood with censoring:
a survey point where the anchor was heard contributes a (Huber-robust) Gaussian term; a point where it
was not heard contributes the probability of being below the receivers' sensitivity. Fitting heard
readings alone would bias the exponent low (far anchors are heard only when shadowing lifts them).
Survey devices get an RSSI offset each; their median is the reference (offset 0). Weak priors keep
anchors with little data near their nominal values.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize
from scipy.special import log_ndtr

from positioning.const import (
    HUBER_K,
    PATH_LOSS_N_BOUNDS,
    RSSI_1M_BOUNDS,
    SENSITIVITY_DBM,
    SHADOWING_DB,
)
from positioning.filtering import aggregate
from positioning.radio import AnchorTable, distance

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ObjArray = npt.NDArray[np.object_]

PRIOR_P0_SD_DB: Final = 10.0  # the nominal 1 m power is a loose guess
PRIOR_N: Final = 2.0
PRIOR_N_SD: Final = 0.6  # indoor exponents mostly fall within 1.6-3.0
MIN_HEARD_POINTS: Final = 4  # fewer heard survey points: keep the anchor's nominal parameters
CENSOR_RANGE_M: Final = 40.0  # unheard points farther than this say nothing worth fitting
ROUNDS: Final = 3  # alternate anchor fits and survey-device offsets
SURVEY_SENSITIVITY_QUANTILE: Final = 0.01
# A walking survey logs each reading with the surveyor's position at its own time: grouped by (device, t)
# nearly every point is one reading, useless for fitting or matching (and a million points). Such a
# survey's readings are pooled per device, floor and this many seconds, at their mean position.
WALKING_SURVEY_WINDOW_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class Survey:
    """Survey readings as columns; points are grouped by (device, scan)."""

    t: FloatArray
    device: ObjArray
    anchor: ObjArray
    rssi: FloatArray
    tx: FloatArray
    scan: ObjArray
    x: FloatArray
    y: FloatArray
    floor: ObjArray | None
    scan_given: bool = True  # False: ``scan`` holds each reading's time (points by (device, t))


@dataclass(frozen=True, slots=True)
class SurveyPoints:
    """Per point: position, floor index, survey device index; per (point, anchor): mean, spread, count."""

    x: FloatArray
    y: FloatArray
    floor: IntArray
    device: IntArray
    t: FloatArray  # latest reading time of each point
    point: IntArray  # (G,) point of each aggregate
    anchor: IntArray  # (G,)
    mean: FloatArray
    spread: FloatArray
    count: IntArray
    n_devices: int
    sensitivity: float
    device_offset: FloatArray | None = None  # (n_devices,) each survey device's RSSI offset, once calibrated

    def radio_map(self, n_anchors: int) -> FloatArray:
        """(points, anchors) mean RSSI, NaN where not heard, less each survey device's offset."""
        out = np.full((self.x.shape[0], n_anchors), np.nan)
        off = 0.0 if self.device_offset is None else self.device_offset[self.device[self.point]]
        out[self.point, self.anchor] = self.mean - off
        return out


def survey_points(anchors: AnchorTable, survey: Survey) -> SurveyPoints:
    index = anchors.index
    anchor = np.fromiter((index[a] for a in survey.anchor), dtype=np.int64, count=survey.anchor.shape[0])
    dev_s = survey.device.astype(str)
    key = np.char.add(np.char.add(dev_s, "\x1f"), survey.scan.astype(str))
    keys, point = np.unique(key, return_inverse=True)
    if not survey.scan_given and keys.shape[0] and np.median(np.bincount(point)) < 2:
        window = np.floor(survey.t / WALKING_SURVEY_WINDOW_S).astype(np.int64).astype(str)
        floor_s = survey.floor.astype(str) if survey.floor is not None else np.full(dev_s.shape, "")
        key = np.char.add(np.char.add(np.char.add(np.char.add(dev_s, "\x1f"), floor_s), "\x1f"), window)
        keys, point = np.unique(key, return_inverse=True)
    point = point.astype(np.int64)
    n_pts = keys.shape[0]
    size = np.bincount(point, minlength=n_pts).astype(np.float64)
    px = np.bincount(point, weights=survey.x, minlength=n_pts) / np.maximum(size, 1.0)
    py = np.bincount(point, weights=survey.y, minlength=n_pts) / np.maximum(size, 1.0)
    floor = np.zeros(n_pts, dtype=np.int64)
    if survey.floor is not None:
        fmap = {f: i for i, f in enumerate(anchors.floor_ids)}
        floor[point] = np.fromiter((fmap.get(str(f), 0) for f in survey.floor), dtype=np.int64,
                                   count=survey.floor.shape[0])
    dev_names, dev = np.unique(survey.device.astype(str), return_inverse=True)
    pdev = np.zeros(n_pts, dtype=np.int64)
    pdev[point] = dev
    pt = np.full(n_pts, -np.inf)
    np.maximum.at(pt, point, survey.t)
    agg = aggregate(point, anchor, survey.rssi)
    sens = float(np.quantile(survey.rssi, SURVEY_SENSITIVITY_QUANTILE)) - 1.0 if survey.rssi.size > 100 \
        else SENSITIVITY_DBM
    return SurveyPoints(px, py, floor, pdev, pt, agg.group, agg.anchor, agg.mean, agg.spread, agg.count,
                        int(dev_names.shape[0]), sens)


def calibrate(anchors: AnchorTable, survey: Survey, device_height: float
              ) -> tuple[AnchorTable, npt.NDArray[np.bool_], str, SurveyPoints]:
    """Anchors with fitted 1 m powers and exponents, which were fitted, a one-line note, and the survey's
    points with their devices' offsets."""
    pts = survey_points(anchors, survey)
    fitted, offsets, mask = fit_anchors(anchors, pts, device_height)
    n_fit = int(mask.sum())
    note = f"survey: {pts.x.shape[0]} points, {n_fit} of {len(anchors)} anchors calibrated"
    if 1 < pts.n_devices <= 6:
        note += f", survey device offsets {', '.join(f'{o:+.1f}' for o in offsets)} dB"
    elif pts.n_devices > 6:
        note += f", {pts.n_devices} survey devices, offsets {offsets.min():+.1f} to {offsets.max():+.1f} dB"
    return fitted, mask, note, replace(pts, device_offset=offsets)


def fit_anchors(anchors: AnchorTable, pts: SurveyPoints, device_height: float
                ) -> tuple[AnchorTable, FloatArray, npt.NDArray[np.bool_]]:
    n_a = len(anchors)
    p0 = anchors.rssi_1m.copy()
    n = anchors.path_loss_n.copy()
    dev_off = np.zeros(pts.n_devices)
    heard = np.zeros((pts.x.shape[0], n_a), dtype=bool)
    heard[pts.point, pts.anchor] = True
    fitted = np.zeros(n_a, dtype=bool)
    for _ in range(ROUNDS):
        for a in range(n_a):
            rows = pts.anchor == a
            if rows.sum() < MIN_HEARD_POINTS:
                continue
            hp = pts.point[rows]
            d_h = distance(anchors, np.full(hp.shape[0], a), pts.x[hp], pts.y[hp], pts.floor[hp], device_height)
            same_floor = pts.floor == anchors.floor[a]
            unheard = same_floor & ~heard[:, a]
            d_u_all = distance(anchors, np.full(pts.x.shape[0], a), pts.x, pts.y, pts.floor, device_height)
            unheard &= d_u_all < CENSOR_RANGE_M
            d_u = d_u_all[unheard]
            r_h = pts.mean[rows] - dev_off[pts.device[hp]]
            w_h = np.sqrt(np.minimum(pts.count[rows], 10).astype(np.float64))  # more readings: a firmer mean
            off_u = dev_off[pts.device[unheard]]
            res = _fit_one(r_h, d_h, w_h, d_u, off_u, pts.sensitivity, anchors.rssi_1m[a], same_floor_loss=0.0)
            if res is not None:
                p0[a], n[a] = res
                fitted[a] = True
        # Survey-device offsets: median residual per device, re-centred on their median.
        if pts.n_devices > 1:
            d_all = distance(anchors, pts.anchor, pts.x[pts.point], pts.y[pts.point], pts.floor[pts.point],
                             device_height)
            mu = p0[pts.anchor] - 10.0 * n[pts.anchor] * np.log10(d_all)
            resid = pts.mean - mu
            dev_of_row = pts.device[pts.point]
            dev_off = np.array([np.median(resid[dev_of_row == k]) if (dev_of_row == k).any() else 0.0
                                for k in range(pts.n_devices)])
            dev_off -= np.median(dev_off)
    return anchors.with_params(p0, n), dev_off, fitted


def _fit_one(r_h: FloatArray, d_h: FloatArray, w_h: FloatArray, d_u: FloatArray, off_u: FloatArray, sens: float,
             p0_prior: float, same_floor_loss: float) -> tuple[float, float] | None:
    lh = np.log10(d_h)
    lu = np.log10(d_u)
    sigma = SHADOWING_DB

    def nll(theta: FloatArray) -> float:
        p0, n = float(theta[0]), float(theta[1])
        e = (r_h - (p0 - 10.0 * n * lh)) / sigma
        a = np.abs(e)
        rho = np.where(a <= HUBER_K, 0.5 * e * e, HUBER_K * a - 0.5 * HUBER_K**2)
        total = float((w_h * rho).sum())
        if lu.size:
            mu_u = p0 + off_u - 10.0 * n * lu - same_floor_loss
            total -= float(log_ndtr((sens - mu_u) / sigma).sum())
        total += 0.5 * ((p0 - p0_prior) / PRIOR_P0_SD_DB) ** 2 + 0.5 * ((n - PRIOR_N) / PRIOR_N_SD) ** 2
        return total

    x0 = np.array([p0_prior, PRIOR_N])
    res = minimize(nll, x0, method="L-BFGS-B", bounds=[RSSI_1M_BOUNDS, PATH_LOSS_N_BOUNDS])
    if not np.all(np.isfinite(res.x)):
        return None
    return float(res.x[0]), float(res.x[1])
