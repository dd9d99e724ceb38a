"""The embedded store: one SQLite file in WAL mode (one writer, the pipeline; readers, the API)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Final

from api.errors import StoreError
from api.store import EventRow, FlowRow, GatewayRow, PositionRow, SessionRow, WindowWrite

SCHEMA_VERSION: Final = 1
BUSY_TIMEOUT_MS: Final = 10_000  # readers and the writer wait this long for each other before failing

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS venues (id TEXT PRIMARY KEY, name TEXT NOT NULL, yaml TEXT NOT NULL, loaded_at REAL);
CREATE TABLE IF NOT EXISTS devices (id TEXT PRIMARY KEY, first_seen REAL NOT NULL, last_seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS positions (device TEXT NOT NULL, t REAL NOT NULL, x REAL NOT NULL, y REAL NOT NULL,
    floor TEXT, accuracy_m REAL, zone TEXT);
CREATE INDEX IF NOT EXISTS positions_device_t ON positions (device, t);
CREATE INDEX IF NOT EXISTS positions_t ON positions (t);
CREATE TABLE IF NOT EXISTS latest (device TEXT PRIMARY KEY, t REAL NOT NULL, x REAL NOT NULL, y REAL NOT NULL,
    floor TEXT, accuracy_m REAL, zone TEXT);
CREATE INDEX IF NOT EXISTS latest_t ON latest (t);
CREATE TABLE IF NOT EXISTS zone_sessions (id INTEGER PRIMARY KEY, device TEXT NOT NULL, zone TEXT NOT NULL,
    floor TEXT, start REAL NOT NULL, "end" REAL);
CREATE INDEX IF NOT EXISTS zone_sessions_device ON zone_sessions (device, zone, "end");
CREATE INDEX IF NOT EXISTS zone_sessions_open ON zone_sessions ("end", zone);
CREATE TABLE IF NOT EXISTS visits (id INTEGER PRIMARY KEY, device TEXT NOT NULL, start REAL NOT NULL,
    "end" REAL, last_seen REAL NOT NULL);
CREATE INDEX IF NOT EXISTS visits_device ON visits (device, "end");
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, t REAL NOT NULL, type TEXT NOT NULL, device TEXT NOT NULL,
    zone TEXT, floor TEXT, extra TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_device ON events (device);
CREATE INDEX IF NOT EXISTS events_t ON events (t);
CREATE TABLE IF NOT EXISTS zone_flows (hour REAL NOT NULL, src TEXT NOT NULL, dst TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (hour, src, dst));
CREATE TABLE IF NOT EXISTS occupancy (minute REAL NOT NULL, zone TEXT NOT NULL, devices INTEGER NOT NULL,
    PRIMARY KEY (minute, zone));
CREATE TABLE IF NOT EXISTS gateways (id TEXT PRIMARY KEY, state TEXT NOT NULL, last_seen REAL, reason TEXT NOT NULL,
    readings INTEGER NOT NULL, health TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dedup (gw TEXT PRIMARY KEY, max_seq INTEGER NOT NULL, bits BLOB NOT NULL);
"""


