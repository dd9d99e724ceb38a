"""Authentication of brand, till and shopper routes: keys stored hashed in the SQLite file, brand keys
limited to their brand's campaigns, till keys to their store, shopper tokens (issued at the first
consent) to their device; the CLI creates, lists and revokes keys."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.auth import KeyStore, install
from api.campaign_store import SqliteCampaignStore
from api.cli import main
from api.routes_campaigns import build_router
from campaigns import CampaignEngine
from tests.fakes.campaign_factories import SECRET, T0, enter, venue

CAMPAIGN: dict[str, Any] = {
    "id": "skin-spring", "brand": "lumiere", "zones": ["c-skincare"], "trigger": {"kind": "enter"},
    "offer": {"title": "15% off serums", "value": "15%"}, "status": "active", "holdout_pct": 0,
    "redeem_zones": ["checkout"],
}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[TestClient, CampaignEngine, KeyStore, Path]]:
    db = tmp_path / "instore.sqlite"
    store = SqliteCampaignStore(db)
    engine = CampaignEngine(store, venue(), SECRET, now=T0)
    keys = KeyStore(db)
    app = FastAPI()
    app.include_router(build_router(engine, store, lambda: T0 + 20))
    install(app, keys, lambda cid: (c.brand if (c := engine.campaign(cid)) is not None else None))
    with TestClient(app) as client:
        yield client, engine, keys, db
    keys.close()
    store.close()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_brand_keys_see_and_change_only_their_own_campaigns(world: Any) -> None:
    client, _, keys, db = world
    _, lumiere = keys.create_key("brand", "lumiere")
    _, aura = keys.create_key("brand", "aura")
    _, admin = keys.create_key("admin")
    assert client.post("/v1/campaigns", json=CAMPAIGN).status_code == 401
    assert client.post("/v1/campaigns", json=CAMPAIGN, headers=_auth("isk_brand_forged")).status_code == 401
    r = client.post("/v1/campaigns", json=CAMPAIGN, headers=_auth(aura))
    assert r.status_code == 403 and r.json()["detail"]["field"] == "brand"
    assert client.post("/v1/campaigns", json=CAMPAIGN, headers=_auth(lumiere)).status_code == 201
    assert client.get("/v1/campaigns/skin-spring/report", headers=_auth(aura)).status_code == 403
    assert client.get("/v1/campaigns/skin-spring/report", headers=_auth(lumiere)).status_code == 200
    assert client.get("/v1/campaigns", headers=_auth(aura)).json() == []
    assert [c["id"] for c in client.get("/v1/campaigns", headers=_auth(admin)).json()] == ["skin-spring"]
    r = client.post("/v1/campaigns/skin-spring/status", json={"status": "paused"}, headers=_auth(aura))
    assert r.status_code == 403
    # Only hashes are stored.
    with sqlite3.connect(db) as c:
        stored = [r[0] for r in c.execute("SELECT hash FROM auth_keys")]
    assert len(stored) == 3 and not any(t in json.dumps(stored) for t in (lumiere, aura, admin))


def test_shopper_token_is_issued_at_first_consent_and_scopes_the_device(world: Any) -> None:
    client, engine, keys, _ = world
    _, brand = keys.create_key("brand", "lumiere")
    assert client.post("/v1/campaigns", json=CAMPAIGN, headers=_auth(brand)).status_code == 201
    first = client.put("/v1/shoppers/dev-1/consents", json={"scope": "*", "granted": True})
    assert first.status_code == 200
    token = first.json()["token"]
    # Now the device's routes need its token; another device's token does not do.
    assert client.get("/v1/shoppers/dev-1/offers").status_code == 401
    assert client.put("/v1/shoppers/dev-1/consents", json={"granted": False}).status_code == 401
    other = client.put("/v1/shoppers/dev-2/consents", json={"granted": True}).json()["token"]
    assert client.get("/v1/shoppers/dev-1/offers", headers=_auth(other)).status_code == 403
    [d] = engine.on_event(enter("dev-1", "c-skincare", T0 + 10), T0 + 10)
    offers = client.get("/v1/shoppers/dev-1/offers", headers=_auth(token)).json()
    assert [o["offer_id"] for o in offers] == [d.offer.offer_id if d.offer else None]
    again = client.put("/v1/shoppers/dev-1/consents", json={"granted": False}, headers=_auth(token))
    assert again.status_code == 200 and "token" not in again.json()


def test_till_keys_redeem_only_at_their_store(world: Any) -> None:
    client, engine, keys, _ = world
    _, brand = keys.create_key("brand", "lumiere")
    _, till = keys.create_key("till", "checkout")
    _, elsewhere = keys.create_key("till", "c-makeup")
    client.post("/v1/campaigns", json=CAMPAIGN, headers=_auth(brand))
    client.put("/v1/shoppers/dev-1/consents", json={"granted": True})
    [d] = engine.on_event(enter("dev-1", "c-skincare", T0 + 10), T0 + 10)
    assert d.offer is not None
    body = {"code": d.offer.voucher, "amount": 50.0, "store": "checkout"}
    head = {"Idempotency-Key": "till-1-000001"}
    assert client.post("/v1/redemptions", json=body, headers=head).status_code == 401
    assert client.post("/v1/redemptions", json=body, headers={**head, **_auth(brand)}).status_code == 403
    r = client.post("/v1/redemptions", json=body, headers={**head, **_auth(elsewhere)})
    assert r.status_code == 403 and r.json()["detail"]["field"] == "store"
    assert client.get(f"/v1/vouchers/{d.offer.voucher}", headers=_auth(till)).status_code == 200
    assert client.get(f"/v1/vouchers/{d.offer.voucher}/qr.png").status_code == 200  # the shopper's screen
    assert client.post("/v1/redemptions", json=body, headers={**head, **_auth(till)}).status_code == 200
    keys.revoke(keys.list_keys()[1]["id"])
    assert client.post("/v1/purchases", json={"shopper": "dev-1", "store": "checkout", "amount": 5.0},
                       headers=_auth(till)).status_code == 401


def test_keys_command_creates_lists_and_revokes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "k.sqlite")
    assert main(["keys", "create", "--kind", "till", "--scope", "checkout", "--db", db]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["token"].startswith("isk_till_")
    assert main(["keys", "list", "--db", db]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert listed[0]["id"] == created["id"] and "token" not in listed[0]
    assert main(["keys", "revoke", created["id"], "--db", db]) == 0
    with pytest.raises(SystemExit) as exc:
        main(["keys", "create", "--kind", "brand", "--db", db])
    assert exc.value.code == 2
    assert "scope" in capsys.readouterr().err


def test_service_app_guards_routes_when_auth_is_on(tmp_path: Path) -> None:
    from api.app import build_app
    from api.engine import Engine
    from api.settings import load_settings
    from positioning.venue import parse_venue
    from tests.conftest import CORNER_STORE

    corner = parse_venue(CORNER_STORE.read_text(encoding="utf-8"), str(CORNER_STORE))
    e = Engine(load_settings(db=tmp_path / "s.sqlite", auth=True), corner)
    try:
        with TestClient(build_app(e)) as client:
            assert client.get("/v1/campaigns").status_code == 401
            assert client.get("/v1/shoppers/d-1/whereami").status_code == 401
            assert client.get("/v1/venue").status_code == 200  # operator routes stay open
            ks = KeyStore(tmp_path / "s.sqlite")
            _, admin = ks.create_key("admin")
            ks.close()
            assert client.get("/v1/campaigns", headers=_auth(admin)).status_code == 200
    finally:
        e.store.close()
        e.campaign_store.close()
