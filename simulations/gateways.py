"""Synthetic gateways: a simulated mall published live, in real time or accelerated.

``LiveRun`` advances a ``World`` one simulated second per ``1 / speed`` wall seconds and hands each
tick to sinks, which speak the formats real hardware speaks:

- ``WireGateways``: our wire protocol (ARCHITECTURE.md): per gateway, QoS 1 batches on
  ``instore/v1/<venue>/gw/<gateway>/readings`` with ``seq`` +1 per batch, flushed on the gateway's
  own period and arriving with latency (late batches overtake nothing: they arrive late); a
  retained ``.../status`` (online JSON; ``offline`` during outages and as the connection's last
  will); a few batches re-sent with the same ``seq`` (QoS 1 retries).
- ``EspresenseNodes``: ESPresense ``espresense/devices/<iBeacon:uuid-major-minor>/<room>`` JSON,
  at most one message per device and room per second, room = anchor id.
- ``TheengsNodes``: Theengs Gateway / OpenMQTTGateway ``home/<gateway>/BTtoMQTT/<MAC>`` JSON with
  ``uuid`` (no dashes), ``major``, ``minor``, ``rssi``, ``txpower``.
- ``ScanPoster``: phone mode, ``POST /v1/scans`` to the engine's API, one body per app scan.

Publishing goes through ``beacon_gateway.publisher`` (``Publisher`` protocol, ``PahoPublisher``);
tests pass fakes. ``run_live`` is ``instore simulate --mqtt URL``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from beacon_gateway.publisher import Publisher
from beacon_gateway.wire import encode_columns, readings_topic, status_topic
from positioning.venue import Venue
from simulations.errors import SimulationError
from simulations.radio import ReadingChunk
from simulations.scenario import Tick, World

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 10.0  # a broker that does not answer in this long is reported, not waited for
CLOSE_TIMEOUT_S: Final = 5.0  # on stop, outstanding QoS 1 messages get this long to be acknowledged
MAX_CATCH_UP_TICKS: Final = 20  # a slow machine skips simulated time rather than falling ever further behind
NODE_REPORT_PERIOD_S: Final = 1.0  # ESPresense / Theengs nodes report a device at most this often per room
HTTP_TIMEOUT_S: Final = 5.0
SCAN_QUEUE_MAX: Final = 10_000  # phone scans waiting to be posted; older ones are dropped beyond this
ESPRESENSE_PREFIX: Final = "espresense"
THEENGS_PREFIX: Final = "home"
PublisherFactory = Callable[[str, "tuple[str, bytes] | None"], Publisher]  # (client id, last will) -> publisher


class Sink(Protocol):
    def open(self) -> None: ...

    def emit(self, tick: Tick, world: World, now: float) -> None:
        """Send what ``tick`` produced that has arrived by simulated time ``now``."""

    def close(self) -> None: ...


def paho_factory(url: str) -> PublisherFactory:
    from beacon_gateway.publisher import PahoPublisher

    def make(client_id: str, will: tuple[str, bytes] | None) -> Publisher:
        return PahoPublisher(url, client_id, will=will, clean_session=True)

    return make


def _split(keys: npt.NDArray[np.int64]) -> list[tuple[int, int]]:
    """Runs of equal values in a sorted key array, as (start, end) index pairs."""
    if keys.size == 0:
        return []
    cut = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    starts = np.concatenate([[0], cut])
    ends = np.concatenate([cut, [keys.size]])
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


@dataclass
class _Pending:
    """Readings produced but not yet arrived (batches in flight)."""

    chunks: list[ReadingChunk] = field(default_factory=list)

    def take_due(self, new: ReadingChunk, now: float) -> ReadingChunk:
        allr = ReadingChunk.concat([*self.chunks, new])
        due = allr.arrival <= now
        self.chunks = [allr.take(~due)] if (~due).any() else []
        return allr.take(due)


class WireGateways:
    """Every venue gateway publishing our wire protocol, one connection per gateway (its own last will)
    or, with ``shared_connection``, one connection for all (lighter on small brokers)."""

    def __init__(self, venue: Venue, factory: PublisherFactory, *, shared_connection: bool = False,
                 client_prefix: str = "instore-sim", duplicate_rate: float = 0.002, seed: int = 0) -> None:
        self.venue = venue
        self.factory = factory
        self.shared = shared_connection
        self.prefix = client_prefix
        self.duplicate_rate = duplicate_rate
        self.rng = np.random.default_rng([seed, 0x6A7E])
        self.ids = tuple(a.id for a in venue.anchors)
        self.seq = [0] * len(self.ids)
        self.publishers: list[Publisher] = []
        self.pending = _Pending()
        self.down: set[int] = set()
        self.batches = 0
        self.readings = 0
        self.duplicates = 0

    def _pub(self, j: int) -> Publisher:
        return self.publishers[0 if self.shared else j]

    def open(self) -> None:
        if self.shared:
            self.publishers = [self.factory(f"{self.prefix}-{self.venue.id}", None)]
        else:
            self.publishers = [self.factory(f"{self.prefix}-{self.venue.id}-{gw}",
                                            (status_topic(self.venue.id, gw), b"offline")) for gw in self.ids]
        for p in self.publishers:
            p.start()
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        for p in self.publishers:
            if not p.wait_connected(max(0.0, deadline - time.monotonic())):
                raise SimulationError(f"could not connect to the MQTT broker within {CONNECT_TIMEOUT_S:g} s")
        for j in range(len(self.ids)):
            self._status(j, True)

    def _status(self, j: int, online: bool) -> None:
        gw = self.ids[j]
        payload = json.dumps({"state": "online", "gateway": gw, "kind": "synthetic", "seq": self.seq[j]},
                             separators=(",", ":")).encode() if online else b"offline"
        self._pub(j).publish(status_topic(self.venue.id, gw), payload, qos=1, retain=True)

    def emit(self, tick: Tick, world: World, now: float) -> None:
        # Outages: an anchor that produced nothing because it is down shows offline, as its last will would.
        up = ~((world.radio._cur_start < tick.t1) & (world.radio._cur_end > tick.t0))
        for j in range(len(self.ids)):
            if not up[j] and j not in self.down:
                self.down.add(j)
                self._status(j, False)
            elif up[j] and j in self.down:
                self.down.discard(j)
                self._status(j, True)
        due = self.pending.take_due(tick.readings, now)
        if not len(due):
            return
        order = np.lexsort((due.t, due.batch, due.anchor))
        due = due.take(order)
        key = due.anchor * (1 << 40) + due.batch
        names = world.device_ids
        for lo, hi in _split(key):
            j = int(due.anchor[lo])
            self.seq[j] += 1
            t = due.t[lo:hi]
            t0 = float(t[0])
            payload = encode_columns(self.ids[j], self.seq[j], round(t0, 3), np.round(t - t0, 3).tolist(),
                                     [names[d] for d in due.device[lo:hi].tolist()],
                                     due.rssi[lo:hi].astype(float).tolist(), due.tx_power[lo:hi].astype(float).tolist())
            topic = readings_topic(self.venue.id, self.ids[j])
            self._pub(j).publish(topic, payload, qos=1)
            self.batches += 1
            self.readings += hi - lo
            if self.duplicate_rate > 0 and self.rng.random() < self.duplicate_rate:
                self._pub(j).publish(topic, payload, qos=1)  # a retry: same seq, the engine drops it
                self.duplicates += 1

    def close(self) -> None:
        for p in self.publishers:
            try:
                p.close(CLOSE_TIMEOUT_S)
            except Exception:
                log.exception("closing a synthetic gateway's connection")


def fake_mac(device_id: str) -> str:
    """A stable random-looking MAC per device (nodes send one; the engine must never keep it)."""
    h = hashlib.blake2b(device_id.encode(), digest_size=6).digest()
    return ":".join(f"{b:02X}" for b in bytes([h[0] | 0x02, *h[1:]]))  # locally administered, like phones


def _ibeacon_parts(device_id: str) -> tuple[str, int, int] | None:
    if not device_id.startswith("ibeacon:"):
        return None
    body = device_id[len("ibeacon:"):]
    uuid, major, minor = body[:36], body[37:].split("-")[0], body[37:].split("-")[1]
    return uuid, int(major), int(minor)


def _node_distance(tx: float, rssi: float) -> float:
    """The distance these firmwares report: their own estimate with path-loss exponent 2."""
    return round(10 ** ((tx - rssi) / 20.0), 2)


class _NodeSink:
    """Nodes that report each device at most once per period per room: the latest RSSI of the period."""

    def __init__(self, venue: Venue, factory: PublisherFactory, client_id: str) -> None:
        self.venue = venue
        self.factory = factory
        self.client_id = client_id
        self.ids = tuple(a.id for a in venue.anchors)
        self.publisher: Publisher | None = None
        self.pending = _Pending()
        self.last: dict[tuple[int, int], float] = {}
        self.messages = 0

    def open(self) -> None:
        self.publisher = self.factory(self.client_id, None)
        self.publisher.start()
        if not self.publisher.wait_connected(CONNECT_TIMEOUT_S):
            raise SimulationError(f"could not connect to the MQTT broker within {CONNECT_TIMEOUT_S:g} s")

    def emit(self, tick: Tick, world: World, now: float) -> None:
        due = self.pending.take_due(tick.readings, now)
        if not len(due) or self.publisher is None:
            return
        order = np.lexsort((due.t, due.device, due.anchor))
        due = due.take(order)
        key = due.anchor * (1 << 32) + due.device
        for _lo, hi in _split(key):
            k = hi - 1  # the latest reading of this device at this node
            j, d, t = int(due.anchor[k]), int(due.device[k]), float(due.t[k])
            if t - self.last.get((j, d), -np.inf) < NODE_REPORT_PERIOD_S:
                continue
            self.last[(j, d)] = t
            device = world.device_ids[d]
            parts = _ibeacon_parts(device)
            if parts is None:  # these nodes report iBeacons only
                continue
            rssi, tx = float(due.rssi[k]), float(due.tx_power[k])
            topic, body = self.message(device, parts, self.ids[j], rssi, tx, _node_distance(tx, rssi))
            self.publisher.publish(topic, json.dumps(body, separators=(",", ":")).encode(), qos=0)
            self.messages += 1

    def message(self, device: str, ibeacon: tuple[str, int, int], anchor: str, rssi: float, tx: float,
                distance: float) -> tuple[str, dict[str, object]]:
        """Topic and JSON body of one report."""
        raise NotImplementedError

    def close(self) -> None:
        if self.publisher is not None:
            self.publisher.close(CLOSE_TIMEOUT_S)


class EspresenseNodes(_NodeSink):
    """ESPresense rooms (room = anchor id): ``espresense/devices/<id>/<room>``."""

    def __init__(self, venue: Venue, factory: PublisherFactory, prefix: str = ESPRESENSE_PREFIX) -> None:
        super().__init__(venue, factory, f"instore-sim-espresense-{venue.id}")
        self.prefix = prefix

    def message(self, device: str, ibeacon: tuple[str, int, int], anchor: str, rssi: float, tx: float,
                distance: float) -> tuple[str, dict[str, object]]:
        uuid, major, minor = ibeacon
        dev_id = f"iBeacon:{uuid}-{major}-{minor}"
        body: dict[str, object] = {"id": dev_id, "idType": 1, "rssi@1m": int(tx), "rssi": int(rssi), "raw": distance,
                "distance": distance, "speed": 0.0, "mac": fake_mac(device).replace(":", "").lower(),
                "interval": 1000}
        return f"{self.prefix}/devices/{dev_id}/{anchor}", body


class TheengsNodes(_NodeSink):
    """Theengs Gateway / OpenMQTTGateway (gateway name = anchor id): ``home/<gateway>/BTtoMQTT/<MAC>``."""

    def __init__(self, venue: Venue, factory: PublisherFactory, prefix: str = THEENGS_PREFIX) -> None:
        super().__init__(venue, factory, f"instore-sim-theengs-{venue.id}")
        self.prefix = prefix

    def message(self, device: str, ibeacon: tuple[str, int, int], anchor: str, rssi: float, tx: float,
                distance: float) -> tuple[str, dict[str, object]]:
        uuid, major, minor = ibeacon
        mac = fake_mac(device)
        body: dict[str, object] = {"id": mac, "mac_type": 1, "rssi": int(rssi), "brand": "GENERIC", "model": "iBeacon",
                "model_id": "IBEACON", "mfid": "4c00", "uuid": uuid.replace("-", ""), "major": major, "minor": minor,
                "txpower": int(tx), "distance": distance}
        return f"{self.prefix}/{anchor}/BTtoMQTT/{mac.replace(':', '')}", body


class ScanPoster:
    """Phone mode: every app scan posted to ``<api>/v1/scans`` from a worker thread (bounded queue)."""

    def __init__(self, api_url: str, client: Any = None) -> None:
        self.url = api_url.rstrip("/") + "/v1/scans"
        self._client = client
        self._queue: list[dict[str, Any]] = []
        self._lock = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="scan-poster", daemon=True)
        self.posted = 0
        self.failed = 0
        self.dropped = 0

    def open(self) -> None:
        if self._client is None:
            import httpx

            self._client = httpx.Client(timeout=HTTP_TIMEOUT_S)
        self._thread.start()

    def emit(self, tick: Tick, world: World, now: float) -> None:
        scans = tick.scans
        if scans is None or not len(scans):
            return
        order = np.lexsort((scans.anchor, scans.scan, scans.device))
        s = scans.take(order)
        key = s.device * (1 << 32) + s.scan
        bodies = []
        for lo, hi in _split(key):
            bodies.append({"device": world.app_id(int(s.device[lo])), "scan": int(s.scan[lo]),
                           "t": round(float(s.t[lo]), 3),
                           "readings": [{"beacon": world.scan_anchor_ids[int(b)], "rssi": int(r), "tx_power": int(tx)}
                                        for b, r, tx in zip(s.anchor[lo:hi].tolist(), s.rssi[lo:hi].tolist(),
                                                            s.tx_power[lo:hi].tolist(), strict=True)]})
        with self._lock:
            self._queue.extend(bodies)
            over = len(self._queue) - SCAN_QUEUE_MAX
            if over > 0:
                del self._queue[:over]
                self.dropped += over
            self._lock.notify()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stop:
                    self._lock.wait(0.5)
                if self._stop and not self._queue:
                    return
                body = self._queue.pop(0)
            try:
                r = self._client.post(self.url, json=body)
                if r.status_code >= 300:
                    self.failed += 1
                else:
                    self.posted += 1
            except Exception:
                self.failed += 1

    def close(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify()
        if self._thread.is_alive():
            self._thread.join(CLOSE_TIMEOUT_S)
        if self._client is not None:
            self._client.close()


class LiveRun:
    """Drives a World against the wall clock: simulated time = start + speed x elapsed wall time."""

    def __init__(self, world: World, sinks: Sequence[Sink], speed: float = 1.0,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        if not speed > 0:
            raise SimulationError(f"speed must be > 0, got {speed:g}")
        self.world = world
        self.sinks = list(sinks)
        self.speed = speed
        self.clock = clock
        self.sleep = sleep
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0
        self.skipped = 0
        self.error: BaseException | None = None

    def run(self, duration_s: float | None = None, opened: bool = False) -> None:
        """Run until ``stop()`` or until ``duration_s`` simulated seconds have been sent."""
        if not opened:
            for s in self.sinks:
                s.open()
        try:
            wall0, sim0 = self.clock(), self.world.t
            end = None if duration_s is None else sim0 + duration_s
            while not self._stop.is_set():
                target = sim0 + (self.clock() - wall0) * self.speed
                steps = 0
                while self.world.t + self.world.tick_s <= target + 1e-9 and steps < MAX_CATCH_UP_TICKS:
                    if end is not None and self.world.t >= end - 1e-9:
                        break
                    tick = self.world.advance()
                    for s in self.sinks:
                        s.emit(tick, self.world, tick.t1)
                    self.ticks += 1
                    steps += 1
                if steps == MAX_CATCH_UP_TICKS and self.world.t + self.world.tick_s <= target:
                    # Too slow to keep up: jump the schedule instead of queueing ever more work.
                    self.skipped += 1
                    wall0, sim0 = self.clock(), self.world.t
                if end is not None and self.world.t >= end - 1e-9:
                    break
                next_due = (self.world.t + self.world.tick_s - sim0) / self.speed + wall0
                self.sleep(max(0.0, min(0.5, next_due - self.clock())))
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            for s in self.sinks:
                s.close()

    def start(self, duration_s: float | None = None, opened: bool = False) -> LiveRun:
        """Run in a background thread (``opened``: the sinks are already open)."""
        def target() -> None:
            try:
                self.run(duration_s, opened)
            except BaseException:
                log.exception("live simulation stopped")

        self._thread = threading.Thread(target=target, name="live-simulation", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


FORMATS: Final = ("wire", "espresense", "theengs")


def run_live(venue: Venue, args: argparse.Namespace) -> int:
    """``instore simulate --mqtt URL``: publish the simulated mall live until done or interrupted."""
    fmt = getattr(args, "format", None) or "wire"
    if fmt not in FORMATS:
        raise SimulationError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    from beacon_gateway.errors import ConfigError
    from beacon_gateway.publisher import parse_mqtt_url

    try:
        parse_mqtt_url(args.mqtt)
    except ConfigError as exc:
        raise SimulationError(str(exc)) from None
    scans_to = getattr(args, "scans_to", None)
    # Each synthetic gateway's clean disconnect at the end is expected: keep the publisher's warnings quiet.
    logging.getLogger("beacon_gateway.publisher").setLevel(logging.ERROR)
    world = World(venue, args.shoppers, duration_s=args.duration, seed=args.seed, start_t=time.time(),
                  phone_scans=bool(scans_to))
    factory = paho_factory(args.mqtt)
    sinks: list[Sink] = []
    if fmt == "wire":
        sinks.append(WireGateways(venue, factory, shared_connection=bool(getattr(args, "shared_connection", False)),
                                  seed=args.seed))
    elif fmt == "espresense":
        sinks.append(EspresenseNodes(venue, factory))
    else:
        sinks.append(TheengsNodes(venue, factory))
    if scans_to:
        sinks.append(ScanPoster(scans_to))
    run = LiveRun(world, sinks, speed=args.speed)
    print(f"simulating {venue.id} live: {args.shoppers} shoppers, {args.duration:g} s at x{args.speed:g}, "
          f"{len(venue.anchors)} gateways publishing {fmt} to {args.mqtt}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        run.run(args.duration)
    wire = next((s for s in sinks if isinstance(s, WireGateways)), None)
    if wire is not None:
        print(f"published {wire.batches} batches ({wire.readings} readings, {wire.duplicates} re-sent)")
    nodes = next((s for s in sinks if isinstance(s, _NodeSink)), None)
    if nodes is not None:
        print(f"published {nodes.messages} node messages")
    return 0
