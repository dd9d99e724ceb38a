"""Who may be sent what: marketing consent and audience rules over the shopper profile."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from campaigns.model import GLOBAL_SCOPE, Audience, Consent, ShopperProfile


def latest_consents(consents: Iterable[Consent]) -> dict[str, Consent]:
    """The newest statement per scope (ties: the later one in the sequence wins)."""
    out: dict[str, Consent] = {}
    for c in consents:
        prev = out.get(c.scope)
        if prev is None or c.t >= prev.t:
            out[c.scope] = c
    return out


def may_market(latest: Mapping[str, Consent], brand: str) -> bool:
    """Marketing by ``brand`` is allowed when the newest statement about that brand or about all
    brands is a grant. So a global opt-out after a brand opt-in stops that brand too, and a later
    brand opt-in after a global opt-out allows only that brand. No statement at all: not allowed."""
    brand_c = latest.get(brand)
    global_c = latest.get(GLOBAL_SCOPE)
    if brand_c is None and global_c is None:
        return False
    if brand_c is None:
        assert global_c is not None
        return global_c.granted
    if global_c is None:
        return brand_c.granted
    return brand_c.granted if brand_c.t >= global_c.t else global_c.granted


def in_audience(audience: Audience, profile: ShopperProfile) -> bool:
    if audience.channels and profile.channel not in audience.channels:
        return False
    if audience.home_stores and profile.home_store not in audience.home_stores:
        return False
    if profile.visit_count < audience.min_visits:
        return False
    if audience.max_visits is not None and profile.visit_count > audience.max_visits:
        return False
    if audience.spend_levels and profile.spend_level not in audience.spend_levels:
        return False
    if audience.segments and not any(s in profile.segments for s in audience.segments):
        return False
    if audience.visitor == "first_time" and profile.visit_count > 1:
        return False
    return not (audience.visitor == "repeat" and profile.visit_count <= 1)
