"""``instore bench simulator``: how much faster than real time the simulator runs a busy mall.

Scenario (issue 5): 5,000 shoppers inside at once, 60 ceiling gateways, one floor of 120 x 80 m
(the demo mall's ground floor with its walls, counters and zones, gateways on a 12 x 13.3 m
grid), default radio channel (walls, bodies, shadowing, fading, censoring, outages, clock skew).
One tick is one simulated second: shoppers move, then every gateway hears every advertisement.

``realtime_factor`` = simulated seconds / CPU seconds of this process in ``World.advance`` (one
core; set-up excluded: the walkable graph, wall tables and shadowing fields are built once per
venue). ``realtime_factor_wall`` is the same over wall time, lower when the machine is shared.

Baseline, side by side in the same run: the same channel written the obvious way, one Python
loop iteration per (device, gateway, advertisement), on a sample of the same devices and the same
positions; its real-time factor for the full crowd is scaled from the sample (its cost is linear
in devices x gateways).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import numpy as np

from positioning.venue import Anchor, Venue, parse_venue
from simulations.radio import RadioConfig
from simulations.scenario import World

SHOPPERS: Final = 5_000  # concurrent (issue 5)
GATEWAYS_X: Final = 10  # 10 x 6 = 60 gateways (issue 5)
GATEWAYS_Y: Final = 6
SIM_SECONDS: Final = 60  # measured ticks; --quick uses fewer shoppers and seconds
MALL_SECONDS: Final = 20  # the whole demo mall, measured for information
WARMUP_TICKS: Final = 10  # routes between places are computed the first time someone walks them
BASELINE_DEVICES: Final = 40  # the scalar loop runs on this many devices
BASELINE_TICKS: Final = 3
TARGET_REALTIME_FACTOR: Final = 50.0
SEED: Final = 5
VENUE_FILE: Final = Path(__file__).resolve().parent / "venues" / "demo-mall.yaml"


def bench_venue() -> Venue:
    """The demo mall's ground floor with 60 gateways on a regular ceiling grid."""
    mall = parse_venue(VENUE_FILE.read_text(encoding="utf-8"), str(VENUE_FILE))
    floor = mall.floors[0]
    xs = [p[0] for p in floor.outline]
    ys = [p[1] for p in floor.outline]
    w, h = max(xs) - min(xs), max(ys) - min(ys)
    anchors = tuple(
        Anchor(f"gw-{j * GATEWAYS_X + i + 1:02d}", floor.id, min(xs) + (i + 0.5) * w / GATEWAYS_X,
               min(ys) + (j + 0.5) * h / GATEWAYS_Y, 3.5, rssi_1m=-59.0, path_loss_n=2.2)
        for j in range(GATEWAYS_Y) for i in range(GATEWAYS_X))
    return replace(mall, floors=(floor,), anchors=anchors, beacons=mall.beacons_on(floor.id),
                   zones=mall.zones_on(floor.id), walkable=mall.walkable_on(floor.id), connectors=(),
                   pois=tuple(p for p in mall.pois if p.floor == floor.id))


def _baseline_tick(world: World, devices: list[int], t0: float, t1: float, x0: dict[int, float],
                   y0: dict[int, float], rng: np.random.Generator) -> int:
    """The same channel, one scalar iteration per (device, gateway, advertisement)."""
    ch = world.channel
    cfg = ch.config
    cols = world._dev_cols
    owner = world._dev_owner
    crowd = world.crowd
    heard = 0
    for d in devices:
        a = int(owner[d])
        x1, y1, f = float(crowd.x[a]), float(crowd.y[a]), int(crowd.floor[a])
        interval, phase = float(cols["interval"][d]), float(cols["phase"][d])
        k = math.ceil((t0 - phase) / interval)
        while phase + k * interval < t1:
            tau = phase + k * interval
            frac = (tau - t0) / (t1 - t0)
            px = x0[a] + (x1 - x0[a]) * frac
            py = y0[a] + (y1 - y0[a]) * frac
            for j in range(len(ch.anchors)):
                dx, dy = px - float(ch.ax[j]), py - float(ch.ay[j])
                dz = float(ch.device_z[f]) - float(ch.az[j])
                dist = max(math.sqrt(dx * dx + dy * dy + dz * dz), 0.1)
                wall_cell = int(ch.wall_grid.cell(np.array([px]), np.array([py]))[0])
                rssi = float(ch.static_rows[f][wall_cell, j])  # P0 - slabs - walls
                rssi += float(cols["offset"][d]) - float(ch.n10[j]) * math.log10(dist)
                if ch.shadow_rows is not None:
                    rssi += float(ch.shadow_rows[f][ch.shadow_grid.cell(np.array([px]), np.array([py]))[0], j])
                rssi += rng.normal(0.0, cfg.fading_db) + float(ch.channel[j, rng.integers(0, 3)])
                if rssi >= float(ch.sens[j]) and rng.random() < float(ch.duty[j]) * (1 - cfg.packet_loss):
                    heard += 1
            k += 1
    return heard


