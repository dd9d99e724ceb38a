"""Pure campaign rules: triggers, eligibility, consent, caps, budgets, holdouts, vouchers and attribution.

The service builds one ``CampaignEngine(store, venue, secret)`` per venue and feeds it the live
locator's steps; see ``campaigns/README.md``.
"""

from campaigns.attribution import CampaignCounts, GroupCounts, build_report
from campaigns.eligibility import in_audience, latest_consents, may_market
from campaigns.engine import CampaignEngine, PositionColumns
from campaigns.errors import CampaignError, CampaignValidationError, VoucherError
from campaigns.holdout import holdout_bucket, in_holdout
from campaigns.model import (
    GLOBAL_SCOPE,
    REASONS,
    Audience,
    Budget,
    Campaign,
    Consent,
    DailyWindow,
    Decision,
    Exposure,
    Offer,
    OfferContent,
    OfferState,
    ProtectionPolicy,
    Reason,
    Schedule,
    SentOffer,
    ShopperCaps,
    ShopperProfile,
    ShopperSnapshot,
    Trigger,
    spend_level,
)
from campaigns.redemption import (
    REFUSAL_STATUS,
    Credit,
    RedemptionOutcome,
    RedemptionRequest,
    credit_split,
    precheck,
    refusal,
)
from campaigns.schedule import LocalTime, LocalTimes, in_quiet_hours, in_schedule
from campaigns.store import CampaignStore, EngineWrites, VisitConversion
from campaigns.validation import brand_zones, redeem_zones, validate_campaign
from campaigns.vouchers import VoucherClaims, mint_voucher, parse_voucher, shopper_tag, verify_voucher

__all__ = [
    "GLOBAL_SCOPE",
    "REASONS",
    "REFUSAL_STATUS",
    "Audience",
    "Budget",
    "Campaign",
    "CampaignCounts",
    "CampaignEngine",
    "CampaignError",
    "CampaignStore",
    "CampaignValidationError",
    "Consent",
    "Credit",
    "DailyWindow",
    "Decision",
    "EngineWrites",
    "Exposure",
    "GroupCounts",
    "LocalTime",
    "LocalTimes",
    "Offer",
    "OfferContent",
    "OfferState",
    "PositionColumns",
    "ProtectionPolicy",
    "Reason",
    "RedemptionOutcome",
    "RedemptionRequest",
    "Schedule",
    "SentOffer",
    "ShopperCaps",
    "ShopperProfile",
    "ShopperSnapshot",
    "Trigger",
    "VisitConversion",
    "VoucherClaims",
    "VoucherError",
    "brand_zones",
    "build_report",
    "credit_split",
    "holdout_bucket",
    "in_audience",
    "in_holdout",
    "in_quiet_hours",
    "in_schedule",
    "latest_consents",
    "may_market",
    "mint_voucher",
    "parse_voucher",
    "precheck",
    "redeem_zones",
    "refusal",
    "shopper_tag",
    "spend_level",
    "validate_campaign",
    "verify_voucher",
]
