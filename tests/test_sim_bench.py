"""``instore bench simulator --quick`` writes the contract keys (numbers) and a side-by-side baseline."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import instore_exe


def test_simulator_bench_quick_writes_the_contract_keys(tmp_path: Path) -> None:
    out = tmp_path / "sim.json"
    proc = subprocess.run([instore_exe(), "bench", "simulator", "--json", str(out), "--quick"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text(encoding="utf-8"))
    for key in ("realtime_factor", "shoppers", "gateways"):
        assert isinstance(doc[key], int | float) and not isinstance(doc[key], bool), key
    assert doc["gateways"] == 60
    assert doc["shoppers"] > 300
    assert doc["realtime_factor"] > 1.0
    assert doc["baseline_realtime_factor"] > 0 and doc["speedup"] > 1.0
    assert "baseline" in proc.stdout
