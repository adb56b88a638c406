"""Settings from the environment (one place, documented in the README)."""

from __future__ import annotations

import os

#: DuckDB memory limit for pbc's connections; beyond it DuckDB spills to disk, so memory
#: stays bounded at any scale (``PBC_MEMORY_LIMIT``, e.g. ``8GB``).
DEFAULT_MEMORY_LIMIT = "4GB"


def memory_limit() -> str:
    return os.environ.get("PBC_MEMORY_LIMIT", DEFAULT_MEMORY_LIMIT)
