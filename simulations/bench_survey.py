"""Benchmark ``survey``: a site survey's fingerprints on the hall channel, next to the textbook kNN.

``instore bench survey --json OUT``: in the hall of ``simulations/hall.py`` (a channel the engine was not
developed against), a surveyor stands SURVEY_SCAN_S at every point of a SURVEY_SPACING_M grid; then
static scans at random spots are taken by the surveyor's own phone and by five other phones (offsets of
+-6 dB), and shoppers walk. Every file goes through ``instore locate`` (in process, the same code path)
with and without ``--survey``; the static scans also through the textbook fingerprint (Euclidean kNN on
mean RSSI, k = 3, -100 dBm where not heard) and the walkers through the centroid of the three strongest
receivers. All are scored against the generator's truth in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import re
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from simulations.bench_positioning import emit_results
from simulations.hall import (
    HallConfig,
    HallData,
    Scans,
    centroid_baseline,
    errors_at,
    generate,
    knn_baseline,
    standing_scans,
)

FloatArray = npt.NDArray[np.float64]

SEED: Final = 20261123
SURVEY_SPACING_M: Final = 2.0
SURVEY_SCAN_S: Final = 3.0
QUERY_SCAN_S: Final = 2.0
QUERIES: Final = 160
PHONES: Final = 5
PHONE_OFFSET_SD_DB: Final = 6.0
CHANNELS: Final = {
    "n2.2": HallConfig(devices=8, duration_s=200.0),
    "n3.0": HallConfig(n=3.0, devices=8, duration_s=200.0),
}
QUICK: Final = ("n2.2",)
LABELS: Final = {"knn_textbook": "textbook kNN", "centroid": "centroid"}


@dataclass(frozen=True, slots=True)
class Scenario:
    hall: HallData
    survey: Scans
    same: Scans  # static scans by the surveyor's phone
    other: Scans  # the same spots by other phones


def scenario(cfg: HallConfig, seed: int, queries: int) -> Scenario:
    rng = np.random.default_rng([seed, 0x5A7E])
    gx, gy = np.meshgrid(np.arange(1.0, cfg.width_m, SURVEY_SPACING_M), np.arange(1.0, cfg.depth_m, SURVEY_SPACING_M))
    sx, sy = gx.ravel(), gy.ravel()
    n_s = sx.shape[0]
    survey = standing_scans(cfg, seed, 1, sx, sy, np.full(n_s, "surveyor", dtype=object), np.zeros(n_s),
                            -10_000.0 + 5.0 * np.arange(n_s, dtype=np.float64), SURVEY_SCAN_S)
    qx, qy = rng.uniform(1.0, cfg.width_m - 1.0, queries), rng.uniform(1.0, cfg.depth_m - 1.0, queries)
    phones = np.array([f"phone{k}" for k in range(PHONES)], dtype=object)
    offsets = np.clip(rng.normal(0.0, PHONE_OFFSET_SD_DB, PHONES), -12.0, 12.0)
    who = np.arange(queries) % PHONES
    t0 = 10.0 * np.arange(queries, dtype=np.float64)
    same = standing_scans(cfg, seed, 2, qx, qy, np.full(queries, "surveyor", dtype=object), np.zeros(queries), t0,
                          QUERY_SCAN_S)
    other = standing_scans(cfg, seed, 3, qx, qy, phones[who], offsets[who], t0, QUERY_SCAN_S)
    return Scenario(generate(cfg, seed), survey, same, other)


def write_scans(path: Path, scans: Scans, with_xy: bool) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "device", "anchor", "rssi", "scan", *(("x", "y") if with_xy else ())])
        for i in range(scans.t.shape[0]):
            row = [f"{scans.t[i]:.3f}", scans.device[i], scans.anchor[i], f"{scans.rssi[i]:.0f}", scans.scan[i]]
            w.writerow(row + ([f"{scans.x[i]:.2f}", f"{scans.y[i]:.2f}"] if with_xy else []))


def write_anchors(h: HallData, folder: Path) -> None:
    """``anchors.csv``: the hall's receivers by position only."""
    with open(folder / "anchors.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["anchor", "x", "y", "z"])
        for j, a in enumerate(h.anchor_ids):
            w.writerow([a, f"{h.anchor_x[j]:.2f}", f"{h.anchor_y[j]:.2f}", h.anchor_z])


def write_files(sc: Scenario, folder: Path) -> None:
    h = sc.hall
    write_anchors(h, folder)
    write_scans(folder / "survey.csv", sc.survey, True)
    write_scans(folder / "same.csv", sc.same, False)
    write_scans(folder / "other.csv", sc.other, False)
    with open(folder / "walk.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "device", "anchor", "rssi"])
        for i in range(h.t.shape[0]):
            w.writerow([f"{h.t[i]:.3f}", h.device[i], h.anchor[i], f"{h.rssi[i]:.0f}"])


def locate(folder: Path, readings: str, survey: bool) -> tuple[list[dict[str, str]], str]:
    """``instore locate`` in process: its output rows and its stderr summary."""
    from api.locate import run_locate

    out = folder / f"P-{readings}-{int(survey)}"
    args = argparse.Namespace(anchors=str(folder / "anchors.csv"), venue=None, readings=str(folder / readings),
                              out=str(out), survey=str(folder / "survey.csv") if survey else None, device_height=1.2)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        run_locate(args)
    with open(out, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f)), err.getvalue()


def scan_errors(scans: Scans, device: list[str], scan: list[str], x: FloatArray, y: FloatArray) -> FloatArray:
    """Distance of each estimate (per device and scan) from where that scan was taken."""
    truth = {(d, s): (tx, ty) for d, s, tx, ty in zip(scans.device, scans.scan, scans.x, scans.y, strict=True)}
    where = np.array([truth[(d, s)] for d, s in zip(device, scan, strict=True)], dtype=np.float64).reshape(-1, 2)
    err: FloatArray = np.hypot(x - where[:, 0], y - where[:, 1])
    return err


def static_errors(rows: list[dict[str, str]], scans: Scans) -> FloatArray:
    return scan_errors(scans, [r["device"] for r in rows], [r["scan"] for r in rows],
                       np.array([float(r["x"]) for r in rows]), np.array([float(r["y"]) for r in rows]))


def _stats(e: FloatArray) -> dict[str, float]:
    return {"median_err_m": float(np.median(e)), "p90_err_m": float(np.percentile(e, 90))}


def run_channel(cfg: HallConfig, seed: int, queries: int) -> dict[str, Any]:
    sc = scenario(cfg, seed, queries)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="instore-bench-survey-") as tmp:
        folder = Path(tmp)
        write_files(sc, folder)
        for name, scans, file in (("same_phone", sc.same, "same.csv"), ("other_phones", sc.other, "other.csv")):
            res: dict[str, Any] = {}
            for with_survey in (False, True):
                rows, note = locate(folder, file, with_survey)
                key = "engine_survey" if with_survey else "engine"
                res[key] = _stats(static_errors(rows, scans))
                weight = re.search(r"fingerprints: weight ([0-9.]+)", note)
                if with_survey and weight:
                    res["fingerprint_weight"] = float(weight.group(1))
            keys, kx, ky = knn_baseline(sc.survey, scans, sc.hall.anchor_ids)
            parts = [str(k).split("\x1f", 1) for k in keys]
            res["knn_textbook"] = _stats(scan_errors(scans, [d for d, _ in parts], [q for _, q in parts], kx, ky))
            out[name] = res
        walk: dict[str, Any] = {}
        for with_survey in (False, True):
            rows, _ = locate(folder, "walk.csv", with_survey)
            e = errors_at(sc.hall, np.array([float(r["t"]) for r in rows]),
                          np.array([r["device"] for r in rows], dtype=object),
                          np.array([float(r["x"]) for r in rows]), np.array([float(r["y"]) for r in rows]))
            walk["engine_survey" if with_survey else "engine"] = _stats(e)
        bt, bd, bx, by = centroid_baseline(sc.hall)
        walk["centroid"] = _stats(errors_at(sc.hall, bt, bd, bx, by))
        out["walkers"] = walk
    out["survey_points"] = int(np.unique(sc.survey.scan).shape[0])
    return out


def _pair(r: dict[str, float]) -> str:
    return f"{r['median_err_m']:.2f} / {r['p90_err_m']:.2f} m"


def run(args: argparse.Namespace) -> int:
    quick = bool(getattr(args, "quick", False))
    names = QUICK if quick else tuple(CHANNELS)
    out: dict[str, Any] = {"channels": {}, "seed": SEED, "survey_spacing_m": SURVEY_SPACING_M}
    table = []
    for name in names:
        cfg = CHANNELS[name]
        if quick:
            cfg = replace(cfg, devices=4, duration_s=90.0)
        t0 = time.perf_counter()
        ch = run_channel(cfg, SEED, QUERIES)
        ch["seconds"] = time.perf_counter() - t0
        out["channels"][name] = ch
        for part, base in (("same_phone", "knn_textbook"), ("other_phones", "knn_textbook"), ("walkers", "centroid")):
            r = ch[part]
            table.append((f"{name} {part}", _pair(r["engine_survey"]),
                          f"{LABELS[base]} {_pair(r[base])}; "
                          f"no survey {_pair(r['engine'])}"))
    emit_results(args, "survey", out, table)
    return 0
