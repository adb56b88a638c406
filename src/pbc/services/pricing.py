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

import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import ibis

from pbc.attribution.reconcile import ReconciliationError
from pbc.warehouse import Warehouse, WarehouseError
from pbc.warehouse.store import PARTITION_COLUMNS, ROW_GROUP_ROWS, scan_sql
from pbc.warehouse.validate import lit

ACTIVITY_INPUTS = ("apc_spells", "op_attendances", "ae_attendances", "prescribing")

#: identifiers of ``priced_activity``: nearly one value per row, so no dictionary encoding
UNIQUE_COLUMNS = ("activity_id", "patient_id")
REFERENCE_INPUTS = (
    "providers", "practices", "groups", "commissioners", "practice_groups",
    "tariff_apc", "tariff_op", "tariff_ae",
)


#: the per-partition summary of ``priced_activity`` (rows and money per activity type,
#: service line, practice and attributed), partitioned like it: totals add these up
SUMMARY_TABLE = "price_summary"
#: the marginal rate's running totals kept with each priced APC month of a year with
#: contract baselines: per contract (commissioner, provider) and financial year, the
#: emergency spells the rule applies to and their value up to and including that month
#: (:func:`pbc.pricing.marginal_rate_totals` added up), partitioned like
#: ``priced_activity``: the next month is priced from them, not from the earlier months
TOTALS_TABLE = "marginal_rate_totals"
#: how the running totals are kept (a global input of every partition: a warehouse priced
#: before they were kept is priced again in full)
TOTALS_FORMAT = "per partition, cumulative (1)"
#: stage of the per-partition rows of ``reconciliation`` (``source_file`` names the partition)
PARTITION_STAGE = "price partition"


@dataclass
class PricingReport:
    version: int
    reconciliation: list[dict[str, Any]]
    by_service_line: list[tuple[str, int, Decimal]]
    by_practice: list[tuple[str | None, int, Decimal]]
    #: partitions (``financial_year=2025-26/month=1``) priced by this run, kept as they
    #: were, and removed (no activity any more)
    priced: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    #: why every partition was priced ("" when only changed ones were)
    full_reason: str = ""
    #: a new warehouse version was written (False: nothing had changed)
    changed: bool = True
    #: rows priced by this run (those of the priced partitions)
    rows_priced: int = 0

    def partitions_text(self) -> str:
        """Which partitions were priced and which kept, in words."""
        from pbc.warehouse.partitions import partition_label

        text = f"priced {partition_label(self.priced)}"
        if self.full_reason:
            text += f" (every partition: {self.full_reason})"
        text += f"; kept {partition_label(self.kept)}"
        if self.removed:
            text += f"; removed {partition_label(self.removed)} (no activity any more)"
        return text


def _settings(warehouse: Warehouse, settings_file: Path | None) -> Any:
    from pbc.pricing.settings import TariffSettings, load_settings

    path = settings_file or warehouse.reference_file("tariff_settings.toml")
    return load_settings(path) if path is not None else TariffSettings()


def _global_inputs(tx: Any, sums: dict[str, str], settings_file: Path | None,
                   tariff_workbook: Path | None, engine: str) -> dict[str, Any]:
    """What every partition's pricing reads, by content hash (for the partition
    fingerprints, :mod:`pbc.warehouse.partitions`): tariff settings, an Annex A workbook,
    the tariff and organisation tables, activity files outside any partition, pbc's
    version and the engine."""
    from pbc import __version__
    from pbc.warehouse.partitions import digest, table_partitions
    from pbc.warehouse.store import file_sha256

    settings = (file_sha256(settings_file) if settings_file is not None
                else sums.get("reference/tariff_settings.toml", "default"))
    out: dict[str, Any] = {
        "pbc version": __version__,
        "engine": engine,
        "tariff settings": settings,
        "tariff workbook": file_sha256(tariff_workbook) if tariff_workbook else None,
        "marginal rate running totals": TOTALS_FORMAT,
    }
    for name in REFERENCE_INPUTS:
        prefix = f"tables/{name}/"
        files = sorted((r, d) for r, d in sums.items() if r.startswith(prefix))
        out[f"table {name}"] = digest(files) if files else None
    for name in ACTIVITY_INPUTS:
        _, top = table_partitions(sums, name)
        out[f"{name} files outside partitions"] = digest(sorted(top.items())) if top else None
    return out


