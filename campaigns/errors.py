"""The one base exception of the campaigns package and its specialisations."""

from __future__ import annotations


class CampaignError(Exception):
    """Anything wrong with campaign input: a campaign definition, a voucher, a redemption."""


class CampaignValidationError(CampaignError):
    """A campaign definition that cannot be used; names the field path and the offending value."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)


class VoucherError(CampaignError):
    """A voucher code that does not verify. ``reason`` is a stable machine-readable word."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")
