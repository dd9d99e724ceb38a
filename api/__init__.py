"""The service shell: settings, CLI, MQTT ingest, pipeline, storage, HTTP API and dashboard.

Submodules are imported on use (``instore`` subcommands stay fast); the names below are the
package's public API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Engine", "EngineError", "IngestError", "Pipeline", "SqliteStore", "Store", "build_app"]

_WHERE = {
    "Engine": "api.engine",
    "EngineError": "api.errors",
    "IngestError": "api.errors",
    "Pipeline": "api.pipeline",
    "SqliteStore": "api.sqlite_store",
    "Store": "api.store",
    "build_app": "api.app",
}

if TYPE_CHECKING:
    from api.app import build_app
    from api.engine import Engine
    from api.errors import EngineError, IngestError
    from api.pipeline import Pipeline
    from api.sqlite_store import SqliteStore
    from api.store import Store


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'api' has no attribute {name!r}")
