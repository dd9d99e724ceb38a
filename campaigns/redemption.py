"""Redemption at the till: the pure part (request fingerprint, voucher and store checks, credit split).

The atomic part — idempotency key, single use, two tills at once — is the store's transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from campaigns.errors import VoucherError
from campaigns.model import Campaign
from campaigns.vouchers import VoucherClaims, verify_voucher

# HTTP status per refusal reason, so every till integration sees the same answers.
REFUSAL_STATUS: Final[Mapping[str, int]] = {
    "malformed": 422,
    "forged": 403,
    "wrong_shopper": 403,
    "expired": 410,
    "wrong_campaign": 422,
    "wrong_store": 422,
    "unknown_campaign": 404,
    "not_issued": 404,
    "already_redeemed": 409,
    "idempotency_key_reused": 422,
}


@dataclass(frozen=True, slots=True)
class RedemptionRequest:
    code: str
    idempotency_key: str
    amount: float
    store: str  # zone id of the till's store or counter
    staff: str | None
    t: float
    campaign: str | None = None  # when the till knows which campaign it expects
    shopper: str | None = None  # when the shopper's app presents its pseudonym with the code

    def fingerprint(self) -> str:
        """What makes two requests "the same request" (the server's clock is not part of it)."""
        fields = [self.code.strip().upper(), round(self.amount, 6), self.store, self.staff, self.campaign, self.shopper]
        return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class RedemptionOutcome:
    status: int  # HTTP status: 200 redeemed, else REFUSAL_STATUS[reason]
    body: dict[str, Any]
    replayed: bool = False  # the stored answer to an earlier request with the same idempotency key

    @property
    def ok(self) -> bool:
        return self.status == 200


def refusal(reason: str, message: str, **extra: Any) -> RedemptionOutcome:
    return RedemptionOutcome(REFUSAL_STATUS[reason], {"status": "refused", "error": reason, "message": message,
                                                       **extra})


@dataclass(frozen=True, slots=True)
class Credit:
    store: str
    staff: str | None
    store_amount: float
    staff_amount: float


def credit_split(campaign: Campaign, amount: float, store: str, staff: str | None) -> Credit:
    """Benefit distribution: ``staff_share`` of the amount to the staff member who served, the rest to the store."""
    staff_amount = round(amount * campaign.staff_share, 2) if staff else 0.0
    return Credit(store, staff, round(amount - staff_amount, 2), staff_amount)


def precheck(secret: bytes, request: RedemptionRequest, campaigns: Callable[[str], Campaign | None],
             redeem_zones: Callable[[Campaign], frozenset[str]]) -> tuple[VoucherClaims, Campaign] | RedemptionOutcome:
    """Everything that needs no database: signature, expiry, campaign, shopper and till location."""
    try:
        claims = verify_voucher(secret, request.code, request.t, campaign=request.campaign, shopper=request.shopper)
    except VoucherError as exc:
        return refusal(exc.reason, exc.detail)
    campaign = campaigns(claims.campaign)
    if campaign is None:
        return refusal("unknown_campaign", f"campaign {claims.campaign!r} does not exist")
    allowed = redeem_zones(campaign)
    if request.store not in allowed:
        return refusal("wrong_store", f"vouchers of campaign {campaign.id!r} are not accepted at {request.store!r} "
                                      f"(accepted at: {', '.join(sorted(allowed))})")
    return claims, campaign
