"""The gateway agent: scanner -> parser -> batcher -> durable outbox -> publisher, with health and remote config.

Everything stateful (parser, batcher, outbox, counters) lives on one asyncio loop. The publisher's
network thread only hands events over (``call_soon_threadsafe``): PUBACKs, connects and config
messages. Flow of one batch: ``Batcher.take`` -> ``Outbox.append`` (committed, with its ``seq``)
-> ``Publisher.publish`` (at most ``inflight`` batches outstanding) -> PUBACK -> ``Outbox.ack``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Final

from beacon_gateway.advertisements import AdvertParser, BeaconAdvert
from beacon_gateway.batching import Batcher
from beacon_gateway.config import (
    GatewayFileConfig,
    RuntimeSettings,
    effective_runtime,
    file_runtime,
    parse_config_message,
)
from beacon_gateway.errors import ConfigError, GatewayError
from beacon_gateway.health import Health
from beacon_gateway.outbox import Outbox
from beacon_gateway.publisher import Publisher
from beacon_gateway.scanner import Scanner
from beacon_gateway.wire import (
    OFFLINE_PAYLOAD,
    RSSI_MAX_DBM,
    RSSI_MIN_DBM,
    config_topic,
    encode_columns,
    readings_topic,
    status_topic,
)

log = logging.getLogger(__name__)

TICK_S: Final = 0.05  # batch deadlines are checked this often: 5 % of the default 1 s period
SHUTDOWN_GRACE_S: Final = 3.0  # on SIGTERM, time given to deliver what is in the outbox before leaving


class GatewayAgent:
    def __init__(
        self,
        cfg: GatewayFileConfig,
        scanner: Scanner,
        publisher: Publisher,
        outbox: Outbox,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        shutdown_grace_s: float = SHUTDOWN_GRACE_S,
    ) -> None:
        self.cfg = cfg
        self.scanner = scanner
        self.publisher = publisher
        self.outbox = outbox
        self._wall = wall
        self._mono = monotonic
        self._grace = shutdown_grace_s
        self.runtime: RuntimeSettings = file_runtime(cfg)
        self.parser = AdvertParser(self.runtime.allow)
        self.batcher = Batcher(self.runtime.batch_period_s, self.runtime.batch_max)
        self.health = Health(started_at=wall())
        self.readings_topic = readings_topic(cfg.venue, cfg.gateway)
        self.status_topic = status_topic(cfg.venue, cfg.gateway)
        self.config_topic = config_topic(cfg.venue, cfg.gateway)
        self._inflight: set[int] = set()
        self._submitted_upto: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._status_due = 0.0
        self.exit_reason = ""

    # ------------------------------------------------------------------ AdvertSink (called on the loop)

    def advert(self, t: float, manufacturer_data: Mapping[int, bytes], service_data: Mapping[str, bytes],
               rssi: float) -> None:
        health = self.health
        health.adverts += 1
        result = self.parser.parse(manufacturer_data, service_data)
        if type(result) is not BeaconAdvert:
            health.drops[result.reason] += 1  # type: ignore[union-attr]
            return
        if not RSSI_MIN_DBM <= rssi <= RSSI_MAX_DBM:
            health.drops["bad_rssi"] += 1
            return
        health.readings += 1
        if self.batcher.add(t, result.id, rssi, result.tx_power, self._mono()):
            self._flush()

    def bad_input(self, reason: str) -> None:
        self.health.drop(reason)

    # ------------------------------------------------------------------ batches

    def _flush(self) -> None:
        batch = self.batcher.take()
        if batch is None:
            return
        gw = self.cfg.gateway
        try:
            self.outbox.append(lambda seq: encode_columns(gw, seq, batch.t0, batch.dt, batch.ids, batch.rssi,
                                                          batch.tx))
        except sqlite3.Error as exc:  # a full or broken disk loses this batch, not the gateway
            self.health.drop("outbox_error", len(batch))
            log.error("cannot store a batch in the outbox: %s", exc)
            return
        self.health.batches += 1
        self._pump()

    def _pump(self) -> None:
        """Hand stored batches to the publisher, oldest first, keeping at most ``inflight`` unacknowledged."""
        if not self.publisher.connected:
            return
        room = self.cfg.inflight - len(self._inflight)
        if room <= 0:
            return
        for seq, payload in self.outbox.pending(self._submitted_upto, room):
            self._inflight.add(seq)
            try:
                self.publisher.publish(self.readings_topic, payload, qos=1, on_ack=partial(self._ack_threadsafe, seq))
            except GatewayError as exc:
                self._inflight.discard(seq)
                log.warning("publish of batch %d refused: %s; will retry", seq, exc)
                return
            self._submitted_upto = seq

    def _ack_threadsafe(self, seq: int) -> None:
        self._call_soon(self._ack, seq)

    def _ack(self, seq: int) -> None:
        self._inflight.discard(seq)
        if self.outbox.ack(seq):
            self.health.batches_acked += 1
        self._pump()

    def _call_soon(self, fn: Callable[..., object], *args: object) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
            loop.call_soon_threadsafe(fn, *args)

    # ------------------------------------------------------------------ status and remote config

    def status(self) -> dict[str, object]:
        return self.health.status(
            self._wall(), gateway=self.cfg.gateway, scanner=self.scanner.kind, outbox_depth=self.outbox.depth,
            outbox_bytes=self.outbox.bytes, outbox_dropped=self.outbox.dropped, connected=self.publisher.connected,
        ) | {
            "adapter_restarts": self.scanner.restarts,
            "scanner_mode": getattr(self.scanner, "active_mode", None),
            "scanner_start_failures": getattr(self.scanner, "start_failures", 0),
            "scanner_error": getattr(self.scanner, "last_error", None),
        }

    def _publish_status(self) -> None:
        self.health.adapter_restarts = self.scanner.restarts
        payload = json.dumps(self.status(), separators=(",", ":")).encode()
        try:
            self.publisher.publish(self.status_topic, payload, qos=1, retain=True)
        except GatewayError as exc:
            log.warning("status publish refused: %s", exc)
        self._status_due = self._mono() + self.cfg.status_period_s

    def _on_connected(self) -> None:
        self._publish_status()
        self._pump()

    def _config_threadsafe(self, topic: str, payload: bytes) -> None:
        self._call_soon(self.apply_config, payload)

    def apply_config(self, payload: bytes) -> bool:
        """Apply a remote config message; invalid ones are counted and leave the running settings alone."""
        if not payload.strip():
            return False  # the retained config was cleared: keep what runs
        try:
            message = parse_config_message(payload)
            runtime = effective_runtime(self.cfg, message)
        except ConfigError as exc:
            self.health.config_rejected += 1
            self.health.config_error = exc.detail
            log.warning("remote config rejected: %s", exc)
            self._publish_status()
            return False
        self._apply_runtime(runtime)
        self.health.config_version = message.version
        self.health.config_error = None
        log.info("remote config version %d applied", message.version)
        self._publish_status()
        return True

    def _apply_runtime(self, runtime: RuntimeSettings) -> None:
        if runtime.allow != self.runtime.allow:
            self.parser.set_allow(runtime.allow)
        self.batcher.configure(runtime.batch_period_s, runtime.batch_max)
        self.scanner.configure(runtime.scan_window_s)
        logging.getLogger().setLevel(runtime.log_level)
        self.runtime = runtime

    # ------------------------------------------------------------------ main loop

    async def run(self, stop: asyncio.Event) -> int:
        """Run until ``stop`` is set, or until a finite scanner (replay) is done and the outbox is empty."""
        self._loop = asyncio.get_running_loop()
        self.publisher.subscribe(self.config_topic, self._config_threadsafe)
        self.publisher.start()
        scan_task = asyncio.create_task(self.scanner.run(self, stop))
        code = 0
        was_connected = False
        try:
            while not stop.is_set():
                now = self._mono()
                if self.batcher.due(now):
                    self._flush()
                connected = self.publisher.connected
                if connected and not was_connected:
                    self._on_connected()
                was_connected = connected
                if connected:
                    self._pump()
                    if now >= self._status_due:
                        self._publish_status()
                if scan_task.done():
                    if scan_task.exception() is not None:
                        log.error("scanner failed: %s", scan_task.exception())
                        self.exit_reason = "scanner failed"
                        code = 1
                        break
                    self._flush()
                    if self.outbox.depth == 0 and not self._inflight:
                        self.exit_reason = "replay done, outbox empty"
                        break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=TICK_S)
        finally:
            await self._shutdown(stop, scan_task)
        return code

    async def _shutdown(self, stop: asyncio.Event, scan_task: asyncio.Task[None]) -> None:
        stop.set()
        if not scan_task.done():
            try:
                await asyncio.wait_for(scan_task, timeout=self._grace)
            except (TimeoutError, asyncio.CancelledError):
                scan_task.cancel()
        self._flush()
        deadline = self._mono() + self._grace
        while (self.outbox.depth or self._inflight) and self.publisher.connected and self._mono() < deadline:
            self._pump()
            await asyncio.sleep(TICK_S)
        if self.publisher.connected:
            with contextlib.suppress(GatewayError):
                self.publisher.publish(self.status_topic, OFFLINE_PAYLOAD, qos=1, retain=True)
        await asyncio.to_thread(self.publisher.close, self._grace)
        self._loop = None
        log.info("gateway stopped (%s); %d batches left in the outbox", self.exit_reason or "stop requested",
                 self.outbox.depth)
