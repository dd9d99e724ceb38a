"""The scorer: perfect output scores perfectly; known noise and delays show up as they should."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from positioning.venue import Venue
from simulations.evaluation import Estimates, score, truth_of
from simulations.scenario import SimulationResult, simulate
from simulations.truth import innermost_zone
from tests.conftest import CORNER_STORE, instore_exe


@pytest.fixture(scope="module")
def run(store: Venue) -> SimulationResult:
    return simulate(store, shoppers=25, duration_s=300, seed=21)


def _as_estimates(store: Venue, r: SimulationResult, dx: np.ndarray | float = 0.0, dy: np.ndarray | float = 0.0,
                  dt: float = 0.0) -> Estimates:
    p = r.positions
    x, y = p.x + dx, p.y + dy
    return Estimates(p.t + dt, p.device, x, y, p.floor, innermost_zone(store, p.x, p.y, p.floor))


def test_perfect_output_scores_perfectly(store: Venue, run: SimulationResult) -> None:
    s = score(store, truth_of(run), _as_estimates(store, run))
    assert s.rows == s.scored_rows == len(run.positions)
    assert s.median_err_m == pytest.approx(0.0, abs=1e-9) and s.p90_err_m == pytest.approx(0.0, abs=1e-9)
    assert s.floor_accuracy == 1.0 and s.zone_accuracy == 1.0
    assert s.true_visits > 5
    assert s.visit_f1 == 1.0 and s.dwell_rel_err == pytest.approx(0.0, abs=1e-9)
    assert s.passer_by_f1 in (None, 1.0)


def test_gaussian_noise_gives_the_rayleigh_median(store: Venue, run: SimulationResult) -> None:
    rng = np.random.default_rng(1)
    n = len(run.positions)
    sd = 2.0
    s = score(store, truth_of(run), _as_estimates(store, run, rng.normal(0, sd, n), rng.normal(0, sd, n)))
    assert s.median_err_m == pytest.approx(sd * np.sqrt(2 * np.log(2)), rel=0.05)
    assert s.p90_err_m == pytest.approx(sd * np.sqrt(2 * np.log(10)), rel=0.05)


def test_late_output_costs_zone_accuracy_and_offers_are_timed(store: Venue, run: SimulationResult) -> None:
    late = score(store, truth_of(run), _as_estimates(store, run, dt=8.0))
    assert late.zone_accuracy is not None and late.zone_accuracy < 1.0
    assert late.mean_err_m > 0.1  # walkers were elsewhere 8 s ago (most shoppers stand still)
    # Offers: one at each true counter stay, 4 s after its start, and one for a stay that never was.
    v = run.visits
    counters = np.flatnonzero(np.char.startswith(v.zone.astype(str), "c-"))
    assert counters.size > 0
    t = np.concatenate([v.start[counters] + np.minimum(4.0, v.dwell[counters]), [v.start[0] - 1000.0]])
    dev = np.concatenate([v.device[counters], [v.device[0]]])
    zone = np.concatenate([v.zone[counters], [v.zone[0]]])
    offers = Estimates(t, dev, np.zeros(t.size), np.zeros(t.size), None, zone)
    s = score(store, truth_of(run), _as_estimates(store, run), offers=offers)
    assert s.offers == t.size
    assert s.offer_in_zone == pytest.approx(counters.size / t.size)
    assert s.offer_delay_median_s is not None and 0.0 <= s.offer_delay_median_s <= 4.0


def test_missing_visits_lower_recall(store: Venue, run: SimulationResult) -> None:
    est = _as_estimates(store, run)
    assert est.zone is not None
    zone = np.where(np.char.startswith(est.zone.astype(str), "c-"), "", est.zone).astype(object)
    s = score(store, truth_of(run), Estimates(est.t, est.device, est.x, est.y, est.floor, zone))
    assert s.visit_precision == pytest.approx(1.0)
    assert s.visit_recall is not None and s.visit_recall < 1.0
    assert s.dwell_rel_err is not None


def test_simulate_locate_evaluate_end_to_end(tmp_path: Path) -> None:
    """The files `instore simulate` writes go through `instore locate`, and `instore evaluate` scores it."""
    run_dir = tmp_path / "sim"
    cmds = [
        ["simulate", "--venue", str(CORNER_STORE), "--shoppers", "6", "--duration", "60", "--out", str(run_dir),
         "--seed", "5"],
        ["locate", "--venue", str(CORNER_STORE), "--readings", str(run_dir / "readings.csv"),
         "--out", str(run_dir / "P.csv")],
        ["evaluate", "--venue", str(CORNER_STORE), "--truth", str(run_dir), "--positions", str(run_dir / "P.csv"),
         "--json", str(run_dir / "score.json")],
    ]
    for cmd in cmds:
        proc = subprocess.run([instore_exe(), *cmd], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (cmd[0], proc.stderr)
    doc = json.loads((run_dir / "score.json").read_text(encoding="utf-8"))
    assert doc["scored_rows"] == doc["rows"] > 100
    assert 0.0 < doc["median_err_m"] < 15.0  # a 20 x 15 m store
    assert doc["floor_accuracy"] == 1.0
    assert 0.0 <= doc["zone_accuracy"] <= 1.0


def test_evaluate_names_a_missing_column(tmp_path: Path) -> None:
    run_dir = tmp_path / "sim"
    subprocess.run([instore_exe(), "simulate", "--venue", str(CORNER_STORE), "--shoppers", "2", "--duration", "10",
                    "--out", str(run_dir)], check=True, capture_output=True, timeout=120)
    bad = tmp_path / "P.csv"
    bad.write_text("t,device,x\n1,a,2\n", encoding="utf-8")
    proc = subprocess.run([instore_exe(), "evaluate", "--venue", str(CORNER_STORE), "--truth", str(run_dir),
                           "--positions", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "missing column(s) y" in proc.stderr and proc.stderr.count("\n") == 1
