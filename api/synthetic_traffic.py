"""A small, self-contained source of gateway traffic: shoppers walking between zones, heard by gateways.

Used by the engine's tests, the ``pipeline`` benchmark and, when the simulator's synthetic gateways
are not installed, by the demo. Shoppers pick a zone, walk to a random point inside it in a
straight line (corridors are wide enough for a demo), stay a while, and move on; every floor change
goes through a connector. Each advertisement is heard by every gateway where the log-distance
model with Gaussian shadowing puts it above the receiver sensitivity. Everything is vectorised
over shoppers x gateways, seeded, and driven by explicit time: ``step(t, dt)`` returns the wire
batches of every gateway for that interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from shapely import prepared
from shapely.geometry import Point

from beacon_gateway.wire import ReadingsBatch
from positioning.venue import Venue, walkable_shape, zone_shape

ADVERTS_HZ: Final = 2.0  # a shopper app advertising twice a second (iOS background rate is about this)
SHADOWING_DB: Final = 5.0  # Gaussian shadowing of each reading
SENSITIVITY_DBM: Final = -95.0  # weaker adverts are not heard
FLOOR_LOSS_DB: Final = 18.0  # a concrete slab between floors
CLUTTER_DB_PER_M: Final = 0.25  # shelving, walls and people: extra loss growing with distance
DEVICE_HEIGHT_M: Final = 1.2  # a phone in a hand
WALK_SPEED_MPS: Final = (0.8, 1.4)  # shoppers stroll
STAY_S: Final = (20.0, 120.0)  # time spent in a zone before moving on
TX_POWER_DBM: Final = -59  # advertised measured power
BEACON_UUID: Final = "f7826da6-4fa2-4e98-8024-bc5b71e0893e"
POINT_TRIES: Final = 200  # rejection sampling of a point inside a zone and walkable


@dataclass(frozen=True, slots=True)
class Truth:
    t: float
    beacon: npt.NDArray[np.object_]
    floor: npt.NDArray[np.object_]
    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.float64]


class SyntheticMall:
    def __init__(self, venue: Venue, shoppers: int, seed: int = 0, adverts_hz: float = ADVERTS_HZ,
                 zone_kinds: tuple[str, ...] = ("store", "counter", "entrance", "checkout", "area")) -> None:
        self.venue = venue
        self.rng = np.random.default_rng(seed)
        self.adverts_hz = adverts_hz
        self.floors = list(venue.floor_ids)
        fidx = {f: i for i, f in enumerate(self.floors)}
        anchors = venue.anchors
        self.gw_ids = [a.id for a in anchors]
        self.ax = np.array([a.x for a in anchors])
        self.ay = np.array([a.y for a in anchors])
        self.az = np.array([a.z + venue.floor(a.floor).elevation_m for a in anchors])
        self.af = np.array([fidx[a.floor] for a in anchors])
        self.p0 = np.array([a.rssi_1m for a in anchors])
        self.n = np.array([a.path_loss_n for a in anchors])
        self.elev = np.array([venue.floor(f).elevation_m for f in self.floors])
        self.beacons = np.array([f"ibeacon:{BEACON_UUID}-1-{i + 1}" for i in range(shoppers)], dtype=object)
        walk = {f: prepared.prep(walkable_shape(venue, f)) for f in self.floors}
        self._targets: list[tuple[int, list[tuple[float, float]]]] = []
        for z in venue.zones:
            if z.kind not in zone_kinds:
                continue
            shape = zone_shape(z)
            minx, miny, maxx, maxy = shape.bounds
            pts = []
            for _ in range(POINT_TRIES):
                x, y = self.rng.uniform(minx, maxx), self.rng.uniform(miny, maxy)
                if shape.contains(Point(x, y)) and walk[z.floor].contains(Point(x, y)):
                    pts.append((float(x), float(y)))
                    if len(pts) >= 8:
                        break
            if pts:
                self._targets.append((fidx[z.floor], pts))
        if not self._targets:
            raise ValueError(f"venue {venue.id} has no zone with a walkable point to walk to")
        self._connectors = [(fidx[c.a.floor], c.a.x, c.a.y, fidx[c.b.floor], c.b.x, c.b.y) for c in venue.connectors]
        n = shoppers
        self.x = np.zeros(n)
        self.y = np.zeros(n)
        self.f = np.zeros(n, dtype=np.int64)
        self.tx = np.zeros(n)  # current target
        self.ty = np.zeros(n)
        self.tf = np.zeros(n, dtype=np.int64)
        self.final_x = np.zeros(n)
        self.final_y = np.zeros(n)
        self.final_f = np.zeros(n, dtype=np.int64)
        self.speed = self.rng.uniform(*WALK_SPEED_MPS, n)
        self.stay_until = np.zeros(n)
        for i in range(n):
            fl, (x, y) = self._random_target()
            self.x[i], self.y[i], self.f[i] = x, y, fl
            self.final_x[i], self.final_y[i], self.final_f[i] = x, y, fl
            self.tx[i], self.ty[i], self.tf[i] = x, y, fl
        self.stay_until = self.rng.uniform(0, STAY_S[1], n)
        self._exit: dict[int, tuple[int, float, float]] = {}  # shopper -> where its connector comes out
        self.seq = {g: 0 for g in self.gw_ids}
        self.t_sim = 0.0

    def _random_target(self) -> tuple[int, tuple[float, float]]:
        fl, pts = self._targets[int(self.rng.integers(len(self._targets)))]
        return fl, pts[int(self.rng.integers(len(pts)))]

    def _retarget(self, i: int, t: float) -> None:
        fl, (x, y) = self._random_target()
        self.final_x[i], self.final_y[i], self.final_f[i] = x, y, fl
        self._route_leg(i)
        self.stay_until[i] = t

    def _route_leg(self, i: int) -> None:
        if self.final_f[i] == self.f[i] or not self._connectors:
            self.tx[i], self.ty[i], self.tf[i] = self.final_x[i], self.final_y[i], self.f[i]
            return
        best = None
        for fa, xa, ya, fb, xb, yb in self._connectors:
            for (f0, x0, y0), (f1, x1, y1) in (((fa, xa, ya), (fb, xb, yb)), ((fb, xb, yb), (fa, xa, ya))):
                if f0 == self.f[i] and f1 == self.final_f[i]:
                    d = float(np.hypot(x0 - self.x[i], y0 - self.y[i]))
                    if best is None or d < best[0]:
                        best = (d, x0, y0, f1, x1, y1)
        if best is None:
            self.tx[i], self.ty[i], self.tf[i] = self.final_x[i], self.final_y[i], self.f[i]
            return
        _, x0, y0, f1, x1, y1 = best
        self.tx[i], self.ty[i], self.tf[i] = x0, y0, self.f[i]
        self._exit[i] = (int(f1), float(x1), float(y1))

    def move(self, t: float, dt: float) -> None:
        walking = t >= self.stay_until
        dx, dy = self.tx - self.x, self.ty - self.y
        dist = np.hypot(dx, dy)
        step = np.minimum(dist, self.speed * dt)
        with np.errstate(invalid="ignore", divide="ignore"):
            ux = np.where(dist > 0, dx / dist, 0.0)
            uy = np.where(dist > 0, dy / dist, 0.0)
        self.x = np.where(walking, self.x + ux * step, self.x)
        self.y = np.where(walking, self.y + uy * step, self.y)
        arrived = walking & (dist <= self.speed * dt)
        for i in np.flatnonzero(arrived):
            if int(i) in self._exit:  # at a connector: come out on the other floor
                f1, x1, y1 = self._exit.pop(int(i))
                self.f[i], self.x[i], self.y[i] = f1, x1, y1
                self._route_leg(int(i))
            elif self.x[i] == self.final_x[i] and self.y[i] == self.final_y[i]:
                self.stay_until[i] = t + self.rng.uniform(*STAY_S)
                self._retarget(int(i), float(self.stay_until[i]))

    def truth(self, t: float) -> Truth:
        floors = np.array(self.floors, dtype=object)[self.f]
        return Truth(t, self.beacons.copy(), floors, self.x.copy(), self.y.copy())

    def step(self, t0: float, dt: float) -> list[ReadingsBatch]:
        """Move everyone by ``dt`` and return one batch per gateway that heard something in [t0, t0 + dt)."""
        self.move(t0, dt)
        n_dev = len(self.beacons)
        k = self.rng.poisson(self.adverts_hz * dt, n_dev)
        dev = np.repeat(np.arange(n_dev), k)
        if dev.size == 0:
            return []
        at = self.rng.uniform(0, dt, dev.size)
        px, py = self.x[dev], self.y[dev]
        pz = self.elev[self.f[dev]] + DEVICE_HEIGHT_M
        d = np.sqrt((px[:, None] - self.ax[None, :]) ** 2 + (py[:, None] - self.ay[None, :]) ** 2
                    + (pz[:, None] - self.az[None, :]) ** 2)
        d = np.maximum(d, 0.5)
        rssi = self.p0[None, :] - 10 * self.n[None, :] * np.log10(d)
        rssi -= FLOOR_LOSS_DB * np.abs(self.f[dev][:, None] - self.af[None, :]) + CLUTTER_DB_PER_M * d
        rssi += self.rng.normal(0, SHADOWING_DB, rssi.shape)
        heard = rssi >= SENSITIVITY_DBM
        out = []
        rows, cols = np.nonzero(heard)
        order = np.argsort(cols, kind="stable")
        rows, cols = rows[order], cols[order]
        bounds = np.searchsorted(cols, np.arange(len(self.gw_ids) + 1))
        for g in range(len(self.gw_ids)):
            lo, hi = bounds[g], bounds[g + 1]
            if lo == hi:
                continue
            r = rows[lo:hi]
            o = np.argsort(at[r])
            r = r[o]
            gw = self.gw_ids[g]
            out.append(ReadingsBatch(v=1, gw=gw, seq=self.seq[gw], t0=t0, dt=np.round(at[r], 3).tolist(),
                                     id=self.beacons[dev[r]].tolist(),
                                     rssi=np.round(rssi[r, g]).tolist(), tx=[float(TX_POWER_DBM)] * len(r)))
            self.seq[gw] += 1
        return out
