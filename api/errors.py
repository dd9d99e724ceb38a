"""The service's one base exception and its specialisations."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error raised by the service shell (``api``)."""


class IngestError(EngineError):
    """A message the ingest refused; ``reason`` is the short counter key it is counted under."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class StoreError(EngineError):
    """The database could not be opened or has an unexpected layout."""
