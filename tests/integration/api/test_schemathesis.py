"""Property-based checks of the app against its own OpenAPI document (schemathesis).

Every operation is called with generated inputs (a dispatcher's bearer token attached);
no answer may be a 5xx, and every answer must be documented and match its schema.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def api_schema(api_settings):
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(api_settings))
    # This service's own operations (the web map's routes are tested with the map).
    return schema.include(path_regex=r"^/(open311|api|healthz|readyz|metrics)")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_no_schema_violation(case, users):
    case.call_and_validate(headers=users.auth("dispatcher"), checks=CHECKS)
