"""Deployment planner: predicted accuracy from the Cramér–Rao bound of the radio model, blind spots,
and a greedy proposal of gateways to add.

For a device at ``DEVICE_HEIGHT_M`` at a point of a 1 m grid over a floor's walkable area, each
anchor of that floor whose mean RSSI ``rssi_1m - 10 n log10(d_3d)`` is at least ``MIN_RSSI_DBM``
contributes ``∇μ ∇μᵀ / σ²`` to the Fisher information of the 2-D position, with
``∇μ = -(10 n / ln 10) (p - a)_xy / d²``. The point's predicted error is the RMS error of an
efficient estimator, ``sqrt(trace(F⁻¹))``; with fewer than 3 such anchors it is a blind spot.

``crlb_map`` is pure (the accuracy benchmark uses it for ``crlb_median_m``); ``run_plan`` writes the
PNGs and ``plan.json`` (ARCHITECTURE.md, CLI).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import shapely

from positioning.venue import Venue, walkable_shape
from simulations.errors import SimulationError

SIGMA_DB: Final = 6.0  # shadowing σ of the plan (ARCHITECTURE.md)
DEVICE_HEIGHT_M: Final = 1.2  # phones and tags are carried at about this height
MIN_RSSI_DBM: Final = -95.0  # anchors heard less loudly than this on average do not count
MIN_ANCHORS: Final = 3  # fewer than this: a blind spot
GRID_M: Final = 1.0  # the accuracy map's resolution
CANDIDATE_GRID_M: Final = 4.0  # where the planner tries new gateways
SCORE_GRID_M: Final = 2.0  # points the greedy search scores candidates on
ERROR_CAP_M: Final = 10.0  # blind spots and hopeless points count as this in the greedy score
DEFAULT_TARGET_P90_M: Final = 4.0  # the accuracy to reach with the fewest added gateways
DEFAULT_MAX_ADD: Final = 12  # per floor
NEW_GATEWAY_Z_M: Final = 3.0  # proposed gateways hang at ceiling height
NEW_GATEWAY_RSSI_1M: Final = -59.0
NEW_GATEWAY_N: Final = 2.0
MAX_GRID_POINTS: Final = 2_000_000  # refuse absurd floors rather than run out of memory


@dataclass(frozen=True, slots=True)
class PlannedAnchor:
    x: float
    y: float
    z: float
    rssi_1m: float
    path_loss_n: float


@dataclass(frozen=True, slots=True)
class CrlbMap:
    """Predicted error per grid point of a floor's walkable area. ``err_m`` is NaN at blind spots."""

    floor: str
    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.float64]
    err_m: npt.NDArray[np.float64]
    heard: npt.NDArray[np.int64]  # anchors with mean RSSI >= MIN_RSSI_DBM
    cell_m2: float

    @property
    def blind(self) -> npt.NDArray[np.bool_]:
        return self.heard < MIN_ANCHORS

    @property
    def median_m(self) -> float:
        ok = self.err_m[~self.blind]
        return float(np.median(ok)) if ok.size else math.inf

    @property
    def p90_m(self) -> float:
        ok = self.err_m[~self.blind]
        return float(np.percentile(ok, 90)) if ok.size else math.inf

    @property
    def blind_m2(self) -> float:
        return float(self.blind.sum() * self.cell_m2)


def grid_points(venue: Venue, floor: str, step_m: float) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Centres of a ``step_m`` grid over the floor's outline that lie in its walkable area."""
    shape = walkable_shape(venue, floor)
    x0, y0, x1, y1 = shape.bounds
    nx, ny = math.ceil((x1 - x0) / step_m), math.ceil((y1 - y0) / step_m)
    if nx * ny > MAX_GRID_POINTS:
        raise SimulationError(f"floor {floor!r}: {nx * ny} grid points at {step_m:g} m is too many")
    gx, gy = np.meshgrid(x0 + (np.arange(nx) + 0.5) * step_m, y0 + (np.arange(ny) + 0.5) * step_m)
    gx, gy = gx.ravel(), gy.ravel()
    shapely.prepare(shape)
    inside = shapely.intersects_xy(shape, gx, gy)
    return gx[inside], gy[inside]


