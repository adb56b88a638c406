"""The monthly monitoring pack as an Excel workbook, and its cumulative spend chart.

One workbook per budget holder (practice or group) or for the commissioner, in the house
style of :mod:`pbc.reports.workbook`, sheets in this order:

1. **Summary**: in words and figures: budget, spend to date, variance, the forecast
   outturn with its method and the ratio model's 80% interval, freed resources forecast,
   the main drivers, restatements and how good the forecast was last year;
2. **Position**: budget, spend to date, variance and forecast by service line (the totals
   row is the holder's position to the penny);
3. **Months**: Apr..Mar phased budget and spend, running totals, the forecast path and its
   80% fan (the chart's figures);
4. **Drivers** by service line, HRG chapter, provider and risk segment: volume and price
   effects that add up to the variance (:mod:`pbc.monitoring.drivers`);
5. **Restatements** (or a sheet saying there are none);
6. **Freed resources**: the reinvestment ledger;
7. **Back-test**: each method's error on last year;
8. the commissioner's pack adds **Practices**: every practice's position.

The chart (:func:`cumulative_chart`) is cumulative spend against cumulative phased budget
by month, with the forecast line and its 80% fan to March, written beside the workbook as
SVG (to read) and its Vega-Lite JSON specification (for the web app).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd

from pbc.budgets.explain import line_name
from pbc.monitoring.drivers import DIMENSION_LABELS, DIMENSIONS
from pbc.monitoring.position import TOTAL
from pbc.reports.workbook import MONTH_LABELS, Column, TitleBlock, Workbook
from pbc.services.monitoring_pack import HolderPack, PackSet

#: chart files written beside a pack
CHART_SUFFIXES = (".svg", ".json")
LEVEL_WORDS = {"practice": "practice", "group": "group", "commissioner": "commissioner"}
METHOD_WORDS = {"run_rate": "run rate", "seasonal_run_rate": "run rate with last year's "
                "monthly profile", "ratio_model": "ratio model (random effects)"}


def pounds(pence: Any) -> Decimal | None:
    """Integer pence as Decimal pounds (two places); None stays None."""
    if pence is None or (not isinstance(pence, str) and pd.isna(pence)):
        return None
    return (Decimal(int(pence)) / 100).quantize(Decimal("0.01"))


def _money(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    out = frame.copy()
    for c in columns:
        out[c] = pd.Series([pounds(v) for v in out[c]], index=out.index, dtype=object)
    return out


#: months of the financial year in words (1 = April)
MONTH_NAMES = ("April", "May", "June", "July", "August", "September", "October", "November",
               "December", "January", "February", "March")


def _fmt(pence: int) -> str:
    v = pounds(pence) or Decimal(0)
    return f"-£{-v:,.2f}" if v < 0 else f"£{v:,.2f}"


def _holder(pack: HolderPack) -> str:
    return f"{pack.code} {pack.name}".strip()


def _period_words(ps: PackSet) -> str:
    p = ps.position
    month = MONTH_LABELS[p.month - 1]
    return (f"{p.financial_year}, April to the end of {month} ({p.period}, month {p.month})")


def _version_words(ps: PackSet) -> str:
    p = ps.position
    status = "agreed" if p.budget_status == "agreed" else "DRAFT, not yet agreed"
    return f"Budget version {p.budget_version} ({status})"


def title_block(ps: PackSet, pack: HolderPack, source: str) -> TitleBlock:
    return TitleBlock(title="Monthly monitoring pack",
                      organisation=f"{_holder(pack)} ({LEVEL_WORDS[pack.level]})",
                      period=_period_words(ps), source=source, version=_version_words(ps))


def _total(pack: HolderPack) -> dict[str, Any]:
    rows = pack.position[pack.position.service_line == TOTAL]
    return {str(k): v for k, v in rows.iloc[0].to_dict().items()} if len(rows) else {}


def _driver_words(pack: HolderPack, n: int = 3) -> str:
    parts = []
    for dim in ("service_line", "hrg_chapter", "provider"):
        d = pack.drivers.get(dim)
        if d is None or d.empty:
            continue
        top = d.iloc[0]
        label = line_name(str(top.label)) if dim == "service_line" else str(top.label)
        parts.append(f"{_in_sentence(DIMENSION_LABELS[dim])} {label}: variance "
                     f"{_fmt(int(top.variance))} (volume {_fmt(int(top.volume_effect))}, "
                     f"price {_fmt(int(top.price_effect))})")
    return "; ".join(parts[:n]) or "no variance to explain"


def _in_sentence(words: str) -> str:
    """``Service line`` -> ``service line``; ``HRG chapter`` keeps its capitals."""
    return words if words[:2].isupper() else words[0].lower() + words[1:]


def _backtest_words(ps: PackSet, pack: HolderPack) -> str:
    bt = pack.backtest
    here = bt[bt.month == ps.position.month] if len(bt) else bt
    if here.empty:
        return ps.backtest_note
    errs = ", ".join(f"{METHOD_WORDS[str(r.method)]} {r.mean_absolute_percentage_error:.1f}%"
                     for r in here.itertuples())
    return (f"at month {ps.position.month} last year the outturn forecasts were out by, on "
            f"average over {int(here.holders.max()):,} {LEVEL_WORDS[pack.level]}"
            f"{'' if int(here.holders.max()) == 1 else 's'}: {errs}")


def summary_rows(ps: PackSet, pack: HolderPack) -> list[tuple[str, Any]]:
    t = _total(pack)
    p = ps.position
    rows: list[tuple[str, Any]] = [
        ("Budget holder", f"{_holder(pack)} ({LEVEL_WORDS[pack.level]})"),
        ("Position at", f"the end of {MONTH_LABELS[p.month - 1]} {p.period[:4]}: month "
                        f"{p.month} of {p.financial_year}"),
        ("Budget version", _version_words(ps)),
    ]
    if not t:
        return [*rows, ("Position", "no budget or spend this year")]
    variance = int(t["variance"])
    budget_to_date = int(t["budget_to_date"])
    share = f" ({variance / budget_to_date:+.1%} of the budget to date)" if budget_to_date \
        else ""
    rows += [
        ("Annual budget", (pounds(t["annual_budget"]), "money")),
        ("Budget to date", (pounds(budget_to_date), "money")),
        ("Spend to date", (pounds(t["spend_to_date"]), "money")),
        ("Variance to date (spend - budget)", (pounds(variance), "money")),
        ("In words", (f"{_fmt(abs(variance))} {'overspent' if variance > 0 else 'underspent'}"
                      f" to date{share}" if variance else "on budget to date")),
    ]
    outturn = t.get("forecast_outturn")
    method = METHOD_WORDS.get(str(t["forecast_method"]), str(t["forecast_method"]))
    if outturn is None or pd.isna(outturn):
        rows.append(("Forecast outturn", f"none by the {method}: {t.get('forecast_note')}"))
    else:
        rows += [("Forecast outturn", (pounds(outturn), "money")),
                 ("Forecast method", method),
                 ("Forecast variance at year end",
                  (pounds(int(outturn) - int(t["annual_budget"])), "money"))]
    if pack.interval is not None:
        centre, lo, hi = pack.interval
        rows.append(("80% interval of the outturn",
                     f"{_fmt(lo)} to {_fmt(hi)} (ratio model; its outturn {_fmt(centre)})"))
    else:
        rows.append(("80% interval of the outturn",
                     "none: the ratio model needs last year's spend and two months of this "
                     "year"))
    own = pack.ledger[pack.ledger.code == pack.code] if pack.level != "commissioner" \
        else pack.ledger
    if len(own):
        rows += [("Freed resources forecast", (pounds(int(own.freed.sum())), "money")),
                 ("Reinvestable", (pounds(int(own.reinvestable.sum())), "money")),
                 ("Reinvestable share", f"{ps.rule.share:.0%} of freed resources"
                                        " (practice-based commissioning: at least 70%)")]
    rows += [("Main drivers", _driver_words(pack)),
             ("Restatements", f"{len(pack.restatements)} (see Restatements)"
                              if len(pack.restatements) else "none"),
             ("Forecast accuracy last year", _backtest_words(ps, pack))]
    return rows


POSITION_COLUMNS = [
    Column("service_line", "Service line"), Column("annual_budget", "Annual budget", "money"),
    Column("budget_to_date", "Budget to date", "money"),
    Column("spend_to_date", "Spend to date", "money"),
    Column("variance", "Variance (spend - budget)", "money"),
    Column("forecast_outturn", "Forecast outturn", "money", total=False),
    Column("forecast_lower", "Forecast lower (80%)", "money", total=False),
    Column("forecast_upper", "Forecast upper (80%)", "money", total=False),
    Column("forecast_note", "Forecast note"),
]
MONTH_SHEET_COLUMNS = [
    Column("label", "Month"), Column("budget", "Phased budget", "money"),
    Column("spend", "Spend", "money"), Column("variance", "Variance", "money"),
    Column("cumulative_budget", "Budget, running total", "money", total=False),
    Column("cumulative_spend", "Spend, running total", "money", total=False),
    Column("forecast_cumulative", "Forecast running total", "money", total=False),
    Column("fan_lower", "Forecast lower (80%)", "money", total=False),
    Column("fan_upper", "Forecast upper (80%)", "money", total=False),
]
DRIVER_COLUMNS = [
    Column("label", "Segment"), Column("budget_to_date", "Budget to date", "money"),
    Column("spend_to_date", "Spend to date", "money"),
    Column("variance", "Variance", "money"), Column("volume_effect", "Volume effect", "money"),
    Column("price_effect", "Price effect", "money"),
    Column("price_basis", "Planned unit cost from"),
]
RESTATEMENT_SHEET_COLUMNS = [
    Column("month", "Month"), Column("level", "Level"), Column("code", "Code"),
    Column("service_line", "Service line"), Column("old", "Old", "money", total=False),
    Column("new", "New", "money", total=False),
    Column("difference", "Difference", "money"), Column("why", "Why"),
]
LEDGER_SHEET_COLUMNS = [
    Column("code", "Code"), Column("name", "Name"), Column("financial_year", "Year"),
    Column("budget", "Budget", "money"), Column("outturn", "Outturn", "money"),
    Column("outturn_basis", "Outturn basis"), Column("freed", "Freed", "money"),
    Column("reinvestable", "Reinvestable", "money"), Column("opening", "Opening", "money"),
    Column("drawn", "Drawn", "money"), Column("lapsed", "Lapsed", "money"),
    Column("closing", "Closing", "money"),
]
BACKTEST_SHEET_COLUMNS = [
    Column("label", "Forecast made at"), Column("method_words", "Method"),
    Column("holders", "Holders", "count", total=False),
    Column("mape", "Mean absolute % error", "percent"),
    Column("mdape", "Median absolute % error", "percent"),
    Column("interval_coverage", "Outturns inside the 80% interval", "percent"),
    Column("own", "This holder's absolute % error", "percent"),
]
PRACTICE_COLUMNS = [
    Column("code", "Practice"), Column("name", "Name"),
    Column("annual_budget", "Annual budget", "money"),
    Column("budget_to_date", "Budget to date", "money"),
    Column("spend_to_date", "Spend to date", "money"), Column("variance", "Variance", "money"),
    Column("forecast_outturn", "Forecast outturn", "money"),
    Column("forecast_lower", "Forecast lower (80%)", "money", total=False),
    Column("forecast_upper", "Forecast upper (80%)", "money", total=False),
]
MONEY = ["annual_budget", "budget_to_date", "spend_to_date", "variance", "forecast_outturn",
         "forecast_lower", "forecast_upper"]


def write_pack(ps: PackSet, pack: HolderPack, path: Path, *, source: str,
               drivers_shown: int = 25) -> Path:
    """Write one holder's pack to ``path`` (atomically) and return it."""
    title = title_block(ps, pack, source)
    with Workbook(path, title) as wb:
        wb.summary("Summary", summary_rows(ps, pack), notes=[
            "Money in pounds; spend is the tariff value before the emergency marginal rate, "
            "the measure the budgets were set on.",
            "A positive variance is an overspend."])
        lines = pack.position[pack.position.service_line != TOTAL]
        t = _total(pack)
        wb.table("Position", _money(lines, MONEY), POSITION_COLUMNS, notes=[
            "The totals row is the whole position. The forecast of the total is made on the "
            "total's own monthly series: "
            + (_fmt(int(t["forecast_outturn"])) if t and not pd.isna(t["forecast_outturn"])
               else "none") + " (see Summary)."])
        months = pack.months.assign(label=list(MONTH_LABELS))
        wb.table("Months", _money(months, ["budget", "spend", "variance", "cumulative_budget",
                                           "cumulative_spend", "forecast_cumulative",
                                           "fan_lower", "fan_upper"]),
                 MONTH_SHEET_COLUMNS, notes=[
                     f"Forecast: {METHOD_WORDS[ps.position.method]}; the 80% fan is the "
                     "ratio model's prediction interval of the running total. Spend and "
                     "variance are to date: their totals are the position's."])
        for dim in DIMENSIONS:
            d = pack.drivers.get(dim, pd.DataFrame(columns=[c.key for c in DRIVER_COLUMNS]))
            shown = d.head(drivers_shown)
            if dim == "service_line":
                shown = shown.assign(label=[line_name(str(x)) for x in shown.label])
            rest = d.iloc[drivers_shown:]
            notes = ["Volume effect = (activity - planned activity) x last year's unit cost; "
                     "price effect = activity x (unit cost - last year's). The two add up "
                     "to the variance (docs/monitoring.md, variance drivers)."]
            if len(rest):
                other: dict[str, Any] = {"label": f"{len(rest)} others", "price_basis": ""}
                for c in ("budget_to_date", "spend_to_date", "variance", "volume_effect",
                          "price_effect"):
                    other[c] = int(rest[c].sum())
                shown = pd.concat([shown, pd.DataFrame([other])], ignore_index=True)
            if dim == "risk_segment":
                notes += ps.drivers_notes
            words = DIMENSION_LABELS[dim].replace("Service", "service").replace(
                "Provider", "provider").replace("Risk", "risk")
            wb.table(f"Drivers - {words}",
                     _money(shown, ["budget_to_date", "spend_to_date", "variance",
                                    "volume_effect", "price_effect"]), DRIVER_COLUMNS,
                     heading=f"Variance drivers by {words}",
                     notes=notes)
        if pack.restatements.empty:
            wb.summary("Restatements", [("Restatements", "no restatements: no figure of an "
                                         "earlier month has changed since it was shown")])
        else:
            wb.table("Restatements", _money(pack.restatements, ["old", "new", "difference"]),
                     RESTATEMENT_SHEET_COLUMNS)
        money = ["budget", "outturn", "freed", "reinvestable", "opening", "drawn", "lapsed",
                 "closing"]
        wb.table("Freed resources", _money(pack.ledger, money), LEDGER_SHEET_COLUMNS,
                 notes=[f"Freed = budget - outturn where positive; reinvestable = "
                        f"{ps.rule.share:.0%} of it, rounded up to the penny; drawn only "
                        "against approved plans (pbc freed-resources --plans)."])
        bt = pack.backtest.assign(
            label=[MONTH_LABELS[int(m) - 1] for m in pack.backtest.month],
            method_words=[METHOD_WORDS[str(m)] for m in pack.backtest.method],
            mape=pack.backtest.mean_absolute_percentage_error / 100,
            mdape=pack.backtest.median_absolute_percentage_error / 100,
            own=pack.backtest.holder_absolute_percentage_error.astype(float) / 100)
        wb.table("Back-test", bt, BACKTEST_SHEET_COLUMNS, totals=None,
                 notes=[ps.backtest_note])
        if pack.level == "commissioner" and not ps.holders.empty:
            wb.table("Practices", _money(ps.holders, MONEY), PRACTICE_COLUMNS,
                     heading="Every practice's position")
    return path


