"""The pipelines benchmark still runs: ``bench/pipelines.py --quick`` as a user starts it,
with real ``pave up`` and ``pave worker`` processes, prints its three figures and exits 0
(which it does only when every queued run ran exactly once). Benchmarks are not timed
tests: this checks that the figures come out, not what they are."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_quick_pipelines_benchmark_prints_its_three_figures(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PAVEDROAD_")}
    result = subprocess.run(
        [sys.executable, "bench/pipelines.py", "--quick", "--json", str(tmp_path / "f.json")],
        cwd=REPO_ROOT,
        env=env | {"TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "1. Push to first step running" in out
    assert re.search(r"from git push returning +median \d+\.\d{3} s +p90 \d+\.\d{3} s", out), out
    assert "2. Per-step overhead (one job of 10 steps" in out
    assert re.search(r"overhead per step +median -?\d+\.\d ms +p90", out), out
    assert "3. 6 runs queued, then 2 `pave worker`s" in out
    assert re.search(r"completed 6 +failed 0 +lost 0 +duplicated 0 +missing 0 +retried \d+", out), (
        out
    )
    assert re.search(r"wall time \d+\.\d\d s", out), out
    assert '"completed": 6' in (tmp_path / "f.json").read_text()
    # the temporary home is removed afterwards
    assert not list(tmp_path.glob("pavedroad-bench-pipelines-*"))
