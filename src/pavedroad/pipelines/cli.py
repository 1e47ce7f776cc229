"""``pave pipeline ...``: check pipeline files, start, follow, cancel and re-run runs."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import typer

from pavedroad.cli.output import Format, emit, fail

pipeline_app = typer.Typer(
    help="CI/CD pipelines: check a pipeline file, start and follow runs.", no_args_is_help=True
)
SERVER = typer.Option(None, "--server", envvar="PAVEDROAD_URL", help="Server URL.")
FINISHED = ("succeeded", "failed", "cancelled", "skipped")
POLL_SECONDS = 0.5


def _client(server: str | None) -> Any:
    from pavedroad.cli.client import ApiClient
    from pavedroad.cli.main import load_settings

    return ApiClient(load_settings(), server)


def _print_problems(source: str, problems: list[dict[str, Any]]) -> None:
    for problem in problems:
        typer.echo(
            f"{source}:{problem['line']}:{problem['column']}: {problem['path']}: "
            f"{problem['message']}"
        )


@pipeline_app.command("validate")
def validate(
    path: Path = typer.Argument(
        Path(".pavedroad/pipeline.yaml"), help="The pipeline file (default: this project's)."
    ),
    server: str = SERVER,
) -> None:
    """Check a pipeline file: every problem with its line (exit 1 if there are any).
    A full pipeline is checked here; one that uses a template is checked by the server,
    which knows the templates."""
    from pavedroad.pipelines.library import TemplateUse, parse_pipeline_file
    from pavedroad.pipelines.spec import PipelineError
    from pavedroad.pipelines.steps import StepRegistry

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {exc}")
    registry = StepRegistry.from_plugins()
    try:
        parsed = parse_pipeline_file(text, str(path), known_step=registry.known)
    except PipelineError as exc:
        _print_problems(str(path), [p.as_dict() for p in exc.problems])
        raise typer.Exit(1) from None
    if isinstance(parsed, TemplateUse):
        result = _client(server).request(
            "POST", "/api/v1/pipelines/validate", json={"text": text, "source": str(path)}
        )
        if not result["valid"]:
            _print_problems(str(path), result["problems"])
            raise typer.Exit(1)
        typer.echo(f"{path}: valid ({result['uses']}, {len(result['jobs'])} jobs)")
        return
    typer.echo(f"{path}: valid ({len(parsed.jobs)} jobs)")


@pipeline_app.command("run")
def run(
    repository: str = typer.Argument(..., help="OWNER/NAME of a hosted repository."),
    ref: str = typer.Option("main", "--ref", help="A branch, tag or commit."),
    inputs: list[str] = typer.Option([], "--input", "-i", help="NAME=VALUE (JSON typed)."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the run to its end."),
    server: str = SERVER,
) -> None:
    """Start a run by hand (the pipeline needs a `manual` trigger)."""
    given: dict[str, Any] = {}
    for item in inputs:
        name, sep, value = item.partition("=")
        if not sep or not name:
            fail(f"--input takes NAME=VALUE, not {item!r}")
        try:
            given[name] = json.loads(value)
        except ValueError:
            given[name] = value
    client = _client(server)
    started = client.request(
        "POST",
        "/api/v1/pipelines/runs",
        json={"repository": repository, "ref": ref, "inputs": given},
    )
    typer.echo(f"run #{started['number']} of {repository} started ({started['id']})", err=True)
    if wait:
        _follow(client, started["id"])
    else:
        typer.echo(started["id"])


@pipeline_app.command("runs")
def runs(
    repository: str = typer.Option(None, "--repo", help="OWNER/NAME"),
    branch: str = typer.Option(None, "--branch"),
    status: str = typer.Option(None, "--status"),
    limit: int = typer.Option(20, "--limit"),
    as_json: bool = typer.Option(False, "--json"),
    server: str = SERVER,
) -> None:
    """Runs, newest first."""
    params = {"repository": repository, "branch": branch, "status": status, "limit": limit}
    items = _client(server).request(
        "GET", "/api/v1/pipelines/runs", params={k: v for k, v in params.items() if v}
    )["items"]
    rows = [
        [
            r["id"],
            f"{r['repository']}#{r['number']}",
            r["branch"] or r["ref"],
            r["commit"][:12],
            r["event"],
            r["status"],
        ]
        for r in items
    ]
    emit(
        items,
        Format.json if as_json else Format.table,
        [("id", ""), ("run", ""), ("branch", ""), ("commit", ""), ("event", ""), ("status", "")],
        rows,
    )


@pipeline_app.command("show")
def show(run_id: str, server: str = SERVER) -> None:
    """A run with its jobs and steps (JSON)."""
    emit(_client(server).request("GET", f"/api/v1/pipelines/runs/{run_id}"), Format.json)


@pipeline_app.command("logs")
def logs(
    run_id: str,
    job: str = typer.Option(None, "--job", help="Only this job (its key, e.g. 'test')."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until it ends."),
    server: str = SERVER,
) -> None:
    """A run's job logs."""
    client = _client(server)
    if follow:
        _follow(client, run_id, only=job)
        return
    described = client.request("GET", f"/api/v1/pipelines/runs/{run_id}")
    for item in described["jobs"]:
        if job and item["key"] != job:
            continue
        _heading(f"== {item['key']} ({item['status']})")
        _print_log(client, item["id"], 0)


