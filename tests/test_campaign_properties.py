"""Properties of the engine under random event streams (Hypothesis): caps, budgets, consent and quiet
hours are never violated, and the engine decides exactly what the from-scratch reference decides."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns import (
    Budget,
    Campaign,
    CampaignEngine,
    Consent,
    DailyWindow,
    Decision,
    ProtectionPolicy,
    ShopperCaps,
    Trigger,
    latest_consents,
    may_market,
)
from campaigns.reference import ReferenceEngine
from positioning.live import ZoneEvent
from tests.fakes.campaign_factories import SECRET, T0, campaign, fix, venue
from tests.fakes.campaign_store import FakeCampaignStore

SHOPPERS = ("s1", "s2", "s3")
ZONES = ("store", "entrance", "checkout", "c-skincare", "c-fragrance", "c-makeup")
POLICY = ProtectionPolicy(max_per_hour=2, max_per_day=3, max_per_visit=2, dismiss_cooldown_s=600.0,
                          dismiss_campaign_cooldown_s=7200.0, offer_open_s=300.0,
                          quiet_hours=(DailyWindow.parse("21:00-09:00"),), visit_gap_s=1800.0)
CAMPAIGNS: tuple[Campaign, ...] = (
    campaign("skin-enter", caps=ShopperCaps(per_visit=1, per_day=2, total=3), budget=Budget(8, 4), priority=2),
    campaign("skin-dwell", trigger=Trigger("dwell", dwell_s=90.0), caps=ShopperCaps(None, None, None), priority=1),
    campaign("aura-enter", brand="aura", zones=("c-fragrance",), holdout_pct=30.0, priority=3),
    campaign("aura-near", brand="aura", zones=("c-fragrance",), trigger=Trigger("proximity", radius_m=4.0),
             caps=ShopperCaps(per_visit=2, per_day=None, total=None)),
    campaign("palette-back", brand="palette", zones=("c-makeup",), trigger=Trigger("revisit", after_days=0.5)),
    campaign("store-leave", brand="corner-store", zones=("store",),
             trigger=Trigger("exit_without", without=("checkout",)), caps=ShopperCaps(None, 1, None)),
)

step = st.tuples(
    st.sampled_from(("enter",) * 6 + ("exit",) * 4 + ("fix",) * 4 + ("advance",) * 2 + ("consent", "dismiss")),
    st.sampled_from(SHOPPERS),
    st.sampled_from(ZONES),
    st.sampled_from((0.0, 5.0, 30.0, 60.0, 200.0, 400.0, 900.0, 2400.0, 5 * 3600.0)),  # time to the next step
    st.sampled_from((True, True, True, False)),
    st.sampled_from(("*", "lumiere", "aura", "palette", "corner-store")),
    st.tuples(st.floats(0, 20), st.floats(0, 15)),
)


def run(engine: CampaignEngine, steps: list[Any]) -> tuple[list[Decision], list[tuple[str, str, bool, float]]]:
    """Feed the steps; returns the decisions and the consent statements. A decision's ``processed``
    time (when the engine made it, >= its trigger time ``t`` for late dwell timers) is kept in
    ``processed_at`` by object id."""
    t = T0 - 3 * 3600  # 09:00 local: the stream crosses the evening quiet hours into the next days
    out: list[Decision] = []
    statements: list[tuple[str, str, bool, float]] = []
    for shopper in SHOPPERS[:2]:  # two shoppers start opted in, the third only if a step says so
        engine.set_consent(Consent(shopper, "*", True, t - 1))
        statements.append((shopper, "*", True, t - 1))
    inside: dict[tuple[str, str], bool] = {}
    for kind, shopper, zone, dt_, flag, scope, (x, y) in steps:
        t += dt_
        n_before = len(out)
        if kind == "enter" and not inside.get((shopper, zone)):
            inside[(shopper, zone)] = True
            out += engine.on_event(ZoneEvent("zone_enter", shopper, t, zone, "L1"), t)
        elif kind == "exit" and inside.get((shopper, zone)):
            inside[(shopper, zone)] = False
            out += engine.on_event(ZoneEvent("zone_exit", shopper, t, zone, "L1"), t)
        elif kind == "fix":
            out += engine.on_fixes([fix(shopper, t, x, y)], t)
        elif kind == "consent":
            engine.set_consent(Consent(shopper, scope, flag, t))
            statements.append((shopper, scope, flag, t))
        elif kind == "dismiss":
            mine = [d for d in out if d.shopper == shopper and d.offer is not None]
            if mine and mine[-1].offer is not None:
                engine.offer_state(shopper, mine[-1].offer.offer_id, "dismissed", t)
        else:
            out += engine.advance(t)
        for d in out[n_before:]:
            processed_at[id(d)] = t
    return out, statements


processed_at: dict[int, float] = {}


def windows_ok(times: list[float], width: float, limit: int) -> bool:
    times = sorted(times)
    return all(sum(1 for u in times[i:] if u < s + width) <= limit for i, s in enumerate(times))


@settings(max_examples=50, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=40, max_size=150))
def test_random_streams_never_break_a_rule_and_match_the_reference(steps: list[Any]) -> None:
    eng = CampaignEngine(FakeCampaignStore(), venue(), SECRET, policy=POLICY, now=T0)
    ref = ReferenceEngine(FakeCampaignStore(), venue(), SECRET, policy=POLICY, now=T0)
    for c in CAMPAIGNS:
        eng.put_campaign(c)
        ref.put_campaign(c)
    got, statements = run(eng, steps)
    want, _ = run(ref, steps)
    assert [(d.t, d.shopper, d.campaign, d.reason) for d in got] == [(d.t, d.shopper, d.campaign, d.reason)
                                                                       for d in want]
    sent = [d for d in got if d.sent]
    by_campaign = {c.id: c for c in CAMPAIGNS}
    local = eng.local_times
    for shopper in SHOPPERS:
        mine = [d.t for d in sent if d.shopper == shopper]
        assert windows_ok(mine, 3600.0, POLICY.max_per_hour)
        assert windows_ok(mine, 86400.0, POLICY.max_per_day)
        for cid, c in by_campaign.items():
            mine_c = [d.t for d in sent if d.shopper == shopper and d.campaign == cid]
            if c.caps.per_day is not None:
                assert windows_ok(mine_c, 86400.0, c.caps.per_day)
            if c.caps.total is not None:
                assert len(mine_c) <= c.caps.total
    for cid, c in by_campaign.items():
        of_c = [d for d in sent if d.campaign == cid]
        if c.budget.max_vouchers is not None:
            assert len(of_c) <= c.budget.max_vouchers
        if c.budget.max_per_day is not None:
            days = [local.day(d.t) for d in of_c]
            assert all(days.count(day) <= c.budget.max_per_day for day in days)
    for d in sent:
        # Consent is checked when the engine decides (a late dwell timer fires with the consent of then).
        said = [Consent(s, sc, g, t) for s, sc, g, t in statements if s == d.shopper and t <= processed_at[id(d)]]
        assert may_market(latest_consents(said), by_campaign[d.campaign].brand), d
        assert not POLICY.quiet_hours[0].contains(local.at(d.t).minute), d
