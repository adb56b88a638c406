"""One expression, two engines: pricing and attribution give identical rows and totals on
DuckDB and on Spark (ibis pyspark backend, local[2]). Skipped without pyspark, except in CI
(CI=true), where a missing pyspark fails. The Spark session is the one of every parity test
(``spark_con`` in conftest.py)."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from pbc.attribution import attribute, check_reconciliation, reconcile
from pbc.pricing import price_activity, settings_from_dict
from pricing_fixtures import PRACTICES, PROVIDERS, ae, economy, memtables, op, spell

pytestmark = [
    pytest.mark.spark,
    # pyspark 4.0's toPandas passes pandas 3's deprecated copy keyword
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:DeprecationWarning"),
    # py4j (Spark's Java gateway) leaves its client sockets to the garbage collector
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"),
]


def _data(n: int = 3000, seed: int = 7) -> dict[str, pa.Table]:
    rnd = random.Random(seed)
    practices = ["A81001", "A81002", "", "Z99999", None]
    provs = ["RTR", "RXX", "RTR", "NOPE"]
    # a quarter of the spells in 2024-25, a year without marginal rate baselines
    apc = [spell(f"S{i:05d}", los=rnd.choice([0, 0, 1, 2, 4, 11, 12, 30]),
                 admission_date=f"{rnd.choice([2024, 2025, 2025, 2025])}-"
                                f"{rnd.randint(4, 12):02d}-{rnd.randint(1, 28):02d}",
                 admission_method=rnd.choice(["11", "12", "21", "22", "2A", "31", "81"]),
                 patient_classification=rnd.choice("12345"),
                 hrg_code=rnd.choice(["DZ65K", "DZ65K", "HB12C", "XX99Z"]),
                 age_on_admission=rnd.randint(0, 99),
                 top_up_category=rnd.choice([None, None, "children", "spinal"]),
                 provider_code=rnd.choice(provs), practice_code=rnd.choice(practices),
                 commissioner_code=rnd.choice([None, "QHM"]))
           for i in range(n // 3)]
    ops = [op(f"O{i:05d}", treatment_function_code=rnd.choice(["110", "300", "999"]),
              first_attendance=rnd.choice("1234"), attended=rnd.random() > 0.1,
              hrg_code=rnd.choice([None, None, "HB12C"]), provider_code=rnd.choice(provs),
              practice_code=rnd.choice(practices),
              appointment_date=f"2025-{rnd.randint(4, 12):02d}-{rnd.randint(1, 28):02d}")
           for i in range(n // 3)]
    aes = [ae(f"A{i:05d}", department_type=rnd.choice("1234"),
              hrg_code=rnd.choice(["VB07Z", "VB11Z", "VB99Z"]), provider_code=rnd.choice(provs),
              practice_code=rnd.choice(practices))
           for i in range(n // 3)]
    presc = [{"practice_code": rnd.choice(practices[:4]), "year_month": f"2025-{m:02d}",
              "bnf_code": f"B{i}", "items": 1, "actual_cost": f"{rnd.randint(0, 99999) / 100}"}
             for i, m in enumerate(rnd.choices(range(4, 13), k=200))]
    groups = [{"practice_code": PRACTICES[0]["practice_code"], "group_code": "G02",
               "valid_from": "2025-10-01", "valid_to": None}]
    provider_rows = [{**PROVIDERS[0], "mff_payment_index": 1.123457}, PROVIDERS[1]]
    return economy(apc=apc, ops=ops, aes=aes, prescribing=presc, practice_groups=groups,
                   providers=provider_rows)


SETTINGS = settings_from_dict({
    "financial_year": "2025/26",
    "emergency_marginal_rate": {"rate": 0.3, "baseline": [
        {"commissioner_code": "QHM", "provider_code": "RTR", "baseline": 50000.0},
        {"commissioner_code": "QHM", "provider_code": "RXX", "baseline": 0.0}]},
    "outpatients": {"telephone_first_fraction": 0.5, "telephone_follow_up_fraction": 0.333333},
    "ae": {"department_type_fraction": {"3": 0.5, "4": 0.5}},
})


def test_duckdb_and_spark_agree_to_the_penny(spark_con) -> None:
    raw = _data()
    spark = spark_con.con if hasattr(spark_con, "con") else spark_con._session

    def spark_table(name: str, table: pa.Table):
        spark.createDataFrame(table).createOrReplaceTempView(f"parity_{name}")
        return spark_con.table(f"parity_{name}")

    duck_tables = memtables(raw)
    spark_tables = {k: spark_table(k, v) for k, v in raw.items()}

    def run(tables, execute):
        priced = price_activity(tables, SETTINGS)
        attributed = attribute(priced, tables)
        rows = execute(attributed.order_by("activity_type", "activity_id"))
        rec = reconcile(attributed, tables, priced=priced)  # run on the tables' engine
        return rows, rec

    d_rows, d_rec = run(duck_tables, lambda e: e.to_pyarrow())
    s_rows, s_rec = run(spark_tables, spark_con.to_pyarrow)
    assert d_rows.num_rows == sum(raw[k].num_rows for k in
                                  ("apc_spells", "op_attendances", "ae_attendances",
                                   "prescribing"))
    assert s_rows.schema == d_rows.schema
    for name in d_rows.column_names:
        assert s_rows[name].to_pylist() == d_rows[name].to_pylist(), name
    assert s_rec == d_rec
    check_reconciliation(d_rec)
    # the data exercise the rules that matter
    rules = " ".join(r or "" for r in d_rows["pricing_rule"].to_pylist())
    assert "marginal rate" in rules and "reduced short stay" in rules and "DNA" in rules
    assert "no marginal rate: no contract baseline for 2024-25" in rules
    assert any(d_rows["unpriced_reason"].to_pylist())


def test_pbc_price_engine_spark_writes_the_same_warehouse_table(spark_con, tmp_path) -> None:
    """``pbc price --engine spark``: read from the warehouse, priced on Spark, written by
    Spark's writer into a new warehouse version, identical to the DuckDB run's table."""
    from pbc.services.pricing import run_pricing
    from pbc.synth import SynthConfig, generate
    from pbc.warehouse import Warehouse
    from pbc.warehouse.load import load

    generate(SynthConfig(practices=3, groups=2, local_authorities=1, seed=5, years=1,
                         list_scale=0.1), tmp_path / "in")
    wh = Warehouse(tmp_path / "wh")
    load(tmp_path / "in", wh)
    duck = run_pricing(wh, engine="duckdb")
    con = wh.connect()
    duck_rows = con.sql("SELECT * FROM priced_activity").to_arrow_table()
    duck_types = con.execute("DESCRIBE priced_activity").fetchall()
    con.close()

    spark = run_pricing(wh, engine="spark")
    assert spark.version == duck.version + 1
    assert spark.reconciliation == duck.reconciliation
    assert spark.by_service_line == duck.by_service_line
    assert spark.by_practice == duck.by_practice
    files = [f for f in wh.table_dir("priced_activity").rglob("*") if f.is_file()]
    assert files and all(f.name.startswith("priced-") and f.suffix == ".parquet"
                         for f in files)
    assert {f.parent.parent.name.split("=")[0] for f in files} == {"financial_year"}
    assert {f.parent.name.split("=")[0] for f in files} == {"month"}
    con = wh.connect()
    con.register("duck", duck_rows)
    assert con.execute("DESCRIBE priced_activity").fetchall() == duck_types
    assert duck_rows.num_rows == sum(r["rows_in"] for r in duck.reconciliation) > 1000
    for a, b in (("priced_activity", "duck"), ("duck", "priced_activity")):
        assert con.execute(f"SELECT count(*) FROM (SELECT * FROM {a} EXCEPT ALL "
                           f"SELECT * FROM {b})").fetchall() == [(0,)]
    con.close()
    # priced from the Annex A workbook instead of the loaded tariff: the same on both
    book = tmp_path / "in" / "tariff_annex_a.xlsx"
    duck = run_pricing(wh, engine="duckdb", tariff_workbook=book)
    spark = run_pricing(wh, engine="spark", tariff_workbook=book)
    assert spark.reconciliation == duck.reconciliation
    assert spark.by_practice == duck.by_practice
    from pbc.warehouse.spark import spark_session

    assert not [t.name for t in spark_session().catalog.listTables() if t.name.startswith("pbc_")]


def test_spark_writer_keeps_partition_columns_and_writes_a_file_when_empty(spark_con,
                                                                             tmp_path) -> None:
    import pyarrow.parquet as pq

    from pbc.warehouse.spark import spark_session, write_partitioned

    session = spark_session()
    rows = [("a", "2025-26", 1), ("b", "2025-26", 2), ("c", "2026-27", 1)]
    frame = session.createDataFrame(rows, "id string, financial_year string, month bigint")
    write_partitioned(frame, tmp_path / "t", file_prefix="x",
                      partition_by=("financial_year", "month"))
    files = sorted((tmp_path / "t").rglob("*"))
    parquet = [f for f in files if f.is_file()]
    assert all(f.suffix == ".parquet" and f.name.startswith("x-") for f in parquet)
    assert {f.parent.relative_to(tmp_path / "t").as_posix() for f in parquet} == {
        "financial_year=2025-26/month=1", "financial_year=2025-26/month=2",
        "financial_year=2026-27/month=1"}
    got = sorted((r for f in parquet for r in pq.read_table(f).to_pylist()),
                 key=lambda r: r["id"])
    assert got == [{"id": i, "financial_year": fy, "month": m} for i, fy, m in rows]

    write_partitioned(frame.limit(0), tmp_path / "e", file_prefix="x",
                      partition_by=("financial_year", "month"))
    empty = [f for f in (tmp_path / "e").rglob("*") if f.is_file()]
    assert [f.name for f in empty] == ["x-0.parquet"]
    assert pq.read_schema(empty[0]).names == ["id", "financial_year", "month"]


def test_pbc_price_on_spark_is_quiet_unless_asked(tmp_path) -> None:
    """Spark's JVM and log4j chatter is kept out of the terminal unless asked for (``-v``)."""
    import os
    import subprocess
    import sys

    from pbc.synth import SynthConfig, generate
    from pbc.warehouse import Warehouse
    from pbc.warehouse.load import load

    generate(SynthConfig(practices=2, groups=1, local_authorities=1, seed=7, years=1,
                         list_scale=0.05), tmp_path / "in")
    load(tmp_path / "in", Warehouse(tmp_path / "wh"))
    env = {k: v for k, v in os.environ.items() if k != "PBC_SPARK_VERBOSE"}
    run = subprocess.run([sys.executable, "-m", "pbc.cli", "price", "--warehouse",
                          str(tmp_path / "wh"), "--engine", "spark"],
                         capture_output=True, text=True, env=env, timeout=600, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    for chatter in ("WARN", "log4j", "Setting default log level", "NativeCodeLoader"):
        assert chatter not in run.stderr + run.stdout, run.stderr[-2000:]
    loud = subprocess.run([sys.executable, "-m", "pbc.cli", "price", "--warehouse",
                           str(tmp_path / "wh"), "--engine", "spark", "-v"],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert loud.returncode == 0, loud.stderr[-2000:]
    assert "INFO" in loud.stderr or "WARN" in loud.stderr
