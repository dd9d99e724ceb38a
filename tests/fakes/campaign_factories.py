"""Factories for campaign tests: a small venue in any time zone, campaigns with defaults, events, engines."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from campaigns import Campaign, CampaignEngine, CampaignStore, Consent, OfferContent, ProtectionPolicy, Trigger
from positioning.live import Fix, ZoneEvent
from positioning.venue import Venue, parse_venue
from tests.fakes.campaign_store import FakeCampaignStore

CORNER_STORE = Path(__file__).resolve().parent.parent.parent / "simulations" / "venues" / "corner-store.yaml"
SECRET = b"test-venue-secret-0123456789abcdef"
TZ = "Europe/Paris"


def venue(tz: str = TZ) -> Venue:
    text = CORNER_STORE.read_text(encoding="utf-8").replace("timezone: Europe/Paris", f"timezone: {tz}")
    return parse_venue(text, "corner-store.yaml")


def local_t(year: int, month: int, day: int, hour: int, minute: int = 0, tz: str = TZ) -> float:
    """UTC epoch seconds of a venue-local wall-clock time."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(tz)).timestamp()


T0 = local_t(2025, 6, 2, 12)  # a Monday at noon in Paris


def campaign(cid: str = "skin-enter", *, brand: str = "lumiere", zones: tuple[str, ...] = ("c-skincare",),
             trigger: Trigger | None = None, status: Any = "active", holdout_pct: float = 0.0,
             **kw: Any) -> Campaign:
    c = Campaign(cid, brand, cid, zones, trigger or Trigger("enter"), OfferContent(f"{cid} offer", value="10% off"),
                 status=status, holdout_pct=holdout_pct)
    return replace(c, **kw) if kw else c


def enter(device: str, zone: str, t: float) -> ZoneEvent:
    return ZoneEvent("zone_enter", device, t, zone, "L1")


def leave(device: str, zone: str, t: float) -> ZoneEvent:
    return ZoneEvent("zone_exit", device, t, zone, "L1")


def fix(device: str, t: float, x: float, y: float) -> Fix:
    return Fix(device, t, x, y, "L1", 1.0, None)


def make_engine(*campaigns: Campaign, store: CampaignStore | None = None, tz: str = TZ,
                policy: ProtectionPolicy | None = None, now: float = T0) -> tuple[CampaignEngine, Any]:
    st: Any = store if store is not None else FakeCampaignStore()
    eng = CampaignEngine(st, venue(tz), SECRET, policy=policy, now=now)
    for c in campaigns:
        eng.put_campaign(c)
    return eng, st


def opt_in(engine: CampaignEngine, shopper: str, scope: str = "*", t: float = T0 - 3600, granted: bool = True) -> None:
    engine.set_consent(Consent(shopper, scope, granted, t))
