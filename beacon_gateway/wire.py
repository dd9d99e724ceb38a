"""The MQTT wire protocol shared by gateways and the engine (ARCHITECTURE.md, "Wire protocol").

Topics::

    instore/v1/<venue>/gw/<gateway>/readings   QoS 1 batches (ReadingsBatch)
    instore/v1/<venue>/gw/<gateway>/status     retained; LWT "offline"; JSON health when online
    instore/v1/<venue>/gw/<gateway>/config     retained; server -> gateway (GatewayConfigMessage)
    instore/v1/<venue>/events                  engine -> subscribers, QoS 1
    instore/v1/<venue>/positions/<device>      engine -> subscribers, QoS 0

A batch is columnar: ``dt``, ``id``, ``rssi``, ``tx`` are equal-length lists and reading ``i`` was
received at ``t0 + dt[i]`` (UTC epoch seconds).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from beacon_gateway.errors import WireError

WIRE_VERSION: Final = 1
TOPIC_ROOT: Final = "instore/v1"
OFFLINE_PAYLOAD: Final = b"offline"
MAX_BATCH_READINGS: Final = 10_000  # a batch larger than this is refused as oversized
MAX_PAYLOAD_BYTES: Final = 2_000_000  # refuse before parsing JSON
RSSI_MIN_DBM: Final = -130  # below: a corrupt packet (POSITIONING.md, input hygiene)
RSSI_MAX_DBM: Final = 0  # above: a corrupt packet

_UUID_RE: Final = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_IBEACON_ID: Final = re.compile(rf"^ibeacon:{_UUID_RE}-\d{{1,5}}-\d{{1,5}}$")
_EDDYSTONE_ID: Final = re.compile(r"^eddystone-uid:[0-9a-f]{20}-[0-9a-f]{12}$")
_ALTBEACON_ID: Final = re.compile(rf"^altbeacon:{_UUID_RE}-\d{{1,5}}-\d{{1,5}}$")
_TOPIC_SEGMENT: Final = re.compile(r"^[^/#+\s]+$")


def is_canonical_beacon_id(beacon_id: str) -> bool:
    return bool(_IBEACON_ID.match(beacon_id) or _EDDYSTONE_ID.match(beacon_id) or _ALTBEACON_ID.match(beacon_id))


def ibeacon_id(uuid: str, major: int, minor: int) -> str:
    """Canonical iBeacon id from a UUID in any common spelling (with or without dashes, any case)."""
    hexes = uuid.replace("-", "").strip().lower()
    if len(hexes) != 32 or any(c not in "0123456789abcdef" for c in hexes):
        raise ValueError(f"not a UUID: {uuid!r}")
    if not (0 <= major <= 0xFFFF and 0 <= minor <= 0xFFFF):
        raise ValueError(f"major/minor out of range: {major}, {minor}")
    dashed = f"{hexes[:8]}-{hexes[8:12]}-{hexes[12:16]}-{hexes[16:20]}-{hexes[20:]}"
    return f"ibeacon:{dashed}-{major}-{minor}"


class ReadingsBatch(BaseModel):
    """One gateway batch. Validation happens once, here, at the edge."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: int = Field(WIRE_VERSION, ge=WIRE_VERSION, le=WIRE_VERSION)
    gw: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^/#+\s]+$")]
    seq: int = Field(ge=0)
    t0: float = Field(gt=0, allow_inf_nan=False)
    dt: list[Annotated[float, Field(allow_inf_nan=False)]] = Field(max_length=MAX_BATCH_READINGS)
    id: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(max_length=MAX_BATCH_READINGS)
    rssi: list[Annotated[float, Field(allow_inf_nan=False)]] = Field(max_length=MAX_BATCH_READINGS)
    tx: list[Annotated[float, Field(allow_inf_nan=False)] | None] = Field(max_length=MAX_BATCH_READINGS)

    @model_validator(mode="after")
    def _equal_columns(self) -> ReadingsBatch:
        n = len(self.dt)
        if not (len(self.id) == len(self.rssi) == len(self.tx) == n):
            raise ValueError(f"columns differ in length: dt={n}, id={len(self.id)}, rssi={len(self.rssi)}, "
                             f"tx={len(self.tx)}")
        return self

    def __len__(self) -> int:
        return len(self.dt)


