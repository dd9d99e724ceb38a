"""BLE advertisement parsing: iBeacon, AltBeacon and Eddystone-UID to canonical beacon ids.

Input is what bleak's ``AdvertisementData`` carries: ``manufacturer_data`` (company id -> bytes
after the company id) and ``service_data`` (service UUID -> bytes). Frames, as the specs and the
well-known parsers (beacontools, AltBeacon library, Theengs decoder) read them:

* iBeacon: company 0x004C, ``02 15`` + UUID(16) + major(2, big-endian) + minor(2) + measured
  power at 1 m (signed byte); trailing bytes are ignored.
* AltBeacon: any company id, ``BE AC`` + id1(16) + id2(2) + id3(2) + reference RSSI at 1 m
  (signed) + manufacturer reserved byte (optional, like the lenient parsers).
* Eddystone-UID: service 0xFEAA, frame type ``00`` + tx power at 0 m (signed) + namespace(10) +
  instance(6) + RFU(2, optional).

``parse_advertisement`` never raises: it returns a ``BeaconAdvert`` or a ``Rejected`` with a
reason (``not_beacon`` for other devices, ``malformed`` for a beacon frame with bad bytes).
``AdvertParser`` adds the allow-list and a bounded cache: a beacon repeats the same bytes in every
advert, so the cache makes the hot path one dictionary lookup.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from beacon_gateway.errors import ConfigError

APPLE_COMPANY_ID: Final = 0x004C
IBEACON_PREFIX: Final = b"\x02\x15"
IBEACON_MIN_LEN: Final = 23  # 02 15, uuid 16, major 2, minor 2, power 1
ALTBEACON_CODE: Final = b"\xbe\xac"
ALTBEACON_MIN_LEN: Final = 23  # be ac, id1 16, id2 2, id3 2, ref rssi 1 (reserved byte optional)
EDDYSTONE_UUID16: Final = "feaa"
EDDYSTONE_UID_FRAME: Final = 0x00
EDDYSTONE_UID_MIN_LEN: Final = 18  # frame 1, tx 1, namespace 10, instance 6 (RFU 2 optional)
EDDYSTONE_OTHER_FRAMES: Final = {0x10: "URL", 0x20: "TLM", 0x30: "EID", 0x40: "E2EE-EID"}
PARSE_CACHE_MAX: Final = 8192  # distinct advert payloads remembered; a mall floor hears a few thousand beacons
BASE_UUID_SUFFIX: Final = "-0000-1000-8000-00805f9b34fb"  # Bluetooth base UUID: 16-bit ids expand into it

_HEX_RE: Final = re.compile(r"^(?:[0-9a-fA-F]{2})*$")
_NAMESPACE_RE: Final = re.compile(r"^[0-9a-f]{20}$")


@dataclass(frozen=True, slots=True)
class BeaconAdvert:
    """A recognised beacon frame. ``uuid`` (iBeacon UUID or AltBeacon id1, dashed) and ``namespace``
    (Eddystone, 20 hex digits) are what allow-lists match."""

    id: str
    kind: str
    tx_power: int
    uuid: str | None = None
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why an advertisement gives no beacon reading; ``reason`` is a counter key."""

    reason: str
    detail: str


ParseResult = BeaconAdvert | Rejected


def _signed(byte: int) -> int:
    return byte - 256 if byte > 127 else byte


def _dashed(raw16: bytes) -> str:
    h = raw16.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _ibeacon(data: bytes) -> ParseResult:
    if len(data) < IBEACON_MIN_LEN:
        return Rejected("malformed", f"iBeacon frame of {len(data)} bytes, need {IBEACON_MIN_LEN}")
    uuid = _dashed(data[2:18])
    major = (data[18] << 8) | data[19]
    minor = (data[20] << 8) | data[21]
    return BeaconAdvert(f"ibeacon:{uuid}-{major}-{minor}", "ibeacon", _signed(data[22]), uuid=uuid)


def _altbeacon(data: bytes) -> ParseResult:
    if len(data) < ALTBEACON_MIN_LEN:
        return Rejected("malformed", f"AltBeacon frame of {len(data)} bytes, need {ALTBEACON_MIN_LEN}")
    id1 = _dashed(data[2:18])
    id2 = (data[18] << 8) | data[19]
    id3 = (data[20] << 8) | data[21]
    return BeaconAdvert(f"altbeacon:{id1}-{id2}-{id3}", "altbeacon", _signed(data[22]), uuid=id1)


