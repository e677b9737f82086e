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
import logging
import math
import os
import random
import shutil
import signal
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metrics.runner import (
    FILE_SIZE_BYTES_LIMIT,
    MAX_STORE_ENTRIES,
    POST_JOB_METRICS_FILE_NAME,
    PRE_JOB_METRICS_FILE_NAME,
    RUNNER_INSTALLED_TS_FILE_NAME,
    extract,
)
from metrics.storage import DirectoryStorageManager
from metrics.type import MAX_TIMESTAMP, MIN_TIMESTAMP, RunnerMetrics

METRIC_NAMES = (
    RUNNER_INSTALLED_TS_FILE_NAME,
    PRE_JOB_METRICS_FILE_NAME,
    POST_JOB_METRICS_FILE_NAME,
)
CANARY = "CANARY-7f3a91"
# Entries extract() tolerates and never opens (the rule is restated here, not imported).
TOLERATED = {"lost+found", ".pre-job-metrics.json.tmp", ".post-job-metrics.json.tmp"}
T = TypeVar("T")
CANARY_PRE = {
    "timestamp": 1_763_884_830,
    "workflow": CANARY,
    "workflow_run_id": 1,
    "repository": "canary/canary",
    "event": "push",
}
CANARY_FILES = {
    RUNNER_INSTALLED_TS_FILE_NAME: b"1763884800",
    PRE_JOB_METRICS_FILE_NAME: json.dumps(CANARY_PRE).encode(),
    POST_JOB_METRICS_FILE_NAME: json.dumps(
        {"timestamp": 1_763_884_900, "status": "normal", "status_info": {"code": 4242}}
    ).encode(),
}

# --- the model of a store ------------------------------------------------------------------


@dataclass(frozen=True)
class File:
    content: bytes
    valid: bool  # whether the content is valid for the metric file it is written as


@dataclass(frozen=True)
class Sparse:
    size: int


@dataclass(frozen=True)
class Link:
    target: str  # a key of link_targets() or a literal relative target


@dataclass(frozen=True)
class Fifo:
    pass


@dataclass(frozen=True)
class Dir:
    children: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class Store:
    root: str  # "dir", "link-canary", "link-dangling", "file", "fifo"
    entries: tuple[tuple[str, object], ...] = ()


def link_targets(canary_dir: Path) -> dict[str, str]:
    return {
        "canary-dir": str(canary_dir),
        "canary-pre": str(canary_dir / PRE_JOB_METRICS_FILE_NAME),
        "canary-installed": str(canary_dir / RUNNER_INSTALLED_TS_FILE_NAME),
        "canary-post": str(canary_dir / POST_JOB_METRICS_FILE_NAME),
        "up-canary": f"../../canary/{PRE_JOB_METRICS_FILE_NAME}",
        "up-up": "../../../../../../../../etc/passwd",
        "etc-passwd": "/etc/passwd",
        "self": ".",
        "dangling": "/nonexistent/nothing",
        "proc": "/proc/self/environ",
    }


def build(store: Store, path: Path, canary_dir: Path) -> None:
    targets = link_targets(canary_dir)
    if store.root == "link-canary":
        os.symlink(canary_dir, path)
        return
    if store.root == "link-dangling":
        os.symlink("/nonexistent/store", path)
        return
    if store.root == "file":
        path.write_bytes(CANARY_FILES[PRE_JOB_METRICS_FILE_NAME])
        return
    if store.root == "fifo":
        os.mkfifo(path)
        return
    path.mkdir()
    build_entries(store.entries, path, targets)


def build_entries(
    entries: tuple[tuple[str, object], ...], path: Path, targets: dict[str, str]
) -> None:
    for name, entry in entries:
        target = path / name
        if isinstance(entry, File):
            target.write_bytes(entry.content)
        elif isinstance(entry, Sparse):
            with open(target, "wb") as handle:
                handle.truncate(entry.size)
        elif isinstance(entry, Link):
            os.symlink(targets.get(entry.target, entry.target), target)
        elif isinstance(entry, Fifo):
            os.mkfifo(target)
        elif isinstance(entry, Dir):
            target.mkdir()
            build_entries(entry.children, target, targets)


def oracle(store: Store) -> str:
    """Return "yield", "delete" or "quarantine" following the documented rules."""
    if store.root != "dir":
        return "quarantine"
    names = [name for name, _ in store.entries]
    if len(names) > MAX_STORE_ENTRIES:
        return "quarantine"
    if any(name not in METRIC_NAMES and name not in TOLERATED for name in names):
        return "quarantine"
    present = {}
    for name, entry in store.entries:
        if name in TOLERATED:
            continue
        if not isinstance(entry, File) or len(entry.content) > FILE_SIZE_BYTES_LIMIT:
            return "quarantine"
        if not entry.valid:
            return "quarantine"
        present[name] = entry
    if RUNNER_INSTALLED_TS_FILE_NAME not in present:
        return "quarantine" if present else "delete"
    return "yield"


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


