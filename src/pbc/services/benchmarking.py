"""Benchmarking service: indicator library + warehouse -> benchmark tables, SPC series, exports.

The service opens the warehouse, picks the indicator and the grouping, and calls the pure
core (:mod:`pbc.indicators`). Writing: ``.csv`` (the benchmark table; the monthly series
beside it as ``NAME_monthly.csv``) or ``.xlsx`` (one workbook: the benchmark table, the
monthly series and a sheet describing the indicator).

Disclosure control: files and charts leave the commissioner, so they are written from
:func:`disclosure_controlled` copies, in which counts of events from 1 to 7 are
suppressed (``*``) with complementary suppression (:mod:`pbc.services.suppression`, as for
risk segments), together with every figure that would give a hidden count back (the
value, its limits, the standardised figures and the savings). The tables in memory stay
whole for the commissioner's own analysts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from pbc.calendar import format_financial_year, parse_financial_year
from pbc.indicators import wording
from pbc.indicators.benchmark import ACTIVITY_TABLE, benchmark, financial_years, monthly_series
from pbc.indicators.compute import with_populations
from pbc.indicators.definition import Indicator, load_indicators
from pbc.services.names import organisation_names
from pbc.services.suppression import DEFAULT_THRESHOLD, MARKER, suppress_table
from pbc.warehouse import Warehouse, WarehouseError
from pbc.warehouse.export import spreadsheet_safe
from pbc.warehouse.spark import check_engine

Level = Literal["practice", "group", "commissioner"]


def list_indicators(folder: Path | None = None) -> list[Indicator]:
    return list(load_indicators(folder).values())


def read_grouping(path: Path) -> pd.DataFrame:
    """A user's own grouping: a CSV with ``practice_code`` and ``group_code`` columns."""
    try:
        frame = pd.read_csv(path, dtype=str)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise WarehouseError(f"{path}: cannot read the grouping CSV: {e}") from e
    missing = [c for c in ("practice_code", "group_code") if c not in frame.columns]
    if missing:
        raise WarehouseError(f"{path}: missing column(s) {', '.join(missing)} "
                             "(expected practice_code,group_code)")
    blank = frame.index[frame.practice_code.isna() | frame.group_code.isna()]
    if len(blank):
        raise WarehouseError(f"{path}: row {int(blank[0]) + 2}: practice_code and group_code "
                             "must both be given")
    return frame


@dataclass
class BenchmarkResult:
    """One indicator at one level: the annual table and (optionally) the monthly series."""

    indicator: Indicator
    level: str
    table: pd.DataFrame
    series: pd.DataFrame | None = None
    #: the year of the annual table (the latest of the indicator's activity when not asked)
    financial_year: str | None = None
    #: for the workbook's title block: whose units, from which data, names beside codes
    organisation: str = ""
    source: str = ""
    names: dict[str, str] = field(default_factory=dict)


def _indicator(indicator_id: str) -> Indicator:
    indicators = load_indicators()
    if indicator_id not in indicators:
        raise WarehouseError(f"unknown indicator {indicator_id!r}; known: "
                             f"{', '.join(sorted(indicators))}")
    return indicators[indicator_id]


#: the warehouse tables the indicators read (:mod:`pbc.indicators.compute`)
INDICATOR_INPUTS = ("practices", "patients", "list_sizes", "tariff_apc",
                    *ACTIVITY_TABLE.values())


def _tables(warehouse: Warehouse) -> Mapping[str, Any]:
    if not warehouse.exists():
        raise WarehouseError(f"{warehouse.root}: no warehouse here yet (run pbc load first)")
    backend = warehouse.ibis()
    return {n: backend.table(n) for n in warehouse.table_names()}


def benchmark_all(
    warehouse: Warehouse,
    indicator_ids: list[str] | None = None,
    *,
    level: Level = "practice",
    grouping_file: Path | None = None,
    financial_year: str | None = None,
    monthly: bool = True,
    engine: str = "duckdb",
) -> list[BenchmarkResult]:
    """Several indicators (default: the whole library) from one warehouse; with more than
    one they share the populations (:func:`pbc.indicators.compute.with_populations`).

    ``engine="spark"`` runs the numerators and denominators (the same Ibis expressions) on
    Spark over the warehouse's Parquet files (:func:`pbc.warehouse.spark.spark_tables`);
    the per-practice results come back as small frames and the statistics (intervals,
    funnels, XmR) are computed here as on DuckDB."""
    check_engine(engine)

    def run(tables: Mapping[str, Any]) -> list[BenchmarkResult]:
        return _benchmark_all(warehouse, tables, indicator_ids, level=level,
                              grouping_file=grouping_file, financial_year=financial_year,
                              monthly=monthly)

    if engine == "spark":
        from pbc.warehouse.spark import spark_tables

        if not warehouse.exists():
            raise WarehouseError(f"{warehouse.root}: no warehouse here yet (run pbc load first)")
        with spark_tables(warehouse, INDICATOR_INPUTS, stage="benchmark") as tables:
            return run(tables)
    return run(_tables(warehouse))


