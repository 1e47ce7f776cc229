"""Signing the CLI in through the browser (a device authorization grant, as in RFC 8628).

``pave login`` asks for a grant and shows a short user code; the user opens
``/device`` in a signed-in browser, checks the code and approves; the CLI, polling
meanwhile, then receives a new personal access token of that user, once. Only hashes
of the device code are kept, and a grant lives ten minutes.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from pydantic import BaseModel, Field
from sqlalchemy import DateTime, String, select, update
from sqlalchemy.orm import Mapped, mapped_column
from starlette.responses import JSONResponse, RedirectResponse, Response

from pavedroad.core.db import Base, Database
from pavedroad.core.errors import ProblemError
from pavedroad.core.ids import new_id
from pavedroad.core.timeutil import as_utc, utcnow
from pavedroad.identity.service import IdentityService, secret_digest
from pavedroad.portal.templating import add_template_directory, render

GRANT_LIFETIME = timedelta(minutes=10)
POLL_INTERVAL_SECONDS = 2
TOKEN_LIFETIME = timedelta(days=90)
# No 0/O, 1/I/L: the code is read off one screen and typed into another.
USER_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"

router = APIRouter(tags=["identity"])
add_template_directory(Path(__file__).parent / "templates")


class DeviceGrantRow(Base):
    __tablename__ = "identity_device_grants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    device_code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_code: Mapped[str] = mapped_column(String(9), unique=True)
    client_name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # approved / denied by an account; consumed once the token has been handed out
    approved_by: Mapped[str | None] = mapped_column(String(63), nullable=True)
    denied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    consumed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class GrantPending(ProblemError):
    status = 400
    title = "Authorization pending"
    type_slug = "authorization-pending"


class GrantRefused(ProblemError):
    status = 403
    title = "Access denied"
    type_slug = "access-denied"


class GrantExpired(ProblemError):
    status = 410
    title = "Expired"
    type_slug = "expired-token"


@dataclass(frozen=True)
class DeviceGrant:
    device_code: str
    user_code: str
    expires_in: int


class DeviceGrants:
    def __init__(self, db: Database, identity: IdentityService) -> None:
        self.db = db
        self.identity = identity

    def start(self, client_name: str) -> DeviceGrant:
        device_code = secrets.token_urlsafe(32)
        raw = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
        user_code = f"{raw[:4]}-{raw[4:]}"
        now = utcnow()
        with self.db.session() as session:
            session.add(
                DeviceGrantRow(
                    id=new_id(),
                    device_code_hash=secret_digest(device_code),
                    user_code=user_code,
                    client_name=client_name[:100],
                    created_at=now,
                    expires_at=now + GRANT_LIFETIME,
                )
            )
        return DeviceGrant(device_code, user_code, int(GRANT_LIFETIME.total_seconds()))

    def pending(self, user_code: str) -> DeviceGrantRow | None:
        """The live, undecided grant with this user code."""
        code = normalise_user_code(user_code)
        with self.db.read_session() as session:
            row = session.scalar(select(DeviceGrantRow).where(DeviceGrantRow.user_code == code))
        if (
            row is None
            or row.approved_by is not None
            or row.denied_at is not None
            or as_utc(row.expires_at) <= utcnow()
        ):
            return None
        return row

    def decide(self, user_code: str, account: str, approve: bool) -> bool:
        """Approve or deny a pending grant; False if there is none with this code."""
        row = self.pending(user_code)
        if row is None:
            return False
        values: dict[str, Any] = (
            {"approved_by": account.lower()} if approve else {"denied_at": utcnow()}
        )
        with self.db.session() as session:
            result = session.execute(
                update(DeviceGrantRow)
                .where(
                    DeviceGrantRow.id == row.id,
                    DeviceGrantRow.approved_by.is_(None),
                    DeviceGrantRow.denied_at.is_(None),
                )
                .values(**values)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def redeem(self, device_code: str) -> tuple[dict[str, Any], str]:
        """The token for an approved grant, handed out once; raises while pending, after
        a denial, on expiry, or when it was handed out already."""
        with self.db.read_session() as session:
            row = session.scalar(
                select(DeviceGrantRow).where(
                    DeviceGrantRow.device_code_hash == secret_digest(device_code)
                )
            )
        if row is None or row.consumed_at is not None:
            raise GrantRefused("this device code is unknown or was used already; log in again")
        if row.denied_at is not None:
            raise GrantRefused("the sign-in was denied in the browser")
        if row.approved_by is None:
            if as_utc(row.expires_at) <= utcnow():
                raise GrantExpired("the code expired before it was approved; log in again")
            raise GrantPending("waiting for approval in the browser")
        with self.db.session() as session:
            claimed = session.execute(
                update(DeviceGrantRow)
                .where(DeviceGrantRow.id == row.id, DeviceGrantRow.consumed_at.is_(None))
                .values(consumed_at=utcnow())
            )
            if not claimed.rowcount:  # type: ignore[attr-defined]
                raise GrantRefused("this device code was used already; log in again")
        return self.identity.create_token(
            row.approved_by, row.client_name, ["read", "write"], TOKEN_LIFETIME
        )


def normalise_user_code(text: str) -> str:
    raw = "".join(c for c in text.upper() if c.isalnum())
    return f"{raw[:4]}-{raw[4:8]}" if len(raw) == 8 else text.strip().upper()[:9]


def _grants(request: Request) -> DeviceGrants:
    return DeviceGrants(request.app.state.db, request.app.state.identity)


# -- the CLI's side: start a grant, then poll -------------------------------------------------


class DeviceStart(BaseModel):
    clientName: str = Field(default="pave CLI", min_length=1, max_length=100)


class DevicePoll(BaseModel):
    deviceCode: str = Field(min_length=1, max_length=200)


@router.post("/api/v1/identity/device", status_code=201, summary="Start signing a CLI in")
def start_device_grant(request: Request, body: DeviceStart) -> dict[str, Any]:
    grant = _grants(request).start(body.clientName)
    base = request.app.state.settings.public_url
    return {
        "deviceCode": grant.device_code,
        "userCode": grant.user_code,
        "verificationUri": f"{base}/device",
        "verificationUriComplete": f"{base}/device?code={grant.user_code}",
        "expiresIn": grant.expires_in,
        "interval": POLL_INTERVAL_SECONDS,
    }


@router.post(
    "/api/v1/identity/device/token",
    summary="Collect the token once the grant is approved (400 while pending)",
    name="identity.device.redeem",
)
def redeem_device_grant(request: Request, body: DevicePoll) -> Response:
    info, secret = _grants(request).redeem(body.deviceCode)
    request.state.actor_name = info["account"]
    request.state.audit_target = f"token:{info['id']}"
    return JSONResponse({**info, "secret": secret})


# -- the browser's side: check the code, approve or deny ------------------------------------


@router.get("/device", include_in_schema=False)
def device_page(request: Request, code: str = "") -> Response:
    grant = _grants(request).pending(code) if code else None
    return render(
        request,
        "identity/device.html",
        {"title": "Sign in a device", "code": code[:20], "grant": grant, "done": None},
    )


@router.post("/device", include_in_schema=False, name="identity.device.decide")
def decide_device(
    request: Request,
    code: Annotated[str, Form(max_length=20)],
    decision: Annotated[str, Form(pattern="^(approve|deny)$")],
) -> Response:
    actor = request.state.actor
    if actor is None:  # only with sign-in turned off: nobody to issue a token for
        return RedirectResponse("/sign-in", status_code=303)
    request.state.audit_target = f"device code {normalise_user_code(code)} {decision}"
    decided = _grants(request).decide(code, actor.name, decision == "approve")
    return render(
        request,
        "identity/device.html",
        {
            "title": "Sign in a device",
            "code": code,
            "grant": None,
            "done": decision if decided else "unknown",
        },
        status_code=200 if decided else 404,
    )
