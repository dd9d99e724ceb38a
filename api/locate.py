"""``instore locate``: batch positioning of a readings file (ARCHITECTURE.md, "Batch files").

The I/O shell around ``positioning``: reads the anchors (or venue), readings and optional survey CSVs
with pyarrow (vectorized), feeds tracked devices second by second through the same ``LiveLocator`` the
service uses (so every row is causal), positions static fixes (rows sharing ``(device, scan)``) in
batches, and writes ``P.csv``. Structural problems stop the run with an error naming file, line and
column; implausible values are dropped and counted in the summary on stderr.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from positioning.filtering import implausible_rssi, plausible_rssi

READINGS_REQUIRED: Final = ("t", "device", "anchor", "rssi")
ANCHORS_REQUIRED: Final = ("anchor", "x", "y")
MIN_SURVEY_POINTS_FOR_FINGERPRINTS: Final = 3
FloatArray = npt.NDArray[np.float64]
ObjArray = npt.NDArray[np.object_]


class LocateError(Exception):
    """A structural problem with an input file: the message names file, line and column."""


@dataclass
class Table:
    """CSV columns as pyarrow string arrays, with the file name for messages."""

    path: Path
    columns: dict[str, Any]
    n: int

    def has(self, name: str) -> bool:
        return name in self.columns

    def text(self, name: str) -> ObjArray:
        col = self.columns[name]
        import pyarrow.compute as pc

        enc = pc.dictionary_encode(col).combine_chunks()
        values = np.array(enc.dictionary.to_pylist(), dtype=object)
        idx = enc.indices.to_numpy(zero_copy_only=False)
        out = values[np.where(np.isnan(idx.astype(np.float64)), 0, idx).astype(np.int64)] if values.size else \
            np.full(self.n, "", dtype=object)
        nulls = col.is_null().to_numpy(zero_copy_only=False)
        if nulls.any():
            out = out.copy()
            out[nulls] = ""
        return np.asarray(out, dtype=object)

    def number(self, name: str, allow_empty: bool = False) -> FloatArray:
        """Column as float64; empty cells are NaN when allowed. A non-number stops with file, line, column."""
        import pyarrow as pa
        import pyarrow.compute as pc

        col = self.columns[name]
        stripped = pc.utf8_trim_whitespace(col)
        empty = pc.or_(pc.is_null(stripped), pc.equal(stripped, ""))
        filled = pc.if_else(empty, pa.scalar("nan"), stripped)
        try:
            values = pc.cast(filled, pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values = None
        empty_np = empty.to_numpy(zero_copy_only=False)
        if values is None:
            texts = filled.to_pylist()
            for i, v in enumerate(texts):
                try:
                    float(v)
                except (TypeError, ValueError):
                    raise LocateError(f"{self.path}: line {i + 2}, column {name!r}: not a number: {v!r}") from None
            raise LocateError(f"{self.path}: column {name!r}: not numeric")
        if not allow_empty and empty_np.any():
            i = int(np.flatnonzero(empty_np)[0])
            raise LocateError(f"{self.path}: line {i + 2}, column {name!r}: empty value")
        return np.asarray(values, dtype=np.float64)


def read_table(path: Path, required: tuple[str, ...], what: str) -> Table:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if not path.is_file():
        raise LocateError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            header_line = f.readline().decode("utf-8-sig").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise LocateError(f"{path}: cannot read: {exc}") from None
    names = [h.strip() for h in header_line.split(",")]
    missing = [c for c in required if c not in names]
    if missing:
        raise LocateError(f"{path}: line 1: missing column{'s' if len(missing) > 1 else ''} "
                          f"{', '.join(repr(m) for m in missing)} ({what} needs {', '.join(required)}; "
                          f"found {', '.join(names) or 'nothing'})")
    try:
        tbl = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=1 << 24),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                 strings_can_be_null=False),
        )
    except pa.ArrowInvalid as exc:
        raise LocateError(f"{path}: malformed CSV: {str(exc).splitlines()[0]}") from None
    cols = {n: tbl.column(n) for n in names if n}
    return Table(path, cols, tbl.num_rows)


@dataclass
class ReadingsData:
    t: FloatArray
    device: ObjArray
    anchor: ObjArray
    rssi: FloatArray
    tx: FloatArray
    scan: ObjArray | None
    drops: Counter[str]


def load_readings(path: Path, known_anchors: set[str]) -> ReadingsData:
    tbl = read_table(path, READINGS_REQUIRED, "a readings file")
    t = tbl.number("t")
    if not np.isfinite(t).all():
        i = int(np.flatnonzero(~np.isfinite(t))[0])
        raise LocateError(f"{path}: line {i + 2}, column 't': not a finite time")
    device = tbl.text("device")
    anchor = tbl.text("anchor")
    if tbl.n and (device == "").any():
        i = int(np.flatnonzero(device == "")[0])
        raise LocateError(f"{path}: line {i + 2}, column 'device': empty value")
    uniq = set(np.unique(anchor).tolist()) if tbl.n else set()
    unknown = sorted(str(a) for a in uniq - known_anchors)
    if unknown:
        i = int(np.flatnonzero(anchor == unknown[0])[0])
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise LocateError(f"{path}: line {i + 2}, column 'anchor': unknown anchor {unknown[0]!r}{more}")
    rssi = tbl.number("rssi", allow_empty=True)
    tx = tbl.number("tx_power", allow_empty=True) if tbl.has("tx_power") else np.full(tbl.n, np.nan)
    scan = tbl.text("scan") if tbl.has("scan") else None
    drops: Counter[str] = Counter()
    keep = np.ones(tbl.n, dtype=bool)
    for reason, mask in implausible_rssi(rssi).items():
        drops[reason] = int(mask.sum())
        keep &= ~mask
    tx = np.where((tx > 20.0) | (tx < -120.0), np.nan, tx)  # an implausible tx power is ignored, not fatal
    return ReadingsData(t[keep], device[keep], anchor[keep], rssi[keep], tx[keep],
                        None if scan is None else scan[keep], +drops)


def load_anchor_csv(path: Path) -> tuple[Any, Any, bool]:
    """The anchor table, how each anchor's advertised power is used, and whether any exponent was given."""
    from positioning.live import TX_IGNORE, TX_IS_P0
    from positioning.radio import anchor_table

    tbl = read_table(path, ANCHORS_REQUIRED, "an anchors file")
    ids = tbl.text("anchor")
    if (ids == "").any():
        raise LocateError(f"{path}: line {int(np.flatnonzero(ids == '')[0]) + 2}, column 'anchor': empty value")
    dup = [a for a, c in Counter(ids.tolist()).items() if c > 1]
    if dup:
        raise LocateError(f"{path}: duplicate anchor {dup[0]!r}")
    rssi_1m = tbl.number("rssi_1m", allow_empty=True) if tbl.has("rssi_1m") else None
    path_n = tbl.number("path_loss_n", allow_empty=True) if tbl.has("path_loss_n") else None
    table = anchor_table(
        [str(a) for a in ids], tbl.number("x"), tbl.number("y"),
        z=tbl.number("z", allow_empty=True) if tbl.has("z") else None,
        floor=[str(f) for f in tbl.text("floor")] if tbl.has("floor") else None,
        rssi_1m=rssi_1m,
        path_loss_n=path_n,
    )
    given = np.zeros(len(ids), dtype=bool) if rssi_1m is None else np.isfinite(rssi_1m)
    tx_use = np.where(given, TX_IGNORE, TX_IS_P0).astype(np.int64)
    return table, tx_use, path_n is not None and bool(np.isfinite(path_n).any())