def _benchmark_all(
    warehouse: Warehouse,
    tables: Mapping[str, Any],
    indicator_ids: list[str] | None,
    *,
    level: Level,
    grouping_file: Path | None,
    financial_year: str | None,
    monthly: bool,
) -> list[BenchmarkResult]:
    indicators = [_indicator(i) for i in indicator_ids] if indicator_ids else \
        list(load_indicators().values())
    years = None
    if financial_year is not None:
        try:
            financial_year = format_financial_year(parse_financial_year(financial_year), "-")
        except ValueError as e:
            raise WarehouseError(f"--year: {e}") from e
        years = [financial_year]
        for ind in indicators:
            _require_year(tables, ind, financial_year)
    if len(indicators) > 1:
        shared = years or sorted({y for ind in indicators for y in financial_years(tables, ind)})
        tables = with_populations(tables, shared)
    grouping = read_grouping(grouping_file) if grouping_file else None
    names = organisation_names(warehouse)
    units = {"practice": names["practices"], "commissioner": names["commissioners"],
             "group": {} if grouping is not None else names["groups"]}[level]
    bodies = sorted(names["commissioners"]) or sorted(
        {str(c) for c in tables["practices"].select("commissioner_code").distinct()
         .execute().commissioner_code.dropna()} if "practices" in tables else set())
    organisation = "; ".join(f"{c} {names['commissioners'].get(c, '')}".strip()
                             for c in bodies) or "(no commissioner in the warehouse)"
    if grouping_file is not None:
        organisation += f"; groups from {grouping_file.name}"
    version = warehouse.manifest().get("version")
    out = []
    for ind in indicators:
        table = benchmark(tables, ind, level=level, financial_year=financial_year,
                          grouping=grouping)
        series = monthly_series(tables, ind, level=level, years=years,
                                grouping=grouping) if monthly else None
        known = financial_years(tables, ind)
        year = financial_year or (known[-1] if known else None)
        out.append(BenchmarkResult(
            ind, level, table, series, financial_year=year, organisation=organisation,
            source=f"{ind.source}; pbc warehouse version {version}", names=units))
    return out


def _require_year(tables: Mapping[str, Any], ind: Indicator, year: str) -> None:
    """Raise unless the indicator's activity table has rows in financial year ``year``
    (a benchmark of a year with no data would be a table of zeros)."""
    if ind.numerator.activity is None:
        return
    name = ACTIVITY_TABLE[ind.numerator.activity]
    if name not in tables:
        raise WarehouseError(f"indicator {ind.id} needs the {name} table, which is not "
                             "in the warehouse")
    t = tables[name]
    present = sorted(str(y) for y in t.select("financial_year").distinct().execute()
                     .financial_year.dropna())
    if year not in present:
        raise WarehouseError(f"no {name} activity in financial year {year} (the warehouse "
                             f"has {', '.join(present) or 'none'})")


def benchmark_indicator(
    warehouse: Warehouse,
    indicator_id: str,
    *,
    level: Level = "practice",
    grouping_file: Path | None = None,
    financial_year: str | None = None,
    monthly: bool = True,
    engine: str = "duckdb",
) -> BenchmarkResult:
    """The benchmark table for one indicator and, with ``monthly``, its SPC series."""
    return benchmark_all(warehouse, [indicator_id], level=level, grouping_file=grouping_file,
                         financial_year=financial_year, monthly=monthly, engine=engine)[0]


def run_benchmark(
    warehouse: Warehouse,
    indicator_id: str,
    *,
    level: Level = "practice",
    grouping_file: Path | None = None,
    financial_year: str | None = None,
    out: Path | None = None,
) -> pd.DataFrame:
    """The benchmark table for one indicator; written to ``out`` (.csv/.xlsx) if given."""
    result = benchmark_indicator(warehouse, indicator_id, level=level,
                                 grouping_file=grouping_file, financial_year=financial_year,
                                 monthly=out is not None)
    if out is not None:
        write_result(result, out)
    return result.table


