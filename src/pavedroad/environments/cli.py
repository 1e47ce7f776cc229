"""``pave env``, ``pave release``, ``pave deploy|promote|rollback|approve|ps|logs``."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import typer

from pavedroad.cli.output import Format, emit, fail

env_app = typer.Typer(help="Environments: list, show, create and delete.", no_args_is_help=True)
release_app = typer.Typer(help="Releases: immutable bundles of a service.", no_args_is_help=True)
SERVER = typer.Option(None, "--server", envvar="PAVEDROAD_URL", help="Server URL.")
OUTPUT = typer.Option(Format.table, "--output", "-o", help="table, json or yaml.")
ENDED = ("live", "replaced", "failed", "rejected", "expired", "cancelled", "removed")
POLL_SECONDS = 0.5
SKIPPED_FOLDERS = {".git", ".venv", "venv", "__pycache__", "node_modules", ".pytest_cache"}


def _client(server: str | None) -> Any:
    from pavedroad.cli.client import ApiClient
    from pavedroad.cli.main import load_settings

    return ApiClient(load_settings(), server)


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _short(ref: str) -> str:
    return ref.removeprefix("component:").removeprefix("default/")


# -- pave env ----------------------------------------------------------------------------


@env_app.command("list")
def env_list(output: Format = OUTPUT, server: str = SERVER) -> None:
    """Every environment with its type, what it promotes from, and what is live in it."""
    data = _client(server).request("GET", "/api/v1/environments")
    rows = [
        [
            e["name"],
            e["type"],
            e.get("promotesFrom") or "-",
            "yes" if e.get("approval") else "-",
            str(len(e["live"])),
            e["source"],
        ]
        for e in data["items"]
    ]
    emit(
        data,
        output,
        [
            ("name", ""),
            ("type", ""),
            ("promotes from", ""),
            ("approval", ""),
            ("live", ""),
            ("source", ""),
        ],
        rows,
    )


@env_app.command("show")
def env_show(name: str, output: Format = OUTPUT, server: str = SERVER) -> None:
    """One environment: its rules, what is live in it and its latest deployments."""
    data = _client(server).request("GET", f"/api/v1/environments/{name}")
    if output is not Format.table:
        emit(data, output)
        return
    typer.echo(f"{data['name']} ({data['type']}, {data['source']}) owned by {data['owner']}")
    if data.get("promotesFrom"):
        typer.echo(f"  promotes from: {data['promotesFrom']}")
    if data.get("approval"):
        typer.echo(f"  approvals needed: {data['approval']['approvals']}")
    if data.get("expiresAt"):
        typer.echo(f"  expires: {data['expiresAt']}")
    for key, value in sorted((data.get("variables") or {}).items()):
        typer.echo(f"  {key}={value}")
    typer.echo("")
    emit(
        data,
        Format.table,
        [("component", ""), ("release", ""), ("url", ""), ("since", "")],
        [[_short(x["component"]), x["release"], x["url"] or "-", x["since"]] for x in data["live"]],
    )


@env_app.command("create")
def env_create(
    name: str,
    type: str = typer.Option("development", "--type", help="development, staging, production"),
    owner: str = typer.Option(..., "--owner", help="The owning group, e.g. group:platform-team."),
    promotes_from: str = typer.Option(
        None, "--promotes-from", help="Environment it takes releases from."
    ),
    approvals: int = typer.Option(0, "--approvals", help="Approvals a deploy needs (0: none)."),
    variables: list[str] = typer.Option([], "--var", help="NAME=VALUE (repeatable)."),
    server: str = SERVER,
) -> None:
    """Make an environment outside the catalog (admins)."""
    values = {}
    for item in variables:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"--var takes NAME=VALUE, not {item!r}")
        values[key] = value
    body: dict[str, Any] = {"name": name, "type": type, "owner": owner, "variables": values}
    if promotes_from:
        body["promotesFrom"] = promotes_from
    if approvals:
        body["approval"] = {"approvals": approvals}
    data = _client(server).request("POST", "/api/v1/environments", json=body)
    typer.echo(f"created environment {data['name']} ({data['type']})")


@env_app.command("delete")
def env_delete(
    name: str,
    yes: bool = typer.Option(False, "--yes", help="Do not ask."),
    server: str = SERVER,
) -> None:
    """Remove an environment made outside the catalog and stop all that runs in it."""
    if not yes and not typer.confirm(f"Remove {name} and stop everything in it?"):
        raise typer.Exit(1)
    data = _client(server).request("DELETE", f"/api/v1/environments/{name}")
    typer.echo(f"removed {name} ({len(data['removed'])} component(s) stopped)")


# -- pave release --------------------------------------------------------------------------


@release_app.command("create")
def release_create(
    path: Path = typer.Argument(Path("."), help="The service's folder (with score.yaml)."),
    component: str = typer.Option(..., "--component", "-c", help="The component it releases."),
    server: str = SERVER,
) -> None:
    """Make a release from a local folder: the files git tracks (or, outside a git
    checkout, every file but .git, virtualenvs and caches) with its score.yaml."""
    if not (path / "score.yaml").is_file():
        fail(f"{path} has no score.yaml (a Score workload says how to run the release)")
    archive = _archive(path)
    data = _client(server).request(
        "POST",
        "/api/v1/releases",
        params={"component": component},
        content=archive,
        headers={"content-type": "application/gzip"},
    )
    verb = "created" if data.get("created") else "found existing"
    typer.echo(f"{verb} release {data['id']} of {data['component']} ({data['digest']})")


def _archive(root: Path) -> bytes:
    names = _tracked(root)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name in names:
            file = root / name
            if file.is_file() and not file.is_symlink():
                info = archive.gettarinfo(str(file), arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                with file.open("rb") as handle:
                    archive.addfile(info, handle)
    return buffer.getvalue()


def _tracked(root: Path) -> list[str]:
    result = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=False,
    )
    if result.returncode == 0:
        return sorted(n for n in result.stdout.decode(errors="replace").split("\0") if n)
    found = []
    for file in sorted(root.rglob("*")):
        relative = file.relative_to(root)
        if any(part in SKIPPED_FOLDERS for part in relative.parts):
            continue
        if file.is_file():
            found.append(relative.as_posix())
    return found


@release_app.command("list")
def release_list(
    component: str = typer.Option(None, "--component", "-c"),
    branch: str = typer.Option(None, "--branch"),
    output: Format = OUTPUT,
    server: str = SERVER,
) -> None:
    """Releases, newest first."""
    params = {k: v for k, v in {"component": component, "branch": branch}.items() if v}
    data = _client(server).request("GET", "/api/v1/releases", params=params)
    rows = [
        [
            r["id"],
            _short(r["component"]),
            r.get("branch") or "-",
            (r.get("commit") or "-")[:12],
            r["source"],
            r["createdAt"],
        ]
        for r in data["items"]
    ]
    emit(
        data,
        output,
        [
            ("id", ""),
            ("component", ""),
            ("branch", ""),
            ("commit", ""),
            ("source", ""),
            ("created", ""),
        ],
        rows,
    )


@release_app.command("show")
def release_show(release_id: str, output: Format = OUTPUT, server: str = SERVER) -> None:
    """A release and where it is live."""
    data = _client(server).request("GET", f"/api/v1/releases/{release_id}")
    emit(data, output if output is not Format.table else Format.yaml)


# -- deploy, promote, rollback, approve ------------------------------------------------------


def deploy(
    component: str = typer.Argument(..., help="The component, e.g. orders."),
    env: str = typer.Option(..., "--env", "-e", help="The environment."),
    release: str = typer.Option(None, "--release", "-r", help="A release id (default: newest)."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow it until it ends."),
    server: str = SERVER,
) -> None:
    """Deploy a release of a component to an environment."""
    client = _client(server)
    if release is None:
        found = client.request(
            "GET", "/api/v1/releases", params={"component": component, "limit": 1}
        )
        if not found["items"]:
            fail(
                f"{component} has no release yet (pave release create, or push to run its pipeline)"
            )
        release = found["items"][0]["id"]
    data = client.request(
        "POST",
        "/api/v1/deployments",
        json={"component": component, "environment": env, "release": release},
    )
    _follow(client, data, wait)


def promote(
    component: str = typer.Argument(..., help="The component."),
    to: str = typer.Option(..., "--to", help="The environment to promote to."),
    wait: bool = typer.Option(True, "--wait/--no-wait"),
    server: str = SERVER,
) -> None:
    """Deploy to an environment exactly the release live in the one it promotes from."""
    client = _client(server)
    data = client.request(
        "POST", "/api/v1/deployments/promote", json={"component": component, "to": to}
    )
    _follow(client, data, wait)


def rollback(
    component: str = typer.Argument(..., help="The component."),
    env: str = typer.Option(..., "--env", "-e", help="The environment."),
    to: str = typer.Option(None, "--to", help="A release (default: the one live before)."),
    wait: bool = typer.Option(True, "--wait/--no-wait"),
    server: str = SERVER,
) -> None:
    """Redeploy the previous release (or --to one) with the configuration and secret
    versions it ran with."""
    client = _client(server)
    body = {"component": component, "environment": env, "to": to}
    data = client.request("POST", "/api/v1/deployments/rollback", json=body)
    _follow(client, data, wait)


def approve(
    deployment: str = typer.Argument(None, help="The deployment (number or id); none: list them."),
    reject: bool = typer.Option(False, "--reject", help="Reject it instead."),
    comment: str = typer.Option(None, "--comment", "-m"),
    server: str = SERVER,
) -> None:
    """Approve (or --reject) a deployment waiting for approval; without one, list those
    waiting."""
    client = _client(server)
    if deployment is None:
        data = client.request("GET", "/api/v1/approvals")
        rows = [
            [
                str(d["number"]),
                _short(d["component"]),
                d["environment"],
                d["release"],
                d["requestedBy"],
                "yes" if d["mayApprove"] else "no",
            ]
            for d in data["items"]
        ]
        emit(
            data,
            Format.table,
            [
                ("#", ""),
                ("component", ""),
                ("env", ""),
                ("release", ""),
                ("asked by", ""),
                ("you may", ""),
            ],
            rows,
        )
        return
    body = {
        "deployment": deployment,
        "decision": "reject" if reject else "approve",
        "comment": comment,
    }
    data = client.request("POST", "/api/v1/approvals", json=body)
    typer.echo(f"deployment {data['number']}: {data['status']}")


def _follow(client: Any, data: dict[str, Any], wait: bool) -> None:
    joined = " (joined the one in progress)" if data.get("joined") else ""
    typer.echo(
        f"deployment {data['number']}: {data['kind']} of {data['release']} to "
        f"{data['environment']}: {data['status']}{joined}"
    )
    if data["status"] == "awaiting-approval":
        typer.echo(f"waiting for approval: another owner runs `pave approve {data['number']}`")
        return
    if not wait:
        return
    seen = 0
    while True:
        current = client.request("GET", f"/api/v1/deployments/{data['id']}")
        for event in current["timeline"][seen:]:
            message = f": {event['message']}" if event["message"] else ""
            typer.echo(f"  {event['step']:<9} {event['status']}{message}")
        seen = len(current["timeline"])
        if current["status"] in ENDED:
            break
        time.sleep(POLL_SECONDS)
    if current["status"] in ("live", "replaced"):
        typer.echo(f"live: {current['url']}")
        return
    typer.echo(f"{current['status']}: {current.get('reason') or ''}", err=True)
    for line in current.get("logTail") or []:
        typer.echo(f"  | {line}", err=True)
    raise typer.Exit(1)


# -- ps and logs -----------------------------------------------------------------------


def ps(
    component: str = typer.Argument(None, help="Only this component."),
    env: str = typer.Option(None, "--env", "-e"),
    output: Format = OUTPUT,
    server: str = SERVER,
) -> None:
    """Running instances: component, environment, release, status, port, restarts."""
    params = {k: v for k, v in {"component": component, "environment": env}.items() if v}
    data = _client(server).request("GET", "/api/v1/instances", params=params)
    rows = [
        [
            i["id"],
            _short(i.get("component") or "-"),
            i.get("environment") or "-",
            i.get("release") or "-",
            i.get("status") or "-",
            str(i.get("port") or "-"),
            str(i.get("restarts", 0)),
            _age(i.get("ageSeconds")),
        ]
        for i in data["items"]
    ]
    emit(
        data,
        output,
        [
            ("instance", ""),
            ("component", ""),
            ("env", ""),
            ("release", ""),
            ("status", ""),
            ("port", ""),
            ("restarts", ""),
            ("age", ""),
        ],
        rows,
    )


def logs(
    component: str = typer.Argument(..., help="The component."),
    env: str = typer.Option(..., "--env", "-e"),
    tail: int = typer.Option(100, "--tail", "-n"),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    server: str = SERVER,
) -> None:
    """The log lines of what serves a component in an environment."""
    client = _client(server)
    path = f"/api/v1/environments/{env}/components/{component}/logs"
    if not follow:
        data = client.request("GET", path, params={"tail": tail})
        for line in data["lines"]:
            typer.echo(line)
        return
    import httpx

    try:
        with httpx.stream(
            "GET",
            client.base + path,
            params={"tail": tail, "follow": "true"},
            headers=client.headers,
            timeout=None,
        ) as response:
            if response.status_code >= 400:
                response.read()
                fail(f"{response.text} (HTTP {response.status_code})")
            for raw in response.iter_lines():
                if raw.startswith("data: "):
                    typer.echo(json.loads(raw[6:]))
                    sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    except httpx.HTTPError as error:
        fail(f"the log stream ended: {error}")
