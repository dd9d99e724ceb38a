"""``instore serve``: the engine service for one venue against a broker, with its HTTP API."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path
from typing import Any, Final

from positioning.venue import Venue

HTTP_SHUTDOWN_S: Final = 3  # open SSE streams get this long to close on shutdown
HTTP_START_TIMEOUT_S: Final = 20.0  # uvicorn must be listening within this


def read_venue(path: Path | str) -> tuple[Venue, str]:
    from simulations.venue_files import load_venue

    return load_venue(path)


class HttpServer:
    """uvicorn in a thread (it leaves signals alone there), so the caller decides when to stop."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        import uvicorn

        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                timeout_graceful_shutdown=HTTP_SHUTDOWN_S, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="http", daemon=True)

    def start(self) -> HttpServer:
        from api.cli import CliError

        self.thread.start()
        deadline = threading.Event()
        for _ in range(int(HTTP_START_TIMEOUT_S / 0.05)):
            if self.server.started:
                return self
            if not self.thread.is_alive():
                break
            deadline.wait(0.05)
        raise CliError(f"HTTP server could not listen on {self.server.config.host}:{self.server.config.port}")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(HTTP_SHUTDOWN_S + 5)


def wait_for_signal(stop: threading.Event, duration_s: float | None = None) -> None:
    """Block until SIGINT/SIGTERM (or ``duration_s``), whichever comes first."""
    import signal

    def handler(signum: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop.wait(duration_s)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def configure_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def cmd_serve(args: argparse.Namespace) -> int:
    from api.app import build_app
    from api.cli import CliError
    from api.engine import Engine
    from api.errors import EngineError
    from api.settings import SettingsError, load_settings

    try:
        settings = load_settings(venue=args.venue, mqtt_url=args.mqtt, http=args.http, db=args.db,
                                 gateway_config=getattr(args, "gateway_config", None))
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    configure_logging(settings.log_level)
    assert settings.venue is not None
    venue, text = read_venue(settings.venue)
    try:
        engine = Engine(settings, venue, text)
    except EngineError as exc:
        raise CliError(str(exc)) from None
    engine.start()
    http = HttpServer(build_app(engine), settings.http_host, settings.http_port)
    try:
        http.start()
    except CliError:
        engine.stop()
        raise
    print(f"instore serve: venue {venue.id}, broker {engine.ingest.url}, database {settings.db}, "
          f"http://{settings.http_host}:{settings.http_port}/", flush=True)
    stop = threading.Event()
    try:
        wait_for_signal(stop)
    finally:
        http.stop()
        engine.stop()
    return 0
