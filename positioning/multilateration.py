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
from scipy.special import log_ndtr

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
FIXED_PRIOR_SD = 1e-9
CENSOR_NEGLIGIBLE_Z = 8.0  # an unheard anchor predicted 8 sigma below sensitivity costs < 1e-15
GRID_CANDIDATES = 3  # per axis: a 3 x 3 grid of starting points over the bounds
MULTISTART = 2  # a fix that ends poorly is solved again from the best-scoring separated candidate
RETRY_COST_PER_READING = 0.8  # mean Huber cost per heard reading above which a fix is retried
RETRY_MARGIN = 1.0  # cost units the second start must win by (near ties favour the first start)
SOLVER_TOL_COST = 1e-15  # relative cost decrease below which an accepted step means converged
WARM_ITERATIONS = 8  # a fix started from its track's last position needs only a few steps
ANCHOR_CANDIDATES = 4  # the strongest heard anchors' positions are starting candidates
MULTISTART_SEPARATION_M = 3.0  # an offset prior this tight means "offset known": its column is frozen


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

    def second_order(self, theta: FloatArray, psi: FloatArray) -> FloatArray:
        """sum_i psi_i * Hessian(e_i) over the heard and censoring residuals: (B, 3, 3), x-y block only
        (the offset enters linearly). ``psi`` (B, K+U+1) is the loss derivative at each residual."""
        x, y = theta[:, 0:1], theta[:, 1:2]
        out = np.zeros((theta.shape[0], 3, 3))
        k = self.r.shape[1]
        for ax, ay, dz, n, scale, active in (
            (self.ax, self.ay, self.dz, self.n, np.sqrt(self.w), np.ones_like(self.w, dtype=bool)),
            (self.cx, self.cy, self.cdz, self.cn, -self._censor_slope(theta), self.cmask),
        ):
            dx, dy = x - ax, y - ay
            d2 = np.maximum(dx * dx + dy * dy + dz * dz, MIN_DISTANCE_M**2)
            c = 10.0 * n / (LN10 * d2 * d2)
            # mu_xx = -c (d2 - 2 dx^2), mu_xy = 2 c dx dy, mu_yy = -c (d2 - 2 dy^2); e = scale * (r - mu)
            # for heard (scale = sw), h = (mu - S) / sigma for censoring (scale = -1/sigma).
            p = psi[:, :k] if ax is self.ax else np.where(active, psi[:, k:k + ax.shape[1]], 0.0)
            wgt = -p * scale
            out[:, 0, 0] += (wgt * -c * (d2 - 2 * dx * dx)).sum(axis=1)
            out[:, 1, 1] += (wgt * -c * (d2 - 2 * dy * dy)).sum(axis=1)
            out[:, 0, 1] += (wgt * 2 * c * dx * dy).sum(axis=1)
        out[:, 1, 0] = out[:, 0, 1]
        return out

    def _censor_slope(self, theta: FloatArray) -> FloatArray:
        x, y, off = theta[:, 0:1], theta[:, 1:2], theta[:, 2:3]
        cd2 = np.maximum((x - self.cx) ** 2 + (y - self.cy) ** 2 + self.cdz**2, MIN_DISTANCE_M**2)
        cmu = self.cp0 + off - 5.0 * self.cn * np.log10(cd2)
        return _censor_residual(cmu, self.sens[:, None], self.cmask)[1]

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
        b, k = self.r.shape
        u = self.cx.shape[1]
        res = np.empty((b, k + u + 1))
        jac = np.empty((b, k + u + 1, 3))
        res[:, :k] = e
        sg = sw * g
        jac[:, :k, 0] = sg * dx  # d e = -sw * d mu
        jac[:, :k, 1] = sg * dy
        jac[:, :k, 2] = -sw * free

        cdx, cdy = x - self.cx, y - self.cy
        cd2 = np.maximum(cdx * cdx + cdy * cdy + self.cdz * self.cdz, MIN_DISTANCE_M**2)
        cmu = self.cp0 + off - 5.0 * self.cn * np.log10(cd2)
        h, dh = _censor_residual(cmu, self.sens[:, None], self.cmask)
        cg = dh * 10.0 * self.cn / (LN10 * cd2)  # d h / d x = dh/dmu * dmu/dx = dh * (-g * dx)
        res[:, k:k + u] = h
        jac[:, k:k + u, 0] = -cg * cdx
        jac[:, k:k + u, 1] = -cg * cdy
        jac[:, k:k + u, 2] = dh * free

        sd = np.maximum(self.off_sd, FIXED_PRIOR_SD)
        res[:, -1] = ((off[:, 0] - self.off0) / sd) * free[:, 0]
        jac[:, -1, :2] = 0.0
        jac[:, -1, 2] = free[:, 0] / sd
        return res, jac


