"""The one base exception of the positioning package."""

from __future__ import annotations


class PositioningError(Exception):
    """Anything wrong with positioning input: a venue file, an anchor table, a readings file."""


class VenueError(PositioningError):
    """A venue file that cannot be used; the message names file, field path and problem."""

    def __init__(self, source: str, path: str, problem: str) -> None:
        self.source = source
        self.path = path
        self.problem = problem
        where = f"{source}: {path}: " if path else f"{source}: "
        super().__init__(where + problem)
