"""Synthetic gateways for the demo: publishes the wire protocol for a simulated mall, in real or
accelerated time. Uses ``SyntheticMall`` (``api/synthetic_traffic.py``) and one MQTT connection."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from api.mqtt_ingest import parse_mqtt_url
from api.synthetic_traffic import SyntheticMall
from beacon_gateway.wire import encode_batch, readings_topic, status_topic
from positioning.venue import Venue

BATCH_PERIOD_S: Final = 1.0  # simulated gateways publish one batch per second of simulated time
MAX_CATCH_UP_STEPS: Final = 50  # a slow machine skips simulated time rather than falling ever further behind


class DemoGateways:
    def __init__(self, venue: Venue, broker_url: str, shoppers: int, speed: float, seed: int = 0,
                 clock: Callable[[], float] = time.time) -> None:
        self.venue = venue
        self.mall = SyntheticMall(venue, shoppers, seed=seed)
        self.speed = speed
        self.clock = clock
        url = parse_mqtt_url(broker_url)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"instore-demo-gateways-{venue.id}")
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        if url.username:
            self.client.username_pw_set(url.username, url.password)
        self.client.connect(url.host, url.port)
        self.client.loop_start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-gateways", daemon=True)
        self.published = 0
        self.sim_t = clock()

    def start(self) -> DemoGateways:
        for a in self.venue.anchors:
            self.client.publish(status_topic(self.venue.id, a.id),
                                json.dumps({"state": "online", "kind": "synthetic"}).encode(), qos=1, retain=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        wall0 = self.clock()
        sim0 = self.sim_t
        while not self._stop.is_set():
            target = sim0 + (self.clock() - wall0) * self.speed
            steps = 0
            while self.sim_t + BATCH_PERIOD_S <= target and steps < MAX_CATCH_UP_STEPS:
                for b in self.mall.step(self.sim_t, BATCH_PERIOD_S):
                    self.client.publish(readings_topic(self.venue.id, b.gw), encode_batch(b), qos=1)
                    self.published += 1
                self.sim_t += BATCH_PERIOD_S
                steps += 1
            if steps == MAX_CATCH_UP_STEPS:
                sim0, wall0 = self.sim_t, self.clock()
            self._stop.wait(min(0.05, BATCH_PERIOD_S / self.speed / 4))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()
