"""Scores engine output against simulation truth. Pure: arrays in, a ``Score`` out.

The engine's output is the ``instore locate`` P.csv shape (``t, device, x, y`` and optionally
``floor, zone``), or the live engine's fixes in the same columns. Measured:

- position error (horizontal, metres) of every output row against the true position of that device
  at that time (truth interpolated between its 1 Hz samples): median, p90, p95, mean;
- floor accuracy: share of rows on the true floor;
- zone accuracy: share of rows whose zone is the innermost true zone ('' = none) at that time;
- dwell: per (device, zone) with a true visit (dwell >= ``VISIT_MIN_S``), the relative error of the
  dwell read off the zone column (same stay rules as the truth);
- visitors and passers-by: per (device, zone) of the shop-like zones, the device is a *visitor* when
  it stayed at least ``VISIT_MIN_S``, a *passer-by* when it came within ``PASS_BY_M`` of the zone
  without visiting; F1 of each class, estimated vs true;
- offer timing (optional offers ``device, zone, t``): share sent while the device truly was in the
  zone, and the delay since it truly entered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import shapely

from positioning.venue import Venue, zone_shape
from simulations.errors import SimulationError
from simulations.truth import Stays, innermost_zone, stays_from_positions, stays_from_zone_column, zone_containers

VISIT_MIN_S: Final = 30.0  # a stay this long makes a visitor; shorter ones are passing through
PASS_BY_M: Final = 3.0  # coming this close to a zone without visiting it is passing by
MATCH_SLACK_S: Final = 1.5  # output rows this far outside a device's truth are not scored
VISIT_ZONE_KINDS: Final = ("store", "counter", "area", "checkout")  # where "visit" means something
OFFER_SLACK_S: Final = 5.0  # an offer within this of a true stay's end still counts as in the zone


@dataclass(frozen=True, slots=True)
class Estimates:
    """Engine output as columns; ``floor``/``zone`` may be None when the output has no such column
    (a zone cell of '' means outside every zone)."""

    t: npt.NDArray[np.float64]
    device: npt.NDArray[np.object_]
    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.float64]
    floor: npt.NDArray[np.object_] | None = None
    zone: npt.NDArray[np.object_] | None = None

    def __post_init__(self) -> None:
        n = self.t.shape[0]
        for name in ("device", "x", "y", "floor", "zone"):
            col = getattr(self, name)
            if col is not None and col.shape[0] != n:
                raise SimulationError(f"estimates: column {name} has {col.shape[0]} rows, t has {n}")


@dataclass(frozen=True, slots=True)
class Truth:
    """Truth of a run: positions per second and stays (as in truth_positions.csv / truth_visits.csv)."""

    t: npt.NDArray[np.float64]
    device: npt.NDArray[np.object_]
    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.float64]
    floor: npt.NDArray[np.object_]
    visits: Stays


@dataclass(frozen=True, slots=True)
class Score:
    rows: int
    scored_rows: int
    median_err_m: float
    p90_err_m: float
    p95_err_m: float
    mean_err_m: float
    floor_accuracy: float | None
    zone_accuracy: float | None
    dwell_rel_err: float | None
    dwell_rel_err_mean: float | None
    visit_precision: float | None
    visit_recall: float | None
    visit_f1: float | None
    passer_by_f1: float | None
    true_visits: int
    offers: int
    offer_in_zone: float | None
    offer_delay_median_s: float | None
    offer_delay_p90_s: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _f1(est: set[tuple[str, str]], true: set[tuple[str, str]]) -> tuple[float | None, float | None, float | None]:
    if not est and not true:
        return None, None, None
    tp = len(est & true)
    precision = tp / len(est) if est else 0.0
    recall = tp / len(true) if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1


def _truth_at(truth: Truth, est: Estimates) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64],
                                                     npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """(matched, true x, true y, index of the nearest truth sample) for every output row."""
    n = est.t.shape[0]
    ok = np.zeros(n, dtype=bool)
    tx = np.full(n, np.nan)
    ty = np.full(n, np.nan)
    near = np.zeros(n, dtype=np.int64)
    order = np.lexsort((truth.t, truth.device.astype(str)))
    tdev = truth.device[order].astype(str)
    starts = np.flatnonzero(np.concatenate([[True], tdev[1:] != tdev[:-1]]))
    ends = np.concatenate([starts[1:], [tdev.size]])
    spans = {tdev[s]: (s, e) for s, e in zip(starts.tolist(), ends.tolist(), strict=True)}
    edev = est.device.astype(str)
    for dev in np.unique(edev):
        span = spans.get(str(dev))
        if span is None:
            continue
        rows = np.flatnonzero(edev == dev)
        idx = order[span[0]:span[1]]
        tt = truth.t[idx]
        et = est.t[rows]
        inside = (et >= tt[0] - MATCH_SLACK_S) & (et <= tt[-1] + MATCH_SLACK_S)
        rows, et = rows[inside], et[inside]
        k = np.clip(np.searchsorted(tt, et), 1, max(tt.size - 1, 1))
        if tt.size == 1:
            k0 = np.zeros(et.size, dtype=np.int64)
            k1 = k0
        else:
            k0, k1 = k - 1, k
        span_t = tt[k1] - tt[k0]
        frac = np.clip(np.where(span_t > 0, (et - tt[k0]) / np.where(span_t > 0, span_t, 1.0), 0.0), 0.0, 1.0)
        # No interpolation across a floor change or a gap: take the nearer sample then.
        same = (truth.floor[idx][k0] == truth.floor[idx][k1]) & (span_t <= 1.5)
        frac = np.where(same, frac, np.round(frac))
        tx[rows] = truth.x[idx][k0] + (truth.x[idx][k1] - truth.x[idx][k0]) * frac
        ty[rows] = truth.y[idx][k0] + (truth.y[idx][k1] - truth.y[idx][k0]) * frac
        near[rows] = idx[np.where(frac < 0.5, k0, k1)]
        ok[rows] = True
    return ok, tx, ty, near


def _near_zone(venue: Venue, device: npt.NDArray[np.object_], x: npt.NDArray[np.float64],
               y: npt.NDArray[np.float64], floor: npt.NDArray[np.object_] | None) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for z in venue.zones:
        if z.kind not in VISIT_ZONE_KINDS:
            continue
        on = np.ones(x.size, dtype=bool) if floor is None else floor == z.floor
        if not on.any():
            continue
        shape = zone_shape(z).buffer(PASS_BY_M)
        shapely.prepare(shape)
        hit = np.flatnonzero(on)[shapely.intersects_xy(shape, x[on], y[on])]
        out.update((str(d), z.id) for d in np.unique(device[hit]).tolist())
    return out


def _visits(stays: Stays, kinds: Mapping[str, str]) -> dict[tuple[str, str], float]:
    """Total dwell per (device, zone) over shop-like zones (every stay counted)."""
    out: dict[tuple[str, str], float] = {}
    for d, z, dwell in zip(stays.device.tolist(), stays.zone.tolist(), stays.dwell.tolist(), strict=True):
        if kinds.get(str(z)) in VISIT_ZONE_KINDS:
            out[(str(d), str(z))] = out.get((str(d), str(z)), 0.0) + float(dwell)
    return out


def score(venue: Venue, truth: Truth, est: Estimates, offers: Estimates | None = None,
          visit_min_s: float = VISIT_MIN_S, sample_s: float = 1.0) -> Score:
    """Compare engine output with the truth of a simulated run (see the module docstring).

    ``offers``, when given, uses ``t``, ``device`` and ``zone`` (x, y ignored).
    """
    n = int(est.t.shape[0])
    ok, tx, ty, near = _truth_at(truth, est)
    err = np.hypot(est.x[ok] - tx[ok], est.y[ok] - ty[ok])

    def pct(q: float) -> float:
        return float(np.percentile(err, q)) if err.size else float("nan")

    floor_acc = None
    if est.floor is not None and ok.any():
        floor_acc = float(np.mean(est.floor[ok].astype(str) == truth.floor[near[ok]].astype(str)))
    zone_acc = None
    if est.zone is not None and ok.any():
        true_zone = innermost_zone(venue, truth.x[near[ok]], truth.y[near[ok]], truth.floor[near[ok]])
        ez = np.array(["" if z is None or (isinstance(z, float) and np.isnan(z)) else str(z)
                       for z in est.zone[ok].tolist()], dtype=object)
        zone_acc = float(np.mean(ez == true_zone))

    kinds = {z.id: z.kind for z in venue.zones}
    true_dwell = _visits(truth.visits, kinds)
    true_visitors = {k for k, v in true_dwell.items() if v >= visit_min_s}
    # Only devices the output covers are judged (the engine cannot know devices it never heard).
    covered = set(np.unique(est.device.astype(str)).tolist())
    true_visitors = {k for k in true_visitors if k[0] in covered}
    dwell_rel = vis_p = vis_r = vis_f1 = pass_f1 = dwell_mean = None
    if est.zone is not None:
        zone_col = np.array(["" if z is None or (isinstance(z, float) and np.isnan(z)) else str(z)
                             for z in est.zone.tolist()], dtype=object)
        est_stays = stays_from_zone_column(est.device.astype(str).astype(object), est.t, zone_col,
                                           zone_containers(venue), sample_s)
        est_dwell = _visits(est_stays, kinds)
        est_visitors = {k for k, v in est_dwell.items() if v >= visit_min_s}
        rel = [abs(est_dwell.get(k, 0.0) - true_dwell[k]) / true_dwell[k] for k in true_visitors]
        if rel:
            dwell_rel = float(np.median(rel))
            dwell_mean = float(np.mean(rel))
        vis_p, vis_r, vis_f1 = _f1(est_visitors, true_visitors)
        tdev_mask = np.isin(truth.device.astype(str), np.array(sorted(covered)))
        true_near = _near_zone(venue, truth.device[tdev_mask], truth.x[tdev_mask], truth.y[tdev_mask],
                               truth.floor[tdev_mask])
        est_near = _near_zone(venue, est.device, est.x, est.y, est.floor)
        true_pass = {k for k in true_near if k not in true_visitors}
        est_pass = {k for k in est_near if k not in est_visitors}
        pass_f1 = _f1(est_pass, true_pass)[2]

    n_off = 0
    in_zone = delay_med = delay_p90 = None
    if offers is not None and offers.zone is not None and offers.t.size:
        n_off = int(offers.t.size)
        hits = 0
        delays: list[float] = []
        v = truth.visits
        for d, z, t in zip(offers.device.astype(str).tolist(), offers.zone.astype(str).tolist(), offers.t.tolist(),
                           strict=True):
            m = (v.device.astype(str) == d) & (v.zone.astype(str) == z) & (v.start <= t)
            if not m.any():
                continue
            k = np.flatnonzero(m)[np.argmax(v.start[m])]
            if t <= v.end[k] + OFFER_SLACK_S:
                hits += 1
                delays.append(float(t - v.start[k]))
        in_zone = hits / n_off
        if delays:
            delay_med = float(np.median(delays))
            delay_p90 = float(np.percentile(delays, 90))

    return Score(rows=n, scored_rows=int(ok.sum()), median_err_m=pct(50), p90_err_m=pct(90), p95_err_m=pct(95),
                 mean_err_m=float(err.mean()) if err.size else float("nan"), floor_accuracy=floor_acc,
                 zone_accuracy=zone_acc, dwell_rel_err=dwell_rel, dwell_rel_err_mean=dwell_mean,
                 visit_precision=vis_p, visit_recall=vis_r, visit_f1=vis_f1, passer_by_f1=pass_f1,
                 true_visits=len(true_visitors), offers=n_off, offer_in_zone=in_zone,
                 offer_delay_median_s=delay_med, offer_delay_p90_s=delay_p90)


def truth_of(result: Any) -> Truth:
    """The ``Truth`` of a ``SimulationResult``."""
    p = result.positions
    return Truth(p.t, p.device, p.x, p.y, p.floor, result.visits)


def truth_from_positions(venue: Venue, t: npt.NDArray[np.float64], device: npt.NDArray[np.object_],
                         x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], floor: npt.NDArray[np.object_],
                         visits: Stays | None = None) -> Truth:
    """A ``Truth`` from truth_positions columns; stays are derived when not given."""
    if visits is None:
        visits = stays_from_positions(venue, device, t, x, y, floor)
    return Truth(t, device, x, y, floor, visits)
