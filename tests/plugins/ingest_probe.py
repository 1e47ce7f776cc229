"""Run by tests/integration/test_plugins.py in a subprocess (with the plugin on PYTHONPATH):
start the app on a SQLite database in HOME, register FILE and print what the catalog made
of it as one JSON line.

Usage: python ingest_probe.py HOME FILE
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from pavedroad.app import create_app
from pavedroad.core.plugins import plugin_names
from pavedroad.settings import AuthSettings, Settings

V1 = "/api/v1/catalog"


def main(home: Path, target: str) -> None:
    settings = Settings(
        home=home,
        database_url=f"sqlite:///{home / 'db.sqlite'}",
        auth=AuthSettings(required=False),
    )
    with TestClient(create_app(settings)) as client:
        created = client.post(f"{V1}/locations", json={"type": "file", "target": target})
        dashboard = client.get(f"{V1}/entities/dashboard/default/orders-dashboard").json()
        shown = client.post(f"{V1}/entities/by-refs", json={"refs": ["component:orders-service"]})
        kinds = [k["kind"] for k in client.get(f"{V1}/kinds").json()]
        filtered = client.get(
            f"{V1}/entities", params={"filter": "relations.shows=component:default/orders-service"}
        ).json()
    print(
        json.dumps(
            {
                "status": created.status_code,
                "errors": created.json()["errors"],
                "relations": dashboard["relations"],
                "plugins": plugin_names(),
                "kinds": kinds,
                "shown": shown.json()["items"][0]["relations"],
                "filtered": [e["metadata"]["name"] for e in filtered["items"]],
            }
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
