"""Feeds every commit's zone events and positions to the campaign engine and publishes the offers it sends.

Offers go out as ``{"type": "offer", ...}`` on ``instore/v1/<venue>/events`` and into the live
feed; the campaign engine has already stored them, so the shopper API (``/v1/shoppers/{id}/offers``)
serves them as soon as this returns: within one commit (~0.25-0.5 s) of the zone entry.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from api.pipeline import Committed
from campaigns.engine import PositionColumns

log = logging.getLogger("instore.campaigns")


class CampaignOutlet:
    def __init__(self, engine: Any, publish_offer: Callable[[dict[str, Any]], None],
                 feed: deque[dict[str, Any]] | None = None) -> None:
        self.engine = engine
        self.publish_offer = publish_offer
        self.feed = feed
        self.sent = 0
        self.decisions = 0
        self.failures = 0

    def emit(self, c: Committed) -> None:
        now = c.watermark if c.watermark is not None else c.wall
        try:
            if not c.zone_events and not c.fixes:
                decisions = self.engine.advance(now)
            else:  # the columnar path: positions as arrays, no Python object per position in the engine
                positions = PositionColumns.from_fixes(c.fixes) if c.fixes else None
                decisions = self.engine.on_window(c.zone_events, now, positions)
        except Exception:  # a campaign bug must not stop positioning: log, count, go on
            self.failures += 1
            log.exception("campaign engine failed on a commit")
            return
        self.decisions += len(decisions)
        for d in decisions:
            if d.sent and d.offer is not None:
                event = d.to_event()
                self.publish_offer(event)
                if self.feed is not None:
                    self.feed.append(event)
                self.sent += 1
