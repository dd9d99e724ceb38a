"""API keys for brands, tills and operators, and per-device shopper tokens; the HTTP check that uses them.

Keys and tokens are random 256-bit strings shown once; the database keeps only their SHA-256 (a
database leak does not leak working keys; random keys need no slow hash). Tables live in the
service's SQLite file: ``auth_keys`` (id, kind, scope, hash, created, revoked) and
``auth_shopper_tokens`` (device, hash, created).

Who may call what when ``INSTORE_AUTH=true`` (``Authorization: Bearer <key or token>``):

- ``admin`` keys: every guarded route.
- ``brand`` keys (scope: the brand id): ``/v1/campaigns...`` for that brand's campaigns only.
- ``till`` keys (scope: the zone id of the till's store or counter): ``POST /v1/redemptions``,
  ``POST /v1/purchases`` (for that store only) and voucher checks ``GET /v1/vouchers/{code}``.
- shopper tokens (scope: the pseudonymous device id): ``/v1/shoppers/{device}/...`` of that device.
  The token is issued by the first ``PUT /v1/shoppers/{device}/consents`` (answered with ``token``);
  afterwards that device's routes need it.

Operator routes (map, positions, occupancy, metrics, ...) are not guarded here: they belong behind the
venue's network or a reverse proxy. Refusals: 401 ``unauthenticated`` (no or unknown key), 403
``forbidden`` (a key of another kind or scope); both name what was expected.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from api.errors import EngineError

KeyKind = Literal["admin", "brand", "till"]
KEY_KINDS: Final = ("admin", "brand", "till")
TOKEN_BYTES: Final = 32  # 256-bit random keys: guessing is hopeless, so a fast hash is enough
BUSY_TIMEOUT_S: Final = 10.0  # another writer (the engine) holds the database at most this long

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS auth_keys (id TEXT PRIMARY KEY, kind TEXT NOT NULL, scope TEXT, hash TEXT NOT NULL UNIQUE,
    created REAL NOT NULL, revoked REAL);
CREATE TABLE IF NOT EXISTS auth_shopper_tokens (device TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE,
    created REAL NOT NULL);
"""

SHOPPER_PATH: Final = re.compile(r"^/v1/shoppers/([^/]+)(/.*)?$")
CAMPAIGN_PATH: Final = re.compile(r"^/v1/campaigns(?:/([^/]+))?(/.*)?$")
VOUCHER_PATH: Final = re.compile(r"^/v1/vouchers/([^/]+)$")  # the QR image stays public: it shows the code only
TILL_PATHS: Final = frozenset({"/v1/redemptions", "/v1/purchases"})


