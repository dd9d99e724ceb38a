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


def test_consent_history_offer_dismissal_export_and_delete(world: Any) -> None:
    client, engine, _, clock = world
    assert client.post("/v1/campaigns", json=CAMPAIGN).status_code == 201
    client.put("/v1/shoppers/dev-2/consents", json={"scope": "lumiere", "granted": True})
    clock.t = T0 + 5
    client.put("/v1/shoppers/dev-2/consents", json={"scope": "*", "granted": False})
    consents = client.get("/v1/shoppers/dev-2/consents").json()
    assert consents["current"] == {"*": {"granted": False, "t": T0 + 5}, "lumiere": {"granted": True, "t": T0}}
    assert engine.on_event(enter("dev-2", "c-skincare", T0 + 10), T0 + 10)[0].reason == "no_consent"
    clock.t = T0 + 20
    client.put("/v1/shoppers/dev-2/consents", json={"scope": "lumiere", "granted": True})
    [d] = engine.on_event(enter("dev-2", "c-skincare", T0 + 3000), T0 + 3000)
    assert d.sent and d.offer is not None
    r = client.post(f"/v1/shoppers/dev-2/offers/{d.offer.offer_id}/dismissed")
    assert r.status_code == 200
    assert client.get("/v1/shoppers/dev-2/offers").json() == []
    assert client.post("/v1/shoppers/dev-2/offers/NOPE/opened").status_code == 404
    exported = client.get("/v1/shoppers/dev-2/campaign-data").json()
    assert len(exported["consents"]) == 3 and exported["offers"][0]["dismissed_t"] is not None
    deleted = client.delete("/v1/shoppers/dev-2/campaign-data").json()["deleted"]
    assert deleted["campaign_consents"] == 3 and deleted["campaign_offers"] == 1
    again = client.get("/v1/shoppers/dev-2/campaign-data").json()
    assert again["consents"] == [] and again["offers"] == [] and again["profile"] == []
    # The voucher of an erased shopper no longer redeems.
    r = client.post("/v1/redemptions", json={"code": d.offer.voucher, "amount": 10, "store": "checkout"},
                    headers={"Idempotency-Key": "till-9-0001"})
    assert r.status_code == 404 and r.json()["error"] == "not_issued"


def test_report_uplift_treated_vs_holdout(world: Any) -> None:
    client, engine, _, clock = world
    body = dict(CAMPAIGN, trigger={"kind": "proximity", "radius_m": 3}, holdout_pct=50)
    assert client.post("/v1/campaigns", json=body).status_code == 201
    from campaigns import in_holdout
    from tests.fakes.campaign_factories import fix

    shoppers = [f"u{i}" for i in range(40)]
    for s in shoppers:
        client.put(f"/v1/shoppers/{s}/consents", json={"scope": "*", "granted": True})
        engine.on_fixes([fix(s, T0 + 1, 11.5, 8.0)], T0 + 1)
    treated = [s for s in shoppers if not in_holdout("skin-spring", s, 50.0)]
    held = [s for s in shoppers if in_holdout("skin-spring", s, 50.0)]
    assert treated and held
    for s in treated:  # every treated shopper walks in afterwards, half the held-out ones
        engine.on_event(enter(s, "c-skincare", T0 + 60), T0 + 60)
    for s in held[: len(held) // 2]:
        engine.on_event(enter(s, "c-skincare", T0 + 60), T0 + 60)
    clock.t = T0 + 120
    client.post("/v1/purchases", json={"shopper": held[0], "store": "checkout", "amount": 30})
    report = client.get("/v1/campaigns/skin-spring/report").json()
    g = report["groups"]
    assert g["treated"] == {"shoppers": len(treated), "visit_rate": 1.0, "conversion_rate": 0.0}
    assert g["holdout"]["shoppers"] == len(held)
    assert g["holdout"]["visit_rate"] == round((len(held) // 2) / len(held), 4)
    assert g["holdout"]["conversion_rate"] == round(1 / len(held), 4)
    assert report["uplift"]["visit_rate"] == round(1.0 - (len(held) // 2) / len(held), 4)
    assert report["decisions"]["sent"] == len(treated) and report["decisions"]["holdout"] == len(held)
