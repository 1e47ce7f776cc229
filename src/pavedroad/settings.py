"""The one Settings object: an optional ``pavedroad.yaml`` plus ``PAVEDROAD_*`` variables.

Precedence (highest first): keyword arguments, environment variables, the YAML file,
defaults. The YAML file is ``$PAVEDROAD_CONFIG`` when set, else ``pavedroad.yaml`` in the
current directory, else ``$PAVEDROAD_HOME/pavedroad.yaml``.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)


class CatalogRule(BaseModel):
    """Which kinds a location may hold (Backstage's ``catalog.rules``)."""

    allow: list[str]
    locations: list[dict[str, str]] | None = None


class CatalogLocation(BaseModel):
    """A location configured in settings rather than registered through the API."""

    type: Literal["file", "url"] = "file"
    target: str
    rules: list[CatalogRule] | None = None


class CatalogSettings(BaseModel):
    locations: list[CatalogLocation] = Field(default_factory=list)
    rules: list[CatalogRule] = Field(default_factory=lambda: [CatalogRule(allow=["*"])])
    refresh_interval_seconds: int = Field(default=300, ge=5)
    orphan_strategy: Literal["keep", "delete"] = "keep"
    allowed_hosts: list[str] = Field(default_factory=list)
    allow_private_network: bool = False
    allowed_location_types: list[str] = Field(default_factory=lambda: ["url", "file"])
    # Worker processes that read and validate while the main process writes, when a
    # refresh has many sources due (0 reads in the main process only).
    ingest_processes: int = Field(default_factory=lambda: min(4, os.cpu_count() or 1), ge=0, le=64)


class OidcSettings(BaseModel):
    """Single sign-on through an OpenID Connect provider (authorization code + PKCE)."""

    issuer: str  # e.g. https://accounts.example.com; discovery reads its well-known document
    client_id: str
    client_secret: str | None = None  # None for a public client (PKCE only)
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    # The ID token claim that names the user: ``email`` matches a catalog User's
    # spec.profile.email; any other claim's value is taken as the User's name.
    user_claim: str = "email"
    label: str = "Single sign-on"  # the sign-in button says "Sign in with <label>"
    redirect_url: str | None = None  # default: <public url>/sign-in/oidc/callback
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])


class AuthSettings(BaseModel):
    # Every request needs a session or a token (off only for throwaway local use).
    required: bool = True
    anonymous_read: bool = False  # with `required`, still let anyone read the catalog
    # Signs session cookies; every replica behind one URL needs the same key. Unset:
    # a random key kept in $PAVEDROAD_HOME/session.key (mode 0600).
    secret_key: str | None = None
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    secure_cookies: bool | None = None  # None: when the public URL is https
    # Wrong passwords allowed per user and source address within the window.
    max_failed_sign_ins: int = Field(default=5, ge=1)
    failed_sign_in_window_minutes: int = Field(default=15, ge=1)
    oidc: OidcSettings | None = None


class SecretsSettings(BaseModel):
    backend: str = "database"  # where sealed values are kept; plugins add others
    versions_kept: int = Field(default=10, ge=1, le=1000)  # older versions are purged


class GitSettings(BaseModel):
    max_push_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024)  # one push over HTTP
    # Shared secrets of the inbound webhooks (docs/git.md); unset, the endpoint answers 404.
    github_webhook_secret: SecretStr | None = None
    gitlab_webhook_token: SecretStr | None = None
    webhook_max_bytes: int = Field(default=1024 * 1024, ge=1024)  # one webhook delivery


