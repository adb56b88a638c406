"""``pbc price``: price loaded activity at the national tariff and attribute it.

Reads the warehouse's activity, tariff and organisation tables as Ibis tables, builds
the pricing and attribution expressions (pure core: :mod:`pbc.pricing`,
:mod:`pbc.attribution`), runs them on the chosen engine and writes ``priced_activity``
(partitioned by financial year and month) and ``reconciliation`` rows for the ``price``
stage, in one warehouse transaction.

Engines: on DuckDB (the default) the rows stream from DuckDB into pyarrow's partitioned
Parquet writer; on Spark (``engine="spark"``, :mod:`pbc.warehouse.spark`) the warehouse
tables are read into Spark, the same expressions run there and Spark's writer writes the
files. Either way the written files are then read by DuckDB for the reconciliation and the
totals (one summary scan, and one of ``activity_id`` for duplicate keys), so both engines are
checked by the same code, against figures that do not come from the files: the rows (and
prescribing's money) of the source tables and the money priced before attribution (the
pricing expression summed on its own, on DuckDB). A run that does not reconcile
(:func:`pbc.attribution.check_reconciliation`) fails with a
:class:`~pbc.attribution.ReconciliationError` naming what is off, and nothing is committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import ibis

from pbc.warehouse import Warehouse, WarehouseError
from pbc.warehouse.store import PARTITION_COLUMNS, ROW_GROUP_ROWS
from pbc.warehouse.validate import lit

ACTIVITY_INPUTS = ("apc_spells", "op_attendances", "ae_attendances", "prescribing")

#: identifiers of ``priced_activity``: nearly one value per row, so no dictionary encoding
UNIQUE_COLUMNS = ("activity_id", "patient_id")
REFERENCE_INPUTS = (
    "providers", "practices", "groups", "commissioners", "practice_groups",
    "tariff_apc", "tariff_op", "tariff_ae",
)


@dataclass
class PricingReport:
    version: int
    reconciliation: list[dict[str, Any]]
    by_service_line: list[tuple[str, int, Decimal]]
    by_practice: list[tuple[str | None, int, Decimal]]


def _settings(warehouse: Warehouse, settings_file: Path | None) -> Any:
    from pbc.pricing.settings import TariffSettings, load_settings

    path = settings_file or warehouse.reference_file("tariff_settings.toml")
    return load_settings(path) if path is not None else TariffSettings()


def run_pricing(
    warehouse: Warehouse,
    *,
    settings_file: Path | None = None,
    tariff_workbook: Path | None = None,
    engine: str = "duckdb",
) -> PricingReport:
    """Price and attribute everything in the warehouse; replace ``priced_activity``."""
    from pbc.attribution import (
        attribute,
        check_reconciliation,
        duplicate_ids,
        reconcile_summary,
        summarise,
    )
    from pbc.pricing import price_activity

    if not warehouse.exists():
        raise WarehouseError(f"{warehouse.root}: no warehouse here yet (run pbc load first)")
    if engine not in ("duckdb", "spark"):
        raise WarehouseError(f"unknown engine {engine!r}: use duckdb or spark")
    settings = _settings(warehouse, settings_file)
    annex_a = None
    if tariff_workbook is not None:
        from pbc.pricing.tariff import read_annex_a

        annex_a = read_annex_a(tariff_workbook)
    with warehouse.begin("price") as tx:
        missing = [t for t in ("providers", "tariff_apc", "tariff_op", "tariff_ae")
                   if not tx.has_table(t) and not (annex_a and t in annex_a)]
        if missing:
            raise WarehouseError(
                f"cannot price: the warehouse has no {', '.join(missing)} (load them first)")
        con = tx.connect()
        backend = ibis.duckdb.from_connection(con)
        # the pricing expression on DuckDB, compiled once into a view: the money before
        # attribution is summed from it, and (DuckDB engine) attribution reads it
        tables = _inputs(tx, backend.table, annex_a, lambda _, t: ibis.memtable(t))
        _create_view(backend, "priced_before", price_activity(tables, settings))
        before = backend.table("priced_before")
        if engine == "spark":
            _write_on_spark(tx, settings, annex_a)
        else:
            attributed = attribute(before, tables)
            # a view (not raw SQL) so that Ibis registers any in-memory tables it uses
            _create_view(backend, "priced_activity_new", attributed)
            # DuckDB computes, streaming record batches; pyarrow's dataset writer partitions
            # and writes them (faster than DuckDB's partitioned COPY for this wide output)
            with con.sql("SELECT * FROM priced_activity_new").to_arrow_reader(
                    batch_size=ROW_GROUP_ROWS) as batches:
                tx.write_batches("priced_activity", batches, file_prefix="priced",
                                 partition_by=PARTITION_COLUMNS, replace=True,
                                 meta={"kind": "output"}, unique_columns=UNIQUE_COLUMNS)
        con.execute(f"CREATE OR REPLACE VIEW priced_activity AS SELECT * FROM read_parquet("
                    f"{lit(tx.glob('priced_activity'))}, union_by_name = true)")
        # the written files are read once for the summary: every total below adds it up
        written = backend.table("priced_activity")
        backend.create_table("price_summary", summarise(written), temp=True)
        summary = backend.table("price_summary")
        rows = reconcile_summary(summary, tables, before, duplicate_ids(written))
        check_reconciliation(rows)  # raises: the transaction is rolled back
        tx.drop_files("reconciliation", "r-price-")
        _write_reconciliation(tx, con, rows)
        by_line = con.execute(
            "SELECT service_line, sum(n)::BIGINT, coalesce(sum(money), 0) FROM price_summary "
            "GROUP BY 1 ORDER BY 3 DESC").fetchall()
        by_practice = con.execute(
            "SELECT practice_code, sum(n)::BIGINT, coalesce(sum(money), 0) FROM price_summary "
            "WHERE attributed GROUP BY 1 ORDER BY 3 DESC").fetchall()
        con.close()
        version = tx.base_version + 1
    return PricingReport(version, rows, by_line, by_practice)


def _inputs(tx: Any, table: Callable[[str], Any], annex_a: dict[str, Any] | None,
            annex_table: Callable[[str, Any], Any]) -> dict[str, Any]:
    """The pricing inputs as tables of one backend: ``table(name)`` gives a warehouse
    table, ``annex_table(name, arrow_table)`` an Annex A tariff table that replaces one."""
    tables = {name: table(name) for name in ACTIVITY_INPUTS + REFERENCE_INPUTS
              if tx.has_table(name)}
    for name, frame in (annex_a or {}).items():
        tables[name] = annex_table(name, frame)
    return tables


def _write_on_spark(tx: Any, settings: Any, annex_a: dict[str, Any] | None) -> None:
    """Price and attribute on Spark (the same expressions), written by Spark's writer."""
    from pbc.attribution import attribute
    from pbc.pricing import price_activity
    from pbc.warehouse import spark

    session = spark.spark_session()
    backend = ibis.pyspark.connect(session)
    run = uuid.uuid4().hex[:8]

    def table(name: str) -> Any:
        view = f"pbc_{run}_{name}"
        spark.read_table(session, tx.table_dir(name)).createOrReplaceTempView(view)
        return backend.table(view)

    def annex_table(name: str, frame: Any) -> Any:  # Spark reads Arrow tables as they are
        view = f"pbc_{run}_annex_{name}"
        session.createDataFrame(frame).createOrReplaceTempView(view)
        return backend.table(view)

    try:
        tables = _inputs(tx, table, annex_a, annex_table)
        attributed = attribute(price_activity(tables, settings), tables)
        backend.create_view(f"pbc_{run}_priced", attributed, overwrite=True)
        tmp = tx.scratch()
        spark.write_partitioned(session.table(f"pbc_{run}_priced"), tmp,
                                file_prefix="priced", partition_by=PARTITION_COLUMNS)
    finally:  # the session outlives the run (one per process): leave no views behind
        for view in session.catalog.listTables():
            if view.isTemporary and view.name.startswith(f"pbc_{run}_"):
                session.catalog.dropTempView(view.name)
    tx.adopt("priced_activity", tmp, replace=True, meta={"kind": "output"})