def cmd_locate(args: argparse.Namespace) -> int:
    try:
        return run_locate(args)
    except LocateError as exc:
        print(f"instore locate: error: {exc}", file=sys.stderr)
        return 2


def run_locate(args: argparse.Namespace) -> int:
    from positioning.errors import PositioningError
    from positioning.live import TX_IGNORE, TX_IS_DEVICE, LiveLocator, LocatorConfig

    started = time.monotonic()
    height = float(args.device_height)
    if not (0.0 <= height <= 10.0):
        raise LocateError(f"--device-height {height:g}: expected metres between 0 and 10")
    venue = None
    exponent_given = True
    if args.venue:
        from positioning.radio import anchor_table_from_venue
        from simulations.venue_files import load_venue

        try:
            venue = load_venue(args.venue)[0]
        except PositioningError as exc:
            raise LocateError(str(exc)) from None
        anchors = anchor_table_from_venue(venue)
        gateway_ids = {a.id for a in venue.anchors}
        tx_use = np.array([TX_IS_DEVICE if a in gateway_ids else TX_IGNORE for a in anchors.ids], dtype=np.int64)
    else:
        anchors, tx_use, exponent_given = load_anchor_csv(Path(args.anchors))
    known = set(anchors.ids)
    data = load_readings(Path(args.readings), known)

    calibration_note = ""
    survey_pts = None
    site = None
    if args.survey:
        from positioning.calibration import calibrate

        survey = load_survey(Path(args.survey), known, anchors, venue is not None)
        anchors, fitted, calibration_note, survey_pts = calibrate(anchors, survey, height)
        tx_use = np.where(fitted, TX_IGNORE, tx_use)

    # Nobody said how fast the signal falls off (no venue, survey or exponent column): learn it.
    learn = venue is None and not args.survey and not exponent_given
    # A survey fits each anchor's 1 m power; without one the devices' residuals tell it.
    cfg = LocatorConfig(device_height=height, learn_exponent=learn, learn_p0=not args.survey)
    if venue is None and survey_pts is not None:
        from positioning.maps import open_site_map

        site = open_site_map(anchors, survey_pts.x, survey_pts.y)  # devices go where the survey went
    fingerprints = None
    if survey_pts is not None and len(survey_pts.x) >= MIN_SURVEY_POINTS_FOR_FINGERPRINTS:
        from positioning.maps import site_map_from_venue
        from positioning.static import build_fingerprints

        if site is None and venue is not None:
            site = site_map_from_venue(venue, anchors)  # built once: the locator below takes it too
        if site is not None:
            fingerprints = build_fingerprints(anchors, site, survey_pts, height)
            fpr = fingerprints
            calibration_note += (f"; fingerprints: weight {fpr.weight:.1f} (held-back survey median error: model "
                                 f"{fpr.loo_model_median_m:.2f} m, kNN {fpr.loo_knn_median_m:.2f} m, "
                                 f"fused {fpr.loo_fused_median_m:.2f} m)")
    locator = LiveLocator(anchors, venue, cfg, site=site, tx_use=tx_use, fingerprints=fingerprints)
    out_rows: list[tuple[float, str, float, float, str, float, str, str]] = []

    static = np.zeros(data.t.shape[0], dtype=bool) if data.scan is None else (data.scan != "")
    if static.any():
        static_rows, static_note = _static_rows(locator, data, static, height)
        out_rows.extend(static_rows)
        if static_note:
            calibration_note += ("; " if calibration_note else "") + static_note
    tracked = ~static
    n_fixes_tracked = 0
    if tracked.any():
        rows = _tracked_rows(locator, data, tracked)
        n_fixes_tracked = len(rows)
        out_rows.extend(rows)
    write_positions(Path(args.out), out_rows, with_scan=data.scan is not None)
    for learned in (locator.exponent_note, locator.p0_note) if n_fixes_tracked else ():
        if learned:
            calibration_note += ("; " if calibration_note else "") + learned

    n_dev = len(set(data.device.tolist()))
    total_drops = sum(data.drops.values())
    drop_text = ", ".join(f"{n} {why}" for why, n in sorted(data.drops.items())) or "none"
    print(f"instore locate: {n_dev} devices, {data.t.shape[0] + total_drops} readings "
          f"({data.t.shape[0]} used), {len(out_rows)} fixes ({len(out_rows) - n_fixes_tracked} static, "
          f"{n_fixes_tracked} tracked); dropped {total_drops} readings: {drop_text}"
          f"{'; ' + calibration_note if calibration_note else ''}; {time.monotonic() - started:.1f} s",
          file=sys.stderr)
    return 0


