"""Monthly deliveries: ``pbc price`` re-prices only the partitions whose inputs changed.

A small economy (tests/delivery.py) is loaded and priced; then one more month of activity,
a revision of a month, and a new tariff are delivered, each priced incrementally. Each
time the priced partitions are the ones whose inputs changed, the other partitions' files
are the very same files (same inode, same SHA-256 in the manifest), and the result equals
a full re-price (``full=True``): the same rows, the same money to the penny, the same
reconciliation. The planning rule itself is a Hypothesis property.
"""

from __future__ import annotations

import os
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delivery import VALID, write_delivery, write_table
from pbc.services.pricing import run_pricing
from pbc.warehouse import Warehouse
from pbc.warehouse.load import load
from pbc.warehouse.partitions import (
    parse_partition,
    partition_fingerprints,
    partition_key,
    partition_label,
    plan,
    record,
)

M = partition_key  # partition_key("2025-26", 4) = "financial_year=2025-26/month=4"
FIRST = [M("2025-26", 1), M("2025-26", 2), M("2025-26", 3), M("2025-26", 9)]


def _priced_files(wh: Warehouse) -> dict[str, str]:
    return {rel: d for rel, d in wh.manifest()["checksums"].items()
            if rel.startswith("tables/priced_activity/")}


def _outputs(wh: Warehouse) -> dict[str, Any]:
    """Everything pricing writes, in a comparable form (recorded_at left out)."""
    return {
        "priced": sorted(wh.query("SELECT * FROM priced_activity"), key=repr),
        "summary": sorted(wh.query("SELECT * FROM price_summary"), key=repr),
        "reconciliation": sorted(wh.query(
            "SELECT * EXCLUDE (recorded_at) FROM reconciliation WHERE stage LIKE 'price%'"),
            key=repr),
        # the marginal rate's running totals kept with each APC month: stale ones differ
        "totals": sorted(wh.query("SELECT * FROM marginal_rate_totals"), key=repr),
    }


def _same_as_full(wh: Warehouse) -> None:
    """A full re-price gives exactly what the incremental runs left."""
    incremental = _outputs(wh)
    report = run_pricing(wh, full=True)
    assert report.full_reason == "--full asked for every partition"
    assert _outputs(wh) == incremental


def _totals(wh: Warehouse) -> list[tuple[Any, ...]]:
    return wh.query("SELECT financial_year, month, spells_to_date, value_to_date FROM "
                    "marginal_rate_totals WHERE commissioner_code = 'QHM' AND "
                    "provider_code = 'RTR' ORDER BY month")


def _spells(month: str, prefix: str) -> list[dict[str, str]]:
    return [dict(r, spell_id=f"{prefix}{r['spell_id']}", admission_date=f"{month}-01",
                 discharge_date=f"{month}-03") for r in VALID["apc_spells"]]


#: a marginal rate baseline for the one contract (QHM, RTR): May's emergency spells
#: (£19,101.80) stay under it, July's cross it, so July's prices depend on May's
MRET = """
[[emergency_marginal_rate.baseline]]
commissioner_code = "QHM"
provider_code = "RTR"
financial_year = "2025-26"
baseline = 20000
"""


@pytest.fixture(scope="module")
def priced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("incr")
    write_delivery(d / "d1")
    (d / "d1" / "tariff_settings.toml").write_text(MRET, encoding="utf-8")
    wh = Warehouse(d / "wh")
    load(d / "d1", wh)
    report = run_pricing(wh)
    assert report.priced == FIRST and report.kept == [] and report.full_reason
    return d


def test_nothing_changed_prices_nothing_and_writes_no_version(priced: Path) -> None:
    wh = Warehouse(priced / "wh")
    version = wh.manifest()["version"]
    report = run_pricing(wh)
    assert not report.changed and report.priced == [] and report.kept == FIRST
    assert wh.manifest()["version"] == version == report.version
    assert report.reconciliation and report.by_service_line  # the totals, from what is kept


