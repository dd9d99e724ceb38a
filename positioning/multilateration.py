"""Batch multilateration: one solver call positions every fix of a window at once.

Each fix (a device in a window, or a phone-mode scan) has up to K heard anchors with a mean RSSI and
a weight, a few unheard anchors that censor it ("a near receiver did not hear it"), and a prior on the
device's RSSI offset. The unknowns are ``x, y`` and the offset. The objective, identical to what
``scipy.optimize.least_squares(loss="huber", f_scale=HUBER_K)`` minimises, is::

    sum huber(sqrt(w_k) * (r_k - mu_k))  +  sum huber(max(0, mu_u - S) / sigma)  +  huber((off - off0) / sd)

with ``mu = p0 + off - 10 n log10(d)``. It is solved by vectorized Levenberg-Marquardt with iteratively
reweighted least squares over all fixes together: (B, 3) parameters, (B, 3, 3) normal equations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from positioning.const import (
    ACCURACY_MAX_M,
    ACCURACY_MIN_M,
    HUBER_K,
    LN10,
    MIN_DISTANCE_M,
    SHADOWING_DB,
    SOLVER_ITERATIONS,
    SOLVER_TOL_M,
)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

LM_LAMBDA0 = 0.1  # initial damping relative to the diagonal; far starts need some
LM_UP = 10.0
LM_DOWN = 10.0
FIXED_PRIOR_SD = 1e-9  # an offset prior this tight means "offset known": its column is frozen


@dataclass(frozen=True, slots=True)
class FixProblem:
    """Padded arrays for B fixes: K heard anchors and U censoring anchors each (mask by weight 0)."""

    ax: FloatArray  # (B, K) anchor x
    ay: FloatArray  # (B, K)
    dz: FloatArray  # (B, K) anchor height above the device
    p0: FloatArray  # (B, K) RSSI at 1 m including floor losses for this device's floor
    n: FloatArray  # (B, K) path-loss exponent
    r: FloatArray  # (B, K) measured (filtered) RSSI
    w: FloatArray  # (B, K) 1 / variance of r; 0 for padding
    cx: FloatArray  # (B, U) unheard anchor x
    cy: FloatArray  # (B, U)
    cdz: FloatArray  # (B, U)
    cp0: FloatArray  # (B, U)
    cn: FloatArray  # (B, U)
    cmask: BoolArray  # (B, U) candidate is used
    sens: FloatArray  # (B,) sensitivity threshold, dBm
    off0: FloatArray  # (B,) prior mean of the device offset
    off_sd: FloatArray  # (B,) prior sd of the offset; <= FIXED_PRIOR_SD freezes it
    lo: FloatArray  # (B, 2) lower bounds on x, y
    hi: FloatArray  # (B, 2) upper bounds on x, y

    @property
    def size(self) -> int:
        return int(self.r.shape[0])

    def residuals(self, theta: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Stacked residuals (B, K+U+1) and Jacobian (B, K+U+1, 3) at ``theta`` (B, 3)."""
        x, y, off = theta[:, 0:1], theta[:, 1:2], theta[:, 2:3]
        free = (self.off_sd > FIXED_PRIOR_SD).astype(np.float64)[:, None]
        sw = np.sqrt(self.w)
        dx, dy = x - self.ax, y - self.ay
        d2 = np.maximum(dx * dx + dy * dy + self.dz * self.dz, MIN_DISTANCE_M**2)
        mu = self.p0 + off - 5.0 * self.n * np.log10(d2)
        e = (self.r - mu) * sw
        g = 10.0 * self.n / (LN10 * d2)  # -d mu / d(x) = g * dx
        je = np.stack([sw * g * dx, sw * g * dy, -sw * free], axis=-1)  # d e = -sw * d mu

        cdx, cdy = x - self.cx, y - self.cy
        cd2 = np.maximum(cdx * cdx + cdy * cdy + self.cdz * self.cdz, MIN_DISTANCE_M**2)
        cmu = self.cp0 + off - 5.0 * self.cn * np.log10(cd2)
        active = self.cmask & (cmu > self.sens[:, None])
        h = np.where(active, (cmu - self.sens[:, None]) / SHADOWING_DB, 0.0)
        cg = np.where(active, 10.0 * self.cn / (LN10 * cd2) / SHADOWING_DB, 0.0)
        jh = np.stack([-cg * cdx, -cg * cdy, np.where(active, 1.0 / SHADOWING_DB, 0.0) * free], axis=-1)

        sd = np.maximum(self.off_sd, FIXED_PRIOR_SD)
        p = ((off[:, 0] - self.off0) / sd) * free[:, 0]
        jp = np.zeros((theta.shape[0], 1, 3))
        jp[:, 0, 2] = free[:, 0] / sd
        res = np.concatenate([e, h, p[:, None]], axis=1)
        jac = np.concatenate([je, jh, jp], axis=1)
        return res, jac


