"""The mongodb relation on dpcharmlibs-interfaces: ops.testing with TLS on and off.

The provider's side is written as a v1 provider (charmed MongoDB) leaves it: ``version``,
``requests`` (one response naming the user and TLS secrets), ``data`` (the requests it saw).
With TLS on, the URI is handed to kombu's MongoDB transport and pymongo exactly as the
reactive consumer does (no server: ``connect=False``), and the client must trust the CA.
"""

from __future__ import annotations

import datetime
import json
import ssl
from pathlib import Path
from typing import Any, ClassVar

import ops
import pymongo
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kombu import Connection
from ops import testing

from charms.github_runner.v0.mongodb import MongoDBRequirer, MongoDBUriChangedEvent, with_tls

META = {
    "name": "github-runner",
    "requires": {"mongodb": {"interface": "mongodb_client", "limit": 1}},
}
REQUEST_ID = "0123456789abcdef"
URIS = "mongodb://u:p@h1:27017,h2:27017/runners?replicaSet=rs0&authSource=admin"


class RequirerCharm(ops.CharmBase):
    """Shows Waiting until the URI is known, then Active; remembers what it saw."""

    ca_dir: ClassVar[Path]

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.mongodb = MongoDBRequirer(self, "mongodb", "runners", ca_dir=type(self).ca_dir)
        self.seen: list[str | None] = []
        framework.observe(self.mongodb.on.uri_changed, self._on_uri)
        framework.observe(self.on.update_status, self._on_uri)

    def _on_uri(self, _: ops.EventBase) -> None:
        uri = self.mongodb.uri()
        self.seen.append(uri)
        self.unit.status = ops.WaitingStatus("waiting") if uri is None else ops.ActiveStatus()


@pytest.fixture(autouse=True)
def ca_dir(tmp_path: Path) -> Path:
    RequirerCharm.ca_dir = tmp_path / "state"
    return RequirerCharm.ca_dir


def ca_pem(name: str = "test-ca") -> str:
    """A self-signed CA certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def context() -> testing.Context[RequirerCharm]:
    return testing.Context(RequirerCharm, meta=META)


def provider(
    user: testing.Secret | None = None, tls: testing.Secret | None = None, **fields: str
) -> testing.Relation:
    """The relation as a v1 provider answered our one request."""
    response: dict[str, str] = {"resource": "runners", "request-id": REQUEST_ID, "salt": "s"}
    if user is not None:
        response["secret-user"] = user.id
    if tls is not None:
        response["secret-tls"] = tls.id
    response.update(fields)
    seen = {REQUEST_ID: {"resource": "runners", "request-id": REQUEST_ID, "salt": "s"}}
    data = {"version": "v1", "requests": json.dumps([response]), "data": json.dumps(seen)}
    return testing.Relation(
        "mongodb", interface="mongodb_client", remote_app_name="mongodb", remote_app_data=data
    )


def user_secret(**content: str) -> testing.Secret:
    return testing.Secret(content or {"username": "u", "password": "p", "uris": URIS})


def run_changed(rel: testing.Relation, *secrets: testing.Secret) -> list[str | None]:
    ctx = context()
    state = testing.State(leader=True, relations={rel}, secrets=set(secrets))
    with ctx(ctx.on.relation_changed(rel), state) as mgr:
        mgr.run()
        seen = mgr.charm.seen
    assert any(isinstance(e, MongoDBUriChangedEvent) for e in ctx.emitted_events)
    return seen


def kombu_client(uri: str) -> pymongo.MongoClient[Any]:
    """The pymongo client kombu's MongoDB transport would open for ``uri`` (not connected)."""
    transport = Connection(uri).transport
    channel = transport.Channel.__new__(transport.Channel)
    channel.connection, channel.connect_timeout, channel.ssl = transport, None, False
    host, _, options = channel._parse_uri()
    return pymongo.MongoClient(host=host, connect=False, **options)


def test_leader_writes_a_v1_request_for_the_database() -> None:
    rel = testing.Relation("mongodb", interface="mongodb_client", remote_app_name="mongodb")
    ctx = context()
    out = ctx.run(ctx.on.relation_created(rel), testing.State(leader=True, relations={rel}))
    data = out.get_relation(rel.id).local_app_data
    assert data["version"] == "v1"
    assert [r["resource"] for r in json.loads(data["requests"])] == ["runners"]


def test_non_leader_writes_nothing() -> None:
    rel = testing.Relation("mongodb", interface="mongodb_client", remote_app_name="mongodb")
    ctx = context()
    out = ctx.run(ctx.on.relation_created(rel), testing.State(leader=False, relations={rel}))
    assert out.get_relation(rel.id).local_app_data == {}


def test_tls_off_gives_the_provider_uri_without_tls(ca_dir: Path) -> None:
    user = user_secret()
    seen = run_changed(provider(user), user)
    assert seen == [URIS]
    assert not (ca_dir / "mongodb-ca.pem").exists()
    client = kombu_client(URIS)
    assert client.options.pool_options._ssl_context is None


