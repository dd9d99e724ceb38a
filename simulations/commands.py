"""``instore simulate`` and ``instore plan`` (dispatched lazily from ``api/cli.py``)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Final

from positioning.errors import PositioningError
from positioning.venue import Venue
from simulations.errors import SimulationError
from simulations.venue_files import load_venue

EXIT_BAD_INPUT: Final = 2


def _error(message: str) -> int:
    print(f"instore: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def read_venue(path: str | Path) -> Venue:
    return load_venue(path)[0]


def parse_start(text: str, venue: Venue) -> float:
    """Epoch seconds, or ISO 8601 (a naive time is the venue's local time)."""
    import datetime as dt
    import zoneinfo

    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise SimulationError(f"--start {text!r}: not epoch seconds or an ISO 8601 time") from None
    if when.tzinfo is None:
        try:
            when = when.replace(tzinfo=zoneinfo.ZoneInfo(venue.info.timezone))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise SimulationError(f"venue time zone {venue.info.timezone!r} is unknown; give --start with an "
                                  f"offset") from None
    return when.timestamp()


def cmd_simulate(args: argparse.Namespace) -> int:
    try:
        venue = read_venue(args.venue)
        if args.shoppers < 0:
            raise SimulationError(f"--shoppers must be >= 0, got {args.shoppers}")
        if not args.duration > 0:
            raise SimulationError(f"--duration must be > 0 seconds, got {args.duration:g}")
        if not args.speed > 0:
            raise SimulationError(f"--speed must be > 0, got {args.speed:g}")
        if args.out:
            return _simulate_to_files(venue, args)
        from simulations.gateways import run_live

        return int(run_live(venue, args))
    except (SimulationError, PositioningError) as exc:
        return _error(str(exc).splitlines()[0])


def _simulate_to_files(venue: Venue, args: argparse.Namespace) -> int:
    from simulations.sim_files import simulate_to_dir

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SimulationError(f"--out {out}: exists and is not a directory")
    started = time.perf_counter()
    from simulations.scenario import DEFAULT_START_T

    start = parse_start(args.start, venue) if getattr(args, "start", None) else DEFAULT_START_T
    result = simulate_to_dir(venue, out, shoppers=args.shoppers, duration_s=args.duration, seed=args.seed,
                             mode=getattr(args, "mode", None) or "gateway", start_t=start)
    elapsed = time.perf_counter() - started
    with open(out / "readings.csv", "rb") as f:
        n_readings = sum(1 for _ in f) - 1
    print(f"simulated {venue.id}: {len(result.shoppers)} shoppers, {len(result.devices)} devices heard, "
          f"{n_readings} readings, {len(result.visits)} stays over {args.duration:g} s "
          f"in {elapsed:.1f} s; wrote {out}/")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    try:
        venue = read_venue(args.venue)
        from simulations.planner import run_plan

        return int(run_plan(venue, Path(args.out) if args.out else Path(f"plan-{venue.id}"), args))
    except (SimulationError, PositioningError) as exc:
        return _error(str(exc).splitlines()[0])


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``instore evaluate``: score engine output (P.csv) against a simulation's truth files."""
    import json

    try:
        venue = read_venue(args.venue)
        from simulations.evaluation import score
        from simulations.sim_files import read_positions, read_truth

        truth = read_truth(Path(args.truth))
        est = read_positions(Path(args.positions))
        offers = read_positions(Path(args.offers)) if getattr(args, "offers", None) else None
        result = score(venue, truth, est, offers)
    except (SimulationError, PositioningError) as exc:
        return _error(str(exc).splitlines()[0])
    doc = result.as_dict()
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    for key, value in doc.items():
        print(f"{key:24s} {'n/a' if value is None else (f'{value:.3f}' if isinstance(value, float) else value)}")
    return 0
