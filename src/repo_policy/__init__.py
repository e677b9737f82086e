"""The pre-job repository policy service the charm runs on each unit.

A small WSGI application (served by waitress, see :mod:`repo_policy.__main__`): the charm, holding
the service token, takes one one-time token per runner from ``GET /one-time-token``; the runner's
job-started hook presents that token once at ``POST /check`` with the job's repository, event,
ref and event payload; the service asks GitHub (with the charm's GitHub token) whether the job
may run and answers 200 (allowed), 403 (refused, with a reason), 400 (malformed request), 401
(no token) or 503 (GitHub could not be asked: retry later). Nothing here imports ``ops``.
"""