def run_pricing(
    warehouse: Warehouse,
    *,
    settings_file: Path | None = None,
    tariff_workbook: Path | None = None,
    engine: str = "duckdb",
    full: bool = False,
) -> PricingReport:
    """Price and attribute the warehouse's activity into ``priced_activity``: only the
    partitions (financial year and month) whose inputs changed since they were priced,
    or every partition when an input of all of them changed, with ``full``, or on Spark.

    Each partition's input fingerprint is kept with the output (the manifest entry of
    ``priced_activity``); a partition whose fingerprint is unchanged keeps its files as
    they are. The reconciliation holds per partition (``reconciliation`` rows of stage
    ``price partition``) and in total (stage ``price``), checked before anything is
    committed."""
    from pbc.attribution import (
        attribute,
        check_reconciliation,
        duplicate_ids,
        reconcile_partitions,
        reconcile_summary,
        summarise,
    )
    from pbc.attribution.reconcile import SOURCE_MONEY
    from pbc.pricing import price_activity
    from pbc.warehouse import partitions as parts

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
        sums: dict[str, str] = dict(tx.manifest.get("checksums") or {})
        activity = {name: parts.table_partitions(sums, name)[0] for name in ACTIVITY_INPUTS
                    if tx.has_table(name)}
        global_inputs = _global_inputs(tx, sums, settings_file, tariff_workbook, engine)
        # the marginal rate's running total runs through a contract's year in order of
        # discharge: with a baseline in a year, an APC month depends on the months before it
        mret_years = {b.financial_year for b in settings.emergency_marginal_rate.baseline}
        fingerprints = parts.partition_fingerprints(
            global_inputs, activity, {"apc_spells": mret_years})
        if not fingerprints:
            raise WarehouseError(
                "nothing to price: the warehouse's activity tables (apc_spells, "
                "op_attendances, ae_attendances, prescribing) hold no rows")
        entry = tx.manifest["tables"].get("priced_activity") or {}
        recorded = entry.get("inputs") if tx.has_table(SUMMARY_TABLE) else None
        plan = parts.plan(fingerprints, global_inputs, recorded,
                          full=full or engine == "spark")
        if engine == "spark" and not full:
            plan.reason = "engine spark prices every partition"
        con = tx.connect()
        backend = ibis.duckdb.from_connection(con)
        dups: list[dict[str, Any]] = []
        n_priced = 0
        if plan.dirty or plan.removed or plan.full:
            if plan.full:  # also an older pbc's files, whatever their layout
                for name in ("priced_activity", SUMMARY_TABLE, TOTALS_TABLE):
                    shutil.rmtree(tx.table_dir(name), ignore_errors=True)
                tx.drop_files("reconciliation", "r-pricepart-")
            for key in plan.dirty + plan.removed:
                for name in ("priced_activity", SUMMARY_TABLE, TOTALS_TABLE):
                    tx.drop_partition(name, key)
                tx.drop_files("reconciliation", _partition_prefix(key) + "-")
            if plan.dirty:
                dups, n_priced = _price_partitions(
                    tx, con, backend, plan.dirty, activity, mret_years, settings, annex_a,
                    engine, global_inputs,
                    price_activity, attribute, summarise, reconcile_partitions,
                    check_reconciliation, duplicate_ids)
            tx.manifest["tables"].setdefault("priced_activity", {"sources": {}})
            tx.manifest["tables"]["priced_activity"]["kind"] = "output"
            tx.manifest["tables"]["priced_activity"]["inputs"] = parts.record(
                global_inputs, fingerprints)
            tx.changed = True
        # the totals: the sources counted afresh, every partition's summary and money in
        all_sources = _inputs(tx, backend.table, None, lambda _, t: ibis.memtable(t))
        _refresh_view(con, tx, SUMMARY_TABLE)
        _refresh_view(con, tx, "reconciliation")
        summary = backend.table(SUMMARY_TABLE)
        rows = reconcile_summary(summary, all_sources, None, dups)
        money_in = dict(con.execute(
            "SELECT source_table, sum(money_in) FROM reconciliation WHERE stage = ? "
            "GROUP BY 1", [PARTITION_STAGE]).fetchall())
        for r in rows:
            if r["activity_type"] not in SOURCE_MONEY:
                r["money_in"] = Decimal(money_in.get(r["source_table"]) or 0)
        check_reconciliation(rows)  # raises: the transaction is rolled back
        if not tx.changed and _loaded_since_priced(tx.manifest):
            # nothing to price again, but the run is recorded (a freeze needs every load
            # priced: pbc.services.freeze.unpriced_loads)
            tx.changed = True
        if tx.changed:
            tx.drop_files("reconciliation", "r-price-")
            _write_reconciliation(tx, con, rows)
        by_line = con.execute(
            f"SELECT service_line, sum(n)::BIGINT, coalesce(sum(money), 0) FROM {SUMMARY_TABLE} "
            "GROUP BY 1 ORDER BY 3 DESC").fetchall()
        by_practice = con.execute(
            f"SELECT practice_code, sum(n)::BIGINT, coalesce(sum(money), 0) FROM {SUMMARY_TABLE} "
            "WHERE attributed GROUP BY 1 ORDER BY 3 DESC").fetchall()
        con.close()
        changed = tx.changed
        version = tx.base_version + (1 if changed else 0)
    return PricingReport(version, rows, by_line, by_practice, plan.dirty, plan.kept,
                         plan.removed, plan.reason, changed, n_priced)