@pipeline_app.command("cancel")
def cancel(run_id: str, server: str = SERVER) -> None:
    """Cancel a run: waiting jobs end, running steps are stopped."""
    described = _client(server).request("POST", f"/api/v1/pipelines/runs/{run_id}/cancel")
    typer.echo(f"run #{described['number']}: {described['status']}")


@pipeline_app.command("rerun")
def rerun(
    run_id: str,
    wait: bool = typer.Option(True, "--wait/--no-wait"),
    server: str = SERVER,
) -> None:
    """Run the same commit again, as a new run."""
    client = _client(server)
    described = client.request("POST", f"/api/v1/pipelines/runs/{run_id}/rerun")
    typer.echo(f"run #{described['number']} started ({described['id']})", err=True)
    if wait:
        _follow(client, described["id"])


class _Line:
    open = False  # the last text printed did not end its line


_line = _Line()


def _end_line() -> None:
    if _line.open:
        typer.echo("")
        _line.open = False


def _heading(text: str) -> None:
    _end_line()  # a job's heading starts a line of its own
    typer.echo(text)


def _print_log(client: Any, job_id: str, after: int) -> int:
    while True:
        items = client.request(
            "GET", f"/api/v1/pipelines/jobs/{job_id}/log", params={"after": after}
        )["items"]
        if not items:
            return after
        for chunk in items:
            sys.stdout.write(chunk["text"])
            after = chunk["id"]
            _line.open = not chunk["text"].endswith("\n")
        sys.stdout.flush()


def _follow(client: Any, run_id: str, only: str | None = None) -> None:
    """Print each job's log as it comes; exit 1 unless the run succeeded."""
    seen: dict[str, int] = {}
    announced: set[str] = set()
    while True:
        described = client.request("GET", f"/api/v1/pipelines/runs/{run_id}")
        for job in described["jobs"]:
            if only and job["key"] != only:
                continue
            if job["status"] in ("waiting", "queued"):
                continue
            if job["id"] not in announced:
                _heading(f"== {job['key']}")
                announced.add(job["id"])
            seen[job["id"]] = _print_log(client, job["id"], seen.get(job["id"], 0))
        if described["status"] in FINISHED:
            break
        time.sleep(POLL_SECONDS)
    _end_line()
    for problem in described["problems"]:
        typer.echo(
            f".pavedroad/pipeline.yaml:{problem['line']}:{problem['column']}: "
            f"{problem['path']}: {problem['message']}"
        )
    for job in described["jobs"]:
        typer.echo(
            f"{job['key']}: {job['status']}" + (f" ({job['error']})" if job["error"] else "")
        )
    typer.echo(f"run #{described['number']}: {described['status']}")
    if described["status"] != "succeeded":
        raise typer.Exit(1)


