"""``instore bench campaigns``: zone events and positions of thousands of concurrent shoppers against
hundreds of active campaigns in the demo mall, through the campaign engine and its SQLite store.

The stream is fed as the live pipeline does: one call per 1-second window of zone events and
positions (``engine.on_window(events, now, PositionColumns)``), each call ending with one SQLite transaction. Per
window we time the call; an offer's latency is that of the call that made it (event in, decision
and its database write out), so ``p99_offer_latency_ms`` is the 99th percentile over sent offers.

Baseline, in the same run: ``campaigns.reference.ReferenceEngine``, the same rules with every count
recomputed from the full decision log and a linear scan over all campaigns per trigger (what a
straightforward implementation does). It is quadratic, so it runs on a prefix of the stream; the
optimized engine runs the same prefix too, both decisions are compared (they must be identical),
and the speed ratio is reported on that prefix.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from api.campaign_store import SqliteCampaignStore
from campaigns import (
    Audience,
    Budget,
    Campaign,
    CampaignEngine,
    Consent,
    DailyWindow,
    Decision,
    OfferContent,
    ProtectionPolicy,
    Schedule,
    ShopperCaps,
    Trigger,
)
from campaigns.engine import PositionColumns
from campaigns.reference import ReferenceEngine
from positioning.live import ZoneEvent
from positioning.venue import Venue, parse_venue

SEED: Final = 8
SHOPPERS: Final = 5000  # concurrent shoppers in the mall over the run
CAMPAIGNS: Final = 300  # active campaigns
DURATION_S: Final = 3600.0  # simulated mall time
FIX_PERIOD_S: Final = 5.0  # a shopper's position reaches the engine every 5 s while at a zone
BASELINE_WINDOWS: Final = 240  # the quadratic baseline runs the first 4 minutes of the stream
OPT_IN_SHARE: Final = 0.6  # share of shoppers who opted in to marketing
TARGET_DECISIONS_PER_S: Final = 50_000
TARGET_P99_MS: Final = 100.0
T_START: Final = 1_748_858_400.0  # 2025-06-02 12:00 Paris / 18:00 Shanghai: inside mall hours, outside quiet hours
DEMO_MALL: Final = Path(__file__).resolve().parent.parent / "simulations" / "venues" / "demo-mall.yaml"
SECRET: Final = b"bench-campaign-secret-0123456789ab"


@dataclass(frozen=True, slots=True)
class Window:
    now: float
    events: tuple[ZoneEvent, ...]
    positions: PositionColumns


def make_campaigns(venue: Venue, n: int, rng: np.random.Generator) -> list[Campaign]:
    branded = [z for z in venue.zones if z.brand is not None]
    kinds = ["enter"] * 5 + ["dwell"] * 3 + ["proximity"] * 2 + ["exit_without"] + ["revisit"]
    out = []
    for i in range(n):
        zone = branded[i % len(branded)]
        kind = kinds[int(rng.integers(len(kinds)))]
        trig = {
            "enter": Trigger("enter"),
            "dwell": Trigger("dwell", dwell_s=float(rng.choice([30.0, 60.0, 120.0, 300.0]))),
            "proximity": Trigger("proximity", radius_m=float(rng.choice([2.0, 4.0, 6.0]))),
            "exit_without": Trigger("exit_without", without=(zone.id,)),
            "revisit": Trigger("revisit", after_days=1.0),
        }[kind]
        zones: tuple[str, ...] = (zone.id,)
        if kind == "exit_without":  # leaving the concourse without having visited the brand's counter
            zones = tuple(z.id for z in venue.zones if z.kind == "corridor" and z.floor == zone.floor)[:1] or zones
        audience = Audience(spend_levels=("mid", "high")) if i % 7 == 0 else Audience()
        out.append(Campaign(
            id=f"c{i:03d}-{kind.replace('_', '-')}", brand=zone.brand or "venue", name=f"bench {i}", zones=zones,
            trigger=trig, offer=OfferContent(f"offer {i}", value="10% off"),
            schedule=Schedule(windows=(DailyWindow.parse("10:00-22:00"),)) if i % 3 == 0 else Schedule(),
            audience=audience, priority=int(rng.integers(0, 10)), budget=Budget(max_vouchers=2000, max_per_day=500),
            caps=ShopperCaps(per_visit=1, per_day=2, total=None), status="active",
            holdout_pct=10.0, cost_per_redemption=2.0))
    return out


def make_stream(venue: Venue, shoppers: int, duration_s: float, rng: np.random.Generator) -> list[Window]:
    """Each shopper arrives at a random time and visits random zones (stay 20-600 s, walk 10-60 s)."""
    zones = [z for z in venue.zones if z.kind in ("counter", "store", "corridor", "checkout")]
    anchor_xy = [(float(np.mean([p[0] for p in z.polygon])), float(np.mean([p[1] for p in z.polygon]))) for z in zones]
    events: list[list[ZoneEvent]] = [[] for _ in range(int(duration_s) + 1)]
    fixes: list[list[tuple[float, str, str, float, float]]] = [[] for _ in range(int(duration_s) + 1)]
    for s in range(shoppers):
        dev = f"dev-{s:05d}"
        t = float(rng.uniform(0.0, duration_s * 0.6))
        while t < duration_s:
            zi = int(rng.integers(len(zones)))
            z = zones[zi]
            stay = float(rng.uniform(20.0, 600.0))
            end = min(t + stay, duration_s)
            events[int(t)].append(ZoneEvent("zone_enter", dev, T_START + t, z.id, z.floor))
            x0, y0 = anchor_xy[zi]
            ft = t + float(rng.uniform(0.0, FIX_PERIOD_S))
            while ft < end:
                fixes[int(ft)].append((T_START + ft, dev, z.floor, x0 + float(rng.normal(0, 3.0)),
                                       y0 + float(rng.normal(0, 3.0))))
                ft += FIX_PERIOD_S
            if end >= duration_s:
                break
            events[int(end)].append(ZoneEvent("zone_exit", dev, T_START + end, z.id, z.floor))
            t = end + float(rng.uniform(10.0, 60.0))
    return [Window(T_START + i + 1.0, tuple(sorted(ev, key=lambda e: e.t)), _columns(fx))
            for i, (ev, fx) in enumerate(zip(events, fixes, strict=True))]


def _columns(rows: list[tuple[float, str, str, float, float]]) -> PositionColumns:
    def col(k: int, dtype: Any) -> Any:
        return np.array([r[k] for r in rows], dtype=dtype)

    return PositionColumns(col(0, np.float64), col(1, object), col(2, object), col(3, np.float64), col(4, np.float64))


def build(engine_cls: type[CampaignEngine], db: Path, venue: Venue, campaigns: list[Campaign],
          shoppers: int, rng_seed: int) -> CampaignEngine:
    store = SqliteCampaignStore(db)
    policy = ProtectionPolicy(quiet_hours=(DailyWindow.parse("22:00-08:00"),))
    eng = engine_cls(store, venue, SECRET, policy=policy, now=T_START)
    for c in campaigns:
        eng.put_campaign(c)
    rng = np.random.default_rng(rng_seed)
    for s in range(shoppers):
        if rng.random() < OPT_IN_SHARE:
            eng.set_consent(Consent(f"dev-{s:05d}", "*", True, T_START - 86400.0))
    return eng


def feed(engine: CampaignEngine, windows: list[Window]) -> dict[str, Any]:
    decisions: list[Decision] = []
    lat_ms: list[float] = []
    offer_lat_ms: list[float] = []
    total = 0.0
    cpu0 = time.process_time()
    for w in windows:
        t0 = time.perf_counter()
        out = engine.on_window(w.events, w.now, w.positions)
        dt = time.perf_counter() - t0
        total += dt
        lat_ms.append(dt * 1000.0)
        offer_lat_ms += [dt * 1000.0] * sum(1 for d in out if d.sent)
        decisions += out
    cpu = time.process_time() - cpu0
    return {"seconds": total, "cpu_seconds": cpu, "decisions": decisions, "window_ms": lat_ms,
            "offer_ms": offer_lat_ms}


def _key(d: Decision) -> tuple[float, str, str, str]:
    return (d.t, d.shopper, d.campaign, d.reason)


def run(args: argparse.Namespace) -> int:
    quick = bool(getattr(args, "quick", False))
    shoppers = SHOPPERS // 10 if quick else SHOPPERS
    n_campaigns = CAMPAIGNS // 3 if quick else CAMPAIGNS
    duration = DURATION_S / 6 if quick else DURATION_S
    base_windows = BASELINE_WINDOWS // 4 if quick else BASELINE_WINDOWS
    venue = parse_venue(DEMO_MALL.read_text(encoding="utf-8"), str(DEMO_MALL))
    rng = np.random.default_rng(SEED)
    campaigns = make_campaigns(venue, n_campaigns, rng)
    windows = make_stream(venue, shoppers, duration, rng)
    n_events = sum(len(w.events) for w in windows)
    n_fixes = sum(len(w.positions.t) for w in windows)
    with tempfile.TemporaryDirectory(prefix="instore-bench-campaigns-") as tmp:
        # Baseline and the engine side by side on the same prefix.
        prefix = windows[:base_windows]
        ref = build(ReferenceEngine, Path(tmp) / "ref.sqlite", venue, campaigns, shoppers, SEED)
        ref_run = feed(ref, prefix)
        opt = build(CampaignEngine, Path(tmp) / "opt-prefix.sqlite", venue, campaigns, shoppers, SEED)
        opt_prefix = feed(opt, prefix)
        if [_key(d) for d in opt_prefix["decisions"]] != [_key(d) for d in ref_run["decisions"]]:
            raise RuntimeError("the engine and the reference disagree on the prefix")
        # The whole stream through the engine.
        eng = build(CampaignEngine, Path(tmp) / "instore.sqlite", venue, campaigns, shoppers, SEED)
        full = feed(eng, windows)
    decisions = full["decisions"]
    n_dec = len(decisions)
    reasons = Counter(d.reason for d in decisions)
    triggers = Counter(d.trigger for d in decisions if d.sent)
    ref_dec = len(ref_run["decisions"])
    rate = n_dec / full["seconds"]
    prefix_rate = len(opt_prefix["decisions"]) / opt_prefix["seconds"]
    base_rate = ref_dec / ref_run["seconds"] if ref_run["seconds"] > 0 else 0.0
    offer_ms = np.asarray(full["offer_ms"]) if full["offer_ms"] else np.zeros(1)
    window_ms = np.asarray(full["window_ms"])
    result = {
        "benchmark": "campaigns",
        "decisions_per_s": round(rate, 1),
        "p99_offer_latency_ms": round(float(np.percentile(offer_ms, 99)), 3),
        "decisions_per_cpu_s": round(n_dec / full["cpu_seconds"], 1),
        "events_per_s": round(n_events / full["seconds"], 1),
        "fixes_per_s": round(n_fixes / full["seconds"], 1),
        "median_offer_latency_ms": round(float(np.median(offer_ms)), 3),
        "p99_window_ms": round(float(np.percentile(window_ms, 99)), 3),
        "max_window_ms": round(float(window_ms.max()), 3),
        "decisions": n_dec,
        "offers_sent": reasons.get("sent", 0),
        "reasons": dict(sorted(reasons.items())),
        "sent_by_trigger": dict(sorted(triggers.items())),
        "events": n_events,
        "fixes": n_fixes,
        "shoppers": shoppers,
        "campaigns": n_campaigns,
        "simulated_s": duration,
        "engine_seconds": round(full["seconds"], 3),
        "engine_cpu_seconds": round(full["cpu_seconds"], 3),
        "store": "sqlite (WAL, one transaction per 1 s window)",
        "baseline": {
            "name": "reference engine (full-log rescans, linear campaign scan)",
            "windows": len(prefix),
            "decisions": ref_dec,
            "decisions_per_s": round(base_rate, 1),
            "engine_decisions_per_s_same_prefix": round(prefix_rate, 1),
            "speedup_same_prefix": round(prefix_rate / base_rate, 2) if base_rate > 0 else None,
            "identical_decisions": True,
        },
        "target_decisions_per_s": TARGET_DECISIONS_PER_S,
        "target_p99_offer_latency_ms": TARGET_P99_MS,
        "meets_target": bool(rate >= TARGET_DECISIONS_PER_S and float(np.percentile(offer_ms, 99)) < TARGET_P99_MS),
        "quick": quick,
    }
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"campaigns: {shoppers} shoppers, {n_campaigns} active campaigns, {duration:.0f} s of mall time, "
          f"{n_events} zone events, {n_fixes} fixes")
    print(f"  {'':40s} {'decisions/s':>12s} {'decisions':>10s}")
    print(f"  {'engine (whole stream)':40s} {rate:12,.0f} {n_dec:10d}   ({n_dec / full['cpu_seconds']:,.0f} per CPU s)")
    print(f"  {f'engine (first {len(prefix)} s)':40s} {prefix_rate:12,.0f} {len(opt_prefix['decisions']):10d}")
    print(f"  {f'naive reference (first {len(prefix)} s)':40s} {base_rate:12,.0f} {ref_dec:10d}")
    print(f"  offers sent {reasons.get('sent', 0)}; offer latency median {result['median_offer_latency_ms']} ms, "
          f"p99 {result['p99_offer_latency_ms']} ms (target < {TARGET_P99_MS:g} ms); "
          f"speedup on the prefix x{result['baseline']['speedup_same_prefix']}")
    print(f"  reasons: {', '.join(f'{k} {v}' for k, v in sorted(reasons.items()))}")
    return 0
