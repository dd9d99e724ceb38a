"""The engine's core loop body: readings in, positions, zone sessions and events out.

One owner (the engine thread) calls ``offer`` for every inbound message and ``commit`` on a
cadence. ``offer`` validates, deduplicates by ``(gateway, seq)``, pseudonymises beacon ids and
pushes the readings into the ``LiveLocator``; ``commit`` advances the locator to the event-time
watermark (in steps of at most ``STEP_MAX_S``), writes positions, events, sessions, flows,
occupancy, gateway health, the dedup state and the locator snapshot in one transaction, and
returns the ack tokens of every message offered before it. Acking only after that transaction is
what makes a crash lose nothing: unacked messages are redelivered by the broker and the restored
dedup state drops the ones already applied.

Time: readings carry their own ``t`` (event time). The watermark is the largest ``t`` seen, and
follows the wall clock when no data comes (so stays still end). Wall time is passed in, never read.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np

from api.const import (
    GATEWAY_SILENCE_S,
    IDLE_GRACE_S,
    LATENCY_SAMPLES_KEPT,
    LIVE_MAX_AGE_S,
    MAX_CLOCK_SKEW_S,
    OCCUPANCY_BUCKET_S,
    RECENT_EVENTS_KEPT,
    STEP_MAX_S,
)
from api.dedup import SeqDedup
from api.errors import IngestError
from api.messages import ReadingsIn, StatusIn
from api.pseudonyms import Pseudonymizer
from api.store import EventRow, FlowRow, GatewayRow, OccupancyRow, PositionRow, Store, WindowWrite
from positioning.live import Fix, LiveLocator, Readings, ZoneEvent
from positioning.venue import Venue

HOUR_S: Final = 3600.0
PRUNE_EVERY_COMMITS: Final = 20  # the live table drops devices gone from the map every ~10 s, not every commit


@dataclass(frozen=True, slots=True)
class Committed:
    """What one commit produced, handed to the outlets (MQTT, campaigns, live view, time series)."""

    wall: float
    watermark: float | None
    fixes: tuple[Fix, ...]
    events: tuple[dict[str, Any], ...]  # wire-format event dicts
    zone_events: tuple[ZoneEvent, ...]  # the same events as the locator gave them
    gateways: tuple[GatewayRow, ...]  # gateways whose state changed
    occupancy: tuple[OccupancyRow, ...]  # closed minutes
    acks: tuple[object, ...]
    applied: tuple[tuple[str, int, float], ...]  # (gateway, seq, received wall) of batches applied now


class Outlet(Protocol):
    def emit(self, c: Committed) -> None: ...


@dataclass(slots=True)
class _Gateway:
    id: str
    state: str = "unknown"
    reason: str = "never seen"
    last_seen: float | None = None
    readings: int = 0
    health: dict[str, Any] = field(default_factory=dict)
    offline: bool = False

    def row(self) -> GatewayRow:
        return GatewayRow(self.id, self.state, self.last_seen, self.reason, self.readings, dict(self.health))


@dataclass(slots=True)
class Counters:
    messages: int = 0
    readings_in: int = 0
    readings_applied: int = 0
    batches_applied: int = 0
    duplicates: int = 0
    stale: int = 0
    seq_resets: int = 0
    fixes: int = 0
    commits: int = 0
    scans: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # refused messages by reason
    dropped: dict[str, int] = field(default_factory=dict)  # refused readings by reason
    events: dict[str, int] = field(default_factory=dict)
    last_errors: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages, "readings_in": self.readings_in, "readings_applied": self.readings_applied,
            "batches_applied": self.batches_applied, "duplicates": self.duplicates, "stale": self.stale,
            "seq_resets": self.seq_resets, "fixes": self.fixes, "commits": self.commits, "scans": self.scans,
            "errors": dict(self.errors), "dropped_readings": dict(self.dropped), "events": dict(self.events),
            "last_errors": list(self.last_errors),
        }


class Pipeline:
    def __init__(self, venue: Venue, locator: LiveLocator, store: Store, pseudonyms: Pseudonymizer,
                 outlets: Sequence[Outlet] = (), started_wall: float = 0.0) -> None:
        self.venue = venue
        self.locator = locator
        self.store = store
        self.pseudonyms = pseudonyms
        self.outlets = list(outlets)
        self.counters = Counters()
        self.dedup = SeqDedup()
        self.dedup.restore(store.load_dedup())
        self._started = started_wall
        self._gateways = {a.id: _Gateway(a.id) for a in venue.anchors}
        for g in store.gateways():
            if g.id in self._gateways:
                self._gateways[g.id] = _Gateway(g.id, g.state, g.reason, g.last_seen, g.readings, dict(g.health))
        self._zone_floor = {z.id: z.floor for z in venue.zones}
        self._zone_kind = {z.id: z.kind for z in venue.zones}
        snap = store.get_meta("locator")
        if snap is not None:
            locator.restore(json.loads(snap))
        wm = store.get_meta("watermark")
        self.watermark: float | None = float(wm) if wm is not None else None
        self._max_t: float | None = self.watermark
        self._pending_min_t: float | None = None  # earliest reading offered since the last commit
        self._last_data_wall = started_wall
        self._acks: list[object] = []
        self._applied: list[tuple[str, int, float]] = []
        self._inside: dict[str, set[str]] = {}
        for s in store.open_sessions():
            self._inside.setdefault(s.zone, set()).add(s.device)
        self._last_zone: dict[str, tuple[str, float]] = {}  # device -> (innermost zone, t) for flows
        self._minute: float | None = None
        self._changed_gateways: set[str] = set(self._gateways)
        self.latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES_KEPT)
        self.latest: dict[str, Fix] = {}
        self.recent_events: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS_KEPT)
        self.on_applied: Callable[[Sequence[tuple[str, int, float]], float], None] | None = None

    # ------------------------------------------------------------------------------------------ input

    @property
    def uncommitted(self) -> int:
        return len(self._acks)

    def refuse(self, exc: IngestError, topic: str, token: object | None, wall: float) -> None:
        """A message the decoder refused: counted, remembered, acked (it will never get better)."""
        self.counters.messages += 1
        self.counters.errors[exc.reason] = self.counters.errors.get(exc.reason, 0) + 1
        self.counters.last_errors.append({"reason": exc.reason, "topic": topic[:200], "detail": exc.detail[:300],
                                          "wall": wall})
        if token is not None:
            self._acks.append(token)

    def offer(self, item: ReadingsIn | StatusIn, token: object | None, wall: float) -> None:
        self.counters.messages += 1
        if token is not None:
            self._acks.append(token)
        if isinstance(item, StatusIn):
            self._status(item, wall)
            return
        gw = self._gateways.get(item.gateway)
        if gw is not None:
            self._heard(gw, wall, "readings")
            gw.readings += len(item)
        if item.seq is not None:
            verdict = self.dedup.check(item.gateway, item.seq)
            if verdict == "duplicate":
                self.counters.duplicates += 1
                return
            if verdict == "stale":
                self.counters.stale += 1
                return
            if verdict == "reset":
                self.counters.seq_resets += 1
        n = len(item)
        self.counters.readings_in += n
        if n == 0:
            return
        t = item.t
        future = t > wall + MAX_CLOCK_SKEW_S
        if future.any():
            self._drop("future_t", int(future.sum()))
            keep = ~future
            item = ReadingsIn(item.gateway, item.seq, t[keep], item.beacon[keep], item.rssi[keep], item.tx[keep],
                              item.source)
            t = item.t
            if len(item) == 0:
                return
        devices = self.pseudonyms.many(item.beacon)
        anchors = np.full(len(item), item.gateway, dtype=object)
        drops = self.locator.push(Readings(t, devices, anchors, item.rssi, item.tx))
        dropped = 0
        for reason, k in drops.items():
            if k:
                self._drop(reason, int(k))
                dropped += int(k)
        self.counters.readings_applied += len(item) - dropped
        self.counters.batches_applied += 1
        if item.seq is not None:
            self._applied.append((item.gateway, item.seq, wall))
        tmin, tmax = float(t.min()), float(t.max())
        if self._pending_min_t is None or tmin < self._pending_min_t:
            self._pending_min_t = tmin
        if self._max_t is None or tmax > self._max_t:
            self._max_t = tmax
        self._last_data_wall = wall

    def offer_scan(self, app_device: str, scan: str, t: float, beacon: Sequence[str], rssi: Sequence[float],
                   tx: Sequence[float | None], wall: float) -> str:
        """A phone-mode scan: the phone is the device, the fixed beacons are the anchors."""
        device = self.pseudonyms.app(app_device)
        n = len(beacon)
        self.counters.scans += 1
        self.counters.readings_in += n
        readings = Readings(np.full(n, float(t)), np.full(n, device, dtype=object), np.asarray(beacon, dtype=object),
                            np.asarray(rssi, dtype=np.float64),
                            np.array([np.nan if v is None else v for v in tx], dtype=np.float64))
        drops = self.locator.push(readings)
        dropped = sum(int(k) for k in drops.values())
        for reason, k in drops.items():
            if k:
                self._drop(reason, int(k))
        self.counters.readings_applied += n - dropped
        if self._max_t is None or t > self._max_t:
            self._max_t = float(t)
        if self._pending_min_t is None or t < self._pending_min_t:
            self._pending_min_t = float(t)
        self._last_data_wall = wall
        return device

    def _drop(self, reason: str, k: int) -> None:
        self.counters.dropped[reason] = self.counters.dropped.get(reason, 0) + k

    def _status(self, s: StatusIn, wall: float) -> None:
        gw = self._gateways.get(s.gateway)
        if gw is None:
            return
        gw.health = dict(s.health)
        if s.online:
            gw.offline = False
            self._heard(gw, wall, "status")
        else:
            gw.offline = True
            gw.last_seen = wall
            self._set_state(gw, "down", "offline")

    def _heard(self, gw: _Gateway, wall: float, why: str) -> None:
        gw.last_seen = wall
        gw.offline = False
        if gw.state != "up":
            self._set_state(gw, "up", why)
        self._changed_gateways.add(gw.id)

    def _set_state(self, gw: _Gateway, state: str, reason: str) -> None:
        gw.state, gw.reason = state, reason
        self._changed_gateways.add(gw.id)

    # ------------------------------------------------------------------------------------------ commit

    def target_watermark(self, wall: float) -> float | None:
        if self._max_t is None:
            return None
        return self._max_t + max(0.0, wall - self._last_data_wall - IDLE_GRACE_S)

    def commit(self, wall: float) -> Committed:
        """Advance to the watermark, write one transaction, then hand the result to the outlets."""
        fixes: list[Fix] = []
        zevents: list[ZoneEvent] = []
        minutes: list[OccupancyRow] = []
        target = self.target_watermark(wall)
        if target is not None:
            steps = self._steps(target)
            self._pending_min_t = None
            for step in steps:
                res = self.locator.advance(step)
                fixes.extend(res.fixes)
                zevents.extend(res.events)
                self._update_occupancy(res.events)
                minutes.extend(self._minutes(step))
                for reason, k in res.dropped.items():
                    if k:
                        self._drop(reason, int(k))
                self.watermark = step
        for gw in self._gateways.values():
            silent_since = gw.last_seen if gw.last_seen is not None else self._started
            if gw.state != "down" and wall - silent_since > GATEWAY_SILENCE_S:
                self._set_state(gw, "down", "silent" if gw.last_seen is not None else "never seen")

        w = WindowWrite()
        w.positions = [PositionRow(f.device, f.t, f.x, f.y, f.floor, f.accuracy_m, f.zone) for f in fixes]
        events = [self._event_dict(e) for e in zevents]
        w.events = [EventRow(e.type, e.device, e.t, e.zone, e.floor, dict(e.extra)) for e in zevents]
        w.flows = self._flows(fixes)
        w.occupancy = minutes
        changed = tuple(self._gateways[g].row() for g in sorted(self._changed_gateways))
        w.gateways = list(changed)
        w.dedup = self.dedup.state(self.dedup.dirty())
        w.snapshot = json.dumps(self.locator.snapshot(), separators=(",", ":")).encode()
        w.watermark = self.watermark
        self.store.commit(w)
        self.dedup.clean()
        self._changed_gateways.clear()

        after = wall
        for _, _, received in self._applied:
            self.latencies.append(after - received)
        for f in fixes:
            self.latest[f.device] = f
            self.counters.fixes += 1
        if self.watermark is not None and self.counters.commits % PRUNE_EVERY_COMMITS == 0:
            horizon = self.watermark - LIVE_MAX_AGE_S
            self.latest = {d: f for d, f in self.latest.items() if f.t >= horizon}
        for e in events:
            self.counters.events[e["type"]] = self.counters.events.get(e["type"], 0) + 1
            self.recent_events.append(e)
        self.counters.commits += 1
        out = Committed(wall, self.watermark, tuple(fixes), tuple(events), tuple(zevents), changed, tuple(w.occupancy),
                        tuple(self._acks), tuple(self._applied))
        if self.on_applied is not None and self._applied:
            self.on_applied(self._applied, after)
        self._acks = []
        self._applied = []
        for outlet in self.outlets:
            outlet.emit(out)
        return out

    def _steps(self, target: float) -> list[float]:
        """Event times to advance to: grid points at most ``STEP_MAX_S`` apart, ending at ``target``.

        Stretches without readings are jumped over (the locator still sees the time pass), so a
        long outage does not cost a step per second.
        """
        last = self.watermark
        first = self._pending_min_t
        if last is None:
            last = first - 1e-6 if first is not None else target
        elif first is not None and first - last > STEP_MAX_S:
            last = math.floor(first / STEP_MAX_S) * STEP_MAX_S - 1e-6
        if target <= last:
            return [self.watermark if self.watermark is not None else target]  # late readings only
        steps: list[float] = []
        t = last
        while target - t > STEP_MAX_S:
            t = (math.floor(t / STEP_MAX_S) + 1) * STEP_MAX_S
            steps.append(t)
        steps.append(target)
        return steps

    def _event_dict(self, e: ZoneEvent) -> dict[str, Any]:
        d: dict[str, Any] = {"type": e.type, "device": e.device, "zone": e.zone, "floor": e.floor, "t": e.t}
        for k, v in e.extra.items():
            if k not in d:
                d[k] = v
        return d

    def _update_occupancy(self, events: Iterable[ZoneEvent]) -> None:
        for e in events:
            if e.type == "zone_enter" and e.zone is not None:
                self._inside.setdefault(e.zone, set()).add(e.device)
            elif e.type == "zone_exit" and e.zone is not None:
                self._inside.get(e.zone, set()).discard(e.device)
            elif e.type == "visit_end":
                for members in self._inside.values():
                    members.discard(e.device)

    def occupancy(self) -> dict[str, int]:
        return {z: len(m) for z, m in self._inside.items() if m}

    def _minutes(self, now: float) -> list[OccupancyRow]:
        """Occupancy of every zone for each minute that ``now`` closes (counted when the minute ends)."""
        minute = math.floor(now / OCCUPANCY_BUCKET_S) * OCCUPANCY_BUCKET_S
        if self._minute is None:
            self._minute = minute
            return []
        if minute <= self._minute:
            return []
        closed = self._minute
        self._minute = minute
        counts = self.occupancy()
        return [OccupancyRow(closed, z.id, counts.get(z.id, 0)) for z in self.venue.zones]

    def _flows(self, fixes: Iterable[Fix]) -> list[FlowRow]:
        agg: dict[tuple[float, str, str], int] = {}
        for f in fixes:
            if f.zone is None:
                continue
            prev = self._last_zone.get(f.device)
            if prev is not None and prev[0] != f.zone:
                hour = math.floor(f.t / HOUR_S) * HOUR_S
                key = (hour, prev[0], f.zone)
                agg[key] = agg.get(key, 0) + 1
            self._last_zone[f.device] = (f.zone, f.t)
        if len(self._last_zone) > 4 * max(len(self.latest), 1000):
            keep = set(self.latest)
            self._last_zone = {d: v for d, v in self._last_zone.items() if d in keep}
        return [FlowRow(h, a, b, n) for (h, a, b), n in agg.items()]

    def gateway_rows(self) -> list[GatewayRow]:
        return [g.row() for g in self._gateways.values()]

    def latency_quantiles(self) -> dict[str, float | None]:
        if not self.latencies:
            return {"p50_ms": None, "p99_ms": None}
        arr = np.fromiter(self.latencies, dtype=np.float64)
        p50, p99 = np.quantile(arr, [0.5, 0.99])
        return {"p50_ms": round(float(p50) * 1000, 1), "p99_ms": round(float(p99) * 1000, 1)}


__all__ = ["Committed", "Counters", "Outlet", "Pipeline"]

