"""The campaign engine: every trigger, and every rule with the reason it records."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from campaigns import (
    Audience,
    Budget,
    CampaignValidationError,
    DailyWindow,
    Decision,
    ProtectionPolicy,
    Schedule,
    ShopperCaps,
    ShopperProfile,
    Trigger,
    verify_voucher,
)
from campaigns.engine import PositionColumns
from positioning.live import Fix, StepResult, ZoneEvent
from tests.fakes.campaign_factories import (
    SECRET,
    T0,
    campaign,
    enter,
    fix,
    leave,
    local_t,
    make_engine,
    opt_in,
)

NO_LIMITS = ProtectionPolicy(max_per_hour=100, max_per_day=100, max_per_visit=100, offer_open_s=0.0, quiet_hours=())


def reasons(decisions: list[Decision]) -> list[tuple[str, str]]:
    return [(d.campaign, d.reason) for d in decisions]


def test_enter_sends_an_offer_with_a_voucher_bound_to_campaign_and_shopper() -> None:
    eng, store = make_engine(campaign())
    opt_in(eng, "s1")
    [d] = eng.on_event(enter("s1", "c-skincare", T0), T0)
    assert d.sent and d.offer is not None and d.trigger == "enter"
    claims = verify_voucher(SECRET, d.offer.voucher, T0 + 60, campaign="skin-enter", shopper="s1")
    assert claims.offer_id == d.offer.offer_id
    event = d.to_event()
    assert event["type"] == "offer" and event["device"] == "s1" and event["voucher"] == d.offer.voucher
    assert store.decisions == [d]


def test_zone_without_campaign_and_draft_or_ended_campaigns_make_no_decisions() -> None:
    eng, _ = make_engine(campaign("draft", status="draft"), campaign("ended", status="ended"))
    opt_in(eng, "s1")
    assert eng.on_event(enter("s1", "c-skincare", T0), T0) == []
    assert eng.on_event(enter("s1", "c-makeup", T0 + 1), T0 + 1) == []


def test_paused_campaign_is_recorded_as_paused() -> None:
    eng, _ = make_engine(campaign(status="paused"))
    opt_in(eng, "s1")
    assert reasons(eng.on_event(enter("s1", "c-skincare", T0), T0)) == [("skin-enter", "paused")]


@pytest.mark.parametrize(("statements", "expected"), [
    ([], "no_consent"),
    ([("*", True, 1.0)], "sent"),
    ([("lumiere", True, 1.0)], "sent"),
    ([("aura", True, 1.0)], "no_consent"),  # consent for another brand does not count
    ([("*", True, 1.0), ("*", False, 2.0)], "no_consent"),  # revoked
    ([("lumiere", True, 1.0), ("*", False, 2.0)], "no_consent"),  # a later global opt-out wins
    ([("*", False, 1.0), ("lumiere", True, 2.0)], "sent"),  # a later brand opt-in wins for that brand
    ([("*", True, 1.0), ("lumiere", False, 2.0)], "no_consent"),
])
def test_consent_newest_statement_about_brand_or_all_brands_decides(
        statements: list[tuple[str, bool, float]], expected: str) -> None:
    eng, _ = make_engine(campaign())
    for scope, granted, dt_ in statements:
        opt_in(eng, "s1", scope, T0 - 100 + dt_, granted)
    [d] = eng.on_event(enter("s1", "c-skincare", T0), T0)
    assert d.reason == expected


def test_campaign_must_fit_the_venue() -> None:
    eng, _ = make_engine()
    with pytest.raises(CampaignValidationError, match=r"zones\[0\]: unknown zone 'nope'"):
        eng.put_campaign(campaign(zones=("nope",)))
    with pytest.raises(CampaignValidationError, match=r"zones\[0\]: zone 'c-makeup' belongs to brand 'palette'"):
        eng.put_campaign(campaign(zones=("c-makeup",)))
    with pytest.raises(CampaignValidationError, match=r"trigger\.dwell_s"):
        eng.put_campaign(campaign(trigger=Trigger("dwell")))
    with pytest.raises(CampaignValidationError, match=r"trigger\.without"):
        eng.put_campaign(campaign(trigger=Trigger("exit_without")))


def test_schedule_date_range_weekdays_and_windows_in_local_time() -> None:
    sched = Schedule(start_date=local_date(2025, 6, 2), end_date=local_date(2025, 6, 8), weekdays=(0, 1, 2, 3, 4),
                     windows=(DailyWindow.parse("10:00-14:00"),))
    eng, _ = make_engine(campaign(schedule=sched, caps=ShopperCaps(None, None, None)), policy=NO_LIMITS)
    opt_in(eng, "s1")
    cases = [
        (local_t(2025, 6, 2, 10, 0), "sent"),
        (local_t(2025, 6, 2, 13, 59), "sent"),
        (local_t(2025, 6, 2, 14, 0), "out_of_schedule"),  # window end is exclusive
        (local_t(2025, 6, 7, 12, 0), "out_of_schedule"),  # Saturday
        (local_t(2025, 6, 9, 12, 0), "out_of_schedule"),  # after end_date
    ]
    for t, expected in cases:
        [d] = eng.on_event(enter("s1", "c-skincare", t), t)
        assert d.reason == expected, (t, d)


def local_date(y: int, m: int, d: int) -> dt.date:
    return dt.date(y, m, d)


def test_budget_total_and_daily_budget_resetting_at_local_midnight() -> None:
    eng, _ = make_engine(campaign(budget=Budget(max_vouchers=3, max_per_day=2)), policy=NO_LIMITS)
    day1 = local_t(2025, 6, 2, 12)
    day2 = local_t(2025, 6, 3, 12)
    got = []
    for i, t in enumerate([day1, day1 + 1, day1 + 2, day2, day2 + 1]):
        opt_in(eng, f"s{i}")
        [d] = eng.on_event(enter(f"s{i}", "c-skincare", t), t)
        got.append(d.reason)
    assert got == ["sent", "sent", "budget_daily", "sent", "budget_total"]


def test_audience_rules_over_the_profile() -> None:
    aud = Audience(channels=("app",), spend_levels=("mid", "high"), segments=("beauty",), visitor="repeat")
    eng, st = make_engine(campaign(audience=aud))
    for s in ("ok", "web", "poor", "other", "first"):
        opt_in(eng, s)
    eng.set_profile(ShopperProfile("ok", channel="app", segments=("beauty", "x")))
    eng.set_profile(ShopperProfile("web", channel="web", segments=("beauty",)))
    eng.set_profile(ShopperProfile("poor", channel="app", segments=("beauty",)))
    eng.set_profile(ShopperProfile("other", channel="app", segments=("sport",)))
    eng.set_profile(ShopperProfile("first", channel="app", segments=("beauty",)))
    store = st  # seed history the API does not write
    for s, spend, visits in (("ok", 800.0, 3), ("web", 800.0, 3), ("poor", 10.0, 3), ("other", 800.0, 3),
                             ("first", 5000.0, 0)):
        store.profiles[s] = replace(store.profiles[s], spend_total=spend, visit_count=visits)
        eng.forget(s)
    got = {s: eng.on_event(enter(s, "c-skincare", T0), T0)[0].reason for s in ("ok", "web", "poor", "other", "first")}
    assert got == {"ok": "sent", "web": "audience", "poor": "audience", "other": "audience", "first": "audience"}


def test_conflict_resolution_by_priority_then_id_and_outranked_reason() -> None:
    a = campaign("a-low", priority=1)
    b = campaign("b-high", priority=5)
    c = campaign("c-high", priority=5)
    eng, _ = make_engine(a, b, c)
    opt_in(eng, "s1")
    assert reasons(eng.on_event(enter("s1", "c-skincare", T0), T0)) == [
        ("b-high", "sent"), ("c-high", "outranked"), ("a-low", "outranked")]


def test_one_offer_at_a_time_until_it_closes() -> None:
    skin = campaign("skin", caps=ShopperCaps(None, None, None))
    aura = campaign("aura", brand="aura", zones=("c-fragrance",), caps=ShopperCaps(None, None, None))
    policy = replace(NO_LIMITS, offer_open_s=600.0, dismiss_cooldown_s=0.0)
    eng, _ = make_engine(skin, aura, policy=policy)
    opt_in(eng, "s1")
    [first] = eng.on_event(enter("s1", "c-skincare", T0), T0)
    assert first.sent
    assert reasons(eng.on_event(enter("s1", "c-fragrance", T0 + 60), T0 + 60)) == [("aura", "offer_open")]
    assert reasons(eng.on_event(enter("s1", "c-fragrance", T0 + 600), T0 + 600)) == [("aura", "sent")]
    assert first.offer is not None


def test_dismissal_cools_down_all_campaigns_and_the_dismissed_one_longer() -> None:
    skin = campaign("skin", caps=ShopperCaps(None, None, None))
    aura = campaign("aura", brand="aura", zones=("c-fragrance",), caps=ShopperCaps(None, None, None))
    policy = replace(NO_LIMITS, dismiss_cooldown_s=1800.0, dismiss_campaign_cooldown_s=86400.0)
    eng, _ = make_engine(skin, aura, policy=policy)
    opt_in(eng, "s1")
    [d] = eng.on_event(enter("s1", "c-skincare", T0), T0)
    assert d.offer is not None
    eng.offer_state("s1", d.offer.offer_id, "dismissed", T0 + 10)
    assert reasons(eng.on_event(enter("s1", "c-fragrance", T0 + 100), T0 + 100)) == [("aura", "dismissed_cooldown")]
    assert reasons(eng.on_event(enter("s1", "c-fragrance", T0 + 1811), T0 + 1811)) == [("aura", "sent")]
    t = T0 + 2 * 3600
    assert reasons(eng.on_event(enter("s1", "c-skincare", t), t)) == [("skin", "dismissed_cooldown")]
    t = T0 + 86400 + 11
    assert reasons(eng.on_event(enter("s1", "c-skincare", t), t)) == [("skin", "sent")]


def test_campaign_caps_per_visit_day_and_total() -> None:
    eng, _ = make_engine(campaign(caps=ShopperCaps(per_visit=1, per_day=2, total=3)), policy=NO_LIMITS)
    opt_in(eng, "s1")
    day = 86400.0
    times = [T0, T0 + 60, T0 + 2 * 3600, T0 + 4 * 3600, T0 + day + 10, T0 + 2 * day + 10]
    got = [eng.on_event(enter("s1", "c-skincare", t), t)[0].reason for t in times]
    # visits are split by the 30-minute gap: 1st sent, same visit capped, 2nd visit sent, 3rd visit: 2 today,
    # next day sent (total 3), then the lifetime cap.
    assert got == ["sent", "cap_campaign_visit", "sent", "cap_campaign_day", "sent", "cap_campaign_total"]


def test_global_caps_per_hour_day_and_visit_across_campaigns() -> None:
    zones = [("lumiere", "c-skincare"), ("aura", "c-fragrance"), ("palette", "c-makeup")]
    cs = [campaign(f"k{i}-{b}", brand=b, zones=(z,), caps=ShopperCaps(None, None, None))
          for i, (b, z) in enumerate(zones)]
    policy = replace(NO_LIMITS, max_per_hour=2, max_per_day=3, max_per_visit=100)
    eng, _ = make_engine(*cs, policy=policy)
    opt_in(eng, "s1")
    seq = [(T0, "c-skincare"), (T0 + 10, "c-fragrance"), (T0 + 20, "c-makeup"), (T0 + 3601, "c-makeup"),
           (T0 + 3700, "c-skincare")]
    got = [eng.on_event(enter("s1", z, t), t)[0].reason for t, z in seq]
    assert got == ["sent", "sent", "cap_hour", "sent", "cap_day"]
    eng2, _ = make_engine(*cs, policy=replace(NO_LIMITS, max_per_visit=1))
    opt_in(eng2, "s1")
    got = [eng2.on_event(enter("s1", z, t), t)[0].reason for t, z in seq[:2]]
    assert got == ["sent", "cap_visit"]


def test_holdout_shoppers_are_recorded_not_sent() -> None:
    from campaigns import in_holdout

    eng, _ = make_engine(campaign(holdout_pct=50.0))
    shoppers = [f"p{i}" for i in range(40)]
    got = {}
    for i, s in enumerate(shoppers):
        opt_in(eng, s)
        got[s] = eng.on_event(enter(s, "c-skincare", T0 + i), T0 + i)[0].reason
    for s in shoppers:
        assert got[s] == ("holdout" if in_holdout("skin-enter", s, 50.0) else "sent")
    assert 5 < sum(r == "holdout" for r in got.values()) < 35


def test_dwell_fires_once_per_stay_after_the_dwell_time() -> None:
    eng, _ = make_engine(campaign(trigger=Trigger("dwell", dwell_s=120.0), caps=ShopperCaps(None, None, None)),
                         policy=NO_LIMITS)
    opt_in(eng, "s1")
    assert eng.on_event(enter("s1", "c-skincare", T0), T0) == []
    assert eng.advance(T0 + 119) == []
    [d] = eng.advance(T0 + 125)
    assert d.sent and d.trigger == "dwell" and d.t == T0 + 120
    assert eng.advance(T0 + 500) == []
    # A short stay does not fire.
    eng.on_event(enter("s1", "c-skincare", T0 + 1000), T0 + 1000)
    assert eng.on_event(leave("s1", "c-skincare", T0 + 1100), T0 + 1100) == []
    assert eng.advance(T0 + 2000) == []


def test_dwell_learned_from_a_positioning_dwell_event_after_a_restart() -> None:
    eng, _ = make_engine(campaign(trigger=Trigger("dwell", dwell_s=120.0)), policy=NO_LIMITS)
    opt_in(eng, "s1")
    ev = ZoneEvent("dwell", "s1", T0 + 60, "c-skincare", "L1", {"dwell_s": 60.0})
    assert eng.on_event(ev, T0 + 60) == []
    [d] = eng.advance(T0 + 130)
    assert d.sent and d.t == T0 + 120


def test_proximity_fires_when_within_radius_and_rearms_after_moving_away() -> None:
    eng, _ = make_engine(campaign(trigger=Trigger("proximity", radius_m=3.0), caps=ShopperCaps(None, None, None)),
                         policy=NO_LIMITS)
    opt_in(eng, "s1")
    # Skincare counter spans x 14..19.5, y 7..10.5.
    assert eng.on_fixes([fix("s1", T0, 5.0, 8.0)], T0) == []  # 9 m away
    [d] = eng.on_fixes([fix("s1", T0 + 1, 11.5, 8.0)], T0 + 1)  # 2.5 m away
    assert d.sent and d.trigger == "proximity" and d.zone == "c-skincare"
    assert eng.on_fixes([fix("s1", T0 + 2, 12.0, 8.0)], T0 + 2) == []  # still near: no repeat
    assert eng.on_fixes([fix("s1", T0 + 3, 9.0, 8.0)], T0 + 3) == []  # 5 m: beyond radius + hysteresis
    [d2] = eng.on_fixes([fix("s1", T0 + 4, 15.0, 8.0)], T0 + 4)  # inside: distance 0
    assert d2.sent


def test_proximity_state_across_windows_campaign_edits_and_forgetting() -> None:
    near = Trigger("proximity", radius_m=3.0)
    eng, _ = make_engine(campaign("a-near", trigger=near, caps=ShopperCaps(None, None, None)), policy=NO_LIMITS)
    opt_in(eng, "s1")
    opt_in(eng, "s2")
    # Two positions of one shopper in one window: fires once; the last position (far) re-arms next window.
    out = eng.on_window([], T0, PositionColumns.from_fixes([fix("s1", T0, 11.5, 8.0), fix("s1", T0 + 0.5, 15.0, 8.0)]))
    assert reasons(out) == [("a-near", "sent")]
    assert eng.on_fixes([fix("s1", T0 + 1, 15.0, 8.0)], T0 + 1) == []
    # A campaign added to the same zone while the shopper stands there fires on the next position; the
    # one that already fired does not fire again.
    eng.put_campaign(campaign("b-near", trigger=near, caps=ShopperCaps(None, None, None)))
    assert reasons(eng.on_fixes([fix("s1", T0 + 2, 15.0, 8.0)], T0 + 2)) == [("b-near", "sent")]
    assert eng.on_fixes([fix("s1", T0 + 3, 15.0, 8.0)], T0 + 3) == []
    # Seen on another floor: both re-arm.
    upstairs = Fix("s1", T0 + 4, 15.0, 8.0, "L2", 1.0, None)
    assert eng.on_fixes([upstairs], T0 + 4) == []
    assert sorted(reasons(eng.on_fixes([fix("s1", T0 + 5, 15.0, 8.0)], T0 + 5))) == [("a-near", "sent"),
                                                                                    ("b-near", "outranked")]
    # Another shopper is independent; a forgotten shopper starts armed.
    assert len(eng.on_fixes([fix("s2", T0 + 6, 15.0, 8.0)], T0 + 6)) == 2
    eng.forget("s2")
    opt_in(eng, "s2")
    assert len(eng.on_fixes([fix("s2", T0 + 7, 15.0, 8.0)], T0 + 7)) == 2


def test_exit_without_visiting_a_zone() -> None:
    c = campaign("come-back", brand="corner-store", zones=("store",),
                 trigger=Trigger("exit_without", without=("checkout",)), caps=ShopperCaps(None, None, None))
    eng, _ = make_engine(c, policy=NO_LIMITS)
    opt_in(eng, "s1")
    opt_in(eng, "s2")
    eng.on_event(enter("s1", "store", T0), T0)
    assert reasons(eng.on_event(leave("s1", "store", T0 + 300), T0 + 300)) == [("come-back", "sent")]
    eng.on_event(enter("s2", "store", T0), T0)
    eng.on_event(enter("s2", "checkout", T0 + 100), T0 + 100)
    assert eng.on_event(leave("s2", "store", T0 + 300), T0 + 300) == []


def test_revisit_after_days() -> None:
    c = campaign("welcome-back", trigger=Trigger("revisit", after_days=2.0), caps=ShopperCaps(None, None, None))
    eng, _ = make_engine(c, policy=NO_LIMITS)
    opt_in(eng, "s1")
    assert eng.on_event(enter("s1", "c-skincare", T0), T0) == []  # first time: nothing to come back to
    t1 = T0 + 86400
    assert eng.on_event(enter("s1", "c-skincare", t1), t1) == []  # one day later: too soon
    t2 = t1 + 3 * 86400
    assert reasons(eng.on_event(enter("s1", "c-skincare", t2), t2)) == [("welcome-back", "sent")]


def test_on_step_takes_the_live_locator_output() -> None:
    eng, _ = make_engine(campaign())
    opt_in(eng, "s1")
    step = StepResult((fix("s1", T0, 15.0, 8.0),), (enter("s1", "c-skincare", T0),), {})
    [d] = eng.on_step(step, T0)
    assert d.sent


def test_state_survives_a_restart_through_the_store() -> None:
    c = campaign(caps=ShopperCaps(per_visit=None, per_day=1, total=None), budget=Budget(max_vouchers=2))
    eng, store = make_engine(c, policy=NO_LIMITS)
    opt_in(eng, "s1")
    opt_in(eng, "s2")
    assert eng.on_event(enter("s1", "c-skincare", T0), T0)[0].sent
    eng2, _ = make_engine(store=store, policy=NO_LIMITS, now=T0 + 100)
    assert eng2.on_event(enter("s1", "c-skincare", T0 + 100), T0 + 100)[0].reason == "cap_campaign_day"
    assert eng2.on_event(enter("s2", "c-skincare", T0 + 100), T0 + 100)[0].reason == "sent"
    opt_in(eng2, "s3")
    assert eng2.on_event(enter("s3", "c-skincare", T0 + 200), T0 + 200)[0].reason == "budget_total"


def test_visit_conversion_after_exposure_is_recorded() -> None:
    c = campaign(trigger=Trigger("proximity", radius_m=3.0), holdout_pct=50.0)
    eng, store = make_engine(c, policy=NO_LIMITS)
    for s in ("a", "b", "c", "d"):
        opt_in(eng, s)
        eng.on_fixes([fix(s, T0, 11.5, 8.0)], T0)
        eng.on_event(enter(s, "c-skincare", T0 + 30), T0 + 30)
    exposed = {k[1] for k in store.exposures}
    assert exposed == {"a", "b", "c", "d"}
    assert {s for (_, s) in store.visited} == exposed


def test_fired_trigger_matrices_grow_recycle_rows_and_judge_the_last_position() -> None:
    import numpy as np

    from campaigns.proximity_state import ROWS_START, FiredTriggers

    f = FiredTriggers()
    f.retarget([("z1", frozenset({"a"})), ("z2", frozenset({"b", "c"}))])
    devs = [f"d{i}" for i in range(ROWS_START + 10)]
    rows = f.rows(devs)
    assert len(set(rows.tolist())) == len(devs) and f.all.shape[0] >= len(devs)
    f.fire(int(rows[-1]), 1)
    # d-last positioned twice: near target 1 first, then away; the last position re-arms it.
    two = f.rows([devs[-1], devs[-1]])
    f.rearm(two, 0, np.array([0]), np.array([1]))
    assert not f.all[int(rows[-1]), 1]
    f.fire(int(rows[-1]), 1)
    f.rearm(two, 0, np.array([1]), np.array([1]))  # now the last position is the near one: stays fired
    assert f.all[int(rows[-1]), 1]
    # A re-index that adds a campaign to z2 keeps b, c fired and arms only the new one.
    f.retarget([("z2", frozenset({"b", "c", "d"})), ("z1", frozenset({"a"}))])
    r = int(rows[-1])
    assert f.any[r, 0] and not f.all[r, 0] and f.partial[(r, 0)] == {"b", "c"}
    f.release(devs[-1])
    assert not f.any[r].any() and (r, 0) not in f.partial
    assert int(f.rows(["newcomer"])[0]) == r  # the freed row is reused
    f.keep_only({"newcomer"})
    assert f.shopper_count() == 1
