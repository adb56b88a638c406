"""Tariff settings (TOML) and tariff readers (contract CSV/Parquet, Annex A workbook)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xlsxwriter

from pbc.pricing import SettingsError, TariffSettings, load_settings, settings_from_dict
from pbc.pricing.tariff import (
    AE_COLUMNS,
    APC_COLUMNS,
    OP_COLUMNS,
    TariffError,
    read_annex_a,
    read_tariff_file,
)

D = Decimal

SAMPLE = """
financial_year = "2025/26"
[emergency_marginal_rate]
rate = 0.30
[[emergency_marginal_rate.baseline]]
commissioner_code = "QHM"
provider_code = "RTR"
baseline = 1234567.00
[short_stay_emergency]
min_age = 19
max_length_of_stay = 1
[top_up]
children = 0.60
orthopaedic = 0.24
spinal = 0.32
neurosciences = 0.28
[outpatients]
telephone_first_fraction = 1.0
telephone_follow_up_fraction = 1.0
[ae]
department_type_fraction = { "1" = 1.0, "2" = 1.0, "3" = 0.5, "4" = 0.5 }
"""


def test_sample_settings(tmp_path: Path) -> None:
    path = tmp_path / "tariff_settings.toml"
    path.write_text(SAMPLE)
    s = load_settings(path)
    # the canonical spelling of a financial year is 2025-26 (the file may say 2025/26)
    assert s.financial_year == "2025-26"
    assert s.emergency_marginal_rate.rate == D("0.3")
    (b,) = s.emergency_marginal_rate.baseline
    assert (b.commissioner_code, b.provider_code, b.baseline) == ("QHM", "RTR", D("1234567"))
    assert b.financial_year == "2025-26"  # a baseline without a year is the settings' year
    assert s.ae.department_type_fraction["3"] == D("0.5")
    assert s.top_up.fractions()["spinal"] == D("0.32")


def test_defaults() -> None:
    s = TariffSettings()
    assert s.emergency_marginal_rate.rate == D("0.30")
    assert s.emergency_marginal_rate.baseline == ()
    assert (s.short_stay_emergency.min_age, s.short_stay_emergency.max_length_of_stay) == (19, 1)
    assert s.top_up.fractions() == {"children": D("0.60"), "orthopaedic": D("0.24"),
                                    "spinal": D("0.32"), "neurosciences": D("0.28")}
    assert s.outpatients.telephone_first_fraction == 1
    assert set(s.ae.department_type_fraction.values()) == {1}
    assert s.apc.regular_attender == "day_case"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[emergency_marginal_rate]\nrate = 1.5", "emergency_marginal_rate.rate"),
        ("[top_up]\nchildern = 0.5", "top_up.childern"),
        ("[short_stay_emergency]\nmin_age = -1", "short_stay_emergency.min_age"),
        ('financial_year = "2025/27"', "financial_year"),
        ("[top_up]\nchildren = 0.1234567", "top_up.children"),
        ('[ae]\ndepartment_type_fraction = { "5" = 1.0 }', "ae.department_type_fraction"),
        ('financial_year = "2025-26"\n'
         '[[emergency_marginal_rate.baseline]]\ncommissioner_code = "Q"\nprovider_code = "R"'
         '\nbaseline = 1\n[[emergency_marginal_rate.baseline]]\ncommissioner_code = "Q"'
         '\nprovider_code = "R"\nbaseline = 2', "emergency_marginal_rate"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(SettingsError) as e:
        load_settings(path)
    assert str(path) in str(e.value) and key in str(e.value)


def _baselines(*entries: str, year: str | None = None) -> dict:
    data: dict = {"emergency_marginal_rate": {"baseline": [
        {"commissioner_code": "QHM", "provider_code": "RTR", "baseline": 100.0,
         **({"financial_year": e} if e else {})} for e in entries]}}
    if year is not None:
        data["financial_year"] = year
    return data


def test_baselines_are_per_contract_and_year() -> None:
    """A baseline is for one contract in one financial year: its own year (2025/26 or
    2025-26, kept as 2025-26), else the settings' year; with neither it is an error."""
    s = settings_from_dict(_baselines("2024/25", "2025-26", "", year="2026/27"))
    assert [b.financial_year for b in s.emergency_marginal_rate.baseline] == [
        "2024-25", "2025-26", "2026-27"]
    with pytest.raises(SettingsError) as e:
        settings_from_dict(_baselines("2025-26", ""), source="s.toml")
    assert "s.toml" in str(e.value) and "emergency_marginal_rate.baseline" in str(e.value)
    assert "financial_year" in str(e.value)
    # one per (commissioner, provider, year), whatever the spelling of the year
    with pytest.raises(SettingsError, match=r"two baselines .*QHM.*RTR.*2025-26"):
        settings_from_dict(_baselines("2025/26", "2025-26"))
    with pytest.raises(SettingsError, match=r"two baselines .*2025-26"):
        settings_from_dict(_baselines("", "2025/26", year="2025-26"))
    with pytest.raises(SettingsError, match="financial_year"):
        settings_from_dict(_baselines("2025/27"))


