"""Writes a simulation to the ``instore locate`` files plus ground truth (ARCHITECTURE.md, CLI).

``anchors.csv``          anchor,x,y,z,floor,rssi_1m,path_loss_n   (the venue's nominal values)
``readings.csv``         t,device,anchor,rssi,tx_power[,scan]      (arrival order; scan in phone mode)
``truth_positions.csv``  t,device,x,y,floor                       (one row per second per device inside)
``truth_visits.csv``     device,zone,start,end                    (every stay, containing zones included)
``truth_routes.csv``     device,step,zone,floor,start,end            (the innermost zones passed, in order)
``truth_devices.csv``    device,kind,customer,has_app,opted_in,regular,tx_offset_db,tx_power,adv_interval_s
``truth_shoppers.csv``   shopper,customer,devices,arrival,exit,passer_by,regular,inside_at_start
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from positioning.venue import Venue
from simulations.errors import SimulationError
from simulations.evaluation import Estimates, Truth
from simulations.scenario import DEFAULT_START_T, Mode, SimReadings, SimulationResult, simulate
from simulations.truth import Stays, zone_routes

WRITE_CHUNK_ROWS: Final = 200_000  # rows formatted per write call


def _fmt_num(values: npt.NDArray[np.float64], decimals: int) -> list[str]:
    if decimals == 0:
        return [str(v) for v in np.rint(values).astype(np.int64).tolist()]
    return [f"{v:.{decimals}f}" for v in values.tolist()]


def _write_csv(path: Path, header: Sequence[str], columns: Sequence[Sequence[str]]) -> Path:
    n = len(columns[0]) if columns else 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(",".join(header) + "\n")
        for lo in range(0, n, WRITE_CHUNK_ROWS):
            hi = min(n, lo + WRITE_CHUNK_ROWS)
            f.write("".join(",".join(row) + "\n" for row in zip(*(c[lo:hi] for c in columns), strict=True)))
    return path


def _strs(values: Iterable[object]) -> list[str]:
    return [str(v) for v in values]


def readings_header(mode: str) -> list[str]:
    return ["t", "device", "anchor", "rssi", "tx_power", *(["scan"] if mode == "phone" else [])]


def readings_rows(r: SimReadings, mode: str) -> str:
    """CSV rows (no header) of these readings."""
    cols = [_fmt_num(r.t, 3), _strs(r.device.tolist()), _strs(r.anchor.tolist()), _fmt_num(r.rssi, 0),
            _fmt_num(r.tx_power, 0)]
    if mode == "phone":
        cols.append(_strs(r.scan.tolist()))
    return "".join(",".join(row) + "\n" for row in zip(*cols, strict=True))


def simulate_to_dir(venue: Venue, out: Path, shoppers: int, duration_s: float, seed: int = 0,
                    mode: Mode = "gateway", start_t: float = DEFAULT_START_T) -> SimulationResult:
    """``instore simulate --out``: readings.csv is written as the readings arrive (bounded memory),
    then the truth files. The returned result has no readings (they are in the file)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "readings.csv", "w", encoding="utf-8", newline="") as f:
        f.write(",".join(readings_header(mode)) + "\n")

        def write(r: SimReadings) -> None:
            f.write(readings_rows(r, mode))

        result = simulate(venue, shoppers=shoppers, duration_s=duration_s, seed=seed, mode=mode, start_t=start_t,
                          on_readings=write)
    write_result(result, out, readings=False)
    return result


