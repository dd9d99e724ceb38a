"""Batch multilateration: agrees with a per-fix scipy reference, recovers noiseless truth, stays in bounds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import least_squares

from positioning.const import HUBER_K
from positioning.multilateration import FixProblem, huber_cost, huber_weights, posterior_mean, solve
from tests.positioning_factories import N_EXP, P0, random_problem


def _one(prob: FixProblem, i: int) -> FixProblem:
    return FixProblem(*(getattr(prob, f)[i:i + 1] for f in FixProblem.__dataclass_fields__))


def _grad_norm(one: FixProblem, theta: np.ndarray) -> float:
    res, jac = one.residuals(theta[None])
    return float(np.abs(np.einsum("bki,bk->bi", jac * huber_weights(res)[:, :, None], res)).max())


def _reference(one: FixProblem, x0: np.ndarray) -> np.ndarray:
    """The slow reference: scipy's least_squares with the same Huber loss and bounds, one fix at a time."""
    ref = least_squares(lambda th: one.residuals(th[None])[0][0], x0, loss="huber", f_scale=HUBER_K,
                        xtol=1e-15, ftol=1e-15, gtol=1e-15,
                        bounds=([one.lo[0, 0], one.lo[0, 1], -np.inf], [one.hi[0, 0], one.hi[0, 1], np.inf]))
    return np.asarray(ref.x)


def _agrees(one: FixProblem, ours: np.ndarray, ref: np.ndarray) -> bool:
    """Same point to 1e-6 m, or ours is the better-converged of the two (the valley of offset vs
    range is so flat that the reference's own stopping rule leaves it a micrometre away)."""
    if np.hypot(*(ours[:2] - ref[:2])) < 1e-6:
        return True
    c_ours = huber_cost(one.residuals(ours[None])[0])[0]
    c_ref = huber_cost(one.residuals(ref[None])[0])[0]
    return bool(c_ours <= c_ref + 1e-12 and _grad_norm(one, ours) <= _grad_norm(one, ref))


def test_batch_matches_scipy_reference_to_a_micrometre() -> None:
    prob, _, _ = random_problem(60, seed=3, censor=False)
    sol = solve(prob, iterations=400)
    for i in range(prob.size):
        one = _one(prob, i)
        ours = np.array([sol.x[i], sol.y[i], sol.offset[i]])
        # Started at our answer, the reference finds nothing better nearby.
        assert _agrees(one, ours, _reference(one, ours))


def test_batch_and_reference_agree_from_the_same_start() -> None:
    prob, tx, ty = random_problem(40, seed=5, sigma=2.0, censor=False)
    theta0 = np.stack([tx + 1.0, ty - 1.0, np.zeros(40)], axis=1)
    sol = solve(prob, theta0=theta0, iterations=400)
    compared = 0
    for i in range(40):
        one = _one(prob, i)
        ref = _reference(one, theta0[i])
        ours = np.array([sol.x[i], sol.y[i], sol.offset[i]])
        c_ref = huber_cost(one.residuals(ref[None])[0])[0]
        if abs(c_ref - sol.cost[i]) < 1e-6:  # the same local minimum
            assert _agrees(one, ours, ref)
            compared += 1
    assert compared >= 30  # the rest fell into different local minima from the same start


def test_noiseless_readings_recover_truth_on_an_anchor_grid() -> None:
    rng = np.random.default_rng(7)
    b, k = 300, 12
    gx, gy = np.meshgrid(np.arange(0, 50, 10.0), np.arange(0, 40, 10.0))
    ax_all, ay_all = gx.ravel(), gy.ravel()
    tx, ty = rng.uniform(2, 38, b), rng.uniform(2, 28, b)
    d_all = np.hypot(tx[:, None] - ax_all, ty[:, None] - ay_all)
    near = np.argsort(d_all, axis=1)[:, :k]  # the K nearest anchors hear the device
    ax, ay = ax_all[near], ay_all[near]
    off = rng.normal(0, 5, b)
    dz = np.full((b, k), 1.8)
    r = P0 + off[:, None] - 10 * N_EXP * np.log10(np.sqrt((tx[:, None] - ax) ** 2 + (ty[:, None] - ay) ** 2 + dz**2))
    prob = FixProblem(ax=ax, ay=ay, dz=dz, p0=np.full((b, k), P0), n=np.full((b, k), N_EXP), r=r,
                      w=np.ones((b, k)), cx=np.zeros((b, 1)), cy=np.zeros((b, 1)), cdz=np.ones((b, 1)),
                      cp0=np.full((b, 1), P0), cn=np.full((b, 1), N_EXP), cmask=np.zeros((b, 1), dtype=bool),
                      sens=np.full(b, -95.0), off0=np.zeros(b), off_sd=np.full(b, 1e4),
                      lo=np.tile([-3.0, -3.0], (b, 1)), hi=np.tile([43.0, 33.0], (b, 1)))
    sol = solve(prob, iterations=200)
    err = np.hypot(sol.x - tx, sol.y - ty)
    assert np.max(err) < 1e-3
    assert np.max(np.abs(sol.offset - off)) < 1e-3


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_positions_stay_inside_bounds(seed: int) -> None:
    prob, _, _ = random_problem(30, seed=seed, sigma=8.0)
    sol = solve(prob)
    assert np.all(sol.x >= prob.lo[:, 0]) and np.all(sol.x <= prob.hi[:, 0])
    assert np.all(sol.y >= prob.lo[:, 1]) and np.all(sol.y <= prob.hi[:, 1])
    assert np.all(np.isfinite(sol.accuracy_m)) and np.all(sol.accuracy_m > 0)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_anchor_order_within_a_fix_does_not_matter(seed: int) -> None:
    prob, _, _ = random_problem(20, seed=seed)
    perm = np.random.default_rng(seed).permutation(prob.r.shape[1])
    shuffled = FixProblem(**{f: (getattr(prob, f)[:, perm] if getattr(prob, f).ndim == 2
                                 and getattr(prob, f).shape[1] == prob.r.shape[1] and f[0] != "c"
                                 else getattr(prob, f)) for f in FixProblem.__dataclass_fields__})
    a, b = solve(prob, iterations=300), solve(shuffled, iterations=300)
    same_min = np.abs(a.cost - b.cost) < 1e-9
    assert np.all(np.hypot(a.x - b.x, a.y - b.y)[same_min] < 1e-3)  # 1 mm: order changes only rounding
    assert same_min.mean() > 0.8


