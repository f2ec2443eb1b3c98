"""The HTTP API against its own OpenAPI schema, fuzzed by schemathesis with its default checks: every
response (status code, content type, body) must be one the schema documents, no request may cause a
5xx, and schema-valid requests must be accepted. The one configured exception: a schema-valid request
may get a documented 400 for what a schema cannot express (an option of another sampler, a template
without blanks, text longer than the model's canvas); a 422, 413 or 5xx for one still fails."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.config import SchemathesisConfig
from tiny_runs import tiny_checkpoint

from sedlm.serve import Limits, create_app, server_thread


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    """The schema of a real server on loopback (uvicorn, as `sedlm serve` runs it: streams end and
    clients disconnect as they do in production)."""
    ckpt = tiny_checkpoint(tmp_path_factory.mktemp("fuzz") / "sed")
    # small limits keep each fuzzed call cheap; requests over them must still get documented answers
    app = create_app(ckpt, Limits(max_n=2, max_steps=3, max_text_chars=200, max_body_bytes=4096, max_queue=64))
    config = SchemathesisConfig.from_dict(
        {"checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "503"]}}}
    )
    with server_thread(app) as url:
        yield schemathesis.openapi.from_url(f"{url}/openapi.json", config=config)


def test_every_response_is_documented(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/generate", "/v1/infill", "/v1/generate/stream", "/v1/model"}
    calls: list[int] = []
    for op in operations:

        @given(case=op.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            calls.append(case.call_and_validate().status_code)

        check()
    assert len(calls) >= 60 and calls.count(200) >= 20  # it did fuzz, and valid requests were served
