"""The intake's test deliveries are in GitHub's shape: they validate against the webhook schema.

The schema is the sandbox's (``sandbox/openapi/workflow-job-webhook.json``, written from GitHub's
published webhook schema); the sandbox's own deliveries are checked against it in tests/sandbox.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # installed with openapi-core
import pytest

from tests.unit.intake_payloads import queued_event

SCHEMA = Path(__file__).resolve().parents[2] / "sandbox/openapi/workflow-job-webhook.json"


@pytest.fixture(scope="module")
def validator() -> Any:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("labels", [None, ["self-hosted", "linux", "x64", "large"], []])
def test_a_queued_delivery_validates(validator: Any, labels: list[str] | None) -> None:
    errors = sorted(str(e.message) for e in validator.iter_errors(queued_event(7, labels)))
    assert errors == []


def test_a_delivery_missing_what_github_always_sends_does_not(validator: Any) -> None:
    event = queued_event(7)
    del event["repository"]["full_name"]
    del event["workflow_job"]["run_id"]
    found = list(validator.iter_errors(event))
    reasons = " ".join(sub.message for error in found for sub in error.context or [error])
    assert "'full_name' is a required property" in reasons
    assert "'run_id' is a required property" in reasons
