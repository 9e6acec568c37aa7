"""Schemathesis against the in-process app: no 5xx and no response outside the OpenAPI schema."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the dev extra")
from hypothesis import HealthCheck, settings

from booktower.serving.api import create_app

from .conftest import toy_recommender

schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(toy_recommender()[0]))


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_matches_its_schema(case) -> None:
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    # 404 for ids the fuzzer invents is the documented answer, not a rejected valid request
    case.call_and_validate(excluded_checks=[positive_data_acceptance])