class SqliteStore:
    """``Store`` on SQLite. The writer methods are called from one thread; reads may come from any."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._w = self._connect()
            self._w.executescript(_SCHEMA)
            found = self._w.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if found is None:
                self._w.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION).encode(),))
            elif int(found[0]) != SCHEMA_VERSION:
                raise StoreError(f"{self.path}: database schema {int(found[0])}, this version reads {SCHEMA_VERSION}")
            self._w.commit()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the database: {exc}") from None
        self._r = self._connect()
        self._rlock = threading.Lock()
        self._wlock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return conn

    # ------------------------------------------------------------------------------------------ engine state

    def get_meta(self, key: str) -> bytes | None:
        with self._rlock:
            row = self._r.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def set_meta(self, key: str, value: bytes) -> None:
        with self._wlock, self._w:
            self._w.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def save_venue(self, venue_id: str, name: str, text: str) -> None:
        with self._wlock, self._w:
            self._w.execute("INSERT OR REPLACE INTO venues VALUES (?, ?, ?, ?)", (venue_id, name, text, time.time()))

    def load_dedup(self) -> dict[str, tuple[int, bytes]]:
        with self._rlock:
            rows = self._r.execute("SELECT gw, max_seq, bits FROM dedup").fetchall()
        return {gw: (int(m), bytes(b)) for gw, m, b in rows}

    def commit(self, w: WindowWrite) -> None:
        with self._wlock, self._w:
            c = self._w
            if w.positions:
                rows = [(p.device, p.t, p.x, p.y, p.floor, p.accuracy_m, p.zone) for p in w.positions]
                c.executemany("INSERT INTO positions VALUES (?,?,?,?,?,?,?)", rows)
                c.executemany("INSERT INTO latest VALUES (?,?,?,?,?,?,?) ON CONFLICT(device) DO UPDATE SET "
                              "t=excluded.t, x=excluded.x, y=excluded.y, floor=excluded.floor, "
                              "accuracy_m=excluded.accuracy_m, zone=excluded.zone WHERE excluded.t >= latest.t",
                              rows)
                seen: dict[str, tuple[float, float]] = {}
                for p in w.positions:
                    lo, hi = seen.get(p.device, (p.t, p.t))
                    seen[p.device] = (min(lo, p.t), max(hi, p.t))
                dev_rows = [(d, lo, hi) for d, (lo, hi) in seen.items()]
                c.executemany("INSERT INTO devices VALUES (?,?,?) ON CONFLICT(id) DO UPDATE SET "
                              "last_seen=max(last_seen, excluded.last_seen)", dev_rows)
                # a device seen with no open visit starts one; an open visit follows the device
                c.executemany('UPDATE visits SET last_seen=max(last_seen, ?) WHERE device=? AND "end" IS NULL',
                              [(hi, d) for d, (lo, hi) in seen.items()])
                c.executemany('INSERT INTO visits (device, start, "end", last_seen) SELECT ?, ?, NULL, ? '
                              'WHERE NOT EXISTS (SELECT 1 FROM visits WHERE device=? AND "end" IS NULL)',
                              [(d, lo, hi, d) for d, (lo, hi) in seen.items()])
            for e in w.events:
                c.execute("INSERT INTO events (t, type, device, zone, floor, extra) VALUES (?,?,?,?,?,?)",
                          (e.t, e.type, e.device, e.zone, e.floor, json.dumps(dict(e.extra), default=str)))
                if e.type == "zone_enter" and e.zone is not None:
                    c.execute('INSERT INTO zone_sessions (device, zone, floor, start, "end") SELECT ?,?,?,?,NULL '
                              'WHERE NOT EXISTS (SELECT 1 FROM zone_sessions WHERE device=? AND zone=? '
                              'AND "end" IS NULL)', (e.device, e.zone, e.floor, _since(e), e.device, e.zone))
                elif e.type == "zone_exit" and e.zone is not None:
                    c.execute('UPDATE zone_sessions SET "end"=? WHERE device=? AND zone=? AND "end" IS NULL',
                              (_since(e), e.device, e.zone))
                elif e.type == "visit_end":
                    c.execute('UPDATE zone_sessions SET "end"=? WHERE device=? AND "end" IS NULL', (e.t, e.device))
                    c.execute('UPDATE visits SET "end"=max(last_seen, start) WHERE device=? AND "end" IS NULL',
                              (e.device,))
            if w.flows:
                c.executemany("INSERT INTO zone_flows VALUES (?,?,?,?) ON CONFLICT(hour, src, dst) DO UPDATE SET "
                              "n=n+excluded.n", [(f.hour, f.src, f.dst, f.n) for f in w.flows])
            if w.occupancy:
                c.executemany("INSERT OR REPLACE INTO occupancy VALUES (?,?,?)",
                              [(o.minute, o.zone, o.devices) for o in w.occupancy])
            if w.gateways:
                c.executemany("INSERT OR REPLACE INTO gateways VALUES (?,?,?,?,?,?)",
                              [(g.id, g.state, g.last_seen, g.reason, g.readings, json.dumps(dict(g.health)))
                               for g in w.gateways])
            if w.dedup:
                c.executemany("INSERT OR REPLACE INTO dedup VALUES (?,?,?)",
                              [(gw, m, b) for gw, (m, b) in w.dedup.items()])
            if w.snapshot is not None:
                c.execute("INSERT OR REPLACE INTO meta VALUES ('locator', ?)", (w.snapshot,))
            if w.watermark is not None:
                c.execute("INSERT OR REPLACE INTO meta VALUES ('watermark', ?)", (repr(w.watermark).encode(),))

    # ------------------------------------------------------------------------------------------ reads

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._rlock:
            return self._r.execute(sql, args).fetchall()

    def latest_positions(self, since_t: float) -> list[PositionRow]:
        return [PositionRow(*r) for r in self._rows(
            "SELECT device, t, x, y, floor, accuracy_m, zone FROM latest WHERE t >= ? ORDER BY device", (since_t,))]

    def open_sessions(self) -> list[SessionRow]:
        return [SessionRow(*r) for r in self._rows(
            'SELECT device, zone, floor, start, "end" FROM zone_sessions WHERE "end" IS NULL')]

    def sessions(self, device: str | None = None, since_t: float | None = None, limit: int = 1000) -> list[SessionRow]:
        where: list[str] = []
        args: list[Any] = []
        if device is not None:
            where.append("device=?")
            args.append(device)
        if since_t is not None:
            where.append('(start >= ? OR "end" IS NULL OR "end" >= ?)')
            args += [since_t, since_t]
        sql = 'SELECT device, zone, floor, start, "end" FROM zone_sessions'
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY start DESC LIMIT ?"
        return [SessionRow(*r) for r in self._rows(sql, (*args, limit))]

    def gateways(self) -> list[GatewayRow]:
        return [GatewayRow(i, s, ls, reason, n, json.loads(h)) for i, s, ls, reason, n, h in self._rows(
            "SELECT id, state, last_seen, reason, readings, health FROM gateways ORDER BY id")]

    def flows(self, since_t: float) -> list[FlowRow]:
        return [FlowRow(*r) for r in self._rows(
            "SELECT hour, src, dst, n FROM zone_flows WHERE hour >= ? ORDER BY n DESC", (since_t,))]

    def recent_events(self, limit: int) -> list[EventRow]:
        rows = self._rows("SELECT type, device, t, zone, floor, extra FROM events ORDER BY id DESC LIMIT ?", (limit,))
        return [EventRow(ty, d, t, z, f, json.loads(x)) for ty, d, t, z, f, x in rows]

    def device_count(self) -> int:
        return int(self._rows("SELECT count(*) FROM devices")[0][0])

    def count(self, table: str) -> int:
        if table not in {"positions", "latest", "zone_sessions", "visits", "events", "devices", "zone_flows",
                         "occupancy", "gateways", "dedup"}:
            raise ValueError(table)
        return int(self._rows(f"SELECT count(*) FROM {table}")[0][0])

    # ------------------------------------------------------------------------------------------ privacy

    def export_device(self, device: str) -> dict[str, Any]:
        def q(sql: str) -> list[dict[str, Any]]:
            with self._rlock:
                cur = self._r.execute(sql, (device,))
                names = [d[0] for d in cur.description]
                return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

        return {
            "device": device,
            "device_record": q("SELECT id, first_seen, last_seen FROM devices WHERE id=?"),
            "visits": q('SELECT start, "end", last_seen FROM visits WHERE device=? ORDER BY start'),
            "zone_sessions": q('SELECT zone, floor, start, "end" FROM zone_sessions WHERE device=? ORDER BY start'),
            "events": q("SELECT t, type, zone, floor, extra FROM events WHERE device=? ORDER BY t"),
            "positions": q("SELECT t, x, y, floor, accuracy_m, zone FROM positions WHERE device=? ORDER BY t"),
        }

    def delete_device(self, device: str) -> int:
        n = 0
        with self._wlock, self._w:
            for table, col in (("positions", "device"), ("latest", "device"), ("zone_sessions", "device"),
                               ("visits", "device"), ("events", "device"), ("devices", "id")):
                n += self._w.execute(f"DELETE FROM {table} WHERE {col}=?", (device,)).rowcount
        return n

    def purge(self, before_t: float, positions_before_t: float) -> int:
        n = 0
        with self._wlock, self._w:
            c = self._w
            n += c.execute("DELETE FROM positions WHERE t < ?", (positions_before_t,)).rowcount
            n += c.execute("DELETE FROM latest WHERE t < ?", (before_t,)).rowcount
            n += c.execute('DELETE FROM zone_sessions WHERE "end" IS NOT NULL AND "end" < ?', (before_t,)).rowcount
            n += c.execute('DELETE FROM visits WHERE "end" IS NOT NULL AND "end" < ?', (before_t,)).rowcount
            n += c.execute("DELETE FROM events WHERE t < ?", (before_t,)).rowcount
            n += c.execute("DELETE FROM devices WHERE last_seen < ?", (before_t,)).rowcount
            n += c.execute("DELETE FROM zone_flows WHERE hour < ?", (before_t,)).rowcount
            n += c.execute("DELETE FROM occupancy WHERE minute < ?", (before_t,)).rowcount
        return n

    def close(self) -> None:
        with self._wlock:
            self._w.close()
        with self._rlock:
            self._r.close()


def _since(e: EventRow) -> float:
    """When a stay really started or ended: the hysteresis reports it with ``since`` when it knows."""
    since = e.extra.get("since")
    return float(since) if isinstance(since, int | float) else e.t