# --- the harness -----------------------------------------------------------------------------


@dataclass
class Sandbox:
    base: Path
    canary_dir: Path
    manager: DirectoryStorageManager
    canary_snapshot: dict[str, bytes] = field(default_factory=dict)


@pytest.fixture(name="sandbox", scope="module")
def sandbox_fixture() -> Iterator[Sandbox]:
    """One canary and one base directory for all examples (emptied after each example)."""
    parent = "/dev/shm" if os.path.isdir("/dev/shm") else None
    base = Path(tempfile.mkdtemp(prefix="hostile-", dir=parent))
    canary_dir = base / "canary"
    canary_dir.mkdir()
    for name, content in CANARY_FILES.items():
        (canary_dir / name).write_bytes(content)
    manager = DirectoryStorageManager(base / "stores" / "x", base / "quarantine")
    manager.base_dir.mkdir(parents=True)
    metrics_logger = logging.getLogger("metrics")
    level = metrics_logger.level
    metrics_logger.setLevel(logging.ERROR)  # thousands of "quarantined" warnings cost time
    yield Sandbox(
        base=base, canary_dir=canary_dir, manager=manager, canary_snapshot=dict(CANARY_FILES)
    )
    metrics_logger.setLevel(level)
    shutil.rmtree(base, ignore_errors=True)


def reset(sandbox: Sandbox) -> None:
    for directory in (sandbox.manager.base_dir, sandbox.manager.quarantine_dir):
        if directory.exists():
            for entry in os.scandir(directory):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)


class BlockedError(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise BlockedError


def run_extract(manager: DirectoryStorageManager, ignore: set[str]) -> list[RunnerMetrics]:
    """Run extract() under an alarm so that a blocking open fails the test instead of hanging."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, 20)
    try:
        return list(extract(manager, ignore))
    except BlockedError:
        pytest.fail("extract() blocked")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def archives(sandbox: Sandbox, runner: str) -> list[str]:
    if not sandbox.manager.quarantine_dir.exists():
        return []
    return [
        p.name for p in sandbox.manager.quarantine_dir.iterdir() if p.name.startswith(f"{runner}-")
    ]


def check(sandbox: Sandbox, specs: list[Store], ignored: int | None) -> None:
    names = [f"r-{i}" for i in range(len(specs))]
    for name, spec in zip(names, specs, strict=True):
        build(spec, sandbox.manager.base_dir / name, sandbox.canary_dir)
    ignore = {names[ignored]} if ignored is not None else set()
    yielded = {m.runner_name: m for m in run_extract(sandbox.manager, ignore)}
    assert CANARY not in repr(list(yielded.values()))
    for name, spec in zip(names, specs, strict=True):
        path = sandbox.manager.base_dir / name
        if name in ignore:
            assert os.path.lexists(path)
            assert name not in yielded and not archives(sandbox, name)
            continue
        expected = oracle(spec)
        assert not os.path.lexists(path), (name, expected)
        assert (name in yielded) == (expected == "yield"), (spec, expected)
        assert len(archives(sandbox, name)) == (1 if expected == "quarantine" else 0), (
            spec,
            expected,
        )
        if expected == "yield":
            assert_matches(yielded[name], spec)
    leftover = {p.name for p in sandbox.manager.base_dir.iterdir()}
    assert leftover == ignore
    for file_name, content in sandbox.canary_snapshot.items():
        assert (sandbox.canary_dir / file_name).read_bytes() == content


def assert_matches(metrics: RunnerMetrics, spec: Store) -> None:
    files = {name: entry for name, entry in spec.entries if isinstance(entry, File)}
    assert metrics.installed_timestamp == float(files[RUNNER_INSTALLED_TS_FILE_NAME].content)
    for name, model in (
        (PRE_JOB_METRICS_FILE_NAME, metrics.pre_job),
        (POST_JOB_METRICS_FILE_NAME, metrics.post_job),
    ):
        if name not in files:
            assert model is None
            continue
        assert model is not None
        written = json.loads(files[name].content)
        dumped = model.model_dump(mode="json", exclude_none=False)
        for key, value in written.items():
            assert dumped[key] == value or float(dumped[key]) == float(value), (key, value)


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
