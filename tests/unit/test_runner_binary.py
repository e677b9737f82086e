"""Runner binary download over real HTTP on loopback: verified, validated, atomically replaced."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from artifacts import runner_binary
from errors import RunnerBinaryError
from github_api.types import RunnerApplication
from tests.unit.fakes_core import runner_tarball

FILES: dict[str, bytes] = {}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = FILES.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        if body is not None:
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def serve(url: str, name: str, body: bytes, sha: str | None = "auto") -> RunnerApplication:
    FILES[f"/{name}"] = body
    digest = hashlib.sha256(body).hexdigest() if sha == "auto" else sha
    return RunnerApplication("linux", "x64", f"{url}/{name}", name, digest)


def test_download_verifies_and_records_version(server: str, tmp_path: Path) -> None:
    body = runner_tarball(tmp_path / "src.tgz", "2.331.0").read_bytes()
    app = serve(server, "actions-runner-linux-x64-2.331.0.tar.gz", body)
    dest = tmp_path / "cache" / "runner.tgz"
    cached = runner_binary.download(app, dest)
    assert cached.version == "2.331.0" and dest.read_bytes() == body
    assert runner_binary.cached_binary(dest) == cached


def test_checksum_mismatch_keeps_previous_copy(server: str, tmp_path: Path) -> None:
    good = runner_tarball(tmp_path / "good.tgz", "2.330.0").read_bytes()
    dest = tmp_path / "runner.tgz"
    runner_binary.download(serve(server, "actions-runner-linux-x64-2.330.0.tar.gz", good), dest)
    bad = serve(server, "actions-runner-linux-x64-2.331.0.tar.gz", good + b"x", sha="0" * 64)
    with pytest.raises(RunnerBinaryError, match="does not match"):
        runner_binary.download(bad, dest)
    assert dest.read_bytes() == good
    assert runner_binary.cached_binary(dest).version == "2.330.0"  # type: ignore[union-attr]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".runner-download")] == []


def test_unsafe_or_incomplete_tarballs_are_refused(server: str, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../../etc/cron.d/evil")
        info.size = 0
        tar.addfile(info, io.BytesIO(b""))
    app = serve(server, "actions-runner-linux-x64-9.9.9.tar.gz", buf.getvalue())
    with pytest.raises(RunnerBinaryError, match="unsafe path"):
        runner_binary.download(app, tmp_path / "r.tgz")
    app = serve(server, "actions-runner-linux-x64-9.9.8.tar.gz", b"not a tarball")
    with pytest.raises(RunnerBinaryError, match="not readable"):
        runner_binary.download(app, tmp_path / "r.tgz")
    assert not (tmp_path / "r.tgz").exists()


def test_http_errors_are_clear(server: str, tmp_path: Path) -> None:
    app = RunnerApplication(
        "linux", "x64", f"{server}/missing.tgz", "actions-runner-linux-x64-1.0.0.tar.gz"
    )
    with pytest.raises(RunnerBinaryError, match="HTTP 404"):
        runner_binary.download(app, tmp_path / "r.tgz")
    app = RunnerApplication(
        "linux", "x64", "http://127.0.0.1:1/x.tgz", "actions-runner-linux-x64-1.0.0.tar.gz"
    )
    with pytest.raises(RunnerBinaryError, match="failed"):
        runner_binary.download(app, tmp_path / "r.tgz")


def test_inconsistent_cache_record_is_not_usable(tmp_path: Path) -> None:
    dest = runner_tarball(tmp_path / "r.tgz")
    assert runner_binary.cached_binary(dest) is None
    (tmp_path / "r.tgz.version").write_text("garbage")
    assert runner_binary.cached_binary(dest) is None