def _eddystone(data: bytes) -> ParseResult:
    if not data:
        return Rejected("malformed", "empty Eddystone service data")
    frame = data[0]
    if frame != EDDYSTONE_UID_FRAME:
        name = EDDYSTONE_OTHER_FRAMES.get(frame)
        if name is not None:
            return Rejected("not_beacon", f"Eddystone-{name} frame carries no beacon id")
        return Rejected("malformed", f"unknown Eddystone frame type 0x{frame:02x}")
    if len(data) < EDDYSTONE_UID_MIN_LEN:
        return Rejected("malformed", f"Eddystone-UID frame of {len(data)} bytes, need {EDDYSTONE_UID_MIN_LEN}")
    namespace = data[2:12].hex()
    instance = data[12:18].hex()
    return BeaconAdvert(f"eddystone-uid:{namespace}-{instance}", "eddystone-uid", _signed(data[1]),
                        namespace=namespace)


def is_eddystone_service(uuid: str) -> bool:
    """True for the Eddystone service UUID in any spelling: ``feaa``, ``0xFEAA``, ``0000feaa-0000-1000-...``."""
    u = uuid.strip().lower()
    if u.startswith("0x"):
        u = u[2:]
    return u == EDDYSTONE_UUID16 or u == f"0000{EDDYSTONE_UUID16}{BASE_UUID_SUFFIX}"


def parse_advertisement(manufacturer_data: Mapping[int, bytes], service_data: Mapping[str, bytes]) -> ParseResult:
    """The beacon in one advertisement, or why there is none. Never raises on any bytes."""
    problem: Rejected | None = None
    for company, data in manufacturer_data.items():
        if company == APPLE_COMPANY_ID and data[:2] == IBEACON_PREFIX:
            result = _ibeacon(data)
        elif data[:2] == ALTBEACON_CODE:
            result = _altbeacon(data)
        else:
            continue
        if isinstance(result, BeaconAdvert):
            return result
        problem = problem or result
    for uuid, data in service_data.items():
        if is_eddystone_service(uuid):
            result = _eddystone(data)
            if isinstance(result, BeaconAdvert):
                return result
            if problem is None or result.reason == "malformed":
                problem = result
    return problem or Rejected("not_beacon", "no iBeacon, AltBeacon or Eddystone-UID frame")


# ------------------------------------------------------------------------------------------ allow-list


def normalize_uuid(value: str) -> str:
    """A UUID in any common spelling as lowercase with dashes; ``ConfigError`` when it is not one."""
    hexes = value.replace("-", "").strip().lower()
    if len(hexes) != 32 or not _HEX_RE.match(hexes):
        raise ConfigError("bad_uuid", f"not a UUID: {value!r}")
    return f"{hexes[:8]}-{hexes[8:12]}-{hexes[12:16]}-{hexes[16:20]}-{hexes[20:]}"


def normalize_namespace(value: str) -> str:
    ns = value.strip().lower()
    if ns.startswith("0x"):
        ns = ns[2:]
    if not _NAMESPACE_RE.match(ns):
        raise ConfigError("bad_namespace", f"not an Eddystone namespace (20 hex digits): {value!r}")
    return ns


@dataclass(frozen=True, slots=True)
class AllowList:
    """Which beacons a gateway forwards. With neither list set, every beacon; otherwise only those whose
    UUID (iBeacon, AltBeacon id1) or Eddystone namespace is listed."""

    uuids: frozenset[str] | None = None
    namespaces: frozenset[str] | None = None

    @classmethod
    def build(cls, uuids: Iterable[str] | None, namespaces: Iterable[str] | None) -> AllowList:
        return cls(
            None if uuids is None else frozenset(normalize_uuid(u) for u in uuids),
            None if namespaces is None else frozenset(normalize_namespace(n) for n in namespaces),
        )

    @property
    def open(self) -> bool:
        return self.uuids is None and self.namespaces is None

    def allows(self, advert: BeaconAdvert) -> bool:
        if self.open:
            return True
        if advert.uuid is not None and self.uuids is not None and advert.uuid in self.uuids:
            return True
        return advert.namespace is not None and self.namespaces is not None and advert.namespace in self.namespaces


NOT_ALLOWED: Final = Rejected("not_allowed", "beacon is not in the allow-list")


