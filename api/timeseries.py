"""Time series out: positions, per-zone occupancy per minute and gateway health as InfluxDB line protocol.

Written through ``influxdb-client`` to any InfluxDB-v2-write-compatible server (InfluxDB 2,
VictoriaMetrics, ...). A writer thread with a bounded queue keeps the engine from ever waiting on
the time-series server: when the queue is full, batches are dropped and counted.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
from collections.abc import Iterable
from typing import Any, Final

from api.pipeline import Committed

log = logging.getLogger("instore.timeseries")

WRITE_TIMEOUT_MS: Final = 10_000  # one HTTP write; a slower server loses that batch (counted)
QUEUE_MAX: Final = 256  # commits waiting to be written (~2 minutes at two commits per second)
GATEWAY_EVERY_S: Final = 60.0  # gateway health points per gateway: one a minute


def _tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _ns(t: float) -> int:
    return round(t * 1e9)


def position_lines(venue: str, c: Committed) -> list[str]:
    out = []
    v = _tag(venue)
    for f in c.fixes:
        tags = f"positions,venue={v},device={_tag(f.device)},floor={_tag(f.floor or 'none')}"
        if f.zone:
            tags += f",zone={_tag(f.zone)}"
        out.append(f"{tags} x={f.x:.3f},y={f.y:.3f},accuracy_m={f.accuracy_m:.2f} {_ns(f.t)}")
    return out


def occupancy_lines(venue: str, c: Committed, floors: dict[str, str]) -> list[str]:
    v = _tag(venue)
    return [f"zone_occupancy,venue={v},zone={_tag(o.zone)},floor={_tag(floors.get(o.zone, 'none'))} "
            f"devices={o.devices}i {_ns(o.minute)}" for o in c.occupancy]


def gateway_lines(venue: str, rows: Iterable[Any], wall: float) -> list[str]:
    v = _tag(venue)
    out = []
    for g in rows:
        silence = wall - g.last_seen if g.last_seen is not None else -1.0
        out.append(f"gateway_health,venue={v},gateway={_tag(g.id)} up={1 if g.state == 'up' else 0}i,"
                   f"readings={g.readings}i,silence_s={silence:.1f} {_ns(wall)}")
    return out


class TimeSeriesWriter:
    """An outlet of the pipeline: formats lines in the engine thread, writes them in its own thread."""

    def __init__(self, url: str, token: str | None, org: str, bucket: str, venue_id: str,
                 zone_floors: dict[str, str], gateway_rows: Any = None) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.venue = venue_id
        self.org = org
        self.bucket = bucket
        self._floors = zone_floors
        self._gateway_rows = gateway_rows
        self._client = InfluxDBClient(url=url, token=token or "", org=org, timeout=WRITE_TIMEOUT_MS)
        self._write = self._client.write_api(write_options=SYNCHRONOUS)
        self._queue: queue.Queue[list[str] | None] = queue.Queue(QUEUE_MAX)
        self._last_gateways = -math.inf
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="timeseries", daemon=True)
        self._thread.start()

    def emit(self, c: Committed) -> None:
        lines = position_lines(self.venue, c) + occupancy_lines(self.venue, c, self._floors)
        if self._gateway_rows is not None and c.wall - self._last_gateways >= GATEWAY_EVERY_S:
            self._last_gateways = c.wall
            lines += gateway_lines(self.venue, self._gateway_rows(), c.wall)
        if not lines:
            return
        try:
            self._queue.put_nowait(lines)
        except queue.Full:
            self.dropped += len(lines)

    def _run(self) -> None:
        while True:
            lines = self._queue.get()
            if lines is None:
                return
            try:
                self._write.write(bucket=self.bucket, org=self.org, record=lines)
                self.written += len(lines)
            except Exception as exc:  # any transport or server error: count, log, go on
                self.failed += len(lines)
                self.last_error = f"{type(exc).__name__}: {str(exc)[:300]}"
                log.warning("time-series write failed: %s", self.last_error)

    def close(self, timeout_s: float = 10.0) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout_s)
        self._thread.join(timeout_s)
        self._client.close()  # type: ignore[no-untyped-call]

    def stats(self) -> dict[str, Any]:
        return {"written": self.written, "dropped": self.dropped, "failed": self.failed,
                "last_error": self.last_error, "queued": self._queue.qsize()}
