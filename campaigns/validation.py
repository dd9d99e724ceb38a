"""Checks a campaign against the venue before the engine accepts it; errors name the field."""

from __future__ import annotations

import math

from campaigns.const import MAX_HOLDOUT_PCT, MAX_PROXIMITY_RADIUS_M
from campaigns.errors import CampaignValidationError
from campaigns.model import SPEND_LEVELS, STATUSES, TRIGGER_KINDS, Campaign
from campaigns.vouchers import CAMPAIGN_ID_RE
from positioning.venue import Venue


def brand_zones(venue: Venue, brand: str) -> tuple[str, ...]:
    return tuple(z.id for z in venue.zones if z.brand == brand)


def redeem_zones(venue: Venue, campaign: Campaign) -> frozenset[str]:
    """Where a voucher of the campaign is accepted: the brand's zones, the campaign's, and extra tills."""
    return frozenset(brand_zones(venue, campaign.brand)) | set(campaign.zones) | set(campaign.redeem_zones)


def validate_campaign(campaign: Campaign, venue: Venue) -> None:
    c = campaign
    if not CAMPAIGN_ID_RE.match(c.id):
        raise CampaignValidationError("id", f"must be 1-40 lowercase letters, digits or dashes, got {c.id!r}")
    if not c.brand.strip():
        raise CampaignValidationError("brand", "must not be empty")
    if not c.offer.title.strip():
        raise CampaignValidationError("offer.title", "must not be empty")
    if c.status not in STATUSES:
        raise CampaignValidationError("status", f"unknown status {c.status!r} (statuses: {', '.join(STATUSES)})")
    known = {z.id: z for z in venue.zones}
    if not c.zones:
        raise CampaignValidationError("zones", "a campaign needs at least one target zone")
    for i, zid in enumerate(c.zones):
        zone = known.get(zid)
        if zone is None:
            raise CampaignValidationError(f"zones[{i}]", f"unknown zone {zid!r} in venue {venue.id!r}")
        if zone.brand is not None and zone.brand != c.brand:
            raise CampaignValidationError(f"zones[{i}]", f"zone {zid!r} belongs to brand {zone.brand!r}, "
                                                         f"not {c.brand!r}")
    for field_name, ids in (("redeem_zones", c.redeem_zones), ("trigger.without", c.trigger.without)):
        for i, zid in enumerate(ids):
            if zid not in known:
                raise CampaignValidationError(f"{field_name}[{i}]", f"unknown zone {zid!r} in venue {venue.id!r}")
    t = c.trigger
    if t.kind not in TRIGGER_KINDS:
        raise CampaignValidationError("trigger.kind", f"unknown trigger {t.kind!r} (triggers: "
                                                      f"{', '.join(TRIGGER_KINDS)})")
    if t.kind == "dwell" and not (0.0 < t.dwell_s < math.inf):
        raise CampaignValidationError("trigger.dwell_s", f"must be > 0 seconds for a dwell trigger, got {t.dwell_s}")
    if t.kind == "proximity" and not (0.0 < t.radius_m <= MAX_PROXIMITY_RADIUS_M):
        raise CampaignValidationError("trigger.radius_m", f"must be in (0, {MAX_PROXIMITY_RADIUS_M:g}] m for a "
                                                          f"proximity trigger, got {t.radius_m}")
    if t.kind == "exit_without" and not t.without:
        raise CampaignValidationError("trigger.without", "an exit_without trigger needs the zones not visited")
    if t.kind == "revisit" and not (0.0 < t.after_days < math.inf):
        raise CampaignValidationError("trigger.after_days", f"must be > 0 for a revisit trigger, got {t.after_days}")
    if not 0.0 <= c.holdout_pct <= MAX_HOLDOUT_PCT:
        raise CampaignValidationError("holdout_pct", f"must be in [0, {MAX_HOLDOUT_PCT:g}], got {c.holdout_pct}")
    if not 0.0 < c.voucher_ttl_s < math.inf:
        raise CampaignValidationError("voucher_ttl_s", f"must be > 0, got {c.voucher_ttl_s}")
    if not 0.0 <= c.staff_share <= 1.0:
        raise CampaignValidationError("staff_share", f"must be in [0, 1], got {c.staff_share}")
    for name, value in (("cost_per_offer", c.cost_per_offer), ("cost_per_redemption", c.cost_per_redemption)):
        if not 0.0 <= value < math.inf:
            raise CampaignValidationError(name, f"must be >= 0, got {value}")
    s = c.schedule
    if s.start_date is not None and s.end_date is not None and s.end_date < s.start_date:
        raise CampaignValidationError("schedule.end_date", f"{s.end_date} is before start_date {s.start_date}")
    for i, d in enumerate(s.weekdays):
        if not 0 <= d <= 6:
            raise CampaignValidationError(f"schedule.weekdays[{i}]", f"must be 0 (Monday) .. 6 (Sunday), got {d}")
    for i, lvl in enumerate(c.audience.spend_levels):
        if lvl not in SPEND_LEVELS:
            raise CampaignValidationError(f"audience.spend_levels[{i}]", f"unknown level {lvl!r}")
    for name, cap in (("caps.per_visit", c.caps.per_visit), ("caps.per_day", c.caps.per_day),
                      ("caps.total", c.caps.total), ("budget.max_vouchers", c.budget.max_vouchers),
                      ("budget.max_per_day", c.budget.max_per_day)):
        if cap is not None and cap < 0:
            raise CampaignValidationError(name, f"must be >= 0, got {cap}")