class AuthError(EngineError):
    """A key operation that cannot be done (unknown kind, missing scope)."""


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str  # "admin" | "brand" | "till" | "shopper"
    scope: str | None  # brand id, till store zone, or device pseudonym
    key_id: str | None = None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class KeyStore:
    def __init__(self, path: Path | str, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------------------------ keys

    def create_key(self, kind: str, scope: str | None = None) -> tuple[str, str]:
        """A new key: returns ``(key id, secret token)``; the token is not kept and cannot be shown again."""
        if kind not in KEY_KINDS:
            raise AuthError(f"kind: unknown key kind {kind!r} (kinds: {', '.join(KEY_KINDS)})")
        if kind != "admin" and not scope:
            raise AuthError(f"scope: a {kind} key needs a scope ({'brand id' if kind == 'brand' else 'store zone id'})")
        key_id = f"k-{secrets.token_hex(4)}"
        token = f"isk_{kind}_{secrets.token_urlsafe(TOKEN_BYTES)}"
        with self._lock:
            self._db.execute("INSERT INTO auth_keys (id, kind, scope, hash, created) VALUES (?, ?, ?, ?, ?)",
                             (key_id, kind, scope if kind != "admin" else None, _hash(token), self.clock()))
        return key_id, token

    def revoke(self, key_id: str) -> bool:
        with self._lock:
            n = self._db.execute("UPDATE auth_keys SET revoked = ? WHERE id = ? AND revoked IS NULL",
                                 (self.clock(), key_id)).rowcount
        return n > 0

    def list_keys(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT id, kind, scope, created, revoked FROM auth_keys "
                                    "ORDER BY created").fetchall()
        return [{"id": r[0], "kind": r[1], "scope": r[2], "created": r[3], "revoked": r[4]} for r in rows]

    # ------------------------------------------------------------------------------------ shoppers

    def issue_shopper_token(self, device: str) -> str | None:
        """The device's token, issued once (None when it already has one: ask for it with that one)."""
        token = f"ist_{secrets.token_urlsafe(TOKEN_BYTES)}"
        with self._lock:
            n = self._db.execute("INSERT OR IGNORE INTO auth_shopper_tokens (device, hash, created) VALUES (?, ?, ?)",
                                 (device, _hash(token), self.clock())).rowcount
        return token if n else None

    def has_shopper_token(self, device: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM auth_shopper_tokens WHERE device = ?", (device,)).fetchone()
        return row is not None

    def forget_shopper(self, device: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM auth_shopper_tokens WHERE device = ?", (device,))

    # ------------------------------------------------------------------------------------ checking

    def principal(self, token: str) -> Principal | None:
        h = _hash(token)
        with self._lock:
            row = self._db.execute("SELECT id, kind, scope FROM auth_keys WHERE hash = ? AND revoked IS NULL",
                                   (h,)).fetchone()
            if row is None:
                dev = self._db.execute("SELECT device, hash FROM auth_shopper_tokens WHERE hash = ?", (h,)).fetchone()
        if row is not None:
            return Principal(str(row[1]), row[2], str(row[0]))
        if dev is not None and hmac.compare_digest(str(dev[1]), h):
            return Principal("shopper", str(dev[0]))
        return None


def bearer(headers: Any) -> str | None:
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = str(value).partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


Decision = tuple[int, str, str] | None  # (status, error, message) to refuse, None to let through


def authorize(method: str, path: str, who: Principal | None, keys: KeyStore,
              campaign_brand: Callable[[str], str | None]) -> Decision:
    """Whether ``who`` may call ``method path`` (coarse: kind and path scope; routes check body scopes)."""
    m = SHOPPER_PATH.match(path)
    if m is not None:
        device, rest = m.group(1), m.group(2) or ""
        if who is not None and (who.kind == "admin" or (who.kind == "shopper" and who.scope == device)):
            return None
        if who is None and method == "PUT" and rest == "/consents" and not keys.has_shopper_token(device):
            return None  # the first consent issues the device's token
        if who is None:
            return (401, "unauthenticated", f"send the shopper token of device {device!r} "
                                            "(issued by its first PUT /v1/shoppers/{device}/consents)")
        return (403, "forbidden", f"this key is not the shopper token of device {device!r}")
    m = CAMPAIGN_PATH.match(path)
    if m is not None:
        if who is None:
            return (401, "unauthenticated", "send a brand or admin API key")
        if who.kind == "admin":
            return None
        if who.kind != "brand":
            return (403, "forbidden", "campaign routes need a brand or admin key")
        cid = m.group(1)
        if cid is not None:
            brand = campaign_brand(cid)
            if brand is not None and brand != who.scope:
                return (403, "forbidden", f"campaign {cid!r} belongs to another brand")
        return None
    if path in TILL_PATHS or (VOUCHER_PATH.match(path) is not None and method == "GET"):
        if who is None:
            return (401, "unauthenticated", "send a till or admin API key")
        if who.kind in ("admin", "till"):
            return None
        return (403, "forbidden", "till routes need a till or admin key")
    return None


def install(app: Any, keys: KeyStore, campaign_brand: Callable[[str], str | None]) -> None:
    """Guard an app's brand, till and shopper routes; the principal is in ``request.state.principal``."""
    from fastapi import Request
    from fastapi.responses import JSONResponse, Response
    from starlette.middleware.base import BaseHTTPMiddleware

    app.state.keys = keys

    async def _guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        token = bearer(request.headers)
        who = keys.principal(token) if token is not None else None
        if token is not None and who is None:
            return JSONResponse({"error": "unauthenticated", "message": "unknown or revoked key"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        refused = authorize(request.method, request.url.path, who, keys, campaign_brand)
        if refused is not None:
            status, error, message = refused
            return JSONResponse({"error": error, "message": message}, status_code=status,
                                headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)
        request.state.principal = who
        return await call_next(request)

    app.add_middleware(BaseHTTPMiddleware, dispatch=_guard)


def principal_of(request: Any) -> Principal | None:
    """The caller's principal when the app is guarded (None when auth is off or the route is open)."""
    return getattr(request.state, "principal", None)


__all__ = ["AuthError", "KeyStore", "Principal", "authorize", "install", "principal_of"]
