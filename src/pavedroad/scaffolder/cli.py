"""``pave template ...`` and ``pave task ...``: run templates and follow their tasks,
through the API of a running server."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import typer

from pavedroad.cli.output import Format, emit, fail

template_app = typer.Typer(
    help="Golden-path templates: list them, run them, bring projects up to date.",
    no_args_is_help=True,
)
task_app = typer.Typer(help="Template tasks: list, follow, cancel, retry.", no_args_is_help=True)
SERVER = typer.Option(None, "--server", envvar="PAVEDROAD_URL", help="Server URL.")
FINISHED = ("completed", "failed", "cancelled")
POLL_SECONDS = 0.3


def _client(server: str | None) -> Any:
    from pavedroad.cli.client import ApiClient
    from pavedroad.cli.main import load_settings

    return ApiClient(load_settings(), server)


def _template_path(ref: str) -> str:
    text = ref.removeprefix("template:")
    namespace, _, name = text.rpartition("/")
    return f"{namespace or 'default'}/{name}"


def _value(text: str) -> Any:
    """``8080`` → 8080, ``true`` → True, ``[1, 2]`` → a list; anything else a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _answers(assignments: list[str], values_file: Path | None) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    if values_file is not None:
        from pavedroad.core.safeyaml import YamlError, load_document

        try:
            loaded = load_document(values_file.read_bytes(), str(values_file))
        except (OSError, YamlError) as exc:
            fail(f"cannot read {values_file}: {exc}")
        if not isinstance(loaded, dict):
            fail(f"{values_file} must hold a mapping of answers")
        answers.update(loaded)
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or not key:
            fail(f"--set takes NAME=VALUE, not {assignment!r}")
        *parents, leaf = key.split(".")
        holder = answers
        for part in parents:
            holder = holder.setdefault(part, {})
        holder[leaf] = _value(text)
    return answers


def _secrets(names: list[str]) -> dict[str, str]:
    """Secret answers are asked for without echo (or read from stdin when piped)."""
    secrets: dict[str, str] = {}
    for name in names:
        if sys.stdin.isatty():
            secrets[name] = typer.prompt(f"{name}", hide_input=True)
        else:
            secrets[name] = sys.stdin.readline().rstrip("\n")
    return secrets


@template_app.command("list")
def list_templates(
    tag: list[str] = typer.Option([], "--tag", help="Only templates with this tag."),
    query: str = typer.Option("", "--search", "-q", help="Words in the name or description."),
    as_json: bool = typer.Option(False, "--json"),
    server: str = SERVER,
) -> None:
    """Templates to create from."""
    params: dict[str, Any] = {"q": query, "tag": tag}
    items = _client(server).request("GET", "/api/v1/scaffolder/templates", params=params)["items"]
    rows = [[t["ref"], t["title"], ", ".join(t["tags"]), t["description"][:60]] for t in items]
    emit(
        items,
        Format.json if as_json else Format.table,
        [("template", ""), ("title", ""), ("tags", ""), ("description", "")],
        rows,
    )


@template_app.command("show")
def show(
    ref: str = typer.Argument(..., help="template:NAMESPACE/NAME or NAME"),
    as_json: bool = typer.Option(False, "--json"),
    server: str = SERVER,
) -> None:
    """A template's form (the answers it asks for) and its recorded versions."""
    template = _client(server).request("GET", f"/api/v1/scaffolder/templates/{_template_path(ref)}")
    if as_json:
        emit(template, Format.json)
        return
    typer.echo(f"{template['title']} ({template['ref']})")
    if template["description"]:
        typer.echo(f"  {template['description']}")
    for page in template["parameters"]["steps"]:
        typer.echo(f"\n{page['title']}")
        schema = page["schema"]
        required = set(schema.get("required") or [])
        for name, field in (schema.get("properties") or {}).items():
            mark = "*" if name in required else " "
            kind = field.get("type", "any")
            secret = " (secret)" if field.get("ui:field") == "Secret" else ""
            default = f" = {field['default']!r}" if "default" in field else ""
            typer.echo(f"  {mark} {name}: {kind}{secret}{default}  {field.get('title') or ''}")
    versions = template["versions"]
    typer.echo(f"\n{len(versions)} recorded version(s)")


