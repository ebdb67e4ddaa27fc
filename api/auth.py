"""API keys: created by `openscholar keys create`, stored only as SHA-256 hashes in a small SQLite file.

A key is ``osk_`` + 32 random URL-safe bytes; the store keeps its hash, a name and whether it was
revoked, in a file only its owner may read (0600; SQLite gives its journal files the same mode). Lookups are cached for a few seconds so the hot path (every request) costs no disk read.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from api.errors import Unauthorized
from openscholar.settings import Settings

KEY_PREFIX = "osk_"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a key's name (jobs and rate limits are per key)."""

    name: str
    key_hash: str
    admin: bool = False

    @property
    def owner(self) -> str:
        """What jobs and batches are filed under: the key itself (by hash), not its reusable name."""
        return self.key_hash[:32] if self.key_hash else self.name


def _private(path: Path) -> None:
    """Create the keys file readable by its owner only (0600), and tighten one created before."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def keys_db_path(settings: Settings) -> Path:
    return (settings.service.keys_db or settings.cache_path / "api_keys.sqlite").expanduser()


class KeyStore:
    """Hashed API keys in SQLite."""

    def __init__(self, path: Path, cache_s: float = 5.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _private(self.path)
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._cache_s = cache_s
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS keys (hash TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL, "
                "revoked INTEGER NOT NULL DEFAULT 0)"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    def create(self, name: str) -> str:
        """A new key for ``name``; the only time the plain key is seen."""
        if not name.strip():
            raise ValueError("a key needs a name")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self._connect() as db:
            db.execute("INSERT INTO keys VALUES (?, ?, ?, 0)", (hash_key(key), name.strip(), time.time()))
        return key

    def revoke(self, name: str) -> int:
        with self._connect() as db:
            n = db.execute("UPDATE keys SET revoked = 1 WHERE name = ? AND revoked = 0", (name,)).rowcount
        with self._lock:
            self._cache.clear()
        return n

    def list(self) -> list[dict[str, object]]:
        with self._connect() as db:
            rows = db.execute("SELECT name, created, revoked, substr(hash, 1, 12) FROM keys ORDER BY created").fetchall()
        return [{"name": n, "created": c, "revoked": bool(r), "hash_prefix": h} for n, c, r, h in rows]

    def lookup(self, key: str) -> Principal | None:
        digest = hash_key(key)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
            if hit is not None and now - hit[0] < self._cache_s:
                return hit[1]
        with self._connect() as db:
            row = db.execute("SELECT name FROM keys WHERE hash = ? AND revoked = 0", (digest,)).fetchone()
        principal = Principal(name=row[0], key_hash=digest) if row else None
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now, principal)
        return principal


class Authenticator:
    """Checks ``Authorization: Bearer KEY`` against the key store (and the optional admin token)."""

    def __init__(self, settings: Settings) -> None:
        self.required = settings.service.auth_required
        self.admin = settings.service.admin_token.get_secret_value()
        self.keys = KeyStore(keys_db_path(settings))

    def __call__(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token:
            if self.admin and hmac.compare_digest(token.encode(), self.admin.encode()):
                return Principal(name="admin", key_hash=hash_key(token), admin=True)
            principal = self.keys.lookup(token)
            if principal is not None:
                return principal
            if self.required:
                raise Unauthorized("the API key is not valid", hint="create one with `openscholar keys create NAME`")
        if not self.required:
            return Principal(name="anonymous", key_hash="")
        raise Unauthorized(
            "an API key is required",
            hint="send `Authorization: Bearer KEY`; create a key with `openscholar keys create NAME`",
        )
