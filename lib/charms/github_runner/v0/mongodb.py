"""The ``mongodb`` relation through dpcharmlibs-interfaces, read as one kombu URI with TLS.

The ``mongodb_client`` protocol (request, secrets, responses) is the maintained library's
(``dpcharmlibs.interfaces.ResourceRequirerEventHandler``, protocol v1); this module only turns
its response into the URI the reactive consumers give kombu, and tells the charm when to read
it again. The charm declares::

    requires:
      mongodb:
        interface: mongodb_client
        limit: 1

and uses::

    self.mongodb = MongoDBRequirer(self, relation_name="mongodb", database_name=self.app.name)
    framework.observe(self.mongodb.on.uri_changed, self._on_mongodb_uri_changed)
    ...
    uri = self.mongodb.uri()   # None: no relation, or the provider has not answered yet

The URI, from the first response that has credentials:

1. the provider's ``uris`` (a ``mongodb://`` or ``mongodb+srv://`` connection string), or
   ``mongodb://<user>:<password>@<endpoints>/<database>?authSource=admin[&replicaSet=...]``
   built from ``endpoints``, ``username`` and ``password`` (percent-escaped);
2. with TLS on (the provider's ``tls`` secret says ``tls: true``): ``tls=true`` added, and
   with a ``tls-ca`` the CA written to ``<ca_dir>/mongodb-ca.pem`` and named by
   ``tlsCAFile=<path>`` (pymongo verifies the server with it); any TLS options the provider's
   URI carried are replaced by these. TLS off: the URI carries no TLS option.

Anything else (no answer yet, a URI of another scheme, a secret that cannot be read) gives
``None``: the charm shows Waiting. The URI holds a password: never log it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ops import (
    CharmBase,
    EventBase,
    EventSource,
    ModelError,
    Object,
    ObjectEvents,
    Relation,
    RelationBrokenEvent,
    SecretNotFoundError,
)
from pydantic import ValidationError

from config.settings import RunnerManagerSettings

with warnings.catch_warnings():
    # The library's Annotated secret fields make pydantic warn once at import; harmless.
    warnings.simplefilter("ignore")
    from dpcharmlibs.interfaces import (
        RequirerCommonModel,
        ResourceProviderModel,
        ResourceRequirerEventHandler,
    )

# The unique Charmhub library identifier, never change it.
LIBID = "785331309f654cfabcf65e900883c433"
# Increment this major API version when introducing breaking changes.
LIBAPI = 0
# 2: on dpcharmlibs-interfaces (protocol v1), TLS honoured.
LIBPATCH = 2
PYDEPS = ["dpcharmlibs-interfaces>=1.2"]

logger = logging.getLogger(__name__)

URI_SCHEMES = ("mongodb://", "mongodb+srv://")
CA_FILE_NAME = "mongodb-ca.pem"
# Query options the charm decides from the relation's TLS secret (compared lower-cased).
TLS_OPTIONS = {"tls", "ssl", "tlscafile", "ssl_ca_certs"}


class MongoDBUriChangedEvent(EventBase):
    """The MongoDB URI may have changed (appeared, rotated or gone): call ``uri()`` again."""


class MongoDBRequirerEvents(ObjectEvents):
    """Events of :class:`MongoDBRequirer`.

    Attributes:
        uri_changed: Emitted when the URI may have changed.
    """

    uri_changed = EventSource(MongoDBUriChangedEvent)


def with_tls(uri: str, tls: bool, ca_file: Path | None) -> str:
    """Return ``uri`` with the TLS options the relation asks for, and no others.

    Args:
        uri: A ``mongodb://`` or ``mongodb+srv://`` URI.
        tls: Whether the server wants TLS.
        ca_file: The CA to verify the server with (None: the system's trust store).

    Returns:
        The URI; without TLS, any TLS option it had removed.
    """
    parts = urlsplit(uri)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k.lower() not in TLS_OPTIONS]
    if tls:
        query.append(("tls", "true"))
        if ca_file is not None:
            query.append(("tlsCAFile", str(ca_file)))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote, safe="/")))


def write_ca(path: Path, pem: str) -> None:
    """Write the CA atomically, only when it changed (consumers read it while connecting).

    Args:
        path: Where the CA goes.
        pem: The PEM text.
    """
    if path.is_file() and path.read_text() == pem:
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".mongodb-ca.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(pem)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class MongoDBRequirer(Object):
    """Requirer side of ``mongodb_client`` on dpcharmlibs-interfaces.

    Attributes:
        on: The events this object emits.
        relation_name: The relation endpoint.
        database_name: The database asked for.
        ca_file: Where the server's CA is written when the relation turns TLS on.
        handler: The library's requirer (requests, secrets, responses).
    """

    on = MongoDBRequirerEvents()

    def __init__(
        self,
        charm: CharmBase,
        relation_name: str = "mongodb",
        database_name: str = "",
        ca_dir: Path | None = None,
    ) -> None:
        """Ask for the database through the library and observe its answers.

        Args:
            charm: The charm.
            relation_name: The relation endpoint (interface ``mongodb_client``).
            database_name: The database to ask for; the application name when empty.
            ca_dir: Where to write the CA; the unit's state directory when not given.
        """
        super().__init__(charm, f"{relation_name}-uri")
        self.relation_name = relation_name
        self.database_name = database_name or charm.app.name
        unit_number = int(charm.unit.name.rsplit("/", 1)[1])
        state_dir = RunnerManagerSettings.for_unit(charm.app.name, unit_number).state_dir
        self.ca_file = (ca_dir or state_dir) / CA_FILE_NAME
        self._broken_relation_id: int | None = None
        self.handler = ResourceRequirerEventHandler(
            charm,
            relation_name,
            [RequirerCommonModel(resource=self.database_name)],
            response_model=ResourceProviderModel,
        )
        observe = charm.framework.observe
        observe(charm.on[relation_name].relation_changed, self._on_changed)
        observe(charm.on[relation_name].relation_broken, self._on_broken)
        observe(self.handler.on.authentication_updated, self._on_changed)

    @property
    def relation(self) -> Relation | None:
        """Return the relation, if any (the endpoint has ``limit: 1``)."""
        relation = self.model.get_relation(self.relation_name)
        if relation is None or relation.id == self._broken_relation_id:
            return None
        return relation

    def _on_changed(self, _: EventBase) -> None:
        """The provider's answer or its secrets changed: tell the charm."""
        self.on.uri_changed.emit()

    def _on_broken(self, event: RelationBrokenEvent) -> None:
        """Forget the relation and tell the charm.

        Args:
            event: The relation-broken event.
        """
        self._broken_relation_id = event.relation.id
        self.on.uri_changed.emit()

    def _responses(self, relation: Relation) -> list[ResourceProviderModel]:
        """Return the provider's responses, their secrets read (empty when unreadable)."""
        try:
            model = self.handler.interface.build_model(relation.id, component=relation.app)
        except (SecretNotFoundError, ModelError, ValidationError, ValueError) as exc:
            logger.warning("Cannot read the MongoDB relation's answer: %s", type(exc).__name__)
            return []
        return list(model.requests)

    def _plain_uri(self, response: ResourceProviderModel) -> str | None:
        """Return the connection URI of a response before TLS options, if it has one."""
        if response.uris:
            if response.uris.startswith(URI_SCHEMES):
                return response.uris
            logger.warning("Ignoring a MongoDB URI that is not mongodb:// or mongodb+srv://")
            return None
        if not (response.endpoints and response.username and response.password):
            return None
        database = response.resource or self.database_name
        query = "authSource=admin"
        replset = (response.model_extra or {}).get("replset")
        if isinstance(replset, str) and replset:
            query += f"&replicaSet={quote(replset, safe='')}"
        return (
            f"mongodb://{quote(response.username, safe='')}:{quote(response.password, safe='')}"
            f"@{response.endpoints}/{quote(database, safe='')}?{query}"
        )

    def uri(self) -> str | None:
        """Return the kombu URI of the database, or None when there is none (yet).

        Writes the server's CA to :attr:`ca_file` when the relation has TLS on with a CA.

        Returns:
            A ``mongodb://`` or ``mongodb+srv://`` URI holding credentials; None otherwise.
        """
        relation = self.relation
        if relation is None or relation.app is None:
            return None
        for response in self._responses(relation):
            plain = self._plain_uri(response)
            if plain is None:
                continue
            ca_file = None
            if response.tls and response.tls_ca:
                write_ca(self.ca_file, response.tls_ca)
                ca_file = self.ca_file
            return with_tls(plain, bool(response.tls), ca_file)
        return None
