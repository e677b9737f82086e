"""The unit's ``/metrics`` endpoint: the metrics state file, served with prometheus-client.

Run by the charm as its own systemd service (``python -m observability serve``), bound to
loopback where the cos-agent subordinate on the same machine scrapes it. A scrape reads one
small file and formats it: it never calls GitHub or LXD, so scraping cannot burn the rate limit
and costs the same whatever GitHub or LXD are doing.

Why its own process rather than inside the policy service: the policy service listens where
runners reach it (the LXD bridge for VMs), and job code on a runner must not read the unit's
metrics; its own service also restarts and fails on its own.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType

from prometheus_client import CollectorRegistry, exposition
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from observability.series import SERIES, Kind, Series
from observability.state import STATE_FILE_NAME, Histogram, MetricsState, StateFile

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9464
DEFAULT_STATE_FILE = Path("/var/lib/github-runner") / STATE_FILE_NAME


def _labels(key: str) -> list[str]:
    values = json.loads(key)
    return [str(value) for value in values]


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    """Cumulative ``(le, count)`` pairs, ``+Inf`` last."""
    out, total = [], 0
    for bound, count in zip([*histogram.bounds, float("inf")], histogram.counts, strict=True):
        total += count
        out.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(total)))
    return out


def families(state: MetricsState) -> Iterator[Metric]:
    """Yield one metric family per series of the catalogue, with the state's samples.

    Args:
        state: The metrics state.

    Yields:
        The families (series with no sample yet are exposed empty, with their help).
    """
    for series in SERIES:
        yield _family(series, state)


def _family(series: Series, state: MetricsState) -> Metric:
    labels = list(series.labels)
    if series.kind is Kind.HISTOGRAM:
        histogram_family = HistogramMetricFamily(series.name, series.help, labels=labels)
        for key, histogram in state.histograms.get(series.name, {}).items():
            if len(histogram.counts) == len(histogram.bounds) + 1:
                histogram_family.add_metric(_labels(key), _buckets(histogram), histogram.sum)
        return histogram_family
    family: GaugeMetricFamily | CounterMetricFamily
    if series.kind is Kind.COUNTER:
        family = CounterMetricFamily(series.name, series.help, labels=labels)
    else:
        family = GaugeMetricFamily(series.name, series.help, labels=labels)
    for key, value in state.values.get(series.name, {}).items():
        values = _labels(key)
        if len(values) == len(labels):
            family.add_metric(values, value)
    return family


class StateCollector(Collector):
    """A prometheus-client collector that reads the state file on each scrape."""

    def __init__(self, state: StateFile) -> None:
        """Build it.

        Args:
            state: The state file.
        """
        self._state = state

    def collect(self) -> Iterator[Metric]:
        """Read the state and yield its families (a corrupt key is skipped, never raised)."""
        state = self._state.read()
        try:
            yield from list(families(state))
        except ValueError:  # a hand-edited key that is not a JSON list
            logger.warning("metrics state %s has a malformed key: served empty", self._state.path)
            yield from families(MetricsState())


def registry_for(state_file: Path) -> CollectorRegistry:
    """Return a registry holding only the state collector of ``state_file``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(StateFile(state_file)))
    return registry


def serve(host: str, port: int, state_file: Path, stop: threading.Event) -> None:
    """Serve ``/metrics`` on ``host:port`` until ``stop`` is set.

    Args:
        host: The address to bind (loopback by default).
        port: The port.
        state_file: The metrics state file.
        stop: Set to stop serving.
    """
    server, thread = exposition.start_http_server(port, host, registry_for(state_file))
    logger.info("serving /metrics on %s:%d from %s", host, port, state_file)
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m observability serve [--host H] [--port P] [--state-file F]``.

    Args:
        argv: The arguments (default: the process's).

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(prog="observability", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="serve /metrics")
    serve_cmd.add_argument("--host", default=DEFAULT_HOST)
    serve_cmd.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve_cmd.add_argument("--state-file", type=Path, default=DEFAULT_STATE_FILE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    serve(args.host, args.port, args.state_file, stop)
    return 0