def _tracked_rows(locator: Any, data: ReadingsData, mask: npt.NDArray[np.bool_]) -> list[Any]:
    from positioning.live import Readings

    idx = np.flatnonzero(mask)
    readings = Readings(data.t[idx], data.device[idx], data.anchor[idx], data.rssi[idx], data.tx[idx])
    return [(f.t, f.device, f.x, f.y, f.floor or "", f.accuracy_m, f.zone or "", "")
            for res in locator.replay(readings) for f in res.fixes]


def _static_rows(locator: Any, data: ReadingsData, mask: npt.NDArray[np.bool_],
                 height: float) -> tuple[list[Any], str]:
    """Rows of the static fixes, and what the exponent learning concluded from them ('' when off)."""
    from positioning.static import apply_fingerprints, locate_static

    idx = np.flatnonzero(mask)
    dev = data.device[idx]
    scan = data.scan[idx] if data.scan is not None else np.zeros(idx.shape[0], dtype=object)
    keys = np.char.add(np.char.add(dev.astype(str), "\x1f"), scan.astype(str))
    fix_keys, fix = np.unique(keys, return_inverse=True)
    _, dev_code = np.unique(dev.astype(str), return_inverse=True)
    fix_t = np.full(fix_keys.shape[0], -np.inf)
    np.maximum.at(fix_t, fix, data.t[idx])
    anchor = np.fromiter((locator.index[a] for a in data.anchor[idx]), dtype=np.int64, count=idx.shape[0])
    p0 = locator.reading_p0(anchor, data.tx[idx])
    res = locate_static(locator.anchors, locator.site, fix.astype(np.int64), dev_code.astype(np.int64), fix_t,
                        anchor, data.rssi[idx], p0, fix_keys.shape[0], device_height=height,
                        learn_exponent=locator.cfg.learn_exponent, learn_p0=locator.cfg.learn_p0)
    if locator.fingerprints is not None:
        res = apply_fingerprints(locator.fingerprints, res, fix.astype(np.int64), anchor, data.rssi[idx],
                                 len(locator.anchors), (locator.anchors.x, locator.anchors.y))
    rows = []
    for k, key in enumerate(fix_keys):
        d, _, s = str(key).partition("\x1f")
        z = locator.site.zone_ids[res.zone[k]] if res.zone[k] >= 0 else ""
        rows.append((float(fix_t[k]), d, float(res.x[k]), float(res.y[k]),
                     locator.anchors.floor_ids[res.floor[k]], float(res.accuracy_m[k]), z, s))
    note = ""
    if locator.cfg.learn_exponent:
        n = float(np.median(locator.anchors.path_loss_n)) * res.exponent_scale
        note = f"path-loss exponent learned from {res.exponent_windows} scans: n = {n:.2f}"
    return rows, note


