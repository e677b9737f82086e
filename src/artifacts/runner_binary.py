"""The runner application tarball: download once per version, verify, cache atomically."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shlex
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import requests

from artifacts.runner_files import RUNNER_UID
from errors import RunnerBinaryError, RunnerCreateError
from github_api.types import RunnerApplication

if TYPE_CHECKING:
    from lxd.seam import LxdInstanceHandle

logger = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT = (10, 60)  # connect, read (seconds)
CHUNK = 1 << 16
MAX_TARBALL_BYTES = 1 << 30
MAX_UNPACKED_BYTES = 4 << 30
REQUIRED_MEMBERS = ("config.sh", "run.sh")
VERSION_FILE_SUFFIX = ".version"


@dataclass(frozen=True)
class CachedBinary:
    """The cached runner tarball.

    Attributes:
        path: The tarball on disk.
        version: Its version.
        sha256: Its SHA-256.
    """

    path: Path
    version: str
    sha256: str


def _version_file(path: Path) -> Path:
    return path.with_name(path.name + VERSION_FILE_SUFFIX)


def cached_binary(path: Path) -> CachedBinary | None:
    """Return the cached binary at ``path`` if it is present and its record is consistent.

    Args:
        path: Where the tarball is cached.

    Returns:
        The cached binary, or None when missing or unusable.
    """
    record = _version_file(path)
    if not path.is_file() or not record.is_file():
        return None
    try:
        version, digest = record.read_text(encoding="utf-8").split()
    except ValueError:
        return None
    return CachedBinary(path=path, version=version, sha256=digest)


def _check_member(member: tarfile.TarInfo) -> str:
    """Return a member's name if unpacking it with ``tar -x`` as root stays inside the tree.

    Raises:
        RunnerBinaryError: Naming the member, if it is anything but a regular file or a
            directory, has an absolute path, a ``..`` part, a control character, or a setuid,
            setgid or sticky bit.
    """
    raw = member.name
    name = raw.removeprefix("./")
    shown = repr(raw[:200])
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw):
        raise RunnerBinaryError(f"runner tarball member {shown} has a control character")
    if raw.startswith("/") or ".." in PurePosixPath(name).parts:
        raise RunnerBinaryError(f"runner tarball holds an unsafe path: {shown}")
    if member.issym() or member.islnk():
        kind = "symlink" if member.issym() else "hard link"
        raise RunnerBinaryError(
            f"runner tarball member {shown} is a {kind} (to {member.linkname[:200]!r})"
        )
    if not (member.isreg() or member.isdir()):
        raise RunnerBinaryError(f"runner tarball holds a special file: {shown}")
    if member.mode & 0o7000:
        raise RunnerBinaryError(
            f"runner tarball member {shown} has a setuid, setgid or sticky bit "
            f"(mode {member.mode:o})"
        )
    return name


def _check_tar(tar: tarfile.TarFile) -> None:
    names = set()
    total = 0
    for member in tar:
        names.add(_check_member(member).rstrip("/"))
        total += max(member.size, 0)
        if total > MAX_UNPACKED_BYTES:
            raise RunnerBinaryError("runner tarball unpacks to more than 4 GiB")
    missing = [m for m in REQUIRED_MEMBERS if m not in names]
    if missing:
        raise RunnerBinaryError(f"runner tarball lacks {', '.join(missing)}")


def validate_tarball(path: Path) -> None:
    """Check that ``path`` is a runner tarball that is safe to extract.

    Only regular files and directories inside the tree are accepted: no symlink or hard link
    (``tar -x`` follows them for later members), no absolute path or ``..``, no device, FIFO
    or other special file, no setuid/setgid/sticky bit.

    Args:
        path: The tarball.

    Raises:
        RunnerBinaryError: If it is not a readable tarball, lacks the runner scripts, or holds
            a member named above (the error names it).
    """
    try:
        with tarfile.open(path, "r:*") as tar:
            _check_tar(tar)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise RunnerBinaryError(f"runner tarball is not readable: {exc}") from exc


def validate_tarball_bytes(data: bytes) -> None:
    """Check a runner tarball held in memory (see :func:`validate_tarball`).

    Args:
        data: The tarball's bytes.

    Raises:
        RunnerBinaryError: As :func:`validate_tarball`.
    """
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            _check_tar(tar)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise RunnerBinaryError(f"runner tarball is not readable: {exc}") from exc


def download(
    binary: RunnerApplication, dest: Path, session: requests.Session | None = None
) -> CachedBinary:
    """Download the runner tarball, verify it, and atomically replace the cached copy.

    The previous copy is kept until the new one is verified; nothing half-written is ever at
    ``dest``.

    Args:
        binary: What GitHub lists for this os and architecture.
        dest: Where the cached tarball lives.
        session: HTTP session to use (a new one by default).

    Returns:
        The new cached binary.

    Raises:
        RunnerBinaryError: If the download fails, is too large, or does not match its checksum.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    headers = {}
    if binary.temp_download_token:
        headers["Authorization"] = f"Bearer {binary.temp_download_token}"
    http = session or requests.Session()
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".runner-download-")
    tmp = Path(tmp_name)
    try:
        with (
            os.fdopen(fd, "wb") as out,
            http.get(
                binary.download_url, headers=headers, stream=True, timeout=DOWNLOAD_TIMEOUT
            ) as response,
        ):
            if response.status_code != 200:
                raise RunnerBinaryError(
                    f"downloading {binary.filename} answered HTTP {response.status_code}"
                )
            for chunk in response.iter_content(CHUNK):
                size += len(chunk)
                if size > MAX_TARBALL_BYTES:
                    raise RunnerBinaryError(f"{binary.filename} is larger than 1 GiB")
                digest.update(chunk)
                out.write(chunk)
        sha = digest.hexdigest()
        if binary.sha256_checksum and sha != binary.sha256_checksum.lower():
            raise RunnerBinaryError(
                f"{binary.filename}: sha256 {sha} does not match the published "
                f"{binary.sha256_checksum}"
            )
        validate_tarball(tmp)
        os.replace(tmp, dest)
        record = _version_file(dest)
        record_tmp = record.with_name(record.name + ".tmp")
        record_tmp.write_text(f"{binary.version} {sha}\n", encoding="utf-8")
        os.replace(record_tmp, record)
    except requests.RequestException as exc:
        raise RunnerBinaryError(
            f"downloading {binary.filename} failed: {type(exc).__name__}"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("runner binary %s cached (%d bytes, sha256 %s)", binary.version, size, sha)
    return CachedBinary(path=dest, version=binary.version, sha256=sha)


def install_in_instance(
    instance: LxdInstanceHandle,
    app_dir: PurePosixPath,
    binary: Path,
    version: str | None,
    runner_name: str,
) -> None:
    """Unpack the runner application into an instance unless its image has that version.

    Args:
        instance: The runner's instance (running).
        app_dir: The runner application directory inside it (made and owned by the runner user).
        binary: The cached runner tarball.
        version: The tarball's version, if known.
        runner_name: The runner, for errors.

    Raises:
        RunnerCreateError: If neither the image nor the cache has a runner binary.
        RunnerBinaryError: If the cached tarball is unsafe to unpack (nothing is pushed).
    """
    app = shlex.quote(str(app_dir))
    owner = f"{RUNNER_UID}:{RUNNER_UID}"
    probe = instance.execute(
        [
            "bash",
            "-c",
            f"mkdir -p {app} && chown {owner} {app} && {app}/bin/Runner.Listener --version",
        ],
        timeout=30,
    )
    installed = probe.stdout.strip() if probe.ok else ""
    if version and installed == version:
        return
    if not binary.is_file():
        if installed:
            logger.warning("no cached runner binary; using the image's %s", installed)
            return
        raise RunnerCreateError("no runner binary in the image or cache", runner_name)
    archive = "/tmp/actions-runner.tar.gz"  # noqa: S108 - inside the runner instance
    data = binary.read_bytes()
    validate_tarball_bytes(data)  # the very bytes pushed: root unpacks them in the instance
    instance.files.push(archive, data)
    instance.execute(
        [
            "bash",
            "-c",
            f"tar -xzf {archive} -C {app} && chown -R {owner} {app} && rm -f {archive}",
        ],
        timeout=120,
        check=True,
    )
