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
WORKING_SET_SHRINK = 0.7  # re-pack the working set when fewer than this share of it is still iterating
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

    def evaluate(self, theta: FloatArray) -> Evaluation:
        """Residuals (B, K+U+1), Jacobian columns, and the geometry the Newton term needs, at ``theta``."""
        x, y, off = theta[:, 0:1], theta[:, 1:2], theta[:, 2:3]
        free = (self.off_sd > FIXED_PRIOR_SD).astype(np.float64)[:, None]
        b, k = self.r.shape
        u = self.cx.shape[1]
        sw = np.sqrt(self.w)
        dx = np.concatenate([x - self.ax, x - self.cx], axis=1)
        dy = np.concatenate([y - self.ay, y - self.cy], axis=1)
        dz = np.concatenate([self.dz, self.cdz], axis=1)
        n = np.concatenate([self.n, self.cn], axis=1)
        d2 = np.maximum(dx * dx + dy * dy + dz * dz, MIN_DISTANCE_M**2)
        path = 5.0 * n * np.log10(d2)
        g = 10.0 * n / (LN10 * d2)  # -d mu / d(x) = g * dx
        res = np.empty((b, k + u + 1))
        jx = np.empty((b, k + u + 1))
        jy = np.empty((b, k + u + 1))
        jo = np.empty((b, k + u + 1))
        res[:, :k] = (self.r - (self.p0 + off - path[:, :k])) * sw
        sg = sw * g[:, :k]
        jx[:, :k] = sg * dx[:, :k]  # d e = -sw * d mu
        jy[:, :k] = sg * dy[:, :k]
        jo[:, :k] = -sw * free
        h, dh = _censor_residual(self.cp0 + off - path[:, k:], self.sens[:, None], self.cmask)
        cg = dh * g[:, k:]  # d h / d x = dh/dmu * dmu/dx = dh * (-g * dx)
        res[:, k:k + u] = h
        jx[:, k:k + u] = -cg * dx[:, k:]
        jy[:, k:k + u] = -cg * dy[:, k:]
        jo[:, k:k + u] = dh * free
        sd = np.maximum(self.off_sd, FIXED_PRIOR_SD)
        res[:, -1] = ((off[:, 0] - self.off0) / sd) * free[:, 0]
        jx[:, -1] = 0.0
        jy[:, -1] = 0.0
        jo[:, -1] = free[:, 0] / sd
        # e = scale * (r - mu): scale = sw for heard readings, -dh for censoring (h grows with mu).
        scale = np.concatenate([sw, -dh], axis=1)
        return Evaluation(res, jx, jy, jo, dx, dy, d2, g / d2, scale)

    def residuals(self, theta: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Stacked residuals (B, K+U+1) and Jacobian (B, K+U+1, 3) at ``theta`` (B, 3)."""
        ev = self.evaluate(theta)
        return ev.res, np.stack([ev.jx, ev.jy, ev.jo], axis=-1)


@dataclass(frozen=True, slots=True)
class Evaluation:
    res: FloatArray  # (B, R) residuals: K heard, U censoring, 1 offset prior
    jx: FloatArray  # (B, R) d res / d x
    jy: FloatArray
    jo: FloatArray  # d res / d offset
    dx: FloatArray  # (B, K+U) geometry of the heard and censoring anchors
    dy: FloatArray
    d2: FloatArray
    c: FloatArray  # 10 n / (ln 10 d^4)
    scale: FloatArray  # e = scale * (r - mu) for the K+U anchor residuals

    def take(self, idx: npt.NDArray[np.int64]) -> Evaluation:
        return Evaluation(*(getattr(self, f)[idx] for f in Evaluation.__dataclass_fields__))

    def normal_equations(self, psi_over_e: FloatArray, curv: FloatArray) -> tuple[FloatArray, FloatArray,
                                                                                    FloatArray]:
        """Gauss-Newton matrix (curvature weights), gradient (loss weights), and the Newton matrix that
        adds the residuals' own curvature sum psi_i * Hessian(e_i) (x-y block; the offset is linear)."""
        cols = (self.jx, self.jy, self.jo)
        b = self.res.shape[0]
        h = np.empty((b, 3, 3))
        g = np.empty((b, 3))
        for i in range(3):
            ci = cols[i] * curv
            for j in range(i, 3):
                h[:, i, j] = h[:, j, i] = (ci * cols[j]).sum(axis=1)
            g[:, i] = (cols[i] * psi_over_e * self.res).sum(axis=1)
        m = self.dx.shape[1]
        wgt = -(psi_over_e[:, :m] * self.res[:, :m]) * self.scale
        # mu_xx = -c (d2 - 2 dx^2), mu_xy = 2 c dx dy, mu_yy = -c (d2 - 2 dy^2); Hessian(e) = -scale * Hessian(mu)
        wc = wgt * self.c
        newton = h.copy()
        newton[:, 0, 0] += (wc * -(self.d2 - 2 * self.dx * self.dx)).sum(axis=1)
        newton[:, 1, 1] += (wc * -(self.d2 - 2 * self.dy * self.dy)).sum(axis=1)
        xy = (wc * 2 * self.dx * self.dy).sum(axis=1)
        newton[:, 0, 1] += xy
        newton[:, 1, 0] += xy
        return h, g, newton


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


def centroid_guess(prob: FixProblem) -> FloatArray:
    """(B, 3): the power-weighted centroid of all heard anchors, with its conditional best offset."""
    heard = prob.w > 0
    lin = np.where(heard, 10.0 ** ((prob.r - prob.r.max(axis=1, keepdims=True)) / 10.0), 0.0)
    lin = lin / np.maximum(lin.sum(axis=1, keepdims=True), 1e-12)
    x = np.clip((lin * prob.ax).sum(1), prob.lo[:, 0], prob.hi[:, 0])
    y = np.clip((lin * prob.ay).sum(1), prob.lo[:, 1], prob.hi[:, 1])
    _, off = screening_cost(prob, x, y)
    return np.stack([x, y, off], axis=1)


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
    sol = _solve_from(prob, centroid_guess(prob), iterations)
    if starts == 1:
        return sol
    # Fixes that ended poorly (high cost per heard reading) try their other starting points.
    n_heard = np.maximum((prob.w > 0).sum(axis=1), 1)
    retry = np.flatnonzero(sol.cost / n_heard > RETRY_COST_PER_READING)
    if retry.shape[0] == 0:
        return sol
    sub = _subset(prob, retry)
    guesses = initial_guesses(sub, starts)  # candidates are scored only for the fixes that need them
    x, y, off, acc, cost, cov = (a.copy() for a in (sol.x, sol.y, sol.offset, sol.accuracy_m, sol.cost, sol.cov))
    for s_i in range(1, starts):
        alt = _solve_from(sub, guesses[s_i], iterations)
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
    cost = np.zeros(b)
    # Work on a shrinking working set: converged fixes leave it when they are a large enough share,
    # so the arrays are not copied every iteration.
    work = np.arange(b)
    wp = prob
    ev = wp.evaluate(theta)
    cost[:] = huber_cost(ev.res)
    act = np.ones(b, dtype=bool)
    th_w, lam_w, cost_w = theta.copy(), lam.copy(), cost.copy()
    eye = np.eye(3)
    for _ in range(iterations):
        n_act = int(act.sum())
        if n_act == 0:
            break
        if n_act < WORKING_SET_SHRINK * work.shape[0]:
            theta[work], lam[work], cost[work] = th_w, lam_w, cost_w
            keep = np.flatnonzero(act)
            work, wp, ev = work[keep], _subset(wp, keep), ev.take(keep)
            th_w, lam_w, cost_w, act = th_w[keep], lam_w[keep], cost_w[keep], act[keep]
        if _TRACE is not None:
            _TRACE.append(n_act)
        # Gradient with psi(e)/e, curvature with psi'(e) (1 inside the Huber threshold, ~0 outside).
        om = huber_weights(ev.res)
        curv = np.where(np.abs(ev.res) <= HUBER_K, 1.0, 1e-3 * om)
        h, g, newton = ev.normal_equations(om, curv)
        # Full Newton (quadratic convergence even in the flat offset-vs-range valley) only where that
        # matrix is positive definite; elsewhere Gauss-Newton, which always gives a descent direction.
        m1 = newton[:, 0, 0]
        m2 = newton[:, 0, 0] * newton[:, 1, 1] - newton[:, 0, 1] * newton[:, 1, 0]
        pd = (m1 > 0) & (m2 > 0) & (np.linalg.det(newton) > 0)
        h = np.where(pd[:, None, None], newton, h)
        # Active set: a coordinate at a bound whose gradient pushes it outward is held there.
        free = np.ones((th_w.shape[0], 3), dtype=bool)
        free[:, :2] = ~(((th_w[:, :2] <= wp.lo) & (g[:, :2] > 0)) | ((th_w[:, :2] >= wp.hi) & (g[:, :2] < 0)))
        fm = free.astype(np.float64)
        h = h * fm[:, :, None] * fm[:, None, :] + (1.0 - fm)[:, :, None] * eye
        g = g * fm
        diag = np.maximum(np.diagonal(h, axis1=1, axis2=2), 1e-9)
        h_damped = h + (lam_w[:, None] * diag)[:, :, None] * eye
        step = -np.linalg.solve(h_damped, g[:, :, None])[:, :, 0]
        cand = th_w + step
        cand[:, :2] = np.clip(cand[:, :2], wp.lo, wp.hi)
        ev_c = wp.evaluate(cand)
        cost_c = huber_cost(ev_c.res)
        better = act & (cost_c <= cost_w)
        gain = cost_w - cost_c
        moved = np.hypot(cand[:, 0] - th_w[:, 0], cand[:, 1] - th_w[:, 1])  # after clipping to bounds
        if better.any():
            th_w[better], cost_w[better] = cand[better], cost_c[better]
            ev = _merge(ev, ev_c, better)
        lam_w[better] = np.maximum(lam_w[better] / LM_DOWN, 1e-12)
        lam_w[act & ~better] *= LM_UP
        # Converged: a tiny accepted move taken as (nearly) a Newton step, not one shrunk by damping,
        # or an accepted step that no longer lowers the cost measurably.
        done = better & (lam_w < 1e-2) & ((moved < SOLVER_TOL_M) | (gain < SOLVER_TOL_COST * (1.0 + cost_c)))
        act &= ~(done | (lam_w > 1e10))
    theta[work], lam[work], cost[work] = th_w, lam_w, cost_w
    final = prob.evaluate(theta)
    om = huber_weights(final.res)
    h, _, _ = final.normal_equations(om, om)
    cov = np.asarray(np.linalg.inv(h + np.eye(3) * 1e-9), dtype=np.float64)
    acc_m = np.sqrt(np.maximum(cov[:, 0, 0] + cov[:, 1, 1], 0.0))
    return FixSolution(theta[:, 0].copy(), theta[:, 1].copy(), theta[:, 2].copy(),
                       np.clip(acc_m, ACCURACY_MIN_M, ACCURACY_MAX_M), cost, cov)


def _merge(old: Evaluation, new: Evaluation, rows: BoolArray) -> Evaluation:
    """``new`` where ``rows``, else ``old`` (either may be overwritten): copies the smaller side."""
    if rows.mean() > 0.5:
        old, new, rows = new, old, ~rows
    out = []
    for f in Evaluation.__dataclass_fields__:
        a = getattr(old, f)
        a[rows] = getattr(new, f)[rows]
        out.append(a)
    return Evaluation(*out)


def _stack(probs: list[FixProblem]) -> FixProblem:
    return FixProblem(*(np.concatenate([getattr(p, f) for p in probs]) for f in FixProblem.__dataclass_fields__))


def _subset(prob: FixProblem, idx: npt.NDArray[np.int64]) -> FixProblem:
    return FixProblem(*(getattr(prob, f)[idx] for f in FixProblem.__dataclass_fields__))
