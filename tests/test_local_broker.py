"""The mosquitto fixture itself: a real broker delivers, and keeps a persistent session across a restart."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from simulations.local_broker import MosquittoBroker


def test_persistent_session_survives_broker_restart(mosquitto_broker: MosquittoBroker) -> None:
    got: list[bytes] = []
    done = threading.Event()

    subscribed = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sub-1", clean_session=False)
    sub.on_subscribe = lambda *args: subscribed.set()
    sub.connect(mosquitto_broker.host, mosquitto_broker.port)
    sub.loop_start()
    sub.subscribe("t/#", qos=1)
    assert subscribed.wait(5)
    sub.disconnect()
    sub.loop_stop()

    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pub-1")
    pub.connect(mosquitto_broker.host, mosquitto_broker.port)
    pub.loop_start()
    pub.publish("t/a", b"while-away", qos=1).wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()

    mosquitto_broker.restart()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        got.append(bytes(msg.payload))
        done.set()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sub-1", clean_session=False)
    sub.on_message = on_message
    sub.connect(mosquitto_broker.host, mosquitto_broker.port)
    sub.loop_start()
    try:
        assert done.wait(10), "queued QoS 1 message was not delivered after the restart"
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert got == [b"while-away"]