def _loaded_since_priced(manifest: dict[str, Any]) -> bool:
    history = manifest.get("history", [])
    priced = max((int(h["version"]) for h in history if h["stage"] == "price"), default=0)
    return any(h["stage"] == "load" and int(h["version"]) > priced for h in history)


def _partition_prefix(key: str) -> str:
    """File prefix of a partition's ``reconciliation`` rows (``r-pricepart-2025-26-m01``)."""
    from pbc.warehouse.partitions import parse_partition

    year, month = parse_partition(key)
    return f"r-pricepart-{year}-m{month:02d}"


def _refresh_view(con: Any, tx: Any, name: str) -> None:
    con.execute(f'CREATE OR REPLACE VIEW "{name}" AS {scan_sql(tx.glob(name))}')


def _price_partitions(tx: Any, con: Any, backend: Any, dirty: list[str],
                      activity: dict[str, dict[str, dict[str, str]]], mret_years: set[str],
                      settings: Any, annex_a: dict[str, Any] | None, engine: str,
                      global_inputs: dict[str, Any], price_activity: Any,
                      attribute: Any, summarise: Any, reconcile_partitions: Any,
                      check_reconciliation: Any, duplicate_ids: Any
                      ) -> tuple[list[dict[str, Any]], int]:
    """Price the ``dirty`` partitions' activity, write their files, summaries and
    reconciliation rows (each partition checked); their duplicate keys, for the total,
    and their rows."""
    from pbc.services import compiled

    staging = tx.staging
    # the activity tables over the dirty partitions' files only (an empty table, with the
    # columns, where a table has none there)
    for name, by_part in activity.items():
        files = [staging / rel for key in dirty for rel in sorted(by_part.get(key, {}))]
        if files:
            con.execute(f'CREATE OR REPLACE VIEW "dirty_{name}" AS {scan_sql(files)}')
        else:
            first = sorted(tx.table_dir(name).rglob("*.parquet"))[:1]
            con.execute(f'CREATE OR REPLACE VIEW "dirty_{name}" AS '
                        f"{scan_sql(first)} LIMIT 0")

    # the marginal rate's running totals: a dirty APC month of a year with a baseline is
    # priced from the totals kept with the APC month before the year's first dirty one
    apc_parts = activity.get("apc_spells", {})
    running = _running_years(dirty, apc_parts, mret_years)
    opening = _opening_totals(tx, con, running) if running else None

    def table(name: str) -> Any:
        return backend.table(f"dirty_{name}" if name in activity else name)

    tables = _inputs(tx, table, annex_a, lambda _, t: ibis.memtable(t))
    # the pricing and attribution expressions on DuckDB, as views: the money before
    # attribution is summed from ``priced_before``, and (DuckDB engine) attribution reads
    # it. Their SQL is kept between runs under a key of what it is built from
    # (:mod:`pbc.services.compiled`): building and compiling them is the largest fixed cost
    builders = (price_activity, attribute)
    keep = compiled.cacheable(builders)
    k = compiled.key(
        {name: global_inputs.get(name) for name in ("tariff settings", "tariff workbook")},
        {**tables, **({"mret_opening": opening} if opening is not None else {})},
        builders, engine=engine, marginal_rate_value=bool(running))
    entry = compiled.load(tx.warehouse.root, k) if keep else None
    if entry is not None:
        compiled.create_views(con, entry)
    else:
        entry = compiled.compile_views(backend, {
            "priced_before": lambda: price_activity(
                tables, settings, marginal_rate_opening=opening,
                marginal_rate_value=bool(running)),
            "priced_activity_new": lambda: attribute(backend.table("priced_before"), tables),
        })
        if keep:
            compiled.save(tx.warehouse.root, k, entry)
    before = backend.table("priced_before")
    if engine == "spark":  # every partition (the plan is full on Spark)
        _write_on_spark(tx, settings, annex_a)
    else:
        # DuckDB computes, streaming record batches; pyarrow's dataset writer partitions
        # and writes them (faster than DuckDB's partitioned COPY for this wide output)
        with con.sql("SELECT * FROM priced_activity_new").to_arrow_reader(
                batch_size=ROW_GROUP_ROWS) as batches:
            tx.write_batches("priced_activity", batches, file_prefix="priced",
                             partition_by=PARTITION_COLUMNS,
                             meta={"kind": "output"}, unique_columns=UNIQUE_COLUMNS)
    # the written files of these partitions are read once for the summary
    new_files = [f for key in dirty
                 for f in sorted((tx.table_dir("priced_activity") / key).glob("*.parquet"))]
    top = sorted(tx.table_dir("priced_activity").glob("*.parquet"))  # no rows at all
    con.execute(f"CREATE OR REPLACE VIEW priced_new AS {scan_sql(new_files or top)}")
    written = backend.table("priced_new")
    backend.create_table("summary_new", summarise(written, PARTITION_COLUMNS), temp=True)
    summary = backend.table("summary_new")
    per_partition = reconcile_partitions(summary, tables, before, PARTITION_COLUMNS)
    dups: list[dict[str, Any]] = duplicate_ids(written)
    # these partitions together first (every fault named at once), then each on its own
    check_reconciliation(_add_up(per_partition.values(), dups))
    for (year, month), rows in per_partition.items():
        try:
            check_reconciliation(rows)
        except ReconciliationError as e:
            raise ReconciliationError(f"{year} month {month}: {e}") from e
    for (year, month), rows in per_partition.items():
        _write_reconciliation(tx, con, rows, stage=PARTITION_STAGE,
                              source_file=f"priced_activity/financial_year={year}/month={month}",
                              file_prefix=_partition_prefix(f"financial_year={year}/"
                                                            f"month={month}"))
    tx.write(con, SUMMARY_TABLE, "SELECT * FROM summary_new", file_prefix="summary",
             partition_by=PARTITION_COLUMNS, meta={"kind": "output"})
    if running:
        _write_totals(tx, con, running, opening is not None)
    rows = int(con.execute("SELECT coalesce(sum(n), 0) FROM summary_new").fetchall()[0][0])
    return dups, rows


