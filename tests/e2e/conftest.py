"""A real Pavedroad server with the demo organisation, and a headless Chromium to drive it.

The server runs in a thread of the test process (uvicorn on a free port) so tests can
also register locations on it directly. The browser is the system Chromium. Sign-in is
required, as by default: pages are opened signed in as ``alice`` (an admin) unless a
test asks for another user or for none.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_LOCATION = REPO_ROOT / "examples" / "demo" / "catalog-info.yaml"
CHROMIUM = os.environ.get("PAVEDROAD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


ADMIN = "alice"


class PortalServer:
    """The running server: its base URL and its app (for registering locations)."""

    def __init__(self, url: str, app: Any, home: Path) -> None:
        self.url = url
        self.app = app
        self.home = home
        _info, self.token = app.state.identity.create_token(ADMIN, "e2e", ["read", "write"])

    def session_cookie(self, user: str = ADMIN) -> dict[str, str]:
        """A signed-in session for ``user``, as a cookie for a browser context."""
        from pavedroad.identity.sessions import SESSION_COOKIE

        value, _session = self.app.state.sessions.start(user, "test", "127.0.0.1")
        return {"name": SESSION_COOKIE, "value": value, "url": self.url}

    @property
    def catalog(self) -> Any:
        return self.app.state.catalog

    def register_yaml(self, name: str, text: str) -> None:
        """Register a catalog file written from ``text`` (and read it now)."""
        path = self.home / "extra" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.catalog.register_location("file", str(path))


@contextmanager
def running_portal(home: Path, *, demo: bool) -> Iterator[PortalServer]:
    """Serve a fresh app on ``home`` (optionally with the demo) from a thread."""
    import uvicorn

    from pavedroad.app import create_app
    from pavedroad.settings import Settings

    empty_config = home / "empty-pavedroad.yaml"
    empty_config.write_text("")
    # The machine's PAVEDROAD_* variables must not reach the app; they are restored
    # before the server is handed out, so they stay intact for the tests that follow.
    with pytest.MonkeyPatch.context() as env:
        for name in list(os.environ):
            if name.startswith("PAVEDROAD_"):
                env.delenv(name)
        env.setenv("PAVEDROAD_CONFIG", str(empty_config))
        settings = Settings(home=home, database_url=f"sqlite:///{home / 'pavedroad.db'}")
        app = create_app(settings)
        from pavedroad.identity.policy import Role

        app.state.identity.create_account(ADMIN, Role.admin)
        if demo:
            app.state.catalog.register_location("file", str(DEMO_LOCATION))
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="portal-e2e-server", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(url, thread)
        yield PortalServer(url, app, home)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.state.db.dispose()


@pytest.fixture(scope="session")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalServer]:
    """A server on a fresh home with the demo organisation registered."""
    with running_portal(tmp_path_factory.mktemp("pavedroad-home"), demo=True) as server:
        yield server


@pytest.fixture(scope="module")
def empty_portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalServer]:
    """A server whose catalog is empty."""
    with running_portal(tmp_path_factory.mktemp("pavedroad-empty"), demo=False) as server:
        yield server


def _wait_until_healthy(url: str, thread: threading.Thread, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("the portal server thread exited while starting")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the portal server did not answer {url}/healthz within {timeout}s")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is missing at {CHROMIUM}; .ci/run installs it")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@contextmanager
def browser_page(browser: Any, server: PortalServer, user: str | None = ADMIN) -> Iterator[Any]:
    """A page in a fresh browser context, signed in as ``user`` (``None``: signed out);
    fails the test if the page raised a JavaScript error."""
    context = browser.new_context(base_url=server.url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(10_000)
    if user is not None:
        context.add_cookies([server.session_cookie(user)])
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def page(browser: Any, portal: PortalServer) -> Iterator[Any]:
    """A fresh page signed in as an admin; ``page.goto("/catalog")`` goes to the server."""
    with browser_page(browser, portal) as tab:
        yield tab


@pytest.fixture
def api(portal: PortalServer) -> Callable[[str], Any]:
    """GET a JSON endpoint of the test server."""

    def get(path: str) -> Any:
        headers = {"authorization": f"Bearer {portal.token}"}
        response = httpx.get(portal.url + path, headers=headers, timeout=10.0)
        response.raise_for_status()
        return response.json()

    return get
