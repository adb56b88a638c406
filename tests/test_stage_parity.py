"""One expression, two engines, for the analytic stages after pricing: the indicators'
numerators and denominators (``pbc benchmark --engine spark``) and the case-finding features
(``pbc risk train/score --engine spark``), the budgets' inputs (``pbc budgets set --engine
spark``) and the monitoring position (``pbc monitor --engine spark``) give the same rows on
DuckDB and on Spark.

Exact everywhere (rows, counts, money summed to the penny before it becomes a float, the
features and the risk scores), except the float columns of a benchmark that derive from a
population: person-years are fractions of a year (days registered / days in the year)
summed in whatever order each engine's aggregation takes, and floating-point addition is
not associative, so those agree to a relative 1e-12 (measured: the last digit or two).

One small synthetic economy (3 practices, two years, priced on DuckDB) and the one Spark
session of every parity test (``spark_con`` in conftest.py). Skipped without pyspark, except
in CI (CI=true), where a missing pyspark fails."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from pbc.services import risk
from pbc.services.benchmarking import benchmark_all
from pbc.services.principal import parse_principal
from pbc.warehouse import Warehouse

pytestmark = [
    pytest.mark.spark,
    # pyspark 4.0's toPandas passes pandas 3's deprecated copy keyword
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:DeprecationWarning"),
    # py4j (Spark's Java gateway) leaves its client sockets to the garbage collector
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"),
]

#: the indicators compared: readmissions (continuous spells, windows, argmin: the hardest
#: expression) and spend per weighted patient (money, the weighted population)
INDICATORS = ["emergency_readmissions_30d", "spend_non_elective_per_weighted_patient"]
YEAR = "2024-25"


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory, spark_con: object) -> Warehouse:
    from pbc.services.pricing import run_pricing
    from pbc.synth import SynthConfig, generate
    from pbc.warehouse.load import load

    root = tmp_path_factory.mktemp("stage-parity")
    generate(SynthConfig(practices=3, groups=2, local_authorities=1, seed=5, years=2,
                         start_year=2024, list_scale=0.05), root / "in")
    warehouse = Warehouse(root / "wh")
    load(root / "in", warehouse)
    run_pricing(warehouse)
    return warehouse


def _same_frames(duck: pd.DataFrame, spark: pd.DataFrame, *, exact: tuple[str, ...],
                 what: str) -> None:
    """Same columns, types and rows; every column exact but the floats derived from a
    population (relative 1e-12: see the module's docstring); ``exact`` floats exact."""
    assert list(spark.columns) == list(duck.columns), what
    assert spark.dtypes.to_dict() == duck.dtypes.to_dict(), what
    assert len(spark) == len(duck) > 0, what
    for col in duck.columns:
        d, s = duck[col], spark[col]
        if col in exact or not pd.api.types.is_float_dtype(d):
            assert d.isna().tolist() == s.isna().tolist(), (what, col)
            assert d.dropna().tolist() == s.dropna().tolist(), (what, col)
        else:
            np.testing.assert_allclose(s.to_numpy(float), d.to_numpy(float), rtol=1e-12,
                                       atol=0, equal_nan=True, err_msg=f"{what}: {col}")


def test_benchmark_on_spark_gives_the_duckdb_tables(wh: Warehouse) -> None:
    duck = benchmark_all(wh, INDICATORS, financial_year=YEAR, monthly=True)
    spark = benchmark_all(wh, INDICATORS, financial_year=YEAR, monthly=True, engine="spark")
    for d, s in zip(duck, spark, strict=True):
        assert d.indicator.id == s.indicator.id
        # numerators are counts, days or pounds summed exactly: identical on both engines
        _same_frames(d.table, s.table, exact=("numerator",), what=f"{d.indicator.id} table")
        assert d.series is not None and s.series is not None
        _same_frames(d.series, s.series, exact=("numerator",),
                     what=f"{d.indicator.id} series")
        assert d.table.numerator.sum() > 0, d.indicator.id  # the data exercise it
    # money: the spend numerator is pounds and pence summed as decimals, then one float
    pounds = duck[1].table.numerator.to_numpy(float)
    assert np.array_equal(np.round(pounds, 2), pounds)


def test_risk_features_on_spark_are_identical(wh: Warehouse) -> None:
    ref = dt.date(2025, 4, 1)
    duck = risk._features(wh, ref, True)
    spark = risk._features(wh, ref, True, engine="spark")
    pd.testing.assert_frame_equal(spark, duck, check_exact=True)
    assert duck.emergency_12m.sum() > 0 and duck.prior_cost.sum() > 0
    assert duck.outcome_emergency.sum() > 0 and len(duck) > 500


def test_pbc_risk_score_engine_spark_writes_the_duckdb_scores(wh: Warehouse) -> None:
    from typer.testing import CliRunner

    from pbc.cli import app

    who = parse_principal("commissioner:Q99", user="test")
    risk.train(wh, who)
    run = CliRunner().invoke(app, ["risk", "score", "--warehouse", str(wh.root),
                                   "--engine", "spark"])
    assert run.exit_code == 0, run.output
    on_spark = wh.query("SELECT * FROM risk_scores ORDER BY patient_id")
    risk.score(wh, who)
    on_duck = wh.query("SELECT * FROM risk_scores ORDER BY patient_id")
    assert on_spark == on_duck and len(on_duck) > 500


def test_a_stage_spark_cannot_run_is_refused_not_run_on_duckdb(
        wh: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    """No silent fallback: an expression Spark (or Ibis's Spark compiler) cannot run stops
    the stage with its name, and DuckDB is never asked instead."""
    from ibis.common.exceptions import OperationNotDefinedError

    from pbc.warehouse.spark import SparkStageError, spark_session

    def cannot(*_: object, **__: object) -> object:
        raise OperationNotDefinedError("SomeOp")

    def no_duckdb(*_: object, **__: object) -> object:
        raise AssertionError("fell back to DuckDB")

    monkeypatch.setattr(risk, "build_features", cannot)
    monkeypatch.setattr(risk, "_tables", no_duckdb)
    with pytest.raises(SparkStageError, match=r"risk features: Spark cannot run this stage "
                       r"\(OperationNotDefinedError: .*SomeOp.*use --engine duckdb"):
        risk._features(wh, dt.date(2025, 4, 1), False, engine="spark")
    assert not [t.name for t in spark_session().catalog.listTables()
                if t.name.startswith("pbc_")]  # its views are gone
    with pytest.raises(risk.WarehouseError, match="unknown engine 'polars'"):
        risk._features(wh, dt.date(2025, 4, 1), False, engine="polars")


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns)).reset_index(drop=True) if len(
        frame.columns) else frame


