"""Shared fixtures. Tests that need a real component (mosquitto, VictoriaMetrics, Chromium) call
``require_binary``: outside CI a missing component skips the test, in CI (``CI=true``) it fails."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from positioning.venue import Venue, parse_venue
from simulations.local_broker import MOSQUITTO_CANDIDATES, MosquittoBroker

if TYPE_CHECKING:
    from api.engine import Engine

REPO = Path(__file__).resolve().parent.parent
VENUES = REPO / "simulations" / "venues"
DEMO_MALL = VENUES / "demo-mall.yaml"
CORNER_STORE = VENUES / "corner-store.yaml"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binary(name: str, *candidates: str) -> str:
    """Path of a required executable; fails in CI and skips elsewhere when it is missing."""
    for candidate in (name, *candidates):
        found = shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)
        if found:
            return found
    message = f"{name} is not installed (run `make install`)"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def instore_exe() -> str:
    """The installed ``instore`` entry point of this interpreter's environment."""
    exe = Path(sys.executable).parent / "instore"
    if not exe.exists():
        pytest.fail(f"{exe} is missing: install the project (make install)")
    return str(exe)


@pytest.fixture
def demo_mall_text() -> str:
    return DEMO_MALL.read_text(encoding="utf-8")


@pytest.fixture
def corner_store_text() -> str:
    return CORNER_STORE.read_text(encoding="utf-8")


@pytest.fixture
def mosquitto_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A real mosquitto on a free loopback port, with persistence; ``.restart()`` keeps sessions."""
    exe = require_binary(*MOSQUITTO_CANDIDATES)
    broker = MosquittoBroker(exe, tmp_path / "mosquitto").start()
    try:
        yield broker
    finally:
        broker.stop()


VICTORIA_METRICS_CANDIDATES = ("victoria-metrics", "/usr/bin/victoria-metrics")
CHROMIUM_CANDIDATES = ("chromium", "/usr/bin/chromium", "chromium-browser")


@pytest.fixture
def victoria_metrics(tmp_path: Path) -> Iterator[str]:
    """A real VictoriaMetrics on a free loopback port with a temporary storage; yields its base URL."""
    import subprocess
    import time

    import httpx

    from simulations.local_broker import free_port

    exe = require_binary(*VICTORIA_METRICS_CANDIDATES)
    port = free_port()
    log = open(tmp_path / "victoria-metrics.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([exe, f"-storageDataPath={tmp_path / 'vm-data'}", f"-httpListenAddr=127.0.0.1:{port}",
                             "-search.latencyOffset=0s", "-loggerLevel=ERROR"], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"victoria-metrics did not start (see {tmp_path / 'victoria-metrics.log'})")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def store() -> Venue:
    """The corner store venue."""
    return parse_venue(CORNER_STORE.read_text(encoding="utf-8"), str(CORNER_STORE))


@pytest.fixture(scope="module")
def mall() -> Venue:
    """The demo mall venue."""
    return parse_venue(DEMO_MALL.read_text(encoding="utf-8"), str(DEMO_MALL))


@pytest.fixture
def engine(mosquitto_broker: MosquittoBroker, tmp_path: Path, store: Venue) -> Iterator[Engine]:
    """The engine over the corner store, subscribed to a real mosquitto, with its SQLite file in tmp_path."""
    from api.engine import Engine
    from api.settings import load_settings

    settings = load_settings(mqtt_url=mosquitto_broker.url, db=tmp_path / "engine.sqlite")
    e = Engine(settings, store, CORNER_STORE.read_text(encoding="utf-8")).start()
    assert e.wait_subscribed(10)
    try:
        yield e
    finally:
        e.stop()
