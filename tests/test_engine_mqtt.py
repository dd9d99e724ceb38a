"""The engine against a real mosquitto: gateways in, positions, sessions and events out; bad input
survived and counted; a crash and restart of ``instore serve`` mid-stream loses nothing."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from api.engine import Engine
from api.synthetic_traffic import SyntheticMall
from beacon_gateway.wire import ReadingsBatch, events_topic, readings_topic, status_topic
from positioning.venue import Venue
from simulations.local_broker import MosquittoBroker, free_port
from tests.conftest import CORNER_STORE, instore_exe
from tests.engine_helpers import Listener, Publisher, wait_until

pytestmark = pytest.mark.integration


def _stream(venue: Venue, seconds: int, t0: float, shoppers: int = 8, seed: int = 3) -> list[ReadingsBatch]:
    mall = SyntheticMall(venue, shoppers, seed=seed, adverts_hz=4.0)
    out = []
    for k in range(seconds):
        out += mall.step(t0 + k, 1.0)
    return out


def test_gateways_in_positions_sessions_and_events_out(engine: Engine, mosquitto_broker: MosquittoBroker,
                                                       store: Venue) -> None:
    events = Listener(mosquitto_broker.host, mosquitto_broker.port, events_topic(store.id))
    positions = Listener(mosquitto_broker.host, mosquitto_broker.port, f"instore/v1/{store.id}/positions/+")
    pub = Publisher(mosquitto_broker.host, mosquitto_broker.port)
    try:
        batches = _stream(store, 20, time.time() - 20)
        for b in batches:
            pub.batch(store.id, b)
        sent = sum(len(b) for b in batches)
        wait_until(lambda: engine.pipeline.counters.readings_applied == sent, 20, "all readings applied")
        wait_until(lambda: len(events.messages) > 0 and len({p["device"] for p in positions.messages}) == 8, 10,
                   "events, and positions of every device")
    finally:
        pub.close()
        events.close()
        positions.close()
    m = engine.metrics()["pipeline"]
    assert m["duplicates"] == 0 and m["errors"] == {}
    devices = {p["device"] for p in positions.messages}
    assert len(devices) == 8 and all(d.startswith("d-") for d in devices)
    for p in positions.messages:
        assert set(p) == {"device", "t", "x", "y", "floor", "accuracy_m", "zone"}
        assert p["floor"] == "L1" and 0 <= p["x"] <= 20 and 0 <= p["y"] <= 15
    assert {e["type"] for e in events.messages} <= {"zone_enter", "zone_exit", "dwell", "visit_end", "floor_change"}
    assert all({"type", "device", "zone", "floor", "t"} <= set(e) for e in events.messages)
    db = sqlite3.connect(engine.settings.db)
    assert db.execute("SELECT count(DISTINCT device) FROM positions").fetchone()[0] == 8
    assert db.execute("SELECT count(*) FROM zone_sessions").fetchone()[0] > 0
    stored = db.execute("SELECT * FROM positions").fetchall()
    assert "ibeacon" not in json.dumps(stored)  # beacon ids never reach the database


def test_malformed_and_oversized_messages_are_survived_and_counted(engine: Engine,
                                                                   mosquitto_broker: MosquittoBroker,
                                                                   store: Venue) -> None:
    pub = Publisher(mosquitto_broker.host, mosquitto_broker.port)
    topic = readings_topic(store.id, "gw-1")
    try:
        pub.raw(topic, b"\xff\xfe not json")
        pub.raw(topic, b'{"v": 1, "gw": "gw-1"}')
        pub.raw(topic, b"[" + b"1," * 1_100_000 + b"1]")  # 2.2 MB
        pub.raw(readings_topic(store.id, "gw-404"), b"{}")
        pub.raw("espresense/devices/x/nowhere", b"{}")  # a room that is not an anchor
        good = _stream(store, 3, time.time() - 3, shoppers=2)
        for b in good:
            pub.batch(store.id, b)
        n_good = sum(len(b) for b in good)
        wait_until(lambda: engine.pipeline.counters.readings_applied == n_good, 15, "the good batches")
        wait_until(lambda: sum(engine.pipeline.counters.errors.values()) == 5, 10, "all errors counted")
    finally:
        pub.close()
    assert engine.pipeline.counters.errors == {"bad_json": 1, "schema": 1, "oversized": 1, "unknown_gateway": 1,
                                               "unknown_anchor": 1}
    assert engine.healthy


def test_gateway_last_will_marks_it_down(engine: Engine, mosquitto_broker: MosquittoBroker,
                                         store: Venue) -> None:
    pub = Publisher(mosquitto_broker.host, mosquitto_broker.port)
    try:
        pub.raw(status_topic(store.id, "gw-3"), b'{"state":"online","config_version":1}', retain=True)
        wait_until(lambda: {g["id"]: g["state"] for g in engine.live.view.gateways}.get("gw-3") == "up", 10, "up")
        pub.raw(status_topic(store.id, "gw-3"), b"offline", retain=True)
        wait_until(lambda: {g["id"]: g["state"] for g in engine.live.view.gateways}.get("gw-3") == "down", 10,
                   "down after the last will")
    finally:
        pub.close()


def _serve(venue: Path, broker: MosquittoBroker, db: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, INSTORE_LOG_LEVEL="WARNING")
    with open(log, "ab") as out:
        return subprocess.Popen([instore_exe(), "serve", "--venue", str(venue), "--mqtt", broker.url,
                                 "--http", f"127.0.0.1:{port}", "--db", str(db)], stdout=out, stderr=out, env=env)


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_serve_crash_and_restart_mid_stream_loses_nothing(mosquitto_broker: MosquittoBroker, tmp_path: Path,
                                                          store: Venue) -> None:
    db, log, port = tmp_path / "serve.sqlite", tmp_path / "serve.log", free_port()
    proc = _serve(CORNER_STORE, mosquitto_broker, db, port, log)
    pub = Publisher(mosquitto_broker.host, mosquitto_broker.port)
    try:
        wait_until(lambda: _healthy(port), 30, f"/healthz 200 (log: {log})")
        batches = _stream(store, 40, time.time() - 40, shoppers=6)
        half = len(batches) // 2
        for b in batches[:half]:
            pub.batch(store.id, b).wait_for_publish(5)
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)  # a crash: nothing flushed, nothing acked after the last commit
        proc.wait(10)
        for b in batches[half:]:  # published while the engine is down: the broker keeps them for it
            pub.batch(store.id, b).wait_for_publish(5)
        for b in batches[half - 20:half]:  # a gateway resending what it was not sure of
            pub.batch(store.id, b).wait_for_publish(5)
        proc = _serve(CORNER_STORE, mosquitto_broker, db, port, log)
        wait_until(lambda: _healthy(port), 30, "/healthz after the restart")

        db_conn = sqlite3.connect(db)
        sent_last_t = max(b.t0 + max(b.dt) for b in batches)
        wait_until(lambda: (db_conn.execute("SELECT max(t) FROM positions").fetchone()[0] or 0) >= sent_last_t - 1,
                   30, "positions up to the last reading")
        after_restart = httpx.get(f"http://127.0.0.1:{port}/v1/metrics", timeout=2).json()["pipeline"]
    finally:
        pub.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    # the saved dedup state reached every gateway's last batch
    dedup = {gw: m for gw, m, _ in sqlite3.connect(db).execute("SELECT gw, max_seq, bits FROM dedup")}
    last: dict[str, int] = {}
    for b in batches:
        last[b.gw] = max(last.get(b.gw, -1), b.seq)
    assert dedup == last
    conn = sqlite3.connect(db)
    per_second = conn.execute("SELECT device, CAST(t AS INTEGER) AS s FROM positions GROUP BY device, s").fetchall()
    heard: dict[str, set[int]] = {}
    for b in batches:
        for i, dt in zip(b.id, b.dt, strict=True):
            heard.setdefault(i, set()).add(int(b.t0 + dt))
    # no second of readings was lost: each device has positions for (nearly) all the seconds it was heard in
    n_seconds = sum(len(s) for s in heard.values())
    assert len(per_second) >= 0.95 * n_seconds, (len(per_second), n_seconds)
    enters = conn.execute("SELECT device, zone, count(*) FROM zone_sessions GROUP BY device, zone, start").fetchall()
    assert all(n == 1 for _, _, n in enters)  # no stay entered twice
    assert after_restart["duplicates"] >= 20  # the 20 resent batches (or their redelivery) were dropped