def _running_years(dirty: list[str], apc_parts: dict[str, dict[str, str]],
                   mret_years: set[str]) -> dict[str, tuple[int | None, list[int]]]:
    """Per financial year with contract baselines and dirty APC months: the APC month
    whose kept running totals the year's pricing starts from (None: the year's first),
    and the dirty APC months (each gets its totals written).

    A month's fingerprint takes in every earlier APC month of its year
    (:func:`pbc.warehouse.partitions.partition_fingerprints`), so every APC month after a
    dirty one is dirty too; were one not, pbc would price it from stale totals, so it
    refuses."""
    from pbc.warehouse.partitions import parse_partition

    out: dict[str, tuple[int | None, list[int]]] = {}
    months_of: dict[str, list[int]] = {}
    for key in apc_parts:
        year, month = parse_partition(key)
        months_of.setdefault(year, []).append(month)
    dirty_of: dict[str, list[int]] = {}
    for key in dirty:
        year, month = parse_partition(key)
        if year in mret_years and key in apc_parts:
            dirty_of.setdefault(year, []).append(month)
    for year, months in sorted(dirty_of.items()):
        first = min(months)
        later = sorted(m for m in months_of[year] if m > first)
        if not set(later) <= set(months):
            raise WarehouseError(
                f"{year}: APC months {sorted(set(later) - set(months))} would be kept after "
                f"month {first} is priced again (their marginal rate starts from it)")
        before = [m for m in months_of[year] if m < first]
        out[year] = (max(before) if before else None, sorted(months))
    return out


def _opening_totals(tx: Any, con: Any, running: dict[str, tuple[int | None, list[int]]]
                    ) -> Any:
    """The running totals the dirty months of each year start from (those kept with the
    APC month before the year's first dirty one), as a DuckDB table ``mret_opening``; None
    when every year starts at its first month."""
    from pbc.warehouse.partitions import partition_key

    files = [f for year, (base, _) in sorted(running.items()) if base is not None
             for f in sorted((tx.table_dir(TOTALS_TABLE) / partition_key(year, base))
                             .glob("*.parquet"))]
    if not any(base is not None for base, _ in running.values()):
        return None
    # a month none of whose contracts had a spell the rule applies to kept no rows
    con.execute("CREATE OR REPLACE TEMP TABLE mret_opening (commissioner_code VARCHAR, "
                "provider_code VARCHAR, financial_year VARCHAR, spells_to_date BIGINT, "
                "value_to_date DECIMAL(18,2))")
    if files:
        con.execute(f"INSERT INTO mret_opening SELECT commissioner_code, provider_code, "
                    f"financial_year, spells_to_date, value_to_date FROM ({scan_sql(files)})")
    return ibis.duckdb.from_connection(con).table("mret_opening")


