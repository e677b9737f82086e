"""The job message schema and the consumer settings: pure parsing, no broker."""

from __future__ import annotations

import json

import pytest

import errors
from reactive.message import build_supported_labels, parse_job_message
from reactive.types import ConsumerSettings

JOB_URL = "https://api.github.com/repos/canonical/test/actions/jobs/{}"


def test_parse_job_message_accepts_extra_fields() -> None:
    job = parse_job_message(
        json.dumps({"labels": ["x"], "url": JOB_URL.format(3), "delivery": "abc"})
    )
    assert job.labels == ["x"]
    assert job.url == JOB_URL.format(3)


def test_parse_job_message_error_has_no_body() -> None:
    with pytest.raises(errors.JobMessageError) as info:
        parse_job_message(json.dumps({"labels": ["x"], "url": "secret-looking-value"}))
    assert "secret-looking-value" not in str(info.value)


def test_settings_from_mapping() -> None:
    got = ConsumerSettings.from_mapping(
        "app", {"supported_labels": ["A", " b "], "pickup_timeout": 5}
    )
    assert got.supported_labels == frozenset({"a", "b"})
    assert got.pickup_timeout == 5.0
    with pytest.raises(errors.ReactiveError):
        ConsumerSettings.from_mapping("app", {"nope": 1})
    with pytest.raises(errors.ReactiveError):
        ConsumerSettings.from_mapping("app", {"pickup_timeout": "5"})
    with pytest.raises(errors.ReactiveError):
        ConsumerSettings.from_mapping("app", {"supported_labels": "a"})


@pytest.mark.parametrize(
    "body",
    [
        "not json {",
        b"\xff\xfe",
        "[]",
        json.dumps({"labels": ["linux"]}),
        json.dumps({"labels": ["linux"], "url": "https://h/repos/o/r/actions/jobs/1?x=1"}),
        json.dumps({"labels": ["linux"], "url": "https://h:99999/repos/o/r/actions/jobs/1"}),
        json.dumps({"labels": ["x"] * 65, "url": JOB_URL.format(1)}),
        "x" * 70_000,
    ],
)
def test_parse_job_message_refuses(body: str | bytes) -> None:
    with pytest.raises(errors.JobMessageError):
        parse_job_message(body)


def test_supported_labels_are_lower_cased_with_the_defaults() -> None:
    labels = build_supported_labels([" GPU ", ""], "App", "noble", "arm64")
    assert labels == {"self-hosted", "linux", "gpu", "app", "noble", "arm64"}
