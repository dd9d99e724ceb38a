"""The scorer: perfect output scores perfectly; known noise and delays show up as they should."""

from __future__ import annotations

import numpy as np
import pytest

from positioning.venue import Venue, parse_venue
from simulations.evaluation import Estimates, score, truth_of
from simulations.scenario import SimulationResult, simulate
from simulations.truth import innermost_zone
from tests.conftest import CORNER_STORE


@pytest.fixture(scope="module")
def store() -> Venue:
    return parse_venue(CORNER_STORE.read_text(encoding="utf-8"), str(CORNER_STORE))


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