def test_not_toml_and_missing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("rate = = 1")
    with pytest.raises(SettingsError, match=r"bad\.toml: not a valid TOML"):
        load_settings(bad)
    with pytest.raises(SettingsError, match=r"nope\.toml"):
        load_settings(tmp_path / "nope.toml")


# ------------------------------------------------------------------------ contract tariffs

def test_read_tariff_csv_keeps_codes_and_money(tmp_path: Path) -> None:
    path = tmp_path / "tariff_op.csv"
    path.write_text("treatment_function_code,first_attendance_price,follow_up_price\n"
                    "110,168,84.50\n010,1.5,2\n")
    t = read_tariff_file(path, "tariff_op")
    assert t.schema.field("first_attendance_price").type == pa.decimal128(18, 2)
    assert t.column("treatment_function_code").to_pylist() == ["110", "010"]
    assert t.column("follow_up_price").to_pylist() == [D("84.50"), D("2.00")]


def test_read_tariff_parquet(tmp_path: Path) -> None:
    path = tmp_path / "tariff_ae.parquet"
    pq.write_table(pa.table({"hrg_code": ["VB07Z"], "price": [148.0]}), path)
    t = read_tariff_file(path, "tariff_ae")
    assert t.to_pylist() == [{"hrg_code": "VB07Z", "price": D("148.00")}]


def test_read_tariff_errors(tmp_path: Path) -> None:
    path = tmp_path / "tariff_ae.csv"
    path.write_text("hrg_code\nVB07Z\n")
    with pytest.raises(TariffError, match=r"tariff_ae.csv: tariff_ae has no column price"):
        read_tariff_file(path, "tariff_ae")
    path.write_text("hrg_code,price\nVB07Z,abc\n")
    with pytest.raises(TariffError, match=r"row 2, column price: 'abc' is not an amount"):
        read_tariff_file(path, "tariff_ae")


def test_read_tariff_rounds_half_up(tmp_path: Path) -> None:
    """The money rounding rule is half up (ties away from zero), never half to even:
    0.125 -> 0.13 (half even would give 0.12), 84.505 -> 84.51, 2.675 -> 2.68."""
    path = tmp_path / "tariff_op.csv"
    path.write_text("treatment_function_code,first_attendance_price,follow_up_price\n"
                    "110,0.125,84.505\n300,2.675,1.0049\n")
    t = read_tariff_file(path, "tariff_op")
    assert t.column("first_attendance_price").to_pylist() == [D("0.13"), D("2.68")]
    assert t.column("follow_up_price").to_pylist() == [D("84.51"), D("1.00")]


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_read_tariff_refuses_duplicate_keys(tmp_path: Path, suffix: str) -> None:
    """One HRG twice would price one spell twice: refused, naming the file and both rows.
    ``10`` and ``010`` are the same treatment function once normalised (3 digits)."""
    path = tmp_path / f"tariff_op.{suffix}"
    rows = {"treatment_function_code": ["110", "300", "010", "10"],
            "first_attendance_price": ["168", "200", "150", "151"],
            "follow_up_price": ["84", "100", "70", "71"]}
    if suffix == "csv":
        path.write_text("treatment_function_code,first_attendance_price,follow_up_price\n"
                        + "".join(f"{a},{b},{c}\n" for a, b, c in zip(*rows.values(),
                                                                      strict=True)))
    else:
        pq.write_table(pa.table(rows), path)
    with pytest.raises(TariffError) as e:
        read_tariff_file(path, "tariff_op")
    msg = str(e.value)
    assert str(path) in msg
    assert "duplicate treatment_function_code 010" in msg
    assert "rows 4 and 5" in msg


# ---------------------------------------------------------------------------------- Annex A

