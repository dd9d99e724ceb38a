"""Tuning constants of the campaign engine, each with why it has its value."""

from __future__ import annotations

from typing import Final

HOUR_S: Final = 3600.0
DAY_S: Final = 86400.0

# Shopper protection defaults (venue-wide; a venue may pass its own ProtectionPolicy).
DEFAULT_MAX_OFFERS_PER_HOUR: Final = 2  # more than two pushes an hour reads as spam in app-store reviews
DEFAULT_MAX_OFFERS_PER_DAY: Final = 5  # a long mall day still gets a handful, not a stream
DEFAULT_MAX_OFFERS_PER_VISIT: Final = 3  # a typical 1-2 h visit passes a dozen counters; three offers is plenty
DEFAULT_DISMISS_COOLDOWN_S: Final = 1800.0  # after "not now", leave the shopper alone for half an hour
DEFAULT_DISMISS_CAMPAIGN_COOLDOWN_S: Final = 7 * 86400.0  # a dismissed campaign stays away a week
DEFAULT_OFFER_OPEN_S: Final = 900.0  # one offer at a time: an undismissed offer occupies the screen 15 min
DEFAULT_QUIET_START_MIN: Final = 22 * 60  # no pushes from 22:00 ...
DEFAULT_QUIET_END_MIN: Final = 8 * 60  # ... to 08:00 local time (late-night shopping streets, staff)
VISIT_GAP_S: Final = 1800.0  # 30 min without any event ends a venue visit (matches typical analytics)

# Campaign defaults.
DEFAULT_HOLDOUT_PCT: Final = 10.0  # 10% holdout gives a usable uplift estimate at a small opportunity cost
DEFAULT_VOUCHER_TTL_S: Final = 86400.0  # in-store offers are for today's visit
DEFAULT_STAFF_SHARE: Final = 0.1  # share of a redemption's amount credited to the staff member who served it
MAX_HOLDOUT_PCT: Final = 50.0  # beyond half, the campaign is an experiment, not a campaign

# Triggers.
PROXIMITY_HYSTERESIS_M: Final = 1.5  # re-arm a proximity trigger only after moving this far beyond its radius
MAX_PROXIMITY_RADIUS_M: Final = 50.0  # a counter promotion farther away than this is not "proximity"

# Attribution.
ATTRIBUTION_WINDOW_S: Final = 7 * 86400.0  # a visit or purchase within a week after the offer counts for it
SPEND_LEVEL_MID: Final = 500.0  # lifetime spend (venue currency) from which a shopper is "mid"
SPEND_LEVEL_HIGH: Final = 3000.0  # ... and from which "high"

# Engine bookkeeping.
SHOPPER_IDLE_EVICT_S: Final = 2 * 86400.0  # in-memory shopper state older than this is reloaded from the store
LOCAL_TIME_CACHE_MAX: Final = 4096  # minutes of local-time conversions kept (events arrive roughly in order)

# Vouchers.
VOUCHER_PREFIX: Final = "IS1"  # format version: any till in the venue recognises and verifies this prefix
VOUCHER_MAC_BYTES: Final = 10  # 80-bit truncated HMAC-SHA256: forgery odds 2^-80 per try
VOUCHER_TAG_BYTES: Final = 5  # 40-bit keyed shopper tag binds a code to its shopper without naming them
