"""The mongodb_client requirer library, with ops.testing and a minimal charm."""

from __future__ import annotations

import json
from typing import Any

import ops
import pytest
from ops import testing

from charms.github_runner.v0.mongodb import MongoDBRequirer, MongoDBUriChangedEvent

META = {
    "name": "github-runner",
    "requires": {"mongodb": {"interface": "mongodb_client", "limit": 1}},
}


class RequirerCharm(ops.CharmBase):
    """Shows Waiting until the URI is known, then Active; remembers what it saw."""

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.mongodb = MongoDBRequirer(self, relation_name="mongodb", database_name="runners")
        self.seen: list[str | None] = []
        framework.observe(self.mongodb.on.uri_changed, self._on_uri)
        framework.observe(self.on.update_status, self._on_uri)

    def _on_uri(self, _: ops.EventBase) -> None:
        uri = self.mongodb.uri()
        self.seen.append(uri)
        if uri is None:
            self.unit.status = ops.WaitingStatus("waiting for MongoDB")
        else:
            self.unit.status = ops.ActiveStatus()


def context() -> testing.Context[RequirerCharm]:
    return testing.Context(RequirerCharm, meta=META)


def relation(**remote_app_data: str) -> testing.Relation:
    return testing.Relation(
        "mongodb", interface="mongodb_client", remote_app_name="mongodb",
        remote_app_data=remote_app_data,
    )  # fmt: skip


def run_changed(rel: testing.Relation, **state: Any) -> tuple[testing.State, list[str | None]]:
    ctx = context()
    with ctx(ctx.on.relation_changed(rel), testing.State(relations={rel}, **state)) as mgr:
        out = mgr.run()
        seen = mgr.charm.seen
    assert any(isinstance(e, MongoDBUriChangedEvent) for e in ctx.emitted_events)
    return out, seen


def test_leader_asks_for_database_on_join() -> None:
    rel = relation()
    ctx = context()
    out = ctx.run(ctx.on.relation_joined(rel), testing.State(leader=True, relations={rel}))
    data = out.get_relation(rel.id).local_app_data
    assert data["database"] == "runners"
    assert json.loads(data["requested-secrets"]) == ["username", "password", "uris"]


def test_non_leader_writes_nothing() -> None:
    rel = relation()
    ctx = context()
    out = ctx.run(ctx.on.relation_joined(rel), testing.State(leader=False, relations={rel}))
    assert out.get_relation(rel.id).local_app_data == {}


def test_new_leader_asks_too() -> None:
    rel = relation()
    ctx = context()
    out = ctx.run(ctx.on.leader_elected(), testing.State(leader=True, relations={rel}))
    assert out.get_relation(rel.id).local_app_data["database"] == "runners"


def test_uris_from_databag() -> None:
    uri = "mongodb://u:p@10.1.1.1:27017,10.1.1.2:27017/runners?replicaSet=rs0&authSource=admin"
    out, seen = run_changed(relation(uris=uri, database="runners"), leader=True)
    assert seen == [uri]
    assert out.unit_status == testing.ActiveStatus()
    assert out.get_relation(next(iter(out.relations)).id).local_app_data["database"] == "runners"


def test_no_data_yet_waits() -> None:
    out, seen = run_changed(relation())
    assert seen == [None]
    assert out.unit_status == testing.WaitingStatus("waiting for MongoDB")


def test_endpoints_with_credentials_are_escaped() -> None:
    rel = relation(
        endpoints="h1:27017,h2:27017", username="app/user", password="p@ss:w/rd", replset="rs 0"
    )
    _, seen = run_changed(rel)
    assert seen == [
        "mongodb://app%2Fuser:p%40ss%3Aw%2Frd@h1:27017,h2:27017/runners"
        "?authSource=admin&replicaSet=rs%200"
    ]


def test_endpoints_without_password_wait() -> None:
    _, seen = run_changed(relation(endpoints="h1:27017", username="u"))
    assert seen == [None]


def test_credentials_from_secret() -> None:
    secret = testing.Secret({"username": "su", "password": "sp"})
    rel = relation(endpoints="h:27017", database="db1", **{"secret-user": secret.id})
    _, seen = run_changed(rel, secrets={secret})
    assert seen == ["mongodb://su:sp@h:27017/db1?authSource=admin"]


def test_uris_from_secret_win() -> None:
    secret = testing.Secret({"username": "su", "password": "sp", "uris": "mongodb://su:sp@s/db"})
    rel = relation(endpoints="h:27017", uris="mongodb://old@h/db", **{"secret-user": secret.id})
    _, seen = run_changed(rel, secrets={secret})
    assert seen == ["mongodb://su:sp@s/db"]


def test_unreadable_secret_waits() -> None:
    rel = relation(endpoints="h:27017", **{"secret-user": "secret:cm0nonexistent0000000"})
    _, seen = run_changed(rel)
    assert seen == [None]


@pytest.mark.parametrize("uri", ["http://h/db", "redis://h:6379", "h:27017"])
def test_other_schemes_are_ignored(uri: str) -> None:
    _, seen = run_changed(relation(uris=uri))
    assert seen == [None]


def test_broken_relation_gives_none() -> None:
    rel = relation(uris="mongodb://u:p@h/db")
    ctx = context()
    with ctx(ctx.on.relation_broken(rel), testing.State(relations={rel})) as mgr:
        out = mgr.run()
        assert mgr.charm.seen == [None]
    assert out.unit_status == testing.WaitingStatus("waiting for MongoDB")


def test_no_relation_gives_none() -> None:
    ctx = context()
    with ctx(ctx.on.update_status(), testing.State()) as mgr:
        mgr.run()
        assert mgr.charm.mongodb.uri() is None


def test_secret_changed_emits_uri_changed() -> None:
    secret = testing.Secret(
        {"username": "su", "password": "new"},
        latest_content={"username": "su", "password": "newer"},
    )
    rel = relation(endpoints="h:1", **{"secret-user": secret.id})
    ctx = context()
    with ctx(
        ctx.on.secret_changed(secret), testing.State(relations={rel}, secrets={secret})
    ) as mgr:
        mgr.run()
        assert mgr.charm.seen == ["mongodb://su:newer@h:1/runners?authSource=admin"]


def test_secret_changed_without_relation_is_quiet() -> None:
    secret = testing.Secret({"a": "b"})
    ctx = context()
    with ctx(ctx.on.secret_changed(secret), testing.State(secrets={secret})) as mgr:
        mgr.run()
        assert mgr.charm.seen == []
