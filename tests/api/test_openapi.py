"""`GET /openapi.json`, and a bounded schemathesis run against a real gateway that finds no 5xx.

The run is deterministic (hypothesis derandomized, no example database) and bounded: every
operation of the document gets MAX_EXAMPLES positive cases (valid by the document) and as many
negative ones (invalid by it); each answer must be below 500 and match the documented schema and
content type. The number of cases is printed (`-s` shows it).
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_schema_conformance, status_code_conformance,
)

from tests.conftest import start_stack
from thrifty.wire import ANTHROPIC_MESSAGES, OPENAI_CHAT

ADMIN_KEY = "sk-admin-openapi"
MAX_EXAMPLES = 25
CHAT = ("/v1/chat/completions", "/v1/messages")
SERVED = [None, "gpt-4o-mini", "claude-haiku-4-5", "thrifty/auto"]  # None: the generated model name
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    def edit(config):
        config["admin"] = {"key": ADMIN_KEY}

    s = start_stack(tmp_path_factory.mktemp("openapi"), edit=edit, timeout_s=3.0)
    yield s
    s.gateway.stop()
    s.emulator.stop()


@pytest.fixture(scope="module")
def document(gw):
    r = httpx.get(f"{gw.url}/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    return r.json()


def test_the_document_is_openapi_3_1_and_covers_every_route(document):
    assert document["openapi"].startswith("3.1")
    schema = schemathesis.openapi.from_dict(document)
    labels = {op.ok().label for op in schema.get_all_operations()}
    assert labels >= {"POST /v1/chat/completions", "POST /v1/messages", "GET /v1/models", "GET /health",
                      "POST /v1/thrifty/feedback", "GET /openapi.json", "GET /admin/keys", "POST /admin/keys",
                      "DELETE /admin/keys/{id}", "GET /admin/budgets", "PUT /admin/budgets/{name}",
                      "DELETE /admin/budgets/{name}", "GET /admin/spend", "GET /admin/savings", "GET /admin/metrics",
                      "GET /metrics",
                      # the batch lane (docs/batch.md)
                      "POST /v1/files", "GET /v1/files/{id}", "GET /v1/files/{id}/content", "POST /v1/batches",
                      "GET /v1/batches", "GET /v1/batches/{id}", "POST /v1/batches/{id}/cancel",
                      "POST /v1/messages/batches", "GET /v1/messages/batches", "GET /v1/messages/batches/{id}",
                      "GET /v1/messages/batches/{id}/results", "POST /v1/messages/batches/{id}/cancel",
                      "GET /v1/thrifty/jobs/{id}", "POST /v1/thrifty/jobs/{id}/cancel"}
    spend = document["paths"]["/admin/spend"]["get"]["parameters"]
    assert {p["name"] for p in spend} == {"scope", "value", "tenant"}


@pytest.mark.parametrize("path,wire", [("/v1/chat/completions", OPENAI_CHAT), ("/v1/messages", ANTHROPIC_MESSAGES)])
def test_what_the_document_accepts_check_accepts(document, path, wire):
    # The request schemas are at least as strict as the wires' check(): a valid body passes it.
    op = schemathesis.openapi.from_dict(document)[path]["POST"]

    @settings(max_examples=40, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(op.as_strategy(generation_mode=GenerationMode.POSITIVE))
    def accepted(case):
        wire.check(case.body)

    accepted()


def test_schemathesis_finds_no_server_error(gw, document):
    schema = schemathesis.openapi.from_dict(document)
    ran: dict[str, int] = {}
    statuses: dict[int, int] = {}
    failures: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()
        admin = op.path.startswith("/admin")
        headers = {"authorization": f"Bearer {ADMIN_KEY if admin else gw.key}"}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(op.as_strategy(generation_mode=mode), st.sampled_from(SERVED))
            def run(case, model):
                ran[op.label] = ran.get(op.label, 0) + 1
                if model and op.path in CHAT and isinstance(case.body, dict):
                    case.body["model"] = model  # a model the gateway serves, so the call goes upstream
                response = case.call(base_url=gw.url, headers={**(case.headers or {}), **headers}, timeout=30)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                try:
                    case.validate_response(response, checks=CHECKS)
                except (AssertionError, FailureGroup) as exc:
                    failures.append(f"{op.label} [{mode.value}] {response.status_code}: {str(exc)[:400]} "
                                    f"body={str(case.body)[:300]}")

            try:
                run()
            except Unsatisfiable:  # nothing in this operation can be made invalid (no parameters)
                assert mode is GenerationMode.NEGATIVE
    total = sum(ran.values())
    print(f"\nschemathesis: {total} cases over {len(ran)} operations: {ran}; statuses {sorted(statuses.items())}")
    assert not failures, "\n".join(failures[:10])
    assert total >= 100
