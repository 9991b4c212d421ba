"""Property-based requests against every operation of `/openapi.json` (schemathesis): bad input is answered,
never with a 5xx. Bounded examples per operation, so the run stays within seconds."""
from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

from server.app import create_app
from server.background import BackgroundServer
from server.config import ServerConfig
from tests.server.conftest import stub_registry

EXAMPLES = 12


def test_no_request_gets_a_server_error(tmp_path):
    app = create_app(ServerConfig(data_dir=tmp_path, port=0, shutdown_grace=0.2), stub_registry())
    failures: list[str] = []
    statuses: list[int] = []
    with BackgroundServer(app) as server:
        schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) > 20

        for operation in operations:
            @given(case=operation.as_strategy())
            @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                      derandomize=True)  # the same examples every run: CI stays reproducible
            def call(case) -> None:
                response = case.call(base_url=server.url, timeout=30)
                statuses.append(response.status_code)
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} {case.query or ''}: "
                                    f"{response.status_code} {response.text[:200]}")

            call()
    assert failures == []
    assert len(statuses) >= 3 * len(operations) and {200, 400} <= set(statuses)  # it did exercise the routes
