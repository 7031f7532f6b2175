"""Schemathesis against the gateway's own OpenAPI document: no 5xx, and every response (status,
content type, headers, body) is one the document promises.

Each operation gets the document's examples, then schema-valid and schema-violating generated
cases (bounded). Public operations run with a tenant key, admin operations with the admin key.
Schemathesis's pytest plugin does not support the pinned pytest, so the cases are driven with
Hypothesis directly; the checks are schemathesis's own (`case.call_and_validate`).
"""

from __future__ import annotations

import os

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from gateway.app import create_app
from gateway.settings import Settings
from tests.hostile.conftest import ADMIN_KEY

#: Generated cases per operation (besides the document's examples). CI runs a fixed set of cases
#: (derandomized); setting TIERGATE_FUZZ_EXAMPLES runs that many fresh random ones per operation.
DEEP = "TIERGATE_FUZZ_EXAMPLES" in os.environ
MAX_EXAMPLES = int(os.environ.get("TIERGATE_FUZZ_EXAMPLES", "60"))

#: The operations, read from the app itself so new routes are fuzzed without touching this file.
OPERATIONS = [
    (method.upper(), path)
    for path, item in create_app(Settings(deployments=[])).openapi()["paths"].items()
    for method in item
]


@pytest.fixture(scope="module")
def tenant_key(module_gateway) -> str:
    return module_gateway.create_key(team="fuzz", project="p1")


@pytest.fixture(scope="module")
def gateway_schema(module_gateway):
    document = httpx.get(module_gateway.base_url + "/openapi.json", timeout=10).json()
    assert {(m.upper(), p) for p, item in document["paths"].items() for m in item} == set(OPERATIONS)
    loaded = schemathesis.openapi.from_dict(document)
    loaded.config.update(base_url=module_gateway.base_url)
    return loaded


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_conforms(gateway_schema, module_gateway, tenant_key, method, path):
    operation = gateway_schema[path][method]
    key = ADMIN_KEY if path.startswith("/admin") else tenant_key
    headers = {"authorization": f"Bearer {key}"}

    # Admin operations validate more than a schema can say (policy documents must cover the score
    # range with known deployments, report dimensions must not repeat): schema-valid requests may
    # be refused there with a 400, so only hot routes must accept every schema-valid request.
    excluded = [schemathesis.checks.positive_data_acceptance] if path.startswith("/admin") else []

    def run(strategy, max_examples: int) -> None:
        @given(strategy)
        @settings(
            max_examples=max_examples,
            derandomize=not DEEP,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case) -> None:
            case.call_and_validate(headers=headers, excluded_checks=excluded, timeout=30)

        check()

    for example in gateway_schema.get_strategies_from_examples(operation):
        run(example, 1)
    run(
        st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
        ),
        MAX_EXAMPLES,
    )
