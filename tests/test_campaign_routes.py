"""The campaign HTTP routes with FastAPI's TestClient over a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.campaign_store import SqliteCampaignStore
from api.routes_campaigns import build_router
from campaigns import CampaignEngine
from tests.fakes.campaign_factories import SECRET, T0, enter, venue


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[TestClient, CampaignEngine, SqliteCampaignStore, Clock]]:
    store = SqliteCampaignStore(tmp_path / "instore.sqlite")
    clock = Clock(T0)
    engine = CampaignEngine(store, venue(), SECRET, now=clock())
    app = FastAPI()
    app.include_router(build_router(engine, store, clock))
    with TestClient(app) as client:
        yield client, engine, store, clock
    store.close()


CAMPAIGN: dict[str, Any] = {
    "id": "skin-spring", "brand": "lumiere", "name": "Spring skincare", "zones": ["c-skincare"],
    "trigger": {"kind": "enter"}, "offer": {"title": "15% off serums", "value": "15%"}, "status": "active",
    "holdout_pct": 0, "redeem_zones": ["checkout"], "cost_per_redemption": 5.0,
}


def test_campaign_offer_voucher_and_redemption_end_to_end(world: Any) -> None:
    client, engine, _, _ = world
    r = client.post("/v1/campaigns", json=CAMPAIGN)
    assert r.status_code == 201, r.text
    assert client.put("/v1/shoppers/dev-1/consents", json={"scope": "*", "granted": True}).status_code == 200
    [d] = engine.on_event(enter("dev-1", "c-skincare", T0 + 10), T0 + 10)
    assert d.sent and d.offer is not None
    offers = client.get("/v1/shoppers/dev-1/offers").json()
    assert [o["offer_id"] for o in offers] == [d.offer.offer_id]
    code = offers[0]["voucher"]
    png = client.get(f"/v1/vouchers/{code}/qr.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    body = {"code": code, "amount": 120.0, "store": "checkout", "staff": "staff-7"}
    r1 = client.post("/v1/redemptions", json=body, headers={"Idempotency-Key": "till-1-0001"})
    assert r1.status_code == 200, r1.text
    assert r1.json()["credit"] == {"store": 108.0, "staff": 12.0}
    r2 = client.post("/v1/redemptions", json=body, headers={"Idempotency-Key": "till-1-0001"})
    assert (r2.status_code, r2.json()) == (200, r1.json())
    r3 = client.post("/v1/redemptions", json=body, headers={"Idempotency-Key": "till-2-0001"})
    assert r3.status_code == 409 and r3.json()["error"] == "already_redeemed"
    report = client.get("/v1/campaigns/skin-spring/report").json()
    assert report["offers"]["sent"] == 1 and report["offers"]["redeemed"] == 1
    assert report["revenue"] == 120.0 and report["cost_per_redemption"] == 5.0
    assert report["by_staff"] == [{"staff": "staff-7", "redemptions": 1, "revenue": 120.0, "credited": 12.0}]
    assert client.get("/v1/shoppers/dev-1/profile").json()["spend_total"] == 120.0


def test_bad_bodies_get_422_naming_the_field(world: Any) -> None:
    client, *_ = world
    bad = dict(CAMPAIGN, holdout_pct=90)
    r = client.post("/v1/campaigns", json=bad)
    assert r.status_code == 422 and "holdout_pct" in r.text
    r = client.post("/v1/campaigns", json=dict(CAMPAIGN, zones=["nowhere"]))
    assert r.status_code == 422 and r.json()["detail"]["field"] == "zones[0]"
    r = client.post("/v1/campaigns", json=dict(CAMPAIGN, trigger={"kind": "teleport"}))
    assert r.status_code == 422 and "trigger" in r.text
    r = client.post("/v1/redemptions", json={"code": "x", "amount": -1, "store": "checkout"},
                    headers={"Idempotency-Key": "till-1-0002"})
    assert r.status_code == 422 and "amount" in r.text
