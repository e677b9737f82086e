"""One-time tokens: random, single use, expiring, bounded, persisted as digests only."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import threading
from pathlib import Path
from typing import Any

import pytest

import errors
from repo_policy.tokens import OneTimeTokenStore, TokenRefusal


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def refusal(store: OneTimeTokenStore, token: str) -> str:
    with pytest.raises(errors.RepoPolicyTokenError) as caught:
        store.consume(token)
    assert caught.value.status == 403
    return caught.value.message


def test_tokens_are_random_and_single_use() -> None:
    store = OneTimeTokenStore()
    first, second = store.issue(), store.issue()
    assert first != second and len(first) >= 40
    assert len(store) == 2
    store.consume(first)
    assert refusal(store, first) == TokenRefusal.USED.value
    store.consume(second)
    assert len(store) == 0


def test_unknown_and_oversized_tokens_are_refused() -> None:
    store = OneTimeTokenStore()
    store.issue()
    assert refusal(store, "made-up") == TokenRefusal.UNKNOWN.value
    assert refusal(store, "") == TokenRefusal.UNKNOWN.value
    assert refusal(store, "x" * 10_000) == TokenRefusal.UNKNOWN.value


def test_tokens_expire() -> None:
    clock = Clock()
    store = OneTimeTokenStore(ttl=7200, clock=clock)
    old = store.issue()
    clock.now += 3600
    young = store.issue()
    clock.now += 3601  # old is 7201 s old, young 3601 s
    assert refusal(store, old) == TokenRefusal.UNKNOWN.value
    store.consume(young)
    # A used token is remembered as used only until it would have expired.
    assert refusal(store, young) == TokenRefusal.USED.value
    clock.now += 7200
    assert refusal(store, young) == TokenRefusal.UNKNOWN.value


def test_store_is_bounded_and_forgets_the_oldest() -> None:
    store = OneTimeTokenStore(max_tokens=3)
    tokens = [store.issue() for _ in range(5)]
    assert len(store) == 3
    for token in tokens[:2]:
        assert refusal(store, token) == TokenRefusal.UNKNOWN.value
    for token in tokens[2:]:
        store.consume(token)
    more = [store.issue() for _ in range(3)]
    for token in more:
        store.consume(token)
    # Used tokens are bounded too: the oldest used ones are forgotten.
    assert refusal(store, tokens[2]) == TokenRefusal.UNKNOWN.value
    assert refusal(store, more[-1]) == TokenRefusal.USED.value


def test_concurrent_consumers_get_one_success() -> None:
    store = OneTimeTokenStore()
    token = store.issue()
    wins: list[bool] = []
    lock = threading.Lock()

    def use() -> None:
        try:
            store.consume(token)
            ok = True
        except errors.RepoPolicyTokenError:
            ok = False
        with lock:
            wins.append(ok)

    threads = [threading.Thread(target=use) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == [False] * 15 + [True]


def test_state_file_survives_restart_and_holds_no_token(tmp_path: Path) -> None:
    state = tmp_path / "tokens.sqlite3"
    clock = Clock()
    store = OneTimeTokenStore(ttl=600, state_file=state, clock=clock)
    kept, used = store.issue(), store.issue()
    store.consume(used)
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert kept.encode() not in stored and used.encode() not in stored
    assert {p.name for p in tmp_path.iterdir()} <= {
        "tokens.sqlite3",
        "tokens.sqlite3-wal",
        "tokens.sqlite3-shm",
    }
    for path in tmp_path.iterdir():
        assert oct(path.stat().st_mode & 0o777) == "0o600", path
    again = OneTimeTokenStore(ttl=600, state_file=state, clock=clock)
    assert refusal(again, used) == TokenRefusal.USED.value
    again.consume(kept)
    clock.now += 601
    later = OneTimeTokenStore(ttl=600, state_file=state, clock=clock)
    assert refusal(later, kept) == TokenRefusal.UNKNOWN.value


def test_a_json_state_file_is_migrated_once(tmp_path: Path) -> None:
    """The former format's digests (idle runners' tokens) survive the upgrade."""
    legacy = tmp_path / "one-time-tokens.json"
    clock = Clock()
    old = OneTimeTokenStore(ttl=600, clock=clock)
    kept, used = old.issue(), old.issue()
    digests = {t: hashlib.sha256(t.encode()).hexdigest() for t in (kept, used)}
    legacy.write_text(
        json.dumps(
            {
                "unused": {digests[kept]: clock.now + 600, "short": 1.0},
                "used": {digests[used]: clock.now + 600},
            }
        )
    )
    store = OneTimeTokenStore(ttl=600, state_file=legacy, clock=clock)
    assert not legacy.exists() and (tmp_path / "one-time-tokens.sqlite3").exists()
    assert len(store) == 1
    assert refusal(store, used) == TokenRefusal.USED.value
    store.consume(kept)
    reopened = OneTimeTokenStore(ttl=600, state_file=legacy, clock=clock)
    assert refusal(reopened, kept) == TokenRefusal.USED.value


@pytest.mark.parametrize("content", ["not json", "[]", '{"unused": 3, "used": {}}'])
def test_corrupt_legacy_state_file_starts_empty(tmp_path: Path, content: str) -> None:
    state = tmp_path / "tokens.json"
    state.write_text(content)
    store = OneTimeTokenStore(state_file=state)
    assert len(store) == 0 and not state.exists()
    store.consume(store.issue())


def test_corrupt_database_starts_empty(tmp_path: Path) -> None:
    state = tmp_path / "tokens.sqlite3"
    state.write_bytes(b"this is not an SQLite database, " * 64)
    store = OneTimeTokenStore(state_file=state)
    assert len(store) == 0
    store.consume(store.issue())


def _consume_in_child(path: str, token: str, start: Any, results: Any) -> None:
    store = OneTimeTokenStore(state_file=Path(path))
    start.wait()
    try:
        store.consume(token)
        results.put(True)
    except errors.RepoPolicyTokenError:
        results.put(False)


def test_consumers_in_processes_sharing_the_file_get_one_success(tmp_path: Path) -> None:
    """The one-time guarantee holds in the database, not only under the store's lock."""
    state = tmp_path / "tokens.sqlite3"
    token = OneTimeTokenStore(state_file=state).issue()
    context = multiprocessing.get_context("fork")
    start, results = context.Event(), context.Queue()
    children = [
        context.Process(target=_consume_in_child, args=(str(state), token, start, results))
        for _ in range(6)
    ]
    for child in children:
        child.start()
    start.set()
    wins = sorted(results.get(timeout=30) for _ in children)
    for child in children:
        child.join(timeout=30)
    assert wins == [False] * 5 + [True]


def test_invalid_bounds() -> None:
    with pytest.raises(ValueError):
        OneTimeTokenStore(ttl=0)
    with pytest.raises(ValueError):
        OneTimeTokenStore(max_tokens=0)