def cumulative_chart(ps: PackSet, pack: HolderPack, *, source: str) -> alt.TopLevelMixin:
    """Cumulative spend against the cumulative phased budget by month, the forecast line
    and its 80% fan to March (Vega-Lite, data inline)."""
    months: list[dict[str, Any]] = [{str(k): v for k, v in r.items()}
                                    for r in pack.months.to_dict("records")]
    p = ps.position
    rows = []
    for r in months:
        label = MONTH_LABELS[int(r["month"]) - 1]
        for series, key in (("Phased budget", "cumulative_budget"),
                            ("Spend", "cumulative_spend"), ("Forecast", "forecast_cumulative")):
            if r[key] is not None:
                rows.append({"month": label, "order": int(r["month"]), "series": series,
                             "pounds": float(pounds(r[key]) or 0)})
    lines = pd.DataFrame(rows)
    fan = pd.DataFrame([{"month": MONTH_LABELS[int(r["month"]) - 1], "order": int(r["month"]),
                         "lower": float(pounds(r["fan_lower"]) or 0),
                         "upper": float(pounds(r["fan_upper"]) or 0)}
                        for r in months if r["fan_lower"] is not None])
    x = alt.X("month:N", sort=list(MONTH_LABELS), title=f"Month of {p.financial_year}")
    colours = alt.Scale(domain=["Phased budget", "Spend", "Forecast"],
                        range=["#425563", "#005EB8", "#005EB8"])
    line = alt.Chart(lines).mark_line(point=True).encode(
        x=x, y=alt.Y("pounds:Q", title="Cumulative £"),
        color=alt.Color("series:N", scale=colours, title=None,
                        legend=alt.Legend(orient="top-left")),
        strokeDash=alt.StrokeDash("series:N", scale=alt.Scale(
            domain=["Phased budget", "Spend", "Forecast"],
            range=[[4, 2], [1, 0], [6, 3]]), legend=None),
        tooltip=["series:N", "month:N", alt.Tooltip("pounds:Q", format=",.2f")])
    title = alt.TitleParams(
        f"{_holder(pack)}: cumulative spend against phased budget, {p.financial_year}, "
        f"April to {MONTH_NAMES[p.month - 1]} (month {p.month})",
        subtitle=[f"Forecast: {METHOD_WORDS[p.method]}; shaded: 80% interval (ratio model). "
                  f"Source: {source}"])
    layers: list[alt.Chart] = []
    if not fan.empty:
        layers.append(alt.Chart(fan).mark_area(opacity=0.25, color="#41B6E6").encode(
            x=x, y="lower:Q", y2="upper:Q",
            tooltip=["month:N", alt.Tooltip("lower:Q", format=",.2f"),
                     alt.Tooltip("upper:Q", format=",.2f")]))
    layers.append(line)
    return alt.layer(*layers).properties(width=640, height=320, title=title)


