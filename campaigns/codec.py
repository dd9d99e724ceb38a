"""Campaigns and profiles to and from plain JSON-able dicts (for the store and the HTTP API)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, cast

from campaigns.model import (
    Audience,
    Budget,
    Campaign,
    DailyWindow,
    OfferContent,
    Schedule,
    ShopperCaps,
    ShopperProfile,
    SpendLevel,
    Status,
    Trigger,
    TriggerKind,
    VisitorKind,
)


def campaign_to_dict(c: Campaign) -> dict[str, Any]:
    s = c.schedule
    return {
        "id": c.id, "brand": c.brand, "name": c.name, "zones": list(c.zones),
        "trigger": {"kind": c.trigger.kind, "dwell_s": c.trigger.dwell_s, "radius_m": c.trigger.radius_m,
                    "without": list(c.trigger.without), "after_days": c.trigger.after_days},
        "offer": {"title": c.offer.title, "body": c.offer.body, "value": c.offer.value,
                  "image_url": c.offer.image_url},
        "schedule": {"start_date": None if s.start_date is None else s.start_date.isoformat(),
                     "end_date": None if s.end_date is None else s.end_date.isoformat(),
                     "weekdays": list(s.weekdays), "windows": [w.format() for w in s.windows]},
        "audience": {"channels": list(c.audience.channels), "home_stores": list(c.audience.home_stores),
                     "min_visits": c.audience.min_visits, "max_visits": c.audience.max_visits,
                     "spend_levels": list(c.audience.spend_levels), "segments": list(c.audience.segments),
                     "visitor": c.audience.visitor},
        "priority": c.priority,
        "budget": {"max_vouchers": c.budget.max_vouchers, "max_per_day": c.budget.max_per_day},
        "caps": {"per_visit": c.caps.per_visit, "per_day": c.caps.per_day, "total": c.caps.total},
        "status": c.status, "holdout_pct": c.holdout_pct, "voucher_ttl_s": c.voucher_ttl_s,
        "redeem_zones": list(c.redeem_zones), "cost_per_offer": c.cost_per_offer,
        "cost_per_redemption": c.cost_per_redemption, "staff_share": c.staff_share, "created_t": c.created_t,
    }


def _date(v: Any) -> dt.date | None:
    return None if v is None else dt.date.fromisoformat(str(v))


def campaign_from_dict(d: Mapping[str, Any]) -> Campaign:
    """The inverse of ``campaign_to_dict``; missing optional parts take their defaults."""
    tr = d["trigger"]
    of = d["offer"]
    sc = d.get("schedule") or {}
    au = d.get("audience") or {}
    bu = d.get("budget") or {}
    ca = d.get("caps") or {}
    defaults = Campaign("x", "x", "x", (), Trigger("enter"), OfferContent("x"))
    caps_default = ShopperCaps()
    return Campaign(
        id=str(d["id"]), brand=str(d["brand"]), name=str(d.get("name") or d["id"]),
        zones=tuple(str(z) for z in d["zones"]),
        trigger=Trigger(kind=cast(TriggerKind, tr["kind"]), dwell_s=float(tr.get("dwell_s") or 0.0),
                        radius_m=float(tr.get("radius_m") or 0.0),
                        without=tuple(str(z) for z in tr.get("without") or ()),
                        after_days=float(tr.get("after_days") or 0.0)),
        offer=OfferContent(title=str(of["title"]), body=str(of.get("body") or ""), value=str(of.get("value") or ""),
                           image_url=of.get("image_url")),
        schedule=Schedule(start_date=_date(sc.get("start_date")), end_date=_date(sc.get("end_date")),
                          weekdays=tuple(int(w) for w in sc.get("weekdays") or ()),
                          windows=tuple(DailyWindow.parse(str(w)) for w in sc.get("windows") or ())),
        audience=Audience(channels=tuple(au.get("channels") or ()), home_stores=tuple(au.get("home_stores") or ()),
                          min_visits=int(au.get("min_visits") or 0), max_visits=au.get("max_visits"),
                          spend_levels=tuple(cast(SpendLevel, x) for x in au.get("spend_levels") or ()),
                          segments=tuple(au.get("segments") or ()),
                          visitor=cast(VisitorKind, au.get("visitor") or "any")),
        priority=int(d.get("priority") or 0),
        budget=Budget(max_vouchers=bu.get("max_vouchers"), max_per_day=bu.get("max_per_day")),
        caps=ShopperCaps(per_visit=ca.get("per_visit", caps_default.per_visit),
                         per_day=ca.get("per_day", caps_default.per_day), total=ca.get("total")),
        status=cast(Status, d.get("status") or "draft"),
        holdout_pct=float(d.get("holdout_pct", defaults.holdout_pct)),
        voucher_ttl_s=float(d.get("voucher_ttl_s") or defaults.voucher_ttl_s),
        redeem_zones=tuple(str(z) for z in d.get("redeem_zones") or ()),
        cost_per_offer=float(d.get("cost_per_offer") or 0.0),
        cost_per_redemption=float(d.get("cost_per_redemption") or 0.0),
        staff_share=float(d.get("staff_share", defaults.staff_share)),
        created_t=float(d.get("created_t") or 0.0),
    )


def profile_to_dict(p: ShopperProfile) -> dict[str, Any]:
    return {"shopper": p.shopper, "channel": p.channel, "home_store": p.home_store, "segments": list(p.segments),
            "visit_count": p.visit_count, "first_seen": p.first_seen, "last_visit": p.last_visit,
            "spend_total": p.spend_total, "spend_level": p.spend_level, "redemptions": p.redemptions,
            "quiet_hours": [w.format() for w in p.quiet_hours]}