@template_app.command("run")
def run(
    ref: str = typer.Argument(..., help="template:NAMESPACE/NAME or NAME"),
    assignments: list[str] = typer.Option(
        [], "--set", "-s", help="An answer: NAME=VALUE (JSON values are typed, a.b=c nests)."
    ),
    values_file: Path = typer.Option(None, "--values", "-f", help="A YAML file of answers."),
    secret: list[str] = typer.Option(
        [], "--secret", help="A secret answer's name: asked for without echo (or read from stdin)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Render into a scratch workspace; publish nothing."
    ),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the log to the end."),
    server: str = SERVER,
) -> None:
    """Run a template: create a project (or, with --dry-run, show what it would make)."""
    client = _client(server)
    values = _answers(assignments, values_file)
    values.update(_secrets(secret))
    template_ref = "template:" + _template_path(ref)
    task = client.request(
        "POST",
        "/api/v1/scaffolder/tasks",
        json={"templateRef": template_ref, "values": values, "dryRun": dry_run},
    )
    typer.echo(f"task {task['id']} started", err=True)
    if wait:
        _finish(client, task["id"])
    else:
        typer.echo(task["id"])


@template_app.command("update")
def update(
    entity: str = typer.Argument(None, help="The component made from the template."),
    repo: str = typer.Option(None, "--repo", help="Or its repository, OWNER/NAME."),
    secret: list[str] = typer.Option([], "--secret", help="A secret answer's name, asked for."),
    wait: bool = typer.Option(True, "--wait/--no-wait"),
    server: str = SERVER,
) -> None:
    """Bring a project up to its template's newest version, on a new branch for review."""
    if not entity and not repo:
        fail("name the component (or --repo OWNER/NAME)")
    client = _client(server)
    body: dict[str, Any] = {"secrets": _secrets(secret)}
    if repo:
        body["repository"] = repo
    else:
        body["entityRef"] = entity
    task = client.request("POST", "/api/v1/scaffolder/updates", json=body)
    typer.echo(f"task {task['id']} started", err=True)
    if wait:
        _finish(client, task["id"])
    else:
        typer.echo(task["id"])


@template_app.command("projects")
def projects(
    ref: str = typer.Argument(..., help="template:NAMESPACE/NAME or NAME"),
    as_json: bool = typer.Option(False, "--json"),
    server: str = SERVER,
) -> None:
    """Projects made from the template, and how many versions behind each one is."""
    path = f"/api/v1/scaffolder/templates/{_template_path(ref)}/projects"
    result = _client(server).request("GET", path)
    rows = [
        [p["repository"], p["entityRef"] or "", p["version"][:12], str(p["behind"])]
        for p in result["items"]
    ]
    emit(
        result,
        Format.json if as_json else Format.table,
        [("repository", ""), ("entity", ""), ("version", ""), ("behind", "")],
        rows,
    )


# -- tasks -----------------------------------------------------------------------------------


@task_app.command("list")
def list_tasks(
    mine: bool = typer.Option(False, "--mine", help="Only tasks I started."),
    status: str = typer.Option(None, "--status", help="open, processing, completed, ..."),
    limit: int = typer.Option(20, "--limit"),
    as_json: bool = typer.Option(False, "--json"),
    server: str = SERVER,
) -> None:
    """Template tasks, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if mine:
        params["createdBy"] = "me"
    if status:
        params["status"] = status
    items = _client(server).request("GET", "/api/v1/scaffolder/tasks", params=params)["items"]
    rows = [
        [t["id"], t["kind"], t["templateRef"], t["status"], t["createdBy"], t["createdAt"] or ""]
        for t in items
    ]
    emit(
        items,
        Format.json if as_json else Format.table,
        [("id", ""), ("kind", ""), ("template", ""), ("status", ""), ("by", ""), ("at", "")],
        rows,
    )


@task_app.command("show")
def show_task(task_id: str, server: str = SERVER) -> None:
    """A task: status, steps and output (JSON)."""
    emit(_client(server).request("GET", f"/api/v1/scaffolder/tasks/{task_id}"), Format.json)


@task_app.command("logs")
def logs(
    task_id: str,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until it ends."),
    server: str = SERVER,
) -> None:
    """A task's log."""
    client = _client(server)
    if follow:
        _finish(client, task_id)
        return
    after = 0
    while True:
        events = client.request(
            "GET", f"/api/v1/scaffolder/tasks/{task_id}/events", params={"after": after}
        )["items"]
        if not events:
            break
        for event in events:
            _print_event(event)
            after = event["id"]


