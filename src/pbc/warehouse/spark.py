"""The warehouse on Apache Spark (``--engine spark``, the ``pbc[spark]`` extra).

A stage that runs on Spark reads the warehouse's Parquet tables into Spark, builds the same
Ibis expressions as on DuckDB (``ibis.pyspark``), and writes its output with Spark's own
Parquet writer into the transaction's staging area. The files are then renamed into the
warehouse layout (hive directories, partition columns kept in the files,
``<prefix>-<n>.parquet``), so a table written by Spark is read exactly like one written by
DuckDB, and the warehouse transaction (a new version, swapped in atomically) is the same.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pbc.warehouse.store import KEY_PREFIX, PARQUET_COMPRESSION, WarehouseError, hive_from_keys

#: the engines an analytic stage runs on (``--engine``): the same Ibis expressions on each
ENGINES = ("duckdb", "spark")


def check_engine(engine: str) -> None:
    """WarehouseError unless ``engine`` is one of :data:`ENGINES`."""
    if engine not in ENGINES:
        raise WarehouseError(f"unknown engine {engine!r}: use duckdb or spark")


def spark_log() -> Path:
    """Where Spark's own output goes when pbc runs it quietly (this process's file)."""
    return Path(tempfile.gettempdir()) / f"pbc-spark-{os.getpid()}.log"


def spark_session() -> Any:
    """The Spark session (created once per process) from ``PBC_SPARK_*`` settings.

    Spark's JVM and log4j chatter (start-up notices, warnings, stack traces it recovers
    from) goes to :func:`spark_log` instead of the terminal, unless ``PBC_SPARK_VERBOSE``
    is set (``pbc price -v``): the JVM inherits standard error when it starts, so it is
    pointed at the log file for that moment only. An error that stops a stage still reaches
    the user as the stage's own error."""
    from pbc.config import spark_driver_memory, spark_master, spark_verbose

    try:
        from pyspark.sql import SparkSession
    except ImportError as e:
        raise WarehouseError(
            "--engine spark needs the Spark extra: pip install 'pbc[spark]' (and Java 17)"
        ) from e
    builder = (
        SparkSession.builder.master(spark_master()).appName("pbc")
        .config("spark.driver.memory", spark_driver_memory())
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        # exact decimal money: an overflow is an error, never a silent NULL
        .config("spark.sql.ansi.enabled", "true")
    )
    if spark_verbose():
        session = builder.getOrCreate()
    else:
        sys.stderr.flush()
        saved = os.dup(2)
        log = os.open(spark_log(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log, 2)
        try:
            session = builder.getOrCreate()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(log)
    session.sparkContext.setLogLevel("INFO" if spark_verbose() else "WARN")
    return session


def read_table(session: Any, files: Path | Sequence[Path]) -> Any:
    """A warehouse table's Parquet files as a Spark DataFrame.

    ``files`` is the list of the table's files (:meth:`Warehouse.table_files` lists a
    committed version's from its manifest), or a transaction's table folder, which holds
    only the files the transaction linked from the manifest or wrote. Columns come from
    the files (as DuckDB reads them with ``hive_partitioning = false``), merged by name
    across files written at different times.
    """
    if isinstance(files, Path):
        files = sorted(files.rglob("*.parquet"))
    if not files:
        raise WarehouseError("no Parquet files to read")
    return session.read.option("mergeSchema", "true").parquet(*(str(f) for f in files))


def write_partitioned(
    frame: Any, directory: Path, *, file_prefix: str, partition_by: tuple[str, ...]
) -> None:
    """Write a Spark DataFrame as the warehouse's hive-partitioned Parquet under ``directory``.

    Spark leaves partition columns out of its files; they are partitioned by copies (see
    :func:`pbc.warehouse.store.hive_from_keys`) so the columns stay in. Spark's bookkeeping
    files go; its part files are renamed ``<file_prefix>-<n>.parquet``. At least one file is
    written, empty if there are no rows.
    """
    from pyspark.sql import functions as F

    keys = [KEY_PREFIX + c for c in partition_by]
    keyed = frame.select("*", *(F.col(c).alias(k) for c, k in zip(partition_by, keys,
                                                                   strict=True)))
    codec = "lz4_raw" if PARQUET_COMPRESSION == "lz4" else PARQUET_COMPRESSION
    keyed.write.mode("errorifexists").option("compression", codec).partitionBy(*keys) \
        .parquet(str(directory))
    hive_from_keys(directory)
    for f in list(directory.rglob("*")):
        if f.is_file() and not (f.name.startswith("part-") and f.suffix == ".parquet"):
            f.unlink()  # _SUCCESS, .crc checksums
    parts = sorted(directory.rglob("part-*.parquet"))
    for i, f in enumerate(parts):
        f.rename(f.with_name(f"{file_prefix}-{i}.parquet"))
    if not parts:
        shutil.rmtree(directory, ignore_errors=True)
        frame.limit(0).coalesce(1).write.option("compression", codec).parquet(str(directory))
        for f in list(directory.iterdir()):
            if f.name.startswith("part-") and f.suffix == ".parquet":
                f.rename(directory / f"{file_prefix}-0.parquet")
            else:
                f.unlink()


class SparkStageError(WarehouseError):
    """A stage asked to run on Spark that Spark (or Ibis's Spark compiler) cannot run.

    pbc never runs such a stage on DuckDB instead: the user asked for Spark."""


@contextmanager
def spark_tables(warehouse: Any, names: Sequence[str], *, stage: str) -> Iterator[dict[str, Any]]:
    """The committed warehouse tables ``names`` (those it has) as Ibis tables on Spark.

    Each table is read from exactly the Parquet files its manifest lists
    (:meth:`~pbc.warehouse.Warehouse.table_files`) into a temporary view of the one Spark
    session; the views are dropped on the way out. An error from Spark or from Ibis's Spark
    compiler inside the block (an operation Spark cannot run) is raised as a
    :class:`SparkStageError` naming ``stage``: nothing falls back to DuckDB."""
    import ibis
    from ibis.common.exceptions import IbisError
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    session = spark_session()
    backend = ibis.pyspark.connect(session)
    prefix = f"pbc_{uuid.uuid4().hex[:8]}_"
    try:
        tables = {}
        for name in names:
            if warehouse.has_table(name):
                read_table(session, warehouse.table_files(name)) \
                    .createOrReplaceTempView(prefix + name)
                tables[name] = backend.table(prefix + name)
        yield tables
    except (IbisError, PySparkException, Py4JError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SparkStageError(
            f"{stage}: Spark cannot run this stage ({type(e).__name__}: {first}); pbc does "
            "not run it on DuckDB instead: use --engine duckdb to run it there") from e
    finally:  # the session outlives the stage (one per process): leave no views behind
        for view in session.catalog.listTables():
            if view.isTemporary and view.name.startswith(prefix):
                session.catalog.dropTempView(view.name)