def load_survey(path: Path, known: set[str], anchors: Any, has_venue: bool) -> Any:
    from positioning.calibration import Survey

    tbl = read_table(path, (*READINGS_REQUIRED, "x", "y"), "a survey file")
    data = load_readings(path, known)
    # load_readings dropped implausible rows; re-read the position columns with the same mask.
    rssi = tbl.number("rssi", allow_empty=True)
    keep = plausible_rssi(rssi)
    x = tbl.number("x")[keep]
    y = tbl.number("y")[keep]
    floor = tbl.text("floor")[keep] if tbl.has("floor") else None
    if floor is None and has_venue and len(set(anchors.floor_ids)) > 1:
        raise LocateError(f"{path}: line 1: missing column 'floor' (required when the venue has several floors)")
    # Points by (device, scan), or by (device, t) where the scan cell is empty or there is no scan column.
    at_t = np.char.add("t=", data.t.astype(str)).astype(object)
    scan = at_t if data.scan is None else np.where(data.scan == "", at_t, data.scan)
    return Survey(t=data.t, device=data.device, anchor=data.anchor, rssi=data.rssi, tx=data.tx, scan=scan,
                  x=x, y=y, floor=floor, scan_given=data.scan is not None and bool((data.scan != "").all()))


def write_positions(path: Path, rows: list[tuple[float, str, float, float, str, float, str, str]],
                    with_scan: bool) -> None:
    rows.sort(key=lambda r: (r[0], r[1], r[7]))
    header = "t,device,x,y,scan,floor,accuracy_m,zone\n" if with_scan else "t,device,x,y,floor,accuracy_m,zone\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(header)
        for t, d, x, y, floor, acc, zone, scan in rows:
            ts = f"{t:.6f}".rstrip("0").rstrip(".") if math.isfinite(t) else "nan"
            cells = [ts, _csv(d), f"{x:.3f}", f"{y:.3f}"]
            if with_scan:
                cells.append(_csv(scan))
            cells += [_csv(floor), f"{acc:.2f}", _csv(zone)]
            f.write(",".join(cells) + "\n")


def _csv(value: str) -> str:
    if any(c in value for c in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value
