"""The one base exception of the simulations package."""

from __future__ import annotations


class SimulationError(Exception):
    """Anything wrong with a simulation, plan or evaluation request; the message says what and where."""
