"""harness.local: what a child process gets to join an environment (no LXD needed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness.local import LocalEnvironment, LocalOptions, SandboxAddress


def test_attach_spec_carries_the_plain_settings_through_json() -> None:
    options = LocalOptions(
        app_name="soak",
        labels=("a", "b"),
        metrics=True,
        settings={"busy_delete_wait": 2.0, "create_parallelism": 3, "state_dir": Path("/x")},
    )
    env = LocalEnvironment(options)
    try:
        env.sandbox = SandboxAddress(
            "http://198.18.0.10:8080", "http://198.18.0.10:8080/api", 8080
        )
        env.network = "tn0000"
        spec = json.loads(json.dumps(env.attach_spec()))
    finally:
        shutil.rmtree(env.workdir, ignore_errors=True)
    # the soak's and chaos' manager children run with their parent's manager settings
    assert spec["options"]["settings"] == {"busy_delete_wait": 2.0, "create_parallelism": 3}
    joined = LocalOptions(**{**spec["options"], "labels": tuple(spec["options"]["labels"])})
    assert (joined.app_name, joined.labels, joined.metrics) == ("soak", ("a", "b"), True)
    assert joined.settings["busy_delete_wait"] == 2.0
    assert spec["sandbox"] == ["http://198.18.0.10:8080", "http://198.18.0.10:8080/api", 8080]
