"""Publishes what the pipeline committed: zone events (QoS 1) and, when enabled, latest positions (QoS 0)."""

from __future__ import annotations

import json
from collections.abc import Callable

from api.live_view import fix_dict
from api.pipeline import Committed
from beacon_gateway.wire import events_topic, positions_topic

Publish = Callable[[str, bytes, int, bool], None]


class MqttOutlet:
    def __init__(self, publish: Publish, venue_id: str, publish_positions: bool) -> None:
        self._publish = publish
        self._events_topic = events_topic(venue_id)
        self._venue = venue_id
        self.publish_positions = publish_positions
        self.published = 0

    def emit(self, c: Committed) -> None:
        for e in c.events:
            self._publish(self._events_topic, json.dumps(e, separators=(",", ":"), default=str).encode(), 1, False)
            self.published += 1
        if self.publish_positions:
            latest = {}
            for f in c.fixes:
                latest[f.device] = f  # one message per device per commit: its newest fix
            for f in latest.values():
                self._publish(positions_topic(self._venue, f.device),
                              json.dumps(fix_dict(f), separators=(",", ":")).encode(), 0, False)
                self.published += 1

    def offer(self, offer: dict[str, object]) -> None:
        self._publish(self._events_topic, json.dumps(offer, separators=(",", ":"), default=str).encode(), 1, False)