@task_app.command("cancel")
def cancel(task_id: str, server: str = SERVER) -> None:
    """Ask a task to stop (it stops at its next check, or is stopped)."""
    task = _client(server).request("POST", f"/api/v1/scaffolder/tasks/{task_id}/cancel")
    typer.echo(f"task {task_id}: {task['status']}")


@task_app.command("retry")
def retry(
    task_id: str,
    secret: list[str] = typer.Option([], "--secret", help="A secret answer's name, asked for."),
    wait: bool = typer.Option(True, "--wait/--no-wait"),
    server: str = SERVER,
) -> None:
    """Run an ended task again, as a new task (secret answers must be given again)."""
    client = _client(server)
    task = client.request(
        "POST", f"/api/v1/scaffolder/tasks/{task_id}/retry", json={"secrets": _secrets(secret)}
    )
    typer.echo(f"task {task['id']} started", err=True)
    if wait:
        _finish(client, task["id"])


# -- following a task ------------------------------------------------------------------------


def _print_event(event: dict[str, Any]) -> None:
    body = event["body"]
    step = f"[{event['step']}] " if event.get("step") else ""
    if event["type"] == "log":
        typer.echo(f"{step}{body.get('message', '')}")
    elif event["type"] == "step":
        typer.echo(f"{step}{body.get('name') or ''}: {body.get('status')}")
    elif event["type"] == "completion":
        error = f": {body['error']}" if body.get("error") else ""
        typer.echo(f"task {body.get('status')}{error}")


def _entity_page(ref: str) -> str:
    from pavedroad.catalog.refs import parse_ref

    parsed = parse_ref(ref, "component")
    return f"/catalog/{parsed.namespace}/{parsed.kind.lower()}/{parsed.name}"


def _finish(client: Any, task_id: str) -> None:
    """Print the log as it comes, then the output; exit 1 unless the task completed."""
    after = 0
    while True:
        events = client.request(
            "GET", f"/api/v1/scaffolder/tasks/{task_id}/events", params={"after": after}
        )["items"]
        for event in events:
            _print_event(event)
            after = event["id"]
        if any(event["type"] == "completion" for event in events):
            break
        if not events:
            task = client.request("GET", f"/api/v1/scaffolder/tasks/{task_id}")
            if task["status"] in FINISHED:
                break
            time.sleep(POLL_SECONDS)
    task = client.request("GET", f"/api/v1/scaffolder/tasks/{task_id}")
    output = task.get("output") or {}
    for link in output.get("links") or []:
        target = link.get("url") or ""
        if link.get("entityRef"):
            target = f"{link['entityRef']} ({client.base}{_entity_page(link['entityRef'])})"
        typer.echo(f"{link.get('title') or 'link'}: {target}")
    for text in output.get("text") or []:
        typer.echo(f"{text.get('title') or ''}\n{text.get('content')}")
    if output.get("branch"):
        typer.echo(f"branch: {output['branch']}")
    for path in output.get("conflicts") or []:
        typer.echo(f"conflict: {path}")
    for entry in output.get("files") or []:
        typer.echo(f"  {entry['path']} ({entry['size']} bytes)")
    if task["status"] != "completed":
        raise typer.Exit(1)
