"""Fakes of the gateway's ports: an in-memory publisher and a bleak scanner backend.

``make_fake_bleak_backend`` returns a fresh ``BaseBleakScanner`` subclass for ``BleakScanner(backend=...)``;
tests push bleak's own ``BLEDevice`` / ``AdvertisementData`` through it, no Bluetooth or D-Bus needed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError


@dataclass
class Published:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass
class FakePublisher:
    """``Publisher`` in memory. With ``auto_ack`` every QoS 1 publish is acknowledged at once while connected;
    otherwise acks wait in ``unacked`` until ``ack_all``."""

    is_connected: bool = True
    auto_ack: bool = True
    published: list[Published] = field(default_factory=list)
    unacked: list[Callable[[], None]] = field(default_factory=list)
    subscriptions: dict[str, Callable[[str, bytes], None]] = field(default_factory=dict)
    started: bool = False
    closed: bool = False

    @property
    def connected(self) -> bool:
        return self.is_connected

    def start(self) -> None:
        self.started = True

    def wait_connected(self, timeout_s: float) -> bool:
        return self.is_connected

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                on_ack: Callable[[], None] | None = None) -> None:
        self.published.append(Published(topic, payload, qos, retain))
        if on_ack is None:
            return
        if self.auto_ack and self.is_connected:
            on_ack()
        else:
            self.unacked.append(on_ack)

    def ack_all(self) -> int:
        acks, self.unacked = self.unacked, []
        for ack in acks:
            ack()
        return len(acks)

    def subscribe(self, topic: str, on_message: Callable[[str, bytes], None], qos: int = 1) -> None:
        self.subscriptions[topic] = on_message

    def deliver(self, topic: str, payload: bytes) -> None:
        self.subscriptions[topic](topic, payload)

    def close(self, timeout_s: float = 0.0) -> None:
        self.closed = True

    def on(self, suffix: str) -> list[Published]:
        return [p for p in self.published if p.topic.endswith(suffix)]


def make_fake_bleak_backend(*, fail_passive: bool = False, fail_all: bool = False) -> type[Any]:
    """A fresh bleak backend class; ``cls.instances`` lists the scanners bleak created through it."""

    class FakeBleakBackend(BaseBleakScanner):
        instances: ClassVar[list[FakeBleakBackend]] = []

        def __init__(self, detection_callback: Any, service_uuids: Any, scanning_mode: str, **kwargs: Any) -> None:
            super().__init__(detection_callback, service_uuids)
            self.scanning_mode = scanning_mode
            self.bluez: dict[str, Any] = kwargs.get("bluez", {})
            self.running = False
            self.starts = 0
            type(self).instances.append(self)

        async def start(self) -> None:
            if fail_all or (fail_passive and self.scanning_mode == "passive"):
                raise BleakError(f"{self.scanning_mode} scanning is not supported by this adapter")
            self.starts += 1
            self.running = True

        async def stop(self) -> None:
            self.running = False

        def emit(self, address: str, adv: AdvertisementData) -> None:
            assert self.running, "emit on a stopped scanner"
            self.call_detection_callbacks(BLEDevice(address, None, None), adv)

    return FakeBleakBackend


def advertisement(manufacturer_data: dict[int, bytes] | None = None, service_data: dict[str, bytes] | None = None,
                  rssi: int = -70, local_name: str | None = None) -> AdvertisementData:
    return AdvertisementData(local_name=local_name, manufacturer_data=manufacturer_data or {},
                             service_data=service_data or {}, service_uuids=list(service_data or {}), tx_power=None,
                             rssi=rssi, platform_data=())
