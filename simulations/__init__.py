"""Simulated malls: venues, shopper agents, radio channel, synthetic gateways, evaluation, planner.

Names are imported lazily (the CLI imports single modules of this package and should stay fast):
``from simulations import simulate`` works, and loads only what it needs.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SimulationError": "simulations.errors",
    "RadioConfig": "simulations.radio",
    "Channel": "simulations.radio",
    "AnchorSet": "simulations.radio",
    "ReadingChunk": "simulations.radio",
    "World": "simulations.scenario",
    "Tick": "simulations.scenario",
    "simulate": "simulations.scenario",
    "SimulationResult": "simulations.scenario",
    "SimReadings": "simulations.scenario",
    "TruthPositions": "simulations.scenario",
    "DeviceInfo": "simulations.scenario",
    "ShopperInfo": "simulations.scenario",
    "DEFAULT_START_T": "simulations.scenario",
    "Stays": "simulations.truth",
    "stays_from_positions": "simulations.truth",
    "stays_from_zone_column": "simulations.truth",
    "zone_containers": "simulations.truth",
    "innermost_zone": "simulations.truth",
    "write_result": "simulations.sim_files",
    "read_truth": "simulations.sim_files",
    "read_positions": "simulations.sim_files",
    "LiveRun": "simulations.gateways",
    "WireGateways": "simulations.gateways",
    "EspresenseNodes": "simulations.gateways",
    "TheengsNodes": "simulations.gateways",
    "ScanPoster": "simulations.gateways",
    "start_demo_gateways": "simulations.live",
    "RouteSteps": "simulations.truth",
    "zone_routes": "simulations.truth",
    "Estimates": "simulations.evaluation",
    "Truth": "simulations.evaluation",
    "Score": "simulations.evaluation",
    "score": "simulations.evaluation",
    "truth_of": "simulations.evaluation",
    "truth_from_positions": "simulations.evaluation",
    "CrlbMap": "simulations.planner",
    "PlannedAnchor": "simulations.planner",
    "crlb_map": "simulations.planner",
    "crlb_median_m": "simulations.planner",
    "make_plan": "simulations.planner",
    "propose": "simulations.planner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'simulations' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
