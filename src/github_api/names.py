"""Untrusted repository names checked against GitHub's rules and against what a unit serves.

A repository name that reaches a GitHub URL from something a job or a queue wrote (a runner's
``pre-job-metrics.json``, a reactive job message) must be a name GitHub could have given, and
must belong to the repository or organisation the unit serves: the unit's token is used for the
call, so a job must not be able to aim it anywhere else. Pure: no I/O.

GitHub's rules (as enforced here):

* owner (user or organisation): 1 to 39 of ``[A-Za-z0-9-]``, not starting with ``-``;
* repository: 1 to 100 of ``[A-Za-z0-9._-]``, neither ``.`` nor ``..``.

Names compare case-insensitively, as GitHub resolves them.
"""

from __future__ import annotations

import re

from github_api.types import GitHubOrg, GitHubPath, GitHubRepo

OWNER_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}")
REPO_NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,100}")


def is_owner_name(name: str) -> bool:
    """Return whether ``name`` is a user or organisation name GitHub allows.

    Args:
        name: The untrusted name.
    """
    return OWNER_PATTERN.fullmatch(name) is not None


def is_repo_name(name: str) -> bool:
    """Return whether ``name`` is a repository name GitHub allows (not ``.`` or ``..``).

    Args:
        name: The untrusted name.
    """
    return REPO_NAME_PATTERN.fullmatch(name) is not None and name not in (".", "..")


def parse_repository(text: str) -> GitHubRepo:
    """Parse an untrusted ``owner/repo`` strictly.

    Args:
        text: The repository, e.g. ``$GITHUB_REPOSITORY`` as a runner reported it.

    Returns:
        The repository.

    Raises:
        ValueError: If it is not exactly ``owner/repo`` with names GitHub allows.
    """
    owner, sep, repo = text.partition("/")
    if not sep or not is_owner_name(owner) or not is_repo_name(repo):
        raise ValueError(f"{text[:240]!r} is not owner/repo with names GitHub allows")
    return GitHubRepo(owner=owner, repo=repo)


def serves(served: GitHubPath, repo: GitHubRepo) -> bool:
    """Return whether ``repo`` is the served repository, or belongs to the served organisation.

    Args:
        served: The repository or organisation the unit serves (its ``path`` option).
        repo: The repository asked about.
    """
    if isinstance(served, GitHubOrg):
        return repo.owner.lower() == served.org.lower()
    return (repo.owner.lower(), repo.repo.lower()) == (served.owner.lower(), served.repo.lower())
