"""Retention (engine and campaign rows older than the retention period go, on the job's cadence of an
injected clock) and the retained gateway config that ``instore serve`` publishes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from api.campaign_store import SqliteCampaignStore
from api.engine import Engine
from api.gateway_config import GatewayConfigError, parse_gateway_configs
from api.retention import RetentionJob
from api.settings import load_settings
from api.sqlite_store import SqliteStore
from api.store import EventRow, PositionRow, WindowWrite
from campaigns.model import Decision
from campaigns.store import EngineWrites
from positioning.venue import Venue, parse_venue
from simulations.local_broker import MosquittoBroker
from tests.conftest import CORNER_STORE
from tests.engine_helpers import Listener, wait_until
from tests.fakes.clock import FakeClock

DAY = 86_400.0


@pytest.fixture(scope="module")
def venue() -> Venue:
    return parse_venue(CORNER_STORE.read_text(encoding="utf-8"), str(CORNER_STORE))


def _count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as c:
        return int(c.execute(sql).fetchone()[0])


def test_retention_purges_old_engine_and_campaign_rows_on_its_cadence(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    clock = FakeClock()
    store, cstore = SqliteStore(db), SqliteCampaignStore(db)
    now = clock()
    old, recent = now - 3 * DAY, now - 600.0
    w = WindowWrite()
    w.positions = [PositionRow("d-1", t, 1.0, 2.0, "L1", 1.5, None) for t in (old, recent)]
    w.events = [EventRow("zone_enter", "d-1", old, "checkout", "L1"), EventRow("zone_exit", "d-1", old + 60,
                                                                              "checkout", "L1"),
                EventRow("zone_enter", "d-1", recent, "checkout", "L1")]
    store.commit(w)
    cstore.write(EngineWrites(decisions=tuple(Decision(t, "d-1", "c1", "enter", "checkout", "L1", "holdout")
                                              for t in (old, recent)),
                              zone_seen=(("d-1", "checkout", old), ("d-2", "checkout", recent))))
    assert _count(db, "SELECT count(*) FROM events") == 3 and _count(db, "SELECT count(*) FROM zone_sessions") == 2

    job = RetentionJob(2, store, cstore, every_s=3600.0)
    first = job.maybe_run(clock())
    assert first is not None and first.cutoff == pytest.approx(now - 2 * DAY)
    assert first.engine_rows > 0 and first.campaign_rows == 2  # one decision, one zone last-seen
    assert _count(db, "SELECT count(*) FROM events") == 1
    assert _count(db, "SELECT count(*) FROM zone_sessions") == 1  # the closed old stay went, the open one stays
    assert _count(db, "SELECT count(*) FROM positions") == 1
    assert _count(db, "SELECT count(*) FROM campaign_decisions") == 1
    assert _count(db, "SELECT count(*) FROM campaign_zone_seen") == 1

    assert job.maybe_run(clock.advance(600.0)) is None  # not due yet
    store.commit(WindowWrite(events=[EventRow("zone_enter", "d-3", clock() - 2.5 * DAY, "checkout", "L1")]))
    again = job.maybe_run(clock.advance(3000.0))
    assert again is not None and again.engine_rows >= 1
    assert job.stats()["runs"] == 2 and job.stats()["retention_days"] == 2
    store.close()
    cstore.close()


def test_engine_runs_retention_with_the_configured_days(tmp_path: Path, venue: Venue) -> None:
    clock = FakeClock()
    e = Engine(load_settings(db=tmp_path / "e.sqlite", retention_days=7), venue, clock=clock)
    try:
        assert e.retention.keep_s == 7 * DAY and e.retention.campaign_store is e.campaign_store
        assert e.metrics()["retention"]["retention_days"] == 7
    finally:
        e.store.close()


GW_CONFIG = """
version: 7
default: {batch_period_s: 1, batch_max: 500, scan_window_s: 30, log_level: INFO,
          allow_uuids: [8a0d3c6e-6a54-4c1e-9d2f-5b7e1f0a4c21]}
