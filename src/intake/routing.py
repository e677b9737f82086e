"""Route a job to the flavor whose runners can take it, by labels.

A job can run on a flavor's runners when every label it asks for (``runs-on``) is one the
runners carry, compared case-insensitively as GitHub does. Runners always carry
``self-hosted`` and ``linux`` (:data:`runner_type.DEFAULT_LABELS`) and their architecture
(``x64``, ``arm64``; GitHub also accepts ``amd64``/``x86_64`` and ``aarch64`` spellings in
``runs-on``): these are implied even when a flavor's configured labels leave them out.

When several flavors can take a job, the one offering the fewest labels wins (the most
specific: a job asking for ``small`` does not take a ``large`` flavor that also offers
``small``), then the first in configuration order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from runner_type import DEFAULT_LABELS, Arch

# The runs-on spellings of each architecture (lower-case).
ARCH_ALIASES: dict[Arch, frozenset[str]] = {
    Arch.X64: frozenset({"x64", "amd64", "x86_64"}),
    Arch.ARM64: frozenset({"arm64", "aarch64"}),
}


def _fold(labels: Iterable[str]) -> frozenset[str]:
    return frozenset(label.strip().lower() for label in labels if label.strip())


@dataclass(frozen=True)
class Flavor:
    """One flavor of runners: its queue and the labels its runners carry.

    Attributes:
        queue_name: The flavor's queue (its application name).
        labels: The labels its runners carry (any case; the implied ones may be left out).
        arch: The runners' architecture; None: the architecture labels among ``labels``, or
            ``x64`` when there is none.
    """

    queue_name: str
    labels: frozenset[str]
    arch: Arch | None = None

    def offered(self) -> frozenset[str]:
        """Return every label a job may ask for on this flavor, lower-cased.

        Returns:
            The configured labels, ``self-hosted``, ``linux`` and the architecture's spellings.
        """
        folded = _fold(self.labels)
        if self.arch is not None:
            arches = [self.arch]
        else:
            arches = [arch for arch, names in ARCH_ALIASES.items() if folded & names]
            arches = arches or [Arch.X64]
        implied: set[str] = set(DEFAULT_LABELS)
        for arch in arches:
            implied |= ARCH_ALIASES[arch]
        return folded | implied


def route(job_labels: Iterable[str], flavors: Sequence[Flavor]) -> Flavor | None:
    """Return the flavor that takes a job, if any.

    Args:
        job_labels: The labels the job asks for (``workflow_job.labels``).
        flavors: The flavors, in configuration order.

    Returns:
        The most specific flavor offering every label of the job (see the module docstring),
        or None when none does or the job asks for no label at all.
    """
    wanted = _fold(job_labels)
    if not wanted:
        return None
    best: Flavor | None = None
    best_size = 0
    for flavor in flavors:
        offered = flavor.offered()
        if wanted <= offered and (best is None or len(offered) < best_size):
            best, best_size = flavor, len(offered)
    return best
