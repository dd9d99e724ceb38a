"""Campaign domain values: campaigns, triggers, schedules, audiences, shoppers, consents and decisions.

All values are frozen: the engine derives new state instead of mutating them. Times are UTC epoch
seconds (``float``); daily windows and dates are in the venue's local time zone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from campaigns.const import (
    DEFAULT_DISMISS_CAMPAIGN_COOLDOWN_S,
    DEFAULT_DISMISS_COOLDOWN_S,
    DEFAULT_HOLDOUT_PCT,
    DEFAULT_MAX_OFFERS_PER_DAY,
    DEFAULT_MAX_OFFERS_PER_HOUR,
    DEFAULT_MAX_OFFERS_PER_VISIT,
    DEFAULT_OFFER_OPEN_S,
    DEFAULT_QUIET_END_MIN,
    DEFAULT_QUIET_START_MIN,
    DEFAULT_STAFF_SHARE,
    DEFAULT_VOUCHER_TTL_S,
    SPEND_LEVEL_HIGH,
    SPEND_LEVEL_MID,
    VISIT_GAP_S,
)

TriggerKind = Literal["enter", "dwell", "proximity", "exit_without", "revisit"]
TRIGGER_KINDS: Final = ("enter", "dwell", "proximity", "exit_without", "revisit")
Status = Literal["draft", "active", "paused", "ended"]
STATUSES: Final = ("draft", "active", "paused", "ended")
SpendLevel = Literal["low", "mid", "high"]
SPEND_LEVELS: Final = ("low", "mid", "high")
VisitorKind = Literal["any", "first_time", "repeat"]
OfferState = Literal["sent", "delivered", "opened", "dismissed", "redeemed"]
OFFER_STATES: Final = ("sent", "delivered", "opened", "dismissed", "redeemed")
GLOBAL_SCOPE: Final = "*"  # consent scope meaning "all brands of the venue"

# Why a decision came out as it did. "sent" is the only positive outcome; the rest name the rule
# that blocked the offer, in the order the engine checks them.
Reason = Literal[
    "sent",
    "paused",
    "out_of_schedule",
    "budget_total",
    "budget_daily",
    "no_consent",
    "audience",
    "quiet_hours",
    "dismissed_cooldown",
    "cap_campaign_visit",
    "cap_campaign_day",
    "cap_campaign_total",
    "cap_hour",
    "cap_day",
    "cap_visit",
    "offer_open",
    "outranked",
    "holdout",
]
REASONS: Final = (
    "sent", "paused", "out_of_schedule", "budget_total", "budget_daily", "no_consent", "audience",
    "quiet_hours", "dismissed_cooldown", "cap_campaign_visit", "cap_campaign_day", "cap_campaign_total",
    "cap_hour", "cap_day", "cap_visit", "offer_open", "outranked", "holdout",
)


@dataclass(frozen=True, slots=True)
class DailyWindow:
    """Minutes after local midnight, ``start`` inclusive, ``end`` exclusive; ``start > end`` spans midnight."""

    start_min: int
    end_min: int

    def contains(self, minute: int) -> bool:
        if self.start_min == self.end_min:
            return True  # a full day
        if self.start_min < self.end_min:
            return self.start_min <= minute < self.end_min
        return minute >= self.start_min or minute < self.end_min

    @staticmethod
    def parse(text: str) -> DailyWindow:
        """``"09:30-21:00"`` or ``"22:00-08:00"`` (across midnight)."""
        start, sep, end = text.partition("-")
        if not sep:
            raise ValueError(f"expected HH:MM-HH:MM, got {text!r}")
        return DailyWindow(_minutes(start), _minutes(end))

    def format(self) -> str:
        return f"{self.start_min // 60:02d}:{self.start_min % 60:02d}-{self.end_min // 60:02d}:{self.end_min % 60:02d}"


def _minutes(hhmm: str) -> int:
    hh, sep, mm = hhmm.strip().partition(":")
    if not sep or not hh.isdigit() or not mm.isdigit() or len(mm) != 2:
        raise ValueError(f"expected HH:MM, got {hhmm!r}")
    h, m = int(hh), int(mm)
    if h == 24 and m == 0:
        return 24 * 60
    if not (0 <= h < 24 and 0 <= m < 60):
        raise ValueError(f"time out of range: {hhmm!r}")
    return h * 60 + m


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a campaign may fire, in venue local time: inclusive date range, weekdays (0 = Monday), windows."""

    start_date: dt.date | None = None
    end_date: dt.date | None = None
    weekdays: tuple[int, ...] = ()  # empty: every day
    windows: tuple[DailyWindow, ...] = ()  # empty: all day


