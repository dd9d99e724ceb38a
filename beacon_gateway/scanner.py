"""Scanners: where advertisements come from. A port (``Scanner``) with two implementations.

``BleakAdvertScanner`` listens with bleak: passive scanning where the stack supports it (BlueZ
advertisement monitors matched on iBeacon / AltBeacon / Eddystone patterns), active scanning as
the fallback, a chosen adapter, duplicates not filtered, and a watchdog that restarts a scanner
that has gone quiet (counted in ``restarts``). The bleak backend is a parameter: tests pass a
custom ``BaseBleakScanner`` subclass that emits bleak's own ``BLEDevice`` / ``AdvertisementData``.

``ReplayScanner`` plays a JSON-lines capture (``gateway decode`` input shape plus ``"t"``) against
the wall clock: each line is emitted when the clock reaches its ``t``; lines already past when it
starts are skipped (they were on the air while the gateway was down).

The device's address (the MAC) is dropped in the bleak callback: nothing past it ever sees one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from beacon_gateway.advertisements import AdvertInputError, advert_from_json

log = logging.getLogger(__name__)

WATCHDOG_CHECK_S: Final = 0.5  # how often the watchdog looks at the time of the last advert
RESTART_BACKOFF_S: Final = (1.0, 2.0, 5.0, 10.0, 30.0)  # waits after failed scanner starts, capped at the last
REPLAY_MAX_SLEEP_S: Final = 0.25  # a replay wakes at least this often to notice a stop request
REPLAY_YIELD_EVERY: Final = 64  # lines emitted back to back before the replay lets the batcher run
BLUEZ_PASSIVE_PATTERNS: Final = (  # (start position, AD type, bytes): what passive BlueZ monitors match
    (0, 0xFF, b"\x4c\x00\x02\x15"),  # iBeacon: Apple company id (little-endian) then type 02 15
    (2, 0xFF, b"\xbe\xac"),  # AltBeacon: beacon code after any company id
    (0, 0x16, b"\xaa\xfe"),  # Eddystone: 16-bit service data UUID 0xFEAA (little-endian)
)


class AdvertSink(Protocol):
    """Receives adverts from a scanner (the gateway agent)."""

    def advert(self, t: float, manufacturer_data: Mapping[int, bytes], service_data: Mapping[str, bytes],
               rssi: float) -> None: ...

    def bad_input(self, reason: str) -> None: ...


class Scanner(Protocol):
    kind: str
    restarts: int

    async def run(self, sink: AdvertSink, stop: asyncio.Event) -> None:
        """Deliver adverts until ``stop`` is set, or until the source ends (replay)."""

    def configure(self, scan_window_s: float | None) -> None:
        """Apply a new scan window (remote config) without a restart of the process."""


ScanMode = Literal["auto", "passive", "active"]


class BleakAdvertScanner:
    kind = "bleak"

    def __init__(
        self,
        *,
        adapter: str | None = None,
        mode: ScanMode = "auto",
        watchdog_s: float = 60.0,
        scan_window_s: float | None = None,
        backend: type[Any] | None = None,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.adapter = adapter
        self.mode: ScanMode = mode
        self.watchdog_s = watchdog_s
        self.scan_window_s = scan_window_s
        self.backend = backend
        self._wall = wall
        self._mono = monotonic
        self._sleep = sleep
        self.restarts = 0  # watchdog restarts of a quiet scanner
        self.start_failures = 0
        self.active_mode: str | None = None  # the mode actually in use
        self.last_error: str | None = None  # why the scanner last failed to start, for the status
        self._last_advert = 0.0

    def configure(self, scan_window_s: float | None) -> None:
        self.scan_window_s = scan_window_s

    def _make(self, mode: str, on_advert: Callable[[Any, Any], None]) -> Any:
        from bleak import BleakScanner

        bluez: dict[str, Any] = {}
        if self.adapter:
            bluez["adapter"] = self.adapter
        if mode == "passive":
            from bleak.args.bluez import OrPattern
            from bleak.assigned_numbers import AdvertisementDataType

            bluez["or_patterns"] = [OrPattern(pos, AdvertisementDataType(ad), data)
                                    for pos, ad, data in BLUEZ_PASSIVE_PATTERNS]
        else:
            bluez["filters"] = {"DuplicateData": True}  # report every advert, not only changes
        return BleakScanner(on_advert, scanning_mode=mode, bluez=bluez, backend=self.backend)  # type: ignore[arg-type]

    async def _start(self, on_advert: Callable[[Any, Any], None]) -> Any:
        """A started bleak scanner: passive first when allowed, active as the fallback."""
        modes = ["passive", "active"] if self.mode == "auto" else [self.mode]
        last: Exception | None = None
        for mode in modes:
            try:
                scanner = self._make(mode, on_advert)
                await scanner.start()
            except Exception as exc:  # bleak raises BleakError, D-Bus errors, OSError... all mean "not this way"
                last = exc
                log.warning("%s scanning unavailable: %s: %s", mode, type(exc).__name__, exc)
                continue
            self.active_mode = mode
            self.last_error = None
            log.info("scanning (%s) on %s", mode, self.adapter or "the default adapter")
            return scanner
        self.last_error = f"{type(last).__name__}: {last}" if last else "no scanning mode"
        raise RuntimeError(f"cannot start scanning ({self.last_error})")

    async def run(self, sink: AdvertSink, stop: asyncio.Event) -> None:
        wall = self._wall

        def on_advert(device: Any, adv: Any) -> None:
            # ``device`` (and with it the MAC address) goes no further than this line.
            self._last_advert = self._mono()
            sink.advert(wall(), adv.manufacturer_data, adv.service_data, adv.rssi)

        failures = 0
        while not stop.is_set():
            try:
                scanner = await self._start(on_advert)
            except RuntimeError as exc:
                self.start_failures += 1
                wait = RESTART_BACKOFF_S[min(failures, len(RESTART_BACKOFF_S) - 1)]
                failures += 1
                log.error("%s; retrying in %.0f s", exc, wait)
                await _wait(stop, wait, self._sleep)
                continue
            failures = 0
            started = self._last_advert = self._mono()
            try:
                while not stop.is_set():
                    await _wait(stop, WATCHDOG_CHECK_S, self._sleep)
                    now = self._mono()
                    if now - self._last_advert >= self.watchdog_s:
                        self.restarts += 1
                        log.warning("no advert for %.0f s: restarting the scanner (restart %d)",
                                    now - self._last_advert, self.restarts)
                        break
                    if self.scan_window_s is not None and now - started >= self.scan_window_s:
                        break  # end of one scan session: start the next at once
            finally:
                try:
                    await scanner.stop()
                except Exception as exc:  # a stuck adapter may fail to stop too; start afresh anyway
                    log.warning("stopping the scanner failed: %s", exc)


async def _wait(stop: asyncio.Event, seconds: float, sleep: Callable[[float], Awaitable[None]]) -> None:
    """Sleep ``seconds`` or until ``stop`` is set, whichever comes first."""
    if sleep is not asyncio.sleep:
        await sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


class ReplayScanner:
    kind = "replay"

    def __init__(self, path: str | Path, *, wall: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.path = Path(path)
        self._wall = wall
        self._sleep = sleep
        self.restarts = 0
        self.skipped = 0  # lines whose time had passed when the replay started
        self.emitted = 0
        self.done = False

    def configure(self, scan_window_s: float | None) -> None:
        """A replay has no radio to tune."""

    async def run(self, sink: AdvertSink, stop: asyncio.Event) -> None:
        start = self._wall()
        with self.path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if stop.is_set():
                    return
                if not line.strip():
                    continue
                try:
                    record = advert_from_json(json.loads(line))
                except (json.JSONDecodeError, RecursionError, AdvertInputError):
                    sink.bad_input("bad_replay_line")
                    continue
                if record.t is None or record.rssi is None:
                    sink.bad_input("bad_replay_line")
                    continue
                if record.t < start:
                    self.skipped += 1
                    continue
                while (ahead := record.t - self._wall()) > 0:
                    if stop.is_set():
                        return
                    await _wait(stop, min(ahead, REPLAY_MAX_SLEEP_S), self._sleep)
                sink.advert(record.t, record.manufacturer_data, record.service_data, record.rssi)
                self.emitted += 1
                if self.emitted % REPLAY_YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        self.done = True
