"""Fingerprint kNN: matching across phones, silence as evidence, leave-one-out, and a fusion never worse than
the better method."""

from __future__ import annotations

import numpy as np

from positioning.fingerprint import RadioMap, choose_fusion_weight, fuse, knn_locate
from tests.positioning_factories import grid_anchors, rssi_at


def survey_map(sigma: float = 1.0, seed: int = 0) -> tuple[RadioMap, np.ndarray, np.ndarray]:
    anchors = grid_anchors()
    rng = np.random.default_rng(seed)
    xs, ys = np.meshgrid(np.arange(1.0, 40.0, 2.0), np.arange(1.0, 30.0, 2.0))
    x, y = xs.ravel(), ys.ravel()
    rssi = np.stack([rssi_at(anchors, px, py, sigma=sigma, rng=rng) for px, py in zip(x, y, strict=True)])
    rssi[rssi < -95] = np.nan
    rm = RadioMap(x, y, np.zeros(x.shape[0], dtype=np.int64), rssi)
    return rm, anchors.x, anchors.y


def test_a_louder_phone_matches_the_same_places() -> None:
    rm, ax, ay = survey_map()
    anchors = grid_anchors()
    truth = [(7.0, 9.0), (21.0, 17.0), (33.0, 5.0)]
    query = np.stack([rssi_at(anchors, x, y, offset=12.0) for x, y in truth])  # 12 dB louder than the surveyor
    fix = knn_locate(rm, query, anchor_xy=(ax, ay))
    err = np.hypot(fix.x - np.array([t[0] for t in truth]), fix.y - np.array([t[1] for t in truth]))
    assert fix.ok.all() and np.all(err < 1.5)


def test_silence_where_the_survey_heard_a_receiver_strongly_is_evidence() -> None:
    """Point A heard receiver 4 at -65 dBm; the query did not hear it at all: B (which did not hear it
    either) is the match, although A's other levels equal the query's exactly."""
    levels = np.array([-70.0, -75.0, -80.0, -85.0])
    a = np.r_[levels, -65.0]
    b = np.r_[levels + np.array([2.0, -2.0, 2.0, -2.0]), np.nan]
    rm = RadioMap(np.array([0.0, 20.0]), np.array([0.0, 0.0]), np.zeros(2, dtype=np.int64), np.stack([a, b]))
    fix = knn_locate(rm, np.r_[levels, np.nan][None, :], k=1)
    assert fix.ok[0] and fix.x[0] == 20.0


def test_fusion_leans_to_the_fingerprint_among_weights_that_do_about_as_well() -> None:
    """Leave-one-out understates the fingerprint (it interpolates across a hole); when the weights' errors
    are within 5 % the larger fingerprint weight is taken, still no worse than either method alone."""
    rng = np.random.default_rng(5)
    tx, ty = rng.uniform(0, 40, 400), rng.uniform(0, 30, 400)
    mx, my = tx + rng.normal(0, 2.0, 400), ty + rng.normal(0, 2.0, 400)
    kx, ky = tx + rng.normal(0, 2.0, 400), ty + rng.normal(0, 2.0, 400)
    w = choose_fusion_weight(tx, ty, mx, my, kx, ky)
    errs = {v: float(np.median(np.hypot(v * kx + (1 - v) * mx - tx, v * ky + (1 - v) * my - ty)))
            for v in np.round(np.linspace(0, 1, 11), 2)}
    best = min(errs.values())
    assert errs[w] <= 1.05 * best + 1e-9 and w > min(v for v, e in errs.items() if e == best)


def test_leave_one_out_never_returns_the_point_itself() -> None:
    rm, ax, ay = survey_map(sigma=0.0)
    n = len(rm)
    fix = knn_locate(rm, rm.rssi, exclude=np.arange(n), anchor_xy=(ax, ay), k=1)
    assert np.all(np.hypot(fix.x - rm.x, fix.y - rm.y) > 0.5)  # the nearest other grid point instead


def test_fusion_weight_is_never_worse_than_the_better_method_on_held_back_points() -> None:
    rng = np.random.default_rng(3)
    tx, ty = rng.uniform(0, 40, 200), rng.uniform(0, 30, 200)
    for model_sd, knn_sd in ((1.0, 3.0), (3.0, 1.0), (2.0, 2.0)):
        mx, my = tx + rng.normal(0, model_sd, 200), ty + rng.normal(0, model_sd, 200)
        kx, ky = tx + rng.normal(0, knn_sd, 200), ty + rng.normal(0, knn_sd, 200)
        w = choose_fusion_weight(tx, ty, mx, my, kx, ky)
        fx, fy = w * kx + (1 - w) * mx, w * ky + (1 - w) * my
        fused = np.median(np.hypot(fx - tx, fy - ty))
        assert fused <= min(np.median(np.hypot(mx - tx, my - ty)), np.median(np.hypot(kx - tx, ky - ty))) + 1e-9
    assert choose_fusion_weight(tx, ty, tx, ty, tx + 5, ty) == 0.0


def test_fuse_keeps_the_model_where_the_fingerprint_has_no_answer() -> None:
    rm, ax, ay = survey_map()
    query = np.full((2, rm.rssi.shape[1]), np.nan)  # nothing heard: no neighbour qualifies
    fix = knn_locate(rm, query, anchor_xy=(ax, ay))
    x, y = fuse(np.array([5.0, 6.0]), np.array([7.0, 8.0]), fix, 0.7)
    assert not fix.ok.any() and list(x) == [5.0, 6.0] and list(y) == [7.0, 8.0]
