"""Unit tests of GithubClient's error mapping, retries and time budget over a scripted seam.

The transport is scripted (tests/unit/github_client_scripted.py); construction, paging, JIT
configs, tokens and jobs are tested in test_github_client_policy.py.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

import errors
from github_api.parse import HttpReply
from github_api.retry import TransportError
from tests.unit.github_client_scripted import (
    JOB,
    ORG,
    REPO,
    TOKEN,
    make_client,
    reply,
    runners_page,
)

# --- error mapping ----------------------------------------------------------------------------


def test_401_is_token_error() -> None:
    client, fake = make_client(reply(401, {"message": "Bad credentials"}))
    with pytest.raises(errors.GithubTokenError) as info:
        client.list_runners(REPO, "")
    assert info.value.status == 401 and str(info.value) == "the token is invalid"
    assert len(fake.calls) == 1


def test_403_is_permission_error_naming_path() -> None:
    client, _ = make_client(
        reply(403, {"message": "Must have admin rights"}, x_ratelimit_remaining="4000")
    )
    with pytest.raises(errors.GithubPermissionError) as info:
        client.get_registration_token(ORG)
    assert info.value.path == "octo-org" and "octo-org" in str(info.value)


def test_403_rate_limit_uses_reset_header_and_is_not_retried() -> None:
    client, fake = make_client(
        reply(
            403,
            {"message": "API rate limit exceeded"},
            x_ratelimit_remaining="0",
            x_ratelimit_reset="1800000000",
        )
    )
    with pytest.raises(errors.GithubRateLimitError) as info:
        client.list_runners(REPO, "")
    assert info.value.status == 403
    assert info.value.reset_at == datetime.fromtimestamp(1800000000, tz=timezone.utc)
    assert len(fake.calls) == 1 and fake.sleeps == []


@pytest.mark.parametrize("status", [403, 429])
def test_retry_after_is_rate_limit(status: int) -> None:
    client, fake = make_client(reply(status, {"message": "slow down"}, retry_after="5"))
    before = datetime.now(timezone.utc)
    with pytest.raises(errors.GithubRateLimitError) as info:
        client.get_job(REPO, 1)
    assert info.value.status == status
    assert info.value.reset_at is not None
    assert 4 <= (info.value.reset_at - before).total_seconds() <= 7
    assert len(fake.calls) == 1 and fake.sleeps == []


def test_429_with_http_date_and_without_headers() -> None:
    client, _ = make_client(
        reply(429, retry_after="Wed, 21 Oct 2026 07:28:00 GMT"),
        reply(429),
        reply(429, retry_after="soon"),
    )
    with pytest.raises(errors.GithubRateLimitError) as info:
        client.get_job(REPO, 1)
    assert info.value.reset_at == datetime(2026, 10, 21, 7, 28, tzinfo=timezone.utc)
    for _ in range(2):
        with pytest.raises(errors.GithubRateLimitError) as info:
            client.get_job(REPO, 1)
        assert info.value.reset_at is None


@pytest.mark.parametrize("status", [400, 410, 422, 301])
def test_other_statuses_are_api_errors_with_status(status: int) -> None:
    client, fake = make_client(reply(status, {"message": "nope"}))
    with pytest.raises(errors.GithubApiError) as info:
        client.get_job(REPO, 1)
    assert info.value.status == status and "nope" in str(info.value)
    assert len(fake.calls) == 1


def test_malformed_json_is_api_error() -> None:
    client, _ = make_client(HttpReply(200, {}, "{not json"))
    with pytest.raises(errors.GithubApiError, match="malformed JSON"):
        client.get_job(REPO, 1)


# --- retries and the time budget --------------------------------------------------------------


def test_5xx_is_retried_with_backoff_then_succeeds() -> None:
    client, fake = make_client(reply(503), reply(502), reply(200, JOB))
    assert client.get_job(REPO, 99).id == 99
    assert len(fake.calls) == 3
    assert fake.sleeps == [0.5, 1.0]


def test_persistent_5xx_gives_up_after_max_attempts() -> None:
    client, fake = make_client(*[reply(503, {"message": "down"})] * 10)
    with pytest.raises(errors.GithubApiError) as info:
        client.get_job(REPO, 99)
    assert info.value.status == 503
    assert len(fake.calls) == 4
    assert fake.sleeps == [0.5, 1.0, 2.0]


def test_transport_errors_are_retried() -> None:
    client, fake = make_client(TransportError("ConnectionError"), reply(200, JOB))
    assert client.get_job(REPO, 99).id == 99
    assert fake.sleeps == [0.5]


def test_timeouts_stop_within_the_budget() -> None:
    # Each attempt times out after 5 s; the budget is 12 s: 5 + 0.5 + 5 = 10.5 fits, 16.5 not.
    client, fake = make_client(
        *[TransportError("ReadTimeout")] * 5, timeout=5, max_wait=12, latency=5
    )
    start = fake.now
    with pytest.raises(errors.GithubApiError, match="did not answer"):
        client.get_job(REPO, 1)
    assert len(fake.calls) == 2
    assert fake.now - start <= 12


def test_later_requests_of_a_call_share_the_budget() -> None:
    # Pages answer slowly (4 s each, timeout 5 s, budget 10 s): page 2 cannot fit after page 1.
    client, fake = make_client(
        runners_page(250, 1), runners_page(250, 2), timeout=5, max_wait=10, latency=4
    )
    with pytest.raises(errors.GithubApiError, match="too slow"):
        client.list_runners(REPO, "")
    assert len(fake.calls) == 2


def test_each_call_gets_a_fresh_budget() -> None:
    client, fake = make_client(reply(200, JOB), reply(200, JOB), timeout=5, max_wait=5, latency=4)
    client.get_job(REPO, 1)
    client.get_job(REPO, 1)
    assert len(fake.calls) == 2


def test_4xx_are_not_retried() -> None:
    for status in (401, 403, 404, 409, 422):
        client, fake = make_client(reply(status), reply(200, JOB))
        with pytest.raises(errors.GithubClientError):
            client.get_job(REPO, 1)
        assert len(fake.calls) == 1


def test_token_never_in_messages() -> None:
    client, _ = make_client(reply(401), reply(403), *[TransportError("ConnectionError")] * 4)
    messages = []
    for _ in range(3):
        with pytest.raises(errors.GithubClientError) as info:
            client.get_job(REPO, 1)
        messages.append(str(info.value) + repr(info.value))
    assert all(TOKEN not in m for m in messages)
