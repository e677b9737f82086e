"""Requirer side of the ``mongodb_client`` interface: ask for a database, read its URI.

Written for github-runner (no library is vendored). The charm declares::

    requires:
      mongodb:
        interface: mongodb_client
        limit: 1

and uses::

    self.mongodb = MongoDBRequirer(self, relation_name="mongodb", database_name=self.app.name)
    framework.observe(self.mongodb.on.uri_changed, self._on_mongodb_uri_changed)
    ...
    uri = self.mongodb.uri()   # None: no relation, or the provider has not answered yet

What the requirer writes (leader only, its application data bag):

- ``database``: the database name asked for;
- ``requested-secrets``: ``["username", "password", "uris"]`` (JSON), so that a provider that
  supports Juju secrets hands over credentials in a secret instead of the plain data bag.

What it reads from the provider's application data bag, first match wins:

1. ``secret-user``: the id of a Juju secret; its content's ``uris`` is the URI; otherwise its
   ``username``/``password`` are the credentials used with ``endpoints`` below;
2. ``uris``: a complete ``mongodb://`` or ``mongodb+srv://`` connection string;
3. ``endpoints`` (``host:port[,host:port...]``) with ``username`` and ``password`` (from the
   secret or the data bag), plus optional ``replset`` and ``database``; the URI is built as
   ``mongodb://<user>:<password>@<endpoints>/<database>?authSource=admin[&replicaSet=<replset>]``
   with the credentials percent-escaped.

Anything else (no data yet, a URI of another scheme, a secret that cannot be read) gives
``None``: the charm shows Waiting. ``uri_changed`` is emitted on relation-changed, on
secret-changed while related, and on relation-broken (where ``uri()`` returns ``None``). The
URI holds a password: never log it.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import quote

from ops import (
    CharmBase,
    EventBase,
    EventSource,
    LeaderElectedEvent,
    ModelError,
    Object,
    ObjectEvents,
    Relation,
    RelationBrokenEvent,
    RelationEvent,
    SecretChangedEvent,
    SecretNotFoundError,
)

# The unique Charmhub library identifier, never change it.
LIBID = "785331309f654cfabcf65e900883c433"
# Increment this major API version when introducing breaking changes.
LIBAPI = 0
# Increment this PATCH version before using `charmcraft publish-lib` or reset to 0 if you are
# raising the major API version.
LIBPATCH = 1

logger = logging.getLogger(__name__)

REQUESTED_SECRETS = ("username", "password", "uris")
URI_SCHEMES = ("mongodb://", "mongodb+srv://")


class MongoDBUriChangedEvent(EventBase):
    """The MongoDB URI may have changed (appeared, rotated or gone): call ``uri()`` again."""


class MongoDBRequirerEvents(ObjectEvents):
    """Events of :class:`MongoDBRequirer`.

    Attributes:
        uri_changed: Emitted when the URI may have changed.
    """

    uri_changed = EventSource(MongoDBUriChangedEvent)


class MongoDBRequirer(Object):
    """Requirer side of ``mongodb_client``.

    Attributes:
        on: The events this object emits.
        relation_name: The relation endpoint.
        database_name: The database asked for.
    """

    on = MongoDBRequirerEvents()

    def __init__(
        self, charm: CharmBase, relation_name: str = "mongodb", database_name: str = ""
    ) -> None:
        """Observe the relation.

        Args:
            charm: The charm.
            relation_name: The relation endpoint (interface ``mongodb_client``).
            database_name: The database to ask for; the application name when empty.
        """
        super().__init__(charm, relation_name)
        self._charm = charm
        self.relation_name = relation_name
        self.database_name = database_name or charm.app.name
        self._broken_relation_id: int | None = None
        events = charm.on[relation_name]
        framework = charm.framework
        framework.observe(events.relation_joined, self._on_request)
        framework.observe(charm.on.leader_elected, self._on_request)
        framework.observe(events.relation_changed, self._on_changed)
        framework.observe(events.relation_broken, self._on_broken)
        framework.observe(charm.on.secret_changed, self._on_secret_changed)

    @property
    def relation(self) -> Relation | None:
        """Return the relation, if any (the endpoint has ``limit: 1``)."""
        relation = self.model.get_relation(self.relation_name)
        if relation is None or relation.id == self._broken_relation_id:
            return None
        return relation

    def _on_request(self, event: RelationEvent | LeaderElectedEvent) -> None:
        """Ask for the database (the leader writes the application data bag).

        Args:
            event: The relation-joined or leader-elected event.
        """
        relation = self.relation
        if relation is None or not self._charm.unit.is_leader():
            return
        databag = relation.data[self._charm.app]
        wanted = {
            "database": self.database_name,
            "requested-secrets": json.dumps(list(REQUESTED_SECRETS)),
        }
        if any(databag.get(key) != value for key, value in wanted.items()):
            databag.update(wanted)
            logger.info("Asked %s for database %s", self.relation_name, self.database_name)

    def _on_changed(self, event: RelationEvent) -> None:
        """Re-ask if needed and tell the charm the URI may have changed.

        Args:
            event: The relation-changed event.
        """
        self._on_request(event)
        self.on.uri_changed.emit()

    def _on_broken(self, event: RelationBrokenEvent) -> None:
        """Forget the relation and tell the charm.

        Args:
            event: The relation-broken event.
        """
        self._broken_relation_id = event.relation.id
        self.on.uri_changed.emit()

    def _on_secret_changed(self, event: SecretChangedEvent) -> None:
        """Tell the charm the credentials may have rotated.

        Args:
            event: The secret-changed event.
        """
        if self.relation is not None:
            self.on.uri_changed.emit()

    def _secret_content(self, secret_id: str) -> dict[str, str]:
        """Read the provider's credentials secret.

        Args:
            secret_id: The secret id from the data bag.

        Returns:
            Its latest content; empty if it cannot be read (yet).
        """
        try:
            secret = self.model.get_secret(id=secret_id)
            return dict(secret.get_content(refresh=True))
        except (SecretNotFoundError, ModelError) as exc:
            logger.warning("Cannot read the MongoDB credentials secret: %s", type(exc).__name__)
            return {}

    def uri(self) -> str | None:
        """Return the MongoDB connection URI, or None when there is none (yet).

        Returns:
            A ``mongodb://`` or ``mongodb+srv://`` URI holding credentials; None otherwise.
        """
        relation = self.relation
        if relation is None or relation.app is None:
            return None
        data = relation.data[relation.app]
        secret: dict[str, str] = {}
        if data.get("secret-user"):
            secret = self._secret_content(data["secret-user"])
        uris = secret.get("uris") or data.get("uris")
        if uris:
            if uris.startswith(URI_SCHEMES):
                return uris
            logger.warning("Ignoring a MongoDB URI that is not mongodb:// or mongodb+srv://")
            return None
        endpoints = data.get("endpoints")
        username = secret.get("username") or data.get("username")
        password = secret.get("password") or data.get("password")
        if not (endpoints and username and password):
            return None
        database = data.get("database") or self.database_name
        query = "authSource=admin"
        if data.get("replset"):
            query += f"&replicaSet={quote(data['replset'], safe='')}"
        return (
            f"mongodb://{quote(username, safe='')}:{quote(password, safe='')}@{endpoints}"
            f"/{quote(database, safe='')}?{query}"
        )
