"""Constants and helpers shared by the sandbox tests."""

from __future__ import annotations

ADMIN_TOKEN = "admin-token"
RO_TOKEN = "ro-token"
TOTALS = {"validated": 0, "skipped": 0}