def screening_cost(prob: FixProblem, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Huber cost at (x, y) (B,) with the offset at its closed-form conditional optimum (heard readings
    and prior, least squares), and that offset. Cheap: no Jacobian. Used to pick starting points."""
    dx, dy = x[:, None] - prob.ax, y[:, None] - prob.ay
    d2 = np.maximum(dx * dx + dy * dy + prob.dz * prob.dz, MIN_DISTANCE_M**2)
    mu0 = prob.p0 - 5.0 * prob.n * np.log10(d2)
    free = prob.off_sd > FIXED_PRIOR_SD
    prior_w = np.where(free, 1.0 / np.maximum(prob.off_sd, FIXED_PRIOR_SD) ** 2, 1.0)
    off = np.where(free, ((prob.w * (prob.r - mu0)).sum(axis=1) + prior_w * prob.off0)
                   / (prob.w.sum(axis=1) + prior_w), prob.off0)
    e = (prob.r - mu0 - off[:, None]) * np.sqrt(prob.w)
    cd2 = np.maximum((x[:, None] - prob.cx) ** 2 + (y[:, None] - prob.cy) ** 2 + prob.cdz**2, MIN_DISTANCE_M**2)
    h, _ = _censor_residual(prob.cp0 + off[:, None] - 5.0 * prob.cn * np.log10(cd2), prob.sens[:, None],
                            prob.cmask)
    p = np.where(free, (off - prob.off0) / np.maximum(prob.off_sd, FIXED_PRIOR_SD), 0.0)
    return huber_cost(e) + huber_cost(h) + huber_cost(p[:, None]), off


def _censor_residual(mu: FloatArray, sens: FloatArray, mask: BoolArray) -> tuple[FloatArray, FloatArray]:
    """Residual whose square / 2 is the censoring cost -log P(rssi < sens) = -log Phi((sens - mu) / sigma),
    and its derivative with respect to mu. Smooth, zero far below sensitivity, linear far above.
    Evaluated only where it is not negligible (an anchor predicted far below sensitivity costs 0)."""
    z = (sens - mu) / SHADOWING_DB
    live = mask & (z < CENSOR_NEGLIGIBLE_Z)
    h = np.zeros(z.shape)
    dh = np.zeros(z.shape)
    if live.any():
        zl = z[live]
        log_cdf = log_ndtr(zl)
        hl = np.sqrt(np.maximum(-2.0 * log_cdf, 0.0))
        ratio = np.exp(-0.5 * zl * zl - 0.5 * np.log(2.0 * np.pi) - log_cdf)  # phi(z) / Phi(z)
        h[live] = hl
        dh[live] = np.where(hl > 1e-150, ratio / (SHADOWING_DB * np.maximum(hl, 1e-150)), 0.0)
    return h, dh


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


def initial_guesses(prob: FixProblem, starts: int = 1) -> FloatArray:
    """(starts, B, 3) starting points: the best-scoring, well separated candidates among the strongest
    heard anchors' positions, the weighted centroid of the strongest three and a coarse grid over the
    bounds, each scored with its conditional best offset."""
    b = prob.size
    heard = prob.w > 0
    strongest = np.argsort(-np.where(heard, prob.r, -np.inf), axis=1)
    top = strongest[:, :3]
    lin = np.where(heard, 10.0 ** ((prob.r - prob.r.max(axis=1, keepdims=True)) / 10.0), 0.0)
    wt = np.take_along_axis(lin, top, axis=1)
    wsum = np.maximum(wt.sum(axis=1), 1e-12)
    cxy = np.stack([(wt * np.take_along_axis(prob.ax, top, 1)).sum(1) / wsum,
                    (wt * np.take_along_axis(prob.ay, top, 1)).sum(1) / wsum], axis=1)
    lin_all = lin / np.maximum(lin.sum(axis=1, keepdims=True), 1e-12)  # centroid of all heard, power-weighted
    cxy_all = np.stack([(lin_all * prob.ax).sum(1), (lin_all * prob.ay).sum(1)], axis=1)
    near = strongest[:, :ANCHOR_CANDIDATES]
    # A coarse grid over the bounds catches fixes whose strongest anchors mislead the local search.
    g = np.linspace(0.1, 0.9, GRID_CANDIDATES)
    gx = (prob.lo[:, :1] + (prob.hi[:, :1] - prob.lo[:, :1]) * np.repeat(g, GRID_CANDIDATES)[None, :])
    gy = (prob.lo[:, 1:] + (prob.hi[:, 1:] - prob.lo[:, 1:]) * np.tile(g, GRID_CANDIDATES)[None, :])
    cand_x = np.concatenate([np.take_along_axis(prob.ax, near, 1), cxy[:, :1], cxy_all[:, :1], gx], axis=1)
    cand_y = np.concatenate([np.take_along_axis(prob.ay, near, 1), cxy[:, 1:], cxy_all[:, 1:], gy], axis=1)
    valid = np.concatenate([np.take_along_axis(heard, near, 1), np.ones((b, 2 + gx.shape[1]), dtype=bool)], axis=1)
    # Nudge candidates off the anchors (the near field is flat) and into bounds.
    cand_x = np.clip(cand_x + 0.5, prob.lo[:, :1], prob.hi[:, :1])
    cand_y = np.clip(cand_y + 0.5, prob.lo[:, 1:], prob.hi[:, 1:])
    n_c = cand_x.shape[1]
    costs = np.full((b, n_c), np.inf)
    offs = np.zeros((b, n_c))
    for j in range(n_c):
        c, o = screening_cost(prob, cand_x[:, j], cand_y[:, j])
        costs[:, j] = np.where(valid[:, j], c, np.inf)
        offs[:, j] = o
    rows = np.arange(b)
    out = np.empty((starts, b, 3))
    # The first start is the power-weighted centroid of all heard anchors (robust and unbiased towards
    # far corners); the others are the best-scoring candidates away from it, used for retries.
    chosen = np.full(b, ANCHOR_CANDIDATES + 1)
    out[0] = np.stack([cand_x[rows, chosen], cand_y[rows, chosen], offs[rows, chosen]], axis=1)
    for s_i in range(1, starts):
        # The next best candidate at least MULTISTART_SEPARATION_M from those already chosen.
        far = np.ones(costs.shape, dtype=bool)
        for prev in out[:s_i]:
            far &= np.hypot(cand_x - prev[:, :1], cand_y - prev[:, 1:2]) > MULTISTART_SEPARATION_M
        masked = np.where(far & np.isfinite(costs), costs, np.inf)
        nxt = np.argmin(masked, axis=1)
        nxt = np.where(np.isfinite(masked[rows, nxt]), nxt, chosen)
        out[s_i] = np.stack([cand_x[rows, nxt], cand_y[rows, nxt], offs[rows, nxt]], axis=1)
    return out


def _best_offset(prob: FixProblem, theta: FloatArray) -> FloatArray:
    """Move the offset to its conditional optimum given x, y (it enters the residuals linearly)."""
    res, jac = prob.residuals(theta)
    jo = jac[:, :, 2]
    om = huber_weights(res)
    denom = (om * jo * jo).sum(axis=1)
    out = theta.copy()
    out[:, 2] -= np.where(denom > 0, (om * jo * res).sum(axis=1) / np.maximum(denom, 1e-300), 0.0)
    return out


def solve(prob: FixProblem, theta0: FloatArray | None = None, iterations: int = SOLVER_ITERATIONS,
          starts: int = MULTISTART) -> FixSolution:
    """Robust LM over all fixes at once, from ``starts`` starting points each (the best result wins).

    Parameters are clipped to the bounds after each step. With ``theta0`` (B, 3) given, that single
    start is used.
    """
    if theta0 is not None:
        return _solve_from(prob, theta0.copy(), iterations)
    guesses = initial_guesses(prob, starts)
    sol = _solve_from(prob, guesses[0], iterations)
    if starts == 1:
        return sol
    # Fixes that ended poorly (high cost per heard reading) try their other starting points.
    n_heard = np.maximum((prob.w > 0).sum(axis=1), 1)
    retry = np.flatnonzero(sol.cost / n_heard > RETRY_COST_PER_READING)
    if retry.shape[0] == 0:
        return sol
    sub = _subset(prob, retry)
    x, y, off, acc, cost, cov = (a.copy() for a in (sol.x, sol.y, sol.offset, sol.accuracy_m, sol.cost, sol.cov))
    for s_i in range(1, starts):
        alt = _solve_from(sub, guesses[s_i][retry], iterations)
        better = alt.cost < cost[retry] - RETRY_MARGIN  # a clearly better fit, not a near tie far away
        tgt = retry[better]
        x[tgt], y[tgt], off[tgt] = alt.x[better], alt.y[better], alt.offset[better]
        acc[tgt], cost[tgt], cov[tgt] = alt.accuracy_m[better], alt.cost[better], alt.cov[better]
    return FixSolution(x, y, off, acc, cost, cov)


_TRACE: list[int] | None = None  # set to a list to record active fixes per iteration (profiling)


def solve_warm(prob: FixProblem, theta0: FloatArray, warm: BoolArray, iterations: int = WARM_ITERATIONS) -> FixSolution:
    """Fixes with ``warm`` set start from ``theta0`` (a track's last estimate) with a short run; the
    others get the full multi-start solve. Results in input order."""
    if warm.all():
        return _solve_from(prob, theta0.copy(), iterations)
    if not warm.any():
        return solve(prob)
    w_idx, c_idx = np.flatnonzero(warm), np.flatnonzero(~warm)
    hot = _solve_from(_subset(prob, w_idx), theta0[w_idx].copy(), iterations)
    cold = solve(_subset(prob, c_idx))
    out = []
    for f in FixSolution.__dataclass_fields__:
        h, c = getattr(hot, f), getattr(cold, f)
        arr = np.empty((prob.size, *h.shape[1:]), dtype=h.dtype)
        arr[w_idx], arr[c_idx] = h, c
        out.append(arr)
    return FixSolution(*out)


def _solve_from(prob: FixProblem, theta: FloatArray, iterations: int) -> FixSolution:
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
        if _TRACE is not None:
            _TRACE.append(idx.shape[0])
        r_a, j_a = res[idx], jac[idx]
        # Gradient with psi(e)/e, curvature with psi'(e) (1 inside the Huber threshold, ~0 outside):
        # Newton-like steps converge quadratically where IRLS would crawl.
        om = huber_weights(r_a)
        curv = np.where(np.abs(r_a) <= HUBER_K, 1.0, 1e-3 * om)
        h = np.einsum("bki,bkj->bij", j_a * curv[:, :, None], j_a)
        g = np.einsum("bki,bk->bi", j_a * om[:, :, None], r_a)
        # Full Newton: add the residuals' own curvature, so convergence is quadratic even in the
        # flat offset-vs-range valley where Gauss-Newton crawls. LM damping keeps it safe far away.
        sub = _subset(prob, idx)
        newton = h + sub.second_order(theta[idx], om * r_a)
        # Use the full Hessian only where it is positive definite (near a minimum); elsewhere the
        # Gauss-Newton one, which always gives a descent direction.
        m1 = newton[:, 0, 0]
        m2 = newton[:, 0, 0] * newton[:, 1, 1] - newton[:, 0, 1] * newton[:, 1, 0]
        pd = (m1 > 0) & (m2 > 0) & (np.linalg.det(newton) > 0)
        h = np.where(pd[:, None, None], newton, h)
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
        res_c, jac_c = sub.residuals(cand)
        cost_c = huber_cost(res_c)
        better = cost_c <= cost[idx]
        gain = cost[idx] - cost_c
        moved = np.hypot(cand[:, 0] - theta[idx, 0], cand[:, 1] - theta[idx, 1])  # after clipping to bounds
        acc = idx[better]
        theta[acc], res[acc], jac[acc], cost[acc] = cand[better], res_c[better], jac_c[better], cost_c[better]
        lam[acc] = np.maximum(lam[acc] / LM_DOWN, 1e-12)
        lam[idx[~better]] *= LM_UP
        # Converged: a tiny accepted move taken as (nearly) a Newton step, not one shrunk by damping,
        # or an accepted step that no longer lowers the cost measurably.
        done = (better & (lam[idx] < 1e-2) & ((moved < SOLVER_TOL_M) | (gain < SOLVER_TOL_COST * (1.0 + cost_c))))
        done |= lam[idx] > 1e10
        active[idx[done]] = False
    om = huber_weights(res)
    jw = jac * om[:, :, None]
    h = np.einsum("bki,bkj->bij", jw, jac) + np.eye(3) * 1e-9
    cov = np.linalg.inv(h)
    acc_m = np.sqrt(np.maximum(cov[:, 0, 0] + cov[:, 1, 1], 0.0))
    return FixSolution(theta[:, 0].copy(), theta[:, 1].copy(), theta[:, 2].copy(),
                       np.clip(acc_m, ACCURACY_MIN_M, ACCURACY_MAX_M), cost, cov)


def _stack(probs: list[FixProblem]) -> FixProblem:
    return FixProblem(*(np.concatenate([getattr(p, f) for p in probs]) for f in FixProblem.__dataclass_fields__))


def _subset(prob: FixProblem, idx: npt.NDArray[np.int64]) -> FixProblem:
    return FixProblem(*(getattr(prob, f)[idx] for f in FixProblem.__dataclass_fields__))