def write_chart(ps: PackSet, pack: HolderPack, workbook: Path, *, source: str) -> list[Path]:
    """Write the chart beside ``workbook`` (``<stem>-cumulative.svg`` and ``.json``)."""
    from pbc.indicators.charts import save_chart

    chart = cumulative_chart(ps, pack, source=source)
    return [save_chart(chart, workbook.with_name(f"{workbook.stem}-cumulative{suffix}"))
            for suffix in CHART_SUFFIXES]


def write_packs(ps: PackSet, out: Path, *, source: str, charts: bool = True) -> list[Path]:
    """Write the packs of ``ps``: ``out`` is the workbook when there is one holder, else a
    folder with ``<level>-<code>.xlsx`` per holder; each with its chart beside it."""
    out = Path(out)
    written: list[Path] = []
    if len(ps.packs) == 1:
        if out.suffix.lower() != ".xlsx":
            raise ValueError(f"{out}: a workbook name ends .xlsx")
        targets = [(ps.packs[0], out)]
    else:
        if out.suffix.lower() == ".xlsx":
            raise ValueError(
                f"{out} is one workbook, but the position has {len(ps.packs)} "
                f"{ps.position.frame.level.iloc[0]}s: give a folder for one pack each, or "
                "--level commissioner for the commissioner's summary")
        targets = [(p, out / f"{p.level}-{p.code}.xlsx") for p in ps.packs]
    for pack, path in targets:
        written.append(write_pack(ps, pack, path, source=source))
        if charts:
            written += write_chart(ps, pack, path, source=source)
    return written
