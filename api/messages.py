"""Inbound MQTT messages to typed values: our wire batches, gateway status, third-party nodes.

Pure: ``decode_message(topic, payload, routes)`` returns a ``ReadingsIn`` or ``StatusIn`` or raises
``IngestError`` whose ``reason`` is the counter key (oversized, bad_json, schema, unknown_gateway,
wrong_venue, topic_mismatch, unknown_topic, and the third-party adapters' reasons such as unknown_anchor
or not_ibeacon). Third-party payloads are parsed by ``beacon_gateway.adapters``.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from api.errors import IngestError
from beacon_gateway.adapters import (
    espresense_subscriptions,
    is_espresense_topic,
    is_theengs_topic,
    parse_node_message,
    theengs_subscriptions,
)
from beacon_gateway.errors import AdapterError, WireError
from beacon_gateway.wire import MAX_PAYLOAD_BYTES, OFFLINE_PAYLOAD, decode_batch

STATUS_JSON_MAX: Final = 16_384  # a gateway health document larger than this is refused


@dataclass(frozen=True, slots=True)
class ReadingsIn:
    """Readings from one message, as columns. ``seq`` is None for sources without one (third party)."""

    gateway: str
    seq: int | None
    t: npt.NDArray[np.float64]
    beacon: npt.NDArray[np.object_]
    rssi: npt.NDArray[np.float64]
    tx: npt.NDArray[np.float64]
    source: str = "wire"

    def __len__(self) -> int:
        return int(self.t.shape[0])


@dataclass(frozen=True, slots=True)
class StatusIn:
    gateway: str
    online: bool
    health: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Routes:
    """What the ingest accepts: the venue id, its anchors, and the third-party prefixes."""

    venue: str
    anchors: Collection[str]
    espresense_prefix: str = "espresense"
    theengs_prefix: str = "home"

    def subscriptions(self) -> list[str]:
        root = f"instore/v1/{self.venue}/gw"
        subs = [f"{root}/+/readings", f"{root}/+/status"]
        if self.espresense_prefix:
            subs += espresense_subscriptions(self.espresense_prefix)
        if self.theengs_prefix:
            subs += theengs_subscriptions(self.theengs_prefix)
        return subs


def decode_message(topic: str, payload: bytes, routes: Routes, received_t: float) -> ReadingsIn | StatusIn:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise IngestError("oversized", f"{topic}: {len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    parts = topic.split("/")
    if len(parts) == 6 and parts[0] == "instore" and parts[1] == "v1" and parts[3] == "gw":
        if parts[2] != routes.venue:
            raise IngestError("wrong_venue", f"{topic}: venue {parts[2]!r} is not {routes.venue!r}")
        gateway, kind = parts[4], parts[5]
        if gateway not in routes.anchors:
            raise IngestError("unknown_gateway", f"{topic}: {gateway!r} is not an anchor of {routes.venue}")
        if kind == "readings":
            return _wire_readings(topic, gateway, payload)
        if kind == "status":
            return _status(topic, gateway, payload)
        raise IngestError("unknown_topic", topic)
    if (routes.espresense_prefix and is_espresense_topic(topic, routes.espresense_prefix)) or (
            routes.theengs_prefix and is_theengs_topic(topic, routes.theengs_prefix)):
        return _third_party(topic, payload, routes, received_t)
    raise IngestError("unknown_topic", topic)


def _wire_readings(topic: str, gateway: str, payload: bytes) -> ReadingsIn:
    try:
        batch = decode_batch(payload)
    except WireError as exc:
        raise IngestError(exc.reason, f"{topic}: {exc}") from None
    if batch.gw != gateway:
        raise IngestError("topic_mismatch", f"{topic}: payload gw {batch.gw!r} differs from the topic")
    n = len(batch)
    t = batch.t0 + np.asarray(batch.dt, dtype=np.float64) if n else np.empty(0)
    tx = np.array([np.nan if v is None else v for v in batch.tx], dtype=np.float64) if n else np.empty(0)
    return ReadingsIn(gateway, batch.seq, t, np.asarray(batch.id, dtype=object),
                      np.asarray(batch.rssi, dtype=np.float64), tx)


def _status(topic: str, gateway: str, payload: bytes) -> StatusIn:
    body = payload.strip()
    if body == OFFLINE_PAYLOAD or body == b"":
        return StatusIn(gateway, online=False)
    if body in (b"online", b"\"online\""):
        return StatusIn(gateway, online=True)
    if len(body) > STATUS_JSON_MAX:
        raise IngestError("oversized", f"{topic}: status of {len(body)} bytes")
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IngestError("bad_json", f"{topic}: {exc}") from None
    if not isinstance(doc, dict):
        raise IngestError("schema", f"{topic}: status must be a JSON object or 'offline'")
    state = doc.get("state", doc.get("status", "online"))
    return StatusIn(gateway, online=str(state).lower() != "offline", health=doc)


def _third_party(topic: str, payload: bytes, routes: Routes, received_t: float) -> ReadingsIn:
    """ESPresense / Theengs / OpenMQTTGateway: one reading, timed at arrival (their payloads carry no time)."""
    try:
        r = parse_node_message(topic, payload, received_t, espresense_prefix=routes.espresense_prefix or "\0",
                               theengs_prefix=routes.theengs_prefix or "\0", anchors=routes.anchors)
    except AdapterError as exc:
        raise IngestError(exc.reason, f"{topic}: {exc.detail}") from None
    source = "espresense" if is_espresense_topic(topic, routes.espresense_prefix) else "theengs"
    return ReadingsIn(r.anchor, None, np.array([r.t]), np.array([r.beacon_id], dtype=object), np.array([r.rssi]),
                      np.array([np.nan if r.tx_power is None else r.tx_power]), source=source)
