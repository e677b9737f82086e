"""Hostile stores: whatever a runner leaves in its store, extract() stays safe.

Properties checked on every generated store set:

- nothing escapes ``extract()`` as an exception, and it never blocks (FIFOs);
- nothing outside the store is read: a canary directory outside the stores holds *valid* metric
  files with a unique workflow name, and runners link to it in every way; the canary never shows
  up in the yielded metrics, and the canary files are never modified or removed;
- each store ends as the oracle (the written rules of ``metrics.runner``) says: yielded with
  exactly the values written, deleted without a yield, or quarantined (one archive);
- stores of ignored runners are left untouched; nothing else is left in the base directory.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metrics.runner import (
    FILE_SIZE_BYTES_LIMIT,
    MAX_STORE_ENTRIES,
    PRE_JOB_METRICS_FILE_NAME,
    RUNNER_INSTALLED_TS_FILE_NAME,
)
from metrics.type import MAX_TIMESTAMP, MIN_TIMESTAMP
from tests.unit.metrics_hostile_store import (
    METRIC_NAMES,
    Dir,
    Fifo,
    File,
    Link,
    Sandbox,
    Sparse,
    Store,
    check,
    link_targets,
    reset,
    sandbox_fixture,  # noqa: F401
)

T = TypeVar("T")

# --- strategies ----------------------------------------------------------------------------

# Field values come from pools built once (boundary values first, then seeded random ones), so
# that each file costs Hypothesis a single draw: 10,000 examples then fit in about a minute.
_rng = random.Random(20261123)
_TIMESTAMPS: list[float | int] = [
    int(MIN_TIMESTAMP),
    MIN_TIMESTAMP + 0.5,
    int(MAX_TIMESTAMP) - 1,
    math.nextafter(MAX_TIMESTAMP, 0),
    1_763_884_800,
    1_763_884_800.123456789,
] + [_rng.uniform(MIN_TIMESTAMP, MAX_TIMESTAMP) for _ in range(40)]
_TIMESTAMPS += [int(t) for t in _TIMESTAMPS[6:26]]
_WORKFLOWS = [
    "CI",
    "a",
    "x" * 256,
    "日本語のワークフロー",
    "emoji 😀 flow",
    '"quoted" \\ back',
    "ñ",
] + [
    "".join(chr(_rng.choice([_rng.randint(32, 126), _rng.randint(128, 0x2FFF)])) for _ in range(n))
    for n in (1, 5, 17, 60, 120)
]
_RUN_IDS = [0, 1, 2**31, 2**53 + 1, 2**63 - 1] + [_rng.randint(0, 2**63 - 1) for _ in range(10)]
_REPO_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
_REPOS = ["o/r", "canonical/github-runner", f"{'a' * 100}/{'b' * 100}", "..../-._"] + [
    "".join(_rng.choice(_REPO_CHARS) for _ in range(_rng.randint(1, 30)))
    + "/"
    + "".join(_rng.choice(_REPO_CHARS) for _ in range(_rng.randint(1, 30)))
    for _ in range(10)
]
_EVENTS = ["push", "pull_request", "workflow_dispatch", "_", "a" * 64, "schedule"]


def _pick(pool: Sequence[object], i: int) -> object:
    return pool[i % len(pool)]


VALID_PRE_POOL: list[dict[str, object]] = [
    {
        "timestamp": _pick(_TIMESTAMPS, i * 7),
        "workflow": _pick(_WORKFLOWS, i * 3),
        "workflow_run_id": _pick(_RUN_IDS, i * 5),
        "repository": _pick(_REPOS, i * 11),
        "event": _pick(_EVENTS, i),
    }
    for i in range(256)
]
VALID_POST_POOL: list[dict[str, object]] = [
    {
        "timestamp": _pick(_TIMESTAMPS, i * 5),
        "status": _pick(["normal", "abnormal", "repo-policy-check-failure"], i),
        **(
            {}
            if i % 4 == 0
            else {
                "status_info": None if i % 4 == 1 else {"code": _pick([0, 1, 137, 403, 65535], i)}
            }
        ),
    }
    for i in range(128)
]
VALID_INSTALLED_POOL = [
    (f"{t}\n" if i % 2 else str(t)).encode() for i, t in enumerate(_TIMESTAMPS)
] + [b"1763884800 ", b"\t1763884800\r\n", b"1763884800.5"]

BAD_TIMESTAMPS: list[object] = [
    int(MIN_TIMESTAMP) - 1,
    -1,
    0,
    int(MAX_TIMESTAMP),
    1e300,
    MAX_TIMESTAMP,
    True,
    None,
    "1763884800x",
    [],
]
BAD_PRE_VALUES: dict[str, list[object]] = {
    "timestamp": BAD_TIMESTAMPS,
    "workflow": ["", "a\nb", "tab\there", "\x7f", "x" * 257, 5, None],
    "workflow_run_id": [-1, -(2**63), 2**63, 2**70, 1.0, "12", True, None],
    "repository": ["noslash", "../../x", "a/b/c", "", "a /b", "a/" + "b" * 101],
    "event": ["Push", "a-b", "", "a" * 65, 1, "push\n"],
}
BAD_POST_VALUES: dict[str, list[object]] = {
    "timestamp": BAD_TIMESTAMPS,
    "status": ["NORMAL", "ok", "repo_policy_check_failure", 0, None, ""],
    "status_info": [{"code": -1}, {"code": 65536}, {"code": "1"}, {"code": 1, "x": 2}, {}, 3],
}
BAD_INSTALLED = [
    b"nan",
    b"inf",
    b"1e9",
    b"0x10",
    b"",
    b" ",
    b"-1763884800",
    b"1763884800.1234567890",
    b"1763884800,5",
    b"+1763884800",
] + [str(t).encode() for t in BAD_TIMESTAMPS]
LINK_TARGETS = sorted(link_targets(Path("/x")))
SPARSE_SIZES = [FILE_SIZE_BYTES_LIMIT + 1, 1 << 20, 10 << 30]
OTHER_NAMES = [
    "lost+found",
    "notes.txt",
    ".hidden",
    "pre-job-metrics.json.tmp",
    ".pre-job-metrics.json.tmp",
    ".post-job-metrics.json.tmp",
    os.fsdecode(b"\xff"),
    "PRE-JOB-METRICS.JSON",
    " pre-job-metrics.json",
    "a" * 255,
]
# Index 0 of each list is the simplest choice, so Hypothesis shrinks towards plain valid stores.
ROOTS = ["dir"] * 20 + ["link-canary", "link-dangling", "file", "fifo"]
KINDS = ["valid"] * 12 + ["absent"] * 3 + [
    "oversize", "broken", "broken", "garbage", "truncated", "sparse", "link", "link", "fifo", "dir"
]  # fmt: skip
EXTRA = [0] * 12 + [1, 1, 2, MAX_STORE_ENTRIES]
GENOME_BYTES = 40


class Genome:
    """Reads choices from the bytes Hypothesis drew; past the end, every choice is 0."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.pos = 0
        self.rng = random.Random(raw)

    def byte(self) -> int:
        value = self.raw[self.pos] if self.pos < len(self.raw) else 0
        self.pos += 1
        return value

    def pick(self, options: Sequence[T]) -> T:
        return options[self.byte() % len(options)]

    def garbage(self) -> bytes:
        return b"\x00" + self.rng.randbytes(self.byte() % 64)


