"""Indicator pages: every practice on a funnel plot, hover to identify, click through.

``/indicators`` lists the library (``pbc benchmark --list``); ``/indicators/{id}?year=`` is
``pbc benchmark --indicator ID`` at practice level, drawn with the same chart
specification the CLI writes (:func:`pbc.indicators.charts.funnel_chart`; the caterpillar
chart for a cost per head, which has no funnel). Everything on the page is the
disclosure-controlled result (:func:`pbc.services.benchmarking.disclosure_controlled`), as
every file that leaves the commissioner: counts of events from 1 to 7 and the figures
derived from them are shown as ``*`` and their practices are not drawn. The viewer's own
practice is highlighted; a point links to the practice's dashboard only where the viewer
may open it (the commissioner: every practice; a practice: its own).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from pbc.reports.workbook import Column
from pbc.warehouse import WarehouseError
from pbc.web import auth
from pbc.web.auth import Viewer
from pbc.web.la_pages import SUPPRESSED, PageTable, named_table
from pbc.web.pages import (
    _names,
    _sorting,
    cached,
    page_or_rows,
    render,
    table_response,
    warehouse_of,
)

router = APIRouter()
ID = re.compile(r"^[a-z0-9_]{1,80}$")
YEAR = re.compile(r"^[0-9]{4}[-/][0-9]{2}$")
#: the columns of the page's table: (key, label) in the benchmark table
FIGURES = (("numerator", "Numerator"), ("denominator", "Denominator"), ("value", "Value"),
           ("lower_95", "95% lower"), ("upper_95", "95% upper"))


def _library() -> dict[str, Any]:
    from pbc.services.benchmarking import list_indicators

    return {i.id: i for i in list_indicators()}


@router.get("/indicators", response_class=HTMLResponse)
def indicators(request: Request) -> HTMLResponse:
    v = auth.viewer(request)
    rows = [{"id": i.id, "title": i.title, "unit": i.unit,
             "why": " ".join(i.why_it_matters.split()).split(". ")[0].rstrip(".") + "."}
            for i in _library().values()]
    return render(request, "indicator_list.html", v, rows=rows)


def _result(request: Request, indicator_id: str, year: str | None) -> Any:
    """The disclosure-controlled benchmark (one per indicator and year for every viewer:
    it holds nothing a viewer may not see)."""
    from pbc.services.benchmarking import benchmark_indicator, disclosure_controlled

    def compute() -> Any:
        whole = benchmark_indicator(warehouse_of(request), indicator_id, level="practice",
                                    financial_year=year, monthly=False)
        return whole, disclosure_controlled(whole)

    return cached(request, ("benchmark", indicator_id, year), compute)


def _may_open(v: Viewer) -> set[str] | None:
    """The practices whose dashboards the viewer may open (None: every practice)."""
    p = v.principal
    if p.role == "commissioner":
        return None
    return {p.organisation} if p.role == "practice" else set()


def _number(x: Any, places: int) -> str:
    return "" if x is None or pd.isna(x) else f"{float(x):,.{places}f}"


def indicator_table(request: Request, v: Viewer, indicator_id: str, year: str | None
                    ) -> tuple[Any, PageTable, Any]:
    from pbc.services.benchmarking import _marked

    if not ID.match(indicator_id) or indicator_id not in _library():
        raise WarehouseError(f"there is no indicator {indicator_id!r}: see /indicators")
    if year is not None and not YEAR.match(year):
        raise WarehouseError(f"year {year!r}: give a financial year such as 2025-26")
    whole, shown = _result(request, indicator_id, year)
    ind = shown.indicator
    marked = _marked(shown.table, whole.table)
    places = 2 if ind.kind in ("ratio", "cost_per_head") or ind.multiplier == 1 else 1
    names = _names(request)["practices"]
    own = v.principal.organisation if v.principal.role == "practice" else None
    rows = []
    for r in marked.to_dict("records"):
        code = str(r["practice"])
        row = {"practice": code, "name": names.get(code, "")
               + (" (your practice)" if code == own else "")}
        for key, _ in FIGURES:
            x = r.get(key)
            row[key] = x if x == SUPPRESSED else _number(
                x, 0 if key in ("numerator", "denominator") else places)
        row["significance"] = "" if pd.isna(r.get("significance")) else r["significance"]
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["practice", "name", *(k for k, _ in FIGURES),
                                        "significance"])
    params = {"year": year} if year else {}
    table = PageTable(
        f"indicator-{indicator_id}", f"{ind.title}, {shown.financial_year}: every practice "
        f"with its 95% interval ({ind.unit}; * suppressed)", frame,
        [Column("practice", "Practice"), Column("name", "Name"),
         *(Column(k, label, "general") for k, label in FIGURES),
         Column("significance", "Compared with the commissioner")],
        v.principal.organisation, shown.financial_year or "", params, filter_on="practice",
        base=f"/indicators/{indicator_id}")
    return shown, table, ind


def funnel_spec(v: Viewer, shown: Any) -> tuple[str, int]:
    """The CLI's chart (funnel; caterpillar for a cost per head) as Vega-Lite JSON, the
    viewer's practice highlighted, each point linking to a dashboard the viewer may open;
    and how many practices it draws."""
    from pbc.indicators.charts import caterpillar_chart, funnel_chart

    ind, table = shown.indicator, shown.table
    units = set(table["practice"].astype(str))
    own = v.principal.organisation if v.principal.role == "practice" else None
    highlight = own if own in units else None
    chart = (caterpillar_chart(table, ind, highlight=highlight)
             if ind.kind == "cost_per_head" else funnel_chart(table, ind, highlight=highlight))
    spec = chart.to_dict()
    may, drawn = _may_open(v), 0
    for layer in spec.get("layer", []):
        if layer.get("name") != "points":
            continue
        data = layer.get("data") or spec.get("data") or {}
        values = data["values"] if "values" in data else \
            spec.get("datasets", {}).get(data.get("name", ""), [])
        drawn += len(values)
        for point in values:
            unit = str(point.get("unit"))
            point["href"] = f"/practices/{unit}" if may is None or unit in may else None
        layer["encoding"]["href"] = {"field": "href", "type": "nominal"}
    return json.dumps(spec).replace("</", "<\\/"), drawn


@router.get("/indicators/{indicator_id}", response_class=HTMLResponse)
def indicator(request: Request, indicator_id: str, year: str | None = None) -> HTMLResponse:
    v = auth.viewer(request)
    shown, table, ind = indicator_table(request, v, indicator_id, year)
    chart, drawn = cached(request, ("indicator-chart", auth.role_key(v.principal),
                                    indicator_id, year), lambda: funnel_spec(v, shown))
    return page_or_rows(request, "indicator_page.html", v, [_sorting(request, table)],
                        ind=ind,
                        year=shown.financial_year, chart=chart, drawn=drawn,
                        hidden=len(shown.table) - drawn,
                        kind="caterpillar" if ind.kind == "cost_per_head" else "funnel")


@router.get("/indicators/{indicator_id}/download/{name}.{fmt}")
def indicator_download(request: Request, indicator_id: str, name: str, fmt: str,
                       year: str | None = None) -> Response:
    v = auth.viewer(request)
    _, table, _ = indicator_table(request, v, indicator_id, year)
    return table_response(request, v, named_table(v, [table], name), fmt)
