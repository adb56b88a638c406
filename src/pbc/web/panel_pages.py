"""The dashboards' benchmark and restatement panels.

Each panel is a page of its own and, asked for by htmx (``HX-Request``), the fragment the
practice and group dashboards load into themselves after they are drawn, so the position is
on screen at once and the slower benchmarks follow:

* ``/practices/{code}/benchmarks`` and ``/groups/{code}/benchmarks``: for each headline
  indicator (:data:`PANEL_INDICATORS`), the holder's value with its 95% interval and how it
  compares with the commissioner, the funnel plot of every practice (or group) with the
  holder highlighted, and the holder's monthly XmR chart (NHS England, *Making Data
  Count*), all from ``pbc benchmark`` (:func:`pbc.services.benchmarking.benchmark_indicator`)
  drawn by the same chart code as the command line (:mod:`pbc.indicators.charts`). The other
  units on the funnel are disclosure-controlled as every file that leaves the commissioner
  (counts 1-7 suppressed, their points not drawn) unless the viewer is the commissioner;
  the holder's own figures are its own patients' activity and are shown whole.
* ``/practices/{code}/restatements`` and ``/groups/{code}/restatements``: what later
  deliveries changed in the holder's frozen months (``pbc monitor restatements``,
  :func:`pbc.services.freeze.restatements`), with CSV and Excel downloads.

Who may see them: a practice's benchmarks, its own users, its group's lead and the
commissioner (as its budget); a group's, the group and the commissioner; restatements, the
holder itself and the commissioner (the service's own rule).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from pbc.reports.workbook import Column
from pbc.warehouse import WarehouseError
from pbc.web import auth
from pbc.web.auth import Viewer
from pbc.web.la_pages import PageTable, named_table
from pbc.web.pages import (
    _names,
    _sorting,
    cached,
    may_see_holder,
    page_or_rows,
    period_of,
    refusals,
    render,
    table_response,
    warehouse_of,
)

router = APIRouter()

#: the indicators on the dashboards' benchmark panel: emergency admissions and A&E use
#: (the budget's largest risk), and outpatient follow-ups per first attendance (the
#: classic redesign target of practice-based commissioning)
PANEL_INDICATORS = ("emergency_admissions", "ae_attendances", "outpatient_follow_up_ratio")
LEVELS = {"practices": "practice", "groups": "group"}


# ------------------------------------------------------------------ benchmarks
@dataclass
class Panel:
    """One indicator of the panel, as the page shows it."""

    id: str
    title: str
    unit: str
    year: str
    reading: str
    funnel: str | None  # Vega-Lite JSON, or None (no funnel for a cost per head)
    spc: str | None  # Vega-Lite JSON, or None (no monthly series for the holder)
    note: str


def _benchmark(request: Request, indicator_id: str, level: str) -> Any:
    """``pbc benchmark --indicator ID --level LEVEL`` with its monthly series: the whole
    result and the disclosure-controlled one (the same for every viewer, so cached once)."""
    from pbc.services.benchmarking import benchmark_indicator, disclosure_controlled

    def compute() -> Any:
        whole = benchmark_indicator(warehouse_of(request), indicator_id, level=level)  # type: ignore[arg-type]
        return whole, disclosure_controlled(whole)

    return cached(request, ("panel-benchmark", indicator_id, level), compute)


def _json(chart: Any) -> str:
    return json.dumps(chart.to_dict()).replace("</", "<\\/")


def _reading(row: pd.Series | None, ind: Any, places: int) -> str:
    if row is None or pd.isna(row.get("value")):
        return "No value for this year."
    text = (f"{float(row['value']):,.{places}f} {ind.unit} (95% interval "
            f"{float(row['lower_95']):,.{places}f} to {float(row['upper_95']):,.{places}f})")
    sig = row.get("significance")
    return text + (f"; compared with the commissioner: {sig}." if isinstance(sig, str) and sig
                   else ".")


def panel(request: Request, v: Viewer, indicator_id: str, level: str, code: str) -> Panel:
    """The holder's panel for one indicator: its reading, the funnel with the holder
    highlighted (others disclosure-controlled unless the viewer is the commissioner), and
    its own XmR chart."""
    from pbc.indicators.charts import caterpillar_chart, funnel_chart, spc_chart, unit_column

    whole, controlled = _benchmark(request, indicator_id, level)
    ind = whole.indicator
    drawn = whole if v.principal.role == "commissioner" else controlled
    key = unit_column(whole.table)
    units = whole.table[key].astype(str)
    mine = whole.table[units == code]
    row = mine.iloc[0] if len(mine) else None
    places = 2 if ind.kind in ("ratio", "cost_per_head") or ind.multiplier == 1 else 1
    table = drawn.table.copy()
    if row is not None:  # the holder's own figures whole, whatever is suppressed for others
        table = pd.concat([table[table[key].astype(str) != code], mine], ignore_index=True)
    highlight = code if row is not None else None

    def charts() -> tuple[str | None, str | None]:
        funnel = _json(caterpillar_chart(table, ind, highlight=highlight)
                       if ind.kind == "cost_per_head"
                       else funnel_chart(table, ind, highlight=highlight))
        series = whole.series
        spc = None
        if series is not None and len(series) and \
                (series[unit_column(series)].astype(str) == code).any():
            spc = _json(spc_chart(series, ind, code))
        return funnel, spc

    funnel, spc = cached(request, ("panel-charts", auth.role_key(v.principal), indicator_id,
                                   level, code), charts)
    others = "every" if drawn is whole else "each"
    note = (f"{others.capitalize()} {level} of the commissioner on the funnel"
            + ("" if drawn is whole else "; counts from 1 to 7 of other "
               f"{level}s are suppressed and their points not drawn") + ".")
    return Panel(ind.id, ind.title, ind.unit, str(whole.financial_year or ""),
                 _reading(row, ind, places), funnel, spc, note)


def _holder(request: Request, kind: str, code: str) -> tuple[str, str]:
    level = LEVELS.get(kind)
    if level is None:
        raise WarehouseError(f"/{kind}: no such page")
    kinds = "practices" if level == "practice" else "groups"
    return level, _names(request)[kinds].get(code, "")


def benchmarks(request: Request, kind: str, code: str) -> HTMLResponse:
    v = auth.viewer(request)
    level, name = _holder(request, kind, code)
    may_see_holder(request, v, level, code, "benchmarks")
    panels = [panel(request, v, i, level, code) for i in PANEL_INDICATORS]
    ctx: dict[str, Any] = {"panels": panels, "level": level, "code": code, "name": name,
                           "kind": kind}
    if request.headers.get("HX-Request"):
        return render(request, "_benchmark_panels.html", v, **ctx)
    return render(request, "benchmarks.html", v, **ctx)


# ------------------------------------------------------------------ restatements
RESTATEMENT_COLUMNS = [
    Column("period", "Frozen month"), Column("service_line", "Service line"),
    Column("old", "Spend to date when frozen", "money"),
    Column("new", "Spend to date now", "money"),
    Column("difference", "Restated by", "money"), Column("why", "Why")]


def restatements_table(request: Request, v: Viewer, kind: str, code: str,
                       month: str | None) -> PageTable:
    """The holder's restatements up to ``month`` (the service's frame, the holder's rows)."""
    from pbc.monitoring.position import in_pounds
    from pbc.services.freeze import restatements

    level, _ = _holder(request, kind, code)
    p = v.principal
    who_may = f"{level}:{code} and the commissioner"
    if p.role in ("practice", "group") and (p.role != level or p.organisation != code):
        raise auth.deny(request, v, f"{p} may not see {level} {code}'s restatements",
                        who_may)
    period = period_of(request, month)
    with refusals(request, v, who_may):
        report = cached(request, ("restatements", auth.role_key(p), period),
                        lambda: restatements(warehouse_of(request), p, period))
    frame = report.frame
    frame = frame[(frame.level == level) & (frame.code == code)]
    frame = in_pounds(frame, ["old", "new", "difference"]).reset_index(drop=True)
    frozen = ", ".join(sorted({f.period for f in report.frozen})) or "none"
    return PageTable(f"{level}-restatements",
                     f"Restatements of the frozen months up to {period} (frozen: {frozen})",
                     frame, RESTATEMENT_COLUMNS, code, period, {"month": period},
                     filter_on="service_line", base=f"/{kind}/{code}/restatements")


