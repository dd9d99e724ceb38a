"""The path-loss exponent, learned from the devices' own windows when nobody gave it.

Indoors the exponent is anywhere from ~1.6 to ~3.5, and a wrong one bends every range. It is chosen by
profile likelihood: windows heard by enough anchors are solved (position and a free offset) under each
candidate scale of the nominal exponents, and each scale's robust costs are summed over the windows seen
so far; a scale that beats the current one clearly takes over. Each window's cost depends on its own
readings only, so the choice at time t uses the windows up to t: causal, whatever the order of devices.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Final

import numpy as np
import numpy.typing as npt

from positioning.multilateration import FixProblem, solve, subset

FloatArray = npt.NDArray[np.float64]

SCALES: Final = (0.8, 0.9, 1.0, 1.12, 1.25, 1.4, 1.6, 1.8)  # of the nominal exponent (1.6-3.6 for 2.0)
MIN_HEARD: Final = 4  # position, offset and a shape need this many readings
FREE_OFFSET_DB: Final = 20.0  # the windows are solved with the offset free (it scales with the exponent)
SWITCH_COST: Final = 25.0  # summed cost by which a scale must beat the current one to take over
MAX_WINDOWS: Final = 3_000  # after this many windows the choice is final
# The windows are solved in a box this much wider than the fixes': the open map keeps fixes within 1 m
# of the anchors' footprint, and a device truly beyond it would otherwise favour a steep exponent (its
# weak readings explained inside the box): n = 3.0 was learned as 3.6.
BOX_PAD_M: Final = 5.0


def profile_costs(prob: FixProblem, current: float, limit: int) -> FloatArray:
    """Robust cost of up to ``limit`` windows of ``prob`` heard by MIN_HEARD anchors or more (the first
    ones), each solved under every scale of SCALES: shape (len(SCALES), windows). ``prob`` carries the
    anchors' exponents scaled by ``current``."""
    pick = np.flatnonzero((prob.w > 0).sum(axis=1) >= MIN_HEARD)[:limit]
    if pick.shape[0] == 0:
        return np.zeros((len(SCALES), 0))
    sub = subset(prob, pick)
    sub = replace(sub, off_sd=np.full(pick.shape[0], FREE_OFFSET_DB), lo=sub.lo - BOX_PAD_M, hi=sub.hi + BOX_PAD_M)
    return np.stack([solve(replace(sub, n=sub.n * (s / current), cn=sub.cn * (s / current))).cost for s in SCALES])


@dataclass(slots=True)
class ExponentChoice:
    """Summed profile costs and the scale they currently favour."""

    scale: float = 1.0
    windows: int = 0
    cost: FloatArray = field(default_factory=lambda: np.zeros(len(SCALES)))

    @property
    def settled(self) -> bool:
        return self.windows >= MAX_WINDOWS

    def add(self, costs: FloatArray) -> bool:
        """Add windows' costs (scales x windows). True when the scale changed."""
        self.cost += costs.sum(axis=1)
        self.windows += costs.shape[1]
        best = int(np.argmin(self.cost))
        cur = SCALES.index(self.scale)
        if best == cur or self.cost[cur] - self.cost[best] < SWITCH_COST:
            return False
        self.scale = SCALES[best]
        return True
