"""The storage port of the campaign engine.

The engine keeps its hot state (caps, budgets, open offers, stays) in memory and talks to the
store only to load a shopper it has not met yet, to load campaigns and budget usage at start, and
to write one batch of results per call. ``api.campaign_store.SqliteCampaignStore`` implements it
over SQLite; ``tests.fakes.campaign_store.FakeCampaignStore`` in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from campaigns.model import Campaign, Consent, Decision, OfferState, ShopperProfile, ShopperSnapshot


@dataclass(frozen=True, slots=True)
class VisitConversion:
    """An exposed (sent or held-out) shopper entered one of the campaign's zones afterwards."""

    campaign: str
    shopper: str
    t: float
    zone: str


@dataclass(frozen=True, slots=True)
class EngineWrites:
    """Everything one engine call produced, written by the store in one transaction."""

    decisions: tuple[Decision, ...] = ()
    profiles: tuple[ShopperProfile, ...] = ()  # only the visit fields (visit_count, first_seen, last_visit) are new
    zone_seen: tuple[tuple[str, str, float], ...] = ()  # (shopper, zone, t): latest time in a zone
    conversions: tuple[VisitConversion, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.decisions or self.profiles or self.zone_seen or self.conversions)


class CampaignStore(Protocol):
    def load_campaigns(self) -> list[Campaign]: ...

    def save_campaign(self, campaign: Campaign) -> None: ...

    def budget_usage(self, day_start: float) -> dict[str, tuple[int, int]]:
        """Per campaign: (offers sent ever, offers sent since ``day_start``)."""
        ...

    def load_shopper(self, shopper: str, since: float) -> ShopperSnapshot:
        """Profile, consents, offers sent since ``since``, zone last-seen times, open exposures."""
        ...

    def load_shoppers(self, shoppers: Sequence[str], since: float) -> dict[str, ShopperSnapshot]:
        """``load_shopper`` for many shoppers at once (one round of queries for a whole batch)."""
        ...

    def save_consent(self, consent: Consent) -> None: ...

    def save_profile(self, profile: ShopperProfile) -> None:
        """The shopper-declared fields (channel, home store, segments, quiet hours)."""
        ...

    def save_offer_state(self, shopper: str, offer_id: str, state: OfferState, t: float) -> None: ...

    def write(self, writes: EngineWrites) -> None: ...