def _workbook(path: Path, drop: tuple[str, str] | None = None, skip_sheet: str = "") -> None:
    wb = xlsxwriter.Workbook(str(path))
    sheets = {
        "APC & OPROC": (list(APC_COLUMNS), [
            ["DZ65K", "COPD", None, 1200, 600, 1500, 5, 1000, 10, 250, "Yes", 0.7, 700],
            ["HB12C", "Hip", 150.5, 2000, None, None, 3, 3000, 7, 300, "No", None, None],
            ["AA01A", "Pct only", None, None, None, None, 2, 1000.25, 4, 100, "Yes", 0.3, None],
        ]),
        "OP": (list(OP_COLUMNS), [[110, "Trauma", 168, 84], ["300", "Medicine", 200, 100]]),
        "A&E": (list(AE_COLUMNS), [["VB07Z", "Cat 2", 148, 60], ["VB11Z", "Cat 1", 60, None]]),
    }
    for name, (headers, rows) in sheets.items():
        if name == skip_sheet:
            continue
        ws = wb.add_worksheet(name)
        ws.write_row(0, 0, ["Annex A national tariff (synthetic test workbook)"])
        keep = [i for i, h in enumerate(headers) if drop is None or drop != (name, h)]
        ws.write_row(2, 0, [headers[i] for i in keep])
        for r, row in enumerate(rows, start=3):
            for c, i in enumerate(keep):
                if row[i] is not None:
                    ws.write(r, c, row[i])
    wb.close()


def test_read_annex_a(tmp_path: Path) -> None:
    path = tmp_path / "annex_a.xlsx"
    _workbook(path)
    out = read_annex_a(path)
    apc = {r["hrg_code"]: r for r in out["tariff_apc"].to_pylist()}
    assert apc["DZ65K"]["combined_elective_price"] == D("1200.00")
    assert apc["DZ65K"]["sse_applies"] == "Y" and apc["DZ65K"]["sse_price"] == D("700.00")
    assert apc["DZ65K"]["elective_trim_days"] == 5
    assert apc["HB12C"]["day_case_price"] is None
    assert apc["HB12C"]["outpatient_procedure_price"] == D("150.50")
    assert apc["HB12C"]["sse_applies"] == "N"
    # SSEM price derived from the % column when the price cell is blank (half up)
    assert apc["AA01A"]["sse_price"] == D("300.08")
    op = out["tariff_op"].to_pylist()
    assert op[0] == {"treatment_function_code": "110", "first_attendance_price": D("168.00"),
                     "follow_up_price": D("84.00")}
    ae = {r["hrg_code"]: r for r in out["tariff_ae"].to_pylist()}
    assert ae["VB07Z"]["price"] == D("148.00") and ae["VB07Z"]["type_3_price"] == D("60.00")
    assert out["tariff_apc"].schema.field("non_elective_price").type == pa.decimal128(18, 2)


def test_annex_a_missing_column_and_sheet(tmp_path: Path) -> None:
    path = tmp_path / "a.xlsx"
    _workbook(path, drop=("APC & OPROC", "Non-elective spell tariff (£)"))
    with pytest.raises(TariffError) as e:
        read_annex_a(path)
    msg = str(e.value)
    assert str(path) in msg and "'APC & OPROC'" in msg and "Non-elective spell tariff (£)" in msg
    _workbook(path, skip_sheet="A&E")
    with pytest.raises(TariffError, match=r"a.xlsx: no sheet 'A&E'"):
        read_annex_a(path)


def test_annex_a_prices_activity(tmp_path: Path) -> None:
    import ibis

    from pbc.pricing import price_activity
    from pricing_fixtures import economy, op, spell

    path = tmp_path / "annex_a.xlsx"
    _workbook(path)
    tables = {k: ibis.memtable(v) for k, v in economy(apc=[spell("S", los=1)],
                                                      ops=[op("O")]).items()}
    tables.update({k: ibis.memtable(v) for k, v in read_annex_a(path).items()})
    rows = {r["activity_id"]: r for r in price_activity(tables).to_pyarrow().to_pylist()}
    assert rows["S"]["price"] == D("700.00")
    assert rows["O"]["price"] == D("175.74")


