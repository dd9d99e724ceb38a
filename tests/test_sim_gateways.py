"""Synthetic gateways against a real mosquitto: our wire protocol, ESPresense and Theengs formats,
phone scans posted to the API (httpx MockTransport), the demo's traffic handle."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from beacon_gateway.adapters import parse_espresense, parse_theengs
from beacon_gateway.wire import decode_batch, is_canonical_beacon_id, parse_gateway_topic
from positioning.venue import Venue
from simulations.gateways import LiveRun, ScanPoster
from simulations.live import start_demo_gateways
from simulations.local_broker import MosquittoBroker
from simulations.scenario import World
from tests.conftest import CORNER_STORE, instore_exe


class Recorder:
    """Subscribes to everything on the broker and keeps (topic, payload, retained) in order."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-recorder")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.ready.wait(10)
        time.sleep(0.2)

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object) -> None:
        client.subscribe("#", qos=1)
        self.ready.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def topics(self, contains: str) -> list[tuple[str, bytes, bool]]:
        with self.lock:
            return [m for m in self.messages if contains in m[0]]


@pytest.fixture
def recorder(mosquitto_broker: MosquittoBroker) -> Iterator[Recorder]:
    r = Recorder(mosquitto_broker)
    try:
        yield r
    finally:
        r.close()


