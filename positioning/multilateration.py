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

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from scipy.special import log_ndtr, ndtr

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
LOG_NDTR_BELOW_Z = -30.0  # log(ndtr(z)) underflows near z = -37: the slower log_ndtr takes over
GRID_CANDIDATES = 3  # per axis: a 3 x 3 grid of starting points over the bounds
WORKING_SET_SHRINK = 0.7  # re-pack the working set when fewer than this share of it is still iterating
MULTISTART = 2  # a fix that ends poorly is solved again from the best-scoring separated candidate
RETRY_COST_PER_READING = 1.5  # mean Huber cost per heard reading (0.5 expected) above which a fix is retried
RETRY_MARGIN = 1.0  # cost units the second start must win by (near ties favour the first start)
SOLVER_TOL_COST = 1e-10  # relative cost decrease below which an accepted step means converged
WARM_ITERATIONS = 8  # a fix started from its track's last position needs only a few steps
ANCHOR_CANDIDATES = 4  # the strongest heard anchors' positions are starting candidates
# Where a fix's likelihood is sampled for its posterior mean, in standard deviations along the principal
# axes of its covariance: a 3 x 3 grid over one sd either way (a 5-point cross is 40% cheaper and gives
# back a quarter of the gain).
POSTERIOR_POINTS = tuple((a, b) for a in (-1.0, 0.0, 1.0) for b in (-1.0, 0.0, 1.0))
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

    def residuals(self, theta: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Stacked residuals (B, K+U+1) and Jacobian (B, K+U+1, 3) at ``theta`` (B, 3)."""
        ev = _pack(self).evaluate(theta)
        return ev.res.T, np.stack([ev.jx.T, ev.jy.T, ev.jo.T], axis=-1)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Residuals and derivatives at one theta, laid out (rows, B): one column per fix, so that the heard
    and censoring blocks are contiguous and the sums over a fix's residuals run down whole rows."""

    res: FloatArray  # (R, B) residuals: K heard, U censoring, 1 offset prior
    jx: FloatArray  # (R, B) d res / d x
    jy: FloatArray
    jo: FloatArray  # d res / d offset
    dx: FloatArray  # (K+U, B) geometry of the heard and censoring anchors
    dy: FloatArray
    d2: FloatArray
    c: FloatArray  # 10 n / (ln 10 d^4)
    scale: FloatArray  # e = scale * (r - mu) for the K+U anchor residuals

    def normal_equations(self, psi_over_e: FloatArray, curv: FloatArray) -> tuple[FloatArray, FloatArray,
                                                                                    FloatArray]:
        """Gauss-Newton matrix (curvature weights), gradient (loss weights), and the Newton matrix that
        adds the residuals' own curvature sum psi_i * Hessian(e_i) (x-y block; the offset is linear)."""
        cols = (self.jx, self.jy, self.jo)
        b = self.res.shape[1]
        h = np.empty((b, 3, 3))
        g = np.empty((b, 3))
        pr = psi_over_e * self.res
        for i in range(3):
            ci = cols[i] * curv
            for j in range(i, 3):
                h[:, i, j] = h[:, j, i] = _colsum(ci * cols[j])
            g[:, i] = _colsum(cols[i] * pr)
        m = self.dx.shape[0]
        # mu_xx = -c (d2 - 2 dx^2), mu_xy = 2 c dx dy, mu_yy = -c (d2 - 2 dy^2); Hessian(e) = -scale * Hessian(mu)
        wc = pr[:m]
        wc *= -self.scale
        wc *= self.c
        newton = h.copy()
        newton[:, 0, 0] += _colsum(wc * (2 * self.dx * self.dx - self.d2))
        newton[:, 1, 1] += _colsum(wc * (2 * self.dy * self.dy - self.d2))
        xy = 2.0 * _colsum(wc * self.dx * self.dy)
        newton[:, 0, 1] += xy
        newton[:, 1, 0] += xy
        return h, g, newton


def _colsum(a: FloatArray) -> FloatArray:
    """Sum over the rows of an (R, B) array: one value per fix."""
    return np.asarray(np.add.reduce(a, axis=0), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class _Packed:
    """A FixProblem's constant arrays laid out for repeated evaluation: (anchor, fix), heard anchors
    then censoring anchors (M = K + U rows), with the factors that do not change between iterations
    precomputed."""

    k: int
    ax: FloatArray  # (M, B)
    ay: FloatArray
    dz2: FloatArray  # squared height differences
    n5: FloatArray  # 5 n: path loss per log10 of squared distance
    g10: FloatArray  # 10 n / ln 10
    p0: FloatArray  # (M, B) RSSI at 1 m
    r: FloatArray  # (K, B)
    sw: FloatArray  # (K, B) sqrt of the weights
    cmask: BoolArray  # (U, B)
    sens: FloatArray  # (1, B)
    off0: FloatArray  # (B,)
    sd: FloatArray  # (B,) offset prior sd, floored
    free: FloatArray  # (B,) 1.0 where the offset is free
    lo: FloatArray  # (B, 2)
    hi: FloatArray

    def take(self, idx: npt.NDArray[np.int64]) -> _Packed:
        cols = ("ax", "ay", "dz2", "n5", "g10", "p0", "r", "sw", "cmask", "sens")
        return _Packed(self.k, *(getattr(self, f)[:, idx] if f in cols else getattr(self, f)[idx]
                                 for f in _Packed.__dataclass_fields__ if f != "k"))

    def _geometry(self, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Offsets from each anchor, squared 3-D distances, and the expected RSSI without the device offset."""
        dx = x - self.ax
        dy = y - self.ay
        d2 = dx * dx
        d2 += dy * dy
        d2 += self.dz2
        np.maximum(d2, MIN_DISTANCE_M**2, out=d2)
        mu = np.log10(d2)
        mu *= -self.n5
        mu += self.p0
        return dx, dy, d2, mu

    def evaluate(self, theta: FloatArray) -> Evaluation:
        off = theta[:, 2]
        k = self.k
        m, b = self.ax.shape
        dx, dy, d2, mu = self._geometry(theta[:, 0], theta[:, 1])
        mu += off
        g = self.g10 / d2  # -d mu / d(x) = g * dx
        res = np.empty((m + 1, b))
        jx = np.empty((m + 1, b))
        jy = np.empty((m + 1, b))
        jo = np.empty((m + 1, b))
        np.subtract(self.r, mu[:k], out=res[:k])
        res[:k] *= self.sw
        sg = self.sw * g[:k]
        np.multiply(sg, dx[:k], out=jx[:k])  # d e = -sw * d mu
        np.multiply(sg, dy[:k], out=jy[:k])
        np.multiply(self.sw, -self.free, out=jo[:k])
        h, dh = _censor_residual(mu[k:], self.sens, self.cmask)
        cg = dh * g[k:]  # d h / d x = dh/dmu * dmu/dx = dh * (-g * dx)
        cg *= -1.0
        res[k:m] = h
        np.multiply(cg, dx[k:], out=jx[k:m])
        np.multiply(cg, dy[k:], out=jy[k:m])
        np.multiply(dh, self.free, out=jo[k:m])
        res[m] = ((off - self.off0) / self.sd) * self.free
        jx[m] = 0.0
        jy[m] = 0.0
        jo[m] = self.free / self.sd
        # e = scale * (r - mu): scale = sw for heard readings, -dh for censoring (h grows with mu).
        scale = np.empty((m, b))
        scale[:k] = self.sw
        np.negative(dh, out=scale[k:])
        g /= d2
        return Evaluation(res, jx, jy, jo, dx, dy, d2, g, scale)

    def screening_cost(self, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Huber cost at (x, y) (B,) with the offset at its closed-form conditional optimum (heard
        readings and prior, least squares), and that offset. Cheap: no Jacobian. Used to pick starting
        points and to average over the likelihood around a fix."""
        k = self.k
        mu0 = self._geometry(x, y)[3]
        w = self.sw * self.sw
        resid = self.r - mu0[:k]
        prior_w = self.free / (self.sd * self.sd)
        fit = (_colsum(w * resid) + prior_w * self.off0) / (_colsum(w) + prior_w + (1.0 - self.free))
        off = np.where(self.free > 0, fit, self.off0)
        resid -= off
        resid *= self.sw
        mu0[k:] += off
        h, _ = _censor_residual(mu0[k:], self.sens, self.cmask)
        p = ((off - self.off0) / self.sd) * self.free
        return huber_cost(resid, axis=0) + huber_cost(h, axis=0) + huber_cost(p[None, :], axis=0), off


def _pack(prob: FixProblem) -> _Packed:
    def rows(a: FloatArray, c: FloatArray) -> FloatArray:
        return np.ascontiguousarray(np.concatenate([a, c], axis=1).T)

    n = rows(prob.n, prob.cn)
    dz = rows(prob.dz, prob.cdz)
    return _Packed(
        k=prob.r.shape[1], ax=rows(prob.ax, prob.cx), ay=rows(prob.ay, prob.cy), dz2=dz * dz, n5=5.0 * n,
        g10=(10.0 / LN10) * n, p0=rows(prob.p0, prob.cp0), r=np.ascontiguousarray(prob.r.T),
        sw=np.ascontiguousarray(np.sqrt(prob.w).T), cmask=np.ascontiguousarray(prob.cmask.T), sens=prob.sens[None, :],
        off0=prob.off0, sd=np.maximum(prob.off_sd, FIXED_PRIOR_SD),
        free=(prob.off_sd > FIXED_PRIOR_SD).astype(np.float64), lo=prob.lo, hi=prob.hi,
    )


def screening_cost(prob: FixProblem, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Huber cost at (x, y) (B,) with the offset at its closed-form conditional optimum, and that offset."""
    return _pack(prob).screening_cost(x, y)


def _censor_residual(mu: FloatArray, sens: FloatArray, mask: BoolArray) -> tuple[FloatArray, FloatArray]:
    """Residual whose square / 2 is the censoring cost -log P(rssi < sens) = -log Phi((sens - mu) / sigma),
    and its derivative with respect to mu. Smooth, zero far below sensitivity, linear far above.
    Zero where it is negligible (an anchor predicted far below sensitivity costs nothing)."""
    z = (sens - mu) / SHADOWING_DB
    live = mask & (z < CENSOR_NEGLIGIBLE_Z)
    z = np.where(live, z, 0.0)
    # Phi(-|z|) keeps its relative precision far into the tail; above zero log Phi(z) = log1p(-Phi(-z)).
    q = ndtr(-np.abs(np.maximum(z, LOG_NDTR_BELOW_Z)))
    log_cdf = np.where(z > 0, np.log1p(-q), np.log(q))
    deep = z < LOG_NDTR_BELOW_Z
    if deep.any():
        log_cdf[deep] = log_ndtr(z[deep])
    h = np.sqrt(np.maximum(-2.0 * log_cdf, 0.0))
    ratio = np.exp(-0.5 * z * z - 0.5 * np.log(2.0 * np.pi) - log_cdf)  # phi(z) / Phi(z)
    dh = np.where(live & (h > 1e-150), ratio / (SHADOWING_DB * np.maximum(h, 1e-150)), 0.0)
    h *= live
    return h, dh


@dataclass(frozen=True, slots=True)
class FixSolution:
    x: FloatArray  # (B,)
    y: FloatArray
    offset: FloatArray
    accuracy_m: FloatArray
    cost: FloatArray
    cov: FloatArray  # (B, 3, 3) covariance of (x, y, offset)


def huber_cost(res: FloatArray, k: float = HUBER_K, axis: int = 1) -> FloatArray:
    """Huber cost summed over ``axis`` (a fix's residuals: axis 1 of (B, R), axis 0 of (R, B))."""
    a = np.abs(res)
    return np.asarray(np.where(a <= k, 0.5 * res * res, k * a - 0.5 * k * k).sum(axis=axis), dtype=np.float64)


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
    packed = _pack(prob)
    for j in range(n_c):
        c, o = packed.screening_cost(cand_x[:, j], cand_y[:, j])
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
    sub = subset(prob, retry)
    guesses = initial_guesses(sub, starts)  # candidates are scored only for the fixes that need them
    x, y, off, acc, cost, cov = (a.copy() for a in (sol.x, sol.y, sol.offset, sol.accuracy_m, sol.cost, sol.cov))
    for s_i in range(1, starts):
        alt = _solve_from(sub, guesses[s_i], iterations)
        better = alt.cost < cost[retry] - RETRY_MARGIN  # a clearly better fit, not a near tie far away
        tgt = retry[better]
        x[tgt], y[tgt], off[tgt] = alt.x[better], alt.y[better], alt.offset[better]
        acc[tgt], cost[tgt], cov[tgt] = alt.accuracy_m[better], alt.cost[better], alt.cov[better]
    return FixSolution(x, y, off, acc, cost, cov)


def posterior_mean(prob: FixProblem, sol: FixSolution) -> FixSolution:
    """Each fix moved to the likelihood-weighted mean of a small grid around it, laid along the principal
    axes of its covariance. With 6 dB shadowing the likelihood is skewed (steeper towards the anchors than
    away from them, cut by bounds and by censoring), so its mean is closer to the truth on average than
    its mode. Accuracy, covariance and offset are those of the mode."""
    cxx, cyy, cxy = sol.cov[:, 0, 0], sol.cov[:, 1, 1], sol.cov[:, 0, 1]
    half_tr = 0.5 * (cxx + cyy)
    disc = np.sqrt(np.maximum(0.25 * (cxx - cyy) ** 2 + cxy * cxy, 0.0))
    s1 = np.sqrt(np.clip(half_tr + disc, 0.0, ACCURACY_MAX_M**2))
    s2 = np.sqrt(np.clip(half_tr - disc, 0.0, ACCURACY_MAX_M**2))
    ang = 0.5 * np.arctan2(2.0 * cxy, cxx - cyy)
    ux, uy = np.cos(ang), np.sin(ang)
    packed = _pack(prob)
    pts = POSTERIOR_POINTS
    gx, gy, cost = (np.empty((len(pts), prob.size)) for _ in range(3))
    for i, (a, b) in enumerate(pts):
        gx[i] = np.clip(sol.x + a * s1 * ux - b * s2 * uy, prob.lo[:, 0], prob.hi[:, 0])
        gy[i] = np.clip(sol.y + a * s1 * uy + b * s2 * ux, prob.lo[:, 1], prob.hi[:, 1])
        cost[i], _ = packed.screening_cost(gx[i], gy[i])
    wgt = np.exp(-(cost - cost.min(axis=0)))
    wgt /= wgt.sum(axis=0)
    return replace(sol, x=(wgt * gx).sum(axis=0), y=(wgt * gy).sum(axis=0))


_TRACE: list[int] | None = None  # set to a list to record active fixes per iteration (profiling)


def solve_warm(prob: FixProblem, theta0: FloatArray, warm: BoolArray, iterations: int = WARM_ITERATIONS) -> FixSolution:
    """Fixes with ``warm`` set start from ``theta0`` (a track's last estimate) with a short run; the
    others get the full multi-start solve. Results in input order."""
    if warm.all():
        return _solve_from(prob, theta0.copy(), iterations)
    if not warm.any():
        return solve(prob)
    w_idx, c_idx = np.flatnonzero(warm), np.flatnonzero(~warm)
    hot = _solve_from(subset(prob, w_idx), theta0[w_idx].copy(), iterations)
    cold = solve(subset(prob, c_idx))
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
    packed = wp = _pack(prob)
    ev = wp.evaluate(theta)
    cost[:] = huber_cost(ev.res, axis=0)
    gn, grad, newton = _system(ev)
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
            work, wp = work[keep], wp.take(keep)
            th_w, lam_w, cost_w, act = th_w[keep], lam_w[keep], cost_w[keep], act[keep]
            gn, grad, newton = gn[keep], grad[keep], newton[keep]
        if _TRACE is not None:
            _TRACE.append(n_act)
        # Full Newton (quadratic convergence even in the flat offset-vs-range valley) only where that
        # matrix is positive definite; elsewhere Gauss-Newton, which always gives a descent direction.
        m1 = newton[:, 0, 0]
        m2 = newton[:, 0, 0] * newton[:, 1, 1] - newton[:, 0, 1] * newton[:, 1, 0]
        pd = (m1 > 0) & (m2 > 0) & (np.linalg.det(newton) > 0)
        h = np.where(pd[:, None, None], newton, gn)
        # Active set: a coordinate at a bound whose gradient pushes it outward is held there.
        free = np.ones((th_w.shape[0], 3), dtype=bool)
        free[:, :2] = ~(((th_w[:, :2] <= wp.lo) & (grad[:, :2] > 0)) | ((th_w[:, :2] >= wp.hi) & (grad[:, :2] < 0)))
        fm = free.astype(np.float64)
        h = h * fm[:, :, None] * fm[:, None, :] + (1.0 - fm)[:, :, None] * eye
        g = grad * fm
        diag = np.maximum(np.diagonal(h, axis1=1, axis2=2), 1e-9)
        h_damped = h + (lam_w[:, None] * diag)[:, :, None] * eye
        step = -np.linalg.solve(h_damped, g[:, :, None])[:, :, 0]
        cand = th_w + step
        cand[:, :2] = np.clip(cand[:, :2], wp.lo, wp.hi)
        ev_c = wp.evaluate(cand)
        cost_c = huber_cost(ev_c.res, axis=0)
        better = act & (cost_c <= cost_w)
        gain = cost_w - cost_c
        moved = np.hypot(cand[:, 0] - th_w[:, 0], cand[:, 1] - th_w[:, 1])  # after clipping to bounds
        if better.any():
            # The next step's system at the accepted points (cheaper than keeping the residuals).
            gn_c, grad_c, newton_c = _system(ev_c)
            th_w[better], cost_w[better] = cand[better], cost_c[better]
            gn[better], grad[better], newton[better] = gn_c[better], grad_c[better], newton_c[better]
        lam_w[better] = np.maximum(lam_w[better] / LM_DOWN, 1e-12)
        lam_w[act & ~better] *= LM_UP
        # Converged: a tiny accepted move taken as (nearly) a Newton step, not one shrunk by damping,
        # or an accepted step that no longer lowers the cost measurably.
        done = better & (lam_w < 1e-2) & ((moved < SOLVER_TOL_M) | (gain < SOLVER_TOL_COST * (1.0 + cost_c)))
        act &= ~(done | (lam_w > 1e10))
    theta[work], lam[work], cost[work] = th_w, lam_w, cost_w
    final = packed.evaluate(theta)
    om = huber_weights(final.res)
    h, _, _ = final.normal_equations(om, om)
    cov = np.asarray(np.linalg.inv(h + np.eye(3) * 1e-9), dtype=np.float64)
    acc_m = np.sqrt(np.maximum(cov[:, 0, 0] + cov[:, 1, 1], 0.0))
    return FixSolution(theta[:, 0].copy(), theta[:, 1].copy(), theta[:, 2].copy(),
                       np.clip(acc_m, ACCURACY_MIN_M, ACCURACY_MAX_M), cost, cov)


def _system(ev: Evaluation) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Gauss-Newton matrix, gradient and Newton matrix of the robust cost at an evaluation: gradient with
    psi(e)/e, curvature with psi'(e) (1 inside the Huber threshold, ~0 outside)."""
    om = huber_weights(ev.res)
    curv = np.where(np.abs(ev.res) <= HUBER_K, 1.0, 1e-3 * om)
    return ev.normal_equations(om, curv)


def subset(prob: FixProblem, idx: npt.NDArray[np.int64]) -> FixProblem:
    return FixProblem(*(getattr(prob, f)[idx] for f in FixProblem.__dataclass_fields__))
