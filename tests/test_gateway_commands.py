"""The installed commands: ``instore gateway decode``, ``instore firmware generate``, ``instore gateway run`` errors."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import yaml

from beacon_gateway.adapters import parse_espresense, parse_theengs
from beacon_gateway.config import load_gateway_config
from beacon_gateway.wire import is_canonical_beacon_id
from positioning.venue import parse_venue
from tests.conftest import CORNER_STORE, DEMO_MALL, instore_exe

UUID = "e2c56db5dffb48d2b060d0f5a71096e0"


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([instore_exe(), *args], input=stdin, capture_output=True, timeout=120)


def test_decode_one_output_line_per_input_line_never_crashing(tmp_path: Path) -> None:
    lines = [
        json.dumps({"manufacturer_data": {"76": "0215" + UUID + "00010002c5"}, "rssi": -70, "local_name": "tag"}),
        json.dumps({"service_data": {"0000feaa-0000-1000-8000-00805f9b34fb": "00e8" + "ab" * 16}}),
        json.dumps({"manufacturer_data": {"280": "beac" + UUID + "00030004c4"}}),
        "this is not json",
        "",
        json.dumps({"manufacturer_data": {"76": "1005"}}),
        json.dumps([1, 2, 3]),
        json.dumps({"manufacturer_data": {"76": "0215" + UUID[:10]}}),
    ]
    raw = ("\n".join(lines) + "\n").encode() + b"\xff\xfe\x00garbage bytes\n"
    capture = tmp_path / "capture.jsonl"
    capture.write_bytes(raw)
    for res in (run("gateway", "decode", str(capture)), run("gateway", "decode", stdin=raw)):
        assert res.returncode == 0, res.stderr
        out = [json.loads(x) for x in res.stdout.decode().splitlines()]
        assert len(out) == len(lines) + 1
        assert out[0] == {"id": "ibeacon:e2c56db5-dffb-48d2-b060-d0f5a71096e0-1-2", "kind": "ibeacon",
                          "tx_power": -59, "error": None}
        assert out[1] == {"id": "eddystone-uid:" + "ab" * 10 + "-" + "ab" * 6, "kind": "eddystone-uid",
                          "tx_power": -24, "error": None}
        assert out[2]["id"] == "altbeacon:e2c56db5-dffb-48d2-b060-d0f5a71096e0-3-4" and out[2]["tx_power"] == -60
        for o in out[3:]:
            assert o["id"] is None and o["kind"] is None and o["error"]
        assert out[5]["error"].startswith("not_beacon") and out[7]["error"].startswith("malformed")


def test_decode_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    res = run("gateway", "decode", str(tmp_path / "nope.jsonl"))
    assert res.returncode == 2
    assert res.stderr.decode().strip() == f"instore: error: {tmp_path / 'nope.jsonl'}: no such file"


def test_run_with_bad_config_is_a_one_line_error(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text("gateway: gw-01\nvenue: demo-mall\nbatch: {period_s: 0}\n")
    res = run("gateway", "run", "--config", str(cfg))
    assert res.returncode == 2
    err = res.stderr.decode().strip()
    assert err.startswith(f"instore: error: {cfg}: batch.period_s") and "\n" not in err
    cfg.write_text("gateway: gw-01\nvenue: demo-mall\nscanner: {kind: replay, file: missing.jsonl}\n")
    res = run("gateway", "run", "--config", str(cfg))
    assert res.returncode == 2 and "missing.jsonl" in res.stderr.decode()
    res = run("gateway", "run", "--config", str(tmp_path / "absent.yaml"))
    assert res.returncode == 2 and "no such file" in res.stderr.decode()


def test_firmware_for_the_demo_mall_matches_the_venue(tmp_path: Path) -> None:
    out = tmp_path / "fw"
    res = run("firmware", "generate", "--venue", str(DEMO_MALL), "--out", str(out), "--mqtt", "mqtts://gw:pw@b.mall:8883")
    assert res.returncode == 0, res.stderr
    venue = parse_venue(DEMO_MALL.read_text(encoding="utf-8"), str(DEMO_MALL))
    gateways = {a.id: a for a in venue.anchors if a.kind == "gateway"}
    assert len(gateways) == 152
    yamls, units = sorted(out.rglob("*.yaml")), sorted(out.rglob("*.service"))
    assert {p.stem for p in yamls} == set(gateways) == {p.stem for p in units}
    for p in yamls[:5]:
        cfg = load_gateway_config(p)
        assert (cfg.gateway, cfg.venue, cfg.mqtt) == (p.stem, "demo-mall", "mqtts://gw:pw@b.mall:8883")
        assert cfg.scanner.kind == "bleak" and str(cfg.outbox) == f"/var/lib/instore/{p.stem}.sqlite"
        unit = (out / f"{p.stem}.service").read_text()
        assert f"gateway run --config /etc/instore/{p.stem}.yaml" in unit and "Restart=always" in unit
    # third-party node configs name the nodes after the anchors, so the engine's adapters map them back
    gw = next(iter(gateways))
    esp = json.loads((out / "espresense" / f"{gw}.json").read_text())
    assert esp["room"] == gw and esp["mqtt"]["host"] == "b.mall"
    reading = parse_espresense(f"espresense/devices/iBeacon:{UUID}-1-2/{esp['room']}", '{"rssi": -70}', 1.0,
                               anchors=gateways)
    assert reading.anchor == gw
    omg = json.loads((out / "openmqttgateway" / f"{gw}.json").read_text())
    theengs = json.loads((out / "theengs" / f"{gw}.conf").read_text())
    for topic in (f"{omg['mqtt_topic']}{omg['gateway_name']}/BTtoMQTT/AABBCC", f"{theengs['publish_topic']}/AABBCC"):
        r = parse_theengs(topic, json.dumps({"rssi": -70, "uuid": UUID, "major": 1, "minor": 2, "txpower": -59}), 1.0,
                          anchors=gateways)
        assert r.anchor == gw
    with (out / "beacons.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["id", "uuid", "major", "minor", "tx_power", "floor", "x", "y"]
    assert [r["id"] for r in rows] == [b.id for b in venue.beacons] and len(rows) == 20
    for row, b in zip(rows, venue.beacons, strict=True):
        assert is_canonical_beacon_id(row["id"])
        assert row["id"] == f"ibeacon:{row['uuid']}-{row['major']}-{row['minor']}"
        assert (row["floor"], float(row["x"]), float(row["y"]), int(row["tx_power"])) == (b.floor, b.x, b.y, b.rssi_1m)


def test_firmware_beacons_csv_is_header_only_without_beacons(tmp_path: Path) -> None:
    doc = yaml.safe_load(CORNER_STORE.read_text(encoding="utf-8"))
    doc["beacons"] = []  # the corner store has anchors, so the venue stays valid
    venue_file = tmp_path / "no-beacons.yaml"
    venue_file.write_text(yaml.safe_dump(doc))
    res = run("firmware", "generate", "--venue", str(venue_file), "--out", str(tmp_path / "fw"))
    assert res.returncode == 0, res.stderr.decode()
    assert (tmp_path / "fw" / "beacons.csv").read_text() == "id,uuid,major,minor,tx_power,floor,x,y\n"
    assert len(list((tmp_path / "fw").glob("*.yaml"))) == 6


def test_firmware_bad_venue_is_a_one_line_error(tmp_path: Path) -> None:
    res = run("firmware", "generate", "--venue", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "fw"))
    assert res.returncode == 2 and "no such file" in res.stderr.decode()
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema: 1\nvenue: {id: x}\n")
    res = run("firmware", "generate", "--venue", str(bad), "--out", str(tmp_path / "fw"))
    assert res.returncode == 2 and res.stderr.decode().count("\n") == 1


def test_gateway_bench_quick_writes_its_keys(tmp_path: Path) -> None:
    out = tmp_path / "gw.json"
    res = run("bench", "gateway", "--quick", "--json", str(out))
    assert res.returncode == 0, res.stderr.decode()
    result = json.loads(out.read_text())
    for key in ("adverts_per_s", "baseline_adverts_per_s", "speedup", "cpu_adverts_per_s", "target_adverts_per_s"):
        assert isinstance(result[key], int | float) and result[key] > 0
    assert result["readings"] > 0 and result["batches"] > 0 and result["drops"]["not_beacon"] > 0


def test_readme_decode_example_and_example_config() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8").splitlines()
    i = next(n for n, line in enumerate(readme) if line.startswith("$ echo '") and "gateway decode" in line)
    given = readme[i].split("'")[1]
    res = run("gateway", "decode", stdin=(given + "\n").encode())
    assert res.returncode == 0 and res.stdout.decode().strip() == readme[i + 1]
    example = Path(__file__).resolve().parent.parent / "firmware_configs" / "gateway.example.yaml"
    cfg = load_gateway_config(example)
    assert (cfg.gateway, cfg.batch.period_s, cfg.scanner.watchdog_s) == ("gw-01", 1.0, 60)
