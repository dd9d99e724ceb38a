"""Synthetic gateways for the demo: publishes the wire protocol for a simulated mall, in real or
accelerated time. Uses ``SyntheticMall`` (``api/synthetic_traffic.py``) and one MQTT connection through
the gateway agent's own publisher (``beacon_gateway.PahoPublisher``: QoS 1, reconnect backoff, TLS).

The demo normally runs the simulator's gateways (``simulations.live``); this is the fallback when the
simulator package is not installed."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Final

from api.errors import EngineError
from api.synthetic_traffic import SyntheticMall
from beacon_gateway import PahoPublisher
from beacon_gateway.wire import encode_batch, readings_topic, status_topic
from positioning.venue import Venue

BATCH_PERIOD_S: Final = 1.0  # simulated gateways publish one batch per second of simulated time
MAX_CATCH_UP_STEPS: Final = 50  # a slow machine skips simulated time rather than falling ever further behind
CONNECT_TIMEOUT_S: Final = 10.0  # the demo's broker runs on this machine: it answers at once or not at all


class DemoGateways:
    def __init__(self, venue: Venue, broker_url: str, shoppers: int, speed: float, seed: int = 0,
                 clock: Callable[[], float] = time.time) -> None:
        self.venue = venue
        self.mall = SyntheticMall(venue, shoppers, seed=seed)
        self.speed = speed
        self.clock = clock
        self.publisher = PahoPublisher(broker_url, f"instore-demo-gateways-{venue.id}", clean_session=True)
        self.publisher.start()
        if not self.publisher.wait_connected(CONNECT_TIMEOUT_S):
            self.publisher.close(0.0)
            raise EngineError(f"demo gateways: broker {broker_url} did not answer within {CONNECT_TIMEOUT_S:g} s")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-gateways", daemon=True)
        self.published = 0
        self.sim_t = clock()

    def start(self) -> DemoGateways:
        for a in self.venue.anchors:
            self.publisher.publish(status_topic(self.venue.id, a.id),
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
                    self.publisher.publish(readings_topic(self.venue.id, b.gw), encode_batch(b), qos=1)
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
        self.publisher.close()
