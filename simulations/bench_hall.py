"""Benchmark ``hall``: the engine on a channel it was not developed against, next to a presence tool's answer.

``instore bench hall --json OUT``: for each channel of ``CHANNELS`` (``simulations/hall.py``: plane-wave
shadowing, Rician fading, bodies, exponents from 1.8 to 3.0, anchors known by position only unless
said), every reading goes through the live locator second by second (as ``instore locate`` feeds it),
and the same readings through the weighted centroid of the three strongest receivers (what BLE presence
tools report). Both are scored against the generator's truth at each output's time, in the same run.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from typing import Any, Final

import numpy as np

from simulations.bench_positioning import emit_results
from simulations.hall import HallConfig, HallData, centroid_baseline, errors_at, generate

SEED: Final = 20261123
CHANNELS: Final = {
    "n2.2": HallConfig(),
    "n3.0": HallConfig(n=3.0),
    "n3.0-given": HallConfig(n=3.0, give_params=True),
    "n1.8": HallConfig(n=1.8),
    "quiet-tags": HallConfig(p0_dbm=-75.0),  # 16 dB below the 1 m power assumed when the file gives none
    "uneven-receivers": HallConfig(p0_sd_db=5.0),  # receivers' 1 m power differs by 5 dB (2 dB elsewhere)
    "n3.0-clean": HallConfig(n=3.0, sigma_db=0.0, rice_k=1e3, body_db=0.0, p0_sd_db=0.0, n_sd=0.0, offset_sd_db=0.0,
                             give_params=True),
}
QUICK: Final = ("n3.0",)


def hall_fixes(data: HallData) -> tuple[list[Any], float]:
    """The live locator over the hall's readings (second by second, as ``instore locate`` feeds it): its
    fixes, and the exponent it used."""
    from positioning.live import LiveLocator, LocatorConfig, Readings
    from positioning.radio import anchor_table

    k = len(data.anchor_ids)
    anchors = anchor_table(list(data.anchor_ids), data.anchor_x, data.anchor_y, z=[data.anchor_z] * k,
                           rssi_1m=None if data.nominal_p0 is None else [data.nominal_p0] * k,
                           path_loss_n=None if data.nominal_n is None else [data.nominal_n] * k)
    loc = LiveLocator(anchors, config=LocatorConfig(learn_exponent=data.nominal_n is None))
    fixes = [f for res in loc.replay(Readings.from_columns(data.t, data.device, data.anchor, data.rssi))
             for f in res.fixes]
    return fixes, float(np.median(loc.anchors.path_loss_n))


def locate_hall(data: HallData) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any],
                                         np.ndarray[Any, Any], float]:
    """Fix times, devices, positions and the exponent used, from ``hall_fixes``."""
    fixes, n_used = hall_fixes(data)
    return (np.array([f.t for f in fixes]), np.array([f.device for f in fixes], dtype=object),
            np.array([f.x for f in fixes]), np.array([f.y for f in fixes]), n_used)


def run(args: argparse.Namespace) -> int:
    quick = bool(getattr(args, "quick", False))
    names = QUICK if quick else tuple(CHANNELS)
    out: dict[str, Any] = {"channels": {}, "seed": SEED}
    table = []
    ratios = []
    for name in names:
        cfg = CHANNELS[name]
        if quick:
            cfg = replace(cfg, devices=6, duration_s=150.0)
        t0 = time.perf_counter()
        data = generate(cfg, SEED)
        t_gen = time.perf_counter() - t0
        t0 = time.perf_counter()
        t, dev, x, y, n_used = locate_hall(data)
        t_engine = time.perf_counter() - t0
        e = errors_at(data, t, dev, x, y)
        bt, bd, bx, by = centroid_baseline(data)
        eb = errors_at(data, bt, bd, bx, by)
        ch = {"median_err_m": float(np.median(e)), "p90_err_m": float(np.percentile(e, 90)),
              "baseline_median_err_m": float(np.median(eb)), "baseline_p90_err_m": float(np.percentile(eb, 90)),
              "exponent_true": cfg.n, "exponent_used": n_used, "exponent_given": cfg.give_params,
              "devices": cfg.devices, "readings": int(data.t.shape[0]), "fixes": int(t.shape[0]),
              "generate_seconds": t_gen, "engine_seconds": t_engine}
        ch["median_vs_baseline"] = ch["median_err_m"] / ch["baseline_median_err_m"]
        ratios.append(ch["median_vs_baseline"])
        out["channels"][name] = ch
        table.append((name, f"median {ch['median_err_m']:.2f} m, p90 {ch['p90_err_m']:.2f} m",
                      f"centroid {ch['baseline_median_err_m']:.2f} / {ch['baseline_p90_err_m']:.2f} m; "
                      f"exponent {n_used:.2f} (true {cfg.n:.1f}{', given' if cfg.give_params else ''})"))
    out["median_vs_baseline_geomean"] = float(np.exp(np.mean(np.log(ratios))))
    table.append(("all", f"{out['median_vs_baseline_geomean']:.2f}x", "the centroid's median error (geometric mean)"))
    emit_results(args, "hall", out, table)
    return 0