class AdvertParser:
    """``parse_advertisement`` plus the allow-list, memoised on the advert bytes (bounded)."""

    def __init__(self, allow: AllowList | None = None, cache_max: int = PARSE_CACHE_MAX) -> None:
        self._allow = allow or AllowList()
        self._cache: dict[tuple[Any, ...], ParseResult] = {}
        self._cache_max = cache_max

    @property
    def allow(self) -> AllowList:
        return self._allow

    def set_allow(self, allow: AllowList) -> None:
        self._allow = allow
        self._cache.clear()

    def parse(self, manufacturer_data: Mapping[int, bytes], service_data: Mapping[str, bytes]) -> ParseResult:
        key = (*manufacturer_data.items(), None, *service_data.items())
        found = self._cache.get(key)
        if found is not None:
            return found
        result = parse_advertisement(manufacturer_data, service_data)
        if isinstance(result, BeaconAdvert) and not self._allow.allows(result):
            result = NOT_ALLOWED
        if len(self._cache) >= self._cache_max:
            self._cache.clear()  # cheap bound; the working set refills in one scan period
        self._cache[key] = result
        return result


# ------------------------------------------------------------------------------------------ JSON shape


class AdvertInputError(ValueError):
    """A JSON advertisement line that is not in the ``gateway decode`` input shape."""


@dataclass(frozen=True, slots=True)
class AdvertRecord:
    """One advertisement read from JSON (``gateway decode`` input, replay files)."""

    manufacturer_data: Mapping[int, bytes]
    service_data: Mapping[str, bytes]
    rssi: float | None
    t: float | None


def _hex_bytes(value: object, where: str) -> bytes:
    if not isinstance(value, str) or not _HEX_RE.match(value.strip()):
        raise AdvertInputError(f"{where}: not a hex string")
    return bytes.fromhex(value.strip())


def _finite(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or abs(value) == float("inf"):
        raise AdvertInputError(f"{where}: not a finite number")
    return float(value)


def advert_from_json(doc: object) -> AdvertRecord:
    """An advertisement from ``{"manufacturer_data": {"76": "0215..."}, "service_data": {...}, "rssi": -70,
    "t": ...}`` (every key optional); ``AdvertInputError`` names the bad field."""
    if not isinstance(doc, dict):
        raise AdvertInputError(f"expected a JSON object, got {type(doc).__name__}")
    manufacturer: dict[int, bytes] = {}
    raw_m = doc.get("manufacturer_data") or {}
    if not isinstance(raw_m, dict):
        raise AdvertInputError("manufacturer_data: expected an object")
    for key, value in raw_m.items():
        try:
            company = int(key, 0) if key.lower().startswith("0x") else int(key)
        except ValueError:
            raise AdvertInputError(f"manufacturer_data: company id {key!r} is not a number") from None
        if not 0 <= company <= 0xFFFF:
            raise AdvertInputError(f"manufacturer_data: company id {company} out of range")
        manufacturer[company] = _hex_bytes(value, f"manufacturer_data[{key}]")
    service: dict[str, bytes] = {}
    raw_s = doc.get("service_data") or {}
    if not isinstance(raw_s, dict):
        raise AdvertInputError("service_data: expected an object")
    for key, value in raw_s.items():
        service[str(key)] = _hex_bytes(value, f"service_data[{key}]")
    return AdvertRecord(manufacturer, service, _finite(doc.get("rssi"), "rssi"), _finite(doc.get("t"), "t"))


def decode_line(line: str, parser: AdvertParser | None = None) -> dict[str, Any]:
    """One ``gateway decode`` output object for one input line; never raises."""
    out: dict[str, Any] = {"id": None, "kind": None, "tx_power": None, "error": None}
    text = line.strip()
    if not text:
        out["error"] = "empty line"
        return out
    try:
        record = advert_from_json(json.loads(text))
    except (json.JSONDecodeError, RecursionError):
        out["error"] = "not JSON"
        return out
    except AdvertInputError as exc:
        out["error"] = f"bad input: {exc}"
        return out
    result = (parser.parse if parser else parse_advertisement)(record.manufacturer_data, record.service_data)
    if isinstance(result, BeaconAdvert):
        out.update(id=result.id, kind=result.kind, tx_power=result.tx_power)
    else:
        out["error"] = f"{result.reason}: {result.detail}"
    return out
