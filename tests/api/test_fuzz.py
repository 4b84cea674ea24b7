"""Schemathesis against the OpenAPI schema of the real server: no generated request to a submit
endpoint may answer 5xx, through any of the three contracts (seed 004, midjourney-proxy's /mj,
the OpenAI Images API). A small run here; ``make fuzz`` runs thousands of cases."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from pixelmill.tasks.requests import OPERATION_BODIES
from tests.conftest import TEST_KEY
from tests.helpers import Server

SUBMIT_PATHS = "generations|uploads|batches$|^/mj/submit/|^/mj/task/list-by-condition$|^/v1/images/(edits|variations)$"
CORE = ["/v1/midjourney/generations/imagine", "/v1/uploads", "/v1/batches"]
OPERATIONS = [f"/v1/midjourney/generations/{name}" for name in OPERATION_BODIES]
MJ = [f"/mj/submit/{name}" for name in ("imagine", "action", "modal", "change", "simple-change", "blend", "describe", "shorten",
                                         "video", "edits", "upload-discord-images")] + ["/mj/task/list-by-condition"]
OPENAI = ["/v1/images/generations", "/v1/images/edits", "/v1/images/variations"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own, without workers: the hundreds of valid tasks the fuzzer submits wait
    in its queue instead of taking the machine from the tests that follow."""
    srv = Server(tmp_path_factory.mktemp("fuzz"), TEST_KEY, workers=0, rate_per_minute=0, max_concurrent_tasks=0,
                 interactive_queue_limit=1_000_000, batch_queue_limit=1_000_000, fetch_allow='["127.0.0.2/32"]').start()
    yield srv
    srv.stop()


def _operations(server: Server) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json").include(path_regex=SUBMIT_PATHS)
    return [result.ok() for result in schema.get_all_operations()]


def test_the_schema_lists_every_submit_endpoint(server: Server) -> None:
    paths = {op.path for op in _operations(server)}
    assert {*CORE, *OPERATIONS, *MJ, *OPENAI} <= paths


def _judged(path: str, status: int, body: bytes) -> bool:
    """Whether a wrong request was refused as its contract refuses one. Core submits answer
    400; operations on the unknown task ids they name may answer 404; /mj answers HTTP 200 with
    code 4 (list-by-condition: an empty list); /v1/images answers 400 with an "error" object."""
    if path.startswith("/mj/"):
        return status == 200 and (body == b"[]" or b'"code":4' in body)
    if path.startswith("/v1/images/"):
        return status == 400 and body.startswith(b'{"error":')
    return status == 400 if path in CORE else status in (400, 404)


# The core submits get more cases; every other route gets a smaller run of its own. /v1/images
# is called in its async mode: this server has no workers, and a valid request would wait.
@pytest.mark.parametrize(("path", "examples"), [(p, 80) for p in CORE] + [(p, 25) for p in OPERATIONS + MJ + OPENAI])
def test_submit_endpoints_never_answer_5xx(server: Server, path: str, examples: int) -> None:
    [operation] = [op for op in _operations(server) if op.path == path and op.method.upper() == "POST"]
    judged: list[bool] = []

    @given(case=operation.as_strategy())
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=server.url, headers={"Authorization": f"Bearer {TEST_KEY}", "Prefer": "respond-async"})
        judged.append(_judged(path, response.status_code, response.content))
        assert response.status_code < 500, f"{case.body!r} → {response.status_code} {response.text[:300]}"

    run()
    # Generated bodies are mostly wrong: they must be judged, never crash the server.
    assert len(judged) >= min(20, examples) and any(judged)