def test_an_unheard_near_anchor_pushes_the_fix_away() -> None:
    prob, _, _ = random_problem(200, seed=13, sigma=4.0, censor=False)
    free = solve(prob)
    # Put a censoring anchor 2 m from each free solution: it would be heard loudly there.
    pushed = replace(prob, cx=free.x[:, None] + 2.0, cy=free.y[:, None] + 0.0, cdz=np.full((200, 1), 1.8),
                     cp0=np.full((200, 1), P0), cn=np.full((200, 1), N_EXP), cmask=np.ones((200, 1), dtype=bool))
    sol = solve(pushed)
    before = np.hypot(free.x - pushed.cx[:, 0], free.y - pushed.cy[:, 0])
    after = np.hypot(sol.x - pushed.cx[:, 0], sol.y - pushed.cy[:, 0])
    assert np.median(after - before) > 1.0


def test_accuracy_grows_with_noise() -> None:
    quiet, _, _ = random_problem(300, seed=11, sigma=1.0)
    loud, _, _ = random_problem(300, seed=11, sigma=8.0)
    assert np.median(solve(loud).accuracy_m) > np.median(solve(quiet).accuracy_m)


def test_fixed_offset_is_not_moved() -> None:
    prob, _, _ = random_problem(10, seed=2, offset_sd=0.0)
    sol = solve(prob)
    assert np.all(sol.offset == pytest.approx(0.0))


def test_posterior_mean_is_closer_to_the_truth_than_the_mode_on_a_gateway_grid() -> None:
    """Ceiling gateways on a 10 m grid, devices anywhere under them, 6 dB shadowing: the mean of the
    skewed likelihood is closer to the truth than its mode, on average and at the median."""
    from positioning.const import SENSITIVITY_DBM
    from positioning.filtering import aggregate
    from positioning.maps import site_map_from_venue
    from positioning.problems import build_problem
    from simulations.bench_positioning import demo_floor, synth_window

    venue, anchors = demo_floor()
    n = 4000
    w = synth_window(anchors, n, np.random.default_rng(3))
    agg = aggregate(w.device, w.anchor, w.rssi)
    prob, *_ = build_problem(anchors, site_map_from_venue(venue, anchors), agg.group, agg.anchor, agg.mean, agg.var,
                             agg.count, anchors.rssi_1m[agg.anchor], n, np.zeros(n), np.full(n, 8.0), SENSITIVITY_DBM,
                             1.2, np.ones(len(anchors), dtype=bool))
    mode = solve(prob)
    mean = posterior_mean(prob, mode)
    err_mode = np.hypot(mode.x - w.truth_x, mode.y - w.truth_y)
    err_mean = np.hypot(mean.x - w.truth_x, mean.y - w.truth_y)
    assert np.mean(err_mean) < 0.99 * np.mean(err_mode)
    assert np.median(err_mean) < np.median(err_mode)
    assert np.all((mean.x >= prob.lo[:, 0]) & (mean.x <= prob.hi[:, 0]))
    assert np.all((mean.y >= prob.lo[:, 1]) & (mean.y <= prob.hi[:, 1]))
    assert np.array_equal(mean.accuracy_m, mode.accuracy_m)


def test_posterior_mean_stays_within_the_fix_uncertainty() -> None:
    prob, _, _ = random_problem(300, seed=5, sigma=3.0)
    mode = solve(prob)
    mean = posterior_mean(prob, mode)
    assert np.all(np.hypot(mean.x - mode.x, mean.y - mode.y) <= mode.accuracy_m)
