"""The HTTP API and the live dashboard (FastAPI).

Routes (all JSON unless said): ``GET /healthz`` (200 once the MQTT ingest is subscribed, else 503),
``GET /`` (dashboard page), ``GET /v1/venue``, ``GET /v1/positions``, ``GET /v1/occupancy``,
``GET /v1/gateways``, ``GET /v1/events/recent``, ``GET /v1/stream`` (Server-Sent Events: one
frame per commit, at most ``1/SSE_PERIOD_S`` per second), ``GET /v1/metrics`` (JSON) and
``GET /metrics`` (Prometheus text), ``POST /v1/scans`` (phone mode), ``GET /v1/sessions``,
``GET /v1/flows``, ``GET /v1/shoppers/{device}/export``, ``DELETE /v1/shoppers/{device}``; plus the
campaign routes (``api.routes_campaigns``) and shopper navigation (``api.routes_navigation``).
"""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.const import SCAN_MAX_READINGS, SSE_KEEPALIVE_S, SSE_PERIOD_S
from api.live_view import fix_dict
from api.venue_json import venue_geometry

if TYPE_CHECKING:
    from api.engine import Engine


class ScanReading(BaseModel):
    model_config = ConfigDict(extra="ignore")
    beacon: str = Field(min_length=1, max_length=128)
    rssi: float = Field(ge=-130, le=0, allow_inf_nan=False)
    tx_power: float | None = Field(default=None, ge=-127, le=20, allow_inf_nan=False)


class ScanBody(BaseModel):
    """``POST /v1/scans``: one ranging scan of the shopper app (phone mode)."""

    model_config = ConfigDict(extra="ignore")
    device: str = Field(min_length=1, max_length=128, description="the app's pseudonym")
    scan: str | int = Field(description="scan id")
    t: float = Field(gt=0, allow_inf_nan=False, description="UTC epoch seconds")
    readings: list[ScanReading] = Field(min_length=1, max_length=SCAN_MAX_READINGS)


def _dashboard_html() -> str:
    return resources.files("api").joinpath("dashboard/index.html").read_text(encoding="utf-8")


