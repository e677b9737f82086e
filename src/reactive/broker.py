"""The reactive queue's broker: its declaration, connections with timeouts, size and publish.

The consumers (:mod:`reactive.consumer`), the intake's confirmed publisher and the tests all
declare the queue through :func:`declare_queue`, so a message published by one is read by the
other whatever the transport (AMQP, MongoDB, Redis).
"""

from __future__ import annotations

from typing import Any

import kombu
import kombu.exceptions

import errors

# kombu is only partly typed: the boundary goes through Any.
_kombu: Any = kombu
_KombuError: type[Exception] = kombu.exceptions.KombuError


def declare_queue(queue_name: str) -> Any:
    """Return the queue entity, declared the same way as kombu's ``SimpleQueue``.

    Args:
        queue_name: The queue name.

    Returns:
        A durable queue bound to a durable direct exchange of the same name.
    """
    exchange = _kombu.Exchange(queue_name, type="direct", durable=True)
    return _kombu.Queue(queue_name, exchange, routing_key=queue_name, durable=True)


def broker_connection(mq_uri: str, connect_timeout: float, poll_interval: float) -> Any:
    """Build a (lazy) broker connection with timeouts on every network operation.

    Args:
        mq_uri: The broker URI (secret: never logged).
        connect_timeout: Connect and socket I/O timeout.
        poll_interval: Polling interval for polling transports.

    Returns:
        The kombu connection, not yet connected.
    """
    scheme = mq_uri.split(":", 1)[0].lower()
    options: dict[str, Any]
    if scheme in ("amqp", "amqps", "pyamqp"):
        options = {"read_timeout": connect_timeout, "write_timeout": connect_timeout}
    else:  # polling transports; MongoDB reads connect_timeout here (connectTimeoutMS)
        options = {"polling_interval": poll_interval, "connect_timeout": connect_timeout}
        if scheme in ("redis", "rediss"):
            options.update(socket_timeout=connect_timeout, socket_connect_timeout=connect_timeout)
    return _kombu.Connection(mq_uri, connect_timeout=connect_timeout, transport_options=options)


def queue_size(mq_uri: str, queue_name: str, connect_timeout: float = 10.0) -> int:
    """Return how many messages wait in the queue (those held by consumers are not counted).

    Args:
        mq_uri: The broker URI (secret: never logged).
        queue_name: The queue name.
        connect_timeout: Connect and socket I/O timeout.

    Returns:
        The number of ready messages.

    Raises:
        QueueError: The broker cannot be reached.
    """
    try:
        with broker_connection(mq_uri, connect_timeout, 1.0) as connection:
            queue = declare_queue(queue_name)(connection.channel())
            queue.declare()
            return int(queue.queue_declare(passive=True).message_count)
    except Exception as exc:  # kombu raises transport-specific errors
        raise errors.QueueError(
            f"cannot read the size of queue {queue_name}: {type(exc).__name__}"
        ) from exc


def publish_job(
    mq_uri: str, queue_name: str, body: bytes | str, connect_timeout: float = 10.0
) -> None:
    """Publish one raw job message (used by the sandbox, the demo and the tests).

    Args:
        mq_uri: The broker URI.
        queue_name: The queue name.
        body: The raw body; a JSON job message normally.
        connect_timeout: Connect and socket I/O timeout.

    Raises:
        QueueError: The broker could not be reached or refused the message.
    """
    conn = broker_connection(mq_uri, connect_timeout, 1.0)
    try:
        with conn:
            conn.ensure_connection(max_retries=2, interval_start=0.2, timeout=connect_timeout)
            send(conn, queue_name, body)
    except (*conn.connection_errors, *conn.channel_errors, _KombuError, OSError) as exc:
        raise errors.QueueError(
            f"cannot publish to queue {queue_name}: {type(exc).__name__}"
        ) from exc


def send(conn: Any, queue_name: str, body: bytes | str, **options: Any) -> None:
    """Publish one persistent JSON message on an open connection, declaring the queue first.

    Args:
        conn: The kombu connection, connected.
        queue_name: The queue name.
        body: The raw body.
        options: More ``Producer.publish`` arguments (timeouts, confirms).
    """
    queue = declare_queue(queue_name)
    _kombu.Producer(conn.default_channel).publish(
        body,
        exchange=queue.exchange,
        routing_key=queue_name,
        declare=[queue],
        content_type="application/json",
        content_encoding="utf-8",
        delivery_mode=2,
        retry=False,
        **options,
    )
