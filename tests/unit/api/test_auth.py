"""Passwords, bearer tokens, API keys, roles and the rate limiter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.auth import (
    InvalidToken,
    Role,
    hash_password,
    issue_token,
    key_digest,
    new_api_key,
    read_token,
    verify_password,
)
from api.live import cursor_doc, parse_cursor
from api.ratelimit import RateLimiter
from core.errors import InvalidMessage

NOW = datetime.now(UTC)


def test_passwords_are_hashed_with_argon2():
    h = hash_password("correct horse")
    assert h.startswith("$argon2") and verify_password("correct horse", h)
    assert not verify_password("wrong", h) and not verify_password("x", "garbage")


def test_tokens_round_trip_and_reject_forgery_and_expiry():
    tok = issue_token("ana", Role.DISPATCHER, secret="s" * 32, ttl_s=60, now=NOW)
    claims = read_token(tok, secret="s" * 32)
    assert (claims.username, claims.role) == ("ana", Role.DISPATCHER)
    with pytest.raises(InvalidToken):
        read_token(tok, secret="t" * 32)
    old = issue_token("ana", Role.VIEWER, secret="s" * 32, ttl_s=60, now=NOW - timedelta(hours=1))
    with pytest.raises(InvalidToken):
        read_token(old, secret="s" * 32)


def test_roles_include_the_ones_below():
    assert Role.ADMIN.allows(Role.DISPATCHER) and Role.DISPATCHER.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.DISPATCHER) and not Role.DISPATCHER.allows(Role.ADMIN)


def test_api_keys_are_random_and_stored_as_digests():
    a, b = new_api_key(), new_api_key()
    assert a != b and a.startswith("cfk_") and len(key_digest(a)) == 64
    assert key_digest(a) == key_digest(a) != key_digest(b)


def test_rate_limiter_sliding_window():
    t = [0.0]
    rl = RateLimiter(2, 60.0, clock=lambda: t[0])
    assert rl.retry_after_s("k") == 0 and rl.retry_after_s("k") == 0
    assert rl.retry_after_s("k") == pytest.approx(60.0)
    assert rl.retry_after_s("other") == 0
    t[0] = 60.5
    assert rl.retry_after_s("k") == 0


def test_live_cursor_round_trip_and_validation():
    cur = parse_cursor('{"incidents": {"0": 5, "3": 7}, "assignments": {}}')
    assert cur == {"incidents": {0: 5, 3: 7}, "assignments": {}}
    assert cursor_doc(cur) == {"incidents": {"0": 5, "3": 7}, "assignments": {}}
    for bad in ("nope", "[]", '{"x": {}}', '{"incidents": {"0": -1}}', '{"incidents": {"a": 1}}'):
        with pytest.raises(InvalidMessage):
            parse_cursor(bad)