def test_tls_secret_saying_false_is_off() -> None:
    user, tls = user_secret(), testing.Secret({"tls": "false", "tls-ca": ca_pem()})
    assert run_changed(provider(user, tls), user, tls) == [URIS]


def test_tls_on_carries_the_ca_to_kombu_and_pymongo(ca_dir: Path) -> None:
    pem = ca_pem("mongodb-test-ca")
    user, tls = user_secret(), testing.Secret({"tls": "true", "tls-ca": pem})
    [uri] = run_changed(provider(user, tls), user, tls)
    ca_file = ca_dir / "mongodb-ca.pem"
    assert uri == f"{URIS}&tls=true&tlsCAFile={ca_file}"
    assert ca_file.read_text() == pem
    assert ca_file.stat().st_mode & 0o777 == 0o644
    context_ = kombu_client(uri).options.pool_options._ssl_context
    assert isinstance(context_, ssl.SSLContext)
    assert context_.verify_mode == ssl.CERT_REQUIRED
    subjects = [dict(x[0] for x in c["subject"]) for c in context_.get_ca_certs()]
    assert subjects == [{"commonName": "mongodb-test-ca"}]


def test_tls_on_without_ca_uses_the_system_trust(ca_dir: Path) -> None:
    user, tls = user_secret(), testing.Secret({"tls": "true"})
    assert run_changed(provider(user, tls), user, tls) == [f"{URIS}&tls=true"]
    assert not ca_dir.exists()


def test_endpoints_and_credentials_with_tls_are_escaped(ca_dir: Path) -> None:
    user = user_secret(username="app/user", password="p@ss:w/rd")
    tls = testing.Secret({"tls": "true", "tls-ca": ca_pem()})
    rel = provider(user, tls, endpoints="h1:27017,h2:27017", replset="rs 0")
    assert run_changed(rel, user, tls) == [
        "mongodb://app%2Fuser:p%40ss%3Aw%2Frd@h1:27017,h2:27017/runners"
        f"?authSource=admin&replicaSet=rs%200&tls=true&tlsCAFile={ca_dir}/mongodb-ca.pem"
    ]


def test_provider_tls_options_are_replaced_by_the_relation_s() -> None:
    uris = "mongodb://u:p@h/db?ssl=true&tlsCAFile=/elsewhere.pem&authSource=admin"
    assert with_tls(uris, False, None) == "mongodb://u:p@h/db?authSource=admin"
    assert with_tls(uris, True, Path("/ca.pem")) == (
        "mongodb://u:p@h/db?authSource=admin&tls=true&tlsCAFile=/ca.pem"
    )


def test_a_changed_ca_is_rewritten(ca_dir: Path) -> None:
    user = user_secret()
    for pem in (ca_pem("first"), ca_pem("second")):
        tls = testing.Secret({"tls": "true", "tls-ca": pem})
        run_changed(provider(user, tls), user, tls)
        assert (ca_dir / "mongodb-ca.pem").read_text() == pem


def test_no_answer_yet_waits() -> None:
    rel = testing.Relation("mongodb", interface="mongodb_client", remote_app_name="mongodb")
    assert run_changed(rel) == [None]


def test_response_without_credentials_waits() -> None:
    assert run_changed(provider(endpoints="h:27017")) == [None]


def test_unreadable_secret_waits() -> None:
    # The library's relation-changed handler raises on it (Juju retries the hook); reading the
    # URI in any other hook (here update-status) must just wait.
    rel = provider(**{"secret-user": "secret:cm0nonexistent0000000"})
    ctx = context()
    with ctx(ctx.on.update_status(), testing.State(relations={rel})) as mgr:
        mgr.run()
        assert mgr.charm.seen == [None]


@pytest.mark.parametrize("uri", ["http://h/db", "redis://h:6379", "h:27017"])
def test_other_schemes_are_ignored(uri: str) -> None:
    user = user_secret(username="u", password="p", uris=uri)
    assert run_changed(provider(user), user) == [None]


def test_broken_relation_gives_none() -> None:
    user = user_secret()
    rel = provider(user)
    ctx = context()
    state = testing.State(relations={rel}, secrets={user})
    with ctx(ctx.on.relation_broken(rel), state) as mgr:
        out = mgr.run()
        assert mgr.charm.seen == [None]
    assert out.unit_status == testing.WaitingStatus("waiting")


def test_no_relation_gives_none() -> None:
    ctx = context()
    with ctx(ctx.on.update_status(), testing.State()) as mgr:
        mgr.run()
        assert mgr.charm.mongodb.uri() is None


def test_non_leader_reads_the_uri_too() -> None:
    user = user_secret()
    rel = provider(user)
    ctx = context()
    with ctx(ctx.on.update_status(), testing.State(relations={rel}, secrets={user})) as mgr:
        mgr.run()
        assert mgr.charm.seen == [URIS]
