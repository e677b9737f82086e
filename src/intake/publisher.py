"""Publish one job message to a flavor's queue and return only once the broker has it.

The queue is declared exactly as the consumers declare it (``reactive.broker.declare_queue``: a
durable queue bound to a durable direct exchange of its name); messages are persistent.

* AMQP: the connection runs in publisher-confirm mode (kombu's ``confirm_publish`` transport
  option): the publish returns after the broker's ``basic.ack``; a ``basic.nack``, a closed
  channel or no confirm within the timeout raise.
* MongoDB: kombu's transport inserts the message with ``insert_one``, which returns once the
  server acknowledged the write (pymongo's default write concern ``w=1``); a URI that asks for
  unacknowledged writes (``w=0``) is refused.

Every failure is an :class:`intake_errors.IntakePublishError` naming the queue and the job URL; the
broker URI (it holds credentials) is never in a message or a log line.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import kombu
import kombu.exceptions

from intake import errors as intake_errors
from reactive.broker import send
from reactive.message import JobDetails

# kombu is only partly typed: the boundary goes through Any.
_kombu: Any = kombu
_KombuError: type[Exception] = kombu.exceptions.KombuError

logger = logging.getLogger(__name__)

_AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
_MONGODB_SCHEMES = ("mongodb", "mongodb+srv")


def _scheme(mq_uri: str) -> str:
    return mq_uri.split(":", 1)[0].lower()


def _connection(mq_uri: str, timeout: float) -> Any:
    """Build a (lazy) confirming connection with a timeout on every network operation.

    Args:
        mq_uri: The broker URI (secret: never logged).
        timeout: Connect, socket I/O and confirm timeout in seconds.

    Returns:
        The kombu connection, not yet connected.
    """
    scheme = _scheme(mq_uri)
    options: dict[str, Any]
    if scheme in _AMQP_SCHEMES:
        options = {
            "confirm_publish": True,
            "read_timeout": timeout,
            "write_timeout": timeout,
        }
    else:  # MongoDB reads connect_timeout here (connectTimeoutMS)
        options = {"connect_timeout": timeout, "polling_interval": 1.0}
        if scheme in ("redis", "rediss"):
            options.update(socket_timeout=timeout, socket_connect_timeout=timeout)
    return _kombu.Connection(mq_uri, connect_timeout=timeout, transport_options=options)


def _unacknowledged(mq_uri: str) -> bool:
    """Tell whether a MongoDB URI asks for unacknowledged writes (``w=0``).

    Args:
        mq_uri: The broker URI.

    Returns:
        True for a MongoDB URI with ``w=0``.
    """
    if _scheme(mq_uri) not in _MONGODB_SCHEMES:
        return False
    query = parse_qs(urlsplit(mq_uri).query)
    return any(value.strip() == "0" for value in query.get("w", []))


def _bounded_mongodb_uri(mq_uri: str, timeout: float) -> str:
    """Add pymongo timeouts the URI does not set (server selection, socket I/O, write concern).

    Args:
        mq_uri: The broker URI.
        timeout: Seconds.

    Returns:
        The URI, with the missing timeouts in its query for MongoDB, else unchanged.
    """
    if _scheme(mq_uri) not in _MONGODB_SCHEMES:
        return mq_uri
    parts = urlsplit(mq_uri)
    present = {key.lower() for key in parse_qs(parts.query)}
    millis = str(int(timeout * 1000))
    extra = {
        key: millis
        for key in ("serverSelectionTimeoutMS", "socketTimeoutMS", "wTimeoutMS")
        if key.lower() not in present
    }
    if not extra:
        return mq_uri
    query = "&".join(part for part in (parts.query, urlencode(extra)) if part)
    # pymongo wants a "/" between the host list and the options.
    return urlunsplit(parts._replace(path=parts.path or "/", query=query))


def publish_job(mq_uri: str, queue_name: str, message: JobDetails, timeout: float = 10.0) -> None:
    """Publish one job message and wait until the broker confirmed it.

    Args:
        mq_uri: The broker URI (secret: never logged).
        queue_name: The flavor's queue (its application name).
        message: The job message.
        timeout: Seconds for each of connecting, sending and the confirm.

    Raises:
        IntakePublishError: The broker cannot be reached, refused the message or did not
            confirm it within the timeout.
    """
    if _unacknowledged(mq_uri):
        raise intake_errors.IntakePublishError(
            queue_name, message.url, "the MongoDB URI asks for unacknowledged writes (w=0)"
        )
    body = message.model_dump_json()
    conn = _connection(_bounded_mongodb_uri(mq_uri, timeout), timeout)
    try:
        with conn:
            conn.ensure_connection(max_retries=1, interval_start=0.2, timeout=timeout)
            send(conn, queue_name, body, timeout=timeout, confirm_timeout=timeout)
    except (*conn.connection_errors, *conn.channel_errors, _KombuError, OSError) as exc:
        raise intake_errors.IntakePublishError(
            queue_name, message.url, type(exc).__name__
        ) from exc
    logger.debug("published job %r to queue %s", message.url, queue_name)