def write_result(result: SimulationResult, out: Path, readings: bool = True) -> list[Path]:
    """Write every file of the run into ``out`` (created if missing); returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    venue = result.venue
    written: list[Path] = []
    items = venue.anchors if result.mode == "gateway" else venue.beacons
    written.append(_write_csv(out / "anchors.csv", ["anchor", "x", "y", "z", "floor", "rssi_1m", "path_loss_n"], [
        [a.id for a in items], [f"{a.x:g}" for a in items], [f"{a.y:g}" for a in items], [f"{a.z:g}" for a in items],
        [a.floor for a in items], [f"{a.rssi_1m:g}" for a in items], [f"{a.path_loss_n:g}" for a in items]]))

    if readings:
        with open(out / "readings.csv", "w", encoding="utf-8", newline="") as f:
            f.write(",".join(readings_header(result.mode)) + "\n")
            r = result.readings
            for lo in range(0, len(r), WRITE_CHUNK_ROWS):
                part = SimReadings(*(getattr(r, k)[lo:lo + WRITE_CHUNK_ROWS] for k in SimReadings.__slots__))
                f.write(readings_rows(part, result.mode))
    written.append(out / "readings.csv")

    p = result.positions
    written.append(_write_csv(out / "truth_positions.csv", ["t", "device", "x", "y", "floor"], [
        _fmt_num(p.t, 3), _strs(p.device.tolist()), _fmt_num(p.x, 2), _fmt_num(p.y, 2), _strs(p.floor.tolist())]))

    v = result.visits
    written.append(_write_csv(out / "truth_visits.csv", ["device", "zone", "start", "end"], [
        _strs(v.device.tolist()), _strs(v.zone.tolist()), _fmt_num(v.start, 3), _fmt_num(v.end, 3)]))

    routes = zone_routes(venue, p.device, p.t, p.x, p.y, p.floor)
    written.append(_write_csv(out / "truth_routes.csv", ["device", "step", "zone", "floor", "start", "end"], [
        _strs(routes.device.tolist()), _strs(routes.step.tolist()), _strs(routes.zone.tolist()),
        _strs(routes.floor.tolist()), _fmt_num(routes.start, 3), _fmt_num(routes.end, 3)]))

    d = result.devices
    written.append(_write_csv(out / "truth_devices.csv", [
        "device", "kind", "customer", "has_app", "opted_in", "regular", "tx_offset_db", "tx_power", "adv_interval_s"], [
        [x.id for x in d], [x.kind for x in d], [str(x.customer) for x in d], [str(int(x.has_app)) for x in d],
        [str(int(x.opted_in)) for x in d], [str(int(x.regular)) for x in d], [f"{x.tx_offset_db:.1f}" for x in d],
        [f"{x.tx_power:g}" for x in d], [f"{x.adv_interval_s:g}" for x in d]]))

    heard = {x.id for x in d}
    s = [x for x in result.shoppers if any(dev in heard for dev in x.devices)]
    written.append(_write_csv(out / "truth_shoppers.csv", [
        "shopper", "customer", "devices", "arrival", "exit", "passer_by", "regular", "inside_at_start"], [
        [str(x.number) for x in s], [str(x.customer) for x in s],
        [";".join(dev for dev in x.devices if dev in heard) for x in s], [f"{x.arrival_t:.3f}" for x in s],
        ["" if x.exit_t is None else f"{x.exit_t:.3f}" for x in s], [str(int(x.passer_by)) for x in s],
        [str(int(x.regular)) for x in s], [str(int(x.inside_at_start)) for x in s]]))
    return written


def _read_columns(path: Path, required: Sequence[str]) -> dict[str, list[str]]:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise SimulationError(f"{path}: empty file")
            names = [h.strip() for h in header]
            missing = [c for c in required if c not in names]
            if missing:
                raise SimulationError(f"{path}: line 1: missing column(s) {', '.join(missing)} "
                                      f"(have {', '.join(names)})")
            cols: dict[str, list[str]] = {n: [] for n in names}
            for lineno, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) != len(names):
                    raise SimulationError(f"{path}: line {lineno}: {len(row)} cells, header has {len(names)}")
                for n, v in zip(names, row, strict=True):
                    cols[n].append(v)
    except FileNotFoundError:
        raise SimulationError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise SimulationError(f"{path}: not UTF-8 text: {exc}") from None
    return cols


def _floats(path: Path, cols: dict[str, list[str]], name: str) -> npt.NDArray[np.float64]:
    try:
        return np.array(cols[name], dtype=np.float64)
    except ValueError:
        for i, v in enumerate(cols[name]):
            try:
                float(v)
            except ValueError:
                raise SimulationError(f"{path}: line {i + 2}: column {name}: not a number: {v!r}") from None
        raise


def read_truth(directory: Path) -> Truth:
    """The ``Truth`` of an ``instore simulate --out`` directory."""
    vpath = directory / "truth_visits.csv"
    v = _read_columns(vpath, ["device", "zone", "start", "end"])
    visits = Stays(np.array(v["device"], dtype=object), np.array(v["zone"], dtype=object),
                   _floats(vpath, v, "start"), _floats(vpath, v, "end"))
    path = directory / "truth_positions.csv"
    p = _read_columns(path, ["t", "device", "x", "y", "floor"])
    return Truth(_floats(path, p, "t"), np.array(p["device"], dtype=object), _floats(path, p, "x"),
                 _floats(path, p, "y"), np.array(p["floor"], dtype=object), visits)


def read_positions(path: Path) -> Estimates:
    """Engine output in the ``instore locate`` P.csv shape as ``Estimates``."""
    c = _read_columns(path, ["t", "device", "x", "y"])
    floor = np.array(c["floor"], dtype=object) if "floor" in c else None
    zone = np.array(c["zone"], dtype=object) if "zone" in c else None
    return Estimates(_floats(path, c, "t"), np.array(c["device"], dtype=object), _floats(path, c, "x"),
                     _floats(path, c, "y"), floor, zone)
