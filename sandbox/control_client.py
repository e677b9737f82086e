"""A small typed client of the /_sandbox control API (standard library only), for demos/benchmarks.

Usage::

    control = SandboxControl("http://127.0.0.1:8080")
    job = control.queue_job("canonical/demo", labels=["self-hosted"], steps=["echo hi"])
    done = control.wait_job(job["id"], timeout=60)
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

DEFAULT_TIMEOUT = 10.0
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ControlError(Exception):
    """The control API answered with an error, or could not be reached (status 0)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class WebhookDelivery:
    """One entry of ``GET /_sandbox/webhooks``.

    Attributes:
        id: the X-GitHub-Delivery id (a redelivery repeats it).
        action: queued, in_progress or completed.
        job_id: the job.
        status: the receiver's HTTP status; None when dropped, unreachable or not sent yet.
        error: why there is no status ("dropped" for a dropped delivery).
        dropped: whether the faults dropped it (never sent).
        redelivery: whether it is a redelivery.
        sent_at: epoch of the attempt.
    """

    id: str
    action: str
    job_id: int
    status: int | None
    error: str | None
    dropped: bool
    redelivery: bool
    sent_at: float

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> WebhookDelivery:
        """Read a listing entry.

        Args:
            item: the JSON object.

        Returns:
            The delivery.
        """
        status = item.get("status")
        return cls(
            id=str(item["id"]),
            action=str(item["action"]),
            job_id=int(item["job_id"]),
            status=int(status) if status is not None else None,
            error=item.get("error"),
            dropped=bool(item.get("dropped", False)),
            redelivery=bool(item.get("redelivery", False)),
            sent_at=float(item.get("sent_at") or 0.0),
        )


@dataclass(frozen=True)
class WebhookFaults:
    """The webhook drop rule in force (``POST /_sandbox/webhooks/faults``).

    Attributes:
        drop_ratio: the share of matching deliveries dropped (0..1).
        seed: the seed of the rule's random.Random.
        actions: the actions the rule draws for.
        draws: deliveries drawn for so far.
        dropped: deliveries dropped so far.
    """

    drop_ratio: float
    seed: int
    actions: tuple[str, ...]
    draws: int
    dropped: int