def test_a_new_month_prices_that_month_only_and_equals_a_full_reprice(priced: Path) -> None:
    wh = Warehouse(priced / "wh")
    before = _priced_files(wh)
    write_table(priced / "d2", "apc_spells", _spells("2025-07", "N"))
    write_table(priced / "d2", "op_attendances", [
        dict(r, attendance_id=f"N{r['attendance_id']}", appointment_date="2025-07-20")
        for r in VALID["op_attendances"]])
    load(priced / "d2", wh)
    loaded = wh.current
    report = run_pricing(wh)
    assert report.priced == [M("2025-26", 4)] and report.kept == FIRST
    assert report.rows_priced == 15 and not report.full_reason
    assert "priced 2025-26 month 4; kept 2025-26 months 1-3, 9" in report.partitions_text()
    after = _priced_files(wh)
    # the kept partitions' files are the very same files (hard links, not rewritten)
    assert {r: d for r, d in after.items() if "month=4/" not in r} == before
    assert all(os.stat(wh.current / r).st_ino == os.stat(loaded / r).st_ino  # type: ignore[operator]
               for r in before)
    assert any("month=4/" in r for r in after)
    # July's spells are cut by the marginal rate: their running total starts from May's
    assert wh.query("SELECT count(*) FROM priced_activity WHERE month = 4 AND "
                    "marginal_rate_adjustment < 0")[0][0] > 0
    # ... kept with May (and now July): every spell is an emergency one of QHM's contract
    # with RTR, so the totals are the spells and their value before the cut, up to the month
    assert _totals(wh) == [
        ("2025-26", m, *wh.query(
            "SELECT count(*), sum(price - marginal_rate_adjustment) FROM priced_activity "
            f"WHERE activity_type = 'apc' AND month <= {m}")[0]) for m in (2, 4)]
    # the totals add up over every partition: 20 spells, 10 outpatients now
    rec = {r["source_table"]: r for r in report.reconciliation}
    assert rec["apc_spells"]["rows_in"] == 20 and rec["op_attendances"]["rows_in"] == 10
    for table in ("apc_spells", "op_attendances"):
        money = wh.query(f"SELECT sum(money_in), sum(money_out + money_unattributed) FROM "
                         f"reconciliation WHERE stage = 'price partition' AND source_table "
                         f"= '{table}'")[0]
        assert money[0] == money[1] == rec[table]["money_in"] > 0
    _same_as_full(wh)


def test_a_revised_month_prices_that_month_and_the_months_its_marginal_rate_feeds(
        priced: Path) -> None:
    wh = Warehouse(priced / "wh")
    spell = dict(VALID["apc_spells"][0], hrg_code="DZ65K", discharge_date="2025-05-30")
    write_table(priced / "d3" / "revisions", "apc_spells", [spell])
    money_before = wh.query("SELECT price FROM priced_activity WHERE activity_id = 'S1'")
    load(priced / "d3", wh)
    cut = wh.query("SELECT sum(marginal_rate_adjustment) FROM priced_activity")
    report = run_pricing(wh)
    # May is priced again, and July after it (its running total starts from May's); the
    # outpatients' June and A&E's December are kept
    assert report.priced == [M("2025-26", 2), M("2025-26", 4)] and not report.full_reason
    assert report.kept == [M("2025-26", 1), M("2025-26", 3), M("2025-26", 9)]
    assert wh.query("SELECT sum(marginal_rate_adjustment) FROM priced_activity") != cut
    # a longer stay: the revised spell is priced again (an excess bed day payment)
    assert wh.query("SELECT price FROM priced_activity WHERE activity_id = 'S1'") \
        != money_before
    _same_as_full(wh)


