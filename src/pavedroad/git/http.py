"""Clone and push over smart HTTP at ``/git/<owner>/<name>.git``, served by git's own
``git http-backend`` (a CGI program) with the request and the answer streamed through.

Git clients authenticate with HTTP Basic: any user name, a personal access token as the
password. Cloning follows the read policy (any signed-in user); pushing needs the
``git.repo.push`` permission on the repository's owner (members of the owning group).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from typing import IO

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from pavedroad.core.errors import ProblemError
from pavedroad.git.service import GitService
from pavedroad.identity.http import client_ip, require

router = APIRouter(include_in_schema=False)

SMART_PATHS = frozenset({"info/refs", "git-upload-pack", "git-receive-pack"})
REALM = 'Basic realm="Pavedroad git", charset="UTF-8"'
CHUNK = 64 * 1024


def ask_for_credentials(message: str) -> Response:
    """A 401 git understands: it asks its credential helper and tries again."""
    return PlainTextResponse(message + "\n", status_code=401, headers={"WWW-Authenticate": REALM})


@router.api_route("/git/{owner}/{repo}/{rest:path}", methods=["GET", "POST"])
async def smart_http(request: Request, owner: str, repo: str, rest: str) -> Response:
    service: GitService = request.app.state.git
    if rest not in SMART_PATHS or not repo.endswith(".git"):
        return PlainTextResponse("not a git smart-HTTP path\n", status_code=404)
    try:
        row = await run_in_threadpool(service.repo, owner, repo)
    except ProblemError as exc:
        return PlainTextResponse(exc.detail + "\n", status_code=exc.status)
    pushing = (
        rest == "git-receive-pack" or request.query_params.get("service") == "git-receive-pack"
    )
    request.state.audit_target = f"{row.owner}/{row.name}"
    if request.state.actor is None and (pushing or request.app.state.settings.auth.required):
        return ask_for_credentials("sign in: use a personal access token as the password")
    if pushing:
        try:
            await run_in_threadpool(require, request, "git.repo.push", row.owner_ref)
        except ProblemError as exc:
            return PlainTextResponse(exc.detail + "\n", status_code=exc.status)
    settings = request.app.state.settings
    limit = settings.git.max_push_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return PlainTextResponse(
            f"this push is {declared} bytes; the limit is {limit} (git.max_push_bytes)\n",
            status_code=413,
        )
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_PROJECT_ROOT": str(service.root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "GIT_HTTP_MAX_REQUEST_BUFFER": str(limit),
        "PATH_INFO": f"/{row.owner}/{row.name}.git/{rest}",
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": request.url.query,
        "CONTENT_TYPE": request.headers.get("content-type", ""),
        "REMOTE_USER": request.state.actor.name if request.state.actor else "anonymous",
        "REMOTE_ADDR": client_ip(request),
        "GIT_PROTOCOL": request.headers.get("git-protocol", ""),
        "HTTP_CONTENT_ENCODING": request.headers.get("content-encoding", ""),
    }
    if "content-length" in request.headers:
        environment["CONTENT_LENGTH"] = request.headers["content-length"]
    # The request is read whole (to a temporary file, up to the limit) before the backend
    # starts, so the answer never races the upload through the middleware stack.
    with tempfile.TemporaryFile(prefix="pavedroad-git-") as upload:
        if request.method == "POST" and not await _receive(request, upload, limit):
            return PlainTextResponse(
                f"this push is over the limit of {limit} bytes (git.max_push_bytes)\n",
                status_code=413,
            )
        upload.seek(0)
        process = await asyncio.create_subprocess_exec(
            "git",
            "http-backend",
            stdin=upload if request.method == "POST" else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=environment,
        )
    assert process.stdout is not None
    status, headers = await _cgi_headers(process.stdout)

    async def body() -> AsyncIterator[bytes]:
        try:
            assert process.stdout is not None
            while chunk := await process.stdout.read(CHUNK):
                yield chunk
            await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            if pushing:  # record the push now rather than on the next background round
                await run_in_threadpool(service.import_spool)

    return StreamingResponse(body(), status_code=status, headers=headers)


async def _receive(request: Request, upload: IO[bytes], limit: int) -> bool:
    """Copy the request body into ``upload``; False (and the rest unread) once it
    passes ``limit``."""
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            return False
        await run_in_threadpool(upload.write, chunk)
    return True


async def _cgi_headers(stdout: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """The CGI answer's status and headers (everything before the blank line)."""
    status = 200
    headers: dict[str, str] = {}
    while True:
        line = (await stdout.readline()).decode("latin-1").rstrip("\r\n")
        if not line:
            return status, headers
        key, _, value = line.partition(":")
        if key.lower() == "status":
            status = int(value.strip().split()[0])
        else:
            headers[key.strip()] = value.strip()
