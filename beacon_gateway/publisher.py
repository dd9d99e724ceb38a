"""The MQTT publisher port and its paho-mqtt (>= 2.0) implementation.

``Publisher`` is the small interface the gateway agent and the simulator's synthetic gateways
publish through. ``PahoPublisher`` connects to ``mqtt://[user:pass@]host[:port]`` or
``mqtts://...`` (TLS), keeps a persistent session (fixed client id, clean session off), publishes
QoS 1, sets a retained last will (``offline`` on the status topic), re-subscribes after every
reconnect and reconnects on its own with a bounded exponential backoff.

Threading: paho runs its network loop in a background thread. ``on_ack`` and subscription
callbacks are called on that thread; callers that keep state elsewhere (an asyncio loop, a
SQLite connection) hand the call over themselves (``loop.call_soon_threadsafe``).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from beacon_gateway.errors import ConfigError

log = logging.getLogger(__name__)

MQTT_PORT: Final = 1883
MQTTS_PORT: Final = 8883
KEEPALIVE_S: Final = 30  # broker notices a dead gateway (and sends the LWT) within 1.5x this
RECONNECT_MIN_S: Final = 1  # first retry after a lost connection
RECONNECT_MAX_S: Final = 30  # backoff cap: a returning broker is found within half a minute
MAX_QUEUED_MESSAGES: Final = 10_000  # paho's in-memory queue bound; the durable outbox sits in front of it
CLOSE_TIMEOUT_S: Final = 5.0  # a clean shutdown waits this long for outstanding PUBACKs

AckCallback = Callable[[], None]
MessageCallback = Callable[[str, bytes], None]


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """A broker address parsed from ``mqtt(s)://[user:pass@]host[:port]``."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # never print the password
        user = f"{self.username}@" if self.username else ""
        return f"MqttEndpoint({'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port})"


def parse_mqtt_url(url: str) -> MqttEndpoint:
    """``mqtt://[user:pass@]host[:port]`` or ``mqtts://...``; ``ConfigError`` naming the problem."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError("bad_url", f"MQTT URL {_redact(url)!r}: {exc}") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ConfigError("bad_url", f"MQTT URL {_redact(url)!r}: scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise ConfigError("bad_url", f"MQTT URL {_redact(url)!r}: no host")
    tls = parts.scheme == "mqtts"
    return MqttEndpoint(
        host=parts.hostname,
        port=port or (MQTTS_PORT if tls else MQTT_PORT),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


@runtime_checkable
class Publisher(Protocol):
    """Where readings, status and config travel. Implementations: ``PahoPublisher``; fakes in tests."""

    @property
    def connected(self) -> bool: ...

    def start(self) -> None:
        """Begin connecting in the background; returns at once."""

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until connected (True) or the timeout passes (False)."""

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                on_ack: AckCallback | None = None) -> None:
        """Queue a message; ``on_ack`` runs once the broker has it (PUBACK for QoS 1)."""

    def subscribe(self, topic: str, on_message: MessageCallback, qos: int = 1) -> None:
        """Subscribe now and after every reconnect."""

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Wait up to ``timeout_s`` for outstanding acks, then disconnect cleanly (no last will)."""


class PahoPublisher:
    """``Publisher`` over paho-mqtt 2.x: QoS 1, persistent session, LWT, TLS, bounded reconnect backoff."""

    def __init__(
        self,
        url: str,
        client_id: str,
        *,
        will: tuple[str, bytes] | None = None,
        clean_session: bool = False,
        keepalive_s: int = KEEPALIVE_S,
        reconnect_min_s: float = RECONNECT_MIN_S,
        reconnect_max_s: float = RECONNECT_MAX_S,
        tls_ca: str | None = None,
        tls_insecure: bool = False,
        on_connect: Callable[[bool], None] | None = None,
        on_disconnect: Callable[[], None] | None = None,
    ) -> None:
        self.endpoint = parse_mqtt_url(url)
        self.client_id = client_id
        self._keepalive = keepalive_s
        self._user_on_connect = on_connect
        self._user_on_disconnect = on_disconnect
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._pending: dict[int, AckCallback | None] = {}
        self._early_acks: set[int] = set()
        self._subscriptions: dict[str, tuple[int, MessageCallback]] = {}
        self.connects = 0
        self.disconnects = 0
        self._started = False

        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
        )
        client.max_queued_messages_set(MAX_QUEUED_MESSAGES)
        client.max_inflight_messages_set(0)  # flow control is the caller's: the outbox feeds a bounded window
        client.reconnect_delay_set(min_delay=reconnect_min_s, max_delay=reconnect_max_s)  # type: ignore[arg-type]
        if self.endpoint.username is not None:
            client.username_pw_set(self.endpoint.username, self.endpoint.password)
        if self.endpoint.tls:
            context = ssl.create_default_context(cafile=tls_ca)
            if tls_insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            client.tls_set_context(context)
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._client = client

    # ------------------------------------------------------------------ Publisher

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def outstanding(self) -> int:
        """Messages handed to paho and not yet acknowledged."""
        with self._lock:
            return len(self._pending)

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        try:
            self._client.connect_async(self.endpoint.host, self.endpoint.port, keepalive=self._keepalive)
        except (OSError, ValueError) as exc:
            raise ConfigError("bad_url", f"cannot use broker {self.endpoint!r}: {exc}") from None
        self._client.loop_start()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                on_ack: AckCallback | None = None) -> None:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise ConfigError("publish_failed", f"paho refused to queue a message: {mqtt.error_string(info.rc)}")
        if qos == 0:
            # QoS 0 has no PUBACK: it counts as delivered once written (or dropped when offline).
            if on_ack is not None and info.rc == mqtt.MQTT_ERR_SUCCESS:
                on_ack()
            return
        fire = False
        with self._lock:
            if info.mid in self._early_acks:
                self._early_acks.discard(info.mid)
                fire = True
            else:
                self._pending[info.mid] = on_ack
        if fire and on_ack is not None:
            on_ack()

    def subscribe(self, topic: str, on_message: MessageCallback, qos: int = 1) -> None:
        with self._lock:
            self._subscriptions[topic] = (qos, on_message)
        if self.connected:
            self._client.subscribe(topic, qos=qos)

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        if not self._started:
            return
        deadline = time.monotonic() + timeout_s
        while self.connected and time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    break
            time.sleep(0.02)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        self._started = False

    # ------------------------------------------------------------------ paho callbacks (network thread)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.warning("broker %r refused the connection: %s", self.endpoint, reason_code)
            return
        self.connects += 1
        self._connected.set()
        with self._lock:
            subs = list(self._subscriptions.items())
        for topic, (qos, _) in subs:
            client.subscribe(topic, qos=qos)
        log.info("connected to %r (session present: %s)", self.endpoint, flags.session_present)
        if self._user_on_connect is not None:
            self._user_on_connect(bool(flags.session_present))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        if self._connected.is_set():
            self.disconnects += 1
            log.warning("disconnected from %r: %s", self.endpoint, reason_code)
        self._connected.clear()
        if self._user_on_disconnect is not None:
            self._user_on_disconnect()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        with self._lock:
            if mid in self._pending:
                callback = self._pending.pop(mid)
            else:
                self._early_acks.add(mid)  # acked before publish() returned and registered it
                return
        if callback is not None:
            callback()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            subs = list(self._subscriptions.items())
        for topic, (_, callback) in subs:
            if mqtt.topic_matches_sub(topic, message.topic):
                try:
                    callback(message.topic, bytes(message.payload))
                except Exception:  # a subscriber's bug must not kill the network thread
                    log.exception("subscriber of %s failed", topic)
