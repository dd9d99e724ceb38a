"""The HTTP API over a real engine and a real mosquitto: health, phone scans, offers within a second
of a zone entry, a shopper's export and delete, metrics, and the live stream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import build_app
from api.engine import Engine
from api.settings import load_settings
from beacon_gateway.wire import ReadingsBatch, events_topic
from positioning.venue import Venue, parse_venue
from simulations.local_broker import MosquittoBroker
from tests.conftest import CORNER_STORE
from tests.engine_helpers import Listener, Publisher, wait_until

pytestmark = pytest.mark.integration
BEACON = "ibeacon:f7826da6-4fa2-4e98-8024-bc5b71e0893e-1-7"


@pytest.fixture(scope="module")
def venue() -> Venue:
    return parse_venue(CORNER_STORE.read_text(encoding="utf-8"), str(CORNER_STORE))


@pytest.fixture
def engine(mosquitto_broker: MosquittoBroker, tmp_path: Path, venue: Venue) -> Iterator[Engine]:
    e = Engine(load_settings(mqtt_url=mosquitto_broker.url, db=tmp_path / "api.sqlite"), venue).start()
    assert e.wait_subscribed(10)
    # The readings carry the wall clock's time: without this, the venue's default quiet hours (22:00-08:00
    # in Paris) held every offer back whenever the suite ran at night. Quiet hours have their own tests.
    e.campaigns.policy = replace(e.campaigns.policy, quiet_hours=())
    try:
        yield e
    finally:
        e.stop()


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(build_app(engine)) as c:
        yield c


def _at_checkout(seq: int, t0: float) -> list[ReadingsBatch]:
    """One second of a shopper standing under gw-3, which hangs over the checkout."""
    loud = {"gw-3": -52.0, "gw-2": -75.0, "gw-6": -78.0, "gw-5": -84.0}
    return [ReadingsBatch(v=1, gw=gw, seq=seq, t0=t0, dt=[0.0, 0.25, 0.5, 0.75], id=[BEACON] * 4,
                          rssi=[rssi] * 4, tx=[-59.0] * 4) for gw, rssi in loud.items()]


def test_health_metrics_and_venue(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    m = client.get("/v1/metrics").json()
    assert m["mqtt"]["subscribed"] and m["mqtt"]["client_id"] == "instore-engine-corner-store"
    text = client.get("/metrics").text
    assert "instore_messages_total" in text and "instore_queue_size" in text
    v = client.get("/v1/venue").json()
    assert v["id"] == "corner-store" and {z["id"] for z in v["zones"]} >= {"checkout", "entrance"}


def test_phone_scans_are_validated_and_positioned(client: TestClient, engine: Engine, venue: Venue) -> None:
    beacons = [b.id for b in venue.beacons]
    body = {"device": "app-1234", "scan": "s-1", "t": time.time(),
            "readings": [{"beacon": b, "rssi": -60 - 5 * i, "tx_power": -59} for i, b in enumerate(beacons)]}
    r = client.post("/v1/scans", json=body)
    assert r.status_code == 202, r.text
    device = r.json()["device"]
    assert device.startswith("d-") and device == engine.pseudonyms.app("app-1234")
    wait_until(lambda: any(p["device"] == device for p in client.get("/v1/positions").json()["positions"]), 5,
               "the scan's position")
    for bad, field in [({**body, "readings": []}, "readings"),
                       ({**body, "readings": [{"beacon": beacons[0], "rssi": 5}]}, "rssi"),
                       ({k: v for k, v in body.items() if k != "device"}, "device"),
                       ({**body, "t": "yesterday"}, "t")]:
        r = client.post("/v1/scans", json=bad)
        assert r.status_code == 422
        assert field in json.dumps(r.json()["detail"])


def test_offer_reaches_the_shopper_api_within_a_second_of_entry(client: TestClient, engine: Engine,
                                                                mosquitto_broker: MosquittoBroker,
                                                                venue: Venue) -> None:
    campaign = {"id": "checkout-treat", "brand": "corner-store", "zones": ["checkout"],
                "trigger": {"kind": "enter"}, "offer": {"title": "10% off at the till", "value": "10%"},
                "status": "active", "holdout_pct": 0}
    r = client.post("/v1/campaigns", json=campaign)
    assert r.status_code == 201, r.text
    device = engine.pseudonyms.one(BEACON)
    assert client.put(f"/v1/shoppers/{device}/consents", json={"granted": True}).status_code == 200

    events = Listener(mosquitto_broker.host, mosquitto_broker.port, events_topic(venue.id))
    pub = Publisher(mosquitto_broker.host, mosquitto_broker.port)
    try:
        t0 = time.time() - 1
        entered_at: float | None = None
        for k in range(12):  # a shopper walks up to the checkout and waits there, readings arriving live
            for b in _at_checkout(k, t0 + k):
                pub.batch(venue.id, b)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                if entered_at is None and any(e["type"] == "zone_enter" and e["zone"] == "checkout"
                                              for e in events.messages):
                    entered_at = time.monotonic()
                if entered_at is not None:
                    break
                time.sleep(0.02)
            if entered_at is not None:
                break
        assert entered_at is not None, f"no checkout entry; events: {events.messages}"
        offers: list[dict[str, object]] = []
        while time.monotonic() - entered_at < 1.0 and not offers:
            offers = client.get(f"/v1/shoppers/{device}/offers").json()
            time.sleep(0.02)
        assert offers and offers[0]["campaign"] == "checkout-treat", offers
        wait_until(lambda: any(e["type"] == "offer" for e in events.messages), 2, "the offer on the events topic")
    finally:
        pub.close()
        events.close()
    offer = next(e for e in events.messages if e["type"] == "offer")
    assert offer["device"] == device and offer["zone"] == "checkout" and offer["voucher"]

    # Navigation reads the same live state: where the shopper is, and the open offer right here.
    here = client.get(f"/v1/shoppers/{device}/whereami").json()
    assert here["floor"]["id"] == "L1" and here["zone"]["id"] == "checkout" and "checkout" in here["zones_here"]
    near = client.get(f"/v1/shoppers/{device}/nearby", params={"radius_m": 10}).json()
    assert "checkout" in [p["id"] for p in near["places"]]
    assert near["offers"][0]["campaign"] == "checkout-treat" and near["offers"][0]["nearby"]
    way = client.get("/v1/navigation/route", params={"from_device": device, "to_zone": "entrance"}).json()
    assert way["floors"] == ["L1"] and way["length_m"] >= way["straight_line_m"] - 1e-6

    export = client.get(f"/v1/shoppers/{device}/export").json()
    assert export["zone_sessions"] and export["positions"] and export["campaigns"]
    assert BEACON not in json.dumps(export)
    deleted = client.delete(f"/v1/shoppers/{device}").json()["deleted_rows"]
    assert deleted["engine"] > 0 and deleted["campaigns"] > 0
    assert client.get(f"/v1/shoppers/{device}/export").status_code == 404


def test_live_stream_sends_frames(client: TestClient, engine: Engine, mosquitto_broker: MosquittoBroker,
                                  venue: Venue) -> None:
    pub = Publisher(mosquitto_broker.host, mosquitto_broker.port)
    try:
        for b in _at_checkout(0, time.time()):
            pub.batch(venue.id, b)
        wait_until(lambda: len(engine.live.view.positions) == 1, 5, "a position")
    finally:
        pub.close()
    frame = json.loads(engine.live.view.frame)
    assert frame["positions"][0][1] == "L1" and frame["gateways"]["up"] == 4
    assert client.get("/v1/gateways").json()["counts"] == {"up": 4, "down": 0, "unknown": 2}
