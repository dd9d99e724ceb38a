"""The rules evaluated the obvious way: every count recomputed from the full decision log.

``ReferenceEngine`` is the campaign engine with its incremental state (zone index, per-shopper
counters, per-campaign budget counters) replaced by linear scans over all campaigns and over every
decision made so far. It is the benchmark's naive baseline and the
tests' differential oracle: on the same input it must decide exactly what ``CampaignEngine`` does.
Triggers, visits, stays, consents, dismissals, closing an offer and the shopper profile are shared code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from campaigns.const import DAY_S, HOUR_S
from campaigns.eligibility import in_audience, may_market
from campaigns.engine import CampaignEngine, _Shopper
from campaigns.holdout import in_holdout
from campaigns.model import Campaign, Decision, Reason, TriggerKind
from campaigns.schedule import LocalTime, in_quiet_hours, in_schedule


class ReferenceEngine(CampaignEngine):
    """Same decisions as ``CampaignEngine``, computed from scratch for every check (slow by design)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.log: list[Decision] = []
        super().__init__(*args, **kwargs)

    def _candidates(self, zone: str, kind: TriggerKind) -> tuple[Campaign, ...] | None:
        found = [c for c in self._campaigns.values()
                 if c.status in ("active", "paused") and zone in c.zones and c.trigger.kind == kind]
        return tuple(sorted(found, key=lambda c: (-c.priority, c.id))) or None

    def _decide(self, s: _Shopper, shopper: str, cands: Sequence[Campaign], trigger: TriggerKind,
                zone: str | None, floor: str | None, t: float, out: list[Decision]) -> None:
        before = len(out)
        super()._decide(s, shopper, cands, trigger, zone, floor, t, out)
        self.log.extend(out[before:])

    def _check(self, c: Campaign, s: _Shopper, shopper: str, t: float, local: LocalTime, outranked: bool) -> Reason:
        if c.status != "active":
            return "paused"
        if not in_schedule(c.schedule, local):
            return "out_of_schedule"
        sent = [d for d in self.log if d.reason == "sent"]
        of_campaign = [d for d in sent if d.campaign == c.id]
        if c.budget.max_vouchers is not None and len(of_campaign) >= c.budget.max_vouchers:
            return "budget_total"
        if c.budget.max_per_day is not None and sum(
                self._local.day(d.t) == local.day for d in of_campaign) >= c.budget.max_per_day:
            return "budget_daily"
        if not may_market(s.consents, c.brand):
            return "no_consent"
        if not in_audience(c.audience, s.profile):
            return "audience"
        if outranked:
            return "outranked"
        p = self.policy
        if in_quiet_hours(p.quiet_hours, local) or in_quiet_hours(s.profile.quiet_hours, local):
            return "quiet_hours"
        if t < s.dismissed_until or t < s.campaign_dismissed_until.get(c.id, -1e18):
            return "dismissed_cooldown"
        mine = [d for d in sent if d.shopper == shopper]
        mine_c = [d for d in mine if d.campaign == c.id]
        if c.caps.per_visit is not None and sum(d.t >= s.visit_start for d in mine_c) >= c.caps.per_visit:
            return "cap_campaign_visit"
        if c.caps.per_day is not None and sum(d.t > t - DAY_S for d in mine_c) >= c.caps.per_day:
            return "cap_campaign_day"
        if c.caps.total is not None and len(mine_c) >= c.caps.total:
            return "cap_campaign_total"
        if sum(d.t > t - HOUR_S for d in mine) >= p.max_per_hour:
            return "cap_hour"
        if sum(d.t > t - DAY_S for d in mine) >= p.max_per_day:
            return "cap_day"
        if sum(d.t >= s.visit_start for d in mine) >= p.max_per_visit:
            return "cap_visit"
        if mine:
            last = max(mine, key=lambda d: d.t)
            if last.offer is not None and s.open_offer == last.offer.offer_id and t < last.t + p.offer_open_s:
                return "offer_open"
        if in_holdout(c.id, shopper, c.holdout_pct):
            return "holdout"
        return "sent"
