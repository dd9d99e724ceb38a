"""The mall simulator: reproducible, agents stay walkable, truth is consistent, RSSI follows the model."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import numpy as np
import pytest
import shapely

from positioning.venue import Venue, walkable_shape, zone_shape
from simulations.radio import RadioConfig
from simulations.scenario import World, simulate
from tests.conftest import CORNER_STORE, instore_exe


def test_same_seed_same_run_and_other_seed_differs(store: Venue) -> None:
    a = simulate(store, shoppers=8, duration_s=60, seed=4)
    b = simulate(store, shoppers=8, duration_s=60, seed=4)
    c = simulate(store, shoppers=8, duration_s=60, seed=5)
    assert len(a.readings) > 500
    for name in ("t", "rssi", "tx_power", "arrival"):
        np.testing.assert_array_equal(getattr(a.readings, name), getattr(b.readings, name))
    assert a.readings.device.tolist() == b.readings.device.tolist()
    np.testing.assert_array_equal(a.positions.x, b.positions.x)
    assert a.visits.zone.tolist() == b.visits.zone.tolist()
    assert len(a.readings) != len(c.readings) or not np.array_equal(a.readings.rssi, c.readings.rssi)


def test_agents_never_leave_walkable_areas(mall: Venue) -> None:
    world = World(mall, 150, seed=2, follow_clock=False)
    shapes = {f: walkable_shape(mall, f).buffer(0.01) for f in mall.floor_ids}
    for s in shapes.values():
        shapely.prepare(s)
    seen_floors: set[str] = set()
    moved = 0.0
    last: dict[int, tuple[float, float]] = {}
    for _ in range(240):
        world.advance()
        agents, x, y, floor = world.shopper_positions()
        for fi, fid in enumerate(world.floor_ids):
            on = floor == fi
            if on.any():
                seen_floors.add(fid)
                inside = shapely.intersects_xy(shapes[fid], x[on], y[on])
                assert inside.all(), f"{(~inside).sum()} agents off the walkable area of {fid}"
        for a, xx, yy in zip(agents.tolist(), x.tolist(), y.tolist(), strict=True):
            if a in last:
                moved += float(np.hypot(xx - last[a][0], yy - last[a][1]))
            last[a] = (xx, yy)
    assert seen_floors == set(mall.floor_ids)
    assert moved > 1000.0  # people walked


def test_walks_never_cut_through_walls(mall: Venue) -> None:
    """Consecutive positions of a walker are joined by a segment inside the walkable area."""
    world = World(mall, 80, seed=9, follow_clock=False)
    shapes = {fi: walkable_shape(mall, f).buffer(0.05) for fi, f in enumerate(mall.floor_ids)}
    prev: dict[int, tuple[float, float, int]] = {}
    checked = 0
    for _ in range(150):
        world.advance()
        agents, x, y, floor = world.shopper_positions()
        for a, xx, yy, ff in zip(agents.tolist(), x.tolist(), y.tolist(), floor.tolist(), strict=True):
            p = prev.get(a)
            if p is not None and p[2] == ff and world.crowd.state[a] == 1 and (p[0], p[1]) != (xx, yy):
                # corners of the route may be cut within one tick; a walk of <= 1.5 m cannot skip a wall
                # without the straight segment leaving the area
                seg = shapely.linestrings([(p[0], p[1]), (xx, yy)])
                assert shapes[ff].covers(seg) or np.hypot(xx - p[0], yy - p[1]) < 0.2 or _corner_ok(
                    shapes[ff], p, (xx, yy)), f"agent {a} jumped from {p} to {(xx, yy)}"
                checked += 1
            prev[a] = (xx, yy, ff)
    assert checked > 1000


def _corner_ok(shape: shapely.Geometry, p: tuple[float, float, int], q: tuple[float, float]) -> bool:
    """A walker turning a corner inside one tick: both ends are walkable and close together."""
    return bool(shape.covers(shapely.Point(p[0], p[1])) and shape.covers(shapely.Point(*q))
                and np.hypot(q[0] - p[0], q[1] - p[1]) <= 1.6)


def test_truth_is_consistent_with_readings(store: Venue) -> None:
    r = simulate(store, shoppers=12, duration_s=120, seed=7)
    read_devs = set(r.readings.device.tolist())
    truth_devs = set(r.positions.device.tolist())
    assert truth_devs == read_devs
    assert {d.id for d in r.devices} == read_devs
    for dev in truth_devs:
        t = r.positions.t[r.positions.device == dev]
        assert np.all(np.diff(t) <= 1.0 + 1e-9), "a row per second while inside"
    # Every stay: the true position is inside the zone at its start and end, and stays of a device
    # in a zone do not come within 5 s of each other.
    shapes = {z.id: zone_shape(z).buffer(1e-6) for z in store.zones}
    for dev, zone, start, end in zip(r.visits.device, r.visits.zone, r.visits.start, r.visits.end, strict=True):
        assert end >= start
        m = (r.positions.device == dev) & (r.positions.t >= start) & (r.positions.t <= end)
        xs, ys = r.positions.x[m], r.positions.y[m]
        assert shapes[zone].covers(shapely.Point(xs[0], ys[0])) and shapes[zone].covers(shapely.Point(xs[-1], ys[-1]))
    for dev in set(r.visits.device.tolist()):
        for zone in set(r.visits.zone[r.visits.device == dev].tolist()):
            m = (r.visits.device == dev) & (r.visits.zone == zone)
            starts, ends = np.sort(r.visits.start[m]), np.sort(r.visits.end[m])
            assert np.all(starts[1:] - ends[:-1] > 5.0)
    # A counter stay lies within a stay in the store containing it.
    for dev, zone, start, end in zip(r.visits.device, r.visits.zone, r.visits.start, r.visits.end, strict=True):
        if zone.startswith("c-"):
            m = (r.visits.device == dev) & (r.visits.zone == "store")
            assert np.any((r.visits.start[m] <= start) & (r.visits.end[m] >= end))


def test_rssi_fits_back_to_the_configured_model(mall: Venue) -> None:
    """With only log-distance path loss and 6 dB shadowing, a regression on the generated readings
    (same-floor links) recovers the venue's exponent and intercept, and the residual spread is σ."""
    r = simulate(mall, shoppers=60, duration_s=40, seed=11, radio=RadioConfig.ideal(sigma_db=6.0))
    anchors = {a.id: a for a in mall.anchors}
    d_all = []
    rssi_all = []
    for dev in np.unique(r.readings.device):
        pm = r.positions.device == dev
        rm = r.readings.device == dev
        tt = r.positions.t[pm]
        x = np.interp(r.readings.t[rm], tt, r.positions.x[pm])
        y = np.interp(r.readings.t[rm], tt, r.positions.y[pm])
        floor = r.positions.floor[pm][np.clip(np.searchsorted(tt, r.readings.t[rm]), 0, tt.size - 1)]
        linked = [anchors[a] for a in r.readings.anchor[rm]]
        same = np.array([a.floor for a in linked]) == floor
        ax = np.array([a.x for a in linked])
        ay = np.array([a.y for a in linked])
        az = np.array([a.z for a in linked])
        d_all.append(np.sqrt((x - ax) ** 2 + (y - ay) ** 2 + (az - 1.2) ** 2)[same])
        rssi_all.append(r.readings.rssi[rm][same])
    d = np.concatenate(d_all)
    rssi = np.concatenate(rssi_all)
    assert rssi.size > 100_000
    slope, intercept = np.polyfit(np.log10(d), rssi, 1)
    resid = rssi - (slope * np.log10(d) + intercept)
    assert -slope / 10 == pytest.approx(2.2, abs=0.1)
    assert intercept == pytest.approx(-59.0, abs=1.5)
    assert resid.std() == pytest.approx(6.0, abs=0.5)
    assert np.all(rssi == np.round(rssi)), "integer dBm"


