"""The sandbox's encoded JIT configuration, shaped like GitHub's.

``encoded_jit_config`` is base64 of a JSON object mapping file names to base64 file contents:
``.runner`` (runner id, name, server URL, ...) and ``.credentials`` (the runner's own credential,
never an API token), as actions/runner's JIT config maps its settings files.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from sandbox.state import Runner


def _b64(obj: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(obj, sort_keys=True).encode()).decode()


def runner_settings(runner: Runner, base_url: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The ``.runner`` file content of a runner.

    Args:
        runner: the runner.
        base_url: sandbox root URL.
        settings: extra runner app settings (poll_wait, heartbeat_interval).

    Returns:
        The settings.
    """
    scope = runner.scope
    return {
        "agentId": runner.id,
        "agentName": runner.name,
        "poolId": runner.group_id,
        "poolName": runner.group_name,
        "serverUrl": base_url,
        "gitHubUrl": f"{base_url}/{scope.name}",
        "workFolder": runner.work_folder,
        "ephemeral": runner.ephemeral,
        "labels": runner.label_names(),
        **settings,
    }


def credentials(runner: Runner) -> dict[str, Any]:
    """The ``.credentials`` file content of a runner.

    Args:
        runner: the runner.

    Returns:
        The credentials.
    """
    return {"scheme": "SandboxRunner", "data": {"token": runner.credential}}


def encode(runner: Runner, base_url: str, settings: dict[str, Any]) -> str:
    """Encode a runner's JIT configuration.

    Args:
        runner: the runner.
        base_url: sandbox root URL.
        settings: extra runner app settings.

    Returns:
        The base64 string for ``run.sh --jitconfig``.
    """
    files = {
        ".runner": _b64(runner_settings(runner, base_url, settings)),
        ".credentials": _b64(credentials(runner)),
    }
    return _b64(files)


def decode(encoded: str) -> dict[str, dict[str, Any]]:
    """Decode a JIT configuration (for tests).

    Args:
        encoded: the base64 string.

    Returns:
        File name -> parsed JSON content.
    """
    files = json.loads(base64.b64decode(encoded))
    return {name: json.loads(base64.b64decode(content)) for name, content in files.items()}
