"""``instore demo`` as a user runs it: a subprocess that serves health, positions that move, occupancy,
gateway health and a live SSE stream within seconds, and exits 0 by itself after ``--duration``."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest

from simulations.local_broker import free_port
from tests.conftest import instore_exe
from tests.engine_helpers import wait_until

pytestmark = pytest.mark.integration


def _get(port: int, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=3)


def _ok(port: int) -> bool:
    try:
        return _get(port, "/healthz").status_code == 200
    except httpx.HTTPError:
        return False


def test_demo_serves_moving_positions_and_stops_by_itself() -> None:
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen([instore_exe(), "demo", "--duration", "25", "--speed", "2", "--shoppers", "120",
                             "--http", f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_until(lambda: _ok(port), 15, "GET /healthz 200")
        wait_until(lambda: _get(port, "/v1/positions").json()["count"] >= 100, 15, "positions of most shoppers")
        assert time.monotonic() - started < 20
        first = {p["device"]: p for p in _get(port, "/v1/positions").json()["positions"]}
        time.sleep(3)
        second = {p["device"]: p for p in _get(port, "/v1/positions").json()["positions"]}
        moved = [d for d in first if d in second and (first[d]["x"], first[d]["y"]) != (second[d]["x"],
                                                                                        second[d]["y"])]
        assert len(moved) >= 20, "the dots do not move"
        assert all(p["floor"] in ("L1", "L2") and p["t"] > 1.6e9 for p in second.values())

        occ = _get(port, "/v1/occupancy").json()
        assert sum(z["devices"] for z in occ["zones"]) > 0 and set(occ["devices_by_floor"]) <= {"L1", "L2"}
        gws = _get(port, "/v1/gateways").json()
        assert gws["counts"]["up"] >= 100 and len(gws["gateways"]) == 152
        venue = _get(port, "/v1/venue").json()
        assert venue["id"] == "demo-mall" and len(venue["floors"]) == 2 and len(venue["zones"]) == 66

        with httpx.stream("GET", f"http://127.0.0.1:{port}/v1/stream", timeout=5) as stream:
            frame = None
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    frame = json.loads(line[len("data: "):])
                    break
        assert frame is not None and len(frame["positions"]) >= 100
        assert "<canvas" in _get(port, "/").text

        out, err = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"http://127.0.0.1:{port}/" in out
    assert "readings" in out.splitlines()[-1]
