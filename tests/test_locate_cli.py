"""``instore locate`` as a process: the batch-file contract, static fixes, survey calibration, bad input."""

from __future__ import annotations

import csv
import math
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CORNER_STORE, instore_exe

T0 = 1_763_870_000.0
ANCHORS = [(f"a{i}", x, y) for i, (x, y) in enumerate([(x, y) for y in (0, 12, 24) for x in (0, 12, 24, 36)])]
P0, N = -60.0, 2.3


def rssi(rng: np.random.Generator, x: float, y: float, ax: float, ay: float, sigma: float = 2.0,
         offset: float = 0.0) -> float | None:
    d = max(0.5, math.sqrt((x - ax) ** 2 + (y - ay) ** 2 + 1.8**2))
    r = P0 + offset - 10 * N * math.log10(d) + rng.normal(0, sigma)
    return float(round(r)) if r > -95 else None


def write(path: Path, header: list[str], rows: Sequence[Sequence[object]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def locate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([instore_exe(), "locate", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def files(tmp_path: Path) -> Path:
    rng = np.random.default_rng(5)
    write(tmp_path / "anchors.csv", ["anchor", "x", "y", "z"], [[a, x, y, 3.0] for a, x, y in ANCHORS])
    rows: list[list[object]] = []
    for i in range(120):  # one tag walking diagonally at 0.25 m/s, 4 adverts/s
        t = i / 4.0
        x, y = 4 + t * 0.2, 4 + t * 0.15
        for a, ax, ay in ANCHORS:
            r = rssi(rng, x, y, ax, ay)
            if r is not None:
                rows.append([f"{T0 + t:.3f}", "tag", a, r])
    rng.shuffle(rows)  # any row order
    write(tmp_path / "tracked.csv", ["t", "device", "anchor", "rssi"], rows)
    survey: list[list[object]] = []
    for k, (sx, sy) in enumerate([(x, y) for x in range(2, 36, 4) for y in range(2, 24, 4)]):
        for _ in range(3):
            for a, ax, ay in ANCHORS:
                r = rssi(rng, sx, sy, ax, ay, sigma=1.5)
                if r is not None:
                    survey.append([T0 - 1000 + k, "surveyor", a, r, k, sx, sy])
    write(tmp_path / "survey.csv", ["t", "device", "anchor", "rssi", "scan", "x", "y"], survey)
    static: list[list[object]] = []
    for s in range(10):
        px, py = rng.uniform(3, 33), rng.uniform(3, 21)
        for j, (a, ax, ay) in enumerate(ANCHORS):
            r = rssi(rng, px, py, ax, ay, sigma=1.5, offset=7.0)
            if r is not None:
                static.append([f"{T0 + 10 * s + j * 0.01:.3f}", "phone", a, r, f"s{s}", f"{px:.2f}", f"{py:.2f}"])
    write(tmp_path / "static_truth.csv", ["t", "device", "anchor", "rssi", "scan", "x", "y"], static)
    write(tmp_path / "static.csv", ["t", "device", "anchor", "rssi", "scan"], [r[:5] for r in static])
    return tmp_path


def test_tracked_rows_every_second_with_the_input_time_base(files: Path) -> None:
    res = locate("--anchors", "anchors.csv", "--readings", "tracked.csv", "--out", "P.csv", cwd=files)
    assert res.returncode == 0, res.stderr
    rows = read(files / "P.csv")
    assert list(rows[0])[:4] == ["t", "device", "x", "y"]
    assert {math.floor(float(r["t"]) - T0) for r in rows} == set(range(30))
    errs = []
    for r in rows:
        t = float(r["t"]) - T0
        errs.append(math.hypot(float(r["x"]) - (4 + 0.2 * t), float(r["y"]) - (4 + 0.15 * t)))
    assert np.median(errs) < 2.0
    assert "1 devices" in res.stderr and "fixes" in res.stderr
    assert "path-loss exponent learned" in res.stderr  # anchors.csv gives none: it is learned
    assert "anchors' 1 m power learned from" in res.stderr  # no survey: the devices' residuals tell it


def test_static_fixes_one_row_per_scan_at_its_latest_time(files: Path) -> None:
    res = locate("--anchors", "anchors.csv", "--readings", "static.csv", "--out", "S.csv", cwd=files)
    assert res.returncode == 0, res.stderr
    rows = read(files / "S.csv")
    assert sorted(r["scan"] for r in rows) == [f"s{s}" for s in range(10)]
    truth_rows = read(files / "static_truth.csv")
    truth = {r["scan"]: (float(r["x"]), float(r["y"])) for r in truth_rows}
    errs = [math.hypot(float(r["x"]) - truth[r["scan"]][0], float(r["y"]) - truth[r["scan"]][1]) for r in rows]
    assert np.median(errs) < 3.0
    latest: dict[str, float] = {}
    for r in truth_rows:
        latest[r["scan"]] = max(latest.get(r["scan"], 0.0), float(r["t"]))
    assert all(abs(float(r["t"]) - latest[r["scan"]]) < 1e-3 for r in rows)


def test_survey_calibration_is_used_and_reported(files: Path) -> None:
    res = locate("--anchors", "anchors.csv", "--readings", "tracked.csv", "--survey", "survey.csv", "--out", "P.csv",
                 cwd=files)
    assert res.returncode == 0, res.stderr
    assert "12 of 12 anchors calibrated" in res.stderr
    assert "exponent learned" not in res.stderr  # the survey gave it
    assert "1 m power learned" not in res.stderr  # and the anchors' power


def test_calibration_recovers_the_channel(files: Path) -> None:
    from api.locate import load_anchor_csv, load_survey
    from positioning.calibration import calibrate

    anchors, _, _ = load_anchor_csv(files / "anchors.csv")
    survey = load_survey(files / "survey.csv", set(anchors.ids), anchors, False)
    fitted, mask, _, _ = calibrate(anchors, survey, 1.2)
    assert mask.all()
    assert np.median(fitted.rssi_1m) == pytest.approx(P0, abs=1.5)
    assert np.median(fitted.path_loss_n) == pytest.approx(N, abs=0.2)


def test_venue_output_has_floor_and_zone(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    gws = [("gw-1", 3, 3), ("gw-2", 10, 3), ("gw-3", 17, 3), ("gw-4", 3, 12), ("gw-5", 10, 12), ("gw-6", 17, 12)]
    rows = []
    for i in range(80):
        for a, ax, ay in gws:
            r = rssi(rng, 15.5, 8.5, ax, ay, sigma=1.0)
            if r is not None:
                rows.append([f"{T0 + i / 2:.3f}", "tag", a, r])
    write(tmp_path / "r.csv", ["t", "device", "anchor", "rssi"], rows)
    res = locate("--venue", str(CORNER_STORE), "--readings", "r.csv", "--out", "P.csv", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = read(tmp_path / "P.csv")
    assert {"floor", "zone", "accuracy_m"} <= set(out[0])
    assert {r["floor"] for r in out} == {"L1"}
    assert out[-1]["zone"] in ("c-skincare", "store")


@pytest.mark.parametrize(
    ("header", "row", "expect"),
    [
        (["t", "device", "anchor"], [f"{T0}", "d", "a0"], "missing column 'rssi'"),
        (["t", "device", "anchor", "rssi"], [f"{T0}", "d", "nowhere", "-70"], "unknown anchor 'nowhere'"),
        (["t", "device", "anchor", "rssi"], [f"{T0}", "d", "a0", "loud"],
         "line 3, column 'rssi': not a number: 'loud'"),
        (["t", "device", "anchor", "rssi"], ["yesterday", "d", "a0", "-70"], "line 3, column 't'"),
    ],
)
def test_structural_problems_stop_with_file_line_and_column(files: Path, header: list[str], row: list[str],
                                                           expect: str) -> None:
    good = [f"{T0}", "d", "a0", "-70"][: len(header)]
    write(files / "bad.csv", header, [good, row])
    res = locate("--anchors", "anchors.csv", "--readings", "bad.csv", "--out", "P.csv", cwd=files)
    assert res.returncode == 2
    assert "bad.csv" in res.stderr and expect in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_implausible_values_are_dropped_and_counted(files: Path) -> None:
    rows: list[list[object]] = [[f"{T0 + i / 4:.3f}", "d", a, -70 - i % 5] for i in range(8) for a, _, _ in ANCHORS[:5]]
    rows += [[f"{T0 + 1:.3f}", "d", "a0", 15], [f"{T0 + 1:.3f}", "d", "a1", -180], [f"{T0 + 1:.3f}", "d", "a2", "nan"]]
    # iOS ranging writes 0 for a beacon it did not measure: kept, it would put the phone on that beacon.
    rows += [[f"{T0 + 1.5:.3f}", "d", "a4", 0], [f"{T0 + 1.6:.3f}", "d", "a4", "0.0"]]
    write(files / "odd.csv", ["t", "device", "anchor", "rssi"], rows)
    res = locate("--anchors", "anchors.csv", "--readings", "odd.csv", "--out", "P.csv", cwd=files)
    assert res.returncode == 0, res.stderr
    assert "dropped 5 readings" in res.stderr
    assert "1 rssi above 0 dBm" in res.stderr and "1 rssi below -130 dBm" in res.stderr
    assert "2 rssi exactly 0 dBm" in res.stderr


def test_missing_anchor_file_is_a_clean_error(files: Path) -> None:
    res = locate("--anchors", "nope.csv", "--readings", "tracked.csv", "--out", "P.csv", cwd=files)
    assert res.returncode == 2 and "nope.csv: no such file" in res.stderr


def test_a_walking_survey_is_pooled_per_second() -> None:
    """A walking survey logs every reading with the surveyor's position at its own time: grouped by
    (device, t) each point would be one reading (useless, and a million points); such a survey is pooled
    per device, floor and second, at the mean position. With a scan column the scans stay the points."""
    from positioning.calibration import Survey, survey_points
    from positioning.radio import anchor_table

    anchors = anchor_table(["a", "b", "c"], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0])
    t = np.arange(0.0, 4.0, 0.25)  # 16 readings over 4 s, walking along x at 1 m/s
    n = t.shape[0]
    survey = Survey(t=t, device=np.full(n, "s", dtype=object), anchor=np.array(["a", "b", "c", "a"] * 4, dtype=object),
                    rssi=np.full(n, -70.0), tx=np.full(n, np.nan), scan=t.astype(str).astype(object), x=t.copy(),
                    y=np.zeros(n), floor=None, scan_given=False)
    pts = survey_points(anchors, survey)
    assert pts.x.shape[0] == 4  # one point per second
    assert np.allclose(np.sort(pts.x), [0.375, 1.375, 2.375, 3.375])  # the mean position of its readings
    by_scan = survey_points(anchors, Survey(**{**{f: getattr(survey, f) for f in Survey.__dataclass_fields__},
                                               "scan_given": True}))
    assert by_scan.x.shape[0] == n
