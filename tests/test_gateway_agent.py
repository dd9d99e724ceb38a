"""The gateway agent with fake ports: replay -> batches -> outbox -> publisher; drops, remote config, outbox bound;
and the bleak scanner through a custom bleak backend (passive/active fallback, watchdog restart, no MAC)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from beacon_gateway.agent import GatewayAgent
from beacon_gateway.config import GatewayFileConfig, load_gateway_config
from beacon_gateway.errors import ConfigError
from beacon_gateway.outbox import Outbox
from beacon_gateway.scanner import BLUEZ_PASSIVE_PATTERNS, BleakAdvertScanner, ReplayScanner
from beacon_gateway.wire import decode_batch
from tests.fakes.gateway import FakePublisher, advertisement, make_fake_bleak_backend

UUID_A = "e2c56db5-dffb-48d2-b060-d0f5a71096e0"
UUID_B = "11111111-2222-3333-4444-555555555555"
EDDY = "0000feaa-0000-1000-8000-00805f9b34fb"
RUN_TIMEOUT_S = 20.0


def ibeacon_hex(uuid: str = UUID_A, major: int = 1, minor: int = 2, power: int = -59) -> str:
    return "0215" + uuid.replace("-", "") + f"{major:04x}{minor:04x}{power & 0xFF:02x}"


def make_cfg(tmp_path: Path, **over: Any) -> GatewayFileConfig:
    base: dict[str, Any] = {"gateway": "gw-01", "venue": "demo-mall", "outbox": tmp_path / "outbox.sqlite",
                            "batch": {"period_s": 0.2, "max": 500}, "status_period_s": 0.5}
    base.update(over)
    return GatewayFileConfig.model_validate(base)


def write_replay(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def beacon_lines(t_start: float, n: int, step: float = 0.01) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        kind = i % 5
        line: dict[str, Any] = {"t": t_start + i * step, "rssi": -60 - (i % 30)}
        if kind in (0, 1):
            line["manufacturer_data"] = {"76": ibeacon_hex(minor=i)}
        elif kind == 2:
            line["service_data"] = {EDDY: "00e8" + "00112233445566778899" + f"{i:012x}"}
        elif kind == 3:
            line["manufacturer_data"] = {"76": "1005011c"}  # a phone's Apple "nearby" frame: not a beacon
        else:
            line["manufacturer_data"] = {"76": "0215abcd"}  # truncated iBeacon: malformed
        out.append(line)
    return out


def readings_of(pub: FakePublisher) -> tuple[list[int], list[tuple[float, str, float]]]:
    seqs, readings = [], []
    for p in pub.on("/readings"):
        b = decode_batch(p.payload)
        seqs.append(b.seq)
        readings += [(b.t0 + dt, i, r) for dt, i, r in zip(b.dt, b.id, b.rssi, strict=True)]
    return seqs, readings


def quick_lines(now: float, n: int) -> list[dict[str, Any]]:
    return [{"t": now + 0.2 + i * 0.002, "rssi": -70, "manufacturer_data": {"76": ibeacon_hex(minor=i)}}
            for i in range(n)]


async def run_agent(agent: GatewayAgent, stop: asyncio.Event | None = None) -> int:
    return await asyncio.wait_for(agent.run(stop or asyncio.Event()), RUN_TIMEOUT_S)


def test_replay_to_batches_end_to_end(tmp_path: Path) -> None:
    now = time.time()
    lines: list[dict[str, Any]] = [  # the first was on the air before the gateway started
        {"t": now - 5, "rssi": -70, "manufacturer_data": {"76": ibeacon_hex(minor=9999)}}]
    lines += beacon_lines(now + 0.3, 100)
    lines.insert(5, {"t": now + 0.31, "rssi": -70, "manufacturer_data": {"76": "zz"}})  # garbage line
    replay = write_replay(tmp_path / "adverts.jsonl", lines)
    cfg = make_cfg(tmp_path, scanner={"kind": "replay", "file": replay})
    pub = FakePublisher()
    outbox = Outbox(cfg.outbox or "", max_batches=100, max_bytes=10**7)
    scanner = ReplayScanner(replay)
    agent = GatewayAgent(cfg, scanner, pub, outbox)
    assert asyncio.run(run_agent(agent)) == 0
    assert agent.exit_reason == "replay done, outbox empty"

    seqs, readings = readings_of(pub)
    assert len(seqs) >= 3  # ~1 s of adverts in 0.2 s batches
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    expected = [ln for ln in lines[1:] if ln["manufacturer_data" if "manufacturer_data" in ln else "service_data"]
                and (("76" in ln.get("manufacturer_data", {}) and ln["manufacturer_data"]["76"].startswith("0215")
                      and len(ln["manufacturer_data"]["76"]) > 10) or "service_data" in ln)]
    assert len(readings) == len(expected) == 60
    for (t, bid, rssi), line in zip(readings, expected, strict=True):
        assert abs(t - line["t"]) < 1e-3 and rssi == line["rssi"]
        assert bid.startswith("ibeacon:") == ("manufacturer_data" in line)
    assert scanner.skipped == 1
    assert agent.health.drops == {"not_beacon": 20, "malformed": 20, "bad_replay_line": 1}
    assert outbox.depth == 0 and agent.health.batches_acked == len(seqs)
    statuses = pub.on("/status")
    assert statuses and all(p.retain for p in statuses)
    assert statuses[-1].payload == b"offline"
    online = json.loads(statuses[-2].payload)
    assert online["state"] == "online" and online["gw"] == "gw-01" and online["scanner"] == "replay"
    assert pub.closed


def test_outbox_full_drops_oldest_and_counts_then_delivers_newest(tmp_path: Path) -> None:
    now = time.time()
    replay = write_replay(tmp_path / "a.jsonl", quick_lines(now, 40))
    cfg = make_cfg(tmp_path, batch={"period_s": 5, "max": 4}, scanner={"kind": "replay", "file": replay})
    offline = FakePublisher(is_connected=False)
    outbox = Outbox(tmp_path / "ob.sqlite", max_batches=3, max_bytes=10**7)
    first_seq = outbox.next_seq
    scanner = ReplayScanner(replay)
    agent = GatewayAgent(cfg, scanner, offline, outbox, shutdown_grace_s=0.1)

    async def run_until_replayed() -> int:
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        while not scanner.done:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        stop.set()
        return await asyncio.wait_for(task, RUN_TIMEOUT_S)

    assert asyncio.run(run_until_replayed()) == 0
    assert agent.health.batches == 10 and outbox.depth == 3 and outbox.dropped == 7
    assert [s for s, _ in outbox.pending()] == [first_seq + 7, first_seq + 8, first_seq + 9]
    assert agent.status()["drops"] == {"outbox_full": 7}
    assert not offline.on("/readings")
    outbox.close()

    # the broker is back: a restarted gateway delivers exactly the three newest batches
    reopened = Outbox(tmp_path / "ob.sqlite", max_batches=3, max_bytes=10**7)
    assert reopened.dropped == 7 and reopened.next_seq == first_seq + 10
    empty = write_replay(tmp_path / "empty.jsonl", [])
    pub = FakePublisher()
    agent2 = GatewayAgent(cfg, ReplayScanner(empty), pub, reopened)
    assert asyncio.run(run_agent(agent2)) == 0
    seqs, readings = readings_of(pub)
    assert seqs == [first_seq + 7, first_seq + 8, first_seq + 9]
    assert [int(bid.rsplit("-", 1)[1]) for _, bid, _ in readings] == list(range(28, 40))
    assert reopened.depth == 0


def test_unacked_batches_stay_in_the_outbox_and_inflight_is_bounded(tmp_path: Path) -> None:
    now = time.time()
    replay = write_replay(tmp_path / "a.jsonl", quick_lines(now, 40))
    cfg = make_cfg(tmp_path, batch={"period_s": 5, "max": 2}, inflight=4, scanner={"kind": "replay", "file": replay})
    pub = FakePublisher(auto_ack=False)
    outbox = Outbox(tmp_path / "ob.sqlite", max_batches=1000, max_bytes=10**7)
    scanner = ReplayScanner(replay)
    agent = GatewayAgent(cfg, scanner, pub, outbox, shutdown_grace_s=0.1)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        while not scanner.done:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        assert len(pub.on("/readings")) == 4  # the in-flight window
        assert outbox.depth == 20
        while pub.ack_all():
            await asyncio.sleep(0.1)
        await asyncio.wait_for(task, RUN_TIMEOUT_S)

    asyncio.run(scenario())
    seqs, readings = readings_of(pub)
    assert len(seqs) == 20 and len(set(seqs)) == 20 and len(readings) == 40
    assert outbox.depth == 0


@pytest.fixture
def keep_root_log_level() -> Iterator[None]:
    level = logging.getLogger().level
    yield
    logging.getLogger().setLevel(level)


@pytest.mark.usefixtures("keep_root_log_level")
def test_remote_config_applied_without_restart_and_echoed(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    pub = FakePublisher()
    outbox = Outbox(tmp_path / "ob.sqlite", max_batches=100, max_bytes=10**7)
    agent = GatewayAgent(cfg, ReplayScanner(write_replay(tmp_path / "e.jsonl", [])), pub, outbox)
    topic = "instore/v1/demo-mall/gw/gw-01/config"
    now = time.time()

    def hear(uuid: str, minor: int) -> None:
        agent.advert(now, {0x004C: bytes.fromhex(ibeacon_hex(uuid, minor=minor))}, {}, -70)

    hear(UUID_B, 1)
    assert agent.health.readings == 1
    assert agent.apply_config(json.dumps({"version": 7, "batch_period_s": 2.5, "batch_max": 50,
                                          "allow_uuids": [UUID_A.upper()], "log_level": "DEBUG"}).encode())
    assert (agent.batcher.period_s, agent.batcher.max_readings) == (2.5, 50)
    hear(UUID_B, 2)
    hear(UUID_A, 3)
    assert agent.health.readings == 2 and agent.health.drops["not_allowed"] == 1
    status = json.loads(pub.on("/status")[-1].payload)
    assert status["config_version"] == 7 and status["config_error"] is None

    # invalid configs are counted, reported, and leave the running settings alone
    for bad in (b'{"version": 8, "batch_max": 0}', b"not json", b'{"version": 9, "allow_uuids": ["nope"]}'):
        assert not agent.apply_config(bad)
    status = json.loads(pub.on("/status")[-1].payload)
    assert status["config_version"] == 7 and status["config_rejected"] == 3 and "uuid" in status["config_error"].lower()
    assert agent.batcher.max_readings == 50

    # a config without an allow-list goes back to the file's (open) one; here over the subscription
    async def over_mqtt() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        await asyncio.sleep(0.1)
        pub.deliver(topic, b'{"version": 10}')
        await asyncio.sleep(0.1)
        stop.set()
        await asyncio.wait_for(task, RUN_TIMEOUT_S)

    asyncio.run(over_mqtt())
    assert agent.health.config_version == 10 and agent.batcher.period_s == 0.2
    hear(UUID_B, 4)
    assert agent.health.readings == 3
    outbox.close()


def test_gateway_yaml_defaults_paths_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "gw.yaml"
    f.write_text("gateway: gw-01\nvenue: demo-mall\nscanner: {kind: replay, file: cap.jsonl}\n")
    cfg = load_gateway_config(f)
    assert cfg.outbox == tmp_path / "gw-01.outbox.sqlite" and cfg.scanner.file == tmp_path / "cap.jsonl"
    assert cfg.mqtt == "mqtt://127.0.0.1:1883" and cfg.batch.period_s == 1.0 and cfg.batch.max == 500
    assert cfg.mqtt_client_id == "instore-gw-demo-mall-gw-01"
    for text, needle in [
        ("gateway: gw-01\n", "venue: Field required"),
        ("gateway: gw/01\nvenue: v\n", "gateway:"),
        ("gateway: g\nvenue: v\nbatch: {period_s: -1}\n", "batch.period_s"),
        ("gateway: g\nvenue: v\nscanner: {kind: replay}\n", "needs 'file'"),
        ("gateway: g\nvenue: v\nmqtt: http://x\n", "mqtt://"),
        ("gateway: g\nvenue: v\nbatch: {period: 1}\n", "batch.period"),
        ("[1, 2", "not valid YAML"),
        ("- a\n", "expected a mapping"),
    ]:
        f.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_gateway_config(f)
        assert str(f) in str(err.value) and needle in str(err.value), (text, str(err.value))


# ---------------------------------------------------------------------------------------------- bleak scanner


class Sink:
    def __init__(self) -> None:
        self.adverts: list[tuple[float, dict[int, bytes], dict[str, bytes], float]] = []
        self.bad: list[str] = []

    def advert(self, t: float, manufacturer_data: Any, service_data: Any, rssi: float) -> None:
        self.adverts.append((t, dict(manufacturer_data), dict(service_data), rssi))

    def bad_input(self, reason: str) -> None:
        self.bad.append(reason)


def test_bleak_scanner_passive_with_patterns_and_no_mac() -> None:
    backend = make_fake_bleak_backend()
    scanner = BleakAdvertScanner(adapter="hci1", mode="auto", watchdog_s=30, backend=backend)
    sink = Sink()

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(scanner.run(sink, stop))
        while not backend.instances or not backend.instances[-1].running:
            await asyncio.sleep(0.01)
        fake = backend.instances[-1]
        fake.emit("AA:BB:CC:DD:EE:FF", advertisement({0x004C: bytes.fromhex(ibeacon_hex())}, rssi=-66))
        fake.emit("AA:BB:CC:DD:EE:01", advertisement(service_data={EDDY: b"\x00\x01"}, rssi=-80))
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    fake = backend.instances[0]
    assert fake.scanning_mode == "passive" and scanner.active_mode == "passive"
    assert fake.bluez["adapter"] == "hci1"
    assert [(p.start_position, int(p.ad_data_type), p.content_of_pattern) for p in fake.bluez["or_patterns"]] == [
        (pos, ad, data) for pos, ad, data in BLUEZ_PASSIVE_PATTERNS]
    assert [a[3] for a in sink.adverts] == [-66, -80]
    assert "AA:BB" not in repr(sink.adverts)
    assert not fake.running  # stopped cleanly


def test_bleak_scanner_falls_back_to_active_and_watchdog_restarts_quiet_scanner() -> None:
    backend = make_fake_bleak_backend(fail_passive=True)
    scanner = BleakAdvertScanner(mode="auto", watchdog_s=0.3, backend=backend)
    sink = Sink()

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(scanner.run(sink, stop))
        deadline = time.monotonic() + 10
        while scanner.restarts < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        running = [b for b in backend.instances if b.running]
        assert len(running) == 1
        running[0].emit("AA:BB:CC:DD:EE:FF", advertisement({0x004C: bytes.fromhex(ibeacon_hex())}))
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert scanner.restarts >= 2 and scanner.active_mode == "active"
    modes = [b.scanning_mode for b in backend.instances]
    assert modes[:2] == ["passive", "active"] and "active" in modes[2:]
    assert all(b.bluez.get("filters") == {"DuplicateData": True} for b in backend.instances
               if b.scanning_mode == "active")
    assert len(sink.adverts) == 1
    assert not any(b.running for b in backend.instances)


def test_bleak_scanner_that_cannot_start_keeps_retrying_without_crashing() -> None:
    backend = make_fake_bleak_backend(fail_all=True)
    waits: list[float] = []
    stop = asyncio.Event()

    async def fake_sleep(s: float) -> None:
        waits.append(s)
        if len(waits) >= 6:
            stop.set()
        await asyncio.sleep(0)

    scanner = BleakAdvertScanner(mode="active", backend=backend, sleep=fake_sleep)
    asyncio.run(asyncio.wait_for(scanner.run(Sink(), stop), 5))
    assert scanner.start_failures == 6
    assert waits == [1.0, 2.0, 5.0, 10.0, 30.0, 30.0]  # bounded backoff


def test_agent_over_the_bleak_scanner_publishes_ids_never_macs(tmp_path: Path) -> None:
    backend = make_fake_bleak_backend(fail_passive=True)
    cfg = make_cfg(tmp_path, batch={"period_s": 0.1, "max": 500})
    pub = FakePublisher()
    outbox = Outbox(tmp_path / "ob.sqlite", max_batches=100, max_bytes=10**7)
    agent = GatewayAgent(cfg, BleakAdvertScanner(backend=backend, watchdog_s=30), pub, outbox)
    macs = [f"C0:FF:EE:00:00:{i:02X}" for i in range(20)]

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        while not any(b.running for b in backend.instances):
            await asyncio.sleep(0.01)
        fake = next(b for b in backend.instances if b.running)
        for i, mac in enumerate(macs):
            fake.emit(mac, advertisement({0x004C: bytes.fromhex(ibeacon_hex(minor=i))}, rssi=-50 - i))
            fake.emit(mac, advertisement({0x004C: b"\x10\x05\x01\x18"}, local_name="iPhone"))  # not a beacon
        await asyncio.sleep(0.7)  # past a batch period and a status period
        stop.set()
        await asyncio.wait_for(task, RUN_TIMEOUT_S)

    asyncio.run(scenario())
    _, readings = readings_of(pub)
    assert sorted(int(bid.rsplit("-", 1)[1]) for _, bid, _ in readings) == list(range(20))
    everything = b"".join(p.payload for p in pub.published).lower()
    for mac in macs:
        assert mac.lower().encode() not in everything and mac.replace(":", "").lower().encode() not in everything
    status = json.loads(pub.on("/status")[-2].payload)
    assert status["scanner_mode"] == "active" and status["drops"] == {"not_beacon": 20}


def test_status_reports_a_scanner_that_cannot_start(tmp_path: Path) -> None:
    backend = make_fake_bleak_backend(fail_all=True)
    pub = FakePublisher()
    outbox = Outbox(tmp_path / "ob.sqlite", max_batches=100, max_bytes=10**7)
    scanner = BleakAdvertScanner(backend=backend)
    agent = GatewayAgent(make_cfg(tmp_path), scanner, pub, outbox, shutdown_grace_s=0.2)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        while scanner.start_failures < 1:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.6)  # a status period
        stop.set()
        await asyncio.wait_for(task, RUN_TIMEOUT_S)

    asyncio.run(scenario())
    status = json.loads(pub.on("/status")[-2].payload)
    assert status["scanner_start_failures"] >= 1 and "not supported" in status["scanner_error"]
