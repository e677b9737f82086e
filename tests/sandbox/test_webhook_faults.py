"""Webhook delivery faults (seeded drops) and redelivery, against a real sandbox on 127.0.0.1."""

from __future__ import annotations

import random
from typing import Any

import pytest

from sandbox.control_client import ControlError, SandboxControl
from sandbox.server import SandboxServer
from sandbox.state import Scope
from sandbox.webhooks import verify
from tests.sandbox.webhook_support import (
    SECRET,
    Received,
    Receiver,
    control,
    deliveries,
    hooked_sandbox,
    receiver,
    wait_listed,
    wait_until,
)

JOBS = 24


def _queue_jobs(sb: SandboxServer, count: int) -> list[int]:
    return [
        sb.state.queue_job("canonical/demo", ["self-hosted", "x"], ["true"]).id
        for _ in range(count)
    ]


def _dropped_jobs(seed: int, ratio: float) -> list[int]:
    """Positions of the jobs whose queued delivery a fresh sandbox drops."""
    with receiver() as rx, hooked_sandbox(rx.url) as sb:
        response = control(sb, "POST", "/webhooks/faults", {"drop_ratio": ratio, "seed": seed})
        assert response.status_code == 201, response.text
        jobs = _queue_jobs(sb, JOBS)
        listed = wait_listed(sb, JOBS)
    assert [d["job_id"] for d in listed] == jobs  # in delivery order
    return [jobs.index(d["job_id"]) for d in listed if d["dropped"]]


def test_the_same_seed_drops_the_same_deliveries() -> None:
    first = _dropped_jobs(seed=19, ratio=0.5)
    assert first == _dropped_jobs(seed=19, ratio=0.5)
    draws = random.Random(19)
    assert first == [i for i in range(JOBS) if draws.random() < 0.5]
    assert 0 < len(first) < JOBS
    assert _dropped_jobs(seed=20, ratio=0.5) != first


@pytest.mark.parametrize("ratio", [0, 0.0, 1, 1.0])
def test_ratio_zero_drops_none_and_one_drops_all(ratio: float) -> None:
    with receiver() as rx, hooked_sandbox(rx.url) as sb:
        control(sb, "POST", "/webhooks/faults", {"drop_ratio": ratio, "seed": 3})
        _queue_jobs(sb, 10)
        listed = wait_listed(sb, 10)
        rule = control(sb, "GET", "/webhooks/faults").json()
    everything = ratio == 1
    assert [d["dropped"] for d in listed] == [everything] * 10
    assert len(rx.snapshot()) == (0 if everything else 10)
    assert rule["draws"] == 10 and rule["dropped"] == (10 if everything else 0)


def test_a_dropped_delivery_is_listed_with_no_status_and_never_sent() -> None:
    with receiver() as rx, hooked_sandbox(rx.url) as sb:
        control(
            sb, "POST", "/webhooks/faults", {"drop_ratio": 1, "seed": 1, "actions": ["queued"]}
        )
        runner = sb.state.register_runner(Scope("org", "canonical"), "w1", ["x"])
        job = sb.state.queue_job("canonical/demo", ["self-hosted", "x"], ["true"])
        assert sb.state.try_assign(runner) is job
        sb.state.complete_job(runner, job, "success")
        listed = wait_listed(sb, 3)
        wait_until(lambda: len(rx.snapshot()) == 2, what="two sent")
    queued, in_progress, completed = listed
    assert queued == {
        "id": queued["id"],
        "action": "queued",
        "job_id": job.id,
        "status": None,
        "error": "dropped",
        "dropped": True,
        "redelivery": False,
        "sent_at": queued["sent_at"],
    }
    for entry in (in_progress, completed):
        assert entry["status"] == 204 and entry["error"] is None
        assert entry["dropped"] is False and entry["redelivery"] is False
    sent = [r.payload["action"] for r in rx.snapshot()]
    assert sent == ["in_progress", "completed"]
    assert queued["id"] not in {r.delivery_id for r in rx.snapshot()}


def _redelivered(rx: Receiver, delivery_id: str) -> list[Received]:
    return [r for r in rx.snapshot() if r.delivery_id == delivery_id]


def test_redeliver_sends_the_same_body_and_id_with_a_valid_signature() -> None:
    with receiver() as rx, hooked_sandbox(rx.url) as sb:
        _queue_jobs(sb, 1)
        first = wait_listed(sb, 1)[0]
        original = wait_until(lambda: _redelivered(rx, first["id"]), what="sent")[0]
        # Dropping everything does not touch a redelivery.
        control(sb, "POST", "/webhooks/faults", {"drop_ratio": 1, "seed": 5})
        response = control(sb, "POST", f"/webhooks/{first['id']}/redeliver")
        assert response.status_code == 202, response.text
        assert response.json()["id"] == first["id"] and response.json()["redelivery"] is True
        wait_until(lambda: len(_redelivered(rx, first["id"])) == 2, what="the redelivery")
        listed = wait_listed(sb, 2)
    again = _redelivered(rx, first["id"])[1]
    assert again.body == original.body
    assert again.headers["X-Hub-Signature-256"] == original.headers["X-Hub-Signature-256"]
    assert verify(SECRET, again.body, again.headers["X-Hub-Signature-256"])
    assert listed[1]["id"] == first["id"]
    assert listed[1]["redelivery"] is True and listed[1]["dropped"] is False
    assert listed[1]["status"] == 204


