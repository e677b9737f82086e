"""``python -m observability serve``: the unit's /metrics endpoint (see exporter.py)."""

from __future__ import annotations

import sys

from observability.exporter import main

sys.exit(main())
