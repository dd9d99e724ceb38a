"""Causal RSSI filtering: per (device, anchor) trimmed mean over a short window, with a variance.

Duplicate adverts and bursts just add samples to a group; a missing anchor has no group (censoring is
handled by the solvers). Everything is vectorized over all groups of a window at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from positioning.const import FAST_FADING_DB, TRIM_FRACTION, WINDOW_CORRELATED_DB

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Aggregates:
    """One row per (group, anchor) present in a window, sorted by group then anchor."""

    group: IntArray
    anchor: IntArray
    mean: FloatArray  # trimmed mean RSSI, dBm
    var: FloatArray  # variance of ``mean`` as an estimate of the window's mean level, dB^2
    count: IntArray
    spread: FloatArray  # sample standard deviation of the readings, dB

    def __len__(self) -> int:
        return int(self.group.shape[0])


def aggregate(group: IntArray, anchor: IntArray, rssi: FloatArray,
              fading_db: float = FAST_FADING_DB, correlated_db: float = WINDOW_CORRELATED_DB) -> Aggregates:
    """Trimmed mean and its variance per (group, anchor).

    The variance has a part that averages down with more readings (fast fading, channel differences)
    and a part that does not (shadowing correlated over the window).
    """
    if group.shape[0] == 0:
        empty_i = np.zeros(0, dtype=np.int64)
        empty_f = np.zeros(0, dtype=np.float64)
        return Aggregates(empty_i, empty_i, empty_f, empty_f, empty_i, empty_f)
    order = np.lexsort((rssi, anchor, group))
    g, a, r = group[order], anchor[order], rssi[order]
    new = np.empty(g.shape[0], dtype=bool)
    new[0] = True
    new[1:] = (g[1:] != g[:-1]) | (a[1:] != a[:-1])
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, g.shape[0]))
    rank = np.arange(g.shape[0]) - np.repeat(starts, counts)
    size = np.repeat(counts, counts)
    trim = np.floor(size * TRIM_FRACTION).astype(np.int64)
    keep = (rank >= trim) & (rank < size - trim)
    kept_counts = np.add.reduceat(keep.astype(np.int64), starts)
    sums = np.add.reduceat(np.where(keep, r, 0.0), starts)
    mean = sums / kept_counts
    all_sums = np.add.reduceat(r, starts)
    all_sq = np.add.reduceat(r * r, starts)
    full_mean = all_sums / counts
    sample_var = np.maximum(all_sq / counts - full_mean**2, 0.0) * counts / np.maximum(counts - 1, 1)
    spread = np.sqrt(sample_var)
    # Few readings say little about their own spread: shrink towards the expected fading.
    per_reading = (sample_var * (counts - 1) + fading_db**2 * 2.0) / (counts + 1.0)
    var = per_reading / counts + correlated_db**2
    return Aggregates(g[starts], a[starts], mean, var, counts.astype(np.int64), spread)
