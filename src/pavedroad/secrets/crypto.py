"""Envelope encryption: AES-256-GCM data keys, wrapped by a master key.

Each secret has its own random data key; every version of its value is sealed with
that key (a fresh nonce each time, the secret's id and version as associated data, so a
ciphertext cannot be moved to another secret or version). The data key is stored
wrapped by the master key, with the master key's id beside it. Rotating the master key
re-wraps the data keys only; values are never re-encrypted.

The master key comes from ``PAVEDROAD_MASTER_KEY`` (base64 of 32 bytes) or from
``$PAVEDROAD_HOME/master.key`` (created with mode 0600 on first start). Keys that
were current before a rotation are kept under ``$PAVEDROAD_HOME/keys/<id>.key`` (or
given in ``PAVEDROAD_PREVIOUS_MASTER_KEYS``) so data keys wrapped by them still open;
a running server that meets a key id it does not know reads the key files again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pavedroad.core.errors import InputError, ProblemError

KEY_BYTES = 32
NONCE_BYTES = 12
MASTER_KEY_FILE = "master.key"
OLD_KEYS_DIR = "keys"


class MasterKeyError(ProblemError):
    """The master key is missing, malformed or not the one the secrets were sealed with:
    the platform refuses to start rather than read garbage."""

    status = 500
    title = "Master key problem"
    type_slug = "master-key"


class TamperedError(ProblemError):
    status = 500
    title = "Integrity check failed"
    type_slug = "integrity-check-failed"


@dataclass(frozen=True)
class MasterKey:
    key: bytes

    @property
    def id(self) -> str:
        return hashlib.sha256(b"pavedroad-master-key:" + self.key).hexdigest()[:16]

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(AESGCM.generate_key(bit_length=256))

    @classmethod
    def parse(cls, text: str, source: str) -> MasterKey:
        try:
            key = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != KEY_BYTES:
            raise MasterKeyError(
                f"{source} is not a master key: it must be the base64 of 32 bytes "
                "(make one with `pave secret new-master-key`)"
            )
        return cls(key)

    def encoded(self) -> str:
        return base64.urlsafe_b64encode(self.key).decode()


@dataclass(frozen=True)
class Sealed:
    nonce: bytes
    ciphertext: bytes

    def to_bytes(self) -> bytes:
        """The stored form: the nonce, then the ciphertext."""
        return self.nonce + self.ciphertext

    @classmethod
    def from_bytes(cls, blob: bytes) -> Sealed:
        return cls(blob[:NONCE_BYTES], blob[NONCE_BYTES:])


def seal(key: bytes, plaintext: bytes, context: bytes) -> Sealed:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return Sealed(nonce, AESGCM(key).encrypt(nonce, plaintext, context))


def unseal(key: bytes, sealed: Sealed, context: bytes, what: str) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, context)
    except (InvalidTag, ValueError):  # ValueError: cut short, no whole nonce left
        raise TamperedError(
            f"{what} failed its integrity check: the stored ciphertext was changed or "
            "belongs elsewhere; restore it from a backup or set a new value"
        ) from None


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


class KeyRing:
    """The current master key and the earlier ones, by id."""

    def __init__(
        self, home: Path, configured: str | None, previous: list[str], *, create: bool
    ) -> None:
        """``create``: make a key file if there is none (only while nothing is sealed)."""
        self.home = home
        self.configured = configured
        self.previous = previous
        self._lock = threading.Lock()
        self.current, self._keys = self._load(create=create)
        self._stamp = _stamp(home / MASTER_KEY_FILE)

    @property
    def from_environment(self) -> bool:
        return self.configured is not None

    def _load(self, create: bool) -> tuple[MasterKey, dict[str, MasterKey]]:
        keys: dict[str, MasterKey] = {}
        for index, text in enumerate(self.previous):
            key = MasterKey.parse(text, f"PAVEDROAD_PREVIOUS_MASTER_KEYS[{index}]")
            keys[key.id] = key
        old = self.home / OLD_KEYS_DIR
        if old.is_dir():
            for path in sorted(old.glob("*.key")):
                key = MasterKey.parse(path.read_text(), str(path))
                keys[key.id] = key
        if self.configured is not None:
            current = MasterKey.parse(self.configured, "PAVEDROAD_MASTER_KEY")
        else:
            current = self._key_file(create)
        keys[current.id] = current
        return current, keys

    def _key_file(self, create: bool) -> MasterKey:
        path = self.home / MASTER_KEY_FILE
        if not path.exists() and create:
            write_key_file(path, MasterKey.generate())
        if not path.is_file():
            raise MasterKeyError(
                f"the master key file {path} is missing, and secrets sealed with a master "
                "key exist: restore the file or set PAVEDROAD_MASTER_KEY"
            )
        return MasterKey.parse(path.read_text(), str(path))

    def has(self, key_id: str) -> bool:
        return key_id in self._keys

    def get(self, key_id: str) -> MasterKey:
        """The key with this id; the key files are read again once if it is unknown
        (another process rotated the master key)."""
        key = self._keys.get(key_id)
        if key is None:
            with self._lock:
                self.current, self._keys = self._load(create=False)
                self._stamp = _stamp(self.home / MASTER_KEY_FILE)
            key = self._keys.get(key_id)
        if key is None:
            raise MasterKeyError(
                f"no master key with id {key_id} is available: set PAVEDROAD_MASTER_KEY "
                f"(or restore {self.home / MASTER_KEY_FILE}) to the key the secrets were "
                "sealed with"
            )
        return key

    def install(self, new: MasterKey) -> None:
        """Make ``new`` the current key. In file mode it replaces ``master.key`` and the
        old one is kept in ``keys/`` first, so nothing sealed by it becomes unreadable,
        and running servers find the new one when they meet its id. With the key in
        ``PAVEDROAD_MASTER_KEY`` the change is this process's only: the operator then
        sets the new key there and the old one in ``PAVEDROAD_PREVIOUS_MASTER_KEYS``."""
        self.refresh()
        if new.id == self.current.id:
            raise InputError(f"the master key {new.id} is already the current one")
        if self.from_environment:
            with self._lock:
                self._keys[new.id] = new
                self.current = new
            return
        for key in (self.current, new):  # an earlier key may come back: keep, not rewrite
            kept = self.home / OLD_KEYS_DIR / f"{key.id}.key"
            if not kept.exists():
                write_key_file(kept, key)
        replace_key_file(self.home / MASTER_KEY_FILE, new)
        self.refresh()

    def refresh(self) -> None:
        """Read the key file again if it changed (another process rotated the key), so
        nothing new is sealed with a key that is being retired."""
        if self.from_environment:
            return
        stamp = _stamp(self.home / MASTER_KEY_FILE)
        if stamp != self._stamp:
            with self._lock:
                self.current, self._keys = self._load(create=False)
                self._stamp = stamp

    def wrap(self, data_key: bytes, context: bytes) -> tuple[str, Sealed]:
        self.refresh()
        return self.current.id, seal(self.current.key, data_key, context)

    def unwrap(self, key_id: str, sealed: Sealed, context: bytes, what: str) -> bytes:
        return unseal(self.get(key_id).key, sealed, context, what)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_mtime_ns, status.st_ino


def write_key_file(path: Path, key: MasterKey) -> None:
    """Create a key file readable by its owner only (never overwrite one)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key.encoded() + "\n")


def replace_key_file(path: Path, key: MasterKey) -> None:
    """Atomically replace a key file (write beside it, then rename)."""
    staged = path.with_name(path.name + ".new")
    staged.unlink(missing_ok=True)
    write_key_file(staged, key)
    os.replace(staged, path)