def test_simulate_mqtt_publishes_the_wire_protocol(store: Venue, mosquitto_broker: MosquittoBroker,
                                                   recorder: Recorder) -> None:
    proc = subprocess.run([instore_exe(), "simulate", "--venue", str(CORNER_STORE), "--shoppers", "12",
                           "--duration", "8", "--speed", "8", "--seed", "3", "--mqtt", mosquitto_broker.url],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    time.sleep(0.5)
    anchors = {a.id for a in store.anchors}
    seqs: dict[str, list[int]] = defaultdict(list)
    readings = 0
    for topic, payload, _ in recorder.topics("/readings"):
        venue, gw, kind = parse_gateway_topic(topic) or ("", "", "")
        assert venue == "corner-store" and kind == "readings" and gw in anchors
        batch = decode_batch(payload)
        assert batch.gw == gw and len(batch) > 0
        assert all(is_canonical_beacon_id(i) for i in batch.id)
        assert all(-100 <= r <= -20 and float(r).is_integer() for r in batch.rssi)
        assert all(d >= 0 for d in batch.dt)
        seqs[gw].append(batch.seq)
        readings += len(batch)
    assert readings > 200 and len(seqs) >= 4
    for gw, s in seqs.items():
        distinct = sorted(set(s))
        assert distinct == list(range(distinct[0], distinct[0] + len(distinct))), f"{gw}: seq must go up by one"
    statuses = recorder.topics("/status")
    assert {parse_gateway_topic(t)[1] for t, _, _ in statuses} == anchors  # type: ignore[index]
    online = [json.loads(p) for _, p, _ in statuses if p != b"offline"]
    assert all(doc["state"] == "online" for doc in online)
    assert "published" in proc.stdout


def test_status_is_retained_and_the_last_will_marks_offline(store: Venue, mosquitto_broker: MosquittoBroker) -> None:
    world = World(store, 5, seed=2, start_t=time.time(), follow_clock=False)
    from simulations.gateways import WireGateways, paho_factory

    wire = WireGateways(store, paho_factory(mosquitto_broker.url), seed=2)
    run = LiveRun(world, [wire], speed=20.0)
    run.run(duration_s=3)
    # A late subscriber sees every gateway's retained status: online after a clean stop (no will fired).
    late = Recorder(mosquitto_broker)
    try:
        time.sleep(0.3)
        retained = {t.split("/")[4]: p for t, p, r in late.topics("/status") if r}
        assert set(retained) == {a.id for a in store.anchors}
        assert all(json.loads(p)["state"] == "online" for p in retained.values())
    finally:
        late.close()
    # Each connection carries its gateway's last will: "offline", retained.
    assert all(getattr(p, "_client")._will for p in wire.publishers)  # noqa: B009


def test_espresense_and_theengs_formats_parse_with_our_adapters(mosquitto_broker: MosquittoBroker,
                                                                recorder: Recorder, store: Venue) -> None:
    anchors = {a.id for a in store.anchors}
    for fmt in ("espresense", "theengs"):
        proc = subprocess.run([instore_exe(), "simulate", "--venue", str(CORNER_STORE), "--shoppers", "6",
                               "--duration", "4", "--speed", "8", "--mqtt", mosquitto_broker.url, "--format", fmt],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
    time.sleep(0.5)
    esp = recorder.topics("espresense/devices/")
    the = recorder.topics("/BTtoMQTT/")
    assert len(esp) > 20 and len(the) > 20
    for topic, payload, _ in esp:
        r = parse_espresense(topic, payload, 1.0, anchors=anchors)
        assert is_canonical_beacon_id(r.beacon_id) and r.anchor in anchors and r.tx_power is not None
    for topic, payload, _ in the:
        r = parse_theengs(topic, payload, 1.0, anchors=anchors)
        assert is_canonical_beacon_id(r.beacon_id) and r.anchor in anchors
    # At most one report per device and room per simulated second.
    per_key: dict[str, int] = defaultdict(int)
    for topic, _, _ in esp:
        per_key[topic] += 1
    assert max(per_key.values()) <= 5


def test_phone_scans_are_posted_to_the_api(store: Venue) -> None:
    bodies: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/scans"
        bodies.append(json.loads(request.content))
        return httpx.Response(202, json={"accepted": 1})

    poster = ScanPoster("http://engine.test", client=httpx.Client(transport=httpx.MockTransport(handler)))
    world = World(store, 8, seed=4, start_t=1_763_870_000.0, follow_clock=False, phone_scans=True)
    now = [0.0]
    run = LiveRun(world, [poster], speed=1000.0, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    run.run(duration_s=10)
    assert poster.posted == len(bodies) > 5 and poster.failed == 0
    beacons = {b.id for b in store.beacons}
    for body in bodies:
        assert str(body["device"]).startswith("app-")
        assert isinstance(body["scan"], int) and isinstance(body["t"], float)
        readings = body["readings"]
        assert isinstance(readings, list) and readings
        assert {r["beacon"] for r in readings} <= beacons
        assert all(-100 <= r["rssi"] <= 0 and r["tx_power"] == -59 for r in readings)


def test_demo_traffic_starts_and_stops(store: Venue, mosquitto_broker: MosquittoBroker, recorder: Recorder) -> None:
    traffic = start_demo_gateways(venue=store, broker_url=mosquitto_broker.url, shoppers=10, speed=10.0, seed=7)
    try:
        deadline = time.monotonic() + 15
        while traffic.published < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert traffic.published >= 10
        assert traffic.world.inside >= 5
    finally:
        traffic.stop()
    assert not traffic.run.running
    assert recorder.topics("/readings")


def test_simulate_mqtt_rejects_a_bad_url(tmp_path: Path) -> None:
    proc = subprocess.run([instore_exe(), "simulate", "--venue", str(CORNER_STORE), "--shoppers", "2",
                           "--duration", "2", "--mqtt", "http://nope"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "mqtt" in proc.stderr.lower()


def test_outages_show_offline_and_retries_repeat_their_seq(store: Venue) -> None:
    """With the in-memory publisher: a gateway down for an outage publishes nothing and shows
    ``offline`` (retained), then ``online`` again; re-sent batches carry the seq they had."""
    from simulations.gateways import WireGateways
    from simulations.radio import RadioConfig
    from tests.fakes.gateway import FakePublisher

    pubs: dict[str, FakePublisher] = {}

    def factory(client_id: str, will: tuple[str, bytes] | None) -> FakePublisher:
        assert will is not None and will[1] == b"offline" and will[0].endswith("/status")
        pubs[client_id] = FakePublisher()
        return pubs[client_id]

    radio = RadioConfig(outages_per_hour=120.0, outage_s=(5.0, 15.0), duplicate_rate=0.0)
    world = World(store, 10, seed=12, start_t=1_763_870_000.0, follow_clock=False, radio=radio)
    wire = WireGateways(store, factory, duplicate_rate=0.05, seed=12)
    now = [0.0]
    LiveRun(world, [wire], speed=100.0, clock=lambda: now[0],
            sleep=lambda s: now.__setitem__(0, now[0] + s)).run(duration_s=180)
    offline_seen = 0
    for client_id, pub in pubs.items():
        gw = client_id.removeprefix("instore-sim-corner-store-")
        statuses = [p.payload for p in pub.on("/status")]
        assert all(p.retain for p in pub.on("/status"))
        assert statuses[0] != b"offline" and statuses[-1] != b"offline"  # online at the start and the end
        offline_seen += statuses.count(b"offline")
        batches = [decode_batch(p.payload) for p in pub.on("/readings")]
        assert batches and all(b.gw == gw for b in batches)
        seqs = [b.seq for b in batches]
        assert sorted(set(seqs)) == list(range(1, max(seqs) + 1))
        # A repeated seq is a retry of the very same batch.
        by_seq: dict[int, list[bytes]] = defaultdict(list)
        for p in pub.on("/readings"):
            by_seq[decode_batch(p.payload).seq].append(p.payload)
        assert all(len(set(v)) == 1 for v in by_seq.values())
        assert pub.closed
    assert offline_seen >= 3  # six gateways, 3 minutes, an outage every ~30 s each
    assert wire.duplicates > 0
