"""Runner application downloads: deterministic tarballs of ``sandbox/runner_app``."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent / "runner_app"
PLATFORMS = (
    ("linux", "x64"),
    ("linux", "arm64"),
    ("linux", "arm"),
    ("osx", "x64"),
    ("osx", "arm64"),
)
FILENAME_RE = re.compile(
    r"^actions-runner-(?P<os>linux|osx)-(?P<arch>x64|arm64|arm)-(?P<version>\d+\.\d+\.\d+)\.tar\.gz$"
)
EXECUTABLES = {"config.sh", "run.sh", "bin/Runner.Listener"}
FIXED_MTIME = 1_700_000_000
DOWNLOAD_PREFIX = "/_sandbox/downloads/"


@dataclass(frozen=True)
class Artifact:
    """One built tarball."""

    filename: str
    data: bytes
    sha256: str


def filename(os_name: str, arch: str, version: str) -> str:
    """The tarball name actions/runner uses.

    Args:
        os_name: "linux" or "osx".
        arch: "x64", "arm64" or "arm".
        version: runner version.

    Returns:
        e.g. "actions-runner-linux-x64-2.330.0.tar.gz".
    """
    return f"actions-runner-{os_name}-{arch}-{version}.tar.gz"


def _add(tar: tarfile.TarFile, name: str, data: bytes, executable: bool) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = FIXED_MTIME
    info.mode = 0o755 if executable else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def build(os_name: str, arch: str, version: str, app_dir: Path = APP_DIR) -> bytes:
    """Build the tarball, byte for byte the same for the same inputs.

    Args:
        os_name: target OS (recorded only: the app is Python).
        arch: target architecture (recorded only).
        version: version the runner reports.
        app_dir: the runner app sources.

    Returns:
        The .tar.gz bytes.
    """
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        files = sorted(
            p
            for p in app_dir.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        )
        for path in files:
            rel = path.relative_to(app_dir).as_posix()
            _add(tar, f"./{rel}", path.read_bytes(), rel in EXECUTABLES or rel.endswith(".sh"))
        info = {"version": version, "os": os_name, "arch": arch}
        _add(tar, "./bin/runner-info.json", json.dumps(info, sort_keys=True).encode(), False)
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


class Downloads:
    """Cache of built tarballs, keyed by file name."""

    def __init__(self, app_dir: Path = APP_DIR):
        self.app_dir = app_dir
        self._lock = threading.Lock()
        self._cache: dict[str, Artifact] = {}

    def get(self, name: str) -> Artifact | None:
        """The tarball of a file name, built on first use.

        Args:
            name: e.g. "actions-runner-linux-x64-2.330.0.tar.gz".

        Returns:
            The artifact, or None for a name no platform/version gives.
        """
        match = FILENAME_RE.match(name)
        if match is None:
            return None
        with self._lock:
            artifact = self._cache.get(name)
            if artifact is None:
                data = build(match["os"], match["arch"], match["version"], self.app_dir)
                artifact = Artifact(name, data, hashlib.sha256(data).hexdigest())
                self._cache[name] = artifact
            return artifact

    def applications(self, version: str, base_url: str) -> list[dict[str, str]]:
        """The ``runner-application`` list for a version.

        Args:
            version: runner version.
            base_url: sandbox root URL the downloads are served from.

        Returns:
            One entry per platform.
        """
        apps = []
        for os_name, arch in PLATFORMS:
            name = filename(os_name, arch, version)
            artifact = self.get(name)
            assert artifact is not None  # noqa: S101 - the name comes from filename()
            apps.append(
                {
                    "os": os_name,
                    "architecture": arch,
                    "download_url": f"{base_url}{DOWNLOAD_PREFIX}{name}",
                    "filename": name,
                    "sha256_checksum": artifact.sha256,
                }
            )
        return apps