def _annex(path: Path, sheets: dict[str, tuple[list[str], list[list[object]]]]) -> None:
    wb = xlsxwriter.Workbook(str(path))
    for name, (headers, rows) in sheets.items():
        ws = wb.add_worksheet(name)
        ws.write_row(0, 0, headers)
        for r, row in enumerate(rows, start=1):
            for c, v in enumerate(row):
                if v is not None:
                    ws.write(r, c, v)
    wb.close()


_APC_ROW = ["DZ65K", "COPD", None, 1200, 600, 1500, 5, 1000, 10, 250, "Yes", 0.7, 700]


@pytest.mark.parametrize(("sheet", "rows", "where"), [
    # the same HRG twice on the APC sheet (spreadsheet rows 2 and 4)
    ("APC & OPROC", [_APC_ROW, ["HB12C", "Hip", None, 2000, None, None, 3, 3000, 7, 300,
                                "No", None, None], [*_APC_ROW[:7], 1100, *_APC_ROW[8:]]],
     "duplicate HRG code DZ65K in rows 2 and 4"),
    # 110 as a number and as text are one treatment function
    ("OP", [[110, "Trauma", 168, 84], ["110", "Trauma again", 170, 85]],
     "duplicate Treatment function code 110 in rows 2 and 3"),
    ("A&E", [["VB07Z", "Cat 2", 148, 60], [" VB07Z ", "Cat 2", 149, 60]],
     "duplicate HRG code VB07Z in rows 2 and 3"),
])
def test_annex_a_refuses_duplicate_keys(tmp_path: Path, sheet: str, rows: list, where: str
                                        ) -> None:
    """An Annex A workbook with one key twice on a sheet is refused (it doubled the money of
    every spell of that HRG): the error names the file, the sheet and both rows."""
    sheets: dict[str, tuple[list[str], list[list[object]]]] = {
        "APC & OPROC": (list(APC_COLUMNS), [_APC_ROW]),
        "OP": (list(OP_COLUMNS), [[110, "Trauma", 168, 84]]),
        "A&E": (list(AE_COLUMNS), [["VB07Z", "Cat 2", 148, 60]]),
    }
    sheets[sheet] = (sheets[sheet][0], rows)
    path = tmp_path / "dup.xlsx"
    _annex(path, sheets)
    with pytest.raises(TariffError) as e:
        read_annex_a(path)
    msg = str(e.value)
    assert str(path) in msg and f"sheet {sheet!r}" in msg and where in msg


def test_annex_a_rounds_half_up(tmp_path: Path) -> None:
    """Workbook cells with more than 2 places are rounded half up: 1000.125 -> 1000.13,
    148.005 -> 148.01 (half to even would give 1000.12 and 148.00)."""
    path = tmp_path / "r.xlsx"
    row = [*_APC_ROW[:7], 1000.125, *_APC_ROW[8:]]
    _annex(path, {"APC & OPROC": (list(APC_COLUMNS), [row]),
                  "OP": (list(OP_COLUMNS), [[110, "Trauma", 168, 84]]),
                  "A&E": (list(AE_COLUMNS), [["VB07Z", "Cat 2", "148.005", 60]])})
    out = read_annex_a(path)
    assert out["tariff_apc"].column("non_elective_price").to_pylist() == [D("1000.13")]
    assert out["tariff_ae"].column("price").to_pylist() == [D("148.01")]


def test_pbc_price_refuses_a_workbook_with_duplicate_keys(tmp_path: Path) -> None:
    """``pbc price --tariff-workbook`` reads the workbook itself (the loader's key checks do
    not see it): a duplicate HRG is refused before anything is priced or stored."""
    from delivery import write_delivery
    from pbc.services.pricing import run_pricing
    from pbc.warehouse import Warehouse
    from pbc.warehouse.load import load

    wh = Warehouse(tmp_path / "wh")
    load(write_delivery(tmp_path / "in"), wh)
    before = wh.manifest()
    book = tmp_path / "dup.xlsx"
    _annex(book, {"APC & OPROC": (list(APC_COLUMNS), [_APC_ROW, _APC_ROW]),
                  "OP": (list(OP_COLUMNS), [[110, "Trauma", 168, 84]]),
                  "A&E": (list(AE_COLUMNS), [["VB07Z", "Cat 2", 148, 60]])})
    with pytest.raises(TariffError, match=r"dup.xlsx, sheet 'APC & OPROC': duplicate HRG "
                                          r"code DZ65K in rows 2 and 3"):
        run_pricing(wh, tariff_workbook=book)
    assert wh.manifest() == before
