"""Factories for positioning tests: anchor grids, noiseless and noisy readings, fix problems."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from positioning.multilateration import FixProblem
from positioning.radio import AnchorTable, anchor_table

P0 = -59.0
N_EXP = 2.2


def grid_anchors(nx: int = 5, ny: int = 4, spacing: float = 10.0, z: float = 3.0) -> AnchorTable:
    ids, xs, ys = [], [], []
    for j in range(ny):
        for i in range(nx):
            ids.append(f"gw-{j * nx + i}")
            xs.append(i * spacing)
            ys.append(j * spacing)
    return anchor_table(ids, xs, ys, z=[z] * len(ids), rssi_1m=[P0] * len(ids), path_loss_n=[N_EXP] * len(ids))


def hall_anchors(n_exp: float | None = None) -> AnchorTable:
    """12 anchors on a 10 m grid (x 5..35, y 5..25) at 3 m, 1 m power -59 dBm; ``None``: the exponent is
    not given (the table's default is assumed)."""
    xs, ys = np.meshgrid(np.arange(5.0, 40.0, 10.0), np.arange(5.0, 30.0, 10.0))
    ids = [f"gw-{i}" for i in range(xs.size)]
    return anchor_table(ids, xs.ravel(), ys.ravel(), z=[3.0] * len(ids), rssi_1m=[-59.0] * len(ids),
                        path_loss_n=None if n_exp is None else [n_exp] * len(ids))


def rssi_at(anchors: AnchorTable, x: float, y: float, height: float = 1.2, offset: float = 0.0,
            sigma: float = 0.0, rng: np.random.Generator | None = None) -> npt.NDArray[np.float64]:
    d = np.sqrt((anchors.x - x) ** 2 + (anchors.y - y) ** 2 + (anchors.z - height) ** 2)
    r = anchors.rssi_1m + offset - 10 * anchors.path_loss_n * np.log10(np.maximum(d, 0.5))
    if sigma and rng is not None:
        r = r + rng.normal(0, sigma, r.shape)
    return np.asarray(r, dtype=np.float64)


def random_problem(b: int, k: int = 8, u: int = 4, seed: int = 1, sigma: float = 3.0,
                   offset_sd: float = 8.0, censor: bool = True
                   ) -> tuple[FixProblem, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """B fixes with K heard anchors at random places, the truth inside the bounds."""
    rng = np.random.default_rng(seed)
    ax = rng.uniform(0, 40, (b, k))
    ay = rng.uniform(0, 30, (b, k))
    tx = rng.uniform(5, 35, b)
    ty = rng.uniform(5, 25, b)
    off = rng.normal(0, 4, b)
    dz = np.full((b, k), 1.8)
    d = np.sqrt((tx[:, None] - ax) ** 2 + (ty[:, None] - ay) ** 2 + dz**2)
    r = P0 + off[:, None] - 10 * N_EXP * np.log10(d) + rng.normal(0, sigma, (b, k))
    prob = FixProblem(
        ax=ax, ay=ay, dz=dz, p0=np.full((b, k), P0), n=np.full((b, k), N_EXP), r=r,
        w=np.full((b, k), 1.0 / max(sigma, 1.0) ** 2),
        cx=rng.uniform(0, 40, (b, u)), cy=rng.uniform(0, 30, (b, u)), cdz=np.full((b, u), 1.8),
        cp0=np.full((b, u), P0), cn=np.full((b, u), N_EXP), cmask=np.full((b, u), censor),
        sens=np.full(b, -80.0), off0=np.zeros(b), off_sd=np.full(b, offset_sd),
        lo=np.tile([-5.0, -5.0], (b, 1)), hi=np.tile([45.0, 35.0], (b, 1)),
    )
    return prob, tx, ty
