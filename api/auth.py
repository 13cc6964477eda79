"""Credentials: dispatcher passwords and bearer tokens, Open311 API keys (pure).

- Passwords are hashed with argon2 (pwdlib); only the hash is stored.
- A bearer token is a JWT signed with HS256 and ``settings.api.secret_key``, carrying the
  username, role, issue and expiry times and a token id. The API still loads the user on
  every request, so removing or disabling a user (``cityfix users remove``) ends their
  access at once, and their role is the one stored now, not the one in the token.
- An API key is 32 random bytes (URL-safe text, prefixed ``cfk_``); the database holds
  only its SHA-256 digest. A key has full entropy, so a fast digest is enough and a
  lookup by digest needs no scan.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import jwt
from pwdlib import PasswordHash

from core.errors import PermissionDenied

_ALGORITHM = "HS256"
_HASHER = PasswordHash.recommended()
KEY_PREFIX = "cfk_"


class Role(StrEnum):
    """What a dispatcher-API user may do; each role includes the ones before it."""

    VIEWER = "viewer"
    DISPATCHER = "dispatcher"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Order of privilege."""
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        """Whether this role includes ``needed``."""
        return self.rank >= needed.rank


class InvalidToken(PermissionDenied):
    """A bearer token that is malformed, forged or expired."""


def hash_password(password: str) -> str:
    """An argon2 hash of ``password``."""
    return _HASHER.hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    """Whether ``password`` matches ``password_hash``."""
    try:
        return _HASHER.verify(password, password_hash)
    except Exception:  # a malformed stored hash is a mismatch, not a crash
        return False


# A fixed hash to verify against when the user does not exist, so that the time taken
# does not tell an attacker which usernames exist.
DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class TokenClaims:
    """What a bearer token says."""

    username: str
    role: Role
    issued_at: datetime
    expires_at: datetime
    token_id: str


def issue_token(
    username: str, role: Role, *, secret: str, ttl_s: int, now: datetime | None = None
) -> str:
    """A signed bearer token for ``username``, valid ``ttl_s`` from ``now`` (default: now).

    Token times are wall-clock times, as ``read_token`` checks them: never the simulated
    clock of an accelerated city, whose "now" can be days ahead.
    """
    now = now or datetime.now(UTC)
    claims = {
        "sub": username,
        "role": role.value,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl_s)).timestamp()),
        "jti": uuid.uuid4().hex,
        "iss": "cityfix",
    }
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def read_token(token: str, *, secret: str) -> TokenClaims:
    """The claims of a valid token; ``InvalidToken`` otherwise."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[_ALGORITHM],
            issuer="cityfix",
            options={"require": ["sub", "role", "exp", "iat", "jti"]},
        )
        role = Role(claims["role"])
    except (jwt.PyJWTError, ValueError, KeyError) as exc:
        raise InvalidToken(f"invalid bearer token: {exc}") from exc
    return TokenClaims(
        username=str(claims["sub"]),
        role=role,
        issued_at=datetime.fromtimestamp(claims["iat"], UTC),
        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        token_id=str(claims["jti"]),
    )


def new_api_key() -> str:
    """A fresh API key (shown once; store ``key_digest`` of it)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