def _anchors(venue: Venue, floor: str, mode: str) -> list[PlannedAnchor]:
    items = venue.anchors_on(floor) if mode == "gateway" else venue.beacons_on(floor)
    return [PlannedAnchor(a.x, a.y, a.z, a.rssi_1m, a.path_loss_n) for a in items]


def fisher_terms(px: npt.NDArray[np.float64], py: npt.NDArray[np.float64], anchors: Sequence[PlannedAnchor],
                 sigma_db: float, device_height_m: float = DEVICE_HEIGHT_M,
                 min_rssi_dbm: float = MIN_RSSI_DBM) -> tuple[npt.NDArray[np.float64], ...]:
    """(Fxx, Fxy, Fyy, heard) summed over ``anchors`` at each point."""
    fxx = np.zeros(px.size)
    fxy = np.zeros(px.size)
    fyy = np.zeros(px.size)
    heard = np.zeros(px.size)
    if not anchors:
        return fxx, fxy, fyy, heard
    ax = np.array([a.x for a in anchors])
    ay = np.array([a.y for a in anchors])
    az = np.array([a.z for a in anchors])
    p0 = np.array([a.rssi_1m for a in anchors])
    n = np.array([a.path_loss_n for a in anchors])
    for lo in range(0, px.size, 20_000):
        sl = slice(lo, lo + 20_000)
        dx = px[sl, None] - ax[None, :]
        dy = py[sl, None] - ay[None, :]
        d2 = dx * dx + dy * dy + (az[None, :] - device_height_m) ** 2
        mean = p0[None, :] - 5.0 * n[None, :] * np.log10(d2)
        use = mean >= min_rssi_dbm
        k = np.where(use, 10.0 * n[None, :] / math.log(10.0) / d2 / sigma_db, 0.0)
        gx, gy = k * dx, k * dy
        fxx[sl] = (gx * gx).sum(axis=1)
        fxy[sl] = (gx * gy).sum(axis=1)
        fyy[sl] = (gy * gy).sum(axis=1)
        heard[sl] = use.sum(axis=1)
    return fxx, fxy, fyy, heard


