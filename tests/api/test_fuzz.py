"""Schemathesis against the OpenAPI schema of the real server: no generated request to a submit
endpoint may answer 5xx. A small run here; ``make fuzz`` runs thousands of cases."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.conftest import TEST_KEY
from tests.helpers import Server

SUBMIT_PATHS = "generations|uploads|batches$"


def _operations(server: Server) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json").include(path_regex=SUBMIT_PATHS)
    return [result.ok() for result in schema.get_all_operations()]


def test_the_schema_lists_every_submit_endpoint(server: Server) -> None:
    paths = {op.path for op in _operations(server)}
    assert {"/v1/midjourney/generations/imagine", "/v1/midjourney/generations/upscale", "/v1/uploads", "/v1/batches"} <= paths


@pytest.mark.parametrize(
    "path", ["/v1/midjourney/generations/imagine", "/v1/midjourney/generations/upscale", "/v1/uploads", "/v1/batches"]
)
def test_submit_endpoints_never_answer_5xx(server: Server, path: str) -> None:
    [operation] = [op for op in _operations(server) if op.path == path]
    seen: list[int] = []

    @given(case=operation.as_strategy())
    @settings(max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=server.url, headers={"Authorization": f"Bearer {TEST_KEY}"})
        seen.append(response.status_code)
        assert response.status_code < 500, f"{case.body!r} → {response.status_code} {response.text[:300]}"

    run()
    assert len(seen) >= 20 and any(code == 400 for code in seen)
