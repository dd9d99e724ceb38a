"""The gateway's configuration: the YAML file of ``instore gateway run --config``, and remote overrides.

File (ARCHITECTURE.md, "CLI"; every key but ``gateway`` and ``venue`` has a default)::

    gateway: gw-01                  # anchor id in the venue
    venue: demo-mall                # venue id (topic prefix)
    mqtt: mqtt://127.0.0.1:1883     # or mqtts://user:pass@host:8883
    outbox: /var/lib/instore/gw-01.sqlite
    batch: {period_s: 1.0, max: 500}
    scanner: {kind: bleak, adapter: hci0}     # or {kind: replay, file: adverts.jsonl}

Relative paths (``outbox``, ``scanner.file``, ``tls.ca``) are relative to the config file's folder.
A retained ``GatewayConfigMessage`` on the config topic overlays the file's runtime values
(``effective_runtime``); fields it leaves out keep the file's value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from beacon_gateway.advertisements import AllowList
from beacon_gateway.errors import ConfigError
from beacon_gateway.publisher import parse_mqtt_url
from beacon_gateway.wire import MAX_BATCH_READINGS, GatewayConfigMessage

DEFAULT_MQTT_URL: Final = "mqtt://127.0.0.1:1883"
DEFAULT_BATCH_PERIOD_S: Final = 1.0  # one batch a second: latency the engine's 1 Hz tracker does not notice
DEFAULT_BATCH_MAX: Final = 500  # a busy mall gateway hears ~300 adverts/s; flush early above this
DEFAULT_WATCHDOG_S: Final = 60.0  # no advert for a minute in a shop means a stuck adapter, not an empty shop
DEFAULT_STATUS_PERIOD_S: Final = 10.0  # health JSON cadence on the retained status topic
DEFAULT_OUTBOX_MAX_BATCHES: Final = 86_400  # a day of 1 s batches kept through a broker outage
DEFAULT_OUTBOX_MAX_MB: Final = 256.0  # bounded disk on an SD card; oldest batches go first beyond it
DEFAULT_INFLIGHT: Final = 32  # batches handed to the MQTT client at once (awaiting PUBACK)

_SEGMENT: Final = r"^[^/#+\s]+$"
_SECTIONS: Final = ("batch", "scanner", "allow", "tls")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BatchSettings(_Strict):
    period_s: float = Field(default=DEFAULT_BATCH_PERIOD_S, gt=0, le=60)
    max: int = Field(default=DEFAULT_BATCH_MAX, ge=1, le=MAX_BATCH_READINGS)


class ScannerSettings(_Strict):
    kind: Literal["bleak", "replay"] = "bleak"
    adapter: str | None = None  # e.g. hci0; None: the system default
    mode: Literal["auto", "passive", "active"] = "auto"  # auto: passive where supported, else active
    watchdog_s: float = Field(default=DEFAULT_WATCHDOG_S, ge=1, le=3600)
    scan_window_s: float | None = Field(default=None, gt=0, le=3600)  # None: one continuous discovery session
    file: Path | None = None  # replay: JSON lines of adverts with "t"

    @model_validator(mode="after")
    def _replay_needs_file(self) -> ScannerSettings:
        if self.kind == "replay" and self.file is None:
            raise ValueError("a replay scanner needs 'file'")
        return self


class AllowSettings(_Strict):
    uuids: list[str] | None = None
    namespaces: list[str] | None = None


class TlsSettings(_Strict):
    ca: Path | None = None  # CA bundle for mqtts://; None: the system's
    insecure: bool = False  # skip certificate checks (lab brokers with self-signed certs only)


class GatewayFileConfig(_Strict):
    gateway: Annotated[str, Field(min_length=1, max_length=128, pattern=_SEGMENT)]
    venue: Annotated[str, Field(min_length=1, max_length=128, pattern=_SEGMENT)]
    mqtt: str = DEFAULT_MQTT_URL
    client_id: str | None = None  # default instore-gw-<venue>-<gateway>: fixed, for the persistent session
    outbox: Path | None = None  # default <gateway>.outbox.sqlite next to the config file
    outbox_max_batches: int = Field(default=DEFAULT_OUTBOX_MAX_BATCHES, ge=1)
    outbox_max_mb: float = Field(default=DEFAULT_OUTBOX_MAX_MB, gt=0)
    inflight: int = Field(default=DEFAULT_INFLIGHT, ge=1, le=1000)
    batch: BatchSettings = BatchSettings()
    scanner: ScannerSettings = ScannerSettings()
    allow: AllowSettings = AllowSettings()
    tls: TlsSettings = TlsSettings()
    status_period_s: float = Field(default=DEFAULT_STATUS_PERIOD_S, gt=0, le=3600)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @model_validator(mode="after")
    def _check_url_and_lists(self) -> GatewayFileConfig:
        parse_mqtt_url(self.mqtt)
        AllowList.build(self.allow.uuids, self.allow.namespaces)
        return self

    @property
    def mqtt_client_id(self) -> str:
        return self.client_id or f"instore-gw-{self.venue}-{self.gateway}"


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """What remote config may change while the gateway runs."""

    batch_period_s: float
    batch_max: int
    scan_window_s: float | None
    allow: AllowList
    log_level: str
    version: int | None = None  # the applied remote config version; None: the file's settings


def file_runtime(cfg: GatewayFileConfig) -> RuntimeSettings:
    return RuntimeSettings(
        batch_period_s=cfg.batch.period_s,
        batch_max=cfg.batch.max,
        scan_window_s=cfg.scanner.scan_window_s,
        allow=AllowList.build(cfg.allow.uuids, cfg.allow.namespaces),
        log_level=cfg.log_level,
    )


def effective_runtime(cfg: GatewayFileConfig, message: GatewayConfigMessage) -> RuntimeSettings:
    """The file's runtime settings overlaid with a remote config message; ``ConfigError`` on bad lists."""
    base = file_runtime(cfg)
    uuids = message.allow_uuids if message.allow_uuids is not None else cfg.allow.uuids
    namespaces = message.allow_namespaces if message.allow_namespaces is not None else cfg.allow.namespaces
    return RuntimeSettings(
        batch_period_s=message.batch_period_s if message.batch_period_s is not None else base.batch_period_s,
        batch_max=message.batch_max if message.batch_max is not None else base.batch_max,
        scan_window_s=message.scan_window_s if message.scan_window_s is not None else base.scan_window_s,
        allow=AllowList.build(uuids, namespaces),
        log_level=message.log_level or base.log_level,
        version=message.version,
    )


