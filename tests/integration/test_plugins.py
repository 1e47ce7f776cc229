"""A pip-installed plugin, without rebuilding anything: ``tests/plugins/acme_plugin.py`` is
laid out with a ``.dist-info`` folder (METADATA and an ``entry_points.txt`` in the
``pavedroad.plugins`` group) in a folder on PYTHONPATH, exactly as pip would install it.
Everything runs in subprocesses, because the plugin manager reads entry points once per
process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from integration_support import write

PLUGIN_SOURCE = Path(__file__).resolve().parents[1] / "plugins" / "acme_plugin.py"
PROBE = Path(__file__).resolve().parents[1] / "plugins" / "ingest_probe.py"
PAVE = Path(sys.executable).with_name("pave")

DASHBOARD = """
apiVersion: acme.example/v1
kind: Dashboard
metadata:
  name: orders-dashboard
spec:
  owner: checkout-team
  url: https://grafana.example.com/d/orders
  shows: [orders-service, component:payments/ledger]
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A site folder holding the plugin as pip would install it."""
    folder = tmp_path_factory.mktemp("site")
    shutil.copy(PLUGIN_SOURCE, folder / "acme_plugin.py")
    dist_info = folder / "acme_plugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: acme-plugin\nVersion: 0.1\n"
        "Summary: Dashboards for the Pavedroad catalog (test plugin)\n"
    )
    (dist_info / "entry_points.txt").write_text("[pavedroad.plugins]\nacme = acme_plugin\n")
    (dist_info / "top_level.txt").write_text("acme_plugin\n")
    return folder


def _env(tmp_path: Path, site: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAVEDROAD_")}
    env["PAVEDROAD_HOME"] = str(tmp_path / "home")
    empty = tmp_path / "empty-pavedroad.yaml"
    empty.write_text("")
    env["PAVEDROAD_CONFIG"] = str(empty)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(site), os.environ.get("PYTHONPATH")) if p
        )
    return env


def run(args: list[str], tmp_path: Path, site: Path | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=_env(tmp_path, site),
        check=False,
    )


def test_plugin_kind_validates_with_pave(site, tmp_path):
    good = write(tmp_path / "dashboard.yaml", DASHBOARD)
    result = run([str(PAVE), "catalog", "validate", str(good)], tmp_path, site)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dashboard:default/orders-dashboard" in result.stdout
    assert "1 valid, 0 invalid" in result.stdout


def test_plugin_schema_violation_fails_validation(site, tmp_path):
    bad = write(
        tmp_path / "bad.yaml",
        """
        apiVersion: acme.example/v1
        kind: Dashboard
        metadata:
          name: broken-dashboard
        spec:
          owner: checkout-team
          colour: red
        ---
        apiVersion: acme.example/v1
        kind: Dashboard
        metadata:
          name: insecure-dashboard
        spec:
          owner: checkout-team
          url: http://grafana.example.com/d/orders
        """,
    )
    result = run([str(PAVE), "catalog", "validate", str(bad)], tmp_path, site)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{bad}:1" in result.stdout
    assert "/spec must have required property 'url'" in result.stdout
    assert "additional properties" in result.stdout
    assert f"{bad}:8" in result.stdout or f"{bad}:9" in result.stdout
    assert "/spec/url must be an https URL" in result.stdout  # the plugin processor's own rule
    assert "Traceback" not in result.stderr


def test_without_the_plugin_the_kind_is_unknown(tmp_path):
    good = write(tmp_path / "dashboard.yaml", DASHBOARD)
    result = run([str(PAVE), "catalog", "validate", str(good)], tmp_path, None)
    assert result.returncode == 1
    assert "Unsupported kind 'Dashboard'" in result.stdout


def test_plugin_processor_relations_are_ingested(site, tmp_path):
    write(
        tmp_path / "catalog" / "dashboard.yaml",
        DASHBOARD
        + """---
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata:
          name: orders-service
        spec: {type: service, lifecycle: production, owner: checkout-team}
        """.replace("        ", ""),
    )
    target = str(tmp_path / "catalog" / "dashboard.yaml")
    result = run([sys.executable, str(PROBE), str(tmp_path / "home"), target], tmp_path, site)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["status"] == 201 and report["errors"] == []
    assert "acme" in report["plugins"]
    assert "Dashboard" in report["kinds"]
    assert report["relations"] == [
        {"type": "ownedBy", "targetRef": "group:default/checkout-team"},
        {"type": "shows", "targetRef": "component:default/orders-service"},
        {"type": "shows", "targetRef": "component:payments/ledger"},
    ]
    assert report["shown"] == [
        {"type": "ownedBy", "targetRef": "group:default/checkout-team"},
        {"type": "shownBy", "targetRef": "dashboard:default/orders-dashboard"},
    ]
    assert report["filtered"] == ["orders-dashboard"]