def build_app(engine: Engine) -> FastAPI:
    app = FastAPI(title="instore engine", version="1", docs_url="/docs", redoc_url=None)
    geometry = venue_geometry(engine.venue)
    page = _dashboard_html()
    app.state.engine = engine

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        ok = engine.healthy
        body = {"ok": ok, "subscribed": engine.ingest.subscribed.is_set(), "failure": engine.failure}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/", response_class=HTMLResponse)
    def dashboard() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/v1/venue")
    def venue() -> dict[str, Any]:
        return geometry

    @app.get("/v1/positions")
    def positions(floor: str | None = None) -> dict[str, Any]:
        v = engine.live.view
        fixes = [fix_dict(f) for f in v.positions if floor is None or f.floor == floor]
        return {"t": v.watermark, "count": len(fixes), "positions": fixes}

    @app.get("/v1/occupancy")
    def occupancy() -> dict[str, Any]:
        v = engine.live.view
        zones = [{"zone": z.id, "name": z.name, "kind": z.kind, "floor": z.floor, "devices": v.occupancy.get(z.id, 0)}
                 for z in engine.venue.zones]
        floors: dict[str, int] = {}
        for f in v.positions:
            if f.floor is not None:
                floors[f.floor] = floors.get(f.floor, 0) + 1
        return {"t": v.watermark, "zones": zones, "devices_by_floor": floors, "devices": len(v.positions)}

    @app.get("/v1/gateways")
    def gateways() -> dict[str, Any]:
        gws = list(engine.live.view.gateways) or [
            {"id": g.id, "state": g.state, "reason": g.reason, "last_seen": g.last_seen, "readings": g.readings,
             "health": dict(g.health)} for g in engine.store.gateways()]
        now = time.time()
        for g in gws:
            g["silence_s"] = None if g["last_seen"] is None else round(now - g["last_seen"], 1)
        counts = {s: sum(g["state"] == s for g in gws) for s in ("up", "down", "unknown")}
        return {"counts": counts, "gateways": gws}

    @app.get("/v1/events/recent")
    def recent_events(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> dict[str, Any]:
        return {"events": list(engine.live.view.events)[-limit:]}

    @app.get("/v1/stream")
    async def stream(request: Request) -> StreamingResponse:
        async def frames() -> AsyncIterator[bytes]:
            sent = -1
            idle = 0.0
            yield b"retry: 2000\n\n"
            while not await request.is_disconnected():
                v = engine.live.view
                if v.version != sent:
                    sent = v.version
                    idle = 0.0
                    yield b"event: frame\ndata: " + v.frame + b"\n\n"
                else:
                    idle += SSE_PERIOD_S
                    if idle >= SSE_KEEPALIVE_S:
                        idle = 0.0
                        yield b": keepalive\n\n"
                await asyncio.sleep(SSE_PERIOD_S)

        return StreamingResponse(frames(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/v1/metrics")
    def metrics() -> dict[str, Any]:
        return engine.metrics()

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(prometheus_text(engine.metrics()), media_type="text/plain; version=0.0.4")

    @app.post("/v1/scans", status_code=202)
    def post_scan(body: ScanBody) -> dict[str, Any]:
        try:
            device = engine.submit_scan(body.device, str(body.scan), body.t, [r.beacon.strip().lower()
                                                                               for r in body.readings],
                                        [r.rssi for r in body.readings], [r.tx_power for r in body.readings])
        except queue.Full:
            raise HTTPException(503, "engine is overloaded; retry shortly") from None
        return {"device": device, "accepted": len(body.readings)}

    @app.get("/v1/sessions")
    def sessions(device: str | None = None, since: float | None = None,
                 limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> dict[str, Any]:
        rows = engine.store.sessions(device, since, limit)
        return {"sessions": [{"device": s.device, "zone": s.zone, "floor": s.floor, "start": s.start, "end": s.end,
                              "dwell_s": None if s.end is None else round(s.end - s.start, 3)} for s in rows]}

    @app.get("/v1/flows")
    def flows(since: float = 0.0) -> dict[str, Any]:
        return {"flows": [{"hour": f.hour, "from": f.src, "to": f.dst, "n": f.n} for f in engine.store.flows(since)]}

    @app.get("/v1/shoppers/{device}/export")
    def export(device: str) -> dict[str, Any]:
        """Everything kept about a shopper (engine data; campaign data under ``campaigns``)."""
        data = engine.store.export_device(device)
        if engine.campaign_store is not None:
            data["campaigns"] = engine.campaign_store.export_shopper(device)
        if not data["device_record"] and not data["zone_sessions"]:
            raise HTTPException(404, f"no data for device {device!r}")
        return data

    @app.delete("/v1/shoppers/{device}")
    def delete(device: str) -> dict[str, Any]:
        """Forget a shopper: positions, visits, sessions, events, and their campaign data."""
        deleted = {"engine": engine.store.delete_device(device)}
        keys = getattr(app.state, "keys", None)
        if keys is not None:
            keys.forget_shopper(device)  # a new consent issues a new token
        if engine.campaign_store is not None:
            deleted["campaigns"] = sum(engine.campaign_store.delete_shopper(device).values())
            engine.campaigns.forget(device)
        return {"device": device, "deleted_rows": deleted}

    @app.exception_handler(ValueError)
    async def value_error(request: Request, exc: ValueError) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    _mount_optional_routers(app, engine)
    if engine.settings.auth:
        from api.auth import KeyStore, install

        def campaign_brand(campaign_id: str) -> str | None:
            c = engine.campaigns.campaign(campaign_id) if engine.campaigns is not None else None
            return None if c is None else str(c.brand)

        install(app, KeyStore(engine.settings.db), campaign_brand)
    return app


def _mount_optional_routers(app: FastAPI, engine: Engine) -> None:
    """Routers owned by other parts (campaigns, navigation), mounted when they are installed."""
    import importlib.util

    if importlib.util.find_spec("api.routes_campaigns") is not None:
        routes_campaigns = importlib.import_module("api.routes_campaigns")
        build = getattr(routes_campaigns, "build_router", None)
        if build is not None and engine.campaigns is not None:
            app.include_router(build(engine.campaigns, engine.campaign_store, time.time))
    _mount_navigation(app, engine)


def _mount_navigation(app: FastAPI, engine: Engine) -> None:
    """Shopper navigation: the venue's walkable graph is built here, once per venue (cached)."""
    from api.routes_navigation import build_router
    from api.wayfinding import wayfinder_for

    campaigns = engine.campaigns
    store = engine.campaign_store

    def latest(device: str) -> Any:
        return engine.live.view.by_device.get(device)

    def campaign_zones(campaign_id: str) -> tuple[str, ...]:
        c = campaigns.campaign(campaign_id) if campaigns is not None else None
        return tuple(c.zones) if c is not None else ()

    offers = (lambda shopper, now: store.offers(shopper, now)) if store is not None else None
    app.include_router(build_router(wayfinder_for(engine.venue), latest, offers, campaign_zones, time.time))


def prometheus_text(m: dict[str, Any]) -> str:
    p = m["pipeline"]
    lines = [
        "# TYPE instore_messages_total counter", f"instore_messages_total {p['messages']}",
        "# TYPE instore_readings_applied_total counter", f"instore_readings_applied_total {p['readings_applied']}",
        "# TYPE instore_duplicates_total counter", f"instore_duplicates_total {p['duplicates']}",
        "# TYPE instore_fixes_total counter", f"instore_fixes_total {p['fixes']}",
        "# TYPE instore_commits_total counter", f"instore_commits_total {p['commits']}",
        "# TYPE instore_ingest_errors_total counter",
    ]
    lines += [f'instore_ingest_errors_total{{reason="{r}"}} {n}' for r, n in sorted(p["errors"].items())]
    lines.append("# TYPE instore_dropped_readings_total counter")
    lines += [f'instore_dropped_readings_total{{reason="{r}"}} {n}' for r, n in sorted(p["dropped_readings"].items())]
    lines.append("# TYPE instore_events_total counter")
    lines += [f'instore_events_total{{type="{r}"}} {n}' for r, n in sorted(p["events"].items())]
    lines += ["# TYPE instore_queue_size gauge", f"instore_queue_size {m['queue']['size']}",
              "# TYPE instore_devices_live gauge", f"instore_devices_live {m['devices_live']}",
              "# TYPE instore_mqtt_connected gauge", f"instore_mqtt_connected {int(m['mqtt']['connected'])}"]
    lat = m["latency"]
    if lat.get("p99_ms") is not None:
        lines += ["# TYPE instore_latency_p99_ms gauge", f"instore_latency_p99_ms {lat['p99_ms']}"]
    return "\n".join(lines) + "\n"
