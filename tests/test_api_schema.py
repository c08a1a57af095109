"""The published OpenAPI document, checked against the running API with schemathesis.

Schemathesis generates requests for every operation from the document and checks each response:
no server error, a documented status code, the documented content type, and a body that matches
the documented schema. The server is a real uvicorn on a free port over the seeded fleet; the
caller is the operator, so every operation is reachable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from collector.api.app import create_app
from collector.api.server import HTTPServer
from tests.api_support import RecordingSender
from tests.fleet_data import seed


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    path: Path = tmp_path_factory.mktemp("schema") / "fleet.db"
    fleet = seed(f"sqlite:///{path}", results_per_line=4)
    server = HTTPServer(create_app(fleet.engine, commands=RecordingSender()), "127.0.0.1", 0)
    server.start()
    yield f"http://127.0.0.1:{server.port}", fleet.tokens["operator"]
    server.stop()
    fleet.store.close()


def _runner(operation, base: str, headers: dict[str, str], excluded: list):  # type: ignore[no-untyped-def]
    @given(case=operation.as_strategy())
    @settings(max_examples=6, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case) -> None:  # type: ignore[no-untyped-def]
        case.call_and_validate(base_url=base, headers=headers, excluded_checks=excluded)

    return run


SEMANTIC_422 = {("POST", "/api/v1/registry"), ("POST", "/api/v1/users"),
                ("PUT", "/api/v1/tickets/{ticket_id}/assignee"), ("POST", "/api/v1/dispatch/{ticket_id}/assign")}


def test_every_operation_conforms_to_the_published_document(live_api: tuple[str, str]) -> None:
    base, token = live_api
    schema = schemathesis.openapi.from_url(f"{base}/api/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        # A registry file or a new user is checked beyond what a schema can say (references, the
        # caller's tenants): a well-formed but wrong one is rightly 422 there.
        semantic = (operation.method.upper(), operation.path) in SEMANTIC_422
        excluded = [positive_data_acceptance] if semantic else []

        run = _runner(operation, base, headers, excluded)
        try:
            run()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # collect every operation's problem (schemathesis raises groups)
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:600]}")
    assert operations >= 30
    assert not failures, "\n\n".join(failures)
