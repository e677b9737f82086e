"""The WSGI application of the policy service (no framework: five routes).

* ``GET /health`` -> 200 ``{"ok": true}``.
* ``GET /one-time-token`` with ``Authorization: Bearer <service token>`` -> 200, the token as
  ``text/plain``; 401 without the service token, 503 while no service token is configured.
* ``POST /check`` with ``Authorization: Bearer <one-time token>`` and the JSON job description
  -> 200 ``{"allowed": true, "reason"}``; 403 ``{"allowed": false, "reason"}`` for a refused
  job or a refused token; 400 for a malformed body; 401 without a token; 503 when GitHub could
  not be asked (retry later).
* ``PUT /metrics/<runner>/<file>`` (when built with a receiver): a cloud runner's metric file
  (:mod:`metrics.push`).
* ``GET /checks-in-flight`` with the service token -> 200 ``{"in_flight": [digest, ...]}``: the
  SHA-256 digests of the tokens of the ``/check`` requests being answered, counted from when
  the token is accepted (spent) (:mod:`repo_policy.in_flight`; what a wait-repo-check flush
  waits for).

Tokens are never logged; the log says, per check, the repository, event, ref and decision.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from errors import RepoPolicyConfigError, RepoPolicyTokenError
from metrics.push import MetricsPushApp
from repo_policy.config import PolicyConfig
from repo_policy.in_flight import ChecksInFlight
from repo_policy.policy import BadCheckRequestError, CheckRequest, Decision, PolicyGitHub, evaluate
from repo_policy.tokens import OneTimeTokenStore

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # waitress refuses larger bodies first (repo_policy.server_limits)
MAX_JSON_DEPTH = 64  # event payloads nest less than 10 deep
StartResponse = Callable[[str, list[tuple[str, str]]], Any]
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class PolicyApp:
    """The service as a WSGI callable. Every collaborator is injected (seams for tests).

    Attributes:
        tokens: The one-time token store.
        in_flight: The checks being answered.
    """

    def __init__(
        self,
        service_token: Callable[[], str | None],
        tokens: OneTimeTokenStore,
        github: Callable[[], PolicyGitHub],
        config: Callable[[], PolicyConfig],
        *,
        before_check: Callable[[CheckRequest], None] | None = None,
        metrics_push: MetricsPushApp | None = None,
    ) -> None:
        """Build the application.

        Args:
            service_token: Returns the charm's token for this service (None: not configured).
            tokens: The one-time token store.
            github: Returns the GitHub client to ask (called per check, so a rotated GitHub
                token takes effect at once).
            config: Returns the current configuration.
            before_check: Test hook called with each valid check request before GitHub is
                asked (e.g. to make one check slow). Never set in production.
            metrics_push: Where cloud runners push their metric files (``PUT /metrics/...``,
                :mod:`metrics.push`); None: the route answers 404.
        """
        self._service_token = service_token
        self.tokens = tokens
        self._github = github
        self._config = config
        self._before_check = before_check
        self._metrics_push = metrics_push
        self.in_flight = ChecksInFlight()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Answer one request.

        Args:
            environ: The WSGI environment.
            start_response: The WSGI callback.

        Returns:
            The body.
        """
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "") or "/"
        if self._metrics_push is not None and self._metrics_push.handles(path):
            return self._metrics_push(environ, start_response)
        try:
            status, headers, body = self._route(method, path.rstrip("/") or "/", environ)
        except Exception:  # a bug answers 500 (and never allows a job)
            logger.exception("policy service: unhandled error on %s %s", method, path)
            status, headers, body = _json(500, {"reason": "internal error of the policy service"})
        start_response(
            f"{status} {_REASONS.get(status, 'Error')}",
            [*headers, ("Content-Length", str(len(body))), ("Cache-Control", "no-store")],
        )
        return [body]

    def _route(
        self, method: str, path: str, environ: dict[str, Any]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        # Only /health answers HEAD: a HEAD of /one-time-token would mint a token nobody reads.
        routes: dict[str, tuple[tuple[str, ...], Callable[[dict[str, Any]], Any]]] = {
            "/health": (("GET", "HEAD"), lambda _: _json(200, {"ok": True})),
            "/one-time-token": (("GET",), self._one_time_token),
            "/check": (("POST",), self._check),
            "/checks-in-flight": (("GET",), self._checks_in_flight),
        }
        route = routes.get(path)
        if route is None:
            return _json(404, {"reason": "not found"})
        methods, handler = route
        if method not in methods:
            allowed = methods[0]
            answer = _json(405, {"reason": f"use {allowed}"})
            answer[1].append(("Allow", allowed))
            return answer
        result: tuple[int, list[tuple[str, str]], bytes] = handler(environ)
        return result

    def _checks_in_flight(
        self, environ: dict[str, Any]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        expected, presented = self._service_token(), _bearer(environ) or ""
        if not expected or not hmac.compare_digest(
            presented.encode("utf-8", "surrogateescape"), expected.encode()
        ):
            return _json(401, {"reason": "a valid service token is required"})
        return _json(200, {"in_flight": self.in_flight.digests()})

    def _one_time_token(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        expected = self._service_token()
        if not expected:
            return _json(503, {"reason": "the service token is not configured"})
        presented = _bearer(environ)
        if presented is None or not hmac.compare_digest(
            presented.encode("utf-8", "surrogateescape"), expected.encode()
        ):
            return _json(401, {"reason": "a valid service token is required"})
        token = self.tokens.issue()
        return 200, [("Content-Type", "text/plain; charset=utf-8")], token.encode()

    def _check(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        presented = _bearer(environ)
        if presented is None:
            return _json(401, {"allowed": False, "reason": "a one-time token is required"})
        try:
            self.tokens.consume(presented)
        except RepoPolicyTokenError as exc:
            logger.warning("check refused: %s", exc.message)
            return _json(403, {"allowed": False, "reason": exc.message})
        # In flight only once its token is spent here: a replayed (spent) token is never counted,
        # so a job that can read its runner's token (OpenStack's metadata service) holds no flush.
        with self.in_flight.checking(presented):
            return self._answer(environ)

    def _answer(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        try:
            check = CheckRequest.from_json(_decode(_read_body(environ)))
        except _BodyError as exc:
            return _json(exc.status, {"allowed": False, "reason": exc.reason})
        except BadCheckRequestError as exc:
            return _json(400, {"allowed": False, "reason": str(exc)})
        if self._before_check is not None:
            self._before_check(check)
        try:
            config = self._config()
        except RepoPolicyConfigError as exc:
            logger.error("invalid policy configuration: %s", exc.message)
            decision = Decision.unavailable("the policy service is misconfigured")
        else:
            decision = evaluate(check, config, self._github())
        logger.info(
            "check %s %s %s (actor %s): %s, %s",
            check.repository,
            check.event,
            check.ref,
            check.actor,
            "allowed" if decision.allowed else f"refused {decision.status}",
            decision.reason,
        )
        return _json(decision.status, {"allowed": decision.allowed, "reason": decision.reason})


class _BodyError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        length = -1
    if length < 0:
        raise _BodyError(411, "a Content-Length is required")
    if length > MAX_BODY:
        raise _BodyError(413, f"the body is larger than {MAX_BODY} bytes")
    data: bytes = environ["wsgi.input"].read(length)
    return data


def _decode(body: bytes) -> Any:
    """Decode a JSON body nested at most :data:`MAX_JSON_DEPTH` levels deep.

    ``json.loads`` recurses once per level and raises ``RecursionError`` near Python's limit;
    the depth of what it returns is then measured without recursion.

    Raises:
        _BodyError: 400 when the body is not JSON or nests too deep.
    """
    too_deep = _BodyError(400, f"the body is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        data = json.loads(body)
    except RecursionError:
        raise too_deep from None
    except ValueError:
        raise _BodyError(400, "the body is not JSON") from None
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        if isinstance(value, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise too_deep
            stack.extend((child, depth + 1) for child in children)
    return data


def _bearer(environ: dict[str, Any]) -> str | None:
    value = str(environ.get("HTTP_AUTHORIZATION", "")).strip()
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def _json(status: int, payload: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    body = json.dumps(payload).encode()
    return status, [("Content-Type", "application/json")], body
