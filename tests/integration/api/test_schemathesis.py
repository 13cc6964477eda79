"""Property-based checks of the app against its own OpenAPI document (schemathesis).

Every operation of this service is called with generated inputs (a dispatcher's bearer
token attached); no answer may be a 5xx, and every answer must be documented and match
its schema. (The schema is loaded inside the test, from the module's app and database.)
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
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
EXAMPLES = 40


def test_no_server_error_and_no_schema_violation(api_settings, users):
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(api_settings))
    # This service's own operations (the web map's routes are tested with the map).
    schema = schema.include(path_regex=r"^/(open311|api|healthz|readyz|metrics)")
    headers = users.auth("dispatcher")
    failures: dict[str, str] = {}
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 20

    for op in operations:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=op.as_strategy())
        def check(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            check()
        except Exception as exc:
            failures[op.label] = f"{type(exc).__name__}: {exc}"[:2000]
    assert not failures, "\n\n".join(f"{k}\n{v}" for k, v in failures.items())