def restatements_page(request: Request, kind: str, code: str,
                      month: str | None = None) -> HTMLResponse:
    v = auth.viewer(request)
    t = _sorting(request, restatements_table(request, v, kind, code, month))
    level, name = _holder(request, kind, code)
    if request.headers.get("HX-Request") and not request.query_params.get("table"):
        return render(request, "_restatements_panel.html", v, table=t, level=level,
                      code=code, kind=kind)
    return page_or_rows(request, "restatements.html", v, [t], level=level, code=code,
                        name=name, kind=kind)


def restatements_download(request: Request, kind: str, code: str, name: str, fmt: str,
                          month: str | None = None) -> Response:
    v = auth.viewer(request)
    t = restatements_table(request, v, kind, code, month)
    return table_response(request, v, named_table(v, [t], name), fmt)


for _kind in LEVELS:
    def _routes(kind: str) -> None:
        @router.get(f"/{kind}/{{code}}/benchmarks", response_class=HTMLResponse,
                    name=f"{kind}_benchmarks")
        def _benchmarks(request: Request, code: str) -> HTMLResponse:
            return benchmarks(request, kind, code)

        @router.get(f"/{kind}/{{code}}/restatements", response_class=HTMLResponse,
                    name=f"{kind}_restatements")
        def _restatements(request: Request, code: str, month: str | None = None
                          ) -> HTMLResponse:
            return restatements_page(request, kind, code, month)

        @router.get(f"/{kind}/{{code}}/restatements/download/{{name}}.{{fmt}}",
                    name=f"{kind}_restatements_download")
        def _download(request: Request, code: str, name: str, fmt: str,
                      month: str | None = None) -> Response:
            return restatements_download(request, kind, code, name, fmt, month)

    _routes(_kind)
