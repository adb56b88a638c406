"""Settings from the environment (one place, documented in the README)."""

from __future__ import annotations

import os

#: DuckDB memory limit for pbc's connections; beyond it DuckDB spills to disk, so memory
#: stays bounded at any scale (``PBC_MEMORY_LIMIT``, e.g. ``8GB``).
DEFAULT_MEMORY_LIMIT = "4GB"


def memory_limit() -> str:
    return os.environ.get("PBC_MEMORY_LIMIT", DEFAULT_MEMORY_LIMIT)


#: Spark master for ``--engine spark`` (``PBC_SPARK_MASTER``): ``local[*]`` runs Spark in
#: this process's JVM on every core; a cluster URL (``spark://host:7077``) runs it there.
DEFAULT_SPARK_MASTER = "local[*]"
#: memory of the Spark driver JVM (``PBC_SPARK_DRIVER_MEMORY``), set when it starts
DEFAULT_SPARK_DRIVER_MEMORY = "4g"


def spark_master() -> str:
    return os.environ.get("PBC_SPARK_MASTER", DEFAULT_SPARK_MASTER)


def spark_driver_memory() -> str:
    return os.environ.get("PBC_SPARK_DRIVER_MEMORY", DEFAULT_SPARK_DRIVER_MEMORY)


def spark_verbose() -> bool:
    """Show Spark's own log (start-up notices and warnings): ``PBC_SPARK_VERBOSE=1`` or
    ``pbc price -v``. Off by default: only Spark's errors are printed."""
    return os.environ.get("PBC_SPARK_VERBOSE", "") not in ("", "0")


def database_url() -> str | None:
    """The decision store's database (``PBC_DATABASE_URL``, e.g.
    ``postgresql+psycopg://host/pbc``); None: a SQLite file beside the warehouse."""
    return os.environ.get("PBC_DATABASE_URL") or None