def test_budget_inputs_on_spark_are_the_duckdb_inputs(wh: Warehouse) -> None:
    """``pbc budgets set --engine spark``: the prior year's spend, list sizes, costs by
    age-sex band, need indices and (person-based model) the register and each patient's
    costs read on Spark are the DuckDB ones; the need index (a mean of per-person scores)
    to a relative 1e-12, everything else exactly."""
    from pbc.services.budgets import _frames

    duck = _frames(wh, "2024-25", person_level=True)
    spark = _frames(wh, "2024-25", person_level=True, engine="spark")
    assert set(spark) == set(duck)
    for name in duck:
        d, s = _sorted(duck[name]), _sorted(spark[name])
        if d.empty:
            assert s.empty and list(s.columns) == list(d.columns), name
        else:  # only the need index is a float from a sum of floats
            _same_frames(d, s, exact=() if name == "need_index" else tuple(d.columns),
                         what=name)
    assert duck["spend"].spend_pence.sum() > 0 and len(duck["patients"]) > 500


@pytest.fixture(scope="module")
def budgeted(wh: Warehouse, tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    """Budgets for 2025-26 set on DuckDB (the demo policy) and on Spark: both versions."""
    from conftest import DEMO_POLICY
    from pbc.services.budgets import set_indicative_budgets
    from pbc.services.principal import Principal

    folder = tmp_path_factory.mktemp("parity-budgets")
    policy = folder / "policy.toml"
    # the demo policy's opt-out is of practice A81003: here A81002's, in this 3-practice
    # economy (so the position's opt-out exclusion runs on both engines too)
    policy.write_text(DEMO_POLICY.read_text(encoding="utf-8").replace(
        'financial_year = "2026-27"', 'financial_year = "2025-26"').replace(
        'code = "A81003"', 'code = "A81002"'), encoding="utf-8")
    who = Principal("analyst", "commissioner", "Q99")
    on_duck = set_indicative_budgets(wh, policy, who, statements=folder / "duck")
    on_spark = set_indicative_budgets(wh, policy, who, statements=folder / "spark",
                                      engine="spark")
    assert (on_duck.version, on_spark.version) == (1, 2)
    # money (integer pence) exact; the need-weighted populations to a relative 1e-12
    _same_frames(on_duck.result.frame, on_spark.result.frame, exact=(), what="budgets")
    assert on_duck.result.frame.budget.sum() > 0
    return wh


@pytest.mark.parametrize("level", ["practice", "group", "commissioner"])
def test_monitoring_position_on_spark_is_the_duckdb_position(budgeted: Warehouse,
                                                             level: str) -> None:
    """``pbc monitor --engine spark``: the same position, to the penny, at every level,
    with the ratio model's interval (floats from the same integer inputs: exact)."""
    from pbc.services.monitoring import monthly_position

    who = parse_principal("commissioner:Q99", user="test")
    for method in ("seasonal_run_rate", "ratio_model"):
        duck = monthly_position(budgeted, who, "2025-09", level=level,  # type: ignore[arg-type]
                                method=method, version=1)  # type: ignore[arg-type]
        spark = monthly_position(budgeted, who, "2025-09", level=level,  # type: ignore[arg-type]
                                 method=method, version=1,  # type: ignore[arg-type]
                                 engine="spark")
        pd.testing.assert_frame_equal(spark.frame, duck.frame, check_exact=True)
        assert duck.frame.spend_to_date.sum() > 0 and duck.has_prior_year
