"""Zone membership with hysteresis, visit sessions, dwell and visitor / passer-by classification.

``ZoneHysteresis`` turns a stream of raw innermost zones (one per fix) into a stable innermost zone:
a change is accepted only after the new raw zone has held for ``ZONE_SWITCH_DELAY_S`` seconds, the same
delay for entering and leaving, so dwell read off the stable zone equals the raw dwell. A walker on a
boundary whose raw zone flickers never switches. Zone events are emitted for every zone of the
containment chain that changes. Pure functions and small state objects: usable live and in batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

# The raw zone must hold this long (two fixes) before the stable zone follows (enter = exit). The tracker already
# smooths positions: a longer delay only makes every stay late (3 s cost 3-6 points of zone accuracy and 2-3
# points of dwell error on the simulated mall).
ZONE_SWITCH_DELAY_S: Final = 1.0
DWELL_MARKS_S: Final = (30.0, 60.0, 120.0, 300.0, 600.0)  # "dwell" events when a stay crosses these
VISITOR_MIN_DWELL_S: Final = 20.0  # a stay shorter than this in a zone is a pass-by, longer is a visit
VISIT_GAP_S: Final = 600.0  # unseen this long: the venue visit has ended

EventKind = Literal["zone_enter", "zone_exit", "dwell", "visit_end", "floor_change"]


@dataclass(frozen=True, slots=True)
class ZoneChange:
    kind: EventKind
    zone: str | None
    t: float
    since: float  # when the raw stream first showed the change (t minus the hysteresis delay)
    extra: Mapping[str, float | str] = field(default_factory=dict)


@dataclass(slots=True)
class ZoneHysteresis:
    """Per-device state. ``chain`` maps a zone to its containing zones (innermost first)."""

    current: str | None = None
    has_pending: bool = False
    pending: str | None = None
    pending_since: float = 0.0
    entered_at: dict[str, float] = field(default_factory=dict)
    marks_done: dict[str, int] = field(default_factory=dict)

    def update(self, t: float, raw: str | None, chain: Mapping[str, Sequence[str]],
               delay: float = ZONE_SWITCH_DELAY_S) -> list[ZoneChange]:
        out: list[ZoneChange] = []
        if raw == self.current:
            self.has_pending = False
        else:
            if not self.has_pending or self.pending != raw:
                self.has_pending, self.pending, self.pending_since = True, raw, t
            if t - self.pending_since >= delay:
                out.extend(self._switch(t, raw, chain))
        out.extend(self._dwell_marks(t))
        return out

    def _switch(self, t: float, new: str | None, chain: Mapping[str, Sequence[str]]) -> list[ZoneChange]:
        old_chain = list(chain.get(self.current, ())) if self.current is not None else []
        new_chain = list(chain.get(new, ())) if new is not None else []
        since = self.pending_since
        out = []
        for z in old_chain:  # innermost first
            if z not in new_chain:
                start = self.entered_at.pop(z, since)
                self.marks_done.pop(z, None)
                out.append(ZoneChange("zone_exit", z, t, since, {"dwell_s": round(since - start, 3)}))
        for z in reversed(new_chain):  # outermost first
            if z not in old_chain:
                self.entered_at[z] = since
                self.marks_done[z] = 0
                out.append(ZoneChange("zone_enter", z, t, since))
        self.current, self.has_pending = new, False
        return out

    def _dwell_marks(self, t: float) -> list[ZoneChange]:
        out = []
        for z, start in self.entered_at.items():
            k = self.marks_done.get(z, 0)
            while k < len(DWELL_MARKS_S) and t - start >= DWELL_MARKS_S[k]:
                out.append(ZoneChange("dwell", z, t, start, {"dwell_s": DWELL_MARKS_S[k]}))
                k += 1
            self.marks_done[z] = k
        return out

    def close(self, t: float) -> list[ZoneChange]:
        """The device left the venue (visit end): exit every zone it is in."""
        out = []
        for z, start in sorted(self.entered_at.items(), key=lambda kv: -kv[1]):
            out.append(ZoneChange("zone_exit", z, t, t, {"dwell_s": round(t - start, 3)}))
        self.entered_at.clear()
        self.marks_done.clear()
        self.current, self.has_pending = None, False
        return out

    def to_state(self) -> dict[str, object]:
        return {"current": self.current, "has_pending": self.has_pending, "pending": self.pending,
                "pending_since": self.pending_since,
                "entered_at": dict(self.entered_at), "marks_done": dict(self.marks_done)}

    @staticmethod
    def from_state(state: Mapping[str, object]) -> ZoneHysteresis:
        entered = state.get("entered_at", {})
        marks = state.get("marks_done", {})
        cur = state.get("current")
        pend = state.get("pending")
        since = state.get("pending_since", 0.0)
        return ZoneHysteresis(
            current=cur if isinstance(cur, str) else None,
            has_pending=bool(state.get("has_pending", False)),
            pending=pend if isinstance(pend, str) else None,
            pending_since=float(since) if isinstance(since, int | float) else 0.0,
            entered_at={str(k): float(v) for k, v in entered.items()} if isinstance(entered, dict) else {},
            marks_done={str(k): int(v) for k, v in marks.items()} if isinstance(marks, dict) else {},
        )


@dataclass(frozen=True, slots=True)
class Stay:
    device: str
    zone: str
    start: float
    end: float

    @property
    def dwell_s(self) -> float:
        return self.end - self.start

    @property
    def is_visit(self) -> bool:
        return self.dwell_s >= VISITOR_MIN_DWELL_S


def stays_from_zone_column(device: Sequence[str], t: Sequence[float], zone: Sequence[str | None],
                           chain: Mapping[str, Sequence[str]] | None = None, gap_s: float = 5.0) -> list[Stay]:
    """Stays per (device, zone) read off a stable zone column (innermost zone per row).

    Containing zones are included when ``chain`` is given. A stay ends at the last row inside; a gap
    longer than ``gap_s`` between rows inside splits it.
    """
    rows = sorted(zip(device, t, zone, strict=True), key=lambda r: (r[0], r[1]))
    open_: dict[tuple[str, str], list[float]] = {}
    out: list[Stay] = []
    for dev, ti, z in rows:
        zones_now = set(chain.get(z, (z,)) if chain is not None else (z,)) if z else set()
        for key in [k for k in open_ if k[0] == dev]:
            start, last = open_[key]
            if key[1] not in zones_now or ti - last > gap_s:
                out.append(Stay(dev, key[1], start, last))
                del open_[key]
        for zz in zones_now:
            if (dev, zz) in open_:
                open_[(dev, zz)][1] = ti
            else:
                open_[(dev, zz)] = [ti, ti]
    out.extend(Stay(dev, z, s, e) for (dev, z), (s, e) in open_.items())
    return sorted(out, key=lambda s: (s.device, s.start, s.zone))


def classify_visitors(stays: Iterable[Stay]) -> dict[tuple[str, str], bool]:
    """(device, zone) -> True when any stay there is a visit (long enough), False for passers-by only."""
    out: dict[tuple[str, str], bool] = {}
    for s in stays:
        out[(s.device, s.zone)] = out.get((s.device, s.zone), False) or s.is_visit
    return out
