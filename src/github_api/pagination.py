"""Reading GitHub's paginated ``{total_count, <key>: [...]}`` lists, 100 items a request."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from github_api.parse import json_int, malformed
from github_api.retry import Budget, Retrier
from github_api.types import GitHubPath

PER_PAGE = 100
_T = TypeVar("_T")


def pages(
    retrier: Retrier,
    url: str,
    path: GitHubPath,
    budget: Budget,
    *,
    key: str,
    parse: Callable[[Any], _T],
) -> Iterator[list[_T]]:
    """Yield the parsed items of each page of a ``{total_count, <key>: [...]}`` list.

    Stops after a short page or once ``total_count`` items were read, so ``n`` items take
    ``ceil(n / 100)`` requests (one when there are none).

    Args:
        retrier: Sends each page request.
        url: Path under the API URL.
        path: The repository or organisation concerned.
        budget: The time budget of the public call.
        key: The name of the list in the answer.
        parse: Builds one item from its JSON.

    Yields:
        The items of one page.

    Raises:
        GithubApiError: If a page is malformed.
    """
    page = 1
    seen = 0
    while True:
        params = {"per_page": PER_PAGE, "page": page}
        data = retrier.request("GET", url, path, budget, params=params)
        try:
            total = json_int(data["total_count"])
            items = data[key]
            if not isinstance(items, list):
                raise TypeError(f"{key} is not a list")
            parsed = [parse(item) for item in items]
        except (KeyError, TypeError, ValueError) as exc:
            raise malformed(f"{key} list", exc) from exc
        yield parsed
        seen += len(parsed)
        if len(parsed) < PER_PAGE or seen >= total:
            return
        page += 1
