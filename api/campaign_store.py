"""SQLite implementation of the campaign storage port, plus redemption, attribution, export and delete.

Uses the service's database file (its own ``campaign_*`` tables, created idempotently), WAL
journal, one connection per thread. Every multi-row change is one transaction; redemption runs
in ``BEGIN IMMEDIATE`` so two tills (threads or processes) redeeming one code serialise and
exactly one wins.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from campaigns.attribution import CampaignCounts, GroupCounts
from campaigns.codec import campaign_from_dict, campaign_to_dict
from campaigns.const import ATTRIBUTION_WINDOW_S, HOUR_S
from campaigns.model import (
    Campaign,
    Consent,
    DailyWindow,
    Exposure,
    OfferState,
    SentOffer,
    ShopperProfile,
    ShopperSnapshot,
)
from campaigns.redemption import Credit, RedemptionOutcome, RedemptionRequest, refusal
from campaigns.store import EngineWrites
from campaigns.vouchers import VoucherClaims

BUSY_TIMEOUT_MS: Final = 10_000  # a till waits up to 10 s for another till's transaction before failing
IN_CHUNK: Final = 500  # shoppers per "IN (...)" query: below SQLite's 999-parameter limit of old builds
ERASED: Final = "erased"  # what a deleted shopper's id becomes in rows kept for accounting

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS campaign_campaigns (id TEXT PRIMARY KEY, body TEXT NOT NULL, updated_t REAL NOT NULL);
CREATE TABLE IF NOT EXISTS campaign_decisions (
    t REAL NOT NULL, shopper TEXT NOT NULL, campaign TEXT NOT NULL, trigger TEXT NOT NULL,
    zone TEXT, floor TEXT, reason TEXT NOT NULL, offer_id TEXT);
CREATE INDEX IF NOT EXISTS campaign_decisions_campaign ON campaign_decisions (campaign, reason);
CREATE INDEX IF NOT EXISTS campaign_decisions_shopper ON campaign_decisions (shopper);
CREATE TABLE IF NOT EXISTS campaign_decision_counts (
    campaign TEXT NOT NULL, reason TEXT NOT NULL, trigger TEXT NOT NULL, zone TEXT NOT NULL, hour REAL NOT NULL,
    n INTEGER NOT NULL, PRIMARY KEY (campaign, reason, trigger, zone, hour)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS campaign_offers (
    offer_id TEXT PRIMARY KEY, campaign TEXT NOT NULL, brand TEXT NOT NULL, shopper TEXT NOT NULL,
    t REAL NOT NULL, expires REAL NOT NULL, voucher TEXT NOT NULL, zone TEXT, trigger TEXT NOT NULL,
    title TEXT NOT NULL, body TEXT NOT NULL, value TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'sent', state_t REAL,
    delivered_t REAL, opened_t REAL, dismissed_t REAL, redeemed_t REAL);
CREATE INDEX IF NOT EXISTS campaign_offers_shopper ON campaign_offers (shopper, t);
CREATE INDEX IF NOT EXISTS campaign_offers_campaign ON campaign_offers (campaign, t);
CREATE TABLE IF NOT EXISTS campaign_consents (
    shopper TEXT NOT NULL, scope TEXT NOT NULL, granted INTEGER NOT NULL, t REAL NOT NULL, source TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS campaign_consents_shopper ON campaign_consents (shopper, t);
CREATE TABLE IF NOT EXISTS campaign_profiles (
    shopper TEXT PRIMARY KEY, channel TEXT NOT NULL DEFAULT 'unknown', home_store TEXT,
    segments TEXT NOT NULL DEFAULT '[]', quiet_hours TEXT NOT NULL DEFAULT '[]',
    visit_count INTEGER NOT NULL DEFAULT 0, first_seen REAL, last_visit REAL,
    spend_total REAL NOT NULL DEFAULT 0, redemptions INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS campaign_zone_seen (
    shopper TEXT NOT NULL, zone TEXT NOT NULL, t REAL NOT NULL, PRIMARY KEY (shopper, zone)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS campaign_exposures (
    campaign TEXT NOT NULL, shopper TEXT NOT NULL, t REAL NOT NULL, holdout INTEGER NOT NULL,
    visited_t REAL, visited_zone TEXT, PRIMARY KEY (campaign, shopper)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS campaign_exposures_shopper ON campaign_exposures (shopper);
CREATE TABLE IF NOT EXISTS campaign_redemptions (
    code TEXT PRIMARY KEY, offer_id TEXT NOT NULL UNIQUE, campaign TEXT NOT NULL, shopper TEXT NOT NULL,
    amount REAL NOT NULL, store TEXT NOT NULL, staff TEXT, t REAL NOT NULL, idempotency_key TEXT NOT NULL,
    store_credit REAL NOT NULL, staff_credit REAL NOT NULL);
CREATE INDEX IF NOT EXISTS campaign_redemptions_campaign ON campaign_redemptions (campaign);
CREATE TABLE IF NOT EXISTS campaign_idempotency (
    key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, status INTEGER NOT NULL, body TEXT NOT NULL, t REAL NOT NULL);
CREATE TABLE IF NOT EXISTS campaign_purchases (
    shopper TEXT NOT NULL, store TEXT NOT NULL, amount REAL NOT NULL, t REAL NOT NULL, source TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS campaign_purchases_shopper ON campaign_purchases (shopper, t);
"""


