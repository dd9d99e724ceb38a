"""The installed ``instore gateway run`` (replay scanner) against a real mosquitto: end to end, broker restart
mid-stream, ``kill -9`` of the gateway, last will, outbox-full policy. Zero loss means: every batch the gateway
committed reaches a persistent subscriber, and every advert heard while the gateway ran is in one of them."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from beacon_gateway.publisher import PahoPublisher
from beacon_gateway.wire import decode_batch
from simulations.local_broker import MosquittoBroker
from tests.conftest import instore_exe

pytestmark = pytest.mark.integration

UUID = "e2c56db5-dffb-48d2-b060-d0f5a71096e0"
PREFIX = "instore/v1/demo-mall/gw/gw-01"
WAIT_S = 30.0


def ibeacon_hex(minor: int) -> str:
    return "0215" + UUID.replace("-", "") + f"{1:04x}{minor:04x}c5"


def write_replay(path: Path, t_start: float, seconds: float, rate: float) -> list[dict[str, Any]]:
    lines = [{"t": t_start + i / rate, "rssi": -60 - i % 30, "manufacturer_data": {"76": ibeacon_hex(i % 65536)}}
             for i in range(int(seconds * rate))]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return lines


def write_config(tmp_path: Path, broker: MosquittoBroker, replay: Path, **extra: Any) -> Path:
    cfg = {"gateway": "gw-01", "venue": "demo-mall", "mqtt": broker.url, "outbox": str(tmp_path / "gw.sqlite"),
           "batch": {"period_s": 0.5, "max": 500}, "scanner": {"kind": "replay", "file": str(replay)},
           "status_period_s": 1.0, **extra}
    path = tmp_path / "gateway.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


class Collector:
    """A persistent-session QoS 1 subscriber to the gateway's topics."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.batches: dict[int, bytes] = {}
        self.duplicates = 0
        self.status: list[bytes] = []
        self.lock = threading.Lock()
        self.client = PahoPublisher(broker.url, "test-collector", reconnect_min_s=0.2, reconnect_max_s=1)
        self.client.subscribe(f"{PREFIX}/#", self._on)
        self.client.start()
        assert self.client.wait_connected(WAIT_S)
        time.sleep(0.3)  # SUBACK before the gateway starts

    def _on(self, topic: str, payload: bytes) -> None:
        with self.lock:
            if topic.endswith("/readings"):
                seq = decode_batch(payload).seq
                if seq in self.batches:
                    self.duplicates += 1
                    assert self.batches[seq] == payload, "same seq, different batch"
                self.batches[seq] = payload
            elif topic.endswith("/status"):
                self.status.append(payload)

    def readings(self) -> dict[int, float]:
        """minor -> rssi of every reading received (minors are unique per replay line here)."""
        out: dict[int, float] = {}
        with self.lock:
            for payload in self.batches.values():
                b = decode_batch(payload)
                for bid, r in zip(b.id, b.rssi, strict=True):
                    out[int(bid.rsplit("-", 1)[1])] = r
        return out

    def started_at(self) -> float:
        """When the (first) gateway process started, from its status JSON (``t - uptime_s``)."""
        with self.lock:
            docs = [json.loads(s) for s in self.status if s.startswith(b"{")]
        assert docs, "no online status seen"
        return float(docs[0]["t"] - docs[0]["uptime_s"])

    def seqs(self) -> list[int]:
        with self.lock:
            return sorted(self.batches)

    def wait(self, cond: Any, timeout_s: float = WAIT_S) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self.client.close(0.5)


@pytest.fixture
def collector(mosquitto_broker: MosquittoBroker) -> Iterator[Collector]:
    c = Collector(mosquitto_broker)
    yield c
    c.close()


