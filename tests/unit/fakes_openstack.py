"""Fake of the OpenStack seam (``openstack_backend.seam.OpenstackCloud``): servers, quota, ERROR.

Like Nova: a creation returns a BUILD server; :meth:`FakeOpenstack.boot` turns BUILD servers
ACTIVE. A quota of instances refuses creations past it with ``OpenstackQuotaError``, except
``racy_quota`` extras, which Nova accepts under racing creates and then sends to ERROR.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import errors
from config.settings import RunnerManagerSettings
from config.state import CharmState
from openstack_backend.seam import ACTIVE, ERROR, ServerView
from runner_manager_type import OpenstackRunnerManagerConfig


@dataclass
class FakeServer:
    """One server the fake holds (mutable, unlike the views it lists)."""

    name: str
    id: str
    status: str
    created_at: datetime
    image: str = ""
    flavor: str = ""
    network: str = ""
    user_data: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    fault: str | None = None

    def view(self) -> ServerView:
        return ServerView(
            name=self.name,
            id=self.id,
            status=self.status,
            created_at=self.created_at,
            fault=self.fault,
            metadata=dict(self.metadata),
            tags=self.tags,
        )


class FakeOpenstack:
    """Holds servers like Nova, with an instance quota and switchable failures."""

    def __init__(self, quota: int | None = None) -> None:
        self.lock = threading.Lock()
        self.servers: dict[str, FakeServer] = {}
        self._ids = itertools.count(1)
        self.calls: list[str] = []
        self.quota = quota
        self.racy_quota = 0  # creations accepted past the quota, then sent to ERROR
        self.images = {"runner-image": "img-1"}
        self.flavors = {"m1.small": "flv-1"}
        self.networks = {"runners": "net-1"}
        self.fail_create: Exception | None = None
        self.fail_list: Exception | None = None

    def _call(self, name: str) -> None:
        with self.lock:
            self.calls.append(name)

    def add_server(
        self,
        name: str,
        status: str = ACTIVE,
        metadata: Mapping[str, str] | None = None,
        created_at: datetime | None = None,
        fault: str | None = None,
    ) -> FakeServer:
        server = FakeServer(
            name=name,
            id=f"srv-{next(self._ids)}",
            status=status,
            created_at=created_at or datetime.now(timezone.utc),
            metadata=dict(metadata or {}),
            fault=fault,
        )
        self.servers[server.id] = server
        return server

    def by_name(self, name: str) -> FakeServer | None:
        return next((s for s in self.servers.values() if s.name == name), None)

    def boot(self) -> None:
        """Turn every BUILD server ACTIVE."""
        for server in self.servers.values():
            if server.status == "BUILD":
                server.status = ACTIVE

    def list_servers(self, prefix: str) -> list[ServerView]:
        self._call("list_servers")
        if self.fail_list:
            raise self.fail_list
        with self.lock:
            return [s.view() for s in self.servers.values() if s.name.startswith(prefix)]

    def create_server(
        self,
        name: str,
        *,
        image: str,
        flavor: str,
        network: str,
        user_data: str,
        metadata: Mapping[str, str],
        tags: tuple[str, ...],
    ) -> ServerView:
        self._call("create_server")
        if self.fail_create:
            raise self.fail_create
        if image not in self.images.values():
            raise errors.OpenstackBadRequestError(f"image {image} not found", 400, "create_server")
        with self.lock:
            status, fault = "BUILD", None
            if self.quota is not None and len(self.servers) >= self.quota:
                if self.racy_quota <= 0:
                    raise errors.OpenstackQuotaError(
                        "Quota exceeded for instances", 403, "create_server", name
                    )
                self.racy_quota -= 1
                status, fault = ERROR, "Quota exceeded for instances: Requested 1"
            server = FakeServer(
                name=name,
                id=f"srv-{next(self._ids)}",
                status=status,
                created_at=datetime.now(timezone.utc),
                image=image,
                flavor=flavor,
                network=network,
                user_data=user_data,
                metadata=dict(metadata),
                tags=tags,
                fault=fault,
            )
            self.servers[server.id] = server
        return replace(server).view()

    def delete_server(self, server: str) -> None:
        self._call("delete_server")
        with self.lock:
            for key, held in list(self.servers.items()):
                if server in (held.id, held.name):
                    del self.servers[key]

    def _lookup(self, kind: str, table: dict[str, str], wanted: str) -> str:
        if wanted in table.values():
            return wanted
        if wanted not in table:
            raise errors.OpenstackNotFoundError(f"no {kind} {wanted!r}", 404, f"find_{kind}")
        return table[wanted]

    def image_id(self, image: str) -> str:
        return self._lookup("image", self.images, image)

    def flavor_id(self, flavor: str) -> str:
        return self._lookup("flavor", self.flavors, flavor)

    def network_id(self, network: str) -> str:
        return self._lookup("network", self.networks, network)


def unit_settings(tmp_path: Path, **overrides: Any) -> RunnerManagerSettings:
    """Settings of unit ``gh/0`` under ``tmp_path``: short lock timeout, one creation at a time."""
    options: dict[str, Any] = {"lock_timeout": 0.2, "create_parallelism": 1, **overrides}
    return RunnerManagerSettings.for_unit(
        "gh",
        0,
        state_root=tmp_path / "state",
        log_root=tmp_path / "logs",
        cron_dir=tmp_path / "cron",
        **options,
    )


def openstack_config(state: CharmState, **overrides: Any) -> OpenstackRunnerManagerConfig:
    """An OpenStack manager config of ``state``: flavor, image and network as the fake knows."""
    config = OpenstackRunnerManagerConfig(
        charm_state=state,
        path=state.path,
        labels=(),
        token=state.token.get_secret_value(),
        flavor="m1.small",
        image="runner-image",
        network="runners",
        dockerhub_mirror=None,
    )
    return replace(config, **overrides)