@pipeline_app.command("export")
def export(
    path: Path = typer.Argument(
        Path(".pavedroad/pipeline.yaml"), help="The pipeline file (default: this project's)."
    ),
    fmt: str = typer.Option("github-actions", "--format", help="What to export to."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write here (e.g. .github/workflows/ci.yml), not stdout."
    ),
    server: str = SERVER,
) -> None:
    """Write the pipeline as a GitHub Actions workflow. A full pipeline is exported here;
    one that uses a template is resolved by the server, which knows the templates."""
    from pavedroad.pipelines.export import FORMATS, to_github_actions, workflow_filename
    from pavedroad.pipelines.library import (
        TemplateLibrary,
        TemplateUse,
        parse_pipeline_file,
        resolve,
    )
    from pavedroad.pipelines.spec import PipelineError
    from pavedroad.pipelines.steps import StepRegistry

    if fmt not in FORMATS:
        fail(f"cannot export a pipeline as {fmt!r}; the formats are: {', '.join(FORMATS)}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {exc}")
    registry = StepRegistry.from_plugins()
    try:
        parsed = parse_pipeline_file(text, str(path), known_step=registry.known)
    except PipelineError as exc:
        _print_problems(str(path), [p.as_dict() for p in exc.problems])
        raise typer.Exit(1) from None
    if isinstance(parsed, TemplateUse):
        client = _client(server)
        checked = client.request(
            "POST", "/api/v1/pipelines/validate", json={"text": text, "source": str(path)}
        )
        if not checked["valid"]:
            _print_problems(str(path), checked["problems"])
            raise typer.Exit(1)
        result = client.request(
            "POST",
            "/api/v1/pipelines/export",
            json={"text": text, "source": str(path), "format": fmt},
        )
        content, filename = result["content"], result["filename"]
    else:
        resolved = resolve(parsed, TemplateLibrary(), known_step=registry.known, source=str(path))
        content, filename = to_github_actions(resolved), workflow_filename(resolved)
    if output is None:
        typer.echo(content, nl=False)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(content, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {output}: {exc}")
    in_place = output.resolve().parent.match("*/.github/workflows")
    hint = "" if in_place else f"; GitHub reads workflows in .github/workflows/, e.g. {filename}"
    typer.echo(f"wrote {output}{hint}", err=True)


@pipeline_app.command("artifacts")
def artifacts(
    run_id: str, as_json: bool = typer.Option(False, "--json"), server: str = SERVER
) -> None:
    """A run's artifacts."""
    items = _client(server).request("GET", f"/api/v1/pipelines/runs/{run_id}/artifacts")["items"]
    rows = [[a["name"], str(a["size"]), a["digest"]] for a in items]
    emit(
        items,
        Format.json if as_json else Format.table,
        [("name", ""), ("size", ""), ("digest", "")],
        rows,
    )


@pipeline_app.command("download")
def download(
    run_id: str,
    name: str = typer.Argument(..., help="The artifact's name."),
    output: Path = typer.Option(None, "--output", "-o", help="Default: NAME.tar.gz here."),
    server: str = SERVER,
) -> None:
    """Download an artifact of a run (a .tar.gz of what the job uploaded)."""
    import httpx

    client = _client(server)
    target = output or Path(f"{name}.tar.gz")
    url = f"{client.base}/api/v1/pipelines/runs/{run_id}/artifacts/{name}"
    try:
        with httpx.stream("GET", url, headers=client.headers, timeout=120) as response:
            if response.status_code >= 400:
                response.read()
                fail(
                    f"{response.json().get('detail', response.text)} (HTTP {response.status_code})"
                )
            with open(target, "wb") as handle:
                for block in response.iter_bytes():
                    handle.write(block)
    except httpx.HTTPError as exc:
        fail(f"cannot reach the Pavedroad server at {client.base} ({exc.__class__.__name__})")
    typer.echo(f"saved {target} ({target.stat().st_size} bytes)")
