"""Deployment planner: the CRLB map, blind spots, the greedy proposal, plan.json and the PNGs."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from positioning.venue import Anchor, Venue
from simulations.planner import PlannedAnchor, crlb_map, make_plan, propose
from tests.conftest import CORNER_STORE, DEMO_MALL, instore_exe


def _reference_crlb(px: float, py: float, venue: Venue, sigma: float) -> tuple[float, int]:
    """Slow, obvious version: Fisher matrix by finite differences of the mean RSSI, then inverse."""
    def mean(a: Anchor, x: float, y: float) -> float:
        d = math.sqrt((x - a.x) ** 2 + (y - a.y) ** 2 + (a.z - 1.2) ** 2)
        return a.rssi_1m - 10 * a.path_loss_n * math.log10(d)

    fisher = np.zeros((2, 2))
    heard = 0
    h = 1e-5
    for a in venue.anchors:
        if mean(a, px, py) < -95.0:
            continue
        heard += 1
        g = np.array([(mean(a, px + h, py) - mean(a, px - h, py)) / (2 * h),
                      (mean(a, px, py + h) - mean(a, px, py - h)) / (2 * h)])
        fisher += np.outer(g, g) / sigma**2
    return float(math.sqrt(np.trace(np.linalg.inv(fisher)))), heard


def test_crlb_map_matches_a_slow_reference(store: Venue) -> None:
    m = crlb_map(store, "L1", sigma_db=6.0)
    assert m.x.size > 200  # 1 m grid over ~300 m² minus shelves
    rng = np.random.default_rng(0)
    for k in rng.choice(m.x.size, 25, replace=False):
        ref, heard = _reference_crlb(float(m.x[k]), float(m.y[k]), store, 6.0)
        assert m.heard[k] == heard
        assert m.err_m[k] == pytest.approx(ref, rel=1e-4)
    # Error scales with sigma.
    m2 = crlb_map(store, "L1", sigma_db=3.0)
    np.testing.assert_allclose(m2.err_m, m.err_m / 2, rtol=1e-9)


def test_blind_spots_where_fewer_than_three_anchors_are_heard(store: Venue) -> None:
    # Keep only the two western gateways: nowhere are 3 heard, everything is blind.
    two = Venue(store.info, store.floors, store.anchors[:1] + store.anchors[3:4], store.beacons, store.zones,
                store.walkable, store.connectors, store.pois)
    m = crlb_map(two, "L1")
    assert m.blind.all() and math.isinf(m.median_m)
    assert m.blind_m2 == pytest.approx(m.x.size * 1.0)
    # Weak gateways far away: blind where they are too quiet.
    quiet = Venue(store.info, store.floors, tuple(
        type(a)(a.id, a.floor, a.x, a.y, a.z, a.kind, -66.0, 3.0) for a in store.anchors), store.beacons,
        store.zones, store.walkable, store.connectors, store.pois)
    mq = crlb_map(quiet, "L1")
    assert 0 < mq.blind.sum() < mq.x.size


def test_adding_gateways_improves_the_predicted_accuracy(store: Venue) -> None:
    before = crlb_map(store, "L1")
    added = propose(store, "L1", target_p90_m=3.0, max_add=6)
    assert 1 <= len(added) <= 6
    after = crlb_map(store, "L1", extra=added)
    assert after.median_m < before.median_m and after.p90_m < before.p90_m
    # More gateways never make any point worse (information only adds up).
    assert np.all(after.err_m <= before.err_m + 1e-9)
    # A gateway anywhere helps somewhere.
    one = crlb_map(store, "L1", extra=[PlannedAnchor(10.0, 7.5, 3.0, -59.0, 2.2)])
    assert one.median_m < before.median_m


def test_planner_fills_blind_spots_first(store: Venue) -> None:
    three = Venue(store.info, store.floors, store.anchors[:3], store.beacons, store.zones, store.walkable,
                  store.connectors, store.pois)
    plans = make_plan(three, max_add=4)
    assert plans[0].now.blind_m2 > 0 or plans[0].now.p90_m > 4.0
    assert plans[0].proposed.blind_m2 <= plans[0].now.blind_m2
    assert plans[0].proposed.p90_m < plans[0].now.p90_m


def test_plan_command_writes_json_and_pngs(tmp_path: Path) -> None:
    out = tmp_path / "plan"
    proc = subprocess.run([instore_exe(), "plan", "--venue", str(DEMO_MALL), "--out", str(out), "--max-add", "3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "plan.json").read_text(encoding="utf-8"))
    assert doc["sigma_db"] == 6.0
    assert set(doc["floors"]) == {"L1", "L2"}
    for fl in doc["floors"].values():
        assert set(fl) == {"median_err_m", "p90_err_m", "blind_spot_m2", "proposed_median_err_m", "proposed_p90_err_m"}
        assert 0 < fl["median_err_m"] <= fl["p90_err_m"]
        assert fl["proposed_p90_err_m"] <= fl["p90_err_m"]
    assert doc["proposal"] and all(set(p) == {"floor", "x", "y"} for p in doc["proposal"])
    assert len(doc["proposal"]) <= 6
    for f in ("L1", "L2"):
        png = (out / f"{f}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 30_000


def test_plan_command_default_out_dir_and_bad_venue(tmp_path: Path) -> None:
    proc = subprocess.run([instore_exe(), "plan", "--venue", str(CORNER_STORE), "--max-add", "1"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "plan-corner-store" / "plan.json").exists()
    proc = subprocess.run([instore_exe(), "plan", "--venue", str(tmp_path / "missing.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no such file" in proc.stderr
