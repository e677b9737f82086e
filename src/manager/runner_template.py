"""The stopped container test-mode runners are cloned from (faster than launching an image)."""

from __future__ import annotations

import logging

from errors import LXDError
from runner_manager_type import RunnerManagerClients

logger = logging.getLogger(__name__)


def ensure_template(
    clients: RunnerManagerClients, prefix: str, image: str, generation: str
) -> str | None:
    """Return the stopped container runners are cloned from, making it if needed.

    Named ``grt-<app>-<unit>-<generation>``: outside the unit's runner prefix, so it is never
    judged as a runner; templates of older image generations are deleted. Any failure means
    "launch from the image".

    Args:
        clients: The seams (LXD).
        prefix: The unit's runner name prefix (``<app>-<unit>-``).
        image: The image alias.
        generation: The image generation (fingerprint prefix).

    Returns:
        The template's name, or None.
    """
    base = f"grt-{prefix}"
    name = f"{base}{generation}"
    lxd = clients.lxd
    try:
        for old in lxd.list(prefix=base):
            if old.name != name:
                old.delete()
        if not lxd.exists(name):
            # Started once (LXD remaps the ids at the first start), then stopped.
            lxd.create(name, image, ephemeral=False, start=True, wait=True).stop(force=True)
    except LXDError as exc:
        logger.warning("no runner template (%s): launching from the image", exc)
        return None
    return name
