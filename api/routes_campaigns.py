"""HTTP surface of the campaign engine: campaigns for brands, consent and offers for shoppers,
voucher QR codes, redemption at the till, attribution reports, and a shopper's export and delete.

Mount with::

    from api.campaign_store import SqliteCampaignStore
    from api.routes_campaigns import build_router
    from campaigns import CampaignEngine

    store = SqliteCampaignStore(settings.db)             # same file as the service; own tables
    engine = CampaignEngine(store, venue, secret_bytes, now=time.time())
    app.include_router(build_router(engine))              # store: engine.store; clock: time.time

Bodies are pydantic models with bounds; a bad body gets FastAPI's 422 listing each bad field, a
campaign that does not fit the venue a 422 naming the field, a voucher problem a 4xx with a stable
``error`` word (see ``campaigns.redemption.REFUSAL_STATUS``).
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.auth import principal_of
from api.campaign_store import SqliteCampaignStore
from campaigns.attribution import build_report
from campaigns.codec import campaign_from_dict, campaign_to_dict, profile_to_dict
from campaigns.engine import CampaignEngine
from campaigns.errors import CampaignError, CampaignValidationError, VoucherError
from campaigns.model import GLOBAL_SCOPE, Campaign, Consent, DailyWindow, OfferState, ShopperProfile
from campaigns.redemption import RedemptionRequest
from campaigns.validation import redeem_zones
from campaigns.vouchers import CAMPAIGN_ID_RE

Clock = Callable[[], float]
MAX_AMOUNT = 1e9  # larger than any till total; guards against typos like an amount in cents x 100
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"  # pseudonyms, zone, store and staff ids
WINDOW_PATTERN = r"^\d{2}:\d{2}-\d{2}:\d{2}$"
ShopperId = Annotated[str, Path(pattern=ID_PATTERN, description="the shopper's pseudonymous id")]
QR_BOX_PX = 8  # pixels per QR module: readable by till scanners from a phone screen
QR_BORDER = 4  # the quiet zone the QR standard asks for


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TriggerIn(_Body):
    kind: Literal["enter", "dwell", "proximity", "exit_without", "revisit"]
    dwell_s: float = Field(default=0.0, ge=0, le=86400)
    radius_m: float = Field(default=0.0, ge=0, le=50)
    without: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(default_factory=list, max_length=100)
    after_days: float = Field(default=0.0, ge=0, le=3650)


class OfferIn(_Body):
    title: str = Field(min_length=1, max_length=120)
    body: str = Field(default="", max_length=2000)
    value: str = Field(default="", max_length=60)
    image_url: str | None = Field(default=None, max_length=2000)


class ScheduleIn(_Body):
    start_date: date | None = None
    end_date: date | None = None
    weekdays: list[Annotated[int, Field(ge=0, le=6)]] = Field(default_factory=list, max_length=7)
    windows: list[Annotated[str, Field(pattern=WINDOW_PATTERN)]] = Field(default_factory=list, max_length=24)

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: list[str]) -> list[str]:
        for w in value:
            DailyWindow.parse(w)  # raises ValueError naming the bad time
        return value


class AudienceIn(_Body):
    channels: list[str] = Field(default_factory=list, max_length=50)
    home_stores: list[str] = Field(default_factory=list, max_length=500)
    min_visits: int = Field(default=0, ge=0, le=100000)
    max_visits: int | None = Field(default=None, ge=0, le=100000)
    spend_levels: list[Literal["low", "mid", "high"]] = Field(default_factory=list, max_length=3)
    segments: list[str] = Field(default_factory=list, max_length=100)
    visitor: Literal["any", "first_time", "repeat"] = "any"


class BudgetIn(_Body):
    max_vouchers: int | None = Field(default=None, ge=0, le=10**9)
    max_per_day: int | None = Field(default=None, ge=0, le=10**9)


class CapsIn(_Body):
    per_visit: int | None = Field(default=1, ge=0, le=1000)
    per_day: int | None = Field(default=1, ge=0, le=1000)
    total: int | None = Field(default=None, ge=0, le=100000)


class CampaignIn(_Body):
    id: str = Field(pattern=CAMPAIGN_ID_RE.pattern)
    brand: str = Field(min_length=1, max_length=80)
    name: str = Field(default="", max_length=200)
    zones: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(min_length=1, max_length=200)
    trigger: TriggerIn
    offer: OfferIn
    schedule: ScheduleIn = ScheduleIn()
    audience: AudienceIn = AudienceIn()
    priority: int = Field(default=0, ge=-1000, le=1000)
    budget: BudgetIn = BudgetIn()
    caps: CapsIn = CapsIn()
    status: Literal["draft", "active", "paused", "ended"] = "draft"
    holdout_pct: float = Field(default=10.0, ge=0, le=50)
    voucher_ttl_s: float = Field(default=86400.0, gt=0, le=90 * 86400)
    redeem_zones: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(default_factory=list, max_length=200)
    cost_per_offer: float = Field(default=0.0, ge=0, le=1e6)
    cost_per_redemption: float = Field(default=0.0, ge=0, le=1e6)
    staff_share: float = Field(default=0.1, ge=0, le=1)


class StatusIn(_Body):
    status: Literal["draft", "active", "paused", "ended"]


class ConsentIn(_Body):
    scope: str = Field(default=GLOBAL_SCOPE, min_length=1, max_length=80,
                       description='a brand id, or "*" for all brands')
    granted: bool
    source: str = Field(default="app", min_length=1, max_length=40)


class ProfileIn(_Body):
    channel: str = Field(default="app", min_length=1, max_length=40)
    home_store: str | None = Field(default=None, pattern=ID_PATTERN)
    segments: list[Annotated[str, Field(min_length=1, max_length=60)]] = Field(default_factory=list, max_length=100)
    quiet_hours: list[Annotated[str, Field(pattern=WINDOW_PATTERN)]] = Field(default_factory=list, max_length=4)

    @field_validator("quiet_hours")
    @classmethod
    def _windows(cls, value: list[str]) -> list[str]:
        for w in value:
            DailyWindow.parse(w)
        return value


class RedemptionIn(_Body):
    code: str = Field(min_length=1, max_length=200)
    amount: float = Field(ge=0, le=MAX_AMOUNT)
    store: str = Field(pattern=ID_PATTERN, description="zone id of the till's store or counter")
    staff: str | None = Field(default=None, pattern=ID_PATTERN)
    campaign: str | None = Field(default=None, pattern=CAMPAIGN_ID_RE.pattern)
    shopper: str | None = Field(default=None, pattern=ID_PATTERN)
    idempotency_key: str | None = Field(default=None, min_length=8, max_length=200)


class PurchaseIn(_Body):
    shopper: str = Field(pattern=ID_PATTERN)
    store: str = Field(pattern=ID_PATTERN)
    amount: float = Field(ge=0, le=MAX_AMOUNT)


def _unprocessable(exc: CampaignError) -> HTTPException:
    if isinstance(exc, CampaignValidationError):
        return HTTPException(422, {"error": "invalid_campaign", "field": exc.path, "message": exc.problem})
    return HTTPException(422, {"error": "invalid", "message": str(exc)})


def build_router(engine: CampaignEngine, store: SqliteCampaignStore | None = None,
                 clock: Clock | None = None) -> APIRouter:
    """The campaign routes, all under ``/v1``. ``store`` defaults to the engine's own store (it must be a
    ``SqliteCampaignStore``: redemption, reports and export need SQL); ``clock()`` gives UTC epoch
    seconds (default ``time.time``)."""
    if store is None:
        if not isinstance(engine.store, SqliteCampaignStore):
            raise TypeError("build_router needs a SqliteCampaignStore (pass store=...)")
        store = engine.store
    if clock is None:
        clock = time.time
    router = APIRouter(prefix="/v1", tags=["campaigns"])
    venue = engine.venue

    def find(campaign_id: str) -> Campaign:
        c = engine.campaign(campaign_id)
        if c is None:
            raise HTTPException(404, {"error": "unknown_campaign", "message": f"no campaign {campaign_id!r}"})
        return c

    def put(body: CampaignIn, created: float) -> dict[str, Any]:
        data = body.model_dump(mode="json")
        data["created_t"] = created
        try:
            c = engine.put_campaign(campaign_from_dict(data))
        except CampaignError as exc:
            raise _unprocessable(exc) from None
        return campaign_to_dict(c)

    # ---------------------------------------------------------------------------- brands

    def own_brand(request: Request, brand: str) -> None:
        who = principal_of(request)
        if who is not None and who.kind == "brand" and who.scope != brand:
            raise HTTPException(403, {"error": "forbidden", "field": "brand",
                                      "message": f"this key is for brand {who.scope!r}, not {brand!r}"})

    def own_store(request: Request, store_zone: str) -> None:
        who = principal_of(request)
        if who is not None and who.kind == "till" and who.scope != store_zone:
            raise HTTPException(403, {"error": "forbidden", "field": "store",
                                      "message": f"this till key is for {who.scope!r}, not {store_zone!r}"})

    @router.post("/campaigns", status_code=201)
    def create_campaign(body: CampaignIn, request: Request) -> dict[str, Any]:
        own_brand(request, body.brand)
        if engine.campaign(body.id) is not None:
            raise HTTPException(409, {"error": "exists", "message": f"campaign {body.id!r} exists; PUT to replace"})
        return put(body, clock())

    @router.get("/campaigns")
    def list_campaigns(request: Request, brand: str | None = None) -> list[dict[str, Any]]:
        who = principal_of(request)
        if who is not None and who.kind == "brand":
            brand = who.scope  # a brand sees its own campaigns only
        return [campaign_to_dict(c) for c in engine.campaigns() if brand is None or c.brand == brand]

    @router.get("/campaigns/{campaign_id}")
    def get_campaign(campaign_id: str) -> dict[str, Any]:
        return campaign_to_dict(find(campaign_id))

    @router.put("/campaigns/{campaign_id}")
    def replace_campaign(campaign_id: str, body: CampaignIn, request: Request) -> dict[str, Any]:
        own_brand(request, body.brand)
        if body.id != campaign_id:
            raise HTTPException(422, {"error": "invalid_campaign", "field": "id",
                                      "message": f"body id {body.id!r} differs from the path's {campaign_id!r}"})
        old = engine.campaign(campaign_id)
        return put(body, clock() if old is None else old.created_t)

    @router.post("/campaigns/{campaign_id}/status")
    def set_status(campaign_id: str, body: StatusIn) -> dict[str, Any]:
        data = campaign_to_dict(find(campaign_id))
        data["status"] = body.status
        return put(CampaignIn.model_validate({k: v for k, v in data.items() if k != "created_t"}),
                   float(data["created_t"]))

    @router.get("/campaigns/{campaign_id}/report")
    def report(campaign_id: str) -> dict[str, Any]:
        c = find(campaign_id)
        report: dict[str, Any] = _clean(build_report(c, store.campaign_counts(c.id, sorted(redeem_zones(venue, c)))))
        return report

    # ---------------------------------------------------------------------------- shoppers

    @router.put("/shoppers/{shopper}/consents")
    def set_consent(shopper: ShopperId, body: ConsentIn, request: Request) -> dict[str, Any]:
        consent = Consent(shopper, body.scope, body.granted, clock(), body.source)
        keys = getattr(request.app.state, "keys", None)
        token = None
        if keys is not None and principal_of(request) is None:  # guarded app, first consent of this device
            token = keys.issue_shopper_token(shopper)
            if token is None:
                raise HTTPException(401, {"error": "unauthenticated", "message": "this device already has a token"})
        engine.set_consent(consent)
        out: dict[str, Any] = {"shopper": shopper, "scope": consent.scope, "granted": consent.granted, "t": consent.t}
        if token is not None:
            out["token"] = token  # shown once: the app keeps it for this device's routes
        return out

    @router.get("/shoppers/{shopper}/consents")
    def get_consents(shopper: ShopperId) -> dict[str, Any]:
        history = store.consent_history(shopper)
        latest: dict[str, Consent] = {}
        for c in history:
            latest[c.scope] = c
        return {"shopper": shopper,
                "current": {s: {"granted": c.granted, "t": c.t} for s, c in sorted(latest.items())},
                "history": [{"scope": c.scope, "granted": c.granted, "t": c.t, "source": c.source} for c in history]}

    @router.get("/shoppers/{shopper}/profile")
    def get_profile(shopper: ShopperId) -> dict[str, Any]:
        return profile_to_dict(engine.profile(shopper, clock()))

    @router.put("/shoppers/{shopper}/profile")
    def set_profile(shopper: ShopperId, body: ProfileIn) -> dict[str, Any]:
        if body.home_store is not None and body.home_store not in {z.id for z in venue.zones}:
            raise HTTPException(422, {"error": "invalid", "field": "home_store",
                                      "message": f"unknown zone {body.home_store!r}"})
        engine.set_profile(ShopperProfile(shopper, channel=body.channel, home_store=body.home_store,
                                          segments=tuple(body.segments),
                                          quiet_hours=tuple(DailyWindow.parse(w) for w in body.quiet_hours)))
        return profile_to_dict(engine.profile(shopper, clock()))

    @router.get("/shoppers/{shopper}/offers")
    def get_offers(shopper: ShopperId, all: bool = False) -> list[dict[str, Any]]:
        return store.offers(shopper, clock(), include_closed=all)

    @router.post("/shoppers/{shopper}/offers/{offer_id}/{action}")
    def offer_action(shopper: ShopperId, offer_id: str, action: Literal["delivered", "opened", "dismissed"]
                     ) -> dict[str, Any]:
        state: OfferState = action
        t = clock()
        try:
            engine.offer_state(shopper, offer_id, state, t)
        except CampaignError as exc:
            raise HTTPException(404, {"error": "unknown_offer", "message": str(exc)}) from None
        return {"shopper": shopper, "offer_id": offer_id, "state": action, "t": t}

    @router.get("/shoppers/{shopper}/campaign-data")
    def export_data(shopper: ShopperId) -> dict[str, Any]:
        return store.export_shopper(shopper)

    @router.delete("/shoppers/{shopper}/campaign-data")
    def delete_data(shopper: ShopperId) -> dict[str, Any]:
        counts = store.delete_shopper(shopper)
        engine.forget(shopper)
        return {"shopper": shopper, "deleted": counts}

    # ---------------------------------------------------------------------------- vouchers and tills

    @router.get("/vouchers/{code}")
    def check_voucher(code: str) -> dict[str, Any]:
        try:
            claims = engine.verify_code(code, clock())
        except VoucherError as exc:
            raise HTTPException(_voucher_status(exc.reason), {"error": exc.reason, "message": exc.detail}) from None
        return {"code": claims.code, "campaign": claims.campaign, "offer_id": claims.offer_id,
                "expires": claims.expires, "valid": True}

    @router.get("/vouchers/{code}/qr.png", response_class=Response,
                responses={200: {"content": {"image/png": {}}}})
    def voucher_qr(code: str) -> Response:
        try:
            claims = engine.verify_code(code, -math.inf)  # expired codes still render; the till refuses them
        except VoucherError as exc:
            raise HTTPException(_voucher_status(exc.reason), {"error": exc.reason, "message": exc.detail}) from None
        return Response(qr_png(claims.code), media_type="image/png")

    @router.post("/redemptions")
    def redeem(body: RedemptionIn, response: Response, request: Request,
               idempotency_key: Annotated[str | None, Header(min_length=8, max_length=200)] = None
               ) -> dict[str, Any]:
        key = idempotency_key or body.idempotency_key
        if key is None:
            raise HTTPException(422, {"error": "missing_idempotency_key", "field": "Idempotency-Key",
                                      "message": "send an Idempotency-Key header (or idempotency_key in the body) "
                                                 "so a retried request cannot redeem twice"})
        if body.store not in {z.id for z in venue.zones}:
            raise HTTPException(422, {"error": "invalid", "field": "store", "message": f"unknown zone {body.store!r}"})
        own_store(request, body.store)
        till = RedemptionRequest(body.code, key, body.amount, body.store, body.staff, clock(), body.campaign,
                                 body.shopper)
        outcome = store.redeem(till, engine.precheck_redemption(till))
        if outcome.ok and not outcome.replayed:
            engine.note_redemption(str(outcome.body["shopper"]), str(outcome.body["offer_id"]), body.amount,
                                   till.t)
        response.status_code = outcome.status
        body_out = dict(outcome.body)
        body_out.pop("shopper", None)  # the till has no business knowing the pseudonym
        return body_out

    @router.post("/purchases", status_code=201)
    def purchase(body: PurchaseIn, request: Request) -> dict[str, Any]:
        """A till sale by a known shopper without a voucher: measures conversion of held-out shoppers."""
        if body.store not in {z.id for z in venue.zones}:
            raise HTTPException(422, {"error": "invalid", "field": "store", "message": f"unknown zone {body.store!r}"})
        own_store(request, body.store)
        t = clock()
        store.record_purchase(body.shopper, body.store, body.amount, t)
        return {"shopper": body.shopper, "store": body.store, "amount": body.amount, "t": t}

    return router


def _voucher_status(reason: str) -> int:
    from campaigns.redemption import REFUSAL_STATUS

    return REFUSAL_STATUS.get(reason, 422)


def qr_png(text: str) -> bytes:
    import qrcode
    import qrcode.constants

    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=QR_BOX_PX, border=QR_BORDER)
    qr.add_data(text)
    qr.make(fit=True)
    buf = io.BytesIO()
    qr.make_image().save(buf, format="PNG")
    return buf.getvalue()


def _clean(value: Any) -> Any:
    """Round floats in a report for JSON (rates to 4 decimals)."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value
