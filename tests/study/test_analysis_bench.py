"""bench/coverage_study.py --quick runs end to end (so the coverage script cannot rot)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_coverage_study_quick(tmp_path):
    out = tmp_path / "coverage.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "coverage_study.py"), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "| quantity | truth | interval | coverage (MC SE) | mean width |" in proc.stdout
    res = json.loads(out.read_text())
    assert res["studies"] == 3 and len(res["results"]) == 3
    for scenario in res["results"]:
        kinds = {(r["quantity"], r["interval"]) for r in scenario["rows"]}
        assert ("op-q3-x3", "two-way bootstrap") in kinds and ("restored", "GEE (reader clusters)") in kinds
        for row in scenario["rows"]:
            assert 0.0 <= row["coverage"] <= 1.0 and row["studies"] == 3 and 0.0 < row["truth"] < 1.0
