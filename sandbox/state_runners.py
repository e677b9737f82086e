"""Runners, runner groups and registration/remove tokens of the sandbox model."""

from __future__ import annotations

import secrets
import time

from sandbox.model import RemoteToken, Runner, RunnerGroup, Scope, StateError
from sandbox.state_base import (
    DEFAULT_GROUP_ID,
    DEFAULT_GROUP_NAME,
    DEFAULT_LABEL_NAMES,
    REGISTRATION_TOKEN_TTL,
    StateBase,
)


class RunnerRegistry(StateBase):
    """Runner groups, remote tokens and runners; every method takes the one lock."""

    # ---- runner groups -------------------------------------------------------------------

    def org_groups(self, org: str) -> list[RunnerGroup]:
        """Runner groups of an organization: "default" (id 1) plus any created ones.

        Args:
            org: organization login.

        Returns:
            The groups, default first.
        """
        with self.lock:
            default = RunnerGroup(DEFAULT_GROUP_ID, DEFAULT_GROUP_NAME, "all", True)
            return [default, *self.groups.get(org.lower(), [])]

    def add_group(self, org: str, name: str, visibility: str = "all") -> RunnerGroup:
        """Create a runner group in an organization (control API).

        Args:
            org: organization login.
            name: group name.
            visibility: "all", "selected" or "private".

        Returns:
            The group (existing one if the name is taken).
        """
        with self.lock:
            for group in self.org_groups(org):
                if group.name.lower() == name.lower():
                    return group
            group = RunnerGroup(self._next_group_id, name, visibility)
            self._next_group_id += 1
            self.groups.setdefault(org.lower(), []).append(group)
            return group

    def _find_group(self, scope: Scope, group_id: int | None, name: str | None) -> RunnerGroup:
        groups = self.org_groups(scope.owner) if scope.kind == "org" else self.org_groups("")
        for group in groups:
            if group_id is not None and group.id == group_id:
                return group
            if name is not None and group.name.lower() == name.lower():
                return group
        what = group_id if group_id is not None else name
        raise StateError(404, f"Runner group {what} not found")

    # ---- tokens --------------------------------------------------------------------------

    def create_remote_token(self, kind: str, scope: Scope) -> RemoteToken:
        """Create a registration or remove token valid for one hour.

        Args:
            kind: "registration" or "remove".
            scope: where it registers or removes runners.

        Returns:
            The token.
        """
        with self.lock:
            now = time.time()
            for token in [t for t in self.remote_tokens.values() if t.expires_at < now]:
                del self.remote_tokens[token.token]
            value = "A" + secrets.token_hex(14).upper()
            token = RemoteToken(value, kind, scope, now + REGISTRATION_TOKEN_TTL)
            self.remote_tokens[value] = token
            return token

    def check_remote_token(self, value: str, kind: str) -> RemoteToken:
        """Look up an unexpired token of a kind.

        Args:
            value: the token.
            kind: the kind it must be.

        Returns:
            The token.

        Raises:
            StateError: 401 if unknown, expired or of the other kind.
        """
        with self.lock:
            token = self.remote_tokens.get(value)
            if token is None or token.kind != kind or token.expires_at < time.time():
                raise StateError(401, f"Invalid or expired {kind} token")
            return token

    # ---- runners -------------------------------------------------------------------------

    def register_runner(
        self,
        scope: Scope,
        name: str,
        labels: list[str],
        *,
        group_id: int | None = None,
        group_name: str | None = None,
        ephemeral: bool = True,
        jit: bool = False,
        default_labels: bool = True,
        replace: bool = False,
        arch: str = "x64",
        work_folder: str = "_work",
    ) -> Runner:
        """Add a runner to a scope.

        Args:
            scope: repository or organization.
            name: runner name, unique in the scope.
            labels: custom labels.
            group_id: runner group id (org scope).
            group_name: runner group name (org scope), if no id.
            ephemeral: whether the runner takes one job only.
            jit: whether it came from generate-jitconfig.
            default_labels: whether to add self-hosted, linux and the architecture.
            replace: replace a runner of the same name instead of failing.
            arch: architecture of the runner, for its default label.
            work_folder: work folder relative to the runner directory.

        Returns:
            The new runner.

        Raises:
            StateError: 409 if the name is taken, 404 for an unknown group.
        """
        with self.lock:
            if group_id is None and not group_name:
                group_id = DEFAULT_GROUP_ID
            group = self._find_group(scope, group_id, group_name if group_id is None else None)
            existing = self.find_runner_by_name(scope, name)
            if existing is not None:
                if not replace:
                    raise StateError(409, "Already exists - A runner with the same name exists.")
                del self.runners[existing.id]
            names: list[str] = ["self-hosted", "linux", arch] if default_labels else []
            for label in labels:
                if label.lower() not in {n.lower() for n in names}:
                    names.append(label)
            runner = Runner(
                id=self._next_runner_id,
                name=name,
                scope=scope,
                group_id=group.id,
                group_name=group.name,
                labels=[self._label(n, n.lower() in DEFAULT_LABEL_NAMES) for n in names],
                ephemeral=ephemeral,
                credential=secrets.token_urlsafe(24),
                jit=jit,
                arch=arch,
                work_folder=work_folder,
            )
            self._next_runner_id += 1
            self.runners[runner.id] = runner
            self.changed.notify_all()
            return runner

    def find_runner_by_name(self, scope: Scope, name: str) -> Runner | None:
        """Find a runner by name within a scope.

        Args:
            scope: the scope.
            name: the runner name (case-insensitive).

        Returns:
            The runner or None.
        """
        with self.lock:
            for runner in self.runners.values():
                if runner.scope == scope and runner.name.lower() == name.lower():
                    return runner
            return None

    def list_runners(self, scope: Scope, name: str | None = None) -> list[Runner]:
        """Runners of a scope, by id.

        Args:
            scope: the scope.
            name: only runners of this exact name.

        Returns:
            The runners.
        """
        with self.lock:
            return [
                r
                for r in sorted(self.runners.values(), key=lambda r: r.id)
                if r.scope == scope and (name is None or r.name == name)
            ]

    def get_runner(self, scope: Scope, runner_id: int) -> Runner:
        """A runner of a scope.

        Args:
            scope: the scope.
            runner_id: its id.

        Returns:
            The runner.

        Raises:
            StateError: 404 if there is none.
        """
        with self.lock:
            runner = self.runners.get(runner_id)
            if runner is None or runner.scope != scope:
                raise StateError(404, "Not Found")
            return runner

    def delete_runner(self, scope: Scope, runner_id: int) -> None:
        """Delete an idle runner.

        Args:
            scope: the scope.
            runner_id: its id.

        Raises:
            StateError: 404 if unknown, 422 if it is running a job.
        """
        with self.lock:
            runner = self.get_runner(scope, runner_id)
            if runner.busy:
                raise StateError(422, f"Bad request - Runner {runner.name} is still running a job")
            del self.runners[runner_id]
            self.changed.notify_all()

    def runner_by_credential(self, credential: str) -> Runner:
        """The runner holding a credential.

        Args:
            credential: the runner credential.

        Returns:
            The runner.

        Raises:
            StateError: 401 if no runner has it (e.g. it was deleted).
        """
        with self.lock:
            for runner in self.runners.values():
                if secrets.compare_digest(runner.credential, credential):
                    return runner
            raise StateError(401, "Runner credential not recognized (runner deleted?)")

    def touch(self, runner: Runner, version: str | None = None, arch: str | None = None) -> None:
        """Record that a runner has been heard from.

        Args:
            runner: the runner.
            version: runner app version it reports.
            arch: architecture it reports.
        """
        with self.lock:
            runner.last_seen = time.time()
            if version:
                runner.version = version
            if arch and arch != runner.arch:
                for label in runner.labels:
                    if label.type == "read-only" and label.name.lower() == runner.arch:
                        label.name = arch
                        label.id = self._label(arch, True).id
                runner.arch = arch
