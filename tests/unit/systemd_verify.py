"""`systemd-analyze verify` of rendered units, blind to the machine's own broken units.

verify also loads the units the checked ones depend on from the machine, and reports what it
finds wrong with those (Debian's OpenStack packages ship units whose ``After=`` names
themselves: "keystone.service: Dependency After=keystone.service is dropped."). Only what it
says about the checked units, or about no unit in particular, is a finding.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
_ABOUT_A_UNIT = re.compile(
    r"^(?P<unit>[\w@:.\\-]+\.(?:service|timer|socket|target|mount|slice)): "
)


def findings(stderr: str, checked: tuple[str, ...]) -> list[str]:
    """Return the lines of verify's output about the checked units or about no unit."""
    kept = []
    for line in stderr.splitlines():
        about = _ABOUT_A_UNIT.match(line)
        if about and about["unit"] not in checked and not any(c in line for c in checked):
            continue
        if line.strip():
            kept.append(line)
    return kept


def verify(*paths: Path, root: Path | None = None) -> tuple[int, list[str]]:
    """Verify unit files: (exit code, findings of stdout and stderr about them)."""
    assert SYSTEMD_ANALYZE is not None
    args = [SYSTEMD_ANALYZE, "verify", *([f"--root={root}"] if root else []), *map(str, paths)]
    result = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
    names = tuple(p.name for p in paths)
    return result.returncode, findings(result.stdout + result.stderr, names)
