"""Distances from many positions to a zone's outline at once (numpy), for proximity triggers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def polygon_edges(ring: Sequence[tuple[float, float]]) -> tuple[FloatArray, FloatArray]:
    """Edge start points and edge vectors of a closed ring, shape (E, 2) each."""
    pts = np.asarray(ring, dtype=np.float64)
    if len(pts) > 1 and np.allclose(pts[0], pts[-1]):
        pts = pts[:-1]
    nxt = np.roll(pts, -1, axis=0)
    return pts, nxt - pts


def distance_to_polygon(xs: FloatArray, ys: FloatArray, starts: FloatArray, vecs: FloatArray) -> FloatArray:
    """Euclidean distance of each point to the polygon (0 inside), shape (N,)."""
    px = xs[:, None] - starts[None, :, 0]
    py = ys[:, None] - starts[None, :, 1]
    vx = vecs[None, :, 0]
    vy = vecs[None, :, 1]
    seg_len2 = np.maximum(vx * vx + vy * vy, 1e-12)
    u = np.clip((px * vx + py * vy) / seg_len2, 0.0, 1.0)
    dx = px - u * vx
    dy = py - u * vy
    dist = np.sqrt(np.min(dx * dx + dy * dy, axis=1))
    # Even-odd ray casting to the right for "inside".
    y0 = starts[None, :, 1]
    y1 = y0 + vy
    crosses = (y0 > ys[:, None]) != (y1 > ys[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = starts[None, :, 0] + (ys[:, None] - y0) * vx / np.where(vy == 0.0, 1.0, vy)
    inside = (np.count_nonzero(crosses & (xs[:, None] < x_at), axis=1) % 2) == 1
    out: FloatArray = np.where(inside, 0.0, dist)
    return out


def pad_edges(rings: Sequence[Sequence[tuple[float, float]]]) -> tuple[FloatArray, FloatArray]:
    """Edges of several polygons padded to a common count, shapes (T, E, 2). Padding repeats the last
    vertex as zero-length edges, which change neither the distance nor the inside test."""
    edges = [polygon_edges(r) for r in rings]
    e_max = max((len(s) for s, _ in edges), default=1)
    starts = np.zeros((len(edges), e_max, 2))
    vecs = np.zeros((len(edges), e_max, 2))
    for k, (s, v) in enumerate(edges):
        starts[k, : len(s)] = s
        starts[k, len(s):] = s[0]
        vecs[k, : len(v)] = v
    return starts, vecs


def distance_pairs(xs: FloatArray, ys: FloatArray, starts: FloatArray, vecs: FloatArray) -> FloatArray:
    """Distance of point k to polygon k (0 inside) for P pairs; ``starts``/``vecs`` have shape (P, E, 2)."""
    px = xs[:, None] - starts[:, :, 0]
    py = ys[:, None] - starts[:, :, 1]
    vx = vecs[:, :, 0]
    vy = vecs[:, :, 1]
    seg_len2 = np.maximum(vx * vx + vy * vy, 1e-12)
    u = np.clip((px * vx + py * vy) / seg_len2, 0.0, 1.0)
    dx = px - u * vx
    dy = py - u * vy
    dist = np.sqrt(np.min(dx * dx + dy * dy, axis=1))
    y0 = starts[:, :, 1]
    y1 = y0 + vy
    crosses = (y0 > ys[:, None]) != (y1 > ys[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = starts[:, :, 0] + (ys[:, None] - y0) * vx / np.where(vy == 0.0, 1.0, vy)
    inside = (np.count_nonzero(crosses & (xs[:, None] < x_at), axis=1) % 2) == 1
    out: FloatArray = np.where(inside, 0.0, dist)
    return out
