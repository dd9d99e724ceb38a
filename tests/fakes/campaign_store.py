"""In-memory fake of the campaign storage port (``campaigns.store.CampaignStore``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from campaigns.model import (
    Campaign,
    Consent,
    Decision,
    Exposure,
    OfferState,
    SentOffer,
    ShopperProfile,
    ShopperSnapshot,
)
from campaigns.store import EngineWrites


class FakeCampaignStore:
    def __init__(self) -> None:
        self.campaigns: dict[str, Campaign] = {}
        self.decisions: list[Decision] = []
        self.offers: dict[str, SentOffer] = {}
        self.offer_shopper: dict[str, str] = {}
        self.consents: list[Consent] = []
        self.profiles: dict[str, ShopperProfile] = {}
        self.zone_seen: dict[tuple[str, str], float] = {}
        self.exposures: dict[tuple[str, str], Exposure] = {}
        self.visited: set[tuple[str, str]] = set()
        self.writes = 0

    def load_campaigns(self) -> list[Campaign]:
        return sorted(self.campaigns.values(), key=lambda c: c.id)

    def save_campaign(self, campaign: Campaign) -> None:
        self.campaigns[campaign.id] = campaign

    def budget_usage(self, day_start: float) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for o in self.offers.values():
            total, today = out.get(o.campaign, (0, 0))
            out[o.campaign] = (total + 1, today + int(o.t >= day_start))
        return out

    def load_shopper(self, shopper: str, since: float) -> ShopperSnapshot:
        mine = [o for oid, o in self.offers.items() if self.offer_shopper[oid] == shopper]
        totals: dict[str, int] = {}
        for o in mine:
            totals[o.campaign] = totals.get(o.campaign, 0) + 1
        return ShopperSnapshot(
            self.profiles.get(shopper, ShopperProfile(shopper)),
            tuple(c for c in self.consents if c.shopper == shopper),
            tuple(sorted((o for o in mine if o.t >= since), key=lambda o: o.t)),
            {z: t for (s, z), t in self.zone_seen.items() if s == shopper},
            tuple(e for (c, s), e in self.exposures.items() if s == shopper and (c, s) not in self.visited),
            totals)

    def load_shoppers(self, shoppers: Sequence[str], since: float) -> dict[str, ShopperSnapshot]:
        return {s: self.load_shopper(s, since) for s in shoppers}

    def save_consent(self, consent: Consent) -> None:
        self.consents.append(consent)

    def save_profile(self, profile: ShopperProfile) -> None:
        old = self.profiles.get(profile.shopper, ShopperProfile(profile.shopper))
        self.profiles[profile.shopper] = replace(old, channel=profile.channel, home_store=profile.home_store,
                                                 segments=profile.segments, quiet_hours=profile.quiet_hours)

    def save_offer_state(self, shopper: str, offer_id: str, state: OfferState, t: float) -> None:
        o = self.offers.get(offer_id)
        if o is not None and self.offer_shopper[offer_id] == shopper:
            self.offers[offer_id] = replace(o, state=state, state_t=t)

    def write(self, writes: EngineWrites) -> None:
        self.writes += 1
        self.decisions.extend(writes.decisions)
        for d in writes.decisions:
            if d.offer is not None:
                self.offers[d.offer.offer_id] = SentOffer(d.offer.offer_id, d.campaign, d.t, zone=d.zone)
                self.offer_shopper[d.offer.offer_id] = d.shopper
            if d.reason in ("sent", "holdout"):
                self.exposures.setdefault((d.campaign, d.shopper),
                                          Exposure(d.campaign, d.shopper, d.t, d.reason == "holdout"))
        for p in writes.profiles:
            old = self.profiles.get(p.shopper, ShopperProfile(p.shopper))
            self.profiles[p.shopper] = replace(old, visit_count=p.visit_count, first_seen=p.first_seen,
                                               last_visit=p.last_visit)
        for shopper, zone, t in writes.zone_seen:
            self.zone_seen[(shopper, zone)] = max(t, self.zone_seen.get((shopper, zone), t))
        for c in writes.conversions:
            self.visited.add((c.campaign, c.shopper))
