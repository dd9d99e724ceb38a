"""Attribution: from raw counts of one campaign to the report brands read (rates, uplift, cost).

The store counts (SQL over decisions, offers, exposures, redemptions and purchases); this module
turns counts into figures, so the arithmetic is tested without a database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from campaigns.model import Campaign


@dataclass(frozen=True, slots=True)
class GroupCounts:
    """One experiment arm: shoppers exposed, of whom visited a target zone / bought at a campaign till after."""

    shoppers: int = 0
    visited: int = 0
    bought: int = 0


@dataclass(frozen=True, slots=True)
class CampaignCounts:
    decisions: Mapping[str, int] = field(default_factory=dict)  # reason -> count
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    dismissed: int = 0
    redeemed: int = 0
    revenue: float = 0.0
    treated: GroupCounts = GroupCounts()
    holdout: GroupCounts = GroupCounts()
    by_counter: tuple[tuple[str, int, int, float], ...] = ()  # zone, sent, redeemed, revenue
    by_store: tuple[tuple[str, int, float, float], ...] = ()  # store, redemptions, revenue, credited
    by_staff: tuple[tuple[str, int, float, float], ...] = ()  # staff, redemptions, revenue, credited


def _rate(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def _uplift(treated: float | None, holdout: float | None) -> float | None:
    return None if treated is None or holdout is None else treated - holdout


def build_report(campaign: Campaign, counts: CampaignCounts) -> dict[str, Any]:
    c = counts
    cost = c.sent * campaign.cost_per_offer + c.redeemed * campaign.cost_per_redemption
    t_visit, h_visit = _rate(c.treated.visited, c.treated.shoppers), _rate(c.holdout.visited, c.holdout.shoppers)
    t_buy, h_buy = _rate(c.treated.bought, c.treated.shoppers), _rate(c.holdout.bought, c.holdout.shoppers)
    visit_uplift = _uplift(t_visit, h_visit)
    buy_uplift = _uplift(t_buy, h_buy)
    return {
        "campaign": campaign.id,
        "brand": campaign.brand,
        "status": campaign.status,
        "decisions": {"total": sum(c.decisions.values()), **dict(sorted(c.decisions.items()))},
        "offers": {"sent": c.sent, "delivered": c.delivered, "opened": c.opened, "dismissed": c.dismissed,
                   "redeemed": c.redeemed},
        "revenue": round(c.revenue, 2),
        "cost": round(cost, 2),
        "cost_per_redemption": None if c.redeemed == 0 else round(cost / c.redeemed, 2),
        "redemption_rate": _rate(c.redeemed, c.sent),
        "groups": {
            "treated": {"shoppers": c.treated.shoppers, "visit_rate": t_visit, "conversion_rate": t_buy},
            "holdout": {"shoppers": c.holdout.shoppers, "visit_rate": h_visit, "conversion_rate": h_buy},
        },
        "uplift": {
            "visit_rate": visit_uplift,
            "conversion_rate": buy_uplift,
            "incremental_visits": None if visit_uplift is None else round(visit_uplift * c.treated.shoppers, 2),
            "incremental_conversions": None if buy_uplift is None else round(buy_uplift * c.treated.shoppers, 2),
        },
        "by_counter": [{"zone": z, "sent": s, "redeemed": r, "revenue": round(v, 2)} for z, s, r, v in c.by_counter],
        "by_store": [{"store": st, "redemptions": n, "revenue": round(v, 2), "credited": round(cr, 2)}
                     for st, n, v, cr in c.by_store],
        "by_staff": [{"staff": st, "redemptions": n, "revenue": round(v, 2), "credited": round(cr, 2)}
                     for st, n, v, cr in c.by_staff],
    }
