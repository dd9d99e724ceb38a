"""The paho publisher against a real mosquitto: QoS 1 acks, subscriptions, persistence across a broker restart."""

from __future__ import annotations

import functools
import threading
import time

import pytest

from beacon_gateway.errors import ConfigError
from beacon_gateway.publisher import MqttEndpoint, PahoPublisher, Publisher, parse_mqtt_url
from simulations.local_broker import MosquittoBroker

WAIT_S = 15.0


def test_parse_mqtt_urls() -> None:
    assert parse_mqtt_url("mqtt://127.0.0.1:1884") == MqttEndpoint("127.0.0.1", 1884, False)
    assert parse_mqtt_url("mqtt://broker.local") == MqttEndpoint("broker.local", 1883, False)
    e = parse_mqtt_url("mqtts://gw%2D01:p%40ss:word@mqtt.example.com:8884")
    assert e == MqttEndpoint("mqtt.example.com", 8884, True, "gw-01", "p@ss:word")
    assert "p@ss" not in repr(e)
    assert parse_mqtt_url("mqtts://h").port == 8883


@pytest.mark.parametrize("url", ["http://h:1883", "mqtt://:1883", "mqtt://h:99999", "127.0.0.1:1883", "mqtt://u:secret@h:x"])
def test_bad_urls_are_refused_without_echoing_passwords(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_mqtt_url(url)
    assert "secret" not in str(err.value)


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.cond = threading.Condition()

    def __call__(self, topic: str, payload: bytes) -> None:
        with self.cond:
            self.messages.append((topic, payload))
            self.cond.notify_all()

    def wait_for(self, n: int, timeout_s: float = WAIT_S) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.messages) >= n, timeout_s)


@pytest.mark.integration
def test_publish_qos1_acks_and_subscription(mosquitto_broker: MosquittoBroker) -> None:
    sub = PahoPublisher(mosquitto_broker.url, "test-sub")
    pub = PahoPublisher(mosquitto_broker.url, "test-pub", will=("t/status", b"offline"))
    assert isinstance(pub, Publisher)
    inbox = Inbox()
    sub.subscribe("t/#", inbox)
    sub.start()
    pub.start()
    try:
        assert sub.wait_connected(WAIT_S) and pub.wait_connected(WAIT_S)
        time.sleep(0.2)  # let the SUBACK land before publishing
        acked: list[int] = []
        lock = threading.Lock()

        def acker(i: int) -> None:
            with lock:
                acked.append(i)

        for i in range(300):
            pub.publish(f"t/{i % 3}", f"m{i}".encode(), on_ack=functools.partial(acker, i))
        assert inbox.wait_for(300)
        deadline = time.monotonic() + WAIT_S
        while len(acked) < 300 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sorted(acked) == list(range(300))
        assert sorted(p for _, p in inbox.messages) == sorted(f"m{i}".encode() for i in range(300))
        assert pub.outstanding == 0
    finally:
        pub.close()
        sub.close()


@pytest.mark.integration
def test_messages_published_while_broker_is_down_arrive_after_restart(mosquitto_broker: MosquittoBroker) -> None:
    sub = PahoPublisher(mosquitto_broker.url, "persist-sub", reconnect_min_s=0.2, reconnect_max_s=1)
    pub = PahoPublisher(mosquitto_broker.url, "persist-pub", reconnect_min_s=0.2, reconnect_max_s=1)
    inbox = Inbox()
    sub.subscribe("p/#", inbox)
    sub.start()
    pub.start()
    try:
        assert sub.wait_connected(WAIT_S) and pub.wait_connected(WAIT_S)
        time.sleep(0.2)
        pub.publish("p/a", b"before")
        assert inbox.wait_for(1)
        mosquitto_broker.stop()
        deadline = time.monotonic() + WAIT_S
        while pub.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not pub.connected
        for i in range(20):
            pub.publish("p/a", f"during{i}".encode())
        mosquitto_broker.start()
        expected = [b"before"] + [f"during{i}".encode() for i in range(20)]
        deadline = time.monotonic() + WAIT_S
        while b"during19" not in [p for _, p in inbox.messages] and time.monotonic() < deadline:
            time.sleep(0.02)
        got = [p for _, p in inbox.messages]
        # QoS 1 is at-least-once: a message whose ack the stopping broker never saw comes again. Nothing
        # is lost, the order holds, and a repeat is only ever a redelivery.
        assert list(dict.fromkeys(got)) == expected
        assert max(got.count(m) for m in expected) <= 2
        assert pub.disconnects >= 1 and pub.connects >= 2
    finally:
        pub.close()
        sub.close()
