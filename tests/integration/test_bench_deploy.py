"""The deployment benchmark still runs: ``bench/deploy.py --quick`` as a user starts it,
with a real ``pave up``, a service made from the "Python web service" template, a real
``git push``, the router and ``bench/router.py``, prints its three figures and exits 0
(which it does only when no request failed during the redeploy under load). Benchmarks
are not timed tests: this checks that the figures come out, not what they are."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_quick_deployment_benchmark_prints_its_three_figures(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PAVEDROAD_")}
    result = subprocess.run(
        [sys.executable, "bench/deploy.py", "--quick"],
        cwd=REPO_ROOT,
        env=env | {"TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "1. Push to live in development" in out
    assert re.search(r"push to live +median \d+\.\d\d s +p90 \d+\.\d\d s +max \d+\.\d\d s", out), (
        out
    )
    for phase in ("pipeline run planned", "deployment step ready", "switched → answer seen"):
        assert re.search(rf"{phase} +-?\d+\.\d\d s", out), out
    assert re.search(r"python/setup +\d+\.\d\d s", out), out
    assert re.search(r"overhead p50 -?\d+\.\d{3} ms", out), out
    assert re.search(r"throughput +[\d,]+ requests/s through the router", out), out
    assert re.search(r"requests +\d+ sent in \d+\.\d s \(\d+/s\)", out), out
    assert re.search(r"failed +0 +\(answered: \d+ by the old release, [1-9]\d* by the new\)", out)
    assert re.search(r"switch +\d+ ms \(the deployment's switch step\)", out), out
    # every service instance was stopped, and the temporary home removed
    assert not list(tmp_path.glob("pavedroad-bench-deploy-*"))
    assert not processes_within(tmp_path)


def processes_within(folder: Path) -> list[str]:
    """Processes started from, or naming, a path under ``folder``: the runtime's shims
    name their instance's folder, the services run in their release's folder."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            args = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours
            continue
        if cwd.startswith(str(folder)) or str(folder) in args:
            found.append(f"{proc.name}: {args} (in {cwd})")
    return found
