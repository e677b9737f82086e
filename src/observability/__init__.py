"""Observability: the unit's Prometheus series, their state, the exporter and the runner logs.

The series the manager feeds (``series``, ``feed``, ``state``), the ``/metrics`` exporter
(``exporter``), GitHub API metering (``github_meter``) and the runner logs kept as plain files
for the agents (``runner_logs``).
"""