def _profile_row(shopper: str, r: Sequence[Any]) -> ShopperProfile:
    """A profile from (channel, home_store, segments, quiet_hours, visit_count, first_seen, last_visit,
    spend_total, redemptions)."""
    return ShopperProfile(shopper, r[0], r[1], tuple(json.loads(r[2])), int(r[4]), r[5], r[6], float(r[7]),
                          int(r[8]), tuple(DailyWindow.parse(w) for w in json.loads(r[3])))


class SqliteCampaignStore:
    """The campaign store over one SQLite file (shared with the rest of the service)."""

    def __init__(self, path: str | Path, *, keep_blocked_rows: bool = False) -> None:
        self.path = Path(path)
        self.keep_blocked_rows = keep_blocked_rows
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._conn().executescript(SCHEMA)

    # ------------------------------------------------------------------------------------ plumbing

    def _conn(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._local.db = db
            with self._all_lock:
                self._all.append(db)
        return db

    @contextmanager
    def _tx(self, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        with self._all_lock:
            for db in self._all:
                db.close()
            self._all.clear()
        self._local = threading.local()

    # ------------------------------------------------------------------------------------ engine port

    def load_campaigns(self) -> list[Campaign]:
        rows = self._conn().execute("SELECT body FROM campaign_campaigns ORDER BY id").fetchall()
        return [campaign_from_dict(json.loads(r[0])) for r in rows]

    def save_campaign(self, campaign: Campaign) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO campaign_campaigns (id, body, updated_t) VALUES (?, ?, ?) "
                       "ON CONFLICT (id) DO UPDATE SET body = excluded.body, updated_t = excluded.updated_t",
                       (campaign.id, json.dumps(campaign_to_dict(campaign)), campaign.created_t))

    def budget_usage(self, day_start: float) -> dict[str, tuple[int, int]]:
        rows = self._conn().execute(
            "SELECT campaign, COUNT(*), SUM(t >= ?) FROM campaign_offers GROUP BY campaign", (day_start,)).fetchall()
        return {r[0]: (int(r[1]), int(r[2] or 0)) for r in rows}

    def load_shopper(self, shopper: str, since: float) -> ShopperSnapshot:
        db = self._conn()
        profile = self._profile(db, shopper)
        consents = tuple(Consent(shopper, r[0], bool(r[1]), r[2], r[3]) for r in db.execute(
            "SELECT scope, granted, t, source FROM campaign_consents WHERE shopper = ? ORDER BY t, rowid",
            (shopper,)))
        offers = tuple(SentOffer(r[0], r[1], r[2], r[3], r[4], r[5]) for r in db.execute(
            "SELECT offer_id, campaign, t, state, state_t, zone FROM campaign_offers WHERE shopper = ? AND t >= ? "
            "ORDER BY t", (shopper, since)))
        seen = {r[0]: r[1] for r in db.execute("SELECT zone, t FROM campaign_zone_seen WHERE shopper = ?",
                                                (shopper,))}
        exposures = tuple(Exposure(r[0], shopper, r[1], bool(r[2])) for r in db.execute(
            "SELECT campaign, t, holdout FROM campaign_exposures WHERE shopper = ? AND visited_t IS NULL",
            (shopper,)))
        totals = {r[0]: int(r[1]) for r in db.execute(
            "SELECT campaign, COUNT(*) FROM campaign_offers WHERE shopper = ? GROUP BY campaign", (shopper,))}
        return ShopperSnapshot(profile, consents, offers, seen, exposures, totals)

    def load_shoppers(self, shoppers: Sequence[str], since: float) -> dict[str, ShopperSnapshot]:
        out: dict[str, ShopperSnapshot] = {}
        for k in range(0, len(shoppers), IN_CHUNK):
            out.update(self._load_chunk(list(shoppers[k:k + IN_CHUNK]), since))
        return out

    def _load_chunk(self, shoppers: list[str], since: float) -> dict[str, ShopperSnapshot]:
        db = self._conn()
        marks = ",".join("?" * len(shoppers))
        profiles = {s: ShopperProfile(s) for s in shoppers}
        for r in db.execute("SELECT shopper, channel, home_store, segments, quiet_hours, visit_count, first_seen, "
                            f"last_visit, spend_total, redemptions FROM campaign_profiles WHERE shopper IN ({marks})",
                            shoppers):
            profiles[r[0]] = _profile_row(r[0], r[1:])
        consents: dict[str, list[Consent]] = {s: [] for s in shoppers}
        for r in db.execute("SELECT shopper, scope, granted, t, source FROM campaign_consents "
                            f"WHERE shopper IN ({marks}) ORDER BY t, rowid", shoppers):
            consents[r[0]].append(Consent(r[0], r[1], bool(r[2]), r[3], r[4]))
        offers: dict[str, list[SentOffer]] = {s: [] for s in shoppers}
        totals: dict[str, dict[str, int]] = {s: {} for s in shoppers}
        for r in db.execute("SELECT shopper, offer_id, campaign, t, state, state_t, zone FROM campaign_offers "
                            f"WHERE shopper IN ({marks}) ORDER BY t", shoppers):
            totals[r[0]][r[2]] = totals[r[0]].get(r[2], 0) + 1
            if r[3] >= since:
                offers[r[0]].append(SentOffer(r[1], r[2], r[3], r[4], r[5], r[6]))
        seen: dict[str, dict[str, float]] = {s: {} for s in shoppers}
        for r in db.execute(f"SELECT shopper, zone, t FROM campaign_zone_seen WHERE shopper IN ({marks})", shoppers):
            seen[r[0]][r[1]] = r[2]
        exposures: dict[str, list[Exposure]] = {s: [] for s in shoppers}
        for r in db.execute("SELECT shopper, campaign, t, holdout FROM campaign_exposures "
                            f"WHERE shopper IN ({marks}) AND visited_t IS NULL", shoppers):
            exposures[r[0]].append(Exposure(r[1], r[0], r[2], bool(r[3])))
        return {s: ShopperSnapshot(profiles[s], tuple(consents[s]), tuple(offers[s]), seen[s], tuple(exposures[s]),
                                   totals[s]) for s in shoppers}

    def _profile(self, db: sqlite3.Connection, shopper: str) -> ShopperProfile:
        r = db.execute("SELECT channel, home_store, segments, quiet_hours, visit_count, first_seen, last_visit, "
                       "spend_total, redemptions FROM campaign_profiles WHERE shopper = ?", (shopper,)).fetchone()
        return ShopperProfile(shopper) if r is None else _profile_row(shopper, r)

    def profile(self, shopper: str) -> ShopperProfile:
        return self._profile(self._conn(), shopper)

    def save_consent(self, consent: Consent) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO campaign_consents (shopper, scope, granted, t, source) VALUES (?, ?, ?, ?, ?)",
                       (consent.shopper, consent.scope, int(consent.granted), consent.t, consent.source))

    def consent_history(self, shopper: str) -> list[Consent]:
        return [Consent(shopper, r[0], bool(r[1]), r[2], r[3]) for r in self._conn().execute(
            "SELECT scope, granted, t, source FROM campaign_consents WHERE shopper = ? ORDER BY t, rowid",
            (shopper,))]

    def save_profile(self, profile: ShopperProfile) -> None:
        p = profile
        with self._tx() as db:
            db.execute("INSERT INTO campaign_profiles (shopper, channel, home_store, segments, quiet_hours) "
                       "VALUES (?, ?, ?, ?, ?) ON CONFLICT (shopper) DO UPDATE SET channel = excluded.channel, "
                       "home_store = excluded.home_store, segments = excluded.segments, "
                       "quiet_hours = excluded.quiet_hours",
                       (p.shopper, p.channel, p.home_store, json.dumps(list(p.segments)),
                        json.dumps([w.format() for w in p.quiet_hours])))

    def save_offer_state(self, shopper: str, offer_id: str, state: OfferState, t: float) -> None:
        column = {"delivered": "delivered_t", "opened": "opened_t", "dismissed": "dismissed_t",
                  "redeemed": "redeemed_t"}.get(state)
        with self._tx() as db:
            if column is not None:
                db.execute(f"UPDATE campaign_offers SET {column} = COALESCE({column}, ?) "
                           "WHERE offer_id = ? AND shopper = ?", (t, offer_id, shopper))
            # The shown state only moves forward (a late "delivered" does not reopen a dismissed offer).
            db.execute("UPDATE campaign_offers SET state = ?, state_t = ? WHERE offer_id = ? AND shopper = ? AND "
                       "(CASE state WHEN 'sent' THEN 0 WHEN 'delivered' THEN 1 WHEN 'opened' THEN 2 ELSE 3 END) < "
                       "(CASE ? WHEN 'sent' THEN 0 WHEN 'delivered' THEN 1 WHEN 'opened' THEN 2 ELSE 3 END)",
                       (state, t, offer_id, shopper, state))

    def write(self, writes: EngineWrites) -> None:
        """One transaction. Sent and held-out decisions are kept one row each (they are the experiment);
        blocked ones as counts per campaign, reason, trigger, zone and hour (what reports need, and no
        per-shopper trail of offers a shopper never saw) unless ``keep_blocked_rows``."""
        decisions = writes.decisions
        rows = decisions if self.keep_blocked_rows else [d for d in decisions if d.reason in ("sent", "holdout")]
        counts: Counter[tuple[str, str, str, str, float]] = Counter(
            (d.campaign, d.reason, d.trigger, d.zone or "", d.t // HOUR_S * HOUR_S) for d in decisions
            if d.reason not in ("sent", "holdout"))
        with self._tx() as db:
            if counts:
                db.executemany(
                    "INSERT INTO campaign_decision_counts (campaign, reason, trigger, zone, hour, n) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (campaign, reason, trigger, zone, hour) "
                    "DO UPDATE SET n = n + excluded.n", [(*k, n) for k, n in counts.items()])
            if rows:
                db.executemany(
                    "INSERT INTO campaign_decisions (t, shopper, campaign, trigger, zone, floor, reason, offer_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(d.t, d.shopper, d.campaign, d.trigger, d.zone, d.floor, d.reason,
                      None if d.offer is None else d.offer.offer_id) for d in rows])
                sent = [d for d in decisions if d.offer is not None]
                if sent:
                    db.executemany(
                        "INSERT OR IGNORE INTO campaign_offers (offer_id, campaign, brand, shopper, t, expires, "
                        "voucher, zone, trigger, title, body, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [(o.offer_id, o.campaign, o.brand, o.shopper, o.t, o.expires, o.voucher, d.zone, d.trigger,
                          o.content.title, o.content.body, o.content.value)
                         for d in sent if (o := d.offer) is not None])
                exposed = [(d.campaign, d.shopper, d.t, int(d.reason == "holdout"))
                           for d in decisions if d.reason in ("sent", "holdout")]
                if exposed:
                    db.executemany("INSERT OR IGNORE INTO campaign_exposures (campaign, shopper, t, holdout) "
                                   "VALUES (?, ?, ?, ?)", exposed)
            if writes.profiles:
                db.executemany(
                    "INSERT INTO campaign_profiles (shopper, visit_count, first_seen, last_visit) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (shopper) DO UPDATE SET visit_count = excluded.visit_count, "
                    "first_seen = excluded.first_seen, last_visit = excluded.last_visit",
                    [(p.shopper, p.visit_count, p.first_seen, p.last_visit) for p in writes.profiles])
            if writes.zone_seen:
                db.executemany("INSERT INTO campaign_zone_seen (shopper, zone, t) VALUES (?, ?, ?) "
                               "ON CONFLICT (shopper, zone) DO UPDATE SET t = MAX(t, excluded.t)", writes.zone_seen)
            if writes.conversions:
                db.executemany("UPDATE campaign_exposures SET visited_t = ?, visited_zone = ? "
                               "WHERE campaign = ? AND shopper = ? AND visited_t IS NULL",
                               [(c.t, c.zone, c.campaign, c.shopper) for c in writes.conversions])

    # ------------------------------------------------------------------------------------ shopper API

    def offers(self, shopper: str, now: float, include_closed: bool = False) -> list[dict[str, Any]]:
        sql = ("SELECT offer_id, campaign, brand, t, expires, voucher, zone, trigger, title, body, value, state "
               "FROM campaign_offers WHERE shopper = ?")
        if not include_closed:
            sql += " AND expires > ? AND state NOT IN ('dismissed', 'redeemed')"
        rows = self._conn().execute(sql + " ORDER BY t DESC", (shopper, now) if not include_closed else (shopper,))
        keys = ("offer_id", "campaign", "brand", "t", "expires", "voucher", "zone", "trigger", "title", "body",
                "value", "state")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def record_purchase(self, shopper: str, store: str, amount: float, t: float, source: str = "till") -> None:
        with self._tx() as db:
            db.execute("INSERT INTO campaign_purchases (shopper, store, amount, t, source) VALUES (?, ?, ?, ?, ?)",
                       (shopper, store, amount, t, source))

    # ------------------------------------------------------------------------------------ redemption

    def redeem(self, request: RedemptionRequest, checked: tuple[VoucherClaims, Credit] | RedemptionOutcome
               ) -> RedemptionOutcome:
        """Redeem atomically. ``checked`` is the pure pre-check's result: the claims and credit split of a
        verified code, or the refusal to record under the idempotency key."""
        fingerprint = request.fingerprint()
        with self._tx(immediate=True) as db:
            prior = db.execute("SELECT fingerprint, status, body FROM campaign_idempotency WHERE key = ?",
                               (request.idempotency_key,)).fetchone()
            if prior is not None:
                if prior[0] != fingerprint:
                    return refusal("idempotency_key_reused", f"idempotency key {request.idempotency_key!r} was used "
                                                             "for a different request")
                return RedemptionOutcome(int(prior[1]), json.loads(prior[2]), replayed=True)
            outcome = checked if isinstance(checked, RedemptionOutcome) else self._redeem_locked(db, request,
                                                                                                 *checked)
            db.execute("INSERT INTO campaign_idempotency (key, fingerprint, status, body, t) VALUES (?, ?, ?, ?, ?)",
                       (request.idempotency_key, fingerprint, outcome.status, json.dumps(outcome.body), request.t))
            return outcome

    def _redeem_locked(self, db: sqlite3.Connection, req: RedemptionRequest, claims: VoucherClaims,
                       credit: Credit) -> RedemptionOutcome:
        offer = db.execute("SELECT shopper, campaign, title, value FROM campaign_offers WHERE offer_id = ?",
                           (claims.offer_id,)).fetchone()
        if offer is None or offer[1] != claims.campaign:
            return refusal("not_issued", "no such offer was issued (or the shopper deleted their data)")
        done = db.execute("SELECT t, store, idempotency_key FROM campaign_redemptions WHERE code = ? OR offer_id = ?",
                          (claims.code, claims.offer_id)).fetchone()
        if done is not None:
            return refusal("already_redeemed", f"this voucher was already redeemed at {done[1]!r}",
                           redeemed_t=done[0], redeemed_store=done[1])
        shopper = offer[0]
        db.execute("INSERT INTO campaign_redemptions (code, offer_id, campaign, shopper, amount, store, staff, t, "
                   "idempotency_key, store_credit, staff_credit) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (claims.code, claims.offer_id, claims.campaign, shopper, req.amount, req.store, req.staff, req.t,
                    req.idempotency_key, credit.store_amount, credit.staff_amount))
        db.execute("UPDATE campaign_offers SET state = 'redeemed', state_t = ?, redeemed_t = ? WHERE offer_id = ?",
                   (req.t, req.t, claims.offer_id))
        db.execute("INSERT INTO campaign_purchases (shopper, store, amount, t, source) "
                   "VALUES (?, ?, ?, ?, 'redemption')", (shopper, req.store, req.amount, req.t))
        db.execute("INSERT INTO campaign_profiles (shopper, spend_total, redemptions) VALUES (?, ?, 1) "
                   "ON CONFLICT (shopper) DO UPDATE SET spend_total = spend_total + excluded.spend_total, "
                   "redemptions = redemptions + 1", (shopper, req.amount))
        return RedemptionOutcome(200, {
            "status": "redeemed", "campaign": claims.campaign, "offer_id": claims.offer_id, "title": offer[2],
            "value": offer[3], "amount": req.amount, "store": req.store, "staff": req.staff, "t": req.t,
            "credit": {"store": credit.store_amount, "staff": credit.staff_amount}, "shopper": shopper})

    # ------------------------------------------------------------------------------------ attribution

    def campaign_counts(self, campaign: str, redeem_zones: Sequence[str]) -> CampaignCounts:
        db = self._conn()
        decisions: dict[str, int] = {}
        for r in db.execute("SELECT reason, COUNT(*) FROM campaign_decisions WHERE campaign = ? AND "
                            "(reason IN ('sent', 'holdout') OR ?) GROUP BY reason",
                            (campaign, 0)):
            decisions[r[0]] = int(r[1])
        for r in db.execute("SELECT reason, SUM(n) FROM campaign_decision_counts WHERE campaign = ? GROUP BY reason",
                            (campaign,)):
            decisions[r[0]] = decisions.get(r[0], 0) + int(r[1])
        o = db.execute("SELECT COUNT(*), COUNT(delivered_t), COUNT(opened_t), COUNT(dismissed_t), COUNT(redeemed_t) "
                       "FROM campaign_offers WHERE campaign = ?", (campaign,)).fetchone()
        revenue = db.execute("SELECT COALESCE(SUM(amount), 0) FROM campaign_redemptions WHERE campaign = ?",
                             (campaign,)).fetchone()[0]
        zones = list(redeem_zones)
        marks = ",".join("?" * len(zones)) or "NULL"
        groups: dict[int, GroupCounts] = {}
        for r in db.execute(
                "SELECT e.holdout, COUNT(*), COUNT(e.visited_t), "
                f"SUM(EXISTS (SELECT 1 FROM campaign_purchases p WHERE p.shopper = e.shopper AND p.t >= e.t "
                f"AND p.t <= e.t + ? AND p.store IN ({marks}))) "
                "FROM campaign_exposures e WHERE e.campaign = ? GROUP BY e.holdout",
                (ATTRIBUTION_WINDOW_S, *zones, campaign)):
            groups[int(r[0])] = GroupCounts(int(r[1]), int(r[2]), int(r[3] or 0))
        by_counter = tuple((r[0] or "", int(r[1]), int(r[2]), float(r[3])) for r in db.execute(
            "SELECT o.zone, COUNT(*), COUNT(r.code), COALESCE(SUM(r.amount), 0) FROM campaign_offers o "
            "LEFT JOIN campaign_redemptions r ON r.offer_id = o.offer_id WHERE o.campaign = ? "
            "GROUP BY o.zone ORDER BY o.zone", (campaign,)))
        by_store = tuple((r[0], int(r[1]), float(r[2]), float(r[3])) for r in db.execute(
            "SELECT store, COUNT(*), SUM(amount), SUM(store_credit) FROM campaign_redemptions WHERE campaign = ? "
            "GROUP BY store ORDER BY store", (campaign,)))
        by_staff = tuple((r[0], int(r[1]), float(r[2]), float(r[3])) for r in db.execute(
            "SELECT staff, COUNT(*), SUM(amount), SUM(staff_credit) FROM campaign_redemptions "
            "WHERE campaign = ? AND staff IS NOT NULL GROUP BY staff ORDER BY staff", (campaign,)))
        return CampaignCounts(decisions, int(o[0]), int(o[1]), int(o[2]), int(o[3]), int(o[4]), float(revenue),
                              groups.get(0, GroupCounts()), groups.get(1, GroupCounts()), by_counter, by_store,
                              by_staff)

    # ------------------------------------------------------------------------------------ privacy

    def export_shopper(self, shopper: str) -> dict[str, Any]:
        db = self._conn()

        def rows(sql: str) -> list[dict[str, Any]]:
            cur = db.execute(sql, (shopper,))
            names = [c[0] for c in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

        return {
            "shopper": shopper,
            "profile": rows("SELECT * FROM campaign_profiles WHERE shopper = ?"),
            "consents": rows("SELECT scope, granted, t, source FROM campaign_consents WHERE shopper = ? ORDER BY t"),
            "offers": rows("SELECT * FROM campaign_offers WHERE shopper = ? ORDER BY t"),
            "decisions": rows("SELECT t, campaign, trigger, zone, floor, reason, offer_id FROM campaign_decisions "
                              "WHERE shopper = ? ORDER BY t"),
            "redemptions": rows("SELECT campaign, offer_id, amount, store, staff, t FROM campaign_redemptions "
                                "WHERE shopper = ? ORDER BY t"),
            "purchases": rows("SELECT store, amount, t, source FROM campaign_purchases WHERE shopper = ? ORDER BY t"),
            "zones_seen": rows("SELECT zone, t FROM campaign_zone_seen WHERE shopper = ? ORDER BY zone"),
            "exposures": rows("SELECT campaign, t, holdout, visited_t, visited_zone FROM campaign_exposures "
                              "WHERE shopper = ? ORDER BY campaign"),
        }

    def delete_shopper(self, shopper: str) -> dict[str, int]:
        """Erase a shopper: personal rows are deleted; rows brands are billed on (redemptions, purchases,
        decisions) are kept with the id replaced by ``erased``. Their vouchers stop working."""
        counts: dict[str, int] = {}
        with self._tx(immediate=True) as db:
            for table in ("campaign_profiles", "campaign_consents", "campaign_zone_seen", "campaign_exposures",
                          "campaign_offers"):
                counts[table] = db.execute(f"DELETE FROM {table} WHERE shopper = ?", (shopper,)).rowcount
            for table in ("campaign_decisions", "campaign_redemptions", "campaign_purchases"):
                counts[table] = db.execute(f"UPDATE {table} SET shopper = ? WHERE shopper = ?",
                                           (ERASED, shopper)).rowcount
        return counts

    def purge_before(self, t: float) -> int:
        """Retention: delete decisions, zone last-seen times and till idempotency keys older than ``t``
        (offers, exposures and redemptions stay: budgets and attribution are counted from them)."""
        with self._tx() as db:
            n = db.execute("DELETE FROM campaign_decisions WHERE t < ?", (t,)).rowcount
            n += db.execute("DELETE FROM campaign_decision_counts WHERE hour < ?", (t,)).rowcount
            n += db.execute("DELETE FROM campaign_zone_seen WHERE t < ?", (t,)).rowcount
            n += db.execute("DELETE FROM campaign_idempotency WHERE t < ?", (t,)).rowcount
        return int(n)
