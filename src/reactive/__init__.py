"""Reactive mode: consumer processes take job messages from a queue and spawn one runner each.

- :mod:`reactive.consumer` — the only kombu user: message rules, ack/requeue semantics.
- :mod:`reactive.runner` — the consumer subprocess entry point (``reactive_runner``).
- :mod:`reactive.runner_manager` — ``reconcile(quantity, config)`` keeps N consumer processes.
"""