class SandboxControl:
    """Calls to a sandbox's control API."""

    def __init__(self, base_url: str, timeout: float = DEFAULT_TIMEOUT):
        """Create the client.

        Args:
            base_url: the sandbox root URL ("http://127.0.0.1:<port>").
            timeout: seconds for each request.

        Raises:
            ValueError: for a URL that is not http(s).
        """
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {base_url}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            f"{self.base_url}/_sandbox{path}", data=data, method=method
        )
        request.add_header("Content-Type", "application/json")
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise ControlError(exc.code, exc.read().decode(errors="replace")) from exc
        except OSError as exc:
            raise ControlError(0, str(exc)) from exc
        return json.loads(raw) if raw else None

    def queue_job(
        self, repository: str, labels: list[str], steps: list[str], **fields: Any
    ) -> dict[str, Any]:
        """Queue a job (``POST /_sandbox/jobs``).

        Args:
            repository: "owner/repo".
            labels: runs-on labels.
            steps: shell commands.
            fields: event, workflow, name, ref, head_sha, actor, event_payload, run_id, ...

        Returns:
            The job.
        """
        body = {"repository": repository, "labels": labels, "steps": steps, **fields}
        return dict(self._call("POST", "/jobs", body))

    def job(self, job_id: int) -> dict[str, Any]:
        """A job with its log and event times.

        Args:
            job_id: the job.

        Returns:
            The job.
        """
        return dict(self._call("GET", f"/jobs/{int(job_id)}"))

    def jobs(self, status: str | None = None) -> list[dict[str, Any]]:
        """All jobs, or those of a status.

        Args:
            status: queued, in_progress or completed.

        Returns:
            The jobs.
        """
        suffix = f"?status={status}" if status else ""
        return list(self._call("GET", f"/jobs{suffix}"))

    def wait_job(
        self, job_id: int, status: str = "completed", timeout: float = 60.0, interval: float = 0.1
    ) -> dict[str, Any]:
        """Poll a job until it reaches a status (``completed`` is final).

        Args:
            job_id: the job.
            status: the status to wait for.
            timeout: seconds to wait.
            interval: seconds between polls.

        Returns:
            The job.

        Raises:
            TimeoutError: when the deadline passes first.
        """
        order = ("queued", "in_progress", "completed")
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] == status or (
                job["status"] in order and order.index(job["status"]) > order.index(status)
            ):
                return job
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is {job['status']} after {timeout} s")
            time.sleep(interval)

    def runners(self) -> list[dict[str, Any]]:
        """All runners, with scope, status, busy, labels and last_seen.

        Returns:
            The runners.
        """
        return list(self._call("GET", "/runners"))

    def add_fault(self, **spec: Any) -> dict[str, Any]:
        """Add a fault rule (``POST /_sandbox/faults``).

        Args:
            spec: status, probability, path_regex, latency_ms, method, count, retry_after,
                drip_ms (the body one byte every drip_ms), or
                rate_limit={"remaining": 0, "reset_in": 60}.

        Returns:
            The rule.
        """
        return dict(self._call("POST", "/faults", spec))

    def clear_faults(self) -> None:
        """Remove all fault rules and forced rate-limit windows."""
        self._call("DELETE", "/faults")

    def add_token(self, token: str, access: str = "admin") -> None:
        """Add an API token.

        Args:
            token: the token.
            access: "admin" or "readonly".
        """
        self._call("POST", "/tokens", {"token": token, "access": access})

    def revoke_token(self, token: str) -> bool:
        """Revoke an API token.

        Args:
            token: the token.

        Returns:
            Whether it existed.
        """
        return bool(self._call("POST", "/tokens", {"token": token, "revoke": True})["revoked"])

    def stats(self) -> dict[str, Any]:
        """Request counts per route, runners and jobs by status.

        Returns:
            The counters.
        """
        return dict(self._call("GET", "/stats"))

    def reset_stats(self) -> None:
        """Zero the request counts."""
        self._call("POST", "/stats/reset")

    def set_runner_version(self, version: str) -> None:
        """Change the runner version the downloads offer.

        Args:
            version: "X.Y.Z".
        """
        self._call("POST", "/runner-version", {"version": version})

    def register_app(
        self, client_id: str, public_key: str, installations: list[int] | None = None
    ) -> dict[str, Any]:
        """Register (or replace) a GitHub App with its PEM public key and installations.

        Args:
            client_id: the app's client ID.
            public_key: the PEM public key of the app's key pair.
            installations: installation ids (default permissions: runner administration).

        Returns:
            client_id, app_id and installations.
        """
        body = {
            "client_id": client_id,
            "public_key": public_key,
            "installations": [{"id": i} for i in installations or []],
        }
        return dict(self._call("POST", "/apps", body))

    def apps(self) -> list[dict[str, Any]]:
        """The apps, with each installation's ``tokens_issued`` count.

        Returns:
            The apps.
        """
        return list(self._call("GET", "/apps"))

    def revoke_app_keys(self, client_id: str) -> None:
        """Revoke every key of an app (its JWTs stop verifying).

        Args:
            client_id: the app.
        """
        self._call("POST", f"/apps/{client_id}/revoke-keys")

    def set_app_token_lifetime(self, seconds: float) -> None:
        """Make installation tokens given from now on last ``seconds``.

        Args:
            seconds: the lifetime.
        """
        self._call("POST", "/app-token-lifetime", {"seconds": seconds})

    def webhook_faults(
        self, drop_ratio: float, seed: int, actions: list[str] | None = None
    ) -> WebhookFaults:
        """Drop a seeded share of webhook deliveries (``POST /_sandbox/webhooks/faults``).

        Args:
            drop_ratio: probability (0..1) that a matching delivery is dropped.
            seed: seed of the draws (one per matching delivery, in delivery order).
            actions: the actions to draw for (default: queued, in_progress and completed).

        Returns:
            The rule.
        """
        body: dict[str, Any] = {"drop_ratio": drop_ratio, "seed": seed}
        if actions is not None:
            body["actions"] = list(actions)
        rule = self._call("POST", "/webhooks/faults", body)
        return WebhookFaults(
            float(rule["drop_ratio"]),
            int(rule["seed"]),
            tuple(rule["actions"]),
            int(rule["draws"]),
            int(rule["dropped"]),
        )

    def clear_webhook_faults(self) -> None:
        """Stop dropping webhook deliveries."""
        self._call("DELETE", "/webhooks/faults")

    def redeliver(self, delivery_id: str) -> WebhookDelivery:
        """Send a delivery again (same body and X-GitHub-Delivery id, never dropped).

        Args:
            delivery_id: the delivery's id (one of the last 1000).

        Returns:
            The queued redelivery (status None: the listing gets its outcome).
        """
        path = f"/webhooks/{urllib.parse.quote(delivery_id, safe='')}/redeliver"
        return WebhookDelivery.from_json(self._call("POST", path))

    def deliveries(self) -> list[WebhookDelivery]:
        """Every webhook delivery so far, dropped ones and redeliveries included, in order.

        Returns:
            The deliveries.
        """
        return [WebhookDelivery.from_json(d) for d in self._call("GET", "/webhooks")]
