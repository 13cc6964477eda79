from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.settings import Settings


def test_environment_overrides_nested_sections(monkeypatch):
    monkeypatch.setenv("CITYFIX_PG__PORT", "5544")
    monkeypatch.setenv("CITYFIX_DISPATCH__TIME_LIMIT_S", "3.5")
    s = Settings()
    assert s.pg.port == 5544
    assert "port=5544" in s.pg.dsn
    assert s.dispatch.time_limit_s == 3.5


def test_default_secrets_are_refused_in_production(monkeypatch):
    monkeypatch.setenv("CITYFIX_ENV", "production")
    with pytest.raises(ConfigError, match=r"api\.secret_key"):
        Settings()


def test_production_with_real_secrets_starts(monkeypatch):
    monkeypatch.setenv("CITYFIX_ENV", "production")
    monkeypatch.setenv("CITYFIX_MQTT__SERVICE_PASSWORD", "s3cret-mqtt")
    monkeypatch.setenv("CITYFIX_PG__PASSWORD", "s3cret-db")
    monkeypatch.setenv("CITYFIX_API__SECRET_KEY", "s3cret-signing-key")
    assert Settings().env == "production"
