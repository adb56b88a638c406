"""Shared fixtures: a small synthetic economy, a loaded warehouse, the shared real data."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, what: str) -> None:
    """Skip when something a test needs is missing; in CI (CI=true) fail instead."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI needs {what}, but it is missing", pytrace=False)
    pytest.skip(f"needs {what}")


@pytest.fixture(scope="session")
def nhse_file() -> Path:
    """NHS England's 2024-25 practice weighted populations, as shipped in the package."""
    path = ROOT / "src" / "pbc" / "reference" / "nhse" / "2024_2025.csv.gz"
    assert path.exists(), f"{path}: the packaged NHS England file is missing"
    return path


@pytest.fixture(scope="session")
def spark_con() -> Iterator[object]:
    """One Spark session (local[2], its JVM started once) for every Spark parity test, as
    an Ibis pyspark backend; pbc's own :func:`pbc.warehouse.spark.spark_session` gets the
    same session. Skipped without pyspark, except in CI (CI=true), where it fails."""
    try:
        import ibis
        from pyspark.sql import SparkSession
    except ImportError:
        require(False, "pyspark (pip install 'pbc[spark]')")
        raise
    spark = (SparkSession.builder.master("local[2]").appName("pbc-parity")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", "2")
             .config("spark.sql.session.timeZone", "UTC")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    yield ibis.pyspark.connect(spark)
    spark.stop()


POSTGRES_SOCKET = os.environ.get("PBC_TEST_POSTGRES_HOST", "/var/run/postgresql")


def _postgres_admin_url() -> str:
    return f"postgresql+psycopg:///postgres?host={POSTGRES_SOCKET}"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """URL of a running PostgreSQL server (started by .ci/run in CI)."""
    try:
        import psycopg

        with psycopg.connect(dbname="postgres", host=POSTGRES_SOCKET, connect_timeout=3):
            pass
        ok = True
    except Exception:
        ok = False
    require(ok, f"a PostgreSQL server on {POSTGRES_SOCKET} (pg_ctlcluster 15 main start)")
    return _postgres_admin_url()


@pytest.fixture
def postgres_url(postgres_server: str):
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import uuid

    import psycopg

    name = f"pbc_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dbname="postgres", host=POSTGRES_SOCKET, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    yield f"postgresql+psycopg:///{name}?host={POSTGRES_SOCKET}"
    with psycopg.connect(dbname="postgres", host=POSTGRES_SOCKET, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def decision_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty decision-store URL: SQLite in the test's folder, then PostgreSQL
    (the decision store's tests run on both engines; CI starts PostgreSQL)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'decisions.sqlite'}"
    return str(request.getfixturevalue("postgres_url"))


DEMO_POLICY = (Path(__file__).resolve().parents[1] / "src" / "pbc" / "reference" / "budgets"
               / "demo_policy.toml")


def budgeted_economy(base: Path, *, practices: int, seed: int, years: int, start_year: int,
                     budget_year: str = "2025-26", extra_policy: str = "",
                     before_load: Callable[[Path], None] | None = None) -> object:
    """A small synthetic economy synthesised, loaded and priced in ``base``, with budgets
    for ``budget_year`` set by the demo policy (plus ``extra_policy``); the Warehouse.
    ``before_load`` may change the synthesised files (its argument is their folder)."""
    from pbc.services.budgets import set_indicative_budgets
    from pbc.services.pricing import run_pricing
    from pbc.services.principal import Principal
    from pbc.synth import SynthConfig, generate
    from pbc.warehouse import Warehouse
    from pbc.warehouse.load import load

    generate(SynthConfig(practices=practices, groups=2, local_authorities=2, seed=seed,
                         years=years, start_year=start_year), base / "in")
    if before_load is not None:
        before_load(base / "in")
    wh = Warehouse(base / "wh")
    load(base / "in", wh)
    run_pricing(wh)
    policy = base / "policy.toml"
    policy.write_text(DEMO_POLICY.read_text(encoding="utf-8").replace(
        'financial_year = "2026-27"', f'financial_year = "{budget_year}"') + extra_policy,
        encoding="utf-8")
    set_indicative_budgets(wh, policy, Principal("analyst", "commissioner", "Q99"),
                           statements=base / "statements")
    return wh


@pytest.fixture(scope="session")
def web_economy_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small economy for the web tests, built once per test process: 4 practices, two
    years (2024-25, 2025-26), budgets for 2025-26 (the demo policy), risk scores. Use
    :func:`copy_economy` to get a private copy to change (users, cases, decisions)."""
    from pbc.services import risk
    from pbc.services.principal import Principal

    base = tmp_path_factory.mktemp("web-template")
    wh = budgeted_economy(base, practices=4, seed=21, years=2, start_year=2024)
    commissioner = Principal("analyst", "commissioner", "Q99")
    risk.train(wh, commissioner)  # type: ignore[arg-type]
    risk.score(wh, commissioner)  # type: ignore[arg-type]
    return base


def copy_economy(template: Path, dest: Path) -> object:
    """A private copy of a template economy (warehouse, decision store, inputs); its
    Warehouse. Copying takes well under a second; building one takes a minute."""
    import shutil

    from pbc.warehouse import Warehouse

    shutil.copytree(template, dest, symlinks=True)
    return Warehouse(dest / "wh")


#: the suite's longest test files, longest first (measured with ``--durations``): run first,
#: so that on two workers (``make test``: ``--dist loadfile --no-loadscope-reorder``) the
#: long files overlap with each other and the short ones fill in at the end, instead of one
#: long file starting last while the other worker has nothing left to do
LONGEST_FIRST = (
    "test_engine_parity.py", "test_demo.py", "test_readme.py", "test_synth.py",
    "test_faults.py", "test_stage_parity.py", "test_web_browser.py",
    "test_pricing_properties.py", "test_deliveries.py", "test_money_chain.py",
    "test_monitoring_freeze.py", "test_evaluation.py", "test_web_pages.py", "test_load.py",
    "test_risk_synth.py", "test_workbooks.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order the test files longest first (:data:`LONGEST_FIRST`), the rest after them in
    their usual order; the tests within a file keep their order."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
