"""In-memory ``api.store.Store`` for unit tests of the pipeline."""

from __future__ import annotations

from typing import Any

from api.store import EventRow, FlowRow, GatewayRow, PositionRow, SessionRow, WindowWrite


class FakeStore:
    def __init__(self) -> None:
        self.meta: dict[str, bytes] = {}
        self.positions: list[PositionRow] = []
        self.events: list[EventRow] = []
        self.sessions_: list[list[Any]] = []  # [device, zone, floor, start, end]
        self.flows_: dict[tuple[float, str, str], int] = {}
        self.occupancy: list[Any] = []
        self.gateways_: dict[str, GatewayRow] = {}
        self.dedup: dict[str, tuple[int, bytes]] = {}
        self.commits = 0

    def get_meta(self, key: str) -> bytes | None:
        return self.meta.get(key)

    def set_meta(self, key: str, value: bytes) -> None:
        self.meta[key] = value

    def save_venue(self, venue_id: str, name: str, text: str) -> None:
        self.meta[f"venue:{venue_id}"] = text.encode()

    def load_dedup(self) -> dict[str, tuple[int, bytes]]:
        return dict(self.dedup)

    def commit(self, w: WindowWrite) -> None:
        self.commits += 1
        self.positions += w.positions
        for e in w.events:
            self.events.append(e)
            if e.type == "zone_enter" and e.zone and not any(
                    s[0] == e.device and s[1] == e.zone and s[4] is None for s in self.sessions_):
                self.sessions_.append([e.device, e.zone, e.floor, e.t, None])
            elif e.type == "zone_exit":
                for s in self.sessions_:
                    if s[0] == e.device and s[1] == e.zone and s[4] is None:
                        s[4] = e.t
        for f in w.flows:
            self.flows_[(f.hour, f.src, f.dst)] = self.flows_.get((f.hour, f.src, f.dst), 0) + f.n
        self.occupancy += w.occupancy
        for g in w.gateways:
            self.gateways_[g.id] = g
        self.dedup.update(w.dedup)
        if w.snapshot is not None:
            self.meta["locator"] = w.snapshot
        if w.watermark is not None:
            self.meta["watermark"] = repr(w.watermark).encode()

    def latest_positions(self, since_t: float) -> list[PositionRow]:
        latest: dict[str, PositionRow] = {}
        for p in self.positions:
            if p.t >= since_t and (p.device not in latest or p.t >= latest[p.device].t):
                latest[p.device] = p
        return sorted(latest.values(), key=lambda p: p.device)

    def open_sessions(self) -> list[SessionRow]:
        return [SessionRow(*s) for s in self.sessions_ if s[4] is None]

    def sessions(self, device: str | None = None, since_t: float | None = None, limit: int = 1000) -> list[SessionRow]:
        return [SessionRow(*s) for s in self.sessions_ if device is None or s[0] == device][:limit]

    def gateways(self) -> list[GatewayRow]:
        return list(self.gateways_.values())

    def flows(self, since_t: float) -> list[FlowRow]:
        return [FlowRow(h, a, b, n) for (h, a, b), n in self.flows_.items() if h >= since_t]

    def recent_events(self, limit: int) -> list[EventRow]:
        return self.events[-limit:]

    def device_count(self) -> int:
        return len({p.device for p in self.positions})

    def export_device(self, device: str) -> dict[str, Any]:
        return {"device": device, "positions": [p for p in self.positions if p.device == device]}

    def delete_device(self, device: str) -> int:
        before = len(self.positions) + len(self.events)
        self.positions = [p for p in self.positions if p.device != device]
        self.events = [e for e in self.events if e.device != device]
        return before - len(self.positions) - len(self.events)

    def purge(self, before_t: float, positions_before_t: float) -> int:
        before = len(self.positions)
        self.positions = [p for p in self.positions if p.t >= positions_before_t]
        return before - len(self.positions)

    def close(self) -> None:
        pass
