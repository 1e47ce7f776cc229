"""The secret store behind the API: sealed values that survive a restart and a master
key rotation, a wrong or missing master key that stops the start, version pruning,
scheduled rotation with its platform event, backends from plugins, and masking of every
value the store handles in the process's logs.

Each test runs on SQLite and PostgreSQL; a "restart" is a second app built on the same
database and home after the first one's engine is disposed.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import string
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pluggy
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select, update

from pavedroad.core import events
from pavedroad.core.audit import AuditEvent
from pavedroad.core.errors import ConflictError, InputError, NotFoundError, ProblemError
from pavedroad.core.plugins import plugin_manager
from pavedroad.core.timeutil import utcnow
from pavedroad.secrets import masking
from pavedroad.secrets.crypto import MasterKey, MasterKeyError
from pavedroad.secrets.generate import Generator
from pavedroad.secrets.models import SecretRow, SecretValueRow
from pavedroad.secrets.scopes import SecretScope
from pavedroad.secrets.service import SECRET_ROTATED, Write

hookimpl = pluggy.HookimplMarker("pavedroad")

ORDERS = SecretScope.parse("orders-service", None)
ORDERS_STAGING = SecretScope.parse("orders-service", "staging")
STAGING = SecretScope.parse(None, "staging")
GLOBAL = SecretScope.parse(None, None)


def _reading(actor: str = "tester") -> AuditEvent:
    return AuditEvent(actor=actor, action="secret.read", target="", outcome="success", status=200)


def _reveal(store: Any, scope: SecretScope, name: str, version: int | None = None) -> str:
    value, _meta = store.reveal(scope, name, version, _reading())
    return value


def _fill(store: Any) -> dict[tuple[SecretScope, str, int], str]:
    """Several secrets in every kind of scope, some with several versions."""
    written: dict[tuple[SecretScope, str, int], str] = {}
    plan = [
        (GLOBAL, "SMTP_PASSWORD", ["global-one"]),
        (ORDERS, "DATABASE_PASSWORD", ["orders-v1-pw", "orders-v2-pw", "orders-v3-pw"]),
        (ORDERS_STAGING, "DATABASE_PASSWORD", ["staging-orders-pw"]),
        (STAGING, "stripe.api-key", ["sk_test_first", "sk_test_second"]),
        (ORDERS, "PEM", ["-----BEGIN KEY-----\nline-one\nline-two\n-----END KEY-----\n"]),
    ]
    for scope, name, values in plan:
        for version, value in enumerate(values, start=1):
            meta = store.set(scope, name, value, Write("tester"))
            assert meta["version"] == version
            written[(scope, name, version)] = value
    generated = store.generate(ORDERS, "API_TOKEN", Generator(length=40), Write("tester"))
    written[(ORDERS, "API_TOKEN", generated["version"])] = _reveal(store, ORDERS, "API_TOKEN")
    return written


def _assert_reads_back(store: Any, written: dict[tuple[SecretScope, str, int], str]) -> None:
    for (scope, name, version), value in written.items():
        assert _reveal(store, scope, name, version) == value, (scope, name, version)
    latest: dict[tuple[SecretScope, str], int] = {}
    for scope, name, version in written:
        latest[(scope, name)] = max(version, latest.get((scope, name), 0))
    for (scope, name), version in latest.items():
        assert _reveal(store, scope, name) == written[(scope, name, version)]


def _restart(make_app: Any, app: Any, settings: Any) -> Any:
    app.state.db.dispose()
    return make_app(settings)


# -- restart and master key rotation ---------------------------------------------------------


def test_a_restart_with_the_same_master_key_reads_every_secret_back(make_app, make_settings):
    settings = make_settings()
    first = make_app(settings)
    written = _fill(first.state.secrets)
    key_file = settings.home / "master.key"
    assert key_file.is_file() and (key_file.stat().st_mode & 0o777) == 0o600
    key_text = key_file.read_text()
    with first.state.db.read_session() as session:
        stored = b"".join(session.scalars(select(SecretValueRow.sealed)))
    for value in written.values():  # sealed, not stored as given
        assert value.encode() not in stored

    second = _restart(make_app, first, make_settings())
    _assert_reads_back(second.state.secrets, written)
    assert key_file.read_text() == key_text  # the restart did not make a new key


def test_rotating_the_key_file_keeps_every_secret_readable_across_a_restart(
    make_app, make_settings
):
    settings = make_settings()
    app = make_app(settings)
    store = app.state.secrets
    written = _fill(store)
    key_file = settings.home / "master.key"
    old = MasterKey.parse(key_file.read_text(), "old key")
    secrets_count = len({(scope, name) for scope, name, _v in written})
    assert store.key_ids() == {old.id: secrets_count}

    assert store.rotate_master_key() == secrets_count
    new = MasterKey.parse(key_file.read_text(), "new key")
    assert new.id != old.id
    assert (key_file.stat().st_mode & 0o777) == 0o600
    kept = settings.home / "keys" / f"{old.id}.key"
    assert MasterKey.parse(kept.read_text(), "kept key") == old
    assert (kept.stat().st_mode & 0o777) == 0o600
    assert store.key_ids() == {new.id: secrets_count}
    _assert_reads_back(store, written)  # the running server goes on reading
    store.set(ORDERS, "AFTER_ROTATION", "written-after-rotation", Write("tester"))
    written[(ORDERS, "AFTER_ROTATION", 1)] = "written-after-rotation"

    restarted = _restart(make_app, app, make_settings())
    _assert_reads_back(restarted.state.secrets, written)
    assert restarted.state.secrets.key_ids() == {new.id: secrets_count + 1}


def test_a_running_server_reads_on_after_another_process_rotates_the_key_file(
    make_app, make_settings
):
    running = make_app(make_settings())
    written = _fill(running.state.secrets)
    rotating = make_app(make_settings())  # another process on the same home and database
    assert rotating.state.secrets.rotate_master_key() == 6
    new_id = rotating.state.secrets.keys.current.id
    _assert_reads_back(running.state.secrets, written)  # it finds the new key file
    assert running.state.secrets.keys.current.id == new_id


def test_the_cli_rotates_the_master_key_of_a_stopped_server(make_app, make_settings, isolated_env):
    settings = make_settings()
    app = make_app(settings)
    written = _fill(app.state.secrets)
    old = app.state.secrets.keys.current
    app.state.db.dispose()

    env = {k: v for k, v in os.environ.items() if not k.startswith("PAVEDROAD_")}
    env |= {
        "PAVEDROAD_HOME": str(settings.home),
        "PAVEDROAD_DATABASE_URL": settings.resolved_database_url,
        "PAVEDROAD_CONFIG": str(isolated_env),
    }
    pave = Path(sys.executable).with_name("pave")
    done = subprocess.run(
        [str(pave), "secrets", "rotate-master-key"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    new = MasterKey.parse((settings.home / "master.key").read_text(), "new key")
    assert new.id != old.id
    assert f"re-sealed 6 data keys: master key {old.id} → {new.id}" in done.stdout
    assert (settings.home / "keys" / f"{old.id}.key").is_file()

    restarted = make_app(make_settings())
    assert restarted.state.secrets.key_ids() == {new.id: 6}
    _assert_reads_back(restarted.state.secrets, written)


def test_rotating_a_master_key_given_in_the_environment(make_app, make_settings):
    old, new = MasterKey.generate(), MasterKey.generate()

    def settings_with(current: MasterKey, *previous: MasterKey) -> Any:
        settings = make_settings()
        settings.master_key = SecretStr(current.encoded())
        settings.previous_master_keys = [SecretStr(k.encoded()) for k in previous]
        return settings

    app = make_app(settings_with(old))
    store = app.state.secrets
    written = _fill(store)
    home = app.state.settings.home
    assert not (home / "master.key").exists()  # the key lives in the environment only
    assert store.rotate_master_key(new) == 6
    assert store.key_ids() == {new.id: 6}
    assert not (home / "master.key").exists() and not (home / "keys").exists()
    _assert_reads_back(store, written)

    app = _restart(make_app, app, settings_with(new, old))
    _assert_reads_back(app.state.secrets, written)
    app = _restart(make_app, app, settings_with(new))  # every data key is re-sealed
    _assert_reads_back(app.state.secrets, written)

    app.state.db.dispose()
    with pytest.raises(MasterKeyError) as refused:  # the operator forgot to switch
        make_app(settings_with(old))
    assert old.id in refused.value.detail and new.id in refused.value.detail


# -- a wrong or missing master key stops the start ------------------------------------------


def test_a_replaced_key_file_stops_the_start_naming_both_keys(make_app, make_settings):
    settings = make_settings()
    app = make_app(settings)
    app.state.secrets.set(ORDERS, "DATABASE_PASSWORD", "sealed-by-the-first-key", Write("t"))
    sealed_by = app.state.secrets.keys.current.id
    app.state.db.dispose()

    other = MasterKey.generate()
    (settings.home / "master.key").write_text(other.encoded() + "\n")
    with pytest.raises(MasterKeyError) as refused:
        make_app(make_settings())
    message = refused.value.detail
    assert sealed_by in message and other.id in message
    assert "not the one the stored secrets were sealed with" in message
    assert "sealed-by-the-first-key" not in message


def test_a_different_master_key_setting_stops_the_start_naming_both_keys(make_app, make_settings):
    sealing = MasterKey.generate()
    settings = make_settings()
    settings.master_key = SecretStr(sealing.encoded())
    app = make_app(settings)
    app.state.secrets.set(GLOBAL, "SMTP_PASSWORD", "smtp-secret-value", Write("t"))
    app.state.db.dispose()

    wrong = MasterKey.generate()
    settings = make_settings()
    settings.master_key = SecretStr(wrong.encoded())
    with pytest.raises(MasterKeyError) as refused:
        make_app(settings)
    assert sealing.id in refused.value.detail and wrong.id in refused.value.detail
    assert "PAVEDROAD_MASTER_KEY" in refused.value.detail

    settings.master_key = SecretStr("not-a-key")
    with pytest.raises(MasterKeyError, match="base64 of 32 bytes"):
        make_app(settings)


def test_a_missing_key_file_stops_the_start_once_secrets_exist(make_app, make_settings):
    settings = make_settings()
    app = make_app(settings)
    app.state.secrets.set(ORDERS, "DATABASE_PASSWORD", "needs-the-key-file", Write("t"))
    app.state.db.dispose()
    key_file = settings.home / "master.key"
    key_file.unlink()

    with pytest.raises(MasterKeyError) as refused:
        make_app(make_settings())
    assert str(key_file) in refused.value.detail and "missing" in refused.value.detail
    assert not key_file.exists()  # no new key was made to seal over the old secrets


# -- versions, check-and-set, rollback ------------------------------------------------------


def test_check_and_set_refuses_a_stale_or_missing_version(app):
    store = app.state.secrets
    store.set(ORDERS, "TOKEN", "first-value", Write("bob", expected_version=0))
    with pytest.raises(ConflictError, match="at version 1, not 0"):
        store.set(ORDERS, "TOKEN", "second-value", Write("carol", expected_version=0))
    with pytest.raises(ConflictError, match="does not exist"):
        store.set(ORDERS, "OTHER", "some-value", Write("bob", expected_version=2))
    store.set(ORDERS, "TOKEN", "second-value", Write("bob", expected_version=1))
    with pytest.raises(ConflictError) as stale:
        store.set(ORDERS, "TOKEN", "third-value", Write("carol", expected_version=1))
    assert stale.value.extensions == {"currentVersion": 2}
    assert _reveal(store, ORDERS, "TOKEN") == "second-value"
    assert store.metadata(ORDERS, "TOKEN")["updatedBy"] == "bob"


def test_only_the_last_versions_are_kept(make_app, make_settings):
    settings = make_settings()
    settings.secrets.versions_kept = 3
    app = make_app(settings)
    store = app.state.secrets
    for n in range(1, 6):
        store.set(ORDERS, "ROTATED_BY_HAND", f"value-number-{n}", Write("bob"))

    history = store.history(ORDERS, "ROTATED_BY_HAND")
    assert [v["version"] for v in history] == [5, 4, 3]
    assert [v["current"] for v in history] == [True, False, False]
    with app.state.db.read_session() as session:
        assert session.scalar(select(func.count()).select_from(SecretValueRow)) == 3
    assert _reveal(store, ORDERS, "ROTATED_BY_HAND", 3) == "value-number-3"
    with pytest.raises(NotFoundError) as pruned:
        _reveal(store, ORDERS, "ROTATED_BY_HAND", 1)
    assert "has no version 1" in pruned.value.detail
    assert "versions 1 to 5 existed and the last 3 are kept" in pruned.value.detail
    with pytest.raises(NotFoundError, match="has no version 2"):
        store.rollback(ORDERS, "ROTATED_BY_HAND", 2, Write("bob"))

    meta = store.rollback(ORDERS, "ROTATED_BY_HAND", 3, Write("bob"))
    assert meta["version"] == 6
    assert _reveal(store, ORDERS, "ROTATED_BY_HAND") == "value-number-3"
    assert store.history(ORDERS, "ROTATED_BY_HAND")[0]["origin"] == "rollback"
    assert [v["version"] for v in store.history(ORDERS, "ROTATED_BY_HAND")] == [6, 5, 4]


# -- generated values and scheduled rotation -------------------------------------------------


ALPHANUMERIC = set(string.ascii_letters + string.digits)


def _hex_of(size: int) -> Any:
    return lambda v: len(v) == 2 * size and bytes.fromhex(v) and v == v.lower()


def _base64_of(size: int) -> Any:
    return lambda v: len(base64.b64decode(v, validate=True)) == size


def _base64url_of(size: int) -> Any:
    return lambda v: len(base64.urlsafe_b64decode(v)) == size and not set(v) & {"+", "/"}


@pytest.mark.parametrize(
    ("generator", "check"),
    [
        (Generator(length=50), lambda v: len(v) == 50 and set(v) <= ALPHANUMERIC),
        (Generator(length=12, alphabet="digits"), lambda v: len(v) == 12 and v.isdigit()),
        (Generator(length=64, alphabet="xyz"), lambda v: len(v) == 64 and set(v) <= set("xyz")),
        (Generator(bytes=16, encoding="hex"), _hex_of(16)),
        (Generator(bytes=30, encoding="base64"), _base64_of(30)),
        (Generator(bytes=32, encoding="base64url"), _base64url_of(32)),
    ],
    ids=["alphanumeric", "digits", "own-alphabet", "hex-bytes", "base64-bytes", "base64url-bytes"],
)
def test_generated_values_follow_the_generator(app, generator, check):
    store = app.state.secrets
    store.generate(ORDERS, "GENERATED", generator, Write("bob"))
    first = _reveal(store, ORDERS, "GENERATED")
    assert check(first), first
    store.rotate(ORDERS, "GENERATED", "bob")
    second = _reveal(store, ORDERS, "GENERATED")
    assert check(second) and second != first


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"length": 4}, "8 to 4096 characters"),
        ({"length": 5000}, "8 to 4096 characters"),
        ({"alphabet": "aaaa"}, "at least two different characters"),
        ({"bytes": 4}, "8 to 4096 random bytes"),
        ({"bytes": 16, "encoding": "base32"}, "encoding must be"),
    ],
)
def test_bad_generators_are_refused(arguments, message):
    with pytest.raises(InputError, match=message):
        Generator(**arguments)


class EventListener:
    def __init__(self) -> None:
        self.seen: list[events.Event] = []

    @hookimpl
    def pavedroad_event(self, event: events.Event) -> None:
        self.seen.append(event)


def _make_due(app: Any, name: str) -> None:
    with app.state.db.session() as session:
        session.execute(
            update(SecretRow)
            .where(SecretRow.name == name)
            .values(rotation_due_at=utcnow() - timedelta(minutes=1))
        )


def test_due_rotations_make_a_new_value_and_announce_it(app):
    store = app.state.secrets
    store.generate(ORDERS_STAGING, "DB_PASSWORD", Generator(length=24), Write("bob"), "30d")
    store.generate(ORDERS, "NOT_DUE", Generator(length=24), Write("bob"), "30d")
    store.set(ORDERS, "BY_HAND", "set-by-hand-value", Write("bob"), rotate_every="1d")
    before = _reveal(store, ORDERS_STAGING, "DB_PASSWORD")
    not_due = _reveal(store, ORDERS, "NOT_DUE")
    assert store.metadata(ORDERS_STAGING, "DB_PASSWORD")["rotationOverdue"] is False
    _make_due(app, "DB_PASSWORD")
    _make_due(app, "BY_HAND")
    assert store.metadata(ORDERS_STAGING, "DB_PASSWORD")["rotationOverdue"] is True

    listener = EventListener()
    plugin_manager().register(listener)
    try:
        assert store.rotate_due() == 1
    finally:
        plugin_manager().unregister(listener)

    after = _reveal(store, ORDERS_STAGING, "DB_PASSWORD")
    assert after != before and len(after) == 24
    meta = store.metadata(ORDERS_STAGING, "DB_PASSWORD")
    assert meta["version"] == 2 and meta["rotationOverdue"] is False
    assert meta["rotationDueAt"] > utcnow().isoformat()[:10]
    assert store.history(ORDERS_STAGING, "DB_PASSWORD")[0]["origin"] == "rotated"
    assert store.history(ORDERS_STAGING, "DB_PASSWORD")[0]["createdBy"] == "system:rotation"
    assert _reveal(store, ORDERS, "NOT_DUE") == not_due

    recorded = events.since(app.state.db, type=SECRET_ROTATED)
    assert len(recorded) == 1
    expected = {
        "entity": "component:default/orders-service",
        "environment": "staging",
        "name": "DB_PASSWORD",
        "version": 2,
        "by": "system:rotation",
    }
    assert recorded[0].data == expected
    assert [e.data for e in listener.seen] == [expected]
    assert listener.seen[0].id == recorded[0].id
    assert before not in str(recorded[0].as_dict()) and after not in str(recorded[0].as_dict())

    # A value set by hand is never replaced by a generated one: it is only reported overdue.
    hand = store.metadata(ORDERS, "BY_HAND")
    assert hand["version"] == 1 and hand["rotationOverdue"] is True
    assert hand["rotateEvery"] == "1d" and hand["generated"] is False
    with pytest.raises(InputError, match="set by hand"):
        store.rotate(ORDERS, "BY_HAND", "bob")
    assert store.rotate_due() == 0


def test_rotating_through_the_store_emits_the_event_too(app):
    store = app.state.secrets
    store.generate(GLOBAL, "SIGNING_KEY", Generator(bytes=32, encoding="hex"), Write("root"))
    store.rotate(GLOBAL, "SIGNING_KEY", "root")
    (event,) = events.since(app.state.db, type=SECRET_ROTATED)
    assert event.data == {
        "entity": None,
        "environment": None,
        "name": "SIGNING_KEY",
        "version": 2,
        "by": "root",
    }


# -- backends --------------------------------------------------------------------------------


class MemoryBackend:
    name = "memory"

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def put(self, address: str, sealed: bytes, session: Any) -> None:
        self.blobs[address] = sealed

    def get(self, address: str, session: Any) -> bytes | None:
        return self.blobs.get(address)

    def delete(self, addresses: list[str], session: Any) -> None:
        for address in addresses:
            self.blobs.pop(address, None)


class MemoryBackendPlugin:
    def __init__(self, backend: MemoryBackend) -> None:
        self.backend = backend

    @hookimpl
    def pavedroad_secret_backends(self, settings: Any) -> list[Any]:
        return [self.backend]


def test_a_plugin_backend_keeps_the_sealed_values(make_app, make_settings):
    backend = MemoryBackend()
    plugin = MemoryBackendPlugin(backend)
    plugin_manager().register(plugin)
    try:
        settings = make_settings()
        settings.secrets.backend = "memory"
        settings.secrets.versions_kept = 2
        app = make_app(settings)
        store = app.state.secrets
        for value in ("memory-value-one", "memory-value-two", "memory-value-three"):
            meta = store.set(ORDERS, "IN_MEMORY", value, Write("bob"))
        assert meta["backend"] == "memory"
        assert _reveal(store, ORDERS, "IN_MEMORY") == "memory-value-three"
        assert _reveal(store, ORDERS, "IN_MEMORY", 2) == "memory-value-two"

        assert len(backend.blobs) == 2  # version 1 was pruned from the backend too
        assert sorted(a.rsplit("/", 1)[1] for a in backend.blobs) == ["2", "3"]
        kept = b"".join(backend.blobs.values())
        assert b"memory-value" not in kept
        with app.state.db.read_session() as session:
            assert session.scalar(select(func.count()).select_from(SecretValueRow)) == 0
    finally:
        plugin_manager().unregister(plugin)


def test_an_unknown_backend_stops_the_start_naming_the_offered_ones(make_app, make_settings):
    settings = make_settings()
    settings.secrets.backend = "vault"
    with pytest.raises(ProblemError) as refused:
        make_app(settings)
    assert refused.value.detail == (
        "secrets.backend is 'vault', but the installed plugins offer only database"
    )


# -- masking of what the store handled -------------------------------------------------------


@pytest.fixture
def masked_log(monkeypatch):
    """A logger writing to a StringIO, masked by a fresh process masker."""
    fresh = masking.Masker()
    monkeypatch.setattr(masking, "_PROCESS_MASKER", fresh)
    logger = logging.getLogger(f"tests.secrets.masking.{id(fresh)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    masking.install_log_masking(masking.process_masker(), logger)
    yield logger, output
    logger.removeHandler(handler)


def _log_every_form(logger: logging.Logger, value: str) -> None:
    logger.info("plain: %s", value)
    logger.info("base64: %s", base64.b64encode(value.encode()).decode())
    logger.warning("in a sentence: connecting with password=%s;", value)
    try:
        raise RuntimeError(f"could not connect with {value}")
    except RuntimeError:
        logger.exception("failed")


def test_values_the_store_sets_are_masked_in_logs(app, masked_log):
    logger, output = masked_log
    value = "set-value-Zq81-never-logged"
    app.state.secrets.set(ORDERS, "MASKED", value, Write("bob"))
    _log_every_form(logger, value)
    text = output.getvalue()
    assert value not in text and base64.b64encode(value.encode()).decode() not in text
    assert text.count("***") >= 4 and "Traceback" in text and "RuntimeError" in text


def test_values_the_store_reveals_are_masked_in_logs(app, masked_log, monkeypatch):
    logger, output = masked_log
    value = "revealed-value-Pw7-never-logged"
    app.state.secrets.set(ORDERS, "MASKED", value, Write("bob"))
    # As if another process had set it: this process's masker has not seen the value yet.
    monkeypatch.setattr(masking, "_PROCESS_MASKER", masking.Masker())
    masking.install_log_masking(masking.process_masker(), logger)
    assert masking.process_masker().mask(value) == value
    assert _reveal(app.state.secrets, ORDERS, "MASKED") == value
    _log_every_form(logger, value)
    text = output.getvalue()
    assert value not in text and base64.b64encode(value.encode()).decode() not in text
    assert text.count("***") >= 4 and "Traceback" in text
