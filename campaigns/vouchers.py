"""Voucher codes: one format for every brand, signed with the venue secret, verifiable by any till.

A code reads ``IS1.<CAMPAIGN>.<SERIAL>.<EXPIRES>.<TAG>.<MAC>``, for example
``IS1.LANCOME-SPRING.K3J2Q4X7PMN5A.1763956400.7QK2M4XA.C3VQ6N2JX5W4TH7A``:

- ``CAMPAIGN`` the campaign id (upper-cased so the whole code fits the QR alphanumeric mode);
- ``SERIAL`` the offer id (64 bits, base32);
- ``EXPIRES`` UTC epoch seconds after which the code is refused;
- ``TAG`` a keyed 40-bit tag of the shopper's pseudonymous id (binds the code to the shopper
  without naming them: only the holder of the secret can compute it from an id);
- ``MAC`` the first 80 bits of HMAC-SHA256(secret, the fields above), compared in constant time.

Single use is not a property of the code: the redemption store enforces it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Final

from campaigns.const import VOUCHER_MAC_BYTES, VOUCHER_PREFIX, VOUCHER_TAG_BYTES
from campaigns.errors import VoucherError

CAMPAIGN_ID_RE: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_CODE_RE: Final = re.compile(
    r"^IS1\.([A-Z0-9][A-Z0-9-]{0,39})\.([A-Z2-7]{13})\.([0-9]{1,12})\.([A-Z2-7]{8})\.([A-Z2-7]{16})$")
MIN_SECRET_BYTES: Final = 16  # 128 bits: below that a venue secret could be brute-forced offline


@dataclass(frozen=True, slots=True)
class VoucherClaims:
    """What a verified code says."""

    code: str
    campaign: str
    offer_id: str
    expires: float
    shopper_tag: str


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=")


def _mac(secret: bytes, message: str, nbytes: int) -> bytes:
    return hmac.new(secret, message.encode("utf-8"), hashlib.sha256).digest()[:nbytes]


def check_secret(secret: bytes) -> None:
    if len(secret) < MIN_SECRET_BYTES:
        raise VoucherError("weak_secret", f"the venue secret must have at least {MIN_SECRET_BYTES} bytes")


def shopper_tag(secret: bytes, shopper: str) -> str:
    return _b32(_mac(secret, f"shopper\x00{shopper}", VOUCHER_TAG_BYTES))


def offer_id_for(secret: bytes, campaign: str, shopper: str, t: float) -> str:
    """A deterministic, unguessable 64-bit offer id (13 base32 characters)."""
    return _b32(_mac(secret, f"offer\x00{campaign}\x00{shopper}\x00{t!r}", 8))


def mint_voucher(secret: bytes, campaign: str, offer_id: str, shopper: str, expires: float) -> str:
    if not CAMPAIGN_ID_RE.match(campaign):
        raise VoucherError("malformed", f"campaign id {campaign!r} cannot be put in a voucher")
    body = f"{VOUCHER_PREFIX}.{campaign.upper()}.{offer_id}.{int(expires)}.{shopper_tag(secret, shopper)}"
    return f"{body}.{_b32(_mac(secret, body, VOUCHER_MAC_BYTES))}"


def parse_voucher(code: str) -> VoucherClaims:
    """The fields of a well-formed code, unverified. Lenient about case and surrounding spaces."""
    text = code.strip().upper()
    m = _CODE_RE.match(text)
    if m is None:
        raise VoucherError("malformed", "not an instore voucher code (expected IS1.<campaign>.<serial>.<expires>."
                                        "<tag>.<mac>)")
    return VoucherClaims(text, m.group(1).lower(), m.group(2), float(m.group(3)), m.group(4))


def verify_voucher(secret: bytes, code: str, now: float, *, campaign: str | None = None,
                   shopper: str | None = None) -> VoucherClaims:
    """Verify signature, expiry and (when given) the campaign and shopper a code is bound to.

    Raises ``VoucherError`` with reason ``malformed``, ``forged``, ``expired``, ``wrong_campaign``
    or ``wrong_shopper``. The signature is checked first, so nothing about a forged code leaks.
    """
    claims = parse_voucher(code)
    body, _, mac = claims.code.rpartition(".")
    expected = _b32(_mac(secret, body, VOUCHER_MAC_BYTES))
    if not hmac.compare_digest(expected.encode("ascii"), mac.encode("ascii")):
        raise VoucherError("forged", "the code's signature does not match (altered or not issued by this venue)")
    if now >= claims.expires:
        raise VoucherError("expired", f"the code expired at {claims.expires:.0f} (now {now:.0f})")
    if campaign is not None and claims.campaign != campaign:
        raise VoucherError("wrong_campaign", f"the code belongs to campaign {claims.campaign!r}, not {campaign!r}")
    if shopper is not None and not hmac.compare_digest(shopper_tag(secret, shopper).encode("ascii"),
                                                       claims.shopper_tag.encode("ascii")):
        raise VoucherError("wrong_shopper", "the code was issued to another shopper")
    return claims
