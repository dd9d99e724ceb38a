"""Time series through influxdb-client into a real VictoriaMetrics, read back through its query API."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from api.engine import Engine
from api.settings import load_settings
from api.synthetic_traffic import SyntheticMall
from positioning.venue import parse_venue
from simulations.local_broker import MosquittoBroker
from tests.conftest import CORNER_STORE
from tests.engine_helpers import Publisher, wait_until

pytestmark = pytest.mark.integration


def _export(url: str, match: str) -> list[dict[str, object]]:
    httpx.get(f"{url}/internal/force_flush", timeout=10)
    r = httpx.get(f"{url}/api/v1/export", params={"match[]": match, "start": "0"}, timeout=10)
    r.raise_for_status()
    return [json.loads(line) for line in r.text.splitlines() if line.strip()]


def test_positions_occupancy_and_gateway_health_reach_victoria_metrics(
        mosquitto_broker: MosquittoBroker, victoria_metrics: str, tmp_path: Path) -> None:
    venue = parse_venue(CORNER_STORE.read_text(encoding="utf-8"), str(CORNER_STORE))
    settings = load_settings(mqtt_url=mosquitto_broker.url, db=tmp_path / "ts.sqlite", influx_url=victoria_metrics,
                             influx_token="unused", influx_org="instore", influx_bucket="instore")
    engine = Engine(settings, venue).start()
    pub = Publisher(mosquitto_broker.host, mosquitto_broker.port)
    try:
        assert engine.wait_subscribed(10)
        mall = SyntheticMall(venue, 5, seed=11, adverts_hz=3.0)
        t0 = (time.time() // 60) * 60 - 120  # two whole minutes back: occupancy minutes close
        for k in range(90):
            for b in mall.step(t0 + k, 1.0):
                pub.batch(venue.id, b)
        wait_until(lambda: engine.timeseries.written > 0 and engine.pipeline.uncommitted == 0, 20, "writes")
        wait_until(lambda: len({s["metric"]["device"]  # type: ignore[index]
                                for s in _export(victoria_metrics, '{__name__="positions_x"}')}) == 5, 20,
                   "5 devices' positions in VictoriaMetrics (one series per device and zone)")
        xs = _export(victoria_metrics, '{__name__="positions_x"}')
        devices = {s["metric"]["device"] for s in xs}  # type: ignore[index]
        assert devices == {f.device for f in engine.live.view.positions}
        for s in xs:
            values: list[float] = s["values"]  # type: ignore[assignment]
            stamps: list[int] = s["timestamps"]  # type: ignore[assignment]
            assert all(0 <= v <= 20 for v in values)
            assert min(stamps) >= (t0 - 1) * 1000  # stamped with the readings' time, not the wall clock
        # Occupancy minutes and gateway health are written on their own cadence, and VictoriaMetrics makes
        # new samples searchable after a short delay: wait for them rather than read once.
        zones = {z.id for z in venue.zones}
        gateways = {a.id for a in venue.anchors}
        wait_until(lambda: {s["metric"]["zone"]  # type: ignore[index]
                            for s in _export(victoria_metrics, '{__name__="zone_occupancy_devices"}')} == zones, 30,
                   "occupancy of every zone in VictoriaMetrics")
        wait_until(lambda: {s["metric"]["gateway"]  # type: ignore[index]
                            for s in _export(victoria_metrics, '{__name__="gateway_health_up"}')} == gateways, 30,
                   "health of every gateway in VictoriaMetrics")
        assert engine.timeseries.stats()["failed"] == 0
    finally:
        pub.close()
        engine.stop()