@dataclass(frozen=True, slots=True)
class FixSolution:
    x: FloatArray  # (B,)
    y: FloatArray
    offset: FloatArray
    accuracy_m: FloatArray
    cost: FloatArray
    cov: FloatArray  # (B, 3, 3) covariance of (x, y, offset)


def huber_cost(res: FloatArray, k: float = HUBER_K) -> FloatArray:
    a = np.abs(res)
    return np.asarray(np.where(a <= k, 0.5 * res * res, k * a - 0.5 * k * k).sum(axis=1), dtype=np.float64)


def huber_weights(res: FloatArray, k: float = HUBER_K) -> FloatArray:
    a = np.abs(res)
    return np.asarray(np.where(a <= k, 1.0, k / np.maximum(a, 1e-300)), dtype=np.float64)


def initial_guess(prob: FixProblem) -> FloatArray:
    """Best of: each heard anchor's position and the weighted centroid of the strongest anchors."""
    b, k = prob.r.shape
    heard = prob.w > 0
    lin = np.where(heard, 10.0 ** ((prob.r - prob.r.max(axis=1, keepdims=True)) / 10.0), 0.0)
    top = np.argsort(-np.where(heard, prob.r, -np.inf), axis=1)[:, :3]
    wt = np.take_along_axis(lin, top, axis=1)
    wsum = np.maximum(wt.sum(axis=1), 1e-12)
    cxy = np.stack([(wt * np.take_along_axis(prob.ax, top, 1)).sum(1) / wsum,
                    (wt * np.take_along_axis(prob.ay, top, 1)).sum(1) / wsum], axis=1)
    cand_x = np.concatenate([prob.ax, cxy[:, :1]], axis=1)  # (B, K+1)
    cand_y = np.concatenate([prob.ay, cxy[:, 1:]], axis=1)
    valid = np.concatenate([heard, np.ones((b, 1), dtype=bool)], axis=1)
    # Nudge candidates off the anchors (the near field is flat) and into bounds.
    cand_x = np.clip(cand_x + 0.5, prob.lo[:, :1], prob.hi[:, :1])
    cand_y = np.clip(cand_y + 0.5, prob.lo[:, 1:], prob.hi[:, 1:])
    costs = np.full((b, k + 1), np.inf)
    offs = np.zeros((b, k + 1))
    for j in range(k + 1):
        theta = np.stack([cand_x[:, j], cand_y[:, j], prob.off0], axis=1)
        theta = _best_offset(prob, theta)
        res, _ = prob.residuals(theta)
        costs[:, j] = np.where(valid[:, j], huber_cost(res), np.inf)
        offs[:, j] = theta[:, 2]
    best = np.argmin(costs, axis=1)
    rows = np.arange(b)
    return np.stack([cand_x[rows, best], cand_y[rows, best], offs[rows, best]], axis=1)


def _best_offset(prob: FixProblem, theta: FloatArray) -> FloatArray:
    """Move the offset to its conditional optimum given x, y (it enters the residuals linearly)."""
    res, jac = prob.residuals(theta)
    jo = jac[:, :, 2]
    om = huber_weights(res)
    denom = (om * jo * jo).sum(axis=1)
    out = theta.copy()
    out[:, 2] -= np.where(denom > 0, (om * jo * res).sum(axis=1) / np.maximum(denom, 1e-300), 0.0)
    return out