def test_a_dropped_delivery_can_be_redelivered() -> None:
    with receiver() as rx, hooked_sandbox(rx.url) as sb:
        client = SandboxControl(sb.base_url)
        rule = client.webhook_faults(1.0, 7, actions=["queued"])
        assert (rule.drop_ratio, rule.seed, rule.actions) == (1.0, 7, ("queued",))
        _queue_jobs(sb, 1)
        wait_listed(sb, 1)
        (dropped,) = client.deliveries()
        assert dropped.dropped and dropped.status is None and dropped.error == "dropped"
        queued = client.redeliver(dropped.id)
        assert queued.id == dropped.id and queued.redelivery
        wait_listed(sb, 2)
        redelivered = client.deliveries()[1]
        client.clear_webhook_faults()
        assert control(sb, "GET", "/webhooks/faults").json() is None
    assert redelivered.id == dropped.id and redelivered.redelivery
    assert redelivered.status == 204 and not redelivered.dropped
    (sent,) = rx.snapshot()
    assert sent.delivery_id == dropped.id and sent.payload["action"] == "queued"
    assert verify(SECRET, sent.body, sent.headers["X-Hub-Signature-256"])


def test_redeliver_of_an_unknown_delivery_is_404(sandbox: SandboxServer) -> None:
    response = control(sandbox, "POST", "/webhooks/0b6c7c8e-0000-4000-8000-000000000000/redeliver")
    assert response.status_code == 404
    assert "no such delivery" in response.json()["message"]
    with pytest.raises(ControlError) as err:
        SandboxControl(sandbox.base_url).redeliver("nope")
    assert err.value.status == 404


def test_only_the_last_deliveries_bodies_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sandbox.webhooks.MAX_STORED", 3)
    with receiver() as rx, hooked_sandbox(rx.url) as sb:
        _queue_jobs(sb, 5)
        listed = wait_listed(sb, 5)
        oldest = control(sb, "POST", f"/webhooks/{listed[0]['id']}/redeliver")
        newest = control(sb, "POST", f"/webhooks/{listed[-1]['id']}/redeliver")
    assert oldest.status_code == 404 and newest.status_code == 202


def test_reset_and_delete_clear_the_faults() -> None:
    with receiver() as rx, hooked_sandbox(rx.url) as sb:
        control(sb, "POST", "/webhooks/faults", {"drop_ratio": 1, "seed": 1})
        assert control(sb, "GET", "/webhooks/faults").json()["drop_ratio"] == 1.0
        assert control(sb, "POST", "/reset").status_code == 204
        assert control(sb, "GET", "/webhooks/faults").json() is None
        _queue_jobs(sb, 2)
        assert [d["dropped"] for d in wait_listed(sb, 2)] == [False, False]
        control(sb, "POST", "/webhooks/faults", {"drop_ratio": 1, "seed": 1})
        assert control(sb, "DELETE", "/webhooks/faults").status_code == 204
        _queue_jobs(sb, 1)
        assert wait_listed(sb, 3)[2]["dropped"] is False
        wait_until(lambda: len(rx.snapshot()) == 3, what="three sent")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"drop_ratio": 1.5, "seed": 1}, "drop_ratio must be a number from 0 to 1"),
        ({"drop_ratio": -0.1, "seed": 1}, "drop_ratio must be a number from 0 to 1"),
        ({"drop_ratio": "0.5", "seed": 1}, "drop_ratio must be a number from 0 to 1"),
        ({"drop_ratio": True, "seed": 1}, "drop_ratio must be a number from 0 to 1"),
        ({"seed": 1}, "drop_ratio must be a number from 0 to 1"),
        ({"drop_ratio": 0.5, "seed": "1"}, "seed must be an integer"),
        ({"drop_ratio": 0.5, "seed": 1.5}, "seed must be an integer"),
        ({"drop_ratio": 0.5, "seed": False}, "seed must be an integer"),
        ({"drop_ratio": 0.5}, "seed must be an integer"),
        ({"drop_ratio": 0.5, "seed": 1, "ratio": 1}, "unknown field(s) ['ratio']"),
        ({"drop_ratio": 0.5, "seed": 1, "actions": ["opened"]}, "actions must be"),
        ({"drop_ratio": 0.5, "seed": 1, "actions": []}, "actions must be"),
        ({"drop_ratio": 0.5, "seed": 1, "actions": "queued"}, "actions must be"),
        ([0.5, 1], "body must be a JSON object"),
    ],
)
def test_bad_fault_rules_are_422(sandbox: SandboxServer, body: Any, message: str) -> None:
    response = control(sandbox, "POST", "/webhooks/faults", body)
    assert response.status_code == 422
    assert message in response.json()["message"]
    assert control(sandbox, "GET", "/webhooks/faults").json() is None


def test_a_sandbox_without_a_webhook_url_lists_nothing(sandbox: SandboxServer) -> None:
    control(sandbox, "POST", "/webhooks/faults", {"drop_ratio": 1, "seed": 1})
    _queue_jobs(sandbox, 2)
    assert deliveries(sandbox) == []
    assert control(sandbox, "GET", "/webhooks/faults").json()["draws"] == 0