#: columns that give a hidden count back (derived from the numerator)
NUMERATOR_DERIVED = (
    "numerator", "value", "lower_95", "upper_95", "observed", "isr", "isr_lower_95",
    "isr_upper_95", "dsr_observed", "dsr", "dsr_lower_95", "dsr_upper_95", "dsr_denominator",
    "ratio_to_national", "ratio_to_national_lower_95", "ratio_to_national_upper_95",
    "saving_at_p25", "saving_at_p10")
#: columns that give a hidden activity denominator back
DENOMINATOR_DERIVED = ("denominator", "value", "lower_95", "upper_95", "ratio_to_national",
                       "ratio_to_national_lower_95", "ratio_to_national_upper_95",
                       "saving_at_p25", "saving_at_p10")


def _counts(ind: Indicator) -> list[str]:
    """The columns of a table that are counts of events: the numerator when it counts
    activity (not a sum of days or pounds), the denominator when it counts activity."""
    cols = []
    if ind.numerator.activity is not None and ind.numerator.sum is None:
        cols.append("numerator")
    if ind.denominator.activity is not None and ind.denominator.sum is None:
        cols.append("denominator")
    return cols


def _hidden(frame: pd.DataFrame, col: str, key: str, by_month: bool,
            threshold: int) -> pd.Series:
    """Which cells of count column ``col`` to hide (primary and complementary)."""
    counts = frame[col].fillna(0).round().astype(int)
    if not by_month:
        # one line of units whose total is shown (the funnel's centre line, the level above)
        cells = suppress_table([counts.tolist()], threshold)[0].cells
        return pd.Series([c is None for c in cells], index=frame.index)
    # units x months: each unit's year (the annual table) and each month's total are shown
    wide = counts.to_frame().assign(unit=frame[key], period=frame["period"]).pivot(
        index="unit", columns="period", values=col).fillna(0).astype(int)
    rows = suppress_table(wide.to_numpy().tolist(), threshold, column_totals=len(wide) > 1)
    hide = pd.DataFrame([[c is None for c in r.cells] for r in rows], index=wide.index,
                        columns=wide.columns).stack()
    keys = pd.MultiIndex.from_arrays([frame[key], frame["period"]])
    return pd.Series(hide.reindex(keys).fillna(False).to_numpy(bool), index=frame.index)


def suppress_frame(frame: pd.DataFrame, ind: Indicator, *,
                   threshold: int = DEFAULT_THRESHOLD) -> tuple[pd.DataFrame, pd.Series]:
    """A copy of a benchmark table or monthly series with counts 1..``threshold`` and the
    figures derived from them set to NaN; and which rows lost something."""
    out = frame.copy()
    if not len(out):
        return out, pd.Series(False, index=out.index)
    key = out.columns[1]
    by_month = "period" in out.columns
    any_hidden = pd.Series(False, index=out.index)
    for col in _counts(ind):
        hide = _hidden(frame, col, key, by_month, threshold)
        derived = NUMERATOR_DERIVED if col == "numerator" else DENOMINATOR_DERIVED
        for c in derived:
            if c in out.columns:
                out[c] = out[c].astype(float).where(~hide, np.nan)
        any_hidden |= hide
    for col in ("numerator", "denominator"):
        if col in _counts(ind):
            out[col] = out[col].round().astype("Int64")
    return out, any_hidden


def disclosure_controlled(result: BenchmarkResult, *,
                          threshold: int = DEFAULT_THRESHOLD) -> BenchmarkResult:
    """The result as it may leave the commissioner: counts of events from 1 to
    ``threshold`` (7) suppressed, with complementary suppression, and every figure derived
    from a hidden count hidden too (NaN here, ``*`` in files)."""
    table, _ = suppress_frame(result.table, result.indicator, threshold=threshold)
    series = None
    if result.series is not None:
        series, _ = suppress_frame(result.series, result.indicator, threshold=threshold)
    return replace(result, table=table, series=series)


def _marked(frame: pd.DataFrame, whole: pd.DataFrame) -> pd.DataFrame:
    """Suppressed cells (NaN where the whole table has a value) written as ``*``."""
    out = frame.astype(object)
    for col in frame.columns:
        if col in whole.columns:
            gone = frame[col].isna().to_numpy() & whole[col].notna().to_numpy()
            out.loc[gone, col] = MARKER
    return out


DISCLOSURE_NOTE = (f"counts of events from 1 to {DEFAULT_THRESHOLD} are suppressed "
                   f"({MARKER}), with complementary suppression so they cannot be recovered "
                   "from totals, and so is every figure derived from a suppressed count")


