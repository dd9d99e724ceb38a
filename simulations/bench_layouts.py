"""Benchmark ``layouts``: the engine without a floor plan in rooms, a corridor and halls of different sizes.

``instore bench layouts --json OUT``: the hall generator (``simulations/hall.py``) in each layout of
``LAYOUTS`` (receivers on a grid, devices roaming up to half a spacing beyond them), at path-loss exponents
2.2 and 3.0 (learned, not given) and a few seeds. Walking and standing devices go through the live locator
second by second; static 2-s scans by five phones (±6 dB) go through ``instore locate`` in process (no
survey). Both are scored next to the weighted centroid of the three strongest receivers (what BLE presence
tools report) on the same readings, in the same run. Small layouts are where a presence tool is hard to
beat: every place is near the receivers' centre. ``--quick``: the 10 x 10 m room and the corridor, one
seed.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from simulations.bench_hall import locate_hall
from simulations.bench_positioning import emit_results
from simulations.bench_survey import locate, static_errors, write_anchors, write_scans
from simulations.hall import (
    HallConfig,
    HallData,
    Scans,
    centroid_baseline,
    errors_at,
    generate,
    scan_means,
    standing_scans,
    strongest_centroid,
)

FloatArray = npt.NDArray[np.float64]

SEED: Final = 20261123
# name: (width m, depth m, receiver spacing m)
LAYOUTS: Final = {
    "room-10x10": (10.0, 10.0, 5.0),  # 4 receivers
    "room-20x15": (20.0, 15.0, 7.0),  # 6
    "hall-40x30": (40.0, 30.0, 10.0),  # 12
    "corridor-60x6": (60.0, 6.0, 10.0),  # a row of 6
    "hall-60x40": (60.0, 40.0, 12.0),  # 15
}
EXPONENTS: Final = (2.2, 3.0)
SEEDS: Final = 2
DEVICES: Final = 6
DURATION_S: Final = 200.0
SCANS: Final = 120
PHONES: Final = 5
QUICK: Final = ("room-10x10", "corridor-60x6")


def phone_scans(cfg: HallConfig, seed: int) -> Scans:
    """SCANS static 2-s scans at random spots by PHONES phones with ±6 dB offsets."""
    rng = np.random.default_rng([seed, 0x1A7])
    x = rng.uniform(0.5, cfg.width_m - 0.5, SCANS)
    y = rng.uniform(0.5, cfg.depth_m - 0.5, SCANS)
    offsets = np.clip(rng.normal(0.0, 6.0, PHONES), -12.0, 12.0)
    who = np.arange(SCANS) % PHONES
    phones = np.array([f"phone{k}" for k in range(PHONES)], dtype=object)
    return standing_scans(cfg, seed, 3, x, y, phones[who], offsets[who], 10.0 * np.arange(SCANS, dtype=np.float64),
                          2.0)


def locate_scans(data: HallData, scans: Scans, folder: Path) -> list[dict[str, str]]:
    """The scans through ``instore locate`` (in process, anchors by position only, no survey): its rows."""
    write_anchors(data, folder)
    write_scans(folder / "scans.csv", scans, False)
    rows, _ = locate(folder, "scans.csv", False)
    return rows


def run_layout(width: float, depth: float, spacing: float, n: float, seed: int) -> dict[str, float]:
    cfg = HallConfig(width_m=width, depth_m=depth, spacing_m=spacing, n=n, devices=DEVICES, duration_s=DURATION_S)
    data = generate(cfg, seed)
    t, dev, x, y, n_used = locate_hall(data)
    e = errors_at(data, t, dev, x, y)
    bt, bd, bx, by = centroid_baseline(data)
    eb = errors_at(data, bt, bd, bx, by)
    scans = phone_scans(cfg, seed)
    with tempfile.TemporaryDirectory(prefix="instore-bench-layouts-") as tmp:
        rows = locate_scans(data, scans, Path(tmp))
    es = static_errors(rows, scans)
    mean, sx, sy, _ = scan_means(scans, data.anchor_ids)
    cx, cy = strongest_centroid(mean, data.anchor_x, data.anchor_y)
    esb = np.hypot(cx - sx, cy - sy)
    return {"median_err_m": float(np.median(e)), "baseline_median_err_m": float(np.median(eb)),
            "static_median_err_m": float(np.median(es)), "static_baseline_median_err_m": float(np.median(esb)),
            "exponent_used": n_used}


def run(args: argparse.Namespace) -> int:
    quick = bool(getattr(args, "quick", False))
    names = QUICK if quick else tuple(LAYOUTS)
    exponents = EXPONENTS
    seeds = 1 if quick else SEEDS
    out: dict[str, Any] = {"layouts": {}, "seed": SEED}
    table = []
    tracked, static = [], []
    for name in names:
        w, d, s = LAYOUTS[name]
        runs = [run_layout(w, d, s, n, SEED + k) for n in exponents for k in range(seeds)]
        ratio = float(np.mean([r["median_err_m"] / r["baseline_median_err_m"] for r in runs]))
        ratio_s = float(np.mean([r["static_median_err_m"] / r["static_baseline_median_err_m"] for r in runs]))
        out["layouts"][name] = {
            "runs": runs, "median_vs_baseline": ratio, "static_median_vs_baseline": ratio_s,
            "median_err_m": float(np.mean([r["median_err_m"] for r in runs])),
            "baseline_median_err_m": float(np.mean([r["baseline_median_err_m"] for r in runs])),
        }
        tracked.append(ratio)
        static.append(ratio_s)
        table.append((name, f"tracked {ratio:.2f}x, static {ratio_s:.2f}x",
                      f"median {out['layouts'][name]['median_err_m']:.2f} m vs centroid "
                      f"{out['layouts'][name]['baseline_median_err_m']:.2f} m"))
    out["median_vs_baseline_mean"] = float(np.mean(tracked))
    out["static_median_vs_baseline_mean"] = float(np.mean(static))
    table.append(("all", f"tracked {np.mean(tracked):.2f}x, static {np.mean(static):.2f}x",
                  "the centroid's median error (mean of the ratios)"))
    emit_results(args, "layouts", out, table)
    return 0