def run(args: argparse.Namespace) -> int:
    quick = bool(getattr(args, "quick", False))
    shoppers = 500 if quick else SHOPPERS
    seconds = 10 if quick else SIM_SECONDS
    venue = bench_venue()
    setup = time.perf_counter()
    world = World(venue, shoppers, seed=SEED, radio=RadioConfig(), follow_clock=False)
    for _ in range(WARMUP_TICKS):
        world.advance()
    setup_s = time.perf_counter() - setup

    readings = 0
    inside = []
    cpu = time.process_time()
    start = time.perf_counter()
    for _ in range(seconds):
        tick = world.advance()
        readings += len(tick.readings)
        inside.append(world.inside)
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu
    ours_rtf = seconds / cpu  # one core: CPU seconds of this process (the machine may be shared)
    ours_rtf_wall = seconds / wall

    # Baseline on a sample of the same crowd, same positions, same channel.
    rng = np.random.default_rng(SEED)
    base_wall = 0.0
    base_devices = 0
    base_readings = 0
    for _ in range(BASELINE_TICKS):
        crowd = world.crowd
        n_agents = len(crowd.shoppers)
        x0 = {i: float(crowd.x[i]) for i in range(n_agents)}
        y0 = {i: float(crowd.y[i]) for i in range(n_agents)}
        t0 = world.t
        world.advance()
        active = set(crowd.active().tolist())
        devs = [d for d in range(len(world.device_ids)) if int(world._dev_owner[d]) in active][:BASELINE_DEVICES]
        b0 = time.process_time()
        base_readings += _baseline_tick(world, devs, t0, world.t, x0, y0, rng)
        base_wall += time.process_time() - b0
        base_devices = len(devs)
    devices_inside = len(world.device_ids) and int(np.isin(world._dev_owner[: len(world.device_ids)],
                                                           world.crowd.active()).sum())
    # Per simulated second the baseline handles base_devices in base_wall / BASELINE_TICKS seconds.
    base_rtf = (BASELINE_TICKS / base_wall) * (base_devices / max(devices_inside, 1)) if base_wall > 0 else 0.0

    # The whole demo mall too (2 floors, 152 gateways, slabs between): a heavier, informative figure.
    mall_doc: dict[str, Any] | None = None
    if not quick:
        mall = parse_venue(VENUE_FILE.read_text(encoding="utf-8"), str(VENUE_FILE))
        mw = World(mall, shoppers, seed=SEED, radio=RadioConfig(), follow_clock=False)
        for _ in range(WARMUP_TICKS):
            mw.advance()
        c0, w0, n_read = time.process_time(), time.perf_counter(), 0
        for _ in range(MALL_SECONDS):
            n_read += len(mw.advance().readings)
        mc, mwall = time.process_time() - c0, time.perf_counter() - w0
        mall_doc = {"realtime_factor": round(MALL_SECONDS / mc, 2),
                    "realtime_factor_wall": round(MALL_SECONDS / mwall, 2), "shoppers": mw.inside,
                    "gateways": len(mall.anchors), "floors": len(mall.floors),
                    "readings_per_sim_s": round(n_read / MALL_SECONDS, 1)}

    result: dict[str, Any] = {
        "realtime_factor": round(ours_rtf, 2),
        "realtime_factor_wall": round(ours_rtf_wall, 2),
        "shoppers": int(np.mean(inside)),
        "gateways": len(venue.anchors),
        "devices": devices_inside,
        "sim_seconds": seconds,
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "readings": readings,
        "readings_per_s": round(readings / cpu, 1),
        "readings_per_sim_s": round(readings / seconds, 1),
        "setup_seconds": round(setup_s, 2),
        "baseline_realtime_factor": round(base_rtf, 4),
        "baseline_devices_sampled": base_devices,
        "speedup": round(ours_rtf / base_rtf, 1) if base_rtf > 0 else None,
        "target_realtime_factor": TARGET_REALTIME_FACTOR,
        "quick": quick,
        "demo_mall": mall_doc,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"simulator: {result['shoppers']} shoppers inside ({devices_inside} devices), {result['gateways']} gateways, "
          f"{seconds} simulated s")
    print(f"  {'':10s} {'real-time x':>12s} {'readings/s':>12s}   (per CPU second of one core; wall: "
          f"{ours_rtf_wall:.1f}x)")
    print(f"  {'ours':10s} {ours_rtf:12.1f} {readings / cpu:12.0f}")
    print(f"  {'baseline':10s} {base_rtf:12.3f} {'(scalar loop)':>12s}")
    if mall_doc is not None:
        print(f"  {'demo mall':10s} {mall_doc['realtime_factor']:12.1f} {'':>12s}   ({mall_doc['gateways']} gateways, "
              f"{mall_doc['floors']} floors, {mall_doc['shoppers']} shoppers)")
    print(f"  speedup {result['speedup']}x; target >= {TARGET_REALTIME_FACTOR:g}x real time: "
          f"{'met' if ours_rtf >= TARGET_REALTIME_FACTOR else 'NOT met'}")
    return 0