def about(ind: Indicator, *, suppressed: bool = False,
          financial_year: str | None = None) -> pd.DataFrame:
    """The indicator's definition as rows of (field, value), for the workbook; with
    ``financial_year``, the period and source of the data and England's comparator with a
    caution when it is older than the data."""
    rows = [("id", ind.id), ("title", ind.title), ("why it matters", ind.why_it_matters.strip()),
            ("unit", ind.unit), ("kind", ind.kind), ("standardisation", ind.standardisation),
            ("low is good", str(ind.low_is_good)), ("source", ind.source),
            ("review date", ind.review_date.isoformat())]
    if financial_year:
        rows += [("period", wording.period(financial_year)), ("data", wording.source(ind))]
    if ind.national is not None:
        rows += [("England value", f"{ind.national.value:g} ({ind.national.period})"),
                 ("England source", ind.national.source)]
        caution = wording.national_caution(ind, financial_year)
        if caution:
            rows.append(("England comparator", caution))
    if ind.exclusions:
        rows.append(("exclusions", ind.exclusions.strip()))
    if ind.limitations:
        rows.append(("limitations", ind.limitations.strip()))
    if suppressed:
        rows.append(("disclosure control", DISCLOSURE_NOTE))
    return pd.DataFrame(rows, columns=["field", "value"])


def write_result(result: BenchmarkResult, out: Path, *, suppress: bool = True) -> list[Path]:
    """Write the table (and series) by suffix; returns the files written.

    A file leaves the commissioner, so by default it is written from
    :func:`disclosure_controlled` (counts 1-7 as ``*``); ``suppress=False`` is for the
    commissioner's own analysts only."""
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".xlsx"):
        raise WarehouseError(f"{out}: use .csv or .xlsx")
    shown = disclosure_controlled(result) if suppress else result
    table = _marked(shown.table, result.table) if suppress else shown.table
    series = shown.series
    if suppress and shown.series is not None and result.series is not None:
        series = _marked(shown.series, result.series)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".xlsx":
        from pbc.reports.benchmark_workbook import about_rows, benchmark_workbook

        benchmark_workbook(
            out, result.indicator, result.level, table, series,
            about_rows(about(result.indicator, suppressed=suppress,
                             financial_year=result.financial_year)),
            organisation=result.organisation or "(not given)", financial_year=result.financial_year,
            source=result.source or result.indicator.source, names=result.names,
            notes=[f"Disclosure control: {DISCLOSURE_NOTE}."] if suppress else [
                "Not disclosure controlled: for the commissioner's own analysts only."])
        return [out]
    spreadsheet_safe(table).to_csv(out, index=False)
    written = [out]
    if series is not None:
        monthly = out.with_name(f"{out.stem}_monthly.csv")
        spreadsheet_safe(series).to_csv(monthly, index=False)
        written.append(monthly)
    return written


def write_charts(result: BenchmarkResult, folder: Path, *, highlight: str | None = None,
                 fmt: str = "svg", suppress: bool = True) -> list[Path]:
    """Funnel (not for costs per head), caterpillar, deciles over time and, for the
    highlighted unit (default: the first), its SPC chart, as ``fmt`` (svg, png, html, json).

    Charts leave the commissioner: by default they are drawn from
    :func:`disclosure_controlled` (a unit whose count is suppressed is not drawn, nor its
    suppressed months); ``suppress=False`` for the commissioner's own analysts only.
    """
    from pbc.indicators.charts import (
        caterpillar_chart,
        deciles_chart,
        funnel_chart,
        save_chart,
        spc_chart,
    )

    if fmt not in ("svg", "png", "html", "json"):
        raise WarehouseError(f"chart format {fmt!r}: use svg, png, html or json")
    if suppress:
        result = disclosure_controlled(result)
    ind, table = result.indicator, result.table
    key = table.columns[1]
    units = table[key].astype(str).tolist()
    if highlight is not None and highlight not in units:
        raise WarehouseError(f"--highlight {highlight!r} is not a {key} in this benchmark")
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{ind.id}_{result.level}"
    charts: list[tuple[str, Any]] = []
    if ind.kind != "cost_per_head":
        charts.append(("funnel", funnel_chart(table, ind, highlight=highlight)))
    charts.append(("caterpillar", caterpillar_chart(table, ind, highlight=highlight)))
    if result.series is not None and len(result.series):
        charts.append(("deciles", deciles_chart(result.series, ind, highlight=highlight)))
        unit = highlight or units[0]
        charts.append((f"spc_{unit}", spc_chart(result.series, ind, unit)))
    return [save_chart(chart, folder / f"{stem}_{name}.{fmt}") for name, chart in charts]
