"""Validate sandbox /api/v3 responses against GitHub's OpenAPI description (openapi-core).

The spec is ``../shared/github-openapi/runners-subset.json`` beside the repository root; the
GitHub App paths (``/app/...``) are validated against ``sandbox/openapi/app-subset.json``.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.templating.responses.exceptions import ResponseNotFound
from openapi_schema_validator import OAS30Validator
from werkzeug.datastructures import Headers, ImmutableMultiDict

from sandbox.server import SandboxServer
from sandbox.web import Request, Response
from tests.sandbox.sandbox_testlib import TOTALS

SPEC_PATH = (
    Path(__file__).resolve().parents[2]
    / ".."
    / "shared"
    / "github-openapi"
    / "runners-subset.json"
)
APP_SPEC_PATH = Path(__file__).resolve().parents[2] / "sandbox" / "openapi" / "app-subset.json"
APP_PATH_PREFIX = "/app/"
API_PREFIX = "/api/v3"
SPEC_HOST = "https://api.github.com"


def _allow_null_in_nullable_enums(node: Any) -> int:
    """Add None to the enum of every ``nullable: true`` schema that has one.

    GitHub marks e.g. ``job.conclusion`` as ``nullable`` with an ``enum`` of strings and sends
    ``null`` for an unfinished job. OpenAPI 3.0.3 reads ``nullable`` as not extending ``enum``
    (openapi-schema-validator enforces that), so the published description would reject GitHub's
    own responses. Validation uses the reading GitHub's API has in practice: null allowed.

    Args:
        node: a part of the spec, changed in place.

    Returns:
        How many enums were changed.
    """
    changed = 0
    if isinstance(node, dict):
        enum = node.get("enum")
        if node.get("nullable") is True and isinstance(enum, list) and None not in enum:
            node["enum"] = [*enum, None]
            changed += 1
        for value in node.values():
            changed += _allow_null_in_nullable_enums(value)
    elif isinstance(node, list):
        for value in node:
            changed += _allow_null_in_nullable_enums(value)
    return changed


@lru_cache(maxsize=1)
def spec_dict() -> dict[str, Any]:
    """The parsed spec, with null allowed in nullable enums (see above)."""
    spec: dict[str, Any] = json.loads(SPEC_PATH.read_text())
    _allow_null_in_nullable_enums(spec)
    return spec


@lru_cache(maxsize=1)
def openapi() -> OpenAPI:
    """The openapi-core object of the spec."""
    return OpenAPI.from_dict(spec_dict())


@lru_cache(maxsize=1)
def app_spec_dict() -> dict[str, Any]:
    """The GitHub App subset (installation access tokens)."""
    spec: dict[str, Any] = json.loads(APP_SPEC_PATH.read_text())
    _allow_null_in_nullable_enums(spec)
    return spec


@lru_cache(maxsize=1)
def app_openapi() -> OpenAPI:
    """The openapi-core object of the GitHub App subset."""
    return OpenAPI.from_dict(app_spec_dict())


@dataclass
class _OARequest:
    host_url: str
    path: str
    method: str
    parameters: RequestParameters
    content_type: str
    body: bytes | None


@dataclass
class _OAResponse:
    data: bytes
    status_code: int
    content_type: str
    headers: Headers


def _basic_error_validator() -> OAS30Validator:
    schema = dict(spec_dict()["components"]["schemas"]["basic-error"])
    return OAS30Validator(schema)


def _short(error: Any) -> str:
    where = "/".join(str(p) for p in getattr(error, "absolute_path", []))
    return f"{where}: {getattr(error, 'message', error)}"


def spec_operations() -> set[tuple[str, str]]:
    """(METHOD, path template) of every operation in the spec."""
    return {
        (method.upper(), path)
        for path, item in spec_dict()["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }


def spec_statuses() -> set[tuple[str, str, int]]:
    """(METHOD, path template, status) of every documented response in the spec."""
    return {
        (method.upper(), path, int(status))
        for path, item in spec_dict()["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
        for status in operation["responses"]
    }


@contextlib.contextmanager
def checked(server: SandboxServer, checker: Checker | None = None) -> Iterator[SandboxServer]:
    """Run a sandbox whose /api/v3 responses are validated; raise on any violation at exit.

    Args:
        server: a sandbox, not started yet.
        checker: the checker to use (a new one by default).

    Yields:
        The running server.
    """
    checker = checker or Checker()
    server.observers.append(checker.observe)
    with server:
        yield server
    TOTALS["validated"] += checker.validated
    TOTALS["skipped"] += len(checker.skipped)
    assert not checker.errors, "responses that do not match the OpenAPI description:\n" + (
        "\n".join(checker.errors)
    )


@dataclass
class Checker:
    """Collects sandbox exchanges and validates the /api/v3 ones."""

    validated: int = 0
    operations: set[tuple[str, str, int]] = field(default_factory=set)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, request: Request, response: Response) -> None:
        """Server observer: validate one exchange (errors are collected, not raised).

        Args:
            request: the sandbox request.
            response: the sandbox response.
        """
        if not (request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/")):
            return
        try:
            outcome = self.check(request, response)
        except Exception as exc:
            outcome = f"{request.method} {request.path} -> {response.status}: {exc!r}"
        with self.lock:
            if outcome is None:
                self.validated += 1
                self.operations.add((request.method, request.route or "", response.status))
            elif outcome.startswith("skip:"):
                self.skipped.append(outcome)
            else:
                self.errors.append(outcome)

    def check(self, request: Request, response: Response) -> str | None:
        """Validate one exchange.

        Args:
            request: the sandbox request.
            response: the sandbox response.

        Returns:
            None when valid, "skip: ..." when the spec does not describe it, else the error.
        """
        path = request.path[len(API_PREFIX) :] or "/"
        oa_request = _OARequest(
            host_url=SPEC_HOST,
            path=path,
            method=request.method.lower(),
            parameters=RequestParameters(
                query=ImmutableMultiDict([(k, v) for k, vs in request.query.items() for v in vs]),
                header=Headers(list(request.headers.items())),
            ),
            content_type=request.header("Content-Type") or "application/json",
            body=request.body or None,
        )
        content_type = response.content_type.split(";")[0] if response.content_type else ""
        oa_response = _OAResponse(
            data=response.body,
            status_code=response.status,
            content_type=content_type,
            headers=Headers(response.headers),
        )
        spec = app_openapi() if path.startswith(APP_PATH_PREFIX) else openapi()
        try:
            spec.validate_response(oa_request, oa_response)
        except Exception as exc:
            cause = exc if isinstance(exc, (PathError, ResponseNotFound)) else exc.__cause__
            if isinstance(cause, ResponseNotFound) or (
                isinstance(cause, PathError) and response.status >= 400
            ):
                # A status the operation does not document (401, 403, 429, 5xx...), or an
                # error on a path GitHub has but the subset leaves out: a basic-error body.
                _basic_error_validator().validate(json.loads(response.body))
                return None
            if isinstance(cause, PathError):
                return f"skip: {request.method} {path} is not in the spec"
            errors = getattr(exc, "schema_errors", None) or getattr(cause, "schema_errors", [])
            detail = "; ".join(_short(e) for e in errors) or str(exc)
            return f"{request.method} {path} -> {response.status}: {type(exc).__name__}: {detail}"
        return None
