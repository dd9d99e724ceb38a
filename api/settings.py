"""The service's one typed settings object: defaults < environment (``INSTORE_*``) < CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

KNOWN_DEFAULT_SECRETS: Final = frozenset({"changeme", "change-me", "secret", "instore", "demo-secret"})
DEMO_SECRET: Final = "demo-secret"  # only ever accepted with demo=True
DEFAULT_MQTT_URL: Final = "mqtt://127.0.0.1:1883"
DEFAULT_HTTP: Final = "127.0.0.1:8080"


class SettingsError(ValueError):
    """A setting that cannot be used; the message names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INSTORE_", extra="ignore", frozen=True)

    venue: Path | None = None
    mqtt_url: str = DEFAULT_MQTT_URL
    http: str = DEFAULT_HTTP
    db: Path = Path("instore.sqlite")
    secret: SecretStr | None = None  # venue secret for voucher HMACs; generated and stored when unset
    demo: bool = False
    publish_positions: bool = True
    espresense_prefix: str = "espresense"
    theengs_prefix: str = "home"
    influx_url: str | None = None
    influx_token: SecretStr | None = None
    influx_org: str = "instore"
    influx_bucket: str = "instore"
    retention_days: int = Field(default=90, ge=1, le=3650)
    auth: bool = False  # guard brand, till and shopper routes with API keys and shopper tokens (api/auth.py)
    gateway_config: Path | None = None  # YAML/JSON published as each gateway's retained .../config message
    log_level: str = "INFO"
    mqtt_client_id: str | None = None  # default: instore-engine-<venue id> (fixed, so the broker keeps the session)
    mqtt_shared_group: str | None = None  # subscribe as $share/<group>/... to split a venue's load between workers

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"mqtt_url must look like mqtt://[user:pass@]host:port or mqtts://..., got {value!r}")
        return value

    @field_validator("http")
    @classmethod
    def _check_http(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"http must be HOST:PORT, got {value!r}")
        return value

    @model_validator(mode="after")
    def _enforce_non_default_secret(self) -> Settings:
        if (self.secret is not None and not self.demo
                and self.secret.get_secret_value().strip().lower() in KNOWN_DEFAULT_SECRETS):
            raise ValueError("secret is a known default value; set INSTORE_SECRET to a random string "
                             "(or leave it unset to have one generated)")
        return self

    @property
    def http_host(self) -> str:
        return self.http.rpartition(":")[0]

    @property
    def http_port(self) -> int:
        return int(self.http.rpartition(":")[2])


def load_settings(**overrides: Any) -> Settings:
    """Settings from defaults and the environment, overridden by the given (non-None) CLI values."""
    from pydantic import ValidationError

    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise SettingsError(f"{where}: {first['msg']}") from None