class ScaffolderSettings(BaseModel):
    max_running_tasks: int = Field(default=4, ge=1, le=256)  # across every worker
    task_timeout_seconds: int = Field(default=600, ge=5)  # wall clock, then the task is killed
    task_memory_mb: int = Field(default=2048, ge=256)  # address space of a task's process
    max_file_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)  # one file in a workspace
    max_workspace_bytes: int = Field(default=500 * 1024 * 1024, ge=1024)  # all of them
    max_workspace_files: int = Field(default=20_000, ge=10)
    keep_workspaces: bool = False  # keep finished tasks' workspaces (for debugging)
    # A running task whose worker has not sent a heartbeat (every 5 s) for this long is
    # failed: its worker died. Keep it well above the heartbeat interval.
    lost_after_seconds: int = Field(default=60, ge=10)
    # An open task queued this long ago, which no worker has taken, is queued again
    # (its message was lost, e.g. with a Redis that restarted empty).
    requeue_after_seconds: int = Field(default=30, ge=5)


class PipelinesSettings(BaseModel):
    # The runs-on labels this process's workers take jobs for (besides jobs without one).
    labels: list[str] = Field(default_factory=lambda: ["local"])
    workers: int = Field(default=2, ge=0, le=64)  # jobs run at once by this process (0: none)
    max_step_log_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)  # then it is cut
    kill_grace_seconds: float = Field(default=5.0, gt=0, le=300)  # SIGTERM, then SIGKILL
    heartbeat_seconds: float = Field(default=5.0, gt=0, le=60)
    file_command_max_bytes: int = Field(default=1024 * 1024, ge=1024)  # $PAVEDROAD_OUTPUT...
    junit_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)  # a JUnit report read
    artifact_max_bytes: int = Field(default=4 * 1024**3, ge=1024)  # one artifact or cache
    step_path: str | None = None  # PATH for steps (None: the usual system folders)
    python: str | None = None  # interpreter for python/setup (None: the worker's own)
    keep_workspaces: bool = False  # keep finished jobs' workspaces (for debugging)
    # A running job whose worker has not sent a heartbeat (every 5 s) for this long is
    # retried or failed: its worker died. Keep it well above the heartbeat interval.
    lost_after_seconds: int = Field(default=60, ge=10)
    # A queued job queued this long ago, which no worker has taken, is queued again
    # (its message was lost, e.g. with a Redis that restarted empty).
    requeue_after_seconds: int = Field(default=60, ge=5)


class DeploymentsSettings(BaseModel):
    workers: int = Field(default=2, ge=0, le=64)  # deployments run at once by this process
    ready_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)  # new instances get
    drain_seconds: float = Field(default=2.0, ge=0, le=600)  # old instances keep serving
    # a deployment whose worker stopped heartbeating this long is ended (finished or failed)
    lost_after_seconds: int = Field(default=30, ge=5)
    # a queued deployment not taken this long is queued again (its message was lost)
    requeue_after_seconds: int = Field(default=30, ge=5)


class YamlLimits(BaseModel):
    max_bytes: int = Field(default=1024 * 1024, ge=1)
    max_depth: int = Field(default=64, ge=2)
    max_aliases: int = Field(default=100, ge=0)
    max_nodes: int = Field(default=500_000, ge=1)


class RuntimeSettings(BaseModel):
    """The local runtime: each service instance a supervised process on 127.0.0.1."""

    # Ports handed to instances: the first free one from port_min to port_max.
    port_min: int = Field(default=20000, ge=1024, le=65535)
    port_max: int = Field(default=29999, ge=1024, le=65535)
    log_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)  # one log file, then rotated
    log_files: int = Field(default=5, ge=1, le=100)  # the current log and the rotated ones
    # A service that exits is started again after this delay, doubled at each exit in a
    # row up to the maximum (reset once it has stayed up for a minute).
    restart_backoff_initial_seconds: float = Field(default=1.0, gt=0, le=300)
    restart_backoff_max_seconds: float = Field(default=60.0, gt=0, le=3600)
    stop_grace_seconds: float = Field(default=10.0, gt=0, le=300)  # SIGTERM, then SIGKILL
    probe_period_seconds: float = Field(default=5.0, gt=0, le=300)  # liveness probes
    probe_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    liveness_failure_threshold: int = Field(default=3, ge=1, le=100)  # then restarted
    python: str | None = None  # interpreter of services' virtualenvs (None: the server's)
    path: str | None = None  # PATH of services after their venv (None: the system folders)
    prepare_timeout_seconds: int = Field(default=900, ge=10)  # creating a virtualenv

    @model_validator(mode="after")
    def _ordered_ports(self) -> RuntimeSettings:
        if self.port_min > self.port_max:
            raise ValueError("runtime.port_min must not be above runtime.port_max")
        return self