def test_a_new_month_is_priced_from_the_running_totals_kept_with_the_month_before(
        priced: Path, tmp_path: Path) -> None:
    """The totals kept with the last APC month are what August's marginal rate starts
    from: made stale
    (set to £19,000 in a version of their own, £1,000 under the baseline), August is cut
    by exactly what the rule gives from £19,000 (not from 0, nor from the true total); a
    full re-price, which reads no totals, puts it right."""
    import subprocess

    from pbc.services.pricing import TOTALS_TABLE

    def _august_cut(before: Decimal, value: Decimal) -> Decimal:
        """The rule (baseline £20,000, rate 30%) for spells worth ``value`` after
        ``before``: what is paid above the baseline, less the part above it."""
        x_before, x_after = (max(t - 20000, Decimal(0)) for t in (before, before + value))

        def paid(x: Decimal) -> Decimal:
            return (Decimal("0.3") * x).quantize(Decimal("0.01"), ROUND_HALF_UP)
        return paid(x_after) - paid(x_before) - (x_after - x_before)

    subprocess.run(["cp", "-a", str(priced / "wh"), str(tmp_path / "wh")], check=True)
    wh = Warehouse(tmp_path / "wh")
    last = _totals(wh)[-1][1]  # July (May when run on its own)
    with wh.begin("test: stale totals") as tx:
        con = tx.connect()
        con.execute("CREATE TEMP TABLE stale AS SELECT * REPLACE (19000::DECIMAL(18,2) AS "
                    f"value_to_date) FROM marginal_rate_totals WHERE month = {last}")
        tx.drop_partition(TOTALS_TABLE, M("2025-26", last))
        tx.write(con, TOTALS_TABLE, "SELECT * FROM stale", file_prefix="totals",
                 partition_by=("financial_year", "month"))
        con.close()
    write_table(tmp_path / "d7", "apc_spells", _spells("2025-08", "A"))
    load(tmp_path / "d7", wh)
    report = run_pricing(wh)
    assert report.priced == [M("2025-26", 5)]
    august = ("SELECT sum(price - marginal_rate_adjustment), sum(marginal_rate_adjustment) "
              "FROM priced_activity WHERE month = 5")
    value, cut = wh.query(august)[0]
    assert cut == _august_cut(Decimal(19000), value) != 0
    run_pricing(wh, full=True)
    before = wh.query("SELECT sum(price - marginal_rate_adjustment) FROM priced_activity "
                      "WHERE activity_type = 'apc' AND month < 5")[0][0]
    assert before != 19000
    assert wh.query(august)[0] == (value, _august_cut(before, value))



def test_a_tariff_change_prices_every_partition_and_says_why(priced: Path) -> None:
    wh = Warehouse(priced / "wh")
    tariff = [dict(r, non_elective_price="1900.00") for r in VALID["tariff_apc"]]
    write_table(priced / "d4", "tariff_apc", tariff)
    load(priced / "d4", wh)
    report = run_pricing(wh)
    assert report.kept == [] and sorted(report.priced) == sorted([*FIRST, M("2025-26", 4)])
    assert report.full_reason == "inputs of every partition changed: table tariff_apc"
    assert "every partition: inputs of every partition changed: table tariff_apc" in \
        report.partitions_text()


# ------------------------------------------------------------------ the planning rule
YEARS = ("2024-25", "2025-26")
TABLES = ("apc_spells", "op_attendances")


