"""Duplicate detection by ``(gateway, seq)`` with bounded memory that can be saved and restored.

Each gateway gets a sliding window of the last ``DEDUP_WINDOW`` sequence numbers (a bitmap, like
IPsec's anti-replay window): a seq inside the window is new exactly once; one above it slides the
window; one below it is stale (dropped), unless several in a row are, which means the gateway lost
its counter (reinstalled) and the window starts over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from api.const import DEDUP_RESET_AFTER, DEDUP_WINDOW

Verdict = Literal["new", "duplicate", "stale", "reset"]
_NEVER: Final = -1


@dataclass(slots=True)
class _Window:
    size: int
    max_seq: int = _NEVER
    bits: bytearray | None = None
    stale_run: int = 0

    def __post_init__(self) -> None:
        if self.bits is None:
            self.bits = bytearray(self.size // 8)

    def _get(self, seq: int) -> bool:
        i = seq % self.size
        assert self.bits is not None
        return bool(self.bits[i >> 3] & (1 << (i & 7)))

    def _set(self, seq: int, value: bool) -> None:
        i = seq % self.size
        assert self.bits is not None
        if value:
            self.bits[i >> 3] |= 1 << (i & 7)
        else:
            self.bits[i >> 3] &= ~(1 << (i & 7)) & 0xFF

    def check(self, seq: int, mark: bool) -> Verdict:
        if seq > self.max_seq:
            if mark:
                if self.max_seq == _NEVER or seq - self.max_seq >= self.size:
                    self.bits = bytearray(self.size // 8)
                else:
                    for s in range(self.max_seq + 1, seq):
                        self._set(s, False)
                self._set(seq, True)
                self.max_seq = seq
                self.stale_run = 0
            return "new"
        if seq > self.max_seq - self.size:
            if self._get(seq):
                return "duplicate"
            if mark:
                self._set(seq, True)
                self.stale_run = 0
            return "new"
        if mark:
            self.stale_run += 1
            if self.stale_run >= DEDUP_RESET_AFTER:
                self.bits = bytearray(self.size // 8)
                self._set(seq, True)
                self.max_seq = seq
                self.stale_run = 0
                return "reset"
        return "stale"


class SeqDedup:
    """Per-gateway windows. ``check`` marks and classifies; ``dirty`` names windows changed since ``clean``."""

    def __init__(self, window: int = DEDUP_WINDOW) -> None:
        if window <= 0 or window % 8:
            raise ValueError(f"window must be a positive multiple of 8, got {window}")
        self.window = window
        self._gw: dict[str, _Window] = {}
        self._dirty: set[str] = set()

    def check(self, gateway: str, seq: int) -> Verdict:
        """Classify and remember ``(gateway, seq)``: "new" and "reset" are to be applied."""
        w = self._gw.get(gateway)
        if w is None:
            w = self._gw[gateway] = _Window(self.window)
        verdict = w.check(seq, mark=True)
        if verdict != "duplicate":
            self._dirty.add(gateway)
        return verdict

    def seen(self, gateway: str, seq: int) -> bool:
        w = self._gw.get(gateway)
        return w is not None and w.check(seq, mark=False) != "new"

    def state(self, gateways: Iterable[str] | None = None) -> dict[str, tuple[int, bytes]]:
        names = self._gw if gateways is None else [g for g in gateways if g in self._gw]
        return {g: (self._gw[g].max_seq, bytes(self._gw[g].bits or b"")) for g in names}

    def restore(self, state: Mapping[str, tuple[int, bytes]]) -> None:
        for g, (max_seq, bits) in state.items():
            if len(bits) != self.window // 8:
                continue  # saved with another window size: forget it rather than misread it
            self._gw[g] = _Window(self.window, int(max_seq), bytearray(bits))

    def dirty(self) -> set[str]:
        return set(self._dirty)

    def clean(self) -> None:
        self._dirty.clear()

    def __len__(self) -> int:
        return len(self._gw)