gateways:
  gw-2: {batch_max: 200, log_level: DEBUG}
"""


def test_gateway_config_file_is_merged_and_validated_naming_the_field(venue: Venue) -> None:
    import json

    out = {gw: json.loads(p) for gw, p in parse_gateway_configs(GW_CONFIG, venue, "gw.yaml").items()}
    assert sorted(out) == [f"gw-{i}" for i in range(1, 7)]
    assert out["gw-1"] == {"version": 7, "batch_period_s": 1.0, "batch_max": 500, "scan_window_s": 30.0,
                           "log_level": "INFO", "allow_uuids": ["8a0d3c6e-6a54-4c1e-9d2f-5b7e1f0a4c21"]}
    assert out["gw-2"]["batch_max"] == 200 and out["gw-2"]["log_level"] == "DEBUG"
    for text, where in [(GW_CONFIG.replace("batch_max: 500", "batch_max: 0"), "gw.yaml: default.batch_max"),
                        (GW_CONFIG.replace("gw-2:", "gw-99:"), "gw.yaml: gateways.gw-99: not a gateway"),
                        (GW_CONFIG.replace("log_level: DEBUG", "log_level: LOUD"), "gw.yaml: gateways.gw-2.log_level"),
                        (GW_CONFIG.replace("version: 7", "versoin: 7"), "gw.yaml: versoin: unknown key"),
                        (GW_CONFIG.replace("scan_window_s", "scan_windw_s"), "gw.yaml: default.scan_windw_s: unknown"),
                        ("[1, 2", "gw.yaml: not YAML or JSON")]:
        with pytest.raises(GatewayConfigError) as err:
            parse_gateway_configs(text, venue, "gw.yaml")
        assert str(err.value).startswith(where), str(err.value)


@pytest.mark.integration
def test_serve_publishes_retained_gateway_configs(mosquitto_broker: MosquittoBroker, tmp_path: Path,
                                                  venue: Venue) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(GW_CONFIG, encoding="utf-8")
    settings = load_settings(mqtt_url=mosquitto_broker.url, db=tmp_path / "c.sqlite", gateway_config=path)
    e = Engine(settings, venue).start()
    try:
        assert e.wait_subscribed(10)
        wait_until(lambda: e.metrics()["gateway_config"]["published"] == 6, 5, "configs handed to the client")
    finally:
        e.stop()
    # Retained: a gateway connecting later still gets its own.
    listener = Listener(mosquitto_broker.host, mosquitto_broker.port, "instore/v1/corner-store/gw/+/config")
    try:
        wait_until(lambda: len(listener.messages) == 6, 5, "six retained config messages")
        by_topic = dict(zip(listener.topics, listener.messages, strict=True))
        assert by_topic["instore/v1/corner-store/gw/gw-2/config"]["batch_max"] == 200
        assert all(m["version"] == 7 for m in listener.messages)
    finally:
        listener.close()


@pytest.mark.integration
def test_fallback_demo_gateways_publish_through_the_gateway_publisher(mosquitto_broker: MosquittoBroker,
                                                                      venue: Venue) -> None:
    from api.demo_traffic import DemoGateways
    from beacon_gateway import PahoPublisher

    listener = Listener(mosquitto_broker.host, mosquitto_broker.port, "instore/v1/corner-store/gw/#")
    gws = DemoGateways(venue, mosquitto_broker.url, 5, speed=20.0, seed=1).start()
    try:
        assert isinstance(gws.publisher, PahoPublisher)
        wait_until(lambda: gws.published >= 6, 10, "readings batches")
    finally:
        gws.stop()
        listener.close()
    status = [m for t, m in zip(listener.topics, listener.messages, strict=True) if t.endswith("/status")]
    assert len(status) == 6 and all(m["state"] == "online" for m in status)
    batches = [t for t in listener.topics if t.endswith("/readings")]
    assert batches and all(m["v"] == 1 and m["gw"] == t.split("/")[-2] for t, m in
                           zip(listener.topics, listener.messages, strict=True) if t.endswith("/readings"))
