"""``instore demo``: the whole system on one machine with no configuration.

Starts the embedded MQTT broker (or uses ``--mqtt URL``), the engine with SQLite in a temporary
folder, the HTTP API and dashboard, and synthetic gateways for a simulated mall; prints the URL;
runs until Ctrl-C or ``--duration`` seconds, then stops everything and exits 0.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Final

DEMO_SEED: Final = 7  # the same shoppers every run


def _traffic(venue: Any, url: str, shoppers: int, speed: float, api_url: str) -> Any:
    """The simulator's synthetic gateways (and phone scans to the API) when installed, else the
    engine's own small generator."""
    import importlib

    try:
        sim = importlib.import_module("simulations.live")
        start = getattr(sim, "start_demo_gateways", None)
    except ImportError:
        start = None
    if start is not None:
        return start(venue=venue, broker_url=url, shoppers=shoppers, speed=speed, seed=DEMO_SEED, api_url=api_url)
    from api.demo_traffic import DemoGateways

    return DemoGateways(venue, url, shoppers, speed, seed=DEMO_SEED).start()


def cmd_demo(args: argparse.Namespace) -> int:
    from api.app import build_app
    from api.cli import DEMO_VENUE, CliError
    from api.embedded_broker import EmbeddedBroker
    from api.engine import Engine
    from api.errors import EngineError
    from api.serve import HttpServer, configure_logging, read_venue, wait_for_signal
    from api.settings import SettingsError, load_settings

    if args.shoppers is not None and args.shoppers < 0:
        raise CliError(f"--shoppers must be >= 0, got {args.shoppers}")
    if not args.speed > 0:
        raise CliError(f"--speed must be > 0, got {args.speed}")
    if args.duration is not None and args.duration <= 0:
        raise CliError(f"--duration must be > 0, got {args.duration}")
    venue, text = read_venue(args.venue or DEMO_VENUE)
    workdir = Path(tempfile.mkdtemp(prefix="instore-demo-"))
    broker = None
    engine = None
    http = None
    traffic = None
    try:
        url = args.mqtt
        if url is None:
            broker = EmbeddedBroker().start()
            url = broker.url
        try:
            settings = load_settings(mqtt_url=url, http=args.http, db=workdir / "instore.sqlite", demo=True,
                                     log_level="WARNING")
        except SettingsError as exc:
            raise CliError(str(exc)) from None
        configure_logging(settings.log_level)
        try:
            engine = Engine(settings, venue, text).start()
        except EngineError as exc:
            raise CliError(str(exc)) from None
        http = HttpServer(build_app(engine), settings.http_host, settings.http_port).start()
        if not engine.wait_subscribed(15):
            raise CliError(f"the engine could not subscribe at {url}: {engine.ingest.last_error}")
        traffic = _traffic(venue, url, args.shoppers, args.speed, f"http://{settings.http_host}:{settings.http_port}")
        print(f"instore demo: {venue.info.name} ({venue.id}), {args.shoppers} shoppers, speed x{args.speed:g}",
              flush=True)
        print(f"  dashboard  http://{settings.http_host}:{settings.http_port}/", flush=True)
        print(f"  broker     {url}{' (embedded)' if broker else ''}", flush=True)
        print(f"  database   {settings.db}", flush=True)
        print("  Ctrl-C to stop" + (f"; stopping by itself after {args.duration:g} s" if args.duration else ""),
              flush=True)
        started = time.monotonic()
        wait_for_signal(threading.Event(), args.duration)
        m = engine.metrics()
        p = m["pipeline"]
        print(f"instore demo: ran {time.monotonic() - started:.0f} s: {p['readings_applied']} readings, "
              f"{p['fixes']} positions, {sum(p['events'].values())} zone events, "
              f"p99 latency {m['latency']['p99_ms']} ms", flush=True)
    finally:
        if traffic is not None:
            traffic.stop()
        if http is not None:
            http.stop()
        if engine is not None:
            engine.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