def _manifest_part(files: dict[tuple[str, str, int], str]) -> dict[str, dict[str, dict[str, str]]]:
    """Per table, per partition, its files (name -> content hash)."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for (table, year, month), content in files.items():
        key = M(year, month)
        out.setdefault(table, {}).setdefault(key, {})[f"tables/{table}/{key}/f.parquet"] = \
            content
    return out


file_sets = st.dictionaries(
    st.tuples(st.sampled_from(TABLES), st.sampled_from(YEARS), st.integers(1, 12)),
    st.sampled_from("abc"), max_size=12)


@settings(max_examples=200, deadline=None)
@given(old=file_sets, new=file_sets, settings_changed=st.booleans(),
       mret=st.sets(st.sampled_from(YEARS)))
def test_the_plan_prices_exactly_the_partitions_whose_inputs_changed(
        old: dict[tuple[str, str, int], str], new: dict[tuple[str, str, int], str],
        settings_changed: bool, mret: set[str]) -> None:
    """Against a direct statement of the rule: a partition is kept only when no input of
    every partition changed and the activity files it depends on (its own, and where it has
    APC rows and a marginal rate baseline in its year, the APC files of the earlier months
    of the year) are unchanged."""
    g_old = {"tariff settings": "x"}
    g_new = {"tariff settings": "y" if settings_changed else "x"}
    running = {"apc_spells": mret}
    fp_old = partition_fingerprints(g_old, _manifest_part(old), running)
    fp_new = partition_fingerprints(g_new, _manifest_part(new), running)
    p = plan(fp_new, g_new, record(g_old, fp_old))

    def depends(files: dict[tuple[str, str, int], str], key: str) -> dict[Any, str]:
        year, month = parse_partition(key)
        has_apc = ("apc_spells", year, month) in files
        return {k: v for k, v in files.items() if k[1] == year and (
            k[2] == month or (k[0] == "apc_spells" and year in mret and has_apc
                              and k[2] < month))}

    keys = sorted({M(y, m) for (_, y, m) in new})
    assert sorted(p.dirty + p.kept) == keys and not set(p.dirty) & set(p.kept)
    assert p.removed == sorted({M(y, m) for (_, y, m) in old} - set(keys))
    for key in keys:
        unchanged = (not settings_changed and key in fp_old
                     and depends(old, key) == depends(new, key))
        assert (key in p.kept) == unchanged, key
    assert p.full == settings_changed and (p.reason != "") == settings_changed
    assert plan(fp_new, g_new, record(g_new, fp_new)).dirty == []
    assert plan(fp_new, g_new, record(g_new, fp_new), full=True).dirty == keys


def test_partition_labels() -> None:
    keys = [M("2025-26", m) for m in (1, 2, 3, 5, 12)] + [M("2026-27", 1)]
    assert partition_label(keys) == "2025-26 months 1-3, 5, 12; 2026-27 month 1"
    assert partition_label([]) == "none"


def test_money_is_decimal_in_the_report(priced: Path) -> None:
    report = run_pricing(Warehouse(priced / "wh"))
    assert all(isinstance(r["money_in"], Decimal) for r in report.reconciliation)


# ------------------------------------------------------------------ pbc run, and a kill
def test_pbc_run_loads_a_new_month_and_prices_only_its_partitions(tmp_path: Path) -> None:
    import contextlib
    from collections.abc import Callable, Iterator

    from pbc.services.principal import Principal
    from pbc.services.run import run_pipeline

    @contextlib.contextmanager
    def no_bar(title: str) -> Iterator[Callable[[str, int, int], None]]:
        yield lambda step, done, total: None

    def run(said: list[str]) -> dict[str, str]:
        report = run_pipeline(
            Warehouse(tmp_path / "wh"), tmp_path / "out", input_dir=tmp_path / "in",
            until="price", principal=lambda _: Principal("analyst", "commissioner", "QHM"),
            progress=no_bar, say=said.append)
        return {s.stage: s.status for s in report.stages if s.stage in ("load", "price")}

    write_delivery(tmp_path / "in" / "2025-06")
    assert run([]) == {"load": "ran", "price": "ran"}
    write_table(tmp_path / "in" / "2025-07", "apc_spells", _spells("2025-07", "N"))
    said: list[str] = []
    assert run(said) == {"load": "ran", "price": "ran"}
    assert any("10 rows priced" in s and "priced 2025-26 month 4; kept 2025-26 months "
               "1-3, 9" in s for s in said), said


@pytest.mark.slow
def test_an_incremental_price_killed_leaves_the_previous_version(priced: Path,
                                                                 tmp_path: Path) -> None:
    """Killed after writing the new month's files (``PBC_TEST_KILL_AT=adopted``): the
    warehouse is on its previous version, every file as its manifest lists; run again,
    only that month is priced."""
    import subprocess
    import sys

    subprocess.run(["cp", "-a", str(priced / "wh"), str(tmp_path / "wh")], check=True)
    wh = Warehouse(tmp_path / "wh")
    write_table(tmp_path / "d5", "apc_spells", _spells("2025-08", "K"))
    load(tmp_path / "d5", wh)
    version = wh.manifest()["version"]
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src, "PBC_TEST_KILL_AT": "adopted"}
    done = subprocess.run([sys.executable, "-m", "pbc.cli", "price", "-w", str(wh.root)],
                          env=env, capture_output=True, check=False)
    assert done.returncode == 137
    assert wh.manifest()["version"] == version and wh.verify() == []
    report = run_pricing(wh)
    assert report.priced == [M("2025-26", 5)] and report.version == version + 1


def test_a_load_that_changes_no_input_of_pricing_is_still_recorded_as_priced(
        priced: Path) -> None:
    """Nothing to price again after a load of patients only, but the run writes a version
    (a freeze refuses while a load is not priced: pbc.services.freeze.unpriced_loads)."""
    from pbc.services.freeze import unpriced_loads

    wh = Warehouse(priced / "wh")
    patients = [dict(r, age=str(int(r["age"]) + 1)) for r in VALID["patients"]]
    write_table(priced / "d6", "patients", patients)
    load(priced / "d6", wh)
    assert unpriced_loads(wh.manifest())
    report = run_pricing(wh)
    assert report.priced == [] and report.changed
    assert unpriced_loads(wh.manifest()) == []


# ------------------------------------------------------------------ the compiled SQL kept
def test_the_compiled_sql_is_kept_and_a_run_from_it_equals_one_that_compiled(
        priced: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first run compiles the pricing and attribution expressions and keeps their SQL
    (with the contract baselines' in-memory table it names); the next run with the same
    inputs compiles nothing and writes exactly what the compiled run wrote."""
    import shutil
    import subprocess

    from pbc.services import compiled

    subprocess.run(["cp", "-a", str(priced / "wh"), str(tmp_path / "wh")], check=True)
    wh = Warehouse(tmp_path / "wh")
    shutil.rmtree(compiled.cache_dir(wh.root), ignore_errors=True)
    calls: list[int] = []
    compile_views = compiled.compile_views

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return compile_views(*args, **kwargs)

    monkeypatch.setattr(compiled, "compile_views", counted)
    run_pricing(wh, full=True)
    assert len(calls) == 1 and len(list(compiled.cache_dir(wh.root).glob("*.json"))) == 1
    fresh = _outputs(wh)
    run_pricing(wh, full=True)
    assert len(calls) == 1  # the kept SQL, not compiled again
    assert _outputs(wh) == fresh
    # an entry that cannot be read is compiled again, never half used
    for entry in compiled.cache_dir(wh.root).glob("*.json"):
        entry.write_text("{", encoding="utf-8")
    run_pricing(wh, full=True)
    assert len(calls) == 2 and _outputs(wh) == fresh