def test_default_channel_censors_and_varies_devices(store: Venue) -> None:
    r = simulate(store, shoppers=20, duration_s=120, seed=3)
    assert r.readings.rssi.min() >= -100  # nothing below the receivers' sensitivity
    assert r.readings.rssi.max() <= -20
    offsets = [d.tx_offset_db for d in r.devices if d.kind == "phone"]
    assert max(offsets) - min(offsets) > 5.0
    # Receivers report times a little off and readings arrive out of order.
    assert np.any(np.diff(r.readings.t) < 0)


def test_simulate_command_writes_the_locate_files(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    proc = subprocess.run([instore_exe(), "simulate", "--venue", str(CORNER_STORE), "--shoppers", "5",
                           "--duration", "30", "--out", str(out), "--seed", "2"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    headers = {name: (out / name).read_text(encoding="utf-8").splitlines()[0].split(",") for name in
               ("anchors.csv", "readings.csv", "truth_positions.csv", "truth_visits.csv")}
    assert headers["anchors.csv"][:3] == ["anchor", "x", "y"]
    assert headers["readings.csv"] == ["t", "device", "anchor", "rssi", "tx_power"]
    assert headers["truth_positions.csv"] == ["t", "device", "x", "y", "floor"]
    assert headers["truth_visits.csv"] == ["device", "zone", "start", "end"]
    rows = list(csv.DictReader((out / "readings.csv").read_text(encoding="utf-8").splitlines()))
    anchors = {row["anchor"] for row in csv.DictReader((out / "anchors.csv").read_text(encoding="utf-8").splitlines())}
    assert rows and {r["anchor"] for r in rows} <= anchors
    assert all(float(r["rssi"]).is_integer() for r in rows)


def test_simulate_command_rejects_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema: 1\nvenue: {id: x, name: X, timezone: UTC}\nfloors: []\nanchors: []\n", encoding="utf-8")
    proc = subprocess.run([instore_exe(), "simulate", "--venue", str(bad), "--shoppers", "5", "--duration", "30",
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "floors" in proc.stderr and proc.stderr.count("\n") == 1
    proc = subprocess.run([instore_exe(), "simulate", "--venue", str(CORNER_STORE), "--shoppers", "5",
                           "--duration", "-3", "--out", str(tmp_path / "o")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "--duration" in proc.stderr


def test_phone_mode_scans_range_the_venue_beacons(store: Venue) -> None:
    r = simulate(store, shoppers=10, duration_s=60, seed=8, mode="phone")
    beacons = {b.id for b in store.beacons}
    assert len(r.readings) > 50
    assert set(r.readings.anchor.tolist()) <= beacons
    assert np.all(r.readings.scan >= 0)
    assert all(str(d).startswith("app-") for d in set(r.readings.device.tolist()))
    # One reading per beacon per scan, all rows of a scan at the scan's time.
    keys = list(zip(r.readings.device.tolist(), r.readings.scan.tolist(), r.readings.anchor.tolist(), strict=True))
    assert len(keys) == len(set(keys))
    by_scan: dict[tuple[str, int], set[float]] = {}
    for d, s, t in zip(r.readings.device.tolist(), r.readings.scan.tolist(), r.readings.t.tolist(), strict=True):
        by_scan.setdefault((d, s), set()).add(t)
    assert all(len(ts) == 1 for ts in by_scan.values())
    assert set(r.positions.device.tolist()) == set(r.readings.device.tolist())


def test_regulars_come_back_another_day_with_the_same_beacons(store: Venue) -> None:
    day1 = simulate(store, shoppers=100, duration_s=120, seed=6)
    day2 = simulate(store, shoppers=100, duration_s=120, seed=6, start_t=day1.start_t + 86_400.0)
    ids1 = {d.id for d in day1.devices}
    ids2 = {d.id for d in day2.devices}
    back = ids1 & ids2
    assert back, "some shoppers of day 1 come back on day 2"
    assert len(back) < 0.5 * len(ids2)
    regular = {d.id for d in day2.devices if d.regular}
    assert len(back & regular) >= 0.6 * len(back)  # mostly regulars; now and then an occasional shopper
    # Within one run, a fixed-size crowd has distinct shoppers.
    customers = [s.customer for s in day1.shoppers]
    assert len(customers) == len(set(customers)) == 100


def test_package_exports_resolve() -> None:
    import simulations

    for name in simulations.__all__:
        assert getattr(simulations, name) is not None, name


def test_cli_streams_the_same_files_as_the_api(store: Venue, tmp_path: Path) -> None:
    from simulations.sim_files import write_result

    cli = tmp_path / "cli"
    proc = subprocess.run([instore_exe(), "simulate", "--venue", str(CORNER_STORE), "--shoppers", "6",
                           "--duration", "45", "--out", str(cli), "--seed", "9", "--start", "2025-11-24T11:00"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    api = tmp_path / "api"
    write_result(simulate(store, 6, 45, seed=9, start_t=1_763_978_400.0), api)  # 11:00 in Paris
    for name in ("anchors.csv", "readings.csv", "truth_positions.csv", "truth_visits.csv", "truth_routes.csv",
                 "truth_devices.csv", "truth_shoppers.csv"):
        assert (cli / name).read_bytes() == (api / name).read_bytes(), name
    rows = (cli / "truth_positions.csv").read_text(encoding="utf-8").splitlines()
    assert rows[1].startswith("1763978400.000,")
