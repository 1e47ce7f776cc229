"""The secrets layer at its edges: input that is not text, a cut-short ciphertext,
rotating to a key already known, and a server running while another process rotates."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from pavedroad.core.errors import ProblemError
from pavedroad.secrets.crypto import MasterKey
from pavedroad.secrets.models import SecretRow, SecretValueRow
from pavedroad.secrets.scopes import SecretScope
from pavedroad.secrets.service import Write

API = "/api/v1/secrets"
GLOBAL = SecretScope()


def test_a_value_that_is_not_valid_unicode_is_a_clear_400(app):
    """A JSON string may hold a lone surrogate (``"\\ud800"``): a clear 400, not a
    crash."""
    client = TestClient(app, raise_server_exceptions=False)
    response = client.put(
        f"{API}/LONE_SURROGATE",
        content=b'{"value": "abc\\ud800def"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert "value" in response.json()["detail"]


def test_a_truncated_sealed_value_is_an_integrity_error(app):
    """A sealed value shorter than its nonce (a broken backend, a bad restore) is an
    integrity failure like any other damaged ciphertext."""
    client = TestClient(app, raise_server_exceptions=False)
    assert client.put(f"{API}/TRUNCATED", json={"value": "a-value-to-damage"}).status_code == 200
    with app.state.db.session() as session:
        row = session.scalar(select(SecretValueRow))
        row.sealed = row.sealed[:5]
    response = client.get(f"{API}/TRUNCATED/value")
    assert response.status_code == 500
    assert response.json()["title"] == "Integrity check failed", response.text


def test_rotating_to_the_current_or_an_earlier_master_key_is_not_a_crash(app):
    """The current key is refused clearly; an earlier key may come back."""
    store = app.state.secrets
    store.set(GLOBAL, "SMTP_PASSWORD", "smtp-value", Write("root"))
    old = store.keys.current
    store.rotate_master_key()
    current = store.keys.current

    with pytest.raises(ProblemError, match="already the current one"):
        store.rotate_master_key(current)
    try:
        store.rotate_master_key(MasterKey(old.key))  # back to the key before
    except ProblemError as refused:
        assert old.id in refused.detail
    else:
        assert store.key_ids() == {old.id: 1}


def test_a_running_server_seals_new_secrets_with_the_rotated_key(make_app, make_settings):
    """After another process (``pave secrets rotate-master-key``) rotates the key file,
    a running server seals the secrets it creates with the new key, never the retired
    one."""
    settings = make_settings()
    running = make_app(settings)
    running.state.secrets.set(GLOBAL, "BEFORE", "sealed-before-rotation", Write("root"))
    rotating = make_app(make_settings())  # as the CLI does, with the same home
    rotating.state.secrets.rotate_master_key()
    new_id = rotating.state.secrets.keys.current.id

    running.state.secrets.set(GLOBAL, "AFTER", "sealed-after-rotation", Write("root"))
    with running.state.db.read_session() as session:
        rows = session.execute(select(SecretRow.name, SecretRow.key_id)).all()
    sealed_by: dict[str, Any] = {name: key_id for name, key_id in rows}
    assert sealed_by == {"BEFORE": new_id, "AFTER": new_id}
