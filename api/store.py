"""The storage port: what the engine writes and the API reads, independent of the database.

``SqliteStore`` (``api/sqlite_store.py``) is the embedded default; a PostgreSQL store implements the
same ``Store`` protocol. The pipeline hands one ``WindowWrite`` per commit: everything in it is
written in one transaction, together with the ingest's dedup state and the locator snapshot, so a
crash leaves the database at a window boundary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class PositionRow:
    device: str
    t: float
    x: float
    y: float
    floor: str | None
    accuracy_m: float
    zone: str | None


@dataclass(frozen=True, slots=True)
class EventRow:
    type: str
    device: str
    t: float
    zone: str | None
    floor: str | None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GatewayRow:
    id: str
    state: str  # "up" | "down" | "unknown"
    last_seen: float | None  # wall clock of the last message from it
    reason: str  # why it is in that state: "readings", "status", "offline", "silent", "never seen"
    readings: int
    health: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FlowRow:
    hour: float  # start of the hour (event time)
    src: str
    dst: str
    n: int


@dataclass(frozen=True, slots=True)
class OccupancyRow:
    minute: float
    zone: str
    devices: int


@dataclass(slots=True)
class WindowWrite:
    """Everything one pipeline commit writes, in one transaction."""

    positions: list[PositionRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    flows: list[FlowRow] = field(default_factory=list)
    occupancy: list[OccupancyRow] = field(default_factory=list)
    gateways: list[GatewayRow] = field(default_factory=list)
    dedup: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    snapshot: bytes | None = None  # locator state (JSON) after this window
    watermark: float | None = None


@dataclass(frozen=True, slots=True)
class SessionRow:
    device: str
    zone: str
    floor: str | None
    start: float
    end: float | None


class Store(Protocol):
    # --- engine state
    def get_meta(self, key: str) -> bytes | None: ...
    def set_meta(self, key: str, value: bytes) -> None: ...
    def save_venue(self, venue_id: str, name: str, text: str) -> None: ...
    def load_dedup(self) -> dict[str, tuple[int, bytes]]: ...
    def commit(self, w: WindowWrite) -> None: ...

    # --- reads for the API
    def latest_positions(self, since_t: float) -> list[PositionRow]: ...
    def open_sessions(self) -> list[SessionRow]: ...
    def sessions(self, device: str | None = None, since_t: float | None = None,
                 limit: int = 1000) -> list[SessionRow]: ...
    def gateways(self) -> list[GatewayRow]: ...
    def flows(self, since_t: float) -> list[FlowRow]: ...
    def recent_events(self, limit: int) -> list[EventRow]: ...
    def device_count(self) -> int: ...

    # --- privacy and retention
    def export_device(self, device: str) -> dict[str, Any]: ...
    def delete_device(self, device: str) -> int: ...
    def purge(self, before_t: float, positions_before_t: float) -> int: ...
    def close(self) -> None: ...


__all__ = ["EventRow", "FlowRow", "GatewayRow", "OccupancyRow", "PositionRow", "SessionRow", "Store", "WindowWrite"]


def sessions_by_zone(rows: Sequence[SessionRow]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r.zone] = out.get(r.zone, 0) + 1
    return out
