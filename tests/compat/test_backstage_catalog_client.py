"""Backstage's own ``@backstage/catalog-client`` (from npm, unchanged) against a real server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from pavedroad.app import create_app
from pavedroad.identity.policy import Role
from pavedroad.settings import Settings

HERE = Path(__file__).parent / "catalog-client"
DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo" / "catalog-info.yaml"
CACHE = Path.home() / ".cache" / "pavedroad-tests" / "catalog-client"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def node_client() -> Path:
    """The pinned client installed from the npm registry (cached between runs)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed to run Backstage's catalog client")
    CACHE.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "check.js"):
        shutil.copy(HERE / name, CACHE / name)
    if not (CACHE / "node_modules" / "@backstage" / "catalog-client").is_dir():
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent"],
            cwd=CACHE,
            check=True,
            timeout=300,
        )
    return CACHE


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A server that requires sign-in, and a token for the client to send."""
    home = tmp_path_factory.mktemp("home")
    port = _free_port()
    app = create_app(Settings(home=home, port=port))
    app.state.catalog.register_location("file", str(DEMO))
    app.state.identity.create_account("backstage", Role.admin)
    _info, token = app.state.identity.create_token(
        "backstage", "compat", ["read", "write", "admin"]
    )
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield base, token
    uv.should_exit = True
    thread.join(10)


def test_catalog_client_works_unchanged(
    node_client: Path, server: tuple[str, str], tmp_path: Path
) -> None:
    base, token = server
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: compat-extra\n"
        "spec:\n  type: service\n  lifecycle: experimental\n  owner: group:platform-team\n"
    )
    run = subprocess.run(
        ["node", "check.js", base, str(extra)],
        cwd=node_client,
        env={**os.environ, "PAVEDROAD_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)

    assert "orders-service" in out["components"] and len(out["components"]) == 12
    assert out["servicesDesc"] == sorted(out["servicesDesc"], reverse=True)
    assert len(out["servicesDesc"]) >= 5
    assert out["pagedTotal"] == 12
    assert sorted(out["paged"]) == out["components"]
    assert out["search"] == ["payments-service", "payments-web-sdk"]

    entity = out["entity"]
    assert entity["name"] == "orders-service" and entity["uid"]
    assert {"type": "ownedBy", "targetRef": "group:default/checkout-team"} in entity["relations"]
    assert out["missing"] is None

    assert out["byRefs"][0] == {"kind": "Component", "metadata": {"name": "orders-service"}}
    assert out["byRefs"][1] is None
    assert out["byRefs"][2]["metadata"]["name"] == "orders-api"

    kinds = {f["value"]: f["count"] for f in out["facets"]["kind"]}
    assert kinds["Component"] == 12 and kinds["API"] == 6 and kinds["Group"] == 9

    ancestry = out["ancestors"]
    assert ancestry["rootEntityRef"] == "component:default/orders-service"
    assert ancestry["items"][-1]["entity"]["metadata"]["name"].startswith("generated-")

    assert out["added"]["target"] == str(extra)
    assert out["added"]["entities"][0] == "compat-extra"
    assert out["added"]["entities"][1].startswith("generated-")
    assert out["location"]["target"] == str(extra)
    assert out["locationByEntity"]["target"] == str(extra)
    assert str(extra) in out["locations"]

    assert out["valid"] == {"valid": True}
    assert out["invalid"]["valid"] is False
    assert any("metadata.name" in e["message"] for e in out["invalid"]["errors"])

    assert out["afterRemove"] is None
    assert out.get("unknownLocation") is None or out.get("unknownLocationError")