def _write_totals(tx: Any, con: Any, running: dict[str, tuple[int | None, list[int]]],
                  has_opening: bool) -> None:
    """Write the running totals of the dirty APC months of ``running``: per contract and
    year, the opening plus the months' own totals up to and including each month. The
    months' own totals are those of the view ``priced_before`` (the pricing expression,
    compiled once; :func:`pbc.pricing.marginal_rate_totals` gives the same)."""
    from pbc.pricing.mret import RUNNING_VALUE

    con.execute(f"""CREATE OR REPLACE TEMP TABLE mret_month AS
        SELECT commissioner_code, provider_code, financial_year, month,
               count({RUNNING_VALUE})::BIGINT AS spells,
               CAST(sum({RUNNING_VALUE}) AS DECIMAL(18,2)) AS value
        FROM priced_before WHERE {RUNNING_VALUE} IS NOT NULL GROUP BY ALL""")
    months = ", ".join(f"({lit(year)}, {m})" for year, (_, ms) in sorted(running.items())
                       for m in ms)
    opening = ("SELECT commissioner_code, provider_code, financial_year, 0 AS month, "
               "spells_to_date AS spells, value_to_date AS value FROM mret_opening UNION ALL "
               if has_opening else "")
    tx.write(con, TOTALS_TABLE, f"""
        WITH months(financial_year, month) AS (VALUES {months}),
        parts AS ({opening}SELECT commissioner_code, provider_code, financial_year, month,
                          spells, value FROM mret_month)
        SELECT p.commissioner_code, p.provider_code, m.financial_year, m.month::BIGINT AS month,
               sum(p.spells)::BIGINT AS spells_to_date,
               CAST(sum(p.value) AS DECIMAL(18,2)) AS value_to_date
        FROM months m JOIN parts p ON p.financial_year = m.financial_year
                                  AND p.month <= m.month
        GROUP BY ALL ORDER BY ALL""", file_prefix="totals", partition_by=PARTITION_COLUMNS,
             meta={"kind": "output"})


def _add_up(groups: Any, duplicates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Reconciliation rows of several partitions added up per activity type, with the
    duplicate keys found across them (:func:`pbc.attribution.duplicate_ids`)."""
    from pbc.attribution.reconcile import COLUMNS

    total: dict[str, dict[str, Any]] = {}
    for rows in groups:
        for r in rows:
            out = total.setdefault(r["activity_type"], {
                **{k: r[k] for k in ("activity_type", "source_table")},
                **{k: None for k in COLUMNS[2:]}})
            for k in COLUMNS[2:]:
                if k.startswith("duplicate"):
                    continue
                if r[k] is not None:
                    out[k] = r[k] if out[k] is None else out[k] + r[k]
    for r in total.values():
        for k in ("rows_priced", "rows_unpriced", "rows_off", "rows_reason_off"):
            r[k] = r[k] or 0
        r["duplicate_ids"], r["duplicate_example"] = 0, None
    for d in duplicates:
        r = total.setdefault(d["activity_type"], {
            "activity_type": d["activity_type"], "source_table": d["activity_type"],
            **{k: None for k in COLUMNS[2:]}, "rows_priced": 0, "rows_unpriced": 0,
            "rows_off": 0, "rows_reason_off": 0})
        r["duplicate_ids"] = int(d["ids"])
        r["duplicate_example"] = f"{d['example']} occurs {d['times']} times"
    return [total[k] for k in sorted(total)]


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


def _write_reconciliation(tx: Any, con: Any, rows: list[dict[str, Any]], *,
                          stage: str = "price", source_file: str = "priced_activity",
                          file_prefix: str = "r-price") -> None:
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
    tx.write(con, "reconciliation", f"""
        SELECT {lit(stage)} AS stage, source_table, {lit(source_file)} AS source_file,
               rows_in, rows_priced AS rows_accepted, rows_unpriced AS rows_quarantined,
               CAST(money_in AS DECIMAL(18,2)) AS money_in,
               CAST(money_attributed AS DECIMAL(18,2)) AS money_out,
               CAST(money_unattributed AS DECIMAL(18,2)) AS money_unattributed,
               current_localtimestamp() AS recorded_at
        FROM price_rec""", file_prefix=file_prefix, meta={"kind": "output"})