def crlb_from_fisher(fxx: npt.NDArray[np.float64], fxy: npt.NDArray[np.float64],
                     fyy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """sqrt(trace(F⁻¹)) of 2x2 Fisher matrices; inf where singular."""
    det = fxx * fyy - fxy * fxy
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.sqrt((fxx + fyy) / det)
    return np.where(det > 1e-12 * np.maximum(fxx + fyy, 1e-300) ** 2, out, np.inf)


def crlb_map(venue: Venue, floor: str, sigma_db: float = SIGMA_DB, *, mode: str = "gateway",
             extra: Sequence[PlannedAnchor] = (), grid_m: float = GRID_M,
             device_height_m: float = DEVICE_HEIGHT_M) -> CrlbMap:
    """The predicted-error map of one floor for its anchors (``mode="phone"``: its beacons) plus ``extra``."""
    if floor not in venue.floor_ids:
        raise SimulationError(f"unknown floor {floor!r} (floors: {', '.join(venue.floor_ids)})")
    if sigma_db <= 0:
        raise SimulationError(f"sigma_db must be > 0, got {sigma_db:g}")
    px, py = grid_points(venue, floor, grid_m)
    fxx, fxy, fyy, heard = fisher_terms(px, py, [*_anchors(venue, floor, mode), *extra], sigma_db, device_height_m)
    err = crlb_from_fisher(fxx, fxy, fyy)
    blind = heard < MIN_ANCHORS
    return CrlbMap(floor, px, py, np.where(blind, np.nan, err), heard.astype(np.int64), grid_m * grid_m)


def crlb_median_m(venue: Venue, sigma_db: float = SIGMA_DB, mode: str = "gateway") -> float:
    """Median predicted error over every floor's walkable grid (blind spots excluded)."""
    errs = [m.err_m[~m.blind] for m in (crlb_map(venue, f, sigma_db, mode=mode) for f in venue.floor_ids)]
    allerr = np.concatenate(errs) if errs else np.zeros(0)
    return float(np.median(allerr)) if allerr.size else math.inf


def _score(err: npt.NDArray[np.float64], heard: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Per point: the error, capped, with blind spots at the cap (axis -1 is points)."""
    return np.where(heard < MIN_ANCHORS, ERROR_CAP_M, np.minimum(err, ERROR_CAP_M))


def propose(venue: Venue, floor: str, sigma_db: float = SIGMA_DB, target_p90_m: float = DEFAULT_TARGET_P90_M,
            max_add: int = DEFAULT_MAX_ADD, mode: str = "gateway") -> list[PlannedAnchor]:
    """Greedy: add, one at a time, the ceiling spot that most lowers the mean capped error, until the
    floor has no blind spot and its p90 meets the target (or ``max_add`` are added)."""
    anchors = _anchors(venue, floor, mode)
    px, py = grid_points(venue, floor, SCORE_GRID_M)
    cx, cy = grid_points(venue, floor, CANDIDATE_GRID_M)
    if px.size == 0 or cx.size == 0:
        return []
    base = np.stack(fisher_terms(px, py, anchors, sigma_db))  # (4, points)
    # New gateways are of the kind already installed (median parameters), else a typical one.
    p0 = float(np.median([a.rssi_1m for a in anchors])) if anchors else NEW_GATEWAY_RSSI_1M
    n = float(np.median([a.path_loss_n for a in anchors])) if anchors else NEW_GATEWAY_N
    z = float(np.median([a.z for a in anchors])) if anchors else NEW_GATEWAY_Z_M
    cand = [PlannedAnchor(float(x), float(y), z, p0, n) for x, y in zip(cx.tolist(), cy.tolist(), strict=True)]
    # Each candidate's own contribution, (candidates, 4, points), computed once.
    contrib = np.stack([np.stack(fisher_terms(px, py, [c], sigma_db)) for c in cand]).astype(np.float32)
    added: list[PlannedAnchor] = []
    for _ in range(max_add):
        err = crlb_from_fisher(base[0], base[1], base[2])
        ok = base[3] >= MIN_ANCHORS
        if ok.all() and np.isfinite(err).all() and np.percentile(err, 90) <= target_p90_m:
            break
        trial = base[None, :, :] + contrib
        trial_err = crlb_from_fisher(trial[:, 0], trial[:, 1], trial[:, 2])
        score = _score(trial_err, trial[:, 3]).mean(axis=1)
        best = int(np.argmin(score))
        if score[best] >= _score(err, base[3]).mean() - 1e-9:
            break  # nothing helps any more
        added.append(cand[best])
        base = base + contrib[best]
    return added


@dataclass(frozen=True, slots=True)
class FloorPlan:
    floor: str
    now: CrlbMap
    proposed: CrlbMap
    added: tuple[PlannedAnchor, ...]


def make_plan(venue: Venue, sigma_db: float = SIGMA_DB, target_p90_m: float = DEFAULT_TARGET_P90_M,
              max_add: int = DEFAULT_MAX_ADD, mode: str = "gateway") -> list[FloorPlan]:
    out = []
    for f in venue.floor_ids:
        added = propose(venue, f, sigma_db, target_p90_m, max_add, mode)
        out.append(FloorPlan(f, crlb_map(venue, f, sigma_db, mode=mode),
                             crlb_map(venue, f, sigma_db, mode=mode, extra=added), tuple(added)))
    return out


def _json_num(v: float) -> float | None:
    return round(v, 3) if math.isfinite(v) else None


def plan_json(plans: Sequence[FloorPlan], sigma_db: float) -> dict[str, Any]:
    return {
        "sigma_db": sigma_db,
        "floors": {p.floor: {
            "median_err_m": _json_num(p.now.median_m),
            "p90_err_m": _json_num(p.now.p90_m),
            "blind_spot_m2": round(p.now.blind_m2, 3),
            "proposed_median_err_m": _json_num(p.proposed.median_m),
            "proposed_p90_err_m": _json_num(p.proposed.p90_m),
        } for p in plans},
        "proposal": [{"floor": p.floor, "x": round(a.x, 2), "y": round(a.y, 2)} for p in plans for a in p.added],
    }


def render_plan(venue: Venue, plans: Sequence[FloorPlan], out_dir: Path) -> list[Path]:
    """One PNG per floor: the current predicted-error heat map, blind spots, proposed gateways."""
    from matplotlib.axes import Axes

    from simulations.floorplan_png import render_floors

    paths = []
    for p in plans:
        def overlay(ax: Axes, floor_id: str, p: FloorPlan = p) -> None:
            m = p.now
            x0, x1 = m.x.min() - 0.5, m.x.max() + 0.5
            y0, y1 = m.y.min() - 0.5, m.y.max() + 0.5
            nx, ny = round(x1 - x0), round(y1 - y0)
            img = np.full((ny, nx), np.nan)
            ix = np.clip(((m.x - x0) / m.cell_m2 ** 0.5).astype(int), 0, nx - 1)
            iy = np.clip(((m.y - y0) / m.cell_m2 ** 0.5).astype(int), 0, ny - 1)
            img[iy, ix] = np.minimum(m.err_m, ERROR_CAP_M)
            im = ax.imshow(img, origin="lower", extent=(x0, x1, y0, y1), cmap="RdYlGn_r", vmin=0.0,
                           vmax=max(6.0, float(np.nanpercentile(img, 95)) if np.isfinite(img).any() else 6.0),
                           alpha=0.75, zorder=3, interpolation="nearest")
            blind = np.zeros((ny, nx))
            blind[iy[m.blind], ix[m.blind]] = 1.0
            if m.blind.any():
                ax.imshow(np.where(blind > 0, 1.0, np.nan), origin="lower", extent=(x0, x1, y0, y1), cmap="Greys",
                          vmin=0, vmax=1.2, alpha=0.9, zorder=4, interpolation="nearest")
            cb = ax.figure.colorbar(im, ax=ax, fraction=0.025, pad=0.01)
            cb.set_label("predicted error (m, CRLB)", fontsize=7)
            cb.ax.tick_params(labelsize=6)
            for a in (venue.anchors_on(floor_id) if venue.anchors else venue.beacons_on(floor_id)):
                ax.plot(a.x, a.y, marker="^", color="#1d3557", markersize=4, linestyle="none", zorder=5)
            for new in p.added:
                ax.plot(new.x, new.y, marker="*", color="#7b2cbf", markersize=11, markeredgecolor="white",
                        linestyle="none", zorder=6)
            ax.set_title(f"floor {floor_id}: median {_fmt(m.median_m)} m, p90 {_fmt(m.p90_m)} m, "
                         f"blind {m.blind_m2:.0f} m²; with {len(p.added)} proposed gateways (★): median "
                         f"{_fmt(p.proposed.median_m)} m, p90 {_fmt(p.proposed.p90_m)} m", fontsize=8)

        paths.append(render_floors(venue, out_dir / f"{p.floor}.png", floors=[p.floor], overlay=overlay))
    return paths


def _fmt(v: float) -> str:
    return f"{v:.1f}" if math.isfinite(v) else "∞"


def run_plan(venue: Venue, out_dir: Path, args: argparse.Namespace) -> int:
    sigma = float(getattr(args, "sigma_db", None) or SIGMA_DB)
    target = float(getattr(args, "target_p90", None) or DEFAULT_TARGET_P90_M)
    max_add = getattr(args, "max_add", None)
    max_add = DEFAULT_MAX_ADD if max_add is None else int(max_add)
    if sigma <= 0 or target <= 0 or max_add < 0:
        raise SimulationError("--sigma-db and --target-p90 must be > 0 and --max-add >= 0")
    if out_dir.exists() and not out_dir.is_dir():
        raise SimulationError(f"--out {out_dir}: exists and is not a directory")
    mode = "gateway" if venue.anchors else "phone"
    plans = make_plan(venue, sigma, target, max_add, mode)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = plan_json(plans, sigma)
    (out_dir / "plan.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    render_plan(venue, plans, out_dir)
    for p in plans:
        print(f"floor {p.floor}: median {_fmt(p.now.median_m)} m, p90 {_fmt(p.now.p90_m)} m, blind spots "
              f"{p.now.blind_m2:.0f} m2; +{len(p.added)} gateways -> median {_fmt(p.proposed.median_m)} m, "
              f"p90 {_fmt(p.proposed.p90_m)} m, blind {p.proposed.blind_m2:.0f} m2")
    print(f"wrote {out_dir}/plan.json and {', '.join(p.floor + '.png' for p in plans)}")
    return 0