def parse_config_message(payload: bytes) -> GatewayConfigMessage:
    """A remote config payload, validated; ``ConfigError`` naming the bad field."""
    try:
        return GatewayConfigMessage.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigError("bad_config", f"{where}: {first['msg']}") from None


def _resolve(base: Path, p: Path | None) -> Path | None:
    if p is None:
        return None
    p = p.expanduser()
    return p if p.is_absolute() else base / p


def parse_gateway_config(text: str, source: str, base_dir: Path) -> GatewayFileConfig:
    """A gateway YAML document; errors name the file and the field."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("bad_yaml", f"{source}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError("bad_config", f"{source}: expected a mapping of settings")
    raw = {k: v for k, v in raw.items() if not (v is None and k in _SECTIONS)}  # `allow:` with only comments
    try:
        cfg = GatewayFileConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigError("bad_config", f"{source}: {where}: {first['msg']}") from None
    except ConfigError as exc:
        raise ConfigError(exc.reason, f"{source}: {exc.detail}") from None
    outbox = _resolve(base_dir, cfg.outbox) or base_dir / f"{cfg.gateway}.outbox.sqlite"
    scanner = cfg.scanner.model_copy(update={"file": _resolve(base_dir, cfg.scanner.file)})
    tls = cfg.tls.model_copy(update={"ca": _resolve(base_dir, cfg.tls.ca)})
    return cfg.model_copy(update={"outbox": outbox, "scanner": scanner, "tls": tls})


def load_gateway_config(path: str | Path) -> GatewayFileConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no_file", f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("no_file", f"{p}: cannot read: {exc}") from None
    return parse_gateway_config(text, str(p), p.resolve().parent)
