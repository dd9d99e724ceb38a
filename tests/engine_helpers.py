"""Helpers shared by the engine's integration tests: a publisher of wire batches and waiting."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from beacon_gateway.wire import ReadingsBatch, encode_batch, readings_topic


class Publisher:
    """A gateway-side MQTT client publishing QoS 1 batches (like the gateway agent does)."""

    def __init__(self, host: str, port: int, client_id: str = "test-gateways") -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect(host, port)
        self.client.loop_start()

    def batch(self, venue: str, b: ReadingsBatch) -> mqtt.MQTTMessageInfo:
        return self.client.publish(readings_topic(venue, b.gw), encode_batch(b), qos=1)

    def raw(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Listener:
    """Collects JSON messages on a topic filter."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self.topics: list[str] = []
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"listener-{time.monotonic_ns()}")
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        assert self._ready.wait(5), "listener could not subscribe"

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.topics.append(msg.topic)
        self.messages.append(json.loads(msg.payload))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
