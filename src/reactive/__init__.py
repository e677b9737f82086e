"""Reactive mode: consumer processes take job messages from a queue and spawn one runner each.

- :mod:`reactive.message` — the job message schema and validation, the labels a job may ask for.
- :mod:`reactive.types` — the consumer's seams (job checker, runner spawner), settings, outcomes.
- :mod:`reactive.consumer` — the only kombu user: the consumer loop, ack/requeue semantics.
- :mod:`reactive.settling` — settling a delivery, and the consumer's stop and drain requests.
- :mod:`reactive.pool` — the ``ConsumerPool`` seam the managers' reconciles use (LXD's and
  OpenStack's), and its implementation over consumer processes (imports no manager).
- :mod:`reactive.runner_manager` — ``reconcile(quantity, config)`` keeps N consumer processes
  (tracked by :mod:`reactive.pid_files`; the surplus drained) and writes their config file.
- :mod:`reactive.manager_section` — what a consumer rebuilds the unit's manager from (it says
  the backend; an OpenStack section names the clouds.yaml).
- :mod:`reactive.factory` — rebuilds it (imports the managers; nothing a manager imports
  imports it).
- :mod:`reactive.runner` — the consumer subprocess entry point (``reactive_runner``).
"""
