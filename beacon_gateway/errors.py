"""The one base exception of the gateway package, and its kinds.

Every error carries a short ``reason`` (a counter key such as ``bad_json`` or ``unknown_anchor``)
so callers can count drops by reason without parsing messages.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Anything the gateway package refuses: a bad config, a malformed message, an unusable URL."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class WireError(GatewayError, ValueError):
    """A message that does not follow the wire protocol; ``reason`` is a short counter key."""


class AdapterError(GatewayError, ValueError):
    """A third-party node message (ESPresense, Theengs, OpenMQTTGateway) that gives no usable reading."""


class ConfigError(GatewayError, ValueError):
    """A gateway configuration (YAML file, remote config message, broker URL) that cannot be used."""