def solve(prob: FixProblem, theta0: FloatArray | None = None, iterations: int = SOLVER_ITERATIONS) -> FixSolution:
    """Robust LM over all fixes at once. Parameters are clipped to the bounds after each step."""
    theta = initial_guess(prob) if theta0 is None else theta0.copy()
    theta[:, :2] = np.clip(theta[:, :2], prob.lo, prob.hi)
    b = prob.size
    lam = np.full(b, LM_LAMBDA0)
    res, jac = prob.residuals(theta)
    cost = huber_cost(res)
    active = np.ones(b, dtype=bool)
    eye = np.eye(3)
    for _ in range(iterations):
        if not active.any():
            break
        idx = np.flatnonzero(active)
        r_a, j_a = res[idx], jac[idx]
        # Gradient with psi(e)/e, curvature with psi'(e) (1 inside the Huber threshold, ~0 outside):
        # Newton-like steps converge quadratically where IRLS would crawl.
        om = huber_weights(r_a)
        curv = np.where(np.abs(r_a) <= HUBER_K, 1.0, 1e-3 * om)
        h = np.einsum("bki,bkj->bij", j_a * curv[:, :, None], j_a)
        g = np.einsum("bki,bk->bi", j_a * om[:, :, None], r_a)
        # Active set: a coordinate at a bound whose gradient pushes it outward is held there.
        th = theta[idx]
        free = np.ones((idx.shape[0], 3), dtype=bool)
        free[:, :2] = ~(((th[:, :2] <= prob.lo[idx]) & (g[:, :2] > 0)) | ((th[:, :2] >= prob.hi[idx]) & (g[:, :2] < 0)))
        fm = free.astype(np.float64)
        h = h * fm[:, :, None] * fm[:, None, :] + (1.0 - fm)[:, :, None] * eye
        g = g * fm
        diag = np.maximum(np.diagonal(h, axis1=1, axis2=2), 1e-9)
        h_damped = h + (lam[idx][:, None] * diag)[:, :, None] * eye
        step = -np.linalg.solve(h_damped, g[:, :, None])[:, :, 0]
        cand = theta[idx] + step
        cand[:, :2] = np.clip(cand[:, :2], prob.lo[idx], prob.hi[idx])
        sub = _subset(prob, idx)
        # The offset enters linearly: its conditional optimum given the new x, y walks the
        # offset-vs-range valley much faster than the joint step alone.
        cand = _best_offset(sub, cand)
        res_c, jac_c = sub.residuals(cand)
        cost_c = huber_cost(res_c)
        better = cost_c <= cost[idx]
        acc = idx[better]
        theta[acc], res[acc], jac[acc], cost[acc] = cand[better], res_c[better], jac_c[better], cost_c[better]
        lam[acc] = np.maximum(lam[acc] / LM_DOWN, 1e-12)
        lam[idx[~better]] *= LM_UP
        moved = np.hypot(step[:, 0], step[:, 1])
        done = (better & (moved < SOLVER_TOL_M)) | (lam[idx] > 1e8)
        active[idx[done]] = False
    om = huber_weights(res)
    jw = jac * om[:, :, None]
    h = np.einsum("bki,bkj->bij", jw, jac) + np.eye(3) * 1e-9
    cov = np.linalg.inv(h)
    acc_m = np.sqrt(np.maximum(cov[:, 0, 0] + cov[:, 1, 1], 0.0))
    return FixSolution(theta[:, 0].copy(), theta[:, 1].copy(), theta[:, 2].copy(),
                       np.clip(acc_m, ACCURACY_MIN_M, ACCURACY_MAX_M), cost, cov)


def _subset(prob: FixProblem, idx: npt.NDArray[np.int64]) -> FixProblem:
    return FixProblem(*(getattr(prob, f)[idx] for f in FixProblem.__dataclass_fields__))