def test_the_key_of_the_compiled_sql_changes_with_what_the_sql_is_built_from() -> None:
    import ibis

    from pbc.services.compiled import key

    t = ibis.table({"a": "string", "b": "decimal(18,2)"}, name="t")
    base = key({"tariff settings": "s1"}, {"t": t}, marginal_rate_value=False)
    assert key({"tariff settings": "s1"}, {"t": t}, marginal_rate_value=False) == base
    assert key({"tariff settings": "s2"}, {"t": t}, marginal_rate_value=False) != base
    assert key({"tariff settings": "s1"}, {"t": t}, marginal_rate_value=True) != base
    assert key({"tariff settings": "s1"}, {"u": t}, marginal_rate_value=False) != base
    wider = ibis.table({"a": "string", "b": "decimal(18,2)", "c": "int64"}, name="t")
    assert key({"tariff settings": "s1"}, {"t": wider}, marginal_rate_value=False) != base
    retyped = ibis.table({"a": "string", "b": "float64"}, name="t")
    assert key({"tariff settings": "s1"}, {"t": retyped}, marginal_rate_value=False) != base


def test_sql_built_by_a_stand_in_or_an_edited_pbc_is_not_taken_from_the_cache(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A test's lambda in place of a builder is compiled every time (its closure is not in
    the key); pbc's own functions are kept, under a key that names them and pbc's source."""
    import ibis

    from pbc.attribution import attribute
    from pbc.pricing import price_activity
    from pbc.services import compiled

    assert compiled.cacheable((price_activity, attribute))
    assert not compiled.cacheable((price_activity, lambda p, t: attribute(p, t)))
    t = ibis.table({"a": "string"}, name="t")
    base = compiled.key({}, {"t": t}, (price_activity, attribute))
    assert compiled.key({}, {"t": t}, (price_activity,)) != base
    assert compiled.key({}, {"t": t}, (price_activity, attribute)) == base
    monkeypatch.setattr(compiled, "source_digest", lambda: "an edited pbc")
    assert compiled.key({}, {"t": t}, (price_activity, attribute)) != base