def _create_view(backend: Any, name: str, expr: Any) -> None:
    """``backend.create_view``, compiled without Ibis's select fusing.

    Fusing nested projections is an optimisation of the SQL text only (DuckDB merges them
    itself; the result is the same); for the pricing expression it takes a third of the
    compile time. The option is Ibis-wide, so it is put back at once.
    """
    fuse = ibis.options.sql.fuse_selects
    ibis.options.sql.fuse_selects = False
    try:
        backend.create_view(name, expr, overwrite=True)
    finally:
        ibis.options.sql.fuse_selects = fuse


def _write_reconciliation(tx: Any, con: Any, rows: list[dict[str, Any]]) -> None:
    """The ``reconciliation`` rows of the price stage: rows in (the source table's), rows
    priced (accepted) and unpriced (quarantined: kept, with a reason), money in (before
    attribution; prescribing: the source's ``actual_cost``), money attributed (out) and
    unattributed. Typed in Arrow, so money never passes through a float."""
    import pyarrow as pa

    money = pa.decimal128(38, 2)
    frame = pa.table({
        "source_table": pa.array([r["source_table"] for r in rows], pa.string()),
        "rows_in": pa.array([r["rows_in"] for r in rows], pa.int64()),
        "rows_priced": pa.array([r["rows_priced"] for r in rows], pa.int64()),
        "rows_unpriced": pa.array([r["rows_unpriced"] for r in rows], pa.int64()),
        "money_in": pa.array([r["money_in"] for r in rows], money),
        "money_attributed": pa.array([r["money_attributed"] for r in rows], money),
        "money_unattributed": pa.array([r["money_unattributed"] for r in rows], money),
    })
    con.register("price_rec", frame)
    tx.write(con, "reconciliation", """
        SELECT 'price' AS stage, source_table, 'priced_activity' AS source_file,
               rows_in, rows_priced AS rows_accepted, rows_unpriced AS rows_quarantined,
               CAST(money_in AS DECIMAL(18,2)) AS money_in,
               CAST(money_attributed AS DECIMAL(18,2)) AS money_out,
               CAST(money_unattributed AS DECIMAL(18,2)) AS money_unattributed,
               current_localtimestamp() AS recorded_at
        FROM price_rec""", file_prefix="r-price", meta={"kind": "output"})