def _dumps(data: object, ascii_only: bool) -> bytes:
    return json.dumps(data, ensure_ascii=ascii_only).encode()


def broken_json(g: Genome, valid: dict[str, object], bad: dict[str, list[object]]) -> bytes:
    data = dict(valid)
    how = g.pick(["value", "value", "extra", "missing", "not-object", "duplicate-bad"])
    if how == "value":
        key = g.pick(sorted(bad))
        data[key] = g.pick(bad[key])
    elif how == "extra":
        data[g.pick(["token", "x", "__class__", "Timestamp"])] = g.byte()
    elif how == "missing":
        del data[g.pick(sorted(k for k in data if k != "status_info"))]
    elif how == "not-object":
        return _dumps(list(data.values()), True)
    else:  # the last of duplicate keys wins in the parser: make it the bad one
        key = g.pick(sorted(bad))
        text = _dumps(data, True)[:-1] + b", " + _dumps({key: g.pick(bad[key])}, True)[1:]
        return text
    return _dumps(data, g.byte() % 2 == 0)


def special_entry(g: Genome, kind: str, depth: int = 0) -> object:
    if kind == "sparse":
        return Sparse(g.pick(SPARSE_SIZES))
    if kind == "link":
        return Link(g.pick(LINK_TARGETS))
    if kind == "fifo":
        return Fifo()
    if kind == "file" or depth >= 1:
        return File(g.garbage(), False)
    children = {}
    for _ in range(g.byte() % 4):
        name = g.pick(["a", "b", PRE_JOB_METRICS_FILE_NAME])
        children[name] = special_entry(g, g.pick(["sparse", "link", "fifo", "dir"]), depth + 1)
    return Dir(tuple(children.items()))


