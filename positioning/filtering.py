"""Causal RSSI filtering: per (device, anchor) robust mean over a short window, with a variance.

Duplicate adverts and bursts just add samples to a group; a missing anchor has no group (censoring is
handled by the solvers). Everything is vectorized over all groups of a window at once, in O(n) with
``bincount``: a mean and spread, then a winsorized mean (readings clipped to ``mean +- WINSOR_SD``
spreads), which resists the odd reflected or corrupted packet like a trimmed mean does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from positioning.const import FAST_FADING_DB, RSSI_MAX_DBM, RSSI_MIN_DBM, RSSI_PLACEHOLDER_DBM, WINDOW_CORRELATED_DB

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

BoolArray = npt.NDArray[np.bool_]

WINSOR_SD: Final = 1.5  # readings beyond this many spreads from the group mean are pulled in
DENSE_KEYS_MAX: Final = 50_000_000  # above this many (group x anchor) bins fall back to a sort


def implausible_rssi(rssi: FloatArray) -> dict[str, BoolArray]:
    """Readings to drop, by reason (disjoint masks): missing, above the ceiling, the "not measured"
    placeholder, below the floor (POSITIONING.md, input hygiene)."""
    bad = ~np.isfinite(rssi)
    ok = ~bad
    with np.errstate(invalid="ignore"):
        return {"rssi missing or NaN": bad,
                f"rssi above {RSSI_MAX_DBM:g} dBm": ok & (rssi > RSSI_MAX_DBM),
                f"rssi exactly {RSSI_PLACEHOLDER_DBM:g} dBm (a 'not measured' placeholder)":
                    ok & (rssi == RSSI_PLACEHOLDER_DBM),
                f"rssi below {RSSI_MIN_DBM:g} dBm": ok & (rssi < RSSI_MIN_DBM)}


def plausible_rssi(rssi: FloatArray) -> BoolArray:
    """Readings ``implausible_rssi`` keeps."""
    keep = np.ones(rssi.shape, dtype=bool)
    for mask in implausible_rssi(rssi).values():
        keep &= ~mask
    return keep


@dataclass(frozen=True, slots=True)
class Aggregates:
    """One row per (group, anchor) present in a window, sorted by group then anchor."""

    group: IntArray
    anchor: IntArray
    mean: FloatArray  # robust mean RSSI, dBm
    var: FloatArray  # variance of ``mean`` as an estimate of the window's mean level, dB^2
    count: IntArray
    spread: FloatArray  # sample standard deviation of the readings, dB
    aux: FloatArray  # group mean of the optional auxiliary column (e.g. each reading's 1 m power)

    def __len__(self) -> int:
        return int(self.group.shape[0])


def aggregate(group: IntArray, anchor: IntArray, rssi: FloatArray, aux: FloatArray | None = None,
              fading_db: float = FAST_FADING_DB, correlated_db: float = WINDOW_CORRELATED_DB) -> Aggregates:
    """Robust mean and its variance per (group, anchor).

    The variance has a part that averages down with more readings (fast fading, channel differences)
    and a part that does not (shadowing correlated over the window).
    """
    if group.shape[0] == 0:
        empty_i = np.zeros(0, dtype=np.int64)
        empty_f = np.zeros(0, dtype=np.float64)
        return Aggregates(empty_i, empty_i, empty_f, empty_f, empty_i, empty_f, empty_f)
    n_anchor = int(anchor.max()) + 1
    key = group.astype(np.int64) * n_anchor + anchor
    n_keys = int(key.max()) + 1
    if n_keys <= DENSE_KEYS_MAX:
        counts_all = np.bincount(key, minlength=n_keys)
        present = np.flatnonzero(counts_all)
        slot = np.zeros(n_keys, dtype=np.int64)
        slot[present] = np.arange(present.shape[0])
        inv = slot[key]
        counts = counts_all[present]
    else:
        present, inv, counts = np.unique(key, return_inverse=True, return_counts=True)
    m = present.shape[0]
    s1 = np.bincount(inv, weights=rssi, minlength=m)
    s2 = np.bincount(inv, weights=rssi * rssi, minlength=m)
    full_mean = s1 / counts
    sample_var = np.maximum(s2 / counts - full_mean**2, 0.0) * counts / np.maximum(counts - 1, 1)
    spread = np.sqrt(sample_var)
    lo = (full_mean - WINSOR_SD * spread)[inv]
    hi = (full_mean + WINSOR_SD * spread)[inv]
    mean = np.bincount(inv, weights=np.clip(rssi, lo, hi), minlength=m) / counts
    # Few readings say little about their own spread: shrink towards the expected fading.
    per_reading = (sample_var * (counts - 1) + fading_db**2 * 2.0) / (counts + 1.0)
    var = per_reading / counts + correlated_db**2
    aux_mean = np.bincount(inv, weights=aux, minlength=m) / counts if aux is not None else np.zeros(m)
    return Aggregates(present // n_anchor, present % n_anchor, mean, var, counts.astype(np.int64), spread,
                      aux_mean)
