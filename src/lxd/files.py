"""Files of one LXD instance: push, pull (bounded, regular files only) and mkdir."""

from __future__ import annotations

from urllib.parse import quote

import errors
from lxd.transport import LxdTransport


def _owner_headers(kind: str, mode: int, uid: int, gid: int) -> dict[str, str]:
    """LXD's headers for the type, permissions and owner of a file it writes."""
    return {
        "X-LXD-type": kind,
        "X-LXD-mode": f"{mode:04o}",
        "X-LXD-uid": str(uid),
        "X-LXD-gid": str(gid),
    }


class LxdFiles:
    """Files of one instance (``instance.files``)."""

    def __init__(self, transport: LxdTransport, instance: str) -> None:
        """Bind to an instance.

        Args:
            transport: The connection to LXD.
            instance: The instance's name.
        """
        self._transport = transport
        self._instance = instance
        self._path = f"instances/{quote(instance, safe='')}/files"

    def push(
        self, path: str, content: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0
    ) -> None:
        """Write a file in the instance (its directory must exist), replacing any file there.

        Args:
            path: Absolute path in the instance.
            content: The bytes to write.
            mode: The file's permissions.
            uid: Its owner, as seen inside the instance.
            gid: Its group, as seen inside the instance.
        """
        headers = {
            **_owner_headers("file", mode, uid, gid),
            "X-LXD-write": "overwrite",
            "Content-Type": "application/octet-stream",
        }
        self._transport.request(
            "post",
            self._path,
            params={"path": path},
            data=content,
            headers=headers,
            operation="push",
            instance=self._instance,
        )

    def mkdir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        """Create a directory in the instance (its parent must exist); an existing one is kept.

        Args:
            path: Absolute path in the instance.
            mode: Its permissions.
            uid: Its owner, as seen inside the instance.
            gid: Its group, as seen inside the instance.
        """
        headers = _owner_headers("directory", mode, uid, gid)
        try:
            self._transport.request(
                "post",
                self._path,
                params={"path": path},
                headers=headers,
                operation="mkdir",
                instance=self._instance,
            )
        except errors.LXDNotFoundError:
            raise
        except errors.LXDError as exc:
            if "exist" not in exc.message.lower():
                raise

    def pull(self, path: str, max_bytes: int | None = None) -> bytes:
        """Read a regular file from the instance. Symlinks and directories are refused.

        Args:
            path: Absolute path in the instance.
            max_bytes: If set, refuse files larger than this (read at most this much + 1).

        Returns:
            The file's content.

        Raises:
            LXDNotFoundError: The file (or the instance) does not exist.
            LXDError: It is not a regular file, or it is larger than ``max_bytes``.
        """
        name = self._instance
        response = self._transport.request(
            "get",
            self._path,
            params={"path": path},
            stream=True,
            is_api=False,
            operation="pull",
            instance=name,
        )
        with response:
            kind = response.headers.get("X-LXD-type", "file")
            if kind != "file":
                raise errors.LXDError(
                    f"pull: {path} is a {kind}, not a regular file", "pull", name
                )
            limit = None if max_bytes is None else max_bytes + 1
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_content(chunk_size=65536):
                chunks.append(chunk)
                size += len(chunk)
                if limit is not None and size >= limit:
                    break
        data = b"".join(chunks)
        if max_bytes is not None and len(data) > max_bytes:
            raise errors.LXDError(f"pull: {path} is larger than {max_bytes} bytes", "pull", name)
        return data
