"""The live map in a real headless Chromium (driven over the DevTools protocol): the page loads the
venue, receives SSE frames, shows live counters and draws moving shopper dots on both floors."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from simulations.local_broker import free_port
from tests.cdp import Browser
from tests.conftest import CHROMIUM_CANDIDATES, instore_exe, require_binary
from tests.engine_helpers import wait_until

pytestmark = pytest.mark.integration
DOT_COLOURS = ((0x4C, 0xC9, 0xF0), (0xFF, 0xB7, 0x03), (0xE8, 0xEE, 0xF8))  # in a store, at a counter, concourse


def _count(port: int) -> int:
    try:
        return int(httpx.get(f"http://127.0.0.1:{port}/v1/positions", timeout=2).json()["count"])
    except httpx.HTTPError:
        return 0


def _dot_pixels(png: Path, x0: int, x1: int) -> int:
    import matplotlib.image as mpimg

    img = np.asarray(mpimg.imread(png))[:, :, :3]
    panel = img[120:img.shape[0] - 20, x0:x1]
    return int(sum(np.all(np.abs(panel - np.array(c) / 255) < 0.05, axis=2).sum() for c in DOT_COLOURS[:2]))


def test_dashboard_shows_live_dots_and_counters(tmp_path: Path) -> None:
    chromium = require_binary(*CHROMIUM_CANDIDATES)
    port = free_port()
    demo = subprocess.Popen([instore_exe(), "demo", "--duration", "90", "--speed", "2", "--shoppers", "200",
                             "--http", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    browser = None
    try:
        wait_until(lambda: _count(port) >= 150, 30, "positions of the demo's shoppers")
        browser = Browser(chromium, tmp_path / "profile")
        browser.goto(f"http://127.0.0.1:{port}/")
        b = browser
        wait_until(lambda: (b.eval("Number(document.getElementById('k-shoppers').textContent)") or 0) >= 150, 20,
                   "the shoppers counter")
        wait_until(lambda: b.eval("document.querySelectorAll('#evlist li').length") >= 3, 20, "the event feed")
        wait_until(lambda: b.eval("document.querySelectorAll('#busy .bar').length") >= 3, 20, "busiest zones")
        assert b.eval("document.getElementById('live').classList.contains('on')")
        per_floor = b.eval("['L1','L2'].map(f => parseInt(document.getElementById('cnt-' + f).textContent))")
        assert sum(per_floor) >= 150 and min(per_floor) > 0
        first = b.eval("JSON.stringify([...dots.entries()].slice(0, 60).map(([d, v]) => [d, v.x1, v.y1]))")
        time.sleep(2.5)
        second = {d: (x, y) for d, x, y in json.loads(
            b.eval("JSON.stringify([...dots.entries()].map(([d, v]) => [d, v.x1, v.y1]))"))}
        moved = [d for d, x, y in json.loads(first) if d in second and second[d] != (x, y)]
        assert len(moved) >= 10, "the dots do not move"
        shot = b.screenshot(tmp_path / "dashboard.png")
        width = int(b.eval("window.innerWidth"))
        left = b.eval("JSON.stringify(document.querySelectorAll('.floor')[0].getBoundingClientRect())")
        right = b.eval("JSON.stringify(document.querySelectorAll('.floor')[1].getBoundingClientRect())")
        for rect in (json.loads(left), json.loads(right)):
            assert _dot_pixels(shot, int(rect["left"]), int(rect["right"])) > 100, (rect, width)
    finally:
        if browser is not None:
            browser.close()
        demo.kill()
        demo.communicate()
