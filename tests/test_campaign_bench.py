"""``instore bench campaigns --quick`` runs and writes the contract keys (speed is judged by the full run)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import instore_exe


def test_bench_campaigns_quick_writes_required_keys(tmp_path: Path) -> None:
    out = tmp_path / "campaigns.json"
    proc = subprocess.run([instore_exe(), "bench", "campaigns", "--json", str(out), "--quick"],
                          capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert isinstance(result["decisions_per_s"], float) and result["decisions_per_s"] > 0
    assert isinstance(result["p99_offer_latency_ms"], float) and result["p99_offer_latency_ms"] > 0
    assert result["offers_sent"] > 0 and result["baseline"]["identical_decisions"] is True
    assert "decisions/s" in proc.stdout
