"""The durable outbox: every batch is written to SQLite before it is published, and deleted only
after the broker's PUBACK.

``seq`` is allocated in the same transaction as the row and stored, so it survives restarts and
``kill -9``; after a crash every row still in the file is published again (the engine dedups by
``(gw, seq)``). A fresh file starts ``seq`` at the wall clock in milliseconds, so a replaced or
wiped outbox never reuses numbers the engine has already seen. Disk is bounded by a row count and
a byte budget; beyond them the oldest rows are dropped and counted (``dropped``, persisted).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from beacon_gateway.errors import ConfigError

SEQ_START_PER_S: Final = 1000  # fresh outbox seq = epoch ms: stays above any seq an older file used at <=1000 batches/s
BUSY_TIMEOUT_S: Final = 5.0  # another process holding the file (a second gateway by mistake) fails after this

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class Outbox:
    def __init__(self, path: str | Path, *, max_batches: int, max_bytes: int,
                 wall: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.max_batches = max_batches
        self.max_bytes = max_bytes
        self._wall = wall
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a batch acknowledged to nobody yet must survive power loss
            self._db.executescript(_SCHEMA)
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('next_seq', ?)", (int(wall() * SEQ_START_PER_S),))
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('dropped', 0)")
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise ConfigError("outbox", f"{self.path}: cannot open the outbox: {exc}") from None
        self._next_seq = self._meta("next_seq")
        self.dropped = self._meta("dropped")
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM batches").fetchone()
        self.depth: int = row[0]
        self.bytes: int = row[1]

    def _meta(self, key: str) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def append(self, build: Callable[[int], bytes]) -> int:
        """Store the payload ``build(seq)`` under the next seq; returns the seq. Drops oldest rows beyond bounds."""
        seq = self._next_seq
        payload = build(seq)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("INSERT INTO batches VALUES (?, ?, ?)", (seq, payload, self._wall()))
            db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq + 1,))
            depth, size = self.depth + 1, self.bytes + len(payload)
            dropped = 0
            while depth > self.max_batches or (size > self.max_bytes and depth > 1):
                old = db.execute("SELECT seq, LENGTH(payload) FROM batches ORDER BY seq LIMIT 1").fetchone()
                db.execute("DELETE FROM batches WHERE seq = ?", (old[0],))
                depth, size, dropped = depth - 1, size - old[1], dropped + 1
            if dropped:
                db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (dropped,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._next_seq = seq + 1
        self.depth, self.bytes, self.dropped = depth, size, self.dropped + dropped
        return seq

    def pending(self, after_seq: int | None = None, limit: int = 100) -> list[tuple[int, bytes]]:
        """Stored batches oldest first, only those with ``seq > after_seq`` when given."""
        low = -1 if after_seq is None else after_seq
        rows = self._db.execute("SELECT seq, payload FROM batches WHERE seq > ? ORDER BY seq LIMIT ?", (low, limit))
        return [(int(s), bytes(p)) for s, p in rows]

    def ack(self, seq: int) -> bool:
        """Delete a delivered batch; False when it was already gone (dropped, or acked twice)."""
        row = self._db.execute("DELETE FROM batches WHERE seq = ? RETURNING LENGTH(payload)", (seq,)).fetchone()
        if row is None:
            return False
        self.depth -= 1
        self.bytes -= int(row[0])
        return True

    def close(self) -> None:
        self._db.close()
