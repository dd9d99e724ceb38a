"""The ``instore`` command line. Each subcommand imports only what it needs, so start-up stays fast."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, NoReturn

EXIT_BAD_INPUT: Final = 2
EXIT_NOT_READY: Final = 3

DEMO_VENUE: Final = Path(__file__).resolve().parent.parent / "simulations" / "venues" / "demo-mall.yaml"


class CliError(Exception):
    """Bad input to a command: reported as one line on stderr, exit status 2."""


def _read_venue(path: str | Path) -> object:
    from simulations.venue_files import load_venue

    return load_venue(path)[0]


# ---------------------------------------------------------------------------------------------- venue


def cmd_venue_validate(args: argparse.Namespace) -> int:
    from positioning.venue import Venue

    venue = _read_venue(args.file)
    assert isinstance(venue, Venue)
    print(f"{args.file}: ok ({venue.id}: {len(venue.floors)} floors, {len(venue.anchors)} anchors, "
          f"{len(venue.beacons)} beacons, {len(venue.zones)} zones)")
    return 0


def cmd_venue_show(args: argparse.Namespace) -> int:
    from positioning.venue import Venue, format_summary

    venue = _read_venue(args.file)
    assert isinstance(venue, Venue)
    print(format_summary(venue))
    for f in venue.floors:
        print(f"\nfloor {f.id}")
        for z in venue.zones_on(f.id):
            brand = f" [{z.brand}]" if z.brand else ""
            print(f"  zone    {z.id:24s} {z.kind:9s} {z.name}{brand}")
        anchors = venue.anchors_on(f.id)
        if anchors:
            print(f"  anchors ({len(anchors)}): " + ", ".join(f"{a.id}@({a.x:g},{a.y:g},{a.z:g})" for a in anchors))
        beacons = venue.beacons_on(f.id)
        if beacons:
            print(f"  beacons ({len(beacons)}): " + ", ".join(f"{b.id}@({b.x:g},{b.y:g})" for b in beacons))
    if args.png:
        from simulations.floorplan_png import render_floors

        out = render_floors(venue, Path(args.png))
        print(f"\nfloor plan written to {out}")
    return 0


# ---------------------------------------------------------------------------------------------- demo


def _lazy(target: str) -> Callable[[argparse.Namespace], int]:
    """A command implemented in ``module:function``, imported only when that command runs.

    Each package owns its commands (``simulations.commands``, ``beacon_gateway.commands``, ...);
    this file only declares the arguments, which are a public contract.
    """

    def run(args: argparse.Namespace) -> int:
        import importlib
        import importlib.util

        module_name, _, func_name = target.partition(":")
        func = None
        if importlib.util.find_spec(module_name) is not None:
            func = getattr(importlib.import_module(module_name), func_name, None)
        if func is None:
            print(f"instore {args.command}: not implemented yet ({target})", file=sys.stderr)
            return EXIT_NOT_READY
        return int(func(args))

    return run


# Benchmarks by name: ``instore bench NAME --json OUT`` calls ``function(args)``.
BENCHMARKS: Final = {
    "positioning": "simulations.bench_positioning:run_positioning",
    "accuracy": "simulations.bench_positioning:run_accuracy",
    "hall": "simulations.bench_hall:run",
    "survey": "simulations.bench_survey:run",
    "layouts": "simulations.bench_layouts:run",
    "simulator": "simulations.bench_simulator:run",
    "gateway": "beacon_gateway.bench:run",
    "pipeline": "api.bench_pipeline:run",
    "campaigns": "api.bench_campaigns:run",
}


def cmd_bench(args: argparse.Namespace) -> int:
    target = BENCHMARKS.get(args.name)
    if target is None:
        raise CliError(f"unknown benchmark {args.name!r} (benchmarks: {', '.join(BENCHMARKS)})")
    return _lazy(target)(args)


# ---------------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="instore", description="In-store proximity and indoor positioning engine")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("demo", help="live demo: embedded broker, simulated mall, engine, API and dashboard")
    p.add_argument("--venue", help="venue YAML (default: the demo mall)")
    p.add_argument("--shoppers", type=int, default=300)
    p.add_argument("--speed", type=float, default=1.0, help="simulation speed-up factor")
    p.add_argument("--duration", type=float, help="stop after S seconds (wall clock)")
    p.add_argument("--mqtt", help="use this broker instead of the embedded one")
    p.add_argument("--http", default="127.0.0.1:8080", help="HOST:PORT of the API and dashboard")
    p.set_defaults(func=_lazy("api.demo:cmd_demo"))

    p = sub.add_parser("serve", help="run the engine service against a broker")
    p.add_argument("--venue", required=True)
    p.add_argument("--mqtt")
    p.add_argument("--http")
    p.add_argument("--db")
    p.add_argument("--gateway-config", help="YAML/JSON of gateway settings, published retained to each "
                                            "gateway's config topic")
    p.set_defaults(func=_lazy("api.serve:cmd_serve"))

    p = sub.add_parser("gateway", help="the BLE gateway agent")
    gsub = p.add_subparsers(dest="gateway_command", metavar="ACTION")
    gsub.required = True
    g = gsub.add_parser("run", help="scan, batch and publish readings")
    g.add_argument("--config", required=True)
    g.set_defaults(func=_lazy("beacon_gateway.commands:cmd_run"))
    g = gsub.add_parser("decode", help="decode advertisements (JSON lines in, JSON lines out)")
    g.add_argument("file", nargs="?")
    g.set_defaults(func=_lazy("beacon_gateway.commands:cmd_decode"))

    p = sub.add_parser("simulate", help="simulate shoppers and gateways")
    p.add_argument("--venue", required=True)
    p.add_argument("--shoppers", type=int, required=True)
    p.add_argument("--duration", type=float, required=True)
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out")
    out.add_argument("--mqtt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speed", type=float, default=1.0)
    p.add_argument("--format", choices=("wire", "espresense", "theengs"), default="wire",
                   help="with --mqtt: what the synthetic gateways publish (default: our wire protocol)")
    p.add_argument("--scans-to", metavar="URL", help="with --mqtt: also post the apps' beacon scans to URL/v1/scans")
    p.add_argument("--shared-connection", action="store_true",
                   help="with --mqtt: one MQTT connection for all gateways (no per-gateway last will)")
    p.add_argument("--start", help="with --out: start time, epoch seconds or ISO 8601 (naive = the venue's local "
                                   "time); default Saturday 22 Nov 2025 14:00 local")
    p.add_argument("--mode", choices=("gateway", "phone"), default="gateway",
                   help="with --out: gateway readings (default) or phone-mode scans of the venue beacons")
    p.set_defaults(func=_lazy("simulations.commands:cmd_simulate"))

    p = sub.add_parser("evaluate", help="score engine output (P.csv) against a simulation's truth files")
    p.add_argument("--venue", required=True)
    p.add_argument("--truth", required=True, help="an `instore simulate --out` directory")
    p.add_argument("--positions", required=True, help="the engine's P.csv (t,device,x,y[,floor,zone])")
    p.add_argument("--offers", help="optional offers CSV (t,device,zone; x,y ignored)")
    p.add_argument("--json", help="also write the scores here")
    p.set_defaults(func=_lazy("simulations.commands:cmd_evaluate"))

    p = sub.add_parser("locate", help="batch positioning of a readings file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--anchors")
    src.add_argument("--venue")
    p.add_argument("--readings", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--survey")
    p.add_argument("--device-height", type=float, default=1.2)
    p.set_defaults(func=_lazy("api.locate:cmd_locate"))

    p = sub.add_parser("plan", help="deployment planner: predicted accuracy map and gateway proposal")
    p.add_argument("--venue", required=True)
    p.add_argument("--out")
    p.add_argument("--target-p90", type=float, help="predicted p90 error (m) the proposal aims for (default 4)")
    p.add_argument("--max-add", type=int, help="at most this many gateways proposed per floor (default 12)")
    p.add_argument("--sigma-db", type=float, help="shadowing sigma of the model (default 6 dB)")
    p.set_defaults(func=_lazy("simulations.commands:cmd_plan"))

    p = sub.add_parser("firmware", help="gateway and beacon configuration files")
    fsub = p.add_subparsers(dest="firmware_command", metavar="ACTION")
    fsub.required = True
    f = fsub.add_parser("generate", help="write gateway, ESPresense, OpenMQTTGateway and beacon configs")
    f.add_argument("--venue", required=True)
    f.add_argument("--out", required=True)
    f.add_argument("--mqtt", help="broker URL the generated gateways and nodes connect to")
    f.set_defaults(func=_lazy("beacon_gateway.commands:cmd_firmware_generate"))

    p = sub.add_parser("venue", help="venue files")
    vsub = p.add_subparsers(dest="venue_command", metavar="ACTION")
    vsub.required = True
    v = vsub.add_parser("validate", help="check a venue file")
    v.add_argument("file")
    v.set_defaults(func=cmd_venue_validate)
    v = vsub.add_parser("show", help="summarise a venue file, optionally drawing a PNG floor plan")
    v.add_argument("file")
    v.add_argument("--png", help="write the floor plan here")
    v.set_defaults(func=cmd_venue_show)

    p = sub.add_parser("keys", help="API keys for brands, tills and operators (INSTORE_AUTH=true)")
    ksub = p.add_subparsers(dest="keys_command", metavar="ACTION")
    ksub.required = True
    k = ksub.add_parser("create", help="create a key and print its token (shown once)")
    k.add_argument("--kind", required=True, choices=("admin", "brand", "till"))
    k.add_argument("--scope", help="brand id (brand keys) or the till's store zone id (till keys)")
    k.add_argument("--db")
    k = ksub.add_parser("list", help="list keys (never their tokens)")
    k.add_argument("--db")
    k = ksub.add_parser("revoke", help="revoke a key by id")
    k.add_argument("id")
    k.add_argument("--db")
    p.set_defaults(func=_lazy("api.key_commands:cmd_keys"))

    p = sub.add_parser("bench", help="benchmarks, measured side by side with their baselines")
    p.add_argument("name")
    p.add_argument("--json", required=True, help="write the results here")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    p.set_defaults(func=cmd_bench)
    return parser


def _fail(message: str) -> NoReturn:
    print(f"instore: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from positioning.errors import PositioningError

    try:
        return int(args.func(args))
    except (CliError, PositioningError) as exc:
        _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
