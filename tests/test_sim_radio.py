"""The radio channel's hot path against the plain formula: budgets, per-packet statistics, censoring."""

from __future__ import annotations

import math

import numpy as np
import pytest
from shapely.geometry import Point

from positioning.venue import Venue, walkable_shape
from simulations.radio import AnchorSet, Channel, DeviceRadio, Motion, RadioConfig, RadioState, wall_counts


def test_mean_budget_matches_the_formula(mall: Venue) -> None:
    cfg = RadioConfig()
    anchors = AnchorSet.of(mall, "gateway")
    ch = Channel(mall, anchors, cfg, seed=3)
    rng = np.random.default_rng(0)
    floor = rng.integers(0, 2, 40)
    x, y = np.zeros(40), np.zeros(40)
    for k in range(40):  # devices are where people walk (the wall tables cover walkable space)
        area = walkable_shape(mall, mall.floors[int(floor[k])].id)
        while not area.contains(Point(x[k], y[k])):
            x[k], y[k] = rng.uniform(1, 119), rng.uniform(5, 75)
    got = ch.mean_db(floor, x, y)
    levels = [f.level for f in mall.floors]
    elev = [f.elevation_m for f in mall.floors]
    assert ch.shadow_rows is not None
    for k in range(40):
        f = int(floor[k])
        # walls between the device and each anchor on its floor, as the table's cell has them
        cx = ch.wall_grid.x0 + (math.floor((x[k] - ch.wall_grid.x0) / ch.wall_grid.res) + 0.5) * ch.wall_grid.res
        cy = ch.wall_grid.y0 + (math.floor((y[k] - ch.wall_grid.y0) / ch.wall_grid.res) + 0.5) * ch.wall_grid.res
        shadow_cell = int(ch.shadow_grid.cell(np.array([x[k]]), np.array([y[k]]))[0])
        for j in rng.choice(len(anchors), 6, replace=False).tolist():
            walls = 0 if anchors.floor[j] != f else wall_counts(
                mall, mall.floors[f].id, float(anchors.x[j]), float(anchors.y[j]), np.array([cx]), np.array([cy]))[0]
            d = math.sqrt((x[k] - anchors.x[j]) ** 2 + (y[k] - anchors.y[j]) ** 2
                          + (elev[f] + 1.2 - elev[anchors.floor[j]] - anchors.z[j]) ** 2)
            expect = (float(ch.p0[j]) - float(ch.n10[j]) * math.log10(d) - min(walls, 12) * cfg.wall_db
                      - abs(levels[f] - levels[anchors.floor[j]]) * cfg.slab_db
                      + float(ch.shadow_rows[f][shadow_cell, j]))
            assert got[k, j] == pytest.approx(expect, abs=1e-3)


def test_packets_of_a_still_device_scatter_around_its_budget(mall: Venue) -> None:
    """A device standing still, facing away from nothing in particular (body loss 0): every gateway
    hears it (no censoring, loss or duty), with mean = budget + device offset and σ = fading."""
    cfg = RadioConfig.ideal(sigma_db=6.0, fading_db=3.0)
    anchors = AnchorSet.of(mall, "gateway")
    ch = Channel(mall, anchors, cfg, seed=5)
    state = RadioState(ch, seed=5, start_t=0.0)
    devs = DeviceRadio(np.array([0]), np.array([0.25]), np.array([0.1]), np.array([4.0], dtype=np.float32),
                       np.array([-59.0], dtype=np.float32), np.array([0.0], dtype=np.float32))
    motion = Motion(np.array([0]), np.array([40.0]), np.array([40.0]), np.array([40.0]), np.array([40.0]),
                    np.array([0.0]))
    rssi: dict[int, list[float]] = {}
    n_ticks = 200
    for k in range(n_ticks):
        chunk = state.gateway_tick(float(k), float(k + 1), devs, motion)
        assert np.all(chunk.t >= k) and np.all(chunk.t < k + 1)
        for j, r in zip(chunk.anchor.tolist(), chunk.rssi.tolist(), strict=True):
            rssi.setdefault(j, []).append(r)
    budget = ch.mean_db(np.array([0]), np.array([40.0]), np.array([40.0]))[0] + 4.0
    assert set(rssi) == set(range(len(anchors)))
    for j in (0, 17, 40, 100):
        values = np.array(rssi[j])
        assert values.size == 4 * n_ticks  # four advertisements a second, all heard
        assert values.mean() == pytest.approx(float(budget[j]), abs=0.35)
        assert values.std() == pytest.approx(math.sqrt(3.0**2 + 1 / 12), abs=0.3)  # fading and rounding


def test_censoring_and_duty_cycle(mall: Venue) -> None:
    cfg = RadioConfig(outages_per_hour=0.0)
    anchors = AnchorSet.of(mall, "gateway")
    ch = Channel(mall, anchors, cfg, seed=9)
    state = RadioState(ch, seed=9, start_t=0.0)
    n = 50
    rng = np.random.default_rng(2)
    x, y = rng.uniform(5, 115, n), rng.uniform(32, 48, n)
    devs = DeviceRadio(np.arange(n), np.full(n, 0.5), rng.uniform(0, 0.5, n), np.zeros(n, dtype=np.float32),
                       np.full(n, -59.0, dtype=np.float32), np.full(n, 10.0, dtype=np.float32))
    motion = Motion(np.zeros(n, dtype=np.int64), x, y, x, y, rng.uniform(-3, 3, n))
    heard = 0
    for k in range(30):
        chunk = state.gateway_tick(float(k), float(k + 1), devs, motion)
        heard += len(chunk)
        assert np.all(chunk.rssi >= np.floor(ch.sens[chunk.anchor]) - 0.5)  # nothing below sensitivity
    sent = n * 2 * 30 * len(anchors)
    assert 0.02 * sent < heard < 0.8 * sent  # far gateways and duty cycles miss many packets


def test_wall_counts_are_the_shadows_of_the_obstacles() -> None:
    """A counter (2 x 1 m) in an open 20 x 20 m floor: seen from an anchor, points behind it are blocked
    (count 1), points before it, beside it or behind the anchor are not; an anchor mounted on the counter's
    corner is blocked by it only towards the counter; two counters in a row count 2."""
    import yaml

    from positioning.venue import parse_venue

    square = [[0, 0], [20, 0], [20, 20], [0, 20]]
    counters = [[[9, 9], [11, 9], [11, 10], [9, 10]], [[9, 14], [11, 14], [11, 15], [9, 15]]]
    doc = {"schema": 1, "venue": {"id": "c", "name": "Counter", "timezone": "UTC"},
           "floors": [{"id": "L1", "level": 0, "elevation_m": 0.0, "outline": square}],
           "anchors": [{"id": "gw-1", "floor": "L1", "x": 10, "y": 2}],
           "walkable": [{"floor": "L1", "polygon": square, "holes": counters}]}
    venue = parse_venue(yaml.safe_dump(doc), "counter.yaml")
    px = np.array([10.0, 10.0, 10.0, 17.0, 10.0, 10.2])
    py = np.array([5.0, 12.0, 18.0, 12.0, 1.0, 9.5])
    np.testing.assert_array_equal(wall_counts(venue, "L1", 10.0, 2.0, px, py), [0, 1, 2, 0, 0, 1])
    # mounted on the first counter's corner (9, 9): blocked towards the counter, open elsewhere
    np.testing.assert_array_equal(wall_counts(venue, "L1", 9.0, 9.0, np.array([12.0, 5.0, 8.0, 10.0]),
                                              np.array([9.5, 5.0, 18.0, 18.0])), [1, 0, 0, 2])
