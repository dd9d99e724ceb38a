"""The engine service: MQTT ingest -> pipeline -> storage and outlets, in one owner thread.

``Engine`` wires the parts for one venue: the SQLite store, the venue secret (generated and kept in
the database when none is configured), the pseudonymiser, the ``LiveLocator``, the MQTT ingest
and outlets (MQTT events/positions, the live view for the API, the time-series writer, the
campaign engine). ``start`` connects and starts the engine thread; ``stop`` drains, commits, acks
and disconnects. The HTTP app (``api.app``) reads ``engine.live.view`` and the store.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from api.const import (
    COMMIT_EVERY_S,
    COMMIT_IDLE_S,
    COMMIT_MAX_MESSAGES,
    COMMIT_MIN_S,
    ENGINE_CLIENT_ID_PREFIX,
    INGEST_QUEUE_MAX,
    TICK_S,
)
from api.errors import EngineError, IngestError
from api.gateway_config import load_gateway_configs, publish_gateway_configs
from api.live_view import LiveView
from api.messages import Routes, decode_message
from api.mqtt_ingest import MqttIngest, MqttItem, parse_mqtt_url
from api.mqtt_outlet import MqttOutlet
from api.pipeline import Outlet, Pipeline
from api.pseudonyms import Pseudonymizer
from api.retention import RetentionJob
from api.settings import Settings
from api.sqlite_store import SqliteStore
from positioning.live import LiveLocator, anchors_from_venue
from positioning.venue import Venue

log = logging.getLogger("instore.engine")

SECRET_BYTES: Final = 32  # generated venue secret: 256 bits
DRAIN_MAX_ITEMS: Final = 256  # messages handled per loop turn before checking whether a commit is due
STOP_TIMEOUT_S: Final = 15.0  # the engine thread gets this long to drain and commit on stop
ACK_FLUSH_S: Final = 0.3  # after the last acks, wait this long before disconnecting so they leave


@dataclass(frozen=True, slots=True)
class ScanItem:
    app_device: str
    scan: str
    t: float
    beacon: tuple[str, ...]
    rssi: tuple[float, ...]
    tx: tuple[float | None, ...]
    received: float


def resolve_secret(settings: Settings, store: SqliteStore) -> bytes:
    """The configured secret, else the one kept in the database, else a new random one (then kept)."""
    if settings.secret is not None:
        return settings.secret.get_secret_value().encode()
    kept = store.get_meta("secret")
    if kept is not None:
        return kept
    fresh = secrets.token_urlsafe(SECRET_BYTES).encode()
    store.set_meta("secret", fresh)
    return fresh


class Engine:
    def __init__(self, settings: Settings, venue: Venue, venue_text: str = "", *,
                 clock: Callable[[], float] = time.time, locator: LiveLocator | None = None,
                 outlets: Sequence[Outlet] = (), with_campaigns: bool = True) -> None:
        self.settings = settings
        self.venue = venue
        self.clock = clock
        self.store = SqliteStore(settings.db)
        if venue_text:
            self.store.save_venue(venue.id, venue.info.name, venue_text)
        self.secret = resolve_secret(settings, self.store)
        self.pseudonyms = Pseudonymizer(self.secret)
        self.locator = locator or LiveLocator(anchors_from_venue(venue), venue)
        self.inbox: queue.Queue[MqttItem | ScanItem] = queue.Queue(INGEST_QUEUE_MAX)
        self.routes = Routes(venue.id, frozenset(a.id for a in venue.anchors), settings.espresense_prefix,
                             settings.theengs_prefix)
        url = parse_mqtt_url(settings.mqtt_url)
        client_id = settings.mqtt_client_id or f"{ENGINE_CLIENT_ID_PREFIX}{venue.id}"
        self.ingest = MqttIngest(url, client_id, self.routes.subscriptions(), self.inbox, clock,
                                 settings.mqtt_shared_group)
        self.pipeline = Pipeline(venue, self.locator, self.store, self.pseudonyms, started_wall=clock())
        self.live = LiveView(venue, self.pipeline)
        self.mqtt_out = MqttOutlet(lambda t, p, q, r: self.ingest.publish(t, p, q, r), venue.id,
                                   settings.publish_positions)
        self.timeseries: Any = None
        if settings.influx_url:
            from api.timeseries import TimeSeriesWriter

            token = settings.influx_token.get_secret_value() if settings.influx_token else None
            self.timeseries = TimeSeriesWriter(settings.influx_url, token, settings.influx_org,
                                               settings.influx_bucket, venue.id, {z.id: z.floor for z in venue.zones},
                                               self.pipeline.gateway_rows)
        self.campaigns: Any = None  # campaigns.CampaignEngine; gets every commit's events and positions
        self.campaign_store: Any = None
        self.campaign_outlet: Any = None
        if with_campaigns:
            self._wire_campaigns()
        self.retention = RetentionJob(settings.retention_days, self.store, self.campaign_store)
        self.retention_failures = 0
        self.gateway_configs: dict[str, bytes] = (load_gateway_configs(settings.gateway_config, venue)
                                                  if settings.gateway_config is not None else {})
        self.gateway_configs_published = 0
        first: list[Outlet] = [self.campaign_outlet] if self.campaign_outlet is not None else []
        self.pipeline.outlets = [*first, self.live, self.mqtt_out, *outlets]
        if self.timeseries is not None:
            self.pipeline.outlets.append(self.timeseries)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards pipeline state touched by API threads (scan pseudonyms only)
        self.failure: str | None = None

    def _wire_campaigns(self) -> None:
        from api.campaign_outlet import CampaignOutlet
        from api.campaign_store import SqliteCampaignStore
        from campaigns import CampaignEngine
        from campaigns.errors import CampaignError

        self.campaign_store = SqliteCampaignStore(self.settings.db)
        try:
            self.campaigns = CampaignEngine(self.campaign_store, self.venue, self.secret, now=self.clock())
        except CampaignError as exc:
            raise EngineError(f"campaigns: {exc}") from None
        self.campaign_outlet = CampaignOutlet(self.campaigns, self.mqtt_out.offer, self.live.extra_events)

    # -------------------------------------------------------------------------------------- lifecycle

    def start(self) -> Engine:
        self.ingest.start()
        if self.gateway_configs:  # retained: queued by the client until connected, kept by the broker
            self.gateway_configs_published = publish_gateway_configs(self.ingest.publish, self.venue.id,
                                                                     self.gateway_configs)
        self._thread = threading.Thread(target=self._run, name="engine", daemon=True)
        self._thread.start()
        return self

    def wait_subscribed(self, timeout_s: float) -> bool:
        return self.ingest.subscribed.wait(timeout_s)

    @property
    def healthy(self) -> bool:
        return (self.ingest.subscribed.is_set() and self._thread is not None and self._thread.is_alive()
                and self.failure is None)

    def stop(self) -> None:
        """Stop taking messages, apply and commit what was received, ack it, disconnect."""
        self.ingest.pause()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)
        time.sleep(ACK_FLUSH_S)
        self.ingest.stop()
        if self.timeseries is not None:
            self.timeseries.close()
        self.store.close()

    # -------------------------------------------------------------------------------------- input from the API

    def submit_scan(self, app_device: str, scan: str, t: float, beacon: Sequence[str], rssi: Sequence[float],
                    tx: Sequence[float | None]) -> str:
        """Queue a phone-mode scan; returns the engine's pseudonym of that phone. Raises queue.Full."""
        item = ScanItem(app_device, scan, t, tuple(beacon), tuple(rssi), tuple(tx), self.clock())
        self.inbox.put(item, timeout=1.0)
        return self.pseudonyms.app(app_device)

    # -------------------------------------------------------------------------------------- the loop

    def _run(self) -> None:
        p = self.pipeline
        last_commit = self.clock()
        last_item = last_commit
        try:
            while True:
                stopping = self._stop.is_set()
                handled = 0
                try:
                    item = self.inbox.get(timeout=0 if stopping else TICK_S)
                    self._handle(item)
                    handled = 1
                    while handled < DRAIN_MAX_ITEMS:
                        self._handle(self.inbox.get_nowait())
                        handled += 1
                except queue.Empty:
                    pass
                now = self.clock()
                if handled:
                    last_item = now
                since = now - last_commit
                due = since >= COMMIT_EVERY_S or (p.uncommitted > 0 and since >= COMMIT_MIN_S and (
                    p.uncommitted >= COMMIT_MAX_MESSAGES or now - last_item >= COMMIT_IDLE_S))
                if stopping and self.inbox.empty():
                    self._commit(now)
                    return
                if due:
                    self._commit(now)
                    last_commit = now
                if self.retention.due(now):
                    self._purge(now)
        except Exception as exc:  # the engine must not die silently: report it on /healthz and in the log
            self.failure = f"{type(exc).__name__}: {exc}"
            log.exception("engine loop failed")
            raise

    def _handle(self, item: MqttItem | ScanItem) -> None:
        p = self.pipeline
        if isinstance(item, ScanItem):
            p.offer_scan(item.app_device, item.scan, item.t, item.beacon, item.rssi, item.tx, item.received)
            return
        try:
            decoded = decode_message(item.topic, item.payload, self.routes, item.received)
        except IngestError as exc:
            p.refuse(exc, item.topic, item.token, item.received)
            return
        p.offer(decoded, item.token, item.received)

    def _commit(self, now: float) -> None:
        c = self.pipeline.commit(now)
        self.ingest.ack(c.acks)

    def _purge(self, now: float) -> None:
        try:
            self.retention.run(now)
        except Exception:  # a locked or full database must not stop the engine: retried next period
            self.retention_failures += 1
            log.exception("retention job failed")

    # -------------------------------------------------------------------------------------- metrics

    def metrics(self) -> dict[str, Any]:
        p = self.pipeline
        out: dict[str, Any] = {
            "venue": self.venue.id,
            "healthy": self.healthy,
            "failure": self.failure,
            "mqtt": {"connected": self.ingest.connected.is_set(), "subscribed": self.ingest.subscribed.is_set(),
                     "connects": self.ingest.connects, "disconnects": self.ingest.disconnects,
                     "last_error": self.ingest.last_error, "client_id": self.ingest.client_id,
                     "filters": self.ingest.filters},
            "queue": {"size": self.inbox.qsize(), "max": INGEST_QUEUE_MAX},
            "pipeline": p.counters.as_dict(),
            "latency": p.latency_quantiles(),
            "watermark": p.watermark,
            "devices_live": len(self.live.view.positions),
            "occupancy_total": sum(self.live.view.occupancy.values()),
            "published": self.mqtt_out.published,
        }
        if self.campaign_outlet is not None:
            out["campaigns"] = {"decisions": self.campaign_outlet.decisions, "offers_sent": self.campaign_outlet.sent,
                                "failures": self.campaign_outlet.failures}
        if self.timeseries is not None:
            out["timeseries"] = self.timeseries.stats()
        out["retention"] = {**self.retention.stats(), "failures": self.retention_failures}
        out["gateway_config"] = {"gateways": len(self.gateway_configs), "published": self.gateway_configs_published}
        return out


