"""Redemption against a real SQLite file: idempotent, single use, and exactly one winner among
concurrent tills (threads and separate processes)."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path
from typing import Any

import pytest

from api.campaign_store import SqliteCampaignStore
from campaigns import CampaignEngine, RedemptionOutcome, RedemptionRequest
from tests.fakes.campaign_factories import SECRET, T0, campaign, enter, opt_in, venue

TILLS = 6


def setup_offer(path: Path, shoppers: tuple[str, ...] = ("dev-1",)) -> list[str]:
    store = SqliteCampaignStore(path)
    eng = CampaignEngine(store, venue(), SECRET, now=T0)
    eng.put_campaign(campaign("skin-spring", redeem_zones=("checkout",), staff_share=0.2))
    codes = []
    for i, s in enumerate(shoppers):
        opt_in(eng, s)
        [d] = eng.on_event(enter(s, "c-skincare", T0 + i), T0 + i)
        assert d.offer is not None
        codes.append(d.offer.voucher)
    store.close()
    return codes


def redeem_once(path: str, code: str, key: str, amount: float = 50.0, store_zone: str = "checkout",
                t: float = T0 + 60, barrier: Any = None) -> tuple[int, dict[str, Any]]:
    store = SqliteCampaignStore(path)
    try:
        eng = CampaignEngine(store, venue(), SECRET, now=t)
        req = RedemptionRequest(code, key, amount, store_zone, "staff-1", t)
        checked = eng.precheck_redemption(req)
        if barrier is not None:
            barrier.wait(timeout=30)
        out = store.redeem(req, checked)
        return out.status, out.body
    finally:
        store.close()


def _process_worker(path: str, code: str, key: str, barrier: Any, results: Any) -> None:
    results.put(redeem_once(path, code, key, barrier=barrier))


def test_same_request_twice_gets_the_same_answer_and_one_redemption(tmp_path: Path) -> None:
    db = tmp_path / "instore.sqlite"
    [code] = setup_offer(db)
    first = redeem_once(str(db), code, "key-000001")
    again = redeem_once(str(db), code, "key-000001", t=T0 + 120)
    assert first[0] == 200 and again == first
    assert first[1]["credit"] == {"store": 40.0, "staff": 10.0}
    other = redeem_once(str(db), code, "key-000002")
    assert other[0] == 409 and other[1]["error"] == "already_redeemed"
    reused = redeem_once(str(db), code, "key-000001", amount=99.0)
    assert reused[0] == 422 and reused[1]["error"] == "idempotency_key_reused"
    store = SqliteCampaignStore(db)
    assert store._conn().execute("SELECT COUNT(*) FROM campaign_redemptions").fetchone()[0] == 1
    assert store.profile("dev-1").spend_total == 50.0
    store.close()


@pytest.mark.parametrize(("case", "status", "error"), [
    ("expired", 410, "expired"),
    ("wrong_store", 422, "wrong_store"),
    ("forged", 403, "forged"),
    ("malformed", 422, "malformed"),
])
def test_refusals_are_recorded_under_the_key(tmp_path: Path, case: str, status: int, error: str) -> None:
    db = tmp_path / "instore.sqlite"
    [code] = setup_offer(db)
    kw: dict[str, Any] = {}
    if case == "expired":
        kw["t"] = T0 + 2 * 86400
    elif case == "wrong_store":
        kw["store_zone"] = "c-makeup"
    elif case == "forged":
        code = code[:-1] + ("A" if code[-1] != "A" else "B")
    else:
        code = "not-a-code"
    got = redeem_once(str(db), code, "key-refused", **kw)
    assert (got[0], got[1]["error"]) == (status, error)
    assert redeem_once(str(db), code, "key-refused", **kw) == got


def test_two_tills_in_threads_exactly_one_wins(tmp_path: Path) -> None:
    db = tmp_path / "instore.sqlite"
    [code] = setup_offer(db)
    barrier = threading.Barrier(TILLS)
    results: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()

    def till(i: int) -> None:
        r = redeem_once(str(db), code, f"till-{i}-key", barrier=barrier)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=till, args=(i,)) for i in range(TILLS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    statuses = sorted(s for s, _ in results)
    assert statuses == [200] + [409] * (TILLS - 1)


def test_tills_in_separate_processes_exactly_one_wins(tmp_path: Path) -> None:
    db = tmp_path / "instore.sqlite"
    [code] = setup_offer(db)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    results = ctx.Queue()
    procs = [ctx.Process(target=_process_worker, args=(str(db), code, f"proc-{i}-key", barrier, results))
             for i in range(4)]
    for p in procs:
        p.start()
    got = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert sorted(s for s, _ in got) == [200, 409, 409, 409]
    winner = next(b for s, b in got if s == 200)
    assert all(b["redeemed_store"] == "checkout" for s, b in got if s == 409)
    assert winner["campaign"] == "skin-spring"


def test_different_codes_redeem_concurrently_without_errors(tmp_path: Path) -> None:
    db = tmp_path / "instore.sqlite"
    codes = setup_offer(db, tuple(f"dev-{i}" for i in range(8)))
    out: list[RedemptionOutcome | tuple[int, dict[str, Any]]] = []
    threads = [threading.Thread(target=lambda c=c, i=i: out.append(redeem_once(str(db), c, f"k-{i}-0000")))
               for i, c in enumerate(codes)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert sorted(r[0] for r in out if isinstance(r, tuple)) == [200] * 8