@dataclass(frozen=True, slots=True)
class Trigger:
    """What makes a shopper a candidate. ``kind`` picks which of the parameters apply:

    - ``enter``: entering one of the campaign's zones;
    - ``dwell``: staying ``dwell_s`` seconds in one of them (once per stay);
    - ``proximity``: coming within ``radius_m`` of one of them (re-armed after moving away);
    - ``exit_without``: leaving one of them without having entered any of ``without`` during the visit;
    - ``revisit``: entering one of them at least ``after_days`` after the shopper's previous time there.
    """

    kind: TriggerKind
    dwell_s: float = 0.0
    radius_m: float = 0.0
    without: tuple[str, ...] = ()
    after_days: float = 0.0


@dataclass(frozen=True, slots=True)
class Audience:
    """Rules over the shopper profile; an empty tuple means "any"."""

    channels: tuple[str, ...] = ()
    home_stores: tuple[str, ...] = ()
    min_visits: int = 0
    max_visits: int | None = None
    spend_levels: tuple[SpendLevel, ...] = ()
    segments: tuple[str, ...] = ()  # the shopper must be in at least one
    visitor: VisitorKind = "any"


@dataclass(frozen=True, slots=True)
class OfferContent:
    title: str
    body: str = ""
    value: str = ""  # human text such as "15% off"
    image_url: str | None = None


@dataclass(frozen=True, slots=True)
class Budget:
    max_vouchers: int | None = None  # offers sent over the campaign's life
    max_per_day: int | None = None  # offers sent per venue-local day


@dataclass(frozen=True, slots=True)
class ShopperCaps:
    """Per-shopper caps of this campaign (the venue policy caps across campaigns come on top)."""

    per_visit: int | None = 1
    per_day: int | None = 1
    total: int | None = None


@dataclass(frozen=True, slots=True)
class Campaign:
    id: str
    brand: str
    name: str
    zones: tuple[str, ...]
    trigger: Trigger
    offer: OfferContent
    schedule: Schedule = Schedule()
    audience: Audience = Audience()
    priority: int = 0
    budget: Budget = Budget()
    caps: ShopperCaps = ShopperCaps()
    status: Status = "draft"
    holdout_pct: float = DEFAULT_HOLDOUT_PCT
    voucher_ttl_s: float = DEFAULT_VOUCHER_TTL_S
    redeem_zones: tuple[str, ...] = ()  # extra tills (checkouts); the brand's and the campaign's zones always count
    cost_per_offer: float = 0.0  # what the brand pays per offer sent
    cost_per_redemption: float = 0.0  # what the brand funds per redemption (discount, fee)
    staff_share: float = DEFAULT_STAFF_SHARE  # fraction of a redemption's amount credited to the staff member
    created_t: float = 0.0


