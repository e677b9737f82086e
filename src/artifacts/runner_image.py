"""The runner image: build it with the project's script, schedule rebuilds, tell its generation."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from errors import LXDNotFoundError, SubprocessError
from paths import SCRIPTS_DIR

if TYPE_CHECKING:
    from config.settings import RunnerManagerSettings
    from lxd import LxdCloud

logger = logging.getLogger(__name__)

BUILD_SCRIPT = SCRIPTS_DIR / "build-lxd-image.sh"
BUILD_TIMEOUT = 3600
REBUILD_EVERY_HOURS = 6


def build_command(alias: str, test_mode: bool, base: str, runner_binary: Path | None) -> list[str]:
    """Return the command that builds the image.

    Args:
        alias: The image alias to publish.
        test_mode: Build a container image (tests) instead of a VM image.
        base: The Ubuntu base (noble, jammy) of the VM image.
        runner_binary: A runner tarball to bake in, if any.

    Returns:
        The argument list.
    """
    cmd = [str(BUILD_SCRIPT), "--alias", alias]
    cmd += ["--test"] if test_mode else ["--base", base]
    if runner_binary is not None:
        cmd += ["--runner-binary", str(runner_binary)]
    return cmd


def build(
    settings: RunnerManagerSettings,
    *,
    alias: str,
    test_mode: bool,
    base: str,
    runner_binary: Path | None,
) -> None:
    """Build the runner image with the project's build script.

    Args:
        settings: The manager settings (for the log directory).
        alias: The image alias to publish.
        test_mode: Build a container image instead of a VM image.
        base: The Ubuntu base of the VM image.
        runner_binary: A runner tarball to bake in, if any.

    Raises:
        SubprocessError: If the script failed or timed out.
    """
    cmd = build_command(alias, test_mode, base, runner_binary)
    logger.info("building runner image %s", alias)
    try:
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise SubprocessError(cmd, -1, "timed out") from exc
    if result.returncode != 0:
        raise SubprocessError(cmd, result.returncode, result.stderr[-2000:])
    del settings


def schedule_minute(app_name: str, unit: int) -> int:
    """Return the minute of the hour this unit rebuilds at, staggered across units.

    Args:
        app_name: The application name.
        unit: The unit number.

    Returns:
        A minute in 0..59, stable for the unit.
    """
    digest = hashlib.sha256(f"{app_name}/{unit}".encode()).digest()
    return int.from_bytes(digest[:2], "big") % 60


def schedule(
    cron_path: Path, *, app_name: str, unit: int, alias: str, test_mode: bool, base: str
) -> None:
    """Write the cron entry that rebuilds the image every six hours at a staggered minute.

    Args:
        cron_path: The cron file to write (e.g. /etc/cron.d/github-runner-image).
        app_name: The application name.
        unit: The unit number.
        alias: The image alias.
        test_mode: Build a container image instead of a VM image.
        base: The Ubuntu base of the VM image.
    """
    minute = schedule_minute(app_name, unit)
    cmd = " ".join(build_command(alias, test_mode, base, None))
    content = (
        "# Rebuild the github-runner image (written by the charm; do not edit).\n"
        f"{minute} */{REBUILD_EVERY_HOURS} * * * root timeout {BUILD_TIMEOUT} {cmd} "
        f">> /var/log/github-runner-image-build.log 2>&1\n"
    )
    cron_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = cron_path.with_name(f".{cron_path.name}.tmp")
    tmp.write_text(content, encoding="utf-8")
    os.chmod(tmp, 0o644)
    os.replace(tmp, cron_path)


def image_generation(lxd: LxdCloud, alias: str) -> str:
    """Return a short id of the image generation (its fingerprint prefix), or "" if missing.

    Args:
        lxd: The LXD client.
        alias: The image alias.

    Returns:
        The first 12 characters of the image fingerprint.
    """
    try:
        return lxd.image_info(alias).fingerprint[:12]
    except LXDNotFoundError:
        return ""
