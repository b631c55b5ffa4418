"""Schemathesis against the OpenAPI document each service serves, over real HTTP.

Generated requests (valid and invalid) go to the running check-in API and
telemetry-ingest with a valid ADMIN token; every answer must be no 500 and must
match the status codes, content types and bodies the document declares. The fanout
serves no OpenAPI document (reported in ``docs/FAULTS.md``); its query parameters
are covered by the hand-written cases of ``test_hostile_bodies``.

The checks are the ones this suite promises: no server error, and status code,
content type, headers and body as documented. Schemathesis' acceptance checks are
left out on purpose: JSON Schema counts ``19109.0`` as an integer, which the
services' strict validation refuses with 422, and unknown query parameters are
ignored rather than refused; both are sound and listed in ``docs/FAULTS.md``.

The example count per operation is bounded (``HOSTILE_EXAMPLES``, default 25) so the
whole module stays within a minute.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from tests.support.processes import ServiceProcess
from tests.support.tokens import bearer

logger = logging.getLogger(__name__)

EXAMPLES = int(os.environ.get("HOSTILE_EXAMPLES", "25"))
HOSTILE_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def exercise(schema_url: str, base_url: str) -> list[str]:
    """Run generated valid and invalid requests for every operation; their labels."""
    schema = schemathesis.openapi.from_url(schema_url)
    labels = []
    for found in schema.get_all_operations():
        assert isinstance(found, Ok), found
        operation = found.ok()
        labels.append(operation.label)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @HOSTILE_SETTINGS
            def answer_as_documented(case: Any) -> None:
                case.call_and_validate(
                    base_url=base_url,
                    headers=bearer(1),
                    timeout=15,
                    checks=CHECKS,
                )

            answer_as_documented()
    return labels


def test_the_api_answers_every_generated_request_as_its_document_says(
    api: ServiceProcess,
) -> None:
    labels = exercise(api.url + "/v1/openapi.json", api.url)
    assert "POST /v1/guest-checkins" in labels


def test_telemetry_answers_every_generated_request_as_its_document_says(
    telemetry: ServiceProcess,
) -> None:
    labels = exercise(telemetry.url + "/telemetry/openapi.json", telemetry.url)
    assert "POST /telemetry/client" in labels