@dataclass(frozen=True, slots=True)
class ProtectionPolicy:
    """Venue-wide shopper protection: caps across all campaigns, cooldowns and quiet hours."""

    max_per_hour: int = DEFAULT_MAX_OFFERS_PER_HOUR
    max_per_day: int = DEFAULT_MAX_OFFERS_PER_DAY  # rolling 24 h
    max_per_visit: int = DEFAULT_MAX_OFFERS_PER_VISIT
    dismiss_cooldown_s: float = DEFAULT_DISMISS_COOLDOWN_S
    dismiss_campaign_cooldown_s: float = DEFAULT_DISMISS_CAMPAIGN_COOLDOWN_S
    offer_open_s: float = DEFAULT_OFFER_OPEN_S
    quiet_hours: tuple[DailyWindow, ...] = (DailyWindow(DEFAULT_QUIET_START_MIN, DEFAULT_QUIET_END_MIN),)
    visit_gap_s: float = VISIT_GAP_S


@dataclass(frozen=True, slots=True)
class ShopperProfile:
    """What the venue knows about a pseudonymous shopper (never a name, phone number or MAC address)."""

    shopper: str
    channel: str = "unknown"  # where the pseudonym came from: app, loyalty, wifi, ...
    home_store: str | None = None
    segments: tuple[str, ...] = ()
    visit_count: int = 0
    first_seen: float | None = None
    last_visit: float | None = None
    spend_total: float = 0.0
    redemptions: int = 0
    quiet_hours: tuple[DailyWindow, ...] = ()  # the shopper's own, on top of the venue's

    @property
    def spend_level(self) -> SpendLevel:
        return spend_level(self.spend_total)


def spend_level(total: float) -> SpendLevel:
    if total >= SPEND_LEVEL_HIGH:
        return "high"
    if total >= SPEND_LEVEL_MID:
        return "mid"
    return "low"


@dataclass(frozen=True, slots=True)
class Consent:
    """One statement of the shopper about marketing: for a brand, or for all (``scope == "*"``)."""

    shopper: str
    scope: str
    granted: bool
    t: float
    source: str = "app"


@dataclass(frozen=True, slots=True)
class Offer:
    """A sent offer: what the shopper sees, with the voucher code that redeems it."""

    offer_id: str
    campaign: str
    brand: str
    shopper: str
    t: float
    expires: float
    voucher: str
    content: OfferContent


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one campaign for one shopper at one trigger: ``reason == "sent"`` or why not."""

    t: float
    shopper: str
    campaign: str
    trigger: TriggerKind
    zone: str | None
    floor: str | None
    reason: Reason
    offer: Offer | None = None

    @property
    def sent(self) -> bool:
        return self.reason == "sent"

    def to_event(self) -> dict[str, Any]:
        """The ``{"type":"offer", ...}`` message for ``instore/v1/<venue>/events`` (sent decisions only)."""
        if self.offer is None:
            raise ValueError("only a sent decision has an offer event")
        o = self.offer
        return {
            "type": "offer", "device": self.shopper, "zone": self.zone, "floor": self.floor, "t": self.t,
            "campaign": o.campaign, "brand": o.brand, "offer_id": o.offer_id, "trigger": self.trigger,
            "title": o.content.title, "body": o.content.body, "value": o.content.value,
            "voucher": o.voucher, "expires": o.expires,
        }


@dataclass(frozen=True, slots=True)
class SentOffer:
    """A past offer as the engine remembers it for caps, cooldowns and attribution."""

    offer_id: str
    campaign: str
    t: float
    state: OfferState = "sent"
    state_t: float | None = None
    zone: str | None = None


@dataclass(frozen=True, slots=True)
class Exposure:
    """A shopper who was sent an offer (``holdout=False``) or held out (``holdout=True``) of a campaign."""

    campaign: str
    shopper: str
    t: float
    holdout: bool


@dataclass(frozen=True, slots=True)
class ShopperSnapshot:
    """What the store returns about one shopper when the engine first meets them."""

    profile: ShopperProfile
    consents: tuple[Consent, ...] = ()
    offers: tuple[SentOffer, ...] = ()  # recent offers, newest last
    zone_last_seen: dict[str, float] = field(default_factory=dict)
    exposures: tuple[Exposure, ...] = ()  # within the attribution window, not yet converted to a visit
    campaign_totals: dict[str, int] = field(default_factory=dict)  # offers ever sent, per campaign
