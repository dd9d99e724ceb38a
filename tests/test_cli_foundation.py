"""The installed ``instore`` entry point, run as a subprocess; and the settings object."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from api.settings import Settings, SettingsError, load_settings
from tests.conftest import CORNER_STORE, DEMO_MALL, instore_exe


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([instore_exe(), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_venue_validate_ok() -> None:
    res = run("venue", "validate", str(CORNER_STORE))
    assert res.returncode == 0, res.stderr
    assert "ok (corner-store: 1 floors, 6 anchors" in res.stdout


def test_venue_validate_reports_problem_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(CORNER_STORE.read_text().replace("floor: L1, x: 3, y: 3", "floor: L9, x: 3, y: 3", 1))
    res = run("venue", "validate", str(bad))
    assert res.returncode == 2
    assert res.stderr.strip() == f"instore: error: {bad}: anchors[0].floor: unknown floor 'L9' (floors: L1)"


def test_venue_validate_missing_file(tmp_path: Path) -> None:
    res = run("venue", "validate", str(tmp_path / "nope.yaml"))
    assert res.returncode == 2
    assert "no such file" in res.stderr


def test_venue_show_draws_png(tmp_path: Path) -> None:
    out = tmp_path / "plan.png"
    res = run("venue", "show", str(DEMO_MALL), "--png", str(out))
    assert res.returncode == 0, res.stderr
    assert "floor L1" in res.stdout and "floor L2" in res.stdout
    assert "Lancome" in res.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 50_000  # two detailed floor panels, not an empty canvas


def test_demo_prints_venue_summary() -> None:
    from simulations.local_broker import free_port

    res = run("demo", "--duration", "1", "--http", f"127.0.0.1:{free_port()}")
    assert res.returncode == 0, res.stderr
    assert "Demo Mall (demo-mall)" in res.stdout


def test_unknown_command_fails() -> None:
    res = run("teleport")
    assert res.returncode != 0


def test_settings_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().mqtt_url == "mqtt://127.0.0.1:1883"
    monkeypatch.setenv("INSTORE_MQTT_URL", "mqtt://broker.example:1884")
    monkeypatch.setenv("INSTORE_HTTP", "0.0.0.0:9000")
    s = load_settings()
    assert (s.mqtt_url, s.http_port) == ("mqtt://broker.example:1884", 9000)
    s = load_settings(mqtt_url="mqtts://u:p@other:8883", http=None)
    assert s.mqtt_url == "mqtts://u:p@other:8883"
    assert s.http == "0.0.0.0:9000"  # a flag left unset does not override the environment


def test_settings_refuse_default_secret_outside_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTORE_SECRET", "changeme")
    with pytest.raises(SettingsError, match="known default"):
        load_settings()
    assert load_settings(demo=True).secret is not None
    monkeypatch.setenv("INSTORE_SECRET", "9f1c2a77e0d54f2b8f0c")
    assert load_settings().secret is not None


def test_settings_reject_bad_urls() -> None:
    with pytest.raises(SettingsError, match="mqtt_url"):
        load_settings(mqtt_url="http://x")
    with pytest.raises(SettingsError, match="http"):
        load_settings(http="nohost")
