"""Holdout groups: a stable, deterministic share of shoppers per campaign who are never sent it.

Assignment hashes the campaign id and the pseudonymous shopper id (SHA-256), so it is the same in
every process and after every restart, independent per campaign (a shopper held out of one
campaign is not systematically held out of the others), and needs no stored table.
"""

from __future__ import annotations

import hashlib
from typing import Final

HOLDOUT_BUCKETS: Final = 10_000  # basis-point resolution for holdout percentages


def holdout_bucket(campaign: str, shopper: str) -> int:
    digest = hashlib.sha256(f"holdout\x00{campaign}\x00{shopper}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % HOLDOUT_BUCKETS


def in_holdout(campaign: str, shopper: str, holdout_pct: float) -> bool:
    if holdout_pct <= 0.0:
        return False
    return holdout_bucket(campaign, shopper) < round(holdout_pct * HOLDOUT_BUCKETS / 100.0)
