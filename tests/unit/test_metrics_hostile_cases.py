"""Hostile stores, hand-written: the notable cases (links, FIFOs, sparse files, bad JSON...).

Each case is one store checked with the same harness and oracle as the property test in
test_metrics_hostile.py (see tests/unit/metrics_hostile_store.py).
"""

from __future__ import annotations

import json

import pytest

from metrics.runner import (
    POST_JOB_METRICS_FILE_NAME,
    PRE_JOB_METRICS_FILE_NAME,
    RUNNER_INSTALLED_TS_FILE_NAME,
)
from tests.unit.metrics_hostile_store import (
    CANARY_PRE,
    Fifo,
    File,
    Link,
    Sandbox,
    Sparse,
    Store,
    check,
    oracle,
    reset,
    sandbox_fixture,  # noqa: F401
)

# --- hand-written cases ------------------------------------------------------------------------

VALID_INSTALLED = File(b"1763884800\n", True)
VALID_PRE = File(json.dumps({**CANARY_PRE, "workflow": "CI", "repository": "o/r"}).encode(), True)
VALID_POST = File(b'{"timestamp": 1763884900, "status": "normal"}', True)

HAND_WRITTEN: dict[str, Store] = {
    "valid": Store(
        "dir",
        (
            (RUNNER_INSTALLED_TS_FILE_NAME, VALID_INSTALLED),
            (PRE_JOB_METRICS_FILE_NAME, VALID_PRE),
            (POST_JOB_METRICS_FILE_NAME, VALID_POST),
        ),
    ),
    "oversize file": Store(
        "dir",
        (
            (RUNNER_INSTALLED_TS_FILE_NAME, VALID_INSTALLED),
            (PRE_JOB_METRICS_FILE_NAME, File(VALID_PRE.content + b" " * 1024, True)),
        ),
    ),
    "sparse 10 GiB": Store(
        "dir",
        (
            (RUNNER_INSTALLED_TS_FILE_NAME, VALID_INSTALLED),
            (PRE_JOB_METRICS_FILE_NAME, Sparse(10 << 30)),
        ),
    ),
    "symlink to host canary": Store(
        "dir",
        (
            (RUNNER_INSTALLED_TS_FILE_NAME, VALID_INSTALLED),
            (PRE_JOB_METRICS_FILE_NAME, Link("canary-pre")),
        ),
    ),
    "symlinked installed timestamp": Store(
        "dir", ((RUNNER_INSTALLED_TS_FILE_NAME, Link("canary-installed")),)
    ),
    "symlink to directory": Store(
        "dir",
        (
            (RUNNER_INSTALLED_TS_FILE_NAME, VALID_INSTALLED),
            (PRE_JOB_METRICS_FILE_NAME, Link("canary-dir")),
        ),
    ),
    "dot-dot link": Store(
        "dir",
        (
            (RUNNER_INSTALLED_TS_FILE_NAME, VALID_INSTALLED),
            (POST_JOB_METRICS_FILE_NAME, Link("up-canary")),
        ),
    ),
    "link to /etc/passwd": Store(
        "dir",
        (
            (RUNNER_INSTALLED_TS_FILE_NAME, VALID_INSTALLED),
            (PRE_JOB_METRICS_FILE_NAME, Link("etc-passwd")),
        ),
    ),
    "fifo": Store(
        "dir",
        ((RUNNER_INSTALLED_TS_FILE_NAME, VALID_INSTALLED), (PRE_JOB_METRICS_FILE_NAME, Fifo())),
    ),
    "fifo installed": Store("dir", ((RUNNER_INSTALLED_TS_FILE_NAME, Fifo()),)),
    "invalid json": Store(
        "dir",
        (
            (RUNNER_INSTALLED_TS_FILE_NAME, VALID_INSTALLED),
            (PRE_JOB_METRICS_FILE_NAME, File(b"{", False)),
        ),
    ),
    "wrong types": Store(
        "dir",
        (
            (RUNNER_INSTALLED_TS_FILE_NAME, VALID_INSTALLED),
            (POST_JOB_METRICS_FILE_NAME, File(b'{"timestamp": "now", "status": 1}', False)),
        ),
    ),
    "negative numbers": Store("dir", ((RUNNER_INSTALLED_TS_FILE_NAME, File(b"-5", False)),)),
    "huge numbers": Store(
        "dir",
        (
            (RUNNER_INSTALLED_TS_FILE_NAME, VALID_INSTALLED),
            (POST_JOB_METRICS_FILE_NAME, File(b'{"timestamp": 1e308, "status": "normal"}', False)),
        ),
    ),
    "missing files": Store("dir", ()),
    "missing installed": Store("dir", ((PRE_JOB_METRICS_FILE_NAME, VALID_PRE),)),
    "extra file": Store(
        "dir", ((RUNNER_INSTALLED_TS_FILE_NAME, VALID_INSTALLED), ("extra", File(b"x", False)))
    ),
    "extra symlink dir": Store(
        "dir", ((RUNNER_INSTALLED_TS_FILE_NAME, VALID_INSTALLED), ("escape", Link("canary-dir")))
    ),
    "root replaced by symlink": Store("link-canary"),
    "root dangling symlink": Store("link-dangling"),
    "root is a file": Store("file"),
    "root is a fifo": Store("fifo"),
    "self link": Store(
        "dir",
        (
            (RUNNER_INSTALLED_TS_FILE_NAME, VALID_INSTALLED),
            (PRE_JOB_METRICS_FILE_NAME, Link("self")),
        ),
    ),
    "leftover temp file ignored": Store(
        "dir",
        (
            (RUNNER_INSTALLED_TS_FILE_NAME, VALID_INSTALLED),
            (PRE_JOB_METRICS_FILE_NAME, VALID_PRE),
            (".post-job-metrics.json.tmp", Link("canary-post")),
        ),
    ),
    "lost+found symlink ignored": Store(
        "dir",
        ((RUNNER_INSTALLED_TS_FILE_NAME, VALID_INSTALLED), ("lost+found", Link("canary-dir"))),
    ),
}


@pytest.mark.parametrize("case", sorted(HAND_WRITTEN))
def test_hand_written(sandbox: Sandbox, case: str) -> None:
    try:
        check(sandbox, [HAND_WRITTEN[case]], None)
    finally:
        reset(sandbox)


def test_hand_written_outcomes() -> None:
    """The oracle itself says what the policy is for the notable cases."""
    assert oracle(HAND_WRITTEN["valid"]) == "yield"
    assert oracle(HAND_WRITTEN["missing files"]) == "delete"
    assert oracle(HAND_WRITTEN["lost+found symlink ignored"]) == "yield"
    for case in ("symlink to host canary", "root replaced by symlink", "fifo", "sparse 10 GiB"):
        assert oracle(HAND_WRITTEN[case]) == "quarantine"
