"""The runner tarball check: root unpacks it (``tar -x``), so only plain files inside the tree.

Hostile tarballs are built here, one bad member each, around the runner scripts; each is
refused with a RunnerBinaryError naming the member, by ``validate_tarball`` and before anything
is pushed into an instance. The sandbox's honest runner tarball passes.
"""

from __future__ import annotations

import io
import tarfile
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import pytest

from artifacts import runner_binary
from errors import RunnerBinaryError
from sandbox import downloads
from tests.unit.fakes_lxd import FakeInstance, FakeLxd


def info(name: str, kind: bytes = tarfile.REGTYPE, **fields: object) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.mode = 0o755
    for key, value in fields.items():
        setattr(member, key, value)
    return member


def tarball(hostile: tarfile.TarInfo | None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("./config.sh", "./run.sh"):
            script = info(name, size=10)
            tar.addfile(script, io.BytesIO(b"#!/bin/sh\n"))
        if hostile is not None:
            data = b"x" * hostile.size if hostile.isreg() else None
            tar.addfile(hostile, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


HOSTILE = {
    "symlink out of the tree": info("bin", tarfile.SYMTYPE, linkname="/usr/bin"),
    "relative symlink": info("./externals", tarfile.SYMTYPE, linkname="../../../etc"),
    "hard link to a host file": info("shadow", tarfile.LNKTYPE, linkname="/etc/shadow"),
    "hard link inside the tree": info("run2.sh", tarfile.LNKTYPE, linkname="run.sh"),
    "absolute path": info("/etc/cron.d/evil", size=1),
    "parent reference": info("./bin/../../../root/.ssh/authorized_keys", size=1),
    "character device": info("dev-null", tarfile.CHRTYPE, devmajor=1, devminor=3),
    "block device": info("sda", tarfile.BLKTYPE, devmajor=8, devminor=0),
    "fifo": info("pipe", tarfile.FIFOTYPE),
    "setuid file": info("./bin/su", size=1, mode=0o4755),
    "setgid directory": info("./bin", tarfile.DIRTYPE, mode=0o2755),
    "newline in a name": info("./bin/a\nb", size=1),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_member_is_refused_by_name(name: str, tmp_path: Path) -> None:
    member = HOSTILE[name]
    path = tmp_path / "runner.tgz"
    path.write_bytes(tarball(member))
    with pytest.raises(RunnerBinaryError) as caught:
        runner_binary.validate_tarball(path)
    assert repr(member.name[:200]) in str(caught.value)
    with pytest.raises(RunnerBinaryError):
        runner_binary.validate_tarball_bytes(path.read_bytes())


def test_the_tarball_without_hostile_members_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "runner.tgz"
    path.write_bytes(tarball(info("./bin/Runner.Listener", size=3)))
    runner_binary.validate_tarball(path)


def test_the_sandbox_runner_tarball_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "runner.tgz"
    path.write_bytes(downloads.build("linux", "x64", "2.330.0"))
    runner_binary.validate_tarball(path)


def instance() -> FakeInstance:
    lxd = FakeLxd()
    lxd.image_runner_version = None
    return FakeInstance(lxd, "r-0", datetime.now(timezone.utc), {}, {})


def test_nothing_hostile_is_pushed_into_an_instance(tmp_path: Path) -> None:
    path = tmp_path / "runner.tgz"
    path.write_bytes(tarball(HOSTILE["symlink out of the tree"]))
    target = instance()
    with pytest.raises(RunnerBinaryError, match="symlink"):
        runner_binary.install_in_instance(
            target, PurePosixPath("/home/ubuntu/actions-runner"), path, "2.330.0", "r-0"
        )
    assert target.files_pushed == {}
    assert not any("tar -xzf" in " ".join(cmd) for cmd in target.commands)


def test_an_honest_tarball_is_pushed_and_unpacked(tmp_path: Path) -> None:
    path = tmp_path / "runner.tgz"
    path.write_bytes(downloads.build("linux", "x64", "2.330.0"))
    target = instance()
    runner_binary.install_in_instance(
        target, PurePosixPath("/home/ubuntu/actions-runner"), path, "2.330.0", "r-0"
    )
    assert list(target.files_pushed) == ["/tmp/actions-runner.tar.gz"]
    assert any("tar -xzf" in " ".join(cmd) for cmd in target.commands)
