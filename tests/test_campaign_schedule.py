"""Local time: quiet hours and daily windows across midnight, in several time zones and across DST."""

from __future__ import annotations

from dataclasses import replace

import pytest

from campaigns import DailyWindow, LocalTimes, ProtectionPolicy, ShopperCaps, ShopperProfile
from tests.fakes.campaign_factories import campaign, enter, local_t, make_engine, opt_in

QUIET = ProtectionPolicy(max_per_hour=100, max_per_day=100, max_per_visit=100, offer_open_s=0.0,
                         quiet_hours=(DailyWindow.parse("22:00-08:00"),))


@pytest.mark.parametrize(("text", "inside", "outside"), [
    ("22:00-08:00", [22 * 60, 23 * 60 + 59, 0, 7 * 60 + 59], [8 * 60, 12 * 60, 21 * 60 + 59]),
    ("09:30-21:00", [9 * 60 + 30, 20 * 60 + 59], [9 * 60 + 29, 21 * 60, 0]),
    ("00:00-00:00", [0, 12 * 60, 23 * 60 + 59], []),
])
def test_daily_window_membership(text: str, inside: list[int], outside: list[int]) -> None:
    w = DailyWindow.parse(text)
    assert all(w.contains(m) for m in inside)
    assert not any(w.contains(m) for m in outside)


@pytest.mark.parametrize("bad", ["22:00", "25:00-01:00", "10:60-11:00", "ab:cd-01:00"])
def test_daily_window_rejects_bad_text(bad: str) -> None:
    with pytest.raises(ValueError):
        DailyWindow.parse(bad)


@pytest.mark.parametrize("tz", ["Europe/Paris", "Asia/Shanghai", "America/New_York", "Pacific/Auckland"])
def test_quiet_hours_across_midnight_in_the_venue_time_zone(tz: str) -> None:
    c = campaign(caps=ShopperCaps(None, None, None))
    cases = [((2025, 6, 2, 21, 59), "sent"), ((2025, 6, 2, 22, 0), "quiet_hours"),
             ((2025, 6, 2, 23, 30), "quiet_hours"), ((2025, 6, 3, 0, 30), "quiet_hours"),
             ((2025, 6, 3, 7, 59), "quiet_hours"), ((2025, 6, 3, 8, 0), "sent")]
    eng, _ = make_engine(c, tz=tz, policy=QUIET, now=local_t(2025, 6, 2, 12, tz=tz))
    opt_in(eng, "s1", t=local_t(2025, 6, 1, 12, tz=tz))
    for (y, mo, d, h, mi), expected in cases:
        t = local_t(y, mo, d, h, mi, tz=tz)
        [dec] = eng.on_event(enter("s1", "c-skincare", t), t)
        assert dec.reason == expected, (tz, h, mi)


def test_same_instant_is_quiet_in_one_venue_and_not_in_another() -> None:
    t = local_t(2025, 6, 2, 23, 0, tz="Asia/Shanghai")  # 23:00 in Shanghai is 11:00 in New York
    got = {}
    for tz in ("Asia/Shanghai", "America/New_York"):
        eng, _ = make_engine(campaign(), tz=tz, policy=QUIET, now=t)
        opt_in(eng, "s1", t=t - 86400)
        got[tz] = eng.on_event(enter("s1", "c-skincare", t), t)[0].reason
    assert got == {"Asia/Shanghai": "quiet_hours", "America/New_York": "sent"}


def test_quiet_hours_follow_daylight_saving_changes() -> None:
    lt = LocalTimes("Europe/Paris")
    # 2025-03-30 02:00 CET -> 03:00 CEST. 07:59 local after the change is quiet; 08:00 is not.
    before = local_t(2025, 3, 30, 7, 59)
    after = local_t(2025, 3, 30, 8, 0)
    assert lt.at(before).minute == 7 * 60 + 59 and lt.at(after).minute == 8 * 60
    assert after - before == 60
    winter = local_t(2025, 1, 15, 8, 0)
    summer = local_t(2025, 7, 15, 8, 0)
    assert (winter % 86400, summer % 86400) == (7 * 3600, 6 * 3600)  # UTC+1 vs UTC+2


def test_shopper_quiet_hours_come_on_top_of_the_venue_policy() -> None:
    policy = replace(QUIET, quiet_hours=())
    eng, _ = make_engine(campaign(caps=ShopperCaps(None, None, None)), policy=policy)
    opt_in(eng, "s1")
    eng.set_profile(ShopperProfile("s1", channel="app", quiet_hours=(DailyWindow.parse("12:00-13:00"),)))
    t_quiet, t_ok = local_t(2025, 6, 2, 12, 30), local_t(2025, 6, 2, 13, 0)
    assert eng.on_event(enter("s1", "c-skincare", t_quiet), t_quiet)[0].reason == "quiet_hours"
    assert eng.on_event(enter("s1", "c-skincare", t_ok), t_ok)[0].reason == "sent"
