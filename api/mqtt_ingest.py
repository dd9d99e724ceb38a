"""The MQTT side of the engine (paho-mqtt >= 2): persistent session in, acks after commit, events out.

The network thread only copies each message into a bounded queue (it waits when the queue is full:
backpressure reaches the broker instead of memory growing); the engine thread decodes and applies
them, commits, and then acks them (``manual_ack``), so a crash before the commit loses nothing.
A fixed client id with ``clean_session=False`` and QoS 1 subscriptions make the broker keep what is
published while the engine is down. Reconnects back off between ``MQTT_RECONNECT_MIN_S`` and
``MQTT_RECONNECT_MAX_S``.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from api.const import (
    INGEST_PUT_TIMEOUT_S,
    MQTT_KEEPALIVE_S,
    MQTT_MAX_QUEUED_OUT,
    MQTT_RECONNECT_MAX_S,
    MQTT_RECONNECT_MIN_S,
)
from api.errors import EngineError

log = logging.getLogger("instore.ingest")


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False

    def __str__(self) -> str:  # never print the password
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def parse_mqtt_url(url: str) -> BrokerUrl:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise EngineError(f"broker URL must look like mqtt://[user:pass@]host:port or mqtts://..., got {url!r}")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise EngineError(f"broker URL has a bad port: {url!r}") from None
    return BrokerUrl(parts.hostname, port, unquote(parts.username) if parts.username else None,
                     unquote(parts.password) if parts.password else None, tls)


@dataclass(frozen=True, slots=True)
class MqttItem:
    """One received message, as the engine thread gets it. ``token`` is what ``ack`` needs back."""

    topic: str
    payload: bytes
    token: tuple[int, int, int] | None  # (connection generation, mid, qos); None for QoS 0
    received: float


class MqttIngest:
    def __init__(self, url: BrokerUrl, client_id: str, subscriptions: Sequence[str], inbox: queue.Queue[Any],
                 clock: Callable[[], float], shared_group: str | None = None) -> None:
        self.url = url
        self.client_id = client_id
        self.filters = [f"$share/{shared_group}/{s}" if shared_group else s for s in subscriptions]
        self.inbox = inbox
        self.clock = clock
        self.subscribed = threading.Event()
        self.connected = threading.Event()
        self.connects = 0
        self.disconnects = 0
        self.last_error: str | None = None
        self._gen = 0
        self._paused = threading.Event()
        self._pending_sub: set[int] = set()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                        protocol=mqtt.MQTTv311)
        c.manual_ack_set(True)
        c.max_queued_messages_set(MQTT_MAX_QUEUED_OUT)
        c.max_inflight_messages_set(100)  # our own QoS 1 publishes (events) in flight
        c.reconnect_delay_set(MQTT_RECONNECT_MIN_S, MQTT_RECONNECT_MAX_S)
        if url.username:
            c.username_pw_set(url.username, url.password)
        if url.tls:
            c.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        self.client = c

    # -------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self.client.connect_async(self.url.host, self.url.port, keepalive=MQTT_KEEPALIVE_S)
        self.client.loop_start()

    def pause(self) -> None:
        """Stop taking messages (they stay unacked, so the broker redelivers them to the next run)."""
        self._paused.set()

    def stop(self) -> None:
        self._paused.set()
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    # -------------------------------------------------------------------------------------- traffic

    def ack(self, tokens: Iterable[object]) -> int:
        """Ack messages of the current connection; older ones will come again and be deduplicated."""
        n = 0
        for tok in tokens:
            if not isinstance(tok, tuple):
                continue
            gen, mid, qos = tok
            if gen == self._gen and qos > 0:
                self.client.ack(mid, qos)
                n += 1
        return n

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain)

    # -------------------------------------------------------------------------------------- callbacks

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {reason}"
            log.warning("%s: %s", self.url, self.last_error)
            return
        self._gen += 1
        self.connects += 1
        self.connected.set()
        log.info("connected to %s as %s (session present: %s)", self.url, self.client_id,
                 getattr(flags, "session_present", None))
        result, mid = client.subscribe([(f, 1) for f in self.filters])
        if result == mqtt.MQTT_ERR_SUCCESS and mid is not None:
            self._pending_sub.add(mid)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        failed = [r for r in reasons if getattr(r, "is_failure", False)]
        if failed:
            self.last_error = f"subscription refused: {failed}"
            log.error("%s", self.last_error)
            return
        self._pending_sub.discard(mid)
        self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()
        self.subscribed.clear()
        self.disconnects += 1
        if not self._paused.is_set():
            self.last_error = f"disconnected: {reason}"
            log.warning("%s: disconnected (%s); reconnecting", self.url, reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        token = (self._gen, msg.mid, msg.qos) if msg.qos > 0 else None
        item = MqttItem(msg.topic, bytes(msg.payload), token, self.clock())
        while not self._paused.is_set():
            try:
                self.inbox.put(item, timeout=INGEST_PUT_TIMEOUT_S)
                return
            except queue.Full:
                continue
