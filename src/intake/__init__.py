"""The webhook intake: GitHub ``workflow_job`` deliveries in, job messages on flavor queues out.

A small WSGI service (served by waitress like the policy service, see :mod:`intake.__main__`)
the charm runs on each unit: it checks each delivery's HMAC signature, takes ``queued`` jobs,
routes them by labels to a flavor's queue (:mod:`intake.routing`), records them once in the job
ledger (:mod:`intake.ledger`) and publishes them with broker confirms (:mod:`intake.publisher`)
before answering 200. Nothing here imports ``ops`` or the charm.
"""
