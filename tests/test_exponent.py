"""Learning the path-loss exponent from scans when nobody gave it: static fixes, causal."""

from __future__ import annotations

import numpy as np
import pytest

from positioning.exponent import SCALES, SWITCH_COST, ExponentChoice
from positioning.maps import open_site_map
from positioning.radio import AnchorTable
from positioning.static import StaticFixes, locate_static
from tests.positioning_factories import hall_anchors


def _scans(anchors: AnchorTable, n_true: float, n_scans: int, seed: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scans at random spots by 5 phones (offsets spread 4 dB), 4 readings per audible anchor each."""
    rng = np.random.default_rng(seed)
    px, py = rng.uniform(2, 38, n_scans), rng.uniform(2, 28, n_scans)
    dev = rng.integers(0, 5, n_scans)
    off = rng.normal(0, 4, 5)
    fix, device, anchor, rssi, t = [], [], [], [], []
    for k in range(n_scans):
        d = np.sqrt((anchors.x - px[k]) ** 2 + (anchors.y - py[k]) ** 2 + (anchors.z - 1.2) ** 2)
        for _ in range(4):
            r = -59.0 + off[dev[k]] - 10 * n_true * np.log10(d) + rng.normal(0, 5, d.shape)
            heard = np.flatnonzero(r >= -95)
            fix += [k] * heard.size
            device += [int(dev[k])] * heard.size
            anchor += heard.tolist()
            rssi += np.round(r[heard]).tolist()
            t += [10.0 * k] * heard.size
    fix_t = 10.0 * np.arange(n_scans, dtype=np.float64)
    return (np.array(fix), np.array(device), np.array(anchor), np.array(rssi, dtype=np.float64), fix_t, px, py)


def _locate(anchors: AnchorTable, data: tuple[np.ndarray, ...], n_scans: int, learn: bool) -> StaticFixes:
    fix, device, anchor, rssi, fix_t = data[:5]
    return locate_static(anchors, open_site_map(anchors), fix, device, fix_t, anchor, rssi,
                         anchors.rssi_1m[anchor], n_scans, learn_exponent=learn)


def test_a_steep_exponent_is_learned_from_scans_and_used_causally() -> None:
    anchors = hall_anchors()
    data = _scans(anchors, 3.0, 300, seed=2)
    px, py = data[5], data[6]
    learned = _locate(anchors, data, 300, learn=True)
    kept = _locate(anchors, data, 300, learn=False)
    assert abs(2.0 * learned.exponent_scale - 3.0) <= 0.4 and learned.exponent_windows > 100
    err_learned = np.hypot(learned.x - px, learned.y - py)
    err_kept = np.hypot(kept.x - px, kept.y - py)
    # (The open map keeps fixes near the anchors, which bounds what a wrong exponent costs: 1.67 m here.)
    assert np.median(err_learned[150:]) < 0.9 * np.median(err_kept[150:])
    # Causal: the first 150 scans alone give the same fixes (later scans cannot move the exponent back).
    fix, device, anchor, rssi, fix_t = data[:5]
    early = fix < 150
    first = locate_static(anchors, open_site_map(anchors), fix[early], device[early], fix_t[:150], anchor[early],
                          rssi[early], anchors.rssi_1m[anchor[early]], 150, learn_exponent=True)
    np.testing.assert_allclose(first.x, learned.x[:150], atol=1e-9)
    np.testing.assert_allclose(first.y, learned.y[:150], atol=1e-9)


def test_the_nominal_exponent_stays_when_it_fits() -> None:
    anchors = hall_anchors()
    data = _scans(anchors, 2.0, 200, seed=3)
    assert _locate(anchors, data, 200, learn=True).exponent_scale == 1.0


def test_a_scale_takes_over_only_when_it_wins_clearly() -> None:
    choice = ExponentChoice()
    costs = np.zeros((len(SCALES), 1))
    costs[SCALES.index(1.4)] = -0.5 * SWITCH_COST
    assert not choice.add(costs) and choice.scale == 1.0
    assert choice.add(costs) and choice.scale == pytest.approx(1.4)
