"""The stopped container test-mode runners are cloned from (faster than launching an image).

On by default in test mode (``RunnerManagerSettings.clone_from_template``). Named
``grt-<app>-<unit>-<generation>``: outside the unit's runner prefix, so it is never judged as a
runner. A new image generation replaces it; the flushes that take busy runners down (and the
stop hook, which is one) remove it; a clone that fails from a finished template falls back to
the image for that runner and removes the template, so the next creation makes a fresh one.
"""

from __future__ import annotations

import logging

from errors import LXDError
from lxd.types import InstanceStatus
from runner_manager_type import RunnerManagerClients

logger = logging.getLogger(__name__)

TEMPLATE_PREFIX = "grt-"


def template_base(prefix: str) -> str:
    """Return the name prefix of the unit's templates (``grt-<app>-<unit>-``)."""
    return f"{TEMPLATE_PREFIX}{prefix}"


def ensure_template(
    clients: RunnerManagerClients, prefix: str, image: str, generation: str
) -> str | None:
    """Return the stopped container runners are cloned from, making it if needed.

    Templates of older image generations are deleted. A template another process is still
    making (not stopped yet) is not used. Any failure means "launch from the image".

    Args:
        clients: The seams (LXD).
        prefix: The unit's runner name prefix (``<app>-<unit>-``).
        image: The image alias.
        generation: The image generation (fingerprint prefix).

    Returns:
        The template's name, or None.
    """
    base = template_base(prefix)
    name = f"{base}{generation}"
    lxd = clients.lxd
    try:
        current = None
        for instance in lxd.list(prefix=base):
            if instance.name == name:
                current = instance
            else:
                instance.delete()
        if current is None:
            # Started once (LXD remaps the ids at the first start), then stopped.
            lxd.create(name, image, ephemeral=False, start=True, wait=True).stop(force=True)
        elif current.last_status != InstanceStatus.STOPPED:
            logger.info(
                "runner template %s is being made elsewhere: launching from the image", name
            )
            return None
    except LXDError as exc:
        logger.warning("no runner template (%s): launching from the image", exc)
        return None
    return name


def remove_templates(clients: RunnerManagerClients, prefix: str) -> int:
    """Delete every template of the unit (flushes of busy runners, the stop hook).

    Args:
        clients: The seams (LXD).
        prefix: The unit's runner name prefix.

    Returns:
        How many were deleted.
    """
    removed = 0
    try:
        for instance in clients.lxd.list(prefix=template_base(prefix)):
            instance.delete()
            removed += 1
    except LXDError as exc:
        logger.warning("could not remove the runner templates: %s", exc)
    return removed
