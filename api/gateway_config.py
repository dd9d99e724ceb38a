"""The retained server -> gateway configuration (``instore/v1/<venue>/gw/<gateway>/config``).

``instore serve --gateway-config FILE`` (or ``INSTORE_GATEWAY_CONFIG``) reads a YAML or JSON file::

    version: 7                                   # echoed by each gateway as config_version
    default: {batch_period_s: 1, batch_max: 500, scan_window_s: 30, log_level: INFO,
              allow_uuids: [e2c56db5-dffb-48d2-b060-d0f5a71096e0]}
    gateways:                                    # optional per-gateway overrides (anchor ids)
      gw-01: {batch_max: 200}

and publishes one retained QoS 1 message per gateway anchor of the venue, ``default`` merged with the
gateway's override, each validated by the wire schema (``GatewayConfigMessage``). Problems are
reported naming the file and the field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import ValidationError

from api.errors import EngineError
from beacon_gateway.wire import GatewayConfigMessage, config_topic
from positioning.venue import Venue

CONFIG_QOS: Final = 1  # a gateway that reconnects must get it: QoS 1 and retained
TOP_KEYS: Final = frozenset({"version", "default", "gateways"})


class GatewayConfigError(EngineError):
    """A gateway configuration file that cannot be used; the message names the file and the field."""


def parse_gateway_configs(text: str, venue: Venue, source: str = "gateway config") -> dict[str, bytes]:
    """Payload per gateway anchor of the venue (retained config messages), from the file's text."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise GatewayConfigError(f"{source}: not YAML or JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, Mapping):
        raise GatewayConfigError(f"{source}: expected a mapping with version, default and gateways")
    unknown = sorted(set(map(str, doc)) - TOP_KEYS)
    if unknown:
        raise GatewayConfigError(f"{source}: {unknown[0]}: unknown key (keys: version, default, gateways)")
    if "version" not in doc:
        raise GatewayConfigError(f"{source}: version: missing (an integer the gateways echo back)")
    default = doc.get("default") or {}
    overrides = doc.get("gateways") or {}
    if not isinstance(default, Mapping):
        raise GatewayConfigError(f"{source}: default: expected a mapping")
    if not isinstance(overrides, Mapping):
        raise GatewayConfigError(f"{source}: gateways: expected a mapping of gateway id to settings")
    gateways = [a.id for a in venue.anchors if a.kind == "gateway"]
    for gw, body in overrides.items():
        if str(gw) not in gateways:
            raise GatewayConfigError(f"{source}: gateways.{gw}: not a gateway of venue {venue.id!r}")
        if not isinstance(body, Mapping):
            raise GatewayConfigError(f"{source}: gateways.{gw}: expected a mapping")
    out: dict[str, bytes] = {}
    for gw in gateways:
        where = f"gateways.{gw}" if gw in overrides else "default"
        merged: dict[str, Any] = {**default, **(overrides.get(gw) or {}), "version": doc["version"]}
        try:
            msg = GatewayConfigMessage.model_validate(merged)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            path = "version" if field == "version" else f"{where}.{field}"
            raise GatewayConfigError(f"{source}: {path}: {first['msg']}") from None
        extra = sorted(set(merged) - set(GatewayConfigMessage.model_fields))
        if extra:
            raise GatewayConfigError(f"{source}: {where}.{extra[0]}: unknown setting "
                                     f"(settings: {', '.join(sorted(GatewayConfigMessage.model_fields))})")
        out[gw] = json.dumps(msg.model_dump(exclude_none=True), separators=(",", ":")).encode()
    return out


def load_gateway_configs(path: Path, venue: Venue) -> dict[str, bytes]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GatewayConfigError(f"{path}: cannot read gateway config: {exc.strerror or exc}") from None
    return parse_gateway_configs(text, venue, str(path))


def publish_gateway_configs(publish: Callable[[str, bytes, int, bool], None], venue_id: str,
                            configs: Mapping[str, bytes]) -> int:
    """Publish each gateway's retained config; returns how many were handed to the client."""
    for gw, payload in configs.items():
        publish(config_topic(venue_id, gw), payload, CONFIG_QOS, True)
    return len(configs)


__all__ = ["GatewayConfigError", "load_gateway_configs", "parse_gateway_configs", "publish_gateway_configs"]
