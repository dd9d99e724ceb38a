"""The campaign engine: zone events and positions in, decisions (offers or the rule that blocked them) out.

One engine per venue. The service calls ``on_step(step, now)`` with each ``StepResult`` of the
live locator (or ``on_events`` / ``on_fixes`` / ``advance`` separately); every call returns the
decisions it made and writes them, with the state they changed, to the store in one batch.

For each trigger the candidates (campaigns of that zone and trigger kind) are tried in a fixed
order — higher ``priority`` first, then campaign id — and each gets a decision whose reason is the
first rule that blocks it, checked in this order:

  paused, out_of_schedule, budget_total, budget_daily, no_consent, audience, outranked (another
  campaign was already sent for this trigger), quiet_hours, dismissed_cooldown, cap_campaign_visit,
  cap_campaign_day, cap_campaign_total, cap_hour, cap_day, cap_visit, offer_open, holdout

and ``sent`` when none does. Holdout comes last so that held-out shoppers are exactly those who
would have been sent the offer, which makes treated and holdout groups comparable.

Hot state (caps, budgets, stays, open offers) lives in memory, loaded per shopper from the store
on first sight; so a decision costs dictionary lookups, not queries. Thread-safe: the API's
threads (consent, dismissals) and the pipeline share one engine under a lock.
"""

from __future__ import annotations

import bisect
import datetime as dt
import heapq
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from campaigns.const import ATTRIBUTION_WINDOW_S, DAY_S, HOUR_S, PROXIMITY_HYSTERESIS_M, SHOPPER_IDLE_EVICT_S
from campaigns.eligibility import in_audience, latest_consents, may_market
from campaigns.errors import CampaignError
from campaigns.holdout import in_holdout
from campaigns.model import (
    Campaign,
    Consent,
    Decision,
    Offer,
    OfferState,
    ProtectionPolicy,
    Reason,
    ShopperProfile,
    ShopperSnapshot,
    TriggerKind,
)
from campaigns.proximity import FloatArray, distance_pairs, pad_edges, polygon_edges
from campaigns.proximity_state import FiredTriggers
from campaigns.redemption import Credit, RedemptionOutcome, RedemptionRequest, credit_split, precheck
from campaigns.schedule import LocalTime, LocalTimes, in_quiet_hours, in_schedule
from campaigns.store import CampaignStore, EngineWrites, VisitConversion
from campaigns.validation import redeem_zones, validate_campaign
from campaigns.vouchers import VoucherClaims, check_secret, mint_voucher, offer_id_for, verify_voucher
from positioning.live import Fix, StepResult, ZoneEvent
from positioning.venue import Venue

DWELL_EXTRA_KEYS: Final = ("dwell_s", "seconds", "duration_s")  # how a positioning "dwell" event may say how long
ObjectArray = npt.NDArray[np.object_]
MEMO_MAX: Final = 65_536  # memoised schedule answers kept (campaigns x minutes); cleared when full
SWEEP_EVERY_S: Final = 3600.0  # look for idle shoppers to evict at most once an (event-time) hour


@dataclass(slots=True)
class _Shopper:
    """Mutable in-memory state of one shopper."""

    profile: ShopperProfile
    consents: dict[str, Consent]
    last_t: float = -1e18
    visit_start: float = -1e18
    visit_ended: bool = False
    visit_sent: int = 0
    visit_campaign: dict[str, int] = field(default_factory=dict)
    visit_zones: set[str] = field(default_factory=set)
    sent_times: list[float] = field(default_factory=list)  # across campaigns, rolling 24 h
    campaign_times: dict[str, list[float]] = field(default_factory=dict)  # rolling 24 h
    campaign_total: dict[str, int] = field(default_factory=dict)
    offers: dict[str, str] = field(default_factory=dict)  # recent offer id -> campaign
    open_offer: str | None = None
    open_until: float = -1e18
    dismissed_until: float = -1e18
    campaign_dismissed_until: dict[str, float] = field(default_factory=dict)
    stays: dict[str, float] = field(default_factory=dict)  # zone -> enter time
    zone_seen: dict[str, float] = field(default_factory=dict)
    exposures: dict[str, float] = field(default_factory=dict)  # campaign -> first exposure t, awaiting a visit
    market: dict[str, bool] = field(default_factory=dict)  # brand -> may_market, cached until consents change


