"""A fake of the host's nftables (the network policy seam, ``juju.network_policy.NftPort``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from errors import SubprocessError
from juju.network_policy import Nft, NftPort


@dataclass
class FakeNft:
    """Records the scripts it is given; ``refuse`` makes the next runs fail as nft would."""

    scripts: list[str] = field(default_factory=list)
    refuse: str | None = None

    def run(self, script: str) -> None:
        """Record ``script``, or fail with ``refuse`` as nft's stderr."""
        if self.refuse is not None:
            raise SubprocessError(["nft", "-f", "-"], 1, self.refuse)
        self.scripts.append(script)


_FAKE: NftPort = FakeNft()
_REAL: NftPort = Nft()
