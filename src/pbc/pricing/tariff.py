"""Tariff readers: the contract tables (CSV/Parquet) and an Annex A style workbook.

This module is the only place in :mod:`pbc.pricing` that reads files. Both readers return
pyarrow tables typed as the warehouse stores them (codes as strings, money as
DECIMAL(18,2), trim points as BIGINT), ready for ``ibis.memtable``.

Annex A (the DH national tariff workbook): sheets ``APC & OPROC``, ``OP`` and ``A&E`` with
the official column headings (the header row is found by its first heading, so title rows
above it are allowed). ``Yes``/``No`` becomes ``Y``/``N``; blank cells (or ``-``) are no
price. The A&E ``Type 3 Departments (£)`` price is kept as the optional column
``type_3_price``.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pyarrow as pa

from pbc.contracts import TABLES

TARIFF_TABLES = ("tariff_apc", "tariff_op", "tariff_ae")

_ARROW = {
    "code": pa.string(), "text": pa.string(), "int": pa.int64(),
    "decimal": pa.decimal128(18, 2),
}

APC_SHEET = "APC & OPROC"
OP_SHEET = "OP"
AE_SHEET = "A&E"

#: Annex A heading -> tariff_apc column
APC_COLUMNS: dict[str, str] = {
    "HRG code": "hrg_code",
    "HRG name": "hrg_name",
    "Outpatient procedure tariff (£)": "outpatient_procedure_price",
    "Combined day case / ordinary elective spell tariff (£)": "combined_elective_price",
    "Day case spell tariff (£)": "day_case_price",
    "Ordinary elective spell tariff (£)": "ordinary_elective_price",
    "Ordinary elective long stay trim point (days)": "elective_trim_days",
    "Non-elective spell tariff (£)": "non_elective_price",
    "Non-elective long stay trim point (days)": "non_elective_trim_days",
    "Per day long stay payment (for days exceeding trim point) (£)": "excess_bed_day_price",
    "Reduced short stay emergency tariff _applicable?": "sse_applies",
    "% applied in calculation of reduced short stay emergency tariff": "sse_percent",
    "Reduced short stay emergency tariff (£)": "sse_price",
}
OP_COLUMNS: dict[str, str] = {
    "Treatment function code": "treatment_function_code",
    "Treatment function name": "treatment_function_name",
    "First attendance - single professional (£)": "first_attendance_price",
    "Follow-up attendance - single professional (£)": "follow_up_price",
}
AE_COLUMNS: dict[str, str] = {
    "HRG code": "hrg_code",
    "HRG name": "hrg_name",
    "Type 1 and 2 Departments (£)": "price",
    "Type 3 Departments (£)": "type_3_price",
}


#: money is kept to the penny; more places are rounded half up (the one rounding rule of
#: :mod:`pbc.pricing.money`: ties away from zero, 0.125 -> 0.13)
PENNY = Decimal("0.01")


class TariffError(ValueError):
    """A tariff file that cannot be read; the message names file, sheet/row and column."""


def _refuse_duplicates(keys: Sequence[tuple[str | None, int]], where: str, label: str) -> None:
    """Raise :class:`TariffError` if a key appears twice: a tariff has one row per key, and a
    second row would price every matching activity row twice (``where`` names the file or
    sheet, ``keys`` are ``(key, row number)`` pairs, blank keys ignored)."""
    first: dict[str, int] = {}
    for key, row in keys:
        if key is None:
            continue
        if key in first:
            raise TariffError(f"{where}: duplicate {label} {key} in rows {first[key]} and "
                              f"{row} (a tariff has one row per {label})")
        first[key] = row


# ----------------------------------------------------------------------------- value parsing

def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v.strip() in ("", "-"))


def _money(v: Any, where: str) -> Decimal | None:
    if _blank(v):
        return None
    try:
        d = Decimal(repr(v)) if isinstance(v, float) else Decimal(str(v).strip().lstrip("£"))
    except InvalidOperation as e:
        raise TariffError(f"{where}: {v!r} is not an amount of money") from e
    if not d.is_finite() or d < 0:
        raise TariffError(f"{where}: {v!r} is not an amount of money (>= 0)")
    return d.quantize(PENNY, rounding=ROUND_HALF_UP)


def _int(v: Any, where: str) -> int | None:
    if _blank(v):
        return None
    try:
        d = Decimal(repr(v)) if isinstance(v, float) else Decimal(str(v).strip())
    except InvalidOperation as e:
        raise TariffError(f"{where}: {v!r} is not a whole number") from e
    if d != d.to_integral_value():
        raise TariffError(f"{where}: {v!r} is not a whole number")
    return int(d)


def _code(v: Any, width: int = 0) -> str | None:
    if _blank(v):
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    s = str(v).strip()
    return s.zfill(width) if width and s.isdigit() else s


def _yes_no(v: Any, where: str) -> str | None:
    if _blank(v):
        return None
    s = str(v).strip().upper()
    if s in ("YES", "Y"):
        return "Y"
    if s in ("NO", "N"):
        return "N"
    raise TariffError(f"{where}: {v!r} should be Yes or No")


def _typed(name: str, columns: dict[str, list[Any]], extra: Sequence[str] = ()) -> pa.Table:
    """Arrow table of the contract columns of ``name`` (missing optional ones NULL)."""
    contract = TABLES[name]
    n = len(next(iter(columns.values()))) if columns else 0
    data: dict[str, pa.Array] = {}
    for col in contract.columns:
        values = columns.get(col.name, [None] * n)
        data[col.name] = pa.array(values, _ARROW[col.type])
    for col_name in extra:
        data[col_name] = pa.array(columns[col_name], pa.decimal128(18, 2))
    return pa.table(data)


# ---------------------------------------------------------------------------- contract files

def read_tariff_file(path: str | Path, table: str) -> pa.Table:
    """Read one contract tariff table (``tariff_apc``, ``tariff_op`` or ``tariff_ae``) from a
    CSV (UTF-8, header row) or Parquet file, typed as in the warehouse.

    Raises :class:`TariffError` naming the file, row and column of a bad value or the
    missing required column, and the file and rows of a key found twice (one HRG or
    treatment function per row: a second row would price its activity twice). Amounts
    with more than 2 places are rounded half up to the penny.
    """
    if table not in TARIFF_TABLES:
        raise TariffError(f"{table!r} is not a tariff table ({', '.join(TARIFF_TABLES)})")
    p = Path(path)
    try:
        if p.suffix.lower() == ".parquet" or p.is_dir():
            import pyarrow.parquet as pq

            raw = pq.read_table(p)
            rows = raw.to_pylist()
            header = raw.column_names
        else:
            import csv

            with open(p, newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                header = list(reader.fieldnames or [])
                rows = list(reader)
    except (OSError, UnicodeDecodeError, pa.ArrowException) as e:
        raise TariffError(f"{p}: cannot read {table}: {e}") from e
    contract = TABLES[table]
    missing = [c.name for c in contract.columns if c.required and c.name not in header]
    if missing:
        raise TariffError(f"{p}: {table} has no column {', '.join(missing)} "
                          f"(columns found: {', '.join(header)})")
    columns: dict[str, list[Any]] = {c.name: [] for c in contract.columns if c.name in header}
    for i, row in enumerate(rows, start=2):
        for col in contract.columns:
            if col.name not in header:
                continue
            where = f"{p}, row {i}, column {col.name}"
            v = row[col.name]
            if col.type == "decimal":
                parsed: Any = _money(v, where)
            elif col.type == "int":
                parsed = _int(v, where)
            else:
                parsed = _code(v, 3 if col.name == "treatment_function_code" else 0)
            if parsed is None and not col.nullable:
                raise TariffError(f"{where}: a value is required")
            columns[col.name].append(parsed)
    key = contract.key
    if key:
        _refuse_duplicates(list(zip(columns[key], range(2, len(rows) + 2), strict=True)),
                           str(p), key)
    return _typed(table, columns)


# ---------------------------------------------------------------------------------- Annex A

def _sheet_rows(path: Path, wb: Any, sheet: str, headings: dict[str, str]) -> list[dict[str, Any]]:
    if sheet not in wb.sheetnames:
        raise TariffError(f"{path}: no sheet {sheet!r} (sheets: {', '.join(wb.sheetnames)})")
    ws = wb[sheet]
    first = next(iter(headings))
    header: list[str] | None = None
    header_row = 0
    out: list[dict[str, Any]] = []
    for r, values in enumerate(ws.iter_rows(values_only=True), start=1):
        cells = [None if v is None else str(v).strip() for v in values]
        if header is None:
            if first in cells:
                header = [c or "" for c in cells]
                header_row = r
                missing = [h for h in headings if h not in header]
                if missing:
                    raise TariffError(
                        f"{path}, sheet {sheet!r}: no column "
                        + ", ".join(repr(m) for m in missing)
                        + f" in the header row (row {r})")
            continue
        if all(_blank(v) for v in values):
            continue
        row = {headings[h]: values[header.index(h)] if header.index(h) < len(values) else None
               for h in headings}
        row["_row"] = r
        out.append(row)
    if header is None:
        raise TariffError(f"{path}, sheet {sheet!r}: no header row with column {first!r}")
    del header_row
    return out


def read_annex_a(path: str | Path) -> dict[str, pa.Table]:
    """Read an Annex A style national tariff workbook into ``tariff_apc``, ``tariff_op`` and
    ``tariff_ae`` (the DH national tariff workbook's Annex A layout).

    A missing sheet or column raises :class:`TariffError` naming the file, sheet and column;
    a bad value names the row as well, and so does a key (HRG or treatment function code)
    found twice on one sheet: one spell would otherwise be priced twice. Where the SSEM
    price is blank but the workbook gives the SSEM percentage, the SSEM price is
    ``non-elective price x %`` rounded half up to the penny. Amounts with more than 2 places
    are rounded half up too. Rows without an HRG or TFC code are skipped.
    """
    import openpyxl

    p = Path(path)
    try:
        wb = openpyxl.load_workbook(p, read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises several kinds for a file that is not xlsx
        raise TariffError(f"{p}: not a readable xlsx workbook: {e}") from e
    try:
        apc_rows = _sheet_rows(p, wb, APC_SHEET, APC_COLUMNS)
        op_rows = _sheet_rows(p, wb, OP_SHEET, OP_COLUMNS)
        ae_rows = _sheet_rows(p, wb, AE_SHEET, AE_COLUMNS)
    finally:
        wb.close()

    def where(sheet: str, row: dict[str, Any], heading: str) -> str:
        return f"{p}, sheet {sheet!r}, row {row['_row']}, column {heading!r}"

    apc: dict[str, list[Any]] = {c: [] for c in (
        "hrg_code", "hrg_name", "day_case_price", "ordinary_elective_price",
        "combined_elective_price", "elective_trim_days", "non_elective_price",
        "non_elective_trim_days", "excess_bed_day_price", "sse_applies", "sse_price",
        "outpatient_procedure_price")}
    heading_of = {v: k for k, v in APC_COLUMNS.items()}
    for sheet, rows, key, width, heading in (
            (APC_SHEET, apc_rows, "hrg_code", 0, "HRG code"),
            (OP_SHEET, op_rows, "treatment_function_code", 3, "Treatment function code"),
            (AE_SHEET, ae_rows, "hrg_code", 0, "HRG code")):
        _refuse_duplicates([(_code(r[key], width), r["_row"]) for r in rows],
                           f"{p}, sheet {sheet!r}", heading)
    for row in apc_rows:
        hrg = _code(row["hrg_code"])
        if hrg is None:
            continue
        w = {k: where(APC_SHEET, row, heading_of[k]) for k in heading_of}
        rec: dict[str, Any] = {"hrg_code": hrg, "hrg_name": _code(row["hrg_name"])}
        for k in ("day_case_price", "ordinary_elective_price", "combined_elective_price",
                  "non_elective_price", "excess_bed_day_price", "sse_price",
                  "outpatient_procedure_price"):
            rec[k] = _money(row[k], w[k])
        for k in ("elective_trim_days", "non_elective_trim_days"):
            rec[k] = _int(row[k], w[k])
        rec["sse_applies"] = _yes_no(row["sse_applies"], w["sse_applies"]) or "N"
        pct = row["sse_percent"]
        if (rec["sse_price"] is None and rec["sse_applies"] == "Y" and not _blank(pct)
                and rec["non_elective_price"] is not None):
            fraction = _money_fraction(pct, w["sse_percent"])
            rec["sse_price"] = (rec["non_elective_price"] * fraction).quantize(
                Decimal("0.01"), rounding="ROUND_HALF_UP")
        for k in apc:
            apc[k].append(rec[k])

    op: dict[str, list[Any]] = {c: [] for c in (
        "treatment_function_code", "first_attendance_price", "follow_up_price")}
    op_heading = {v: k for k, v in OP_COLUMNS.items()}
    for row in op_rows:
        tfc = _code(row["treatment_function_code"], 3)
        if tfc is None:
            continue
        op["treatment_function_code"].append(tfc)
        for k in ("first_attendance_price", "follow_up_price"):
            op[k].append(_money(row[k], where(OP_SHEET, row, op_heading[k])))

    ae: dict[str, list[Any]] = {c: [] for c in ("hrg_code", "price", "type_3_price")}
    ae_heading = {v: k for k, v in AE_COLUMNS.items()}
    for row in ae_rows:
        hrg = _code(row["hrg_code"])
        if hrg is None:
            continue
        ae["hrg_code"].append(hrg)
        for k in ("price", "type_3_price"):
            ae[k].append(_money(row[k], where(AE_SHEET, row, ae_heading[k])))

    return {
        "tariff_apc": _typed("tariff_apc", apc),
        "tariff_op": _typed("tariff_op", op),
        "tariff_ae": _typed("tariff_ae", ae, extra=("type_3_price",)),
    }


def _money_fraction(v: Any, where: str) -> Decimal:
    """A percentage cell: ``0.7``, ``70`` or ``'70%'`` -> ``Decimal('0.7')``."""
    try:
        text = repr(v) if isinstance(v, float) else str(v).strip()
        pct = text.endswith("%")
        d = Decimal(text.rstrip("%"))
    except InvalidOperation as e:
        raise TariffError(f"{where}: {v!r} is not a percentage") from e
    if pct or d > 1:
        d = d / 100
    if d < 0 or d > 1:
        raise TariffError(f"{where}: {v!r} is not a percentage between 0 and 100")
    return d
