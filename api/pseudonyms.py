"""Pseudonymous device ids: a keyed hash of the beacon id (or app id) with the venue secret.

The engine never stores or republishes a beacon id or MAC: everything downstream of the ingest sees
only ``d-`` + 20 base32 characters, stable for as long as the secret is kept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Final

import numpy as np
import numpy.typing as npt

PSEUDONYM_BYTES: Final = 12  # 96 bits: no collisions among any realistic number of devices
CACHE_MAX: Final = 200_000  # distinct ids remembered; the cache is dropped whole when it fills (bounded memory)
APP_PREFIX: Final = "app:"  # phone-mode devices are named by their app pseudonym, hashed in a separate space


def pseudonym(secret: bytes, ident: str) -> str:
    digest = hmac.new(secret, ident.encode(), hashlib.sha256).digest()[:PSEUDONYM_BYTES]
    return "d-" + base64.b32encode(digest).decode().lower().rstrip("=")


class Pseudonymizer:
    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("empty secret")
        self._secret = secret
        self._cache: dict[str, str] = {}

    def one(self, ident: str) -> str:
        found = self._cache.get(ident)
        if found is None:
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            found = self._cache[ident] = pseudonym(self._secret, ident)
        return found

    def app(self, app_device: str) -> str:
        return self.one(APP_PREFIX + app_device)

    def many(self, idents: npt.NDArray[np.object_]) -> npt.NDArray[np.object_]:
        """Vectorised over a column: each distinct id is hashed once."""
        if idents.shape[0] == 0:
            return idents
        uniq, inverse = np.unique(idents, return_inverse=True)
        mapped = np.array([self.one(str(u)) for u in uniq], dtype=object)
        return mapped[inverse]