class GatewayConfigMessage(BaseModel):
    """Retained server -> gateway configuration; ``version`` is echoed as ``config_version`` in status."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    version: int = Field(ge=0)
    scan_window_s: float | None = Field(None, gt=0, le=60)
    batch_period_s: float | None = Field(None, gt=0, le=60)
    batch_max: int | None = Field(None, ge=1, le=MAX_BATCH_READINGS)
    allow_uuids: list[str] | None = None
    allow_namespaces: list[str] | None = None
    log_level: str | None = Field(None, pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")


def encode_batch(batch: ReadingsBatch) -> bytes:
    return json.dumps(batch.model_dump(), separators=(",", ":")).encode()


def encode_columns(gw: str, seq: int, t0: float, dt: Sequence[float], ids: Sequence[str],
                   rssi: Sequence[float], tx: Sequence[float | None]) -> bytes:
    """The hot-path encoder: columns straight to JSON, without building a pydantic model.

    The gateway produces these columns itself, so they are valid by construction; the
    engine validates on decode. ``decode_batch(encode_columns(...))`` gives the same columns.
    """
    if not (len(dt) == len(ids) == len(rssi) == len(tx)):
        raise WireError("schema", f"columns differ in length: dt={len(dt)}, id={len(ids)}, rssi={len(rssi)}, "
                                  f"tx={len(tx)}")
    return json.dumps({"v": WIRE_VERSION, "gw": gw, "seq": seq, "t0": t0, "dt": list(dt), "id": list(ids),
                       "rssi": list(rssi), "tx": list(tx)}, separators=(",", ":"), allow_nan=False).encode()


def decode_batch(payload: bytes | str) -> ReadingsBatch:
    """Parse a readings payload or raise ``WireError`` with a reason (oversized, json, schema)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise WireError("oversized", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        raw: Any = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WireError("bad_json", str(exc)) from None
    except RecursionError:
        raise WireError("bad_json", "nested too deeply") from None
    if not isinstance(raw, dict):
        raise WireError("schema", f"expected a JSON object, got {type(raw).__name__}")
    if isinstance(raw.get("dt"), list) and len(raw["dt"]) > MAX_BATCH_READINGS:
        raise WireError("oversized", f"{len(raw['dt'])} readings > {MAX_BATCH_READINGS}")
    try:
        return ReadingsBatch.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "batch"
        raise WireError("schema", f"{where}: {first['msg']}") from None


def readings_topic(venue: str, gateway: str) -> str:
    return f"{TOPIC_ROOT}/{_segment(venue)}/gw/{_segment(gateway)}/readings"


def status_topic(venue: str, gateway: str) -> str:
    return f"{TOPIC_ROOT}/{_segment(venue)}/gw/{_segment(gateway)}/status"


def config_topic(venue: str, gateway: str) -> str:
    return f"{TOPIC_ROOT}/{_segment(venue)}/gw/{_segment(gateway)}/config"


def events_topic(venue: str) -> str:
    return f"{TOPIC_ROOT}/{_segment(venue)}/events"


def positions_topic(venue: str, device: str) -> str:
    return f"{TOPIC_ROOT}/{_segment(venue)}/positions/{_segment(device)}"


def parse_gateway_topic(topic: str) -> tuple[str, str, str] | None:
    """``(venue, gateway, kind)`` for ``instore/v1/<venue>/gw/<gateway>/<kind>``, else None."""
    parts = topic.split("/")
    if len(parts) != 6 or parts[0] != "instore" or parts[1] != "v1" or parts[3] != "gw":
        return None
    return parts[2], parts[4], parts[5]


def _segment(value: str) -> str:
    if not _TOPIC_SEGMENT.match(value):
        raise ValueError(f"not usable as an MQTT topic segment: {value!r}")
    return value