def metric_entry(g: Genome, name: str, kind: str) -> object:
    if kind in ("sparse", "link", "fifo", "dir"):
        return special_entry(g, kind)
    if kind == "garbage":
        return File(g.garbage(), False)
    if name == RUNNER_INSTALLED_TS_FILE_NAME:
        valid_text = g.pick(VALID_INSTALLED_POOL)
        if kind == "valid":
            return File(valid_text, True)
        if kind == "oversize":
            return File(valid_text + b" " * 1100, True)
        return File(g.pick(BAD_INSTALLED), False)
    pool, bad = (
        (VALID_PRE_POOL, BAD_PRE_VALUES)
        if name == PRE_JOB_METRICS_FILE_NAME
        else (VALID_POST_POOL, BAD_POST_VALUES)
    )
    valid = g.pick(pool)
    ascii_only = g.byte() % 2 == 0
    if kind == "valid":
        return File(_dumps(valid, ascii_only), True)
    if kind == "oversize":
        return File(_dumps(valid, ascii_only) + b" " * 1100, True)
    if kind == "truncated":
        return File(_dumps(valid, ascii_only)[:-1], False)
    return File(broken_json(g, valid, bad), False)


def decode_store(raw: bytes) -> Store:
    g = Genome(raw)
    root = g.pick(ROOTS)
    entries: list[tuple[str, object]] = []
    for name in METRIC_NAMES:
        kind = g.pick(KINDS)
        if kind != "absent":
            entries.append((name, metric_entry(g, name, kind)))
    extra = g.pick(EXTRA)
    if extra == MAX_STORE_ENTRIES:
        entries.extend((f"f{i}", File(b"", False)) for i in range(extra))
    for _ in range(extra if extra < MAX_STORE_ENTRIES else 0):
        if g.byte() % 2:
            name = g.pick(OTHER_NAMES)
        else:  # any byte string is a possible file name, except "/" and NUL
            raw_name = g.rng.randbytes(1 + g.byte() % 12).replace(b"/", b"_").replace(b"\0", b"_")
            name = os.fsdecode(raw_name)
            name = name + "x" if name in (".", "..") else name
        if all(name != n for n, _ in entries):
            entries.append(
                (name, special_entry(g, g.pick(["file", "sparse", "link", "fifo", "dir"])))
            )
    return Store(root=root, entries=tuple(entries))


def decode_example(raw: bytes) -> tuple[list[Store], int | None]:
    """One or two stores, and which of them (if any) belongs to a runner that is still alive."""
    head = raw[0] if raw else 0
    count = 1 + head % 2
    ignored = (head // 2) % 4
    specs = [
        decode_store(raw[1 + i * GENOME_BYTES : 1 + (i + 1) * GENOME_BYTES]) for i in range(count)
    ]
    return specs, ignored if ignored < count else None


# One draw per example: generation stays cheap, and shrinking the bytes towards zero shrinks
# towards one plain, valid store.
examples = st.binary(min_size=1 + 2 * GENOME_BYTES, max_size=1 + 2 * GENOME_BYTES).map(
    decode_example
)


@settings(
    max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "10000")),
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
@given(example=examples)
def test_hostile_stores_property(
    sandbox: Sandbox, example: tuple[list[Store], int | None]
) -> None:
    specs, ignored = example
    try:
        check(sandbox, specs, ignored)
    finally:
        reset(sandbox)
