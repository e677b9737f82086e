"""The unit's validated state: a plain, frozen model the charm builds and the core reads.

The charm builds it once per hook (``charm_state.from_charm``); the runner manager, the reactive
consumers and the demo read it without Juju. Secrets are :class:`pydantic.SecretStr`: a JSON
dump shows them masked unless the serialisation context holds ``REVEAL_SECRETS`` (only the
reactive manager section asks, for a file readable by root alone).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, SerializationInfo, field_serializer

from errors import ConfigError
from github_api.app_tokens import app_document, installation_tokens
from github_api.credentials import CredentialSource, StaticToken
from github_api.types import GitHubOrg, GitHubRepo, api_base_url, parse_github_path
from runner_type import Arch, ProxySetting, SSHDebugConnection, VirtualMachineResources

REVEAL_SECRETS = "reveal_secrets"
"""Serialisation context key: ``model_dump(mode="json", context={REVEAL_SECRETS: True})``."""


class RunnerStorage(str, Enum):
    """Where runner root disks live (``runner-storage``)."""

    JUJU_STORAGE = "juju-storage"
    MEMORY = "memory"


class BaseImage(str, Enum):
    """Ubuntu release of the runner image (``base-image``)."""

    NOBLE = "noble"
    JAMMY = "jammy"


class RepoPolicyOptions(BaseModel):
    """What the pre-job repository policy allows (see docs/repo-policy.md).

    Attributes:
        allow_pull_request_target: Let ``pull_request_target`` jobs run.
        allow_unprotected_branches: Let push/dispatch/schedule jobs run on unprotected refs.
        default: ``allow`` or ``deny`` jobs of events with no rule of their own.
    """

    model_config = ConfigDict(frozen=True)

    allow_pull_request_target: bool = False
    allow_unprotected_branches: bool = False
    default: str = "deny"


class ReactiveConfig(BaseModel):
    """Configuration of reactive mode (from the mongodb relation).

    Attributes:
        mq_uri: URI of the message queue (kombu URI). Secret: it holds credentials.
        queue_name: Name of the queue jobs arrive on (the application name).
    """

    model_config = ConfigDict(frozen=True)

    mq_uri: SecretStr
    queue_name: str

    @field_serializer("mq_uri", when_used="json")
    def _dump_mq_uri(self, value: SecretStr, info: SerializationInfo) -> str:
        """Write the URI in clear only when asked to (see :meth:`CharmState.to_json`)."""
        return _dump_secret(value, info)


class GithubAppCredentials(BaseModel):
    """A GitHub App installation the charm authenticates as (instead of a token).

    Attributes:
        client_id: The app's client ID (``github-app-client-id``; an app ID works too).
        installation_id: The installation on the repository or organisation
            (``github-app-installation-id``).
        private_key: The app's PEM private key (from ``github-app-private-key-secret-id``).
            Secret.
    """

    model_config = ConfigDict(frozen=True)

    client_id: str
    installation_id: int
    private_key: SecretStr

    @field_serializer("private_key", when_used="json")
    def _dump_private_key(self, value: SecretStr, info: SerializationInfo) -> str:
        """Write the key in clear only when asked to (under ``REVEAL_SECRETS``)."""
        return _dump_secret(value, info)

    def key_digest(self) -> str:
        """Return the SHA-256 of the key: it may be stored where the key may not."""
        return hashlib.sha256(self.private_key.get_secret_value().strip().encode()).hexdigest()


class OpenstackSettings(BaseModel):
    """The OpenStack cloud runners are servers on (``backend=openstack``).

    Attributes:
        cloud: The cloud's name in the clouds.yaml (``openstack-cloud``).
        clouds_yaml: The clouds.yaml (``openstack-clouds-yaml-secret-id``). Secret.
        auth_url: The cloud's keystone URL.
        flavor: The flavor of runner servers (``openstack-flavor``).
        image: The image of runner servers (``openstack-image``).
        network: The network runner servers get a port on (``openstack-network``).
    """

    model_config = ConfigDict(frozen=True)

    cloud: str
    clouds_yaml: SecretStr
    auth_url: str
    flavor: str
    image: str
    network: str

    @field_serializer("clouds_yaml", when_used="json")
    def _dump_clouds_yaml(self, value: SecretStr, info: SerializationInfo) -> str:
        """Write the file in clear only when asked to (under ``REVEAL_SECRETS``)."""
        return _dump_secret(value, info)


class CharmState(BaseModel):
    """The validated state of the charm.

    Attributes:
        token: The GitHub token. Secret. Empty when ``github_app`` is set.
        github_app: The GitHub App the charm authenticates as, if not with a token.
        path: The repository or organisation runners register with.
        github_url: GitHub (or GHES) base URL, without a trailing slash.
        api_url: The REST API base URL derived from ``github_url``.
        runner_group: The runner group (organisations only).
        labels: Extra runner labels.
        virtual_machines: Number of runners to keep (reactive mode: the ceiling of runners
            and consumers when ``max_total_virtual_machines`` is 0).
        base_virtual_machines: Reactive mode: idle runners kept ready (the warm floor).
        max_total_virtual_machines: Reactive mode: the ceiling of runners and consumers; 0:
            ``virtual_machines``.
        vm_resources: Resources of each runner.
        reconcile_interval: Minutes between reconciliations.
        runner_storage: Where runner disks live.
        runner_network: The LXD network runners get their NIC on (``network``); empty: the
            bridge the unit makes for them.
        base_image: Ubuntu release of the runner image.
        dockerhub_mirror: Docker Hub mirror URL, if any.
        denylist: IPv4 networks runners must not reach (normalised CIDRs).
        aproxy: Whether runners use aproxy.
        test_mode: Whether runners are containers (testing the charm itself).
        repo_policy: What the pre-job repository policy allows.
        proxy: The model's proxy settings.
        is_metrics_enabled: Whether the cos-agent relation exists.
        reactive_config: Reactive mode configuration, once the mongodb relation gives a URI.
        webhook_secret: The GitHub webhook's secret (``webhook-secret``), if set. Secret: never
            serialised (only the unit's webhook intake needs it, through its own file).
        ssh_debug_connections: tmate servers from the debug-ssh relation.
        arch: CPU architecture of the unit.
        openstack: The OpenStack cloud runners are created on; None: LXD on the unit's machine.
        app_name: The application name.
        unit_number: The unit number.
    """

    model_config = ConfigDict(frozen=True)

    token: SecretStr
    github_app: GithubAppCredentials | None = None
    path: GitHubOrg | GitHubRepo
    github_url: str
    api_url: str
    runner_group: str
    labels: tuple[str, ...]
    virtual_machines: int
    base_virtual_machines: int = 0
    max_total_virtual_machines: int = 0
    vm_resources: VirtualMachineResources
    reconcile_interval: int
    runner_storage: RunnerStorage
    runner_network: str = ""
    base_image: BaseImage
    dockerhub_mirror: str | None
    denylist: tuple[str, ...]
    aproxy: bool
    test_mode: bool
    repo_policy: RepoPolicyOptions = RepoPolicyOptions()
    proxy: ProxySetting
    is_metrics_enabled: bool
    reactive_config: ReactiveConfig | None
    webhook_secret: SecretStr | None = Field(default=None, exclude=True)
    ssh_debug_connections: tuple[SSHDebugConnection, ...]
    arch: Arch
    openstack: OpenstackSettings | None = None
    app_name: str
    unit_number: int

    @field_serializer("token", when_used="json")
    def _dump_token(self, value: SecretStr, info: SerializationInfo) -> str:
        """Write the token in clear only when asked to (under ``REVEAL_SECRETS``)."""
        return _dump_secret(value, info)

    def github_credentials(self, token: str | None = None) -> CredentialSource:
        """Return the source of the GitHub token each request of this unit uses.

        Args:
            token: The token to use instead of the state's (what ``LXDRunnerManagerConfig``
                holds); ignored when the state has a GitHub App.

        Returns:
            The process's shared source of the app's installation tokens, else the token.

        Raises:
            ValueError: If there is neither a token nor an app.
        """
        app = self.github_app
        if app is not None:
            return installation_tokens(
                app.client_id,
                app.installation_id,
                app.private_key.get_secret_value(),
                self.api_url,
            )
        return StaticToken(token if token else self.token.get_secret_value())

    def service_credentials(self) -> str:
        """Return what the policy service's GitHub credentials file holds (secret: 0600).

        Returns:
            The token, or the app's credentials (the service renews installation tokens itself;
            see ``github_api.app_tokens.source_from_text``).
        """
        app = self.github_app
        if app is None:
            return self.token.get_secret_value()
        return app_document(app.client_id, app.installation_id, app.private_key.get_secret_value())

    def credentials_fingerprint(self) -> str:
        """Return a digest of what a runner registration depends on (token, path, labels).

        When it changes, every runner must be replaced. The digest, unlike the token, may be
        stored in plain charm state.

        Returns:
            A hex SHA-256 digest.
        """
        return _digest(
            {
                "token": self.token.get_secret_value(),
                **self._app_identity(),
                "path": self.path.path(),
                "group": self.runner_group,
                "github_url": self.github_url,
                "labels": list(self.labels),
            }
        )

    def credentials_content(self) -> dict[str, str]:
        """Return the registration settings as Juju secret content (non-empty strings).

        The charm keeps them in a unit-owned secret to remove the runners they registered once
        they change (see :meth:`with_credentials`).

        Returns:
            Secret content: token (or github-app, the app's credentials as JSON), path, group,
            github-url and labels (a JSON list).
        """
        app = self.github_app
        credentials = (
            {"github-app": self.service_credentials()}
            if app is not None
            else {"token": self.token.get_secret_value()}
        )
        return {
            **credentials,
            "path": self.path.path(),
            "group": self.runner_group,
            "github-url": self.github_url,
            "labels": json.dumps(list(self.labels)),
        }

    def with_credentials(self, content: Mapping[str, str]) -> CharmState:
        """Return a copy of this state with the registration settings of ``content``.

        Args:
            content: What :meth:`credentials_content` returned, possibly for another state.

        Returns:
            The copy.

        Raises:
            ConfigError: If the content is not what :meth:`credentials_content` writes.
        """
        try:
            update = {
                **_credentials_update(content),
                "path": parse_github_path(content["path"], content["group"]),
                "runner_group": content["group"],
                "github_url": content["github-url"],
                "api_url": api_base_url(content["github-url"]),
                "labels": tuple(json.loads(content["labels"])),
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                "token", "the previous credentials the charm saved are unreadable"
            ) from exc
        return self.model_copy(update=update)

    def _app_identity(self) -> dict[str, Any]:
        """The app's identity for fingerprints: ids and the key's digest (nothing for a token)."""
        app = self.github_app
        if app is None:
            return {}
        return {"app": [app.client_id, app.installation_id, app.key_digest()]}

    def runner_shape_fingerprint(self) -> str:
        """Return a digest of what an idle runner depends on besides its registration.

        When it changes (resources, image, mirror, network policy, proxy, debug servers), idle
        runners are replaced.

        Returns:
            A hex SHA-256 digest.
        """
        return _digest(
            {
                "vm": [self.vm_resources.cpu, self.vm_resources.memory, self.vm_resources.disk],
                "base_image": self.base_image.value,
                "dockerhub_mirror": self.dockerhub_mirror,
                "denylist": list(self.denylist),
                "aproxy": self.aproxy,
                "test_mode": self.test_mode,
                "proxy": [self.proxy.http, self.proxy.https, self.proxy.no_proxy],
                "ssh": [
                    [c.host, c.port, c.rsa_fingerprint, c.ed25519_fingerprint]
                    for c in self.ssh_debug_connections
                ],
                "metrics": self.is_metrics_enabled,
                **({"network": self.runner_network} if self.runner_network else {}),
            }
        )


def _credentials_update(content: Mapping[str, str]) -> dict[str, Any]:
    """The token or app fields of saved credentials (:meth:`CharmState.credentials_content`)."""
    if "github-app" not in content:
        return {"token": SecretStr(content["token"]), "github_app": None}
    app = json.loads(content["github-app"])["github_app"]
    return {
        "token": SecretStr(""),
        "github_app": GithubAppCredentials(
            client_id=str(app["client_id"]),
            installation_id=int(app["installation_id"]),
            private_key=SecretStr(str(app["private_key"])),
        ),
    }


def _dump_secret(value: SecretStr, info: SerializationInfo) -> str:
    """Serialise a secret in clear only under the reveal context."""
    context = info.context
    if isinstance(context, dict) and context.get(REVEAL_SECRETS):
        return value.get_secret_value()
    return str(value)


def _digest(data: Mapping[str, Any]) -> str:
    """Return the SHA-256 of a canonical JSON encoding of ``data``."""
    encoded = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()