_started: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def no_gateway_left_behind() -> Iterator[None]:
    """A failed assertion must not leave a gateway process waiting forever for a broker."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start_gateway(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen([instore_exe(), "gateway", "run", "--config", str(config)], stdout=out, stderr=out)
    _started.append(proc)
    return proc


def finish(proc: subprocess.Popen[bytes], log: Path, timeout_s: float = WAIT_S) -> int:
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"gateway did not finish; log:\n{log.read_text()[-3000:]}")


def assert_contiguous(seqs: list[int]) -> None:
    assert seqs, "no batch arrived"
    gaps = sorted(set(range(seqs[0], seqs[-1])) - set(seqs))
    assert not gaps, f"gaps in seq: {gaps[:20]}"


def test_end_to_end_replay_through_mosquitto(tmp_path: Path, mosquitto_broker: MosquittoBroker,
                                             collector: Collector) -> None:
    lines = write_replay(tmp_path / "a.jsonl", time.time() + 2.0, seconds=2.0, rate=100)
    config = write_config(tmp_path, mosquitto_broker, tmp_path / "a.jsonl")
    log = tmp_path / "gw.log"
    assert finish(start_gateway(config, log), log) == 0, log.read_text()
    assert collector.wait(lambda: collector.status[-1:] == [b"offline"])
    heard = {i: ln["rssi"] for i, ln in enumerate(lines) if ln["t"] >= collector.started_at() + 0.1}
    assert len(heard) > len(lines) // 2  # the gateway started well before the replay (unless the box is swamped)
    assert collector.wait(lambda: len(collector.readings()) >= len(heard))
    assert_contiguous(collector.seqs())
    got = collector.readings()
    assert {i: got[i] for i in heard} == heard and set(got) <= {i for i, _ in enumerate(lines)}
    online = [json.loads(s) for s in collector.status if s != b"offline"]
    assert online and online[-1]["state"] == "online" and online[-1]["adverts"] >= 1
    assert "6087" not in log.read_text()  # nothing MAC-like leaks (replays carry none; the log stays clean)


def test_broker_restart_mid_stream_loses_nothing(tmp_path: Path, mosquitto_broker: MosquittoBroker,
                                                 collector: Collector) -> None:
    lines = write_replay(tmp_path / "a.jsonl", time.time() + 2.0, seconds=5.0, rate=60)
    config = write_config(tmp_path, mosquitto_broker, tmp_path / "a.jsonl")
    log = tmp_path / "gw.log"
    proc = start_gateway(config, log)
    assert collector.wait(lambda: len(collector.seqs()) >= 2)
    mosquitto_broker.stop()
    time.sleep(1.5)  # the gateway goes on hearing adverts; batches wait in its outbox
    mosquitto_broker.start()
    assert finish(proc, log) == 0, log.read_text()
    heard = {i: ln["rssi"] for i, ln in enumerate(lines) if ln["t"] >= collector.started_at() + 0.1}
    assert len(heard) > len(lines) // 2
    assert collector.wait(lambda: len(collector.readings()) >= len(heard))
    assert_contiguous(collector.seqs())
    got = collector.readings()
    assert {i: got[i] for i in heard} == heard


def test_kill_9_during_outage_loses_no_committed_batch(tmp_path: Path, mosquitto_broker: MosquittoBroker,
                                                        collector: Collector) -> None:
    t_start = time.time() + 2.0
    lines = write_replay(tmp_path / "a.jsonl", t_start, seconds=7.0, rate=50)
    config = write_config(tmp_path, mosquitto_broker, tmp_path / "a.jsonl")
    log = tmp_path / "gw.log"
    first = start_gateway(config, log)
    assert collector.wait(lambda: len(collector.seqs()) >= 2)
    mosquitto_broker.stop()
    time.sleep(1.5)  # committed, unpublished batches pile up in the outbox
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = time.time()
    mosquitto_broker.start()
    second = start_gateway(config, log)
    restarted_at = time.time()
    assert finish(second, log) == 0, log.read_text()
    assert collector.wait(lambda: any(ln["t"] > lines[-1]["t"] - 0.01 for ln in [lines[m] for m in
                                                                                   collector.readings()]))
    time.sleep(0.5)
    assert_contiguous(collector.seqs())
    got = collector.readings()
    period = 0.5
    # heard and committed before the kill (all but the last open batch): delivered
    before = [i for i, ln in enumerate(lines)
              if collector.started_at() + 0.1 <= ln["t"] < killed_at - period - 1.0]
    assert before and all(i in got for i in before), sorted(set(before) - set(got))[:10]
    # heard after the restart (the replay skips what was on the air while the gateway was down): delivered
    after = [i for i, ln in enumerate(lines) if ln["t"] > restarted_at + 1.5]
    assert after and all(i in got for i in after)
    assert all(got[i] == lines[i]["rssi"] for i in got)


def test_last_will_marks_a_killed_gateway_offline(tmp_path: Path, mosquitto_broker: MosquittoBroker,
                                                  collector: Collector) -> None:
    write_replay(tmp_path / "a.jsonl", time.time() + 1.5, seconds=30.0, rate=10)
    config = write_config(tmp_path, mosquitto_broker, tmp_path / "a.jsonl")
    log = tmp_path / "gw.log"
    proc = start_gateway(config, log)
    assert collector.wait(lambda: any(s.startswith(b"{") for s in collector.status))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert collector.wait(lambda: collector.status[-1] == b"offline", 10)


def test_outbox_full_keeps_newest_batches_when_broker_returns(tmp_path: Path, mosquitto_broker: MosquittoBroker,
                                                             collector: Collector) -> None:
    lines = write_replay(tmp_path / "a.jsonl", time.time() + 1.5, seconds=1.0, rate=40)
    config = write_config(tmp_path, mosquitto_broker, tmp_path / "a.jsonl", batch={"period_s": 5, "max": 4},
                          outbox_max_batches=3)
    mosquitto_broker.stop()
    log = tmp_path / "gw.log"
    proc = start_gateway(config, log)
    time.sleep(3.5)  # replay done; 10 batches made, 7 dropped (oldest first)
    assert proc.poll() is None  # still waiting to deliver
    mosquitto_broker.start()
    assert finish(proc, log) == 0, log.read_text()
    assert collector.wait(lambda: len(collector.seqs()) == 3)
    time.sleep(0.3)
    seqs = collector.seqs()
    assert len(seqs) == 3
    assert_contiguous(seqs)
    status = [json.loads(s) for s in collector.status if s != b"offline"]
    made = status[-1]["batches"]
    assert made >= 8 and status[-1]["drops"]["outbox_full"] == made - 3
    got = sorted(collector.readings())  # the newest three batches: a suffix of the replay
    assert got == list(range(len(lines) - len(got), len(lines))) and 9 <= len(got) <= 12
