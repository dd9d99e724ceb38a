"""Voucher codes: round trip, and forged, expired, cross-campaign, cross-shopper and malformed codes refused."""

from __future__ import annotations

import pytest

from campaigns import VoucherError, mint_voucher, parse_voucher, verify_voucher
from campaigns.vouchers import offer_id_for

SECRET = b"venue-secret-for-voucher-tests-0001"
OTHER_SECRET = b"another-venue-secret-0123456789abc"
T = 1_750_000_000.0


def code(campaign: str = "skin-spring", shopper: str = "dev-1", expires: float = T + 3600) -> str:
    return mint_voucher(SECRET, campaign, offer_id_for(SECRET, campaign, shopper, T), shopper, expires)


def refused(reason: str, text: str, **kw: object) -> None:
    with pytest.raises(VoucherError) as err:
        verify_voucher(SECRET, text, T + 10, **kw)  # type: ignore[arg-type]
    assert err.value.reason == reason


def test_round_trip_and_lenient_case_and_spaces() -> None:
    c = code()
    assert c.startswith("IS1.SKIN-SPRING.") and c == c.upper()
    claims = verify_voucher(SECRET, f"  {c.lower()} ", T + 10, campaign="skin-spring", shopper="dev-1")
    assert claims.campaign == "skin-spring" and claims.expires == T + 3600 and claims.code == c


def test_every_altered_character_is_detected() -> None:
    c = code()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    for i, ch in enumerate(c):
        if ch == ".":
            continue
        repl = alphabet[(alphabet.find(ch) + 1) % len(alphabet)] if ch in alphabet else ("7" if ch != "7" else "6")
        forged = c[:i] + repl + c[i + 1:]
        with pytest.raises(VoucherError) as err:
            verify_voucher(SECRET, forged, T + 10)
        assert err.value.reason in ("forged", "malformed"), (i, forged)


def test_code_from_another_venue_secret_is_forged() -> None:
    foreign = mint_voucher(OTHER_SECRET, "skin-spring", "AAAAAAAAAAAAA", "dev-1", T + 3600)
    refused("forged", foreign)


def test_relabelled_campaign_is_forged_and_cross_campaign_use_refused() -> None:
    c = code("skin-spring")
    refused("forged", c.replace("SKIN-SPRING", "AURA-SPRING"))
    refused("wrong_campaign", c, campaign="aura-spring")


def test_expired_and_wrong_shopper_and_malformed() -> None:
    refused("expired", code(expires=T + 5))
    refused("wrong_shopper", code(), shopper="dev-2")
    for junk in ("", "hello", "IS1.X", "IS2.SKIN.AAAAAAAAAAAAA.1.AAAAAAAA.AAAAAAAAAAAAAAAA", "IS1" + "." * 5,
                 "IS1.SKIN.AAAAAAAAAAAAA.1.AAAAAAAA.AAAAAAAAAAAAAAA1"):
        refused("malformed", junk)


def test_parse_reads_the_fields() -> None:
    claims = parse_voucher(code())
    assert claims.campaign == "skin-spring" and len(claims.offer_id) == 13 and len(claims.shopper_tag) == 8


def test_weak_secret_is_refused() -> None:
    from campaigns.vouchers import check_secret

    with pytest.raises(VoucherError, match="weak_secret"):
        check_secret(b"short")