@dataclass(frozen=True, slots=True)
class PositionColumns:
    """Positions of one window as equal-length columns; ``floor`` holds floor ids (str objects)."""

    t: FloatArray
    device: ObjectArray
    floor: ObjectArray
    x: FloatArray
    y: FloatArray

    @staticmethod
    def from_fixes(fixes: Sequence[Fix]) -> PositionColumns:
        n = len(fixes)
        return PositionColumns(np.fromiter((f.t for f in fixes), dtype=np.float64, count=n),
                               np.array([f.device for f in fixes], dtype=object),
                               np.array([f.floor or "" for f in fixes], dtype=object),
                               np.fromiter((f.x for f in fixes), dtype=np.float64, count=n),
                               np.fromiter((f.y for f in fixes), dtype=np.float64, count=n))


@dataclass(slots=True)
class _CampaignUsage:
    total: int = 0
    day: str = ""
    day_count: int = 0


@dataclass(frozen=True, slots=True)
class _ProximityTarget:
    zone: str
    floor: str
    radius_m: float
    campaigns: tuple[Campaign, ...]
    starts: FloatArray
    vecs: FloatArray


class CampaignEngine:
    def __init__(self, store: CampaignStore, venue: Venue, secret: bytes, *,
                 policy: ProtectionPolicy | None = None, now: float = 0.0) -> None:
        check_secret(secret)
        self._store = store
        self._venue = venue
        self._secret = secret
        self.policy = policy or ProtectionPolicy()
        self._local = LocalTimes(venue.info.timezone)
        self._lock = threading.RLock()
        self._zones = {z.id: z for z in venue.zones}
        self._campaigns: dict[str, Campaign] = {}
        self._usage: dict[str, _CampaignUsage] = {}
        self._index: dict[tuple[str, TriggerKind], tuple[Campaign, ...]] = {}
        self._dwell_thresholds: dict[str, tuple[float, ...]] = {}
        self._proximity: dict[str, tuple[_ProximityTarget, ...]] = {}
        self._prox_boxes: dict[str, FloatArray] = {}  # floor -> (targets, 4) boxes grown by radius + hysteresis
        self._prox_col0: dict[str, int] = {}  # floor -> column of its first target in the fired matrices
        self._prox_edges: dict[str, tuple[FloatArray, FloatArray, FloatArray]] = {}  # padded edges, radii
        self._shoppers: dict[str, _Shopper] = {}
        self._schedule_memo: dict[tuple[str, int], bool] = {}  # (campaign, UTC minute) -> in schedule
        self._quiet_memo: dict[int, bool] = {}  # local minute of day -> in the venue's quiet hours
        self._quiet_policy: ProtectionPolicy | None = None
        self._fired = FiredTriggers()  # proximity triggers fired and not yet re-armed, per shopper and target
        self._timers: list[tuple[float, int, str, str, float, float]] = []  # due, seq, shopper, zone, enter, dwell
        self._timer_seq = 0
        self._last_sweep = now
        self._pending_decisions: list[Decision] = []
        self._pending_profiles: dict[str, ShopperProfile] = {}
        self._pending_seen: dict[tuple[str, str], float] = {}
        self._pending_conversions: list[VisitConversion] = []
        for c in store.load_campaigns():
            self._campaigns[c.id] = c
        day_start = self._day_start(now)
        usage = store.budget_usage(day_start)
        today = self._local.day(now)
        for cid in self._campaigns:
            total, day_count = usage.get(cid, (0, 0))
            self._usage[cid] = _CampaignUsage(total, today, day_count)
        self._reindex()

    # ------------------------------------------------------------------------------------ campaigns

    @property
    def venue(self) -> Venue:
        return self._venue

    @property
    def store(self) -> CampaignStore:
        return self._store

    @property
    def local_times(self) -> LocalTimes:
        return self._local

    def campaigns(self) -> list[Campaign]:
        with self._lock:
            return sorted(self._campaigns.values(), key=lambda c: c.id)

    def campaign(self, campaign_id: str) -> Campaign | None:
        with self._lock:
            return self._campaigns.get(campaign_id)

    def put_campaign(self, campaign: Campaign) -> Campaign:
        """Create or replace a campaign (validated against the venue), persist it and re-index."""
        validate_campaign(campaign, self._venue)
        with self._lock:
            self._store.save_campaign(campaign)
            self._campaigns[campaign.id] = campaign
            self._usage.setdefault(campaign.id, _CampaignUsage())
            self._reindex()
        return campaign

    def _reindex(self) -> None:
        index: dict[tuple[str, TriggerKind], list[Campaign]] = {}
        dwell: dict[str, set[float]] = {}
        prox: dict[tuple[str, float], list[Campaign]] = {}
        for c in self._campaigns.values():
            if c.status not in ("active", "paused"):
                continue
            for zid in c.zones:
                if c.trigger.kind == "proximity":
                    prox.setdefault((zid, c.trigger.radius_m), []).append(c)
                    continue
                index.setdefault((zid, c.trigger.kind), []).append(c)
                if c.trigger.kind == "dwell":
                    dwell.setdefault(zid, set()).add(c.trigger.dwell_s)
        self._index = {k: tuple(sorted(v, key=_rank)) for k, v in index.items()}
        self._schedule_memo.clear()
        self._dwell_thresholds = {z: tuple(sorted(v)) for z, v in dwell.items()}
        by_floor: dict[str, list[_ProximityTarget]] = {}
        for (zid, radius), cs in sorted(prox.items()):
            zone = self._zones[zid]
            starts, vecs = polygon_edges(zone.polygon)
            by_floor.setdefault(zone.floor, []).append(
                _ProximityTarget(zid, zone.floor, radius, tuple(sorted(cs, key=_rank)), starts, vecs))
        self._proximity = {f: tuple(v) for f, v in by_floor.items()}
        self._prox_boxes = {}
        self._prox_col0 = {}
        self._prox_edges = {}
        columns: list[tuple[str, frozenset[str]]] = []
        for f, targets in self._proximity.items():
            self._prox_col0[f] = len(columns)
            columns += [(tg.zone, frozenset(c.id for c in tg.campaigns)) for tg in targets]
            boxes = np.empty((len(targets), 4), dtype=np.float64)
            for j, tg in enumerate(targets):
                grow = tg.radius_m + PROXIMITY_HYSTERESIS_M
                boxes[j] = (tg.starts[:, 0].min() - grow, tg.starts[:, 1].min() - grow,
                            tg.starts[:, 0].max() + grow, tg.starts[:, 1].max() + grow)
            self._prox_boxes[f] = boxes
            starts, vecs = pad_edges([self._zones[tg.zone].polygon for tg in targets])
            self._prox_edges[f] = (starts, vecs, np.array([tg.radius_m for tg in targets]))
        self._fired.retarget(columns)

    # ------------------------------------------------------------------------------------ shoppers

    def set_consent(self, consent: Consent) -> None:
        with self._lock:
            self._store.save_consent(consent)
            s = self._shoppers.get(consent.shopper)
            if s is not None:
                prev = s.consents.get(consent.scope)
                if prev is None or consent.t >= prev.t:
                    s.consents[consent.scope] = consent
                    s.market.clear()

    def consents(self, shopper: str, now: float) -> dict[str, Consent]:
        with self._lock:
            return dict(self._shopper(shopper, now).consents)

    def profile(self, shopper: str, now: float) -> ShopperProfile:
        with self._lock:
            return self._shopper(shopper, now).profile

    def set_profile(self, profile: ShopperProfile) -> None:
        """Update the shopper-declared fields (channel, home store, segments, quiet hours)."""
        with self._lock:
            self._store.save_profile(profile)
            s = self._shoppers.get(profile.shopper)
            if s is not None:
                s.profile = replace(s.profile, channel=profile.channel, home_store=profile.home_store,
                                    segments=profile.segments, quiet_hours=profile.quiet_hours)

    def offer_state(self, shopper: str, offer_id: str, state: OfferState, t: float) -> None:
        """The shopper app reports an offer delivered, opened or dismissed (or a till redeemed it)."""
        with self._lock:
            s = self._shopper(shopper, t)
            campaign = s.offers.get(offer_id)
            if campaign is None:
                raise CampaignError(f"offer {offer_id!r} of shopper {shopper!r}: unknown or too old")
            self._store.save_offer_state(shopper, offer_id, state, t)
            self._apply_offer_state(s, offer_id, campaign, state, t)

    def note_redemption(self, shopper: str, offer_id: str, amount: float, t: float) -> None:
        """A till redeemed an offer (the store has already written it): close it and update the profile."""
        with self._lock:
            s = self._shoppers.get(shopper)
            if s is None:
                return  # loaded fresh (with the new spend) when next seen
            s.profile = replace(s.profile, spend_total=s.profile.spend_total + amount,
                                redemptions=s.profile.redemptions + 1)
            campaign = s.offers.get(offer_id)
            if campaign is not None:
                self._apply_offer_state(s, offer_id, campaign, "redeemed", t)

    def precheck_redemption(self, request: RedemptionRequest) -> tuple[VoucherClaims, Credit] | RedemptionOutcome:
        """Verify a till's code (signature, expiry, campaign, shopper, till location) and split the credit;
        the store then redeems atomically. Pure: needs the venue secret, not the database."""
        with self._lock:
            checked = precheck(self._secret, request, self._campaigns.get,
                               lambda c: redeem_zones(self._venue, c))
        if isinstance(checked, RedemptionOutcome):
            return checked
        claims, campaign = checked
        return claims, credit_split(campaign, request.amount, request.store, request.staff)

    def verify_code(self, code: str, now: float) -> VoucherClaims:
        """Signature and expiry of a code (raises ``VoucherError``)."""
        return verify_voucher(self._secret, code, now)

    def forget(self, shopper: str) -> None:
        """Drop a shopper's in-memory state (after the store deleted their data)."""
        with self._lock:
            self._shoppers.pop(shopper, None)
            self._fired.release(shopper)

    def _apply_offer_state(self, s: _Shopper, offer_id: str, campaign: str, state: OfferState, t: float) -> None:
        if state in ("dismissed", "redeemed") and s.open_offer == offer_id:
            s.open_offer = None
            s.open_until = -1e18
        if state == "dismissed":
            s.dismissed_until = max(s.dismissed_until, t + self.policy.dismiss_cooldown_s)
            s.campaign_dismissed_until[campaign] = max(s.campaign_dismissed_until.get(campaign, -1e18),
                                                       t + self.policy.dismiss_campaign_cooldown_s)

    def _since(self, t: float) -> float:
        """How far back a shopper's offers matter (caps, cooldowns, the open offer)."""
        return t - max(DAY_S, self.policy.dismiss_campaign_cooldown_s, self.policy.offer_open_s)

    def _shopper(self, shopper: str, t: float) -> _Shopper:
        s = self._shoppers.get(shopper)
        if s is None:
            s = self._from_snapshot(self._store.load_shopper(shopper, self._since(t)), t)
            self._shoppers[shopper] = s
        return s

    def _preload(self, shoppers: Iterable[str], t: float) -> None:
        """Load every shopper of a batch not yet in memory with one store call (not one per shopper)."""
        missing = sorted({sh for sh in shoppers if sh not in self._shoppers})
        if missing:
            for sh, snap in self._store.load_shoppers(missing, self._since(t)).items():
                self._shoppers[sh] = self._from_snapshot(snap, t)

    def _from_snapshot(self, snap: ShopperSnapshot, t: float) -> _Shopper:
        p = self.policy
        s = _Shopper(profile=snap.profile, consents=latest_consents(snap.consents))
        s.zone_seen = dict(snap.zone_last_seen)
        s.campaign_total = dict(snap.campaign_totals)
        last = max([o.t for o in snap.offers] + list(snap.zone_last_seen.values()) + [-1e18])
        s.last_t = last
        if snap.profile.last_visit is not None:
            s.visit_start = snap.profile.last_visit
        for o in sorted(snap.offers, key=lambda o: o.t):
            s.offers[o.offer_id] = o.campaign
            if o.t > t - DAY_S:
                s.sent_times.append(o.t)
                s.campaign_times.setdefault(o.campaign, []).append(o.t)
            if o.t >= s.visit_start:
                s.visit_sent += 1
                s.visit_campaign[o.campaign] = s.visit_campaign.get(o.campaign, 0) + 1
            s.open_offer, s.open_until = o.offer_id, o.t + p.offer_open_s  # the newest offer is the open one ...
            if o.state in ("dismissed", "redeemed"):  # ... unless it was closed
                self._apply_offer_state(s, o.offer_id, o.campaign, o.state,
                                        o.state_t if o.state_t is not None else o.t)
        for e in snap.exposures:
            if e.campaign not in s.exposures:
                s.exposures[e.campaign] = e.t
        return s

    # ------------------------------------------------------------------------------------ input

    def on_step(self, step: StepResult, now: float) -> list[Decision]:
        """Everything the live locator produced in one step: zone events, then positions."""
        with self._lock:
            out: list[Decision] = []
            self._events(step.events, out)
            self._fixes(step.fixes, out)
            self._fire_timers(now, out)
            self._flush(now)
            return out

    def on_events(self, events: Iterable[ZoneEvent], now: float) -> list[Decision]:
        with self._lock:
            out: list[Decision] = []
            self._events(events, out)
            self._fire_timers(now, out)
            self._flush(now)
            return out

    def on_event(self, event: ZoneEvent, now: float) -> list[Decision]:
        return self.on_events((event,), now)

    def on_fixes(self, fixes: Sequence[Fix], now: float) -> list[Decision]:
        with self._lock:
            out: list[Decision] = []
            self._fixes(fixes, out)
            self._fire_timers(now, out)
            self._flush(now)
            return out

    def on_window(self, events: Iterable[ZoneEvent], now: float,
                  positions: PositionColumns | None = None) -> list[Decision]:
        """One pipeline window: zone events, then positions as columns (no Python object per position),
        then due dwell timers; one store write. The fast path for the service and the benchmark."""
        with self._lock:
            out: list[Decision] = []
            self._events(events, out)
            if positions is not None:
                self._positions(positions.t, positions.device, positions.floor, positions.x, positions.y, out)
            self._fire_timers(now, out)
            self._flush(now)
            return out

    def advance(self, now: float) -> list[Decision]:
        """Fire dwell triggers that came due by ``now`` (call this when no events arrive)."""
        with self._lock:
            out: list[Decision] = []
            self._fire_timers(now, out)
            self._flush(now)
            return out

    def _events(self, events: Iterable[ZoneEvent], out: list[Decision]) -> None:
        events = tuple(events)
        if events:
            self._preload((ev.device for ev in events), events[0].t)
        for ev in events:
            if self._timers and self._timers[0][0] <= ev.t:
                self._fire_timers(ev.t, out)
            self._event(ev, out)

    def _event(self, ev: ZoneEvent, out: list[Decision]) -> None:
        t = ev.t
        s = self._shopper(ev.device, t)
        self._touch(s, ev.device, t)
        zone = ev.zone
        kind = ev.type
        if kind == "zone_enter" and zone is not None:
            s.stays[zone] = t
            s.visit_zones.add(zone)
            prev_seen = s.zone_seen.get(zone)
            s.zone_seen[zone] = t
            self._pending_seen[(ev.device, zone)] = t
            if s.exposures:
                self._convert(s, ev.device, zone, t)
            thresholds = self._dwell_thresholds.get(zone)
            if thresholds:
                for thr in thresholds:
                    self._timer_seq += 1
                    heapq.heappush(self._timers, (t + thr, self._timer_seq, ev.device, zone, t, thr))
            cands = self._candidates(zone, "enter")
            if cands:
                self._decide(s, ev.device, cands, "enter", zone, ev.floor, t, out)
            cands = self._candidates(zone, "revisit")
            if cands and prev_seen is not None:
                gap = t - prev_seen
                due = tuple(c for c in cands if gap >= c.trigger.after_days * DAY_S)
                if due:
                    self._decide(s, ev.device, due, "revisit", zone, ev.floor, t, out)
        elif kind == "zone_exit" and zone is not None:
            s.stays.pop(zone, None)
            s.zone_seen[zone] = t
            self._pending_seen[(ev.device, zone)] = t
            cands = self._candidates(zone, "exit_without")
            if cands:
                due = tuple(c for c in cands if not any(w in s.visit_zones for w in c.trigger.without))
                if due:
                    self._decide(s, ev.device, due, "exit_without", zone, ev.floor, t, out)
        elif kind == "dwell" and zone is not None and zone not in s.stays:
            # A stay we did not see start (e.g. the engine restarted mid-stay): learn it from the event.
            seconds = _dwell_seconds(ev.extra)
            if seconds is not None:
                enter = t - seconds
                s.stays[zone] = enter
                for thr in self._dwell_thresholds.get(zone, ()):
                    self._timer_seq += 1
                    heapq.heappush(self._timers, (enter + thr, self._timer_seq, ev.device, zone, enter, thr))
        elif kind == "visit_end" and zone is None:  # the end of the venue visit (a zone's visit_end names it)
            s.visit_ended = True
            s.stays.clear()

    def _touch(self, s: _Shopper, shopper: str, t: float) -> None:
        """Start a new venue visit after a gap or an explicit visit end."""
        if s.visit_ended or t - s.last_t > self.policy.visit_gap_s:
            s.visit_ended = False
            s.visit_start = t
            s.visit_sent = 0
            s.visit_campaign.clear()
            s.visit_zones.clear()
            p = s.profile
            s.profile = replace(p, visit_count=p.visit_count + 1, last_visit=t,
                                first_seen=p.first_seen if p.first_seen is not None else t)
            self._pending_profiles[shopper] = s.profile
        if t > s.last_t:
            s.last_t = t

    def _convert(self, s: _Shopper, shopper: str, zone: str, t: float) -> None:
        for cid, t0 in list(s.exposures.items()):
            c = self._campaigns.get(cid)
            if c is None or t - t0 > ATTRIBUTION_WINDOW_S:
                del s.exposures[cid]
            elif t > t0 and zone in c.zones:
                del s.exposures[cid]
                self._pending_conversions.append(VisitConversion(cid, shopper, t, zone))

    def _fire_timers(self, now: float, out: list[Decision]) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            due, _, shopper, zone, enter, thr = heapq.heappop(timers)
            s = self._shoppers.get(shopper)
            if s is None or s.stays.get(zone) != enter:
                continue  # left the zone (or forgotten) before the dwell time
            cands = self._candidates(zone, "dwell")
            if cands:
                due_c = tuple(c for c in cands if c.trigger.dwell_s == thr)
                if due_c:
                    self._decide(s, shopper, due_c, "dwell", zone, self._zones[zone].floor, due, out)

    def _fixes(self, fixes: Sequence[Fix], out: list[Decision]) -> None:
        if not self._proximity or not fixes:
            return
        p = PositionColumns.from_fixes(fixes)
        self._positions(p.t, p.device, p.floor, p.x, p.y, out)

    def _positions(self, ts: FloatArray, devs: ObjectArray, floors: ObjectArray, xs: FloatArray, ys: FloatArray,
                   out: list[Decision]) -> None:
        """Proximity triggers over columns of positions. Bounding boxes (grown by radius and hysteresis)
        prefilter all positions of a floor against all its targets at once; exact distances follow for
        the pairs inside, in one batch; re-arming and "already fired" are array operations on the
        ``FiredTriggers`` matrices. Python runs only for the hits that fire."""
        if not self._proximity or len(ts) == 0:
            return
        floor_list = floors.tolist()
        first = floor_list[0]
        floor_ids = [first] if floor_list.count(first) == len(floor_list) else sorted(set(floor_list))
        fired = self._fired
        for floor in floor_ids:
            sel = None if len(floor_ids) == 1 else np.flatnonzero(floors == floor)
            fdevs: list[str] = (devs if sel is None else devs[sel]).tolist()
            rows = fired.rows(fdevs)
            targets = self._proximity.get(floor, ())
            col0 = self._prox_col0.get(floor, 0)
            if not targets:
                fired.rearm(rows, col0, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
                continue
            fx, fy = (xs, ys) if sel is None else (xs[sel], ys[sel])
            box = self._prox_boxes[floor]
            inbox = ((fx[:, None] >= box[None, :, 0]) & (fx[:, None] <= box[None, :, 2])
                     & (fy[:, None] >= box[None, :, 1]) & (fy[:, None] <= box[None, :, 3]))
            ii, jj = np.nonzero(inbox)
            if len(ii) == 0:
                fired.rearm(rows, col0, ii, jj)
                continue
            starts, vecs, radius = self._prox_edges[floor]
            d = distance_pairs(fx[ii], fy[ii], starts[jj], vecs[jj])
            keep = d <= radius[jj] + PROXIMITY_HYSTERESIS_M
            fired.rearm(rows, col0, ii[keep], jj[keep])
            hit = d <= radius[jj]
            order = np.lexsort((ii[hit], jj[hit]))  # by target, then by position
            hi, hj = ii[hit][order], jj[hit][order]
            todo = np.flatnonzero(~fired.all[rows[hi], col0 + hj])
            if todo.size == 0:
                continue
            for i, j in zip(hi[todo].tolist(), hj[todo].tolist(), strict=True):
                row, col = int(rows[i]), col0 + j
                if fired.all[row, col]:
                    continue  # fired earlier in this window (the shopper was positioned twice)
                done = fired.partial.get((row, col))
                dev = fdevs[i]
                t = float(ts[i if sel is None else sel[i]])
                s = self._shopper(dev, t)
                target = targets[j]
                armed = target.campaigns if done is None else tuple(c for c in target.campaigns if c.id not in done)
                fired.fire(row, col)
                if not armed:
                    continue
                self._touch(s, dev, t)
                self._decide(s, dev, armed, "proximity", target.zone, floor, t, out)

    # ------------------------------------------------------------------------------------ rules

    def _candidates(self, zone: str, kind: TriggerKind) -> tuple[Campaign, ...] | None:
        """Campaigns of ``zone`` with trigger ``kind`` (active or paused), best rank first."""
        return self._index.get((zone, kind))

    def _decide(self, s: _Shopper, shopper: str, cands: Sequence[Campaign], trigger: TriggerKind,
                zone: str | None, floor: str | None, t: float, out: list[Decision]) -> None:
        local = self._local.at(t)
        sent = False
        for c in cands:
            reason = self._check(c, s, shopper, t, local, sent)
            offer = None
            if reason == "sent":
                offer = self._send(c, s, shopper, t, local, zone)
                sent = True
            elif reason == "holdout" and c.id not in s.exposures:
                s.exposures[c.id] = t
            d = Decision(t, shopper, c.id, trigger, zone, floor, reason, offer)
            out.append(d)
            self._pending_decisions.append(d)

    def _check(self, c: Campaign, s: _Shopper, shopper: str, t: float, local: LocalTime, outranked: bool) -> Reason:
        if c.status != "active":
            return "paused"
        sched = c.schedule
        if sched.windows or sched.weekdays or sched.start_date or sched.end_date:
            key = (c.id, int(t // 60.0))  # a schedule is minute-grained; the campaign's local minute decides
            ok = self._schedule_memo.get(key)
            if ok is None:
                ok = in_schedule(sched, local)
                if len(self._schedule_memo) >= MEMO_MAX:
                    self._schedule_memo.clear()
                self._schedule_memo[key] = ok
            if not ok:
                return "out_of_schedule"
        usage = self._usage[c.id]
        if c.budget.max_vouchers is not None and usage.total >= c.budget.max_vouchers:
            return "budget_total"
        if c.budget.max_per_day is not None and usage.day == local.day and usage.day_count >= c.budget.max_per_day:
            return "budget_daily"
        market = s.market.get(c.brand)
        if market is None:
            market = s.market[c.brand] = may_market(s.consents, c.brand)
        if not market:
            return "no_consent"
        if not in_audience(c.audience, s.profile):
            return "audience"
        if outranked:
            return "outranked"
        p = self.policy
        if self._venue_quiet(local) or (s.profile.quiet_hours and
                                                    in_quiet_hours(s.profile.quiet_hours, local)):
            return "quiet_hours"
        if t < s.dismissed_until or t < s.campaign_dismissed_until.get(c.id, -1e18):
            return "dismissed_cooldown"
        caps = c.caps
        if caps.per_visit is not None and s.visit_campaign.get(c.id, 0) >= caps.per_visit:
            return "cap_campaign_visit"
        if caps.per_day is not None and _count_since(s.campaign_times.get(c.id), t - DAY_S) >= caps.per_day:
            return "cap_campaign_day"
        if caps.total is not None and s.campaign_total.get(c.id, 0) >= caps.total:
            return "cap_campaign_total"
        if _count_since(s.sent_times, t - HOUR_S) >= p.max_per_hour:
            return "cap_hour"
        if _count_since(s.sent_times, t - DAY_S) >= p.max_per_day:
            return "cap_day"
        if s.visit_sent >= p.max_per_visit:
            return "cap_visit"
        if s.open_offer is not None and t < s.open_until:
            return "offer_open"
        if in_holdout(c.id, shopper, c.holdout_pct):
            return "holdout"
        return "sent"

    def _venue_quiet(self, local: LocalTime) -> bool:
        """The venue's quiet hours at ``local`` (memoised per local minute for the current policy)."""
        if self._quiet_policy is not self.policy:
            self._quiet_policy = self.policy
            self._quiet_memo.clear()
        quiet = self._quiet_memo.get(local.minute)
        if quiet is None:
            quiet = self._quiet_memo[local.minute] = in_quiet_hours(self.policy.quiet_hours, local)
        return quiet

    def _send(self, c: Campaign, s: _Shopper, shopper: str, t: float, local: LocalTime, zone: str | None) -> Offer:
        offer_id = offer_id_for(self._secret, c.id, shopper, t)
        expires = t + c.voucher_ttl_s
        voucher = mint_voucher(self._secret, c.id, offer_id, shopper, expires)
        usage = self._usage[c.id]
        usage.total += 1
        if usage.day != local.day:
            usage.day, usage.day_count = local.day, 0
        usage.day_count += 1
        bisect.insort(s.sent_times, t)
        bisect.insort(s.campaign_times.setdefault(c.id, []), t)
        s.campaign_total[c.id] = s.campaign_total.get(c.id, 0) + 1
        s.visit_sent += 1
        s.visit_campaign[c.id] = s.visit_campaign.get(c.id, 0) + 1
        s.offers[offer_id] = c.id
        s.open_offer, s.open_until = offer_id, t + self.policy.offer_open_s
        if c.id not in s.exposures:
            s.exposures[c.id] = t
        return Offer(offer_id, c.id, c.brand, shopper, t, expires, voucher, c.offer)

    # ------------------------------------------------------------------------------------ output

    def _flush(self, now: float) -> None:
        writes = EngineWrites(tuple(self._pending_decisions), tuple(self._pending_profiles.values()),
                              tuple((sh, z, t) for (sh, z), t in self._pending_seen.items()),
                              tuple(self._pending_conversions))
        self._pending_decisions.clear()
        self._pending_profiles.clear()
        self._pending_seen.clear()
        self._pending_conversions.clear()
        if writes:
            self._store.write(writes)
        if now - self._last_sweep > SWEEP_EVERY_S:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        self._last_sweep = now
        idle = [k for k, s in self._shoppers.items() if now - s.last_t > SHOPPER_IDLE_EVICT_S and not s.stays]
        for k in idle:
            del self._shoppers[k]
        self._fired.keep_only(set(self._shoppers))
        for s in self._shoppers.values():
            _prune(s.sent_times, now - DAY_S)
            for times in s.campaign_times.values():
                _prune(times, now - DAY_S)

    def _day_start(self, t: float) -> float:
        """UTC epoch seconds of the start of ``t``'s venue-local day."""
        local = self._local.at(t)
        midnight = dt.datetime.combine(local.date, dt.time(0, 0), tzinfo=self._local.tz)
        return midnight.timestamp()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"campaigns": len(self._campaigns), "shoppers_in_memory": len(self._shoppers),
                    "dwell_timers": len(self._timers)}


def _rank(c: Campaign) -> tuple[int, str]:
    return (-c.priority, c.id)


def _count_since(times: list[float] | None, since: float) -> int:
    """How many of the sorted ``times`` are after ``since``."""
    if not times:
        return 0
    return len(times) - bisect.bisect_right(times, since)


def _prune(times: list[float], before: float) -> None:
    i = bisect.bisect_right(times, before)
    if i:
        del times[:i]


def _dwell_seconds(extra: Mapping[str, Any]) -> float | None:
    for key in DWELL_EXTRA_KEYS:
        v = extra.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
    return None