class RouterSettings(BaseModel):
    """The local router: every service at a stable URL, ``<component>.<environment>.<domain>``
    on the platform's own port, or ``/r/<environment>/<component>/`` on any host name."""

    enabled: bool = True
    domain: str = Field(default="localhost", pattern=r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=300)  # then 504
    # Waiting for an upstream's response head, and between two reads of its body (a
    # server-sent event stream that stays silent this long is cut): then 504.
    read_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    # Keep-alive connections kept open per upstream, each for at most this long idle
    # (below the 5 s after which uvicorn and most servers close an idle connection).
    pool_max_idle: int = Field(default=64, ge=0, le=10_000)
    pool_idle_seconds: float = Field(default=4.0, gt=0, le=300)
    recent_requests: int = Field(default=1000, ge=0, le=1_000_000)  # kept in memory
    requests_log_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)  # then rotated
    requests_log_files: int = Field(default=5, ge=1, le=100)  # the current one and rotated


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PAVEDROAD_", env_nested_delimiter="__", extra="ignore"
    )

    home: Path = Field(default_factory=lambda: Path.home() / ".pavedroad")
    database_url: str | None = None
    queue_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 7070
    base_url: str | None = None
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    yaml: YamlLimits = Field(default_factory=YamlLimits)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    token: str | None = None  # the CLI's personal access token (PAVEDROAD_TOKEN)
    # The first admin's password on first start (else `pave up` prints a sign-in link).
    admin_password: SecretStr | None = None
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    git: GitSettings = Field(default_factory=GitSettings)
    scaffolder: ScaffolderSettings = Field(default_factory=ScaffolderSettings)
    pipelines: PipelinesSettings = Field(default_factory=PipelinesSettings)
    deployments: DeploymentsSettings = Field(default_factory=DeploymentsSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    router: RouterSettings = Field(default_factory=RouterSettings)
    # Seals every secret's data key (base64 of 32 bytes); unset: $PAVEDROAD_HOME/master.key.
    master_key: SecretStr | None = None
    # Keys that were current before a rotation, while servers still hold data keys by them.
    previous_master_keys: list[SecretStr] = Field(default_factory=list)
    # Where `pave login` keeps the CLI's credentials (mode 0600).
    config_dir: Path = Field(default_factory=lambda: _user_config_dir() / "pavedroad")
    workers: int = Field(default=2, ge=1)
    max_request_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    log_level: str = "info"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlFileSource(settings_cls))

    @cached_property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'pavedroad.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def public_url(self) -> str:
        return (self.base_url or f"http://{self.host}:{self.port}").rstrip("/")

    def ensure_home(self) -> Path:
        """The home folder; created readable by its owner only (it holds the database,
        the master key and the session key)."""
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.home


class _YamlFileSource(PydanticBaseSettingsSource):
    """Reads ``pavedroad.yaml`` through the platform's safe YAML loader."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _config_file()
        if path is None:
            return {}
        if not path.is_file():
            raise ValueError(f"PAVEDROAD_CONFIG names {path}, which is not a file")
        from pavedroad.core.safeyaml import load_document

        data = load_document(path.read_bytes(), source=str(path))
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the settings file must hold a mapping")
        return data


def _user_config_dir() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def _config_file() -> Path | None:
    explicit = os.environ.get("PAVEDROAD_CONFIG")
    if explicit:
        return Path(explicit)
    candidates = [Path.cwd() / "pavedroad.yaml"]
    home = os.environ.get("PAVEDROAD_HOME")
    candidates.append(
        Path(home) / "pavedroad.yaml" if home else Path.home() / ".pavedroad" / "pavedroad.yaml"
    )
    return next((p for p in candidates if p.is_file()), None)
