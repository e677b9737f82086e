"""Fault injection: error statuses, latency, primary and secondary rate limits."""

from __future__ import annotations

import time

import requests

from sandbox.server import SandboxServer

RUNNERS = "/repos/canonical/demo/actions/runners"


def _fault(sandbox: SandboxServer, **spec: object) -> requests.Response:
    return requests.post(f"{sandbox.base_url}/_sandbox/faults", json=spec, timeout=5)


def test_5xx_with_probability_one_and_count(
    sandbox: SandboxServer, admin: requests.Session
) -> None:
    created = _fault(
        sandbox, status=503, probability=1.0, path_regex=r"/actions/runners$", count=2
    )
    assert created.status_code == 201
    url = f"{sandbox.api_url}{RUNNERS}"
    statuses = [admin.get(url).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert admin.post(f"{url}/registration-token").status_code == 201  # other path
    faults = requests.get(f"{sandbox.base_url}/_sandbox/faults", timeout=5).json()
    assert faults[0]["hits"] == 2


def test_method_filter_and_clear(sandbox: SandboxServer, admin: requests.Session) -> None:
    _fault(sandbox, status=500, method="POST")
    url = f"{sandbox.api_url}{RUNNERS}"
    assert admin.get(url).status_code == 200
    failed = admin.post(f"{url}/registration-token")
    assert failed.status_code == 500
    assert failed.json()["message"] == "Server Error"
    assert failed.headers["x-ratelimit-limit"] == "5000"
    deleted = requests.delete(f"{sandbox.base_url}/_sandbox/faults", timeout=5)
    assert deleted.status_code == 204
    assert admin.post(f"{url}/registration-token").status_code == 201


def test_probability_zero_never_fires(sandbox: SandboxServer, admin: requests.Session) -> None:
    _fault(sandbox, status=502, probability=0.0)
    assert all(admin.get(f"{sandbox.api_url}{RUNNERS}").ok for _ in range(5))


def test_latency(sandbox: SandboxServer, admin: requests.Session) -> None:
    _fault(sandbox, latency_ms=2000, path_regex="downloads")
    start = time.monotonic()
    assert admin.get(f"{sandbox.api_url}{RUNNERS}/downloads").status_code == 200
    assert time.monotonic() - start >= 2.0
    start = time.monotonic()
    admin.get(f"{sandbox.api_url}{RUNNERS}")
    assert time.monotonic() - start < 1.5  # other routes get no latency


def test_faults_spare_control_routes(sandbox: SandboxServer) -> None:
    _fault(sandbox, status=503)
    assert requests.get(f"{sandbox.base_url}/_sandbox/stats", timeout=5).status_code == 200


def test_bad_fault_specs(sandbox: SandboxServer) -> None:
    for spec in (
        {"status": 200},
        {"status": 503, "probability": 2},
        {"path_regex": "(", "status": 500},
        {"probability": 0.5},
        {"rate_limit": "soon"},
    ):
        assert _fault(sandbox, **spec).status_code == 422, spec


def test_rate_limit_exhausted(sandbox: SandboxServer, admin: requests.Session) -> None:
    assert _fault(sandbox, rate_limit={"remaining": 0, "reset_in": 60}).status_code == 201
    response = admin.get(f"{sandbox.api_url}{RUNNERS}")
    assert response.status_code == 403
    assert response.headers["x-ratelimit-remaining"] == "0"
    reset = int(response.headers["x-ratelimit-reset"])
    assert time.time() + 55 <= reset <= time.time() + 61
    assert "rate limit" in response.json()["message"]
    overview = admin.get(f"{sandbox.api_url}/rate_limit")
    assert overview.status_code == 200
    assert overview.json()["resources"]["core"]["remaining"] == 0


def test_rate_limit_resets(sandbox: SandboxServer, admin: requests.Session) -> None:
    _fault(sandbox, rate_limit={"remaining": 1, "reset_in": 0.5})
    url = f"{sandbox.api_url}{RUNNERS}"
    assert admin.get(url).status_code == 200
    assert admin.get(url).status_code == 403
    time.sleep(0.6)
    fresh = admin.get(url)
    assert fresh.status_code == 200
    assert fresh.headers["x-ratelimit-remaining"] == "4999"


def test_secondary_rate_limit(sandbox: SandboxServer, admin: requests.Session) -> None:
    _fault(sandbox, status=429, retry_after=5, count=1)
    response = admin.get(f"{sandbox.api_url}{RUNNERS}")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "5"
    assert "secondary rate limit" in response.json()["message"]
    assert admin.get(f"{sandbox.api_url}{RUNNERS}").status_code == 200
