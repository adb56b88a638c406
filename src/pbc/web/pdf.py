"""A practice's or group's monthly pack as a PDF, and as the Excel pack, from the web app.

The PDF is the Excel pack (:func:`pbc.reports.monitoring_pack.write_pack`, ``pbc monitor
--xlsx``) laid out for print: the summary in words and figures, the position by service
line, the main variance drivers, restatements and freed resources, with the cumulative
chart (forecast and its 80% fan) drawn to PNG by vl-convert. WeasyPrint renders the HTML
template ``pdf_pack.html`` with the machine's own fonts: nothing is fetched from the
internet. The same access rules apply as to the dashboards: the pack is built by
:func:`pbc.services.monitoring_pack.build_packs` for the signed-in principal, and a pack
the principal may not see is a 403 written to the audit log.

Routes: ``/practices/{code}/pack.pdf``, ``/practices/{code}/pack.xlsx``,
``/groups/{code}/pack.pdf`` and ``/groups/{code}/pack.xlsx`` (``?month=YYYY-MM``).
"""

from __future__ import annotations

import base64
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from pbc.monitoring.drivers import DIMENSION_LABELS, DIMENSIONS
from pbc.monitoring.position import TOTAL
from pbc.services.monitoring_pack import HolderPack, PackSet
from pbc.web import auth
from pbc.web.pages import holder_pack

TEMPLATES = Path(__file__).resolve().parent / "templates"
PDF = "application/pdf"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
router = APIRouter()
_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape())


def _pounds(pence: Any) -> str:
    """Pence (int) as £1,234.56; blank for none."""
    if pence is None or (not isinstance(pence, str) and pd.isna(pence)):
        return ""
    d = (Decimal(int(pence)) / 100).quantize(Decimal("0.01"))
    return f"-£{-d:,.2f}" if d < 0 else f"£{d:,.2f}"


def _summary(ps: PackSet, pack: HolderPack) -> list[tuple[str, str]]:
    """The Excel pack's Summary sheet as (label, text) rows."""
    from pbc.reports.monitoring_pack import summary_rows

    out = []
    for label, value in summary_rows(ps, pack):
        if isinstance(value, tuple):
            amount = value[0]
            text = "" if amount is None else (
                f"-£{-amount:,.2f}" if amount < 0 else f"£{amount:,.2f}")
        else:
            text = str(value)
        out.append((label, text))
    return out


def chart_png(ps: PackSet, pack: HolderPack, *, source: str) -> bytes:
    """The cumulative chart (as on the dashboard) drawn to PNG by vl-convert (no internet)."""
    import vl_convert

    from pbc.reports.monitoring_pack import cumulative_chart

    spec = cumulative_chart(ps, pack, source=source).to_dict()
    png: bytes = vl_convert.vegalite_to_png(spec, scale=2)
    return png


def pack_html(ps: PackSet, pack: HolderPack, *, source: str, drivers_shown: int = 8) -> str:
    """The pack as one HTML document for print (template ``pdf_pack.html``)."""
    from pbc.budgets.explain import line_name
    from pbc.reports.monitoring_pack import MONTH_NAMES

    lines = pack.position[pack.position.service_line != TOTAL]
    total = pack.position[pack.position.service_line == TOTAL]
    position = [{"line": line_name(str(r["service_line"])),
                 **{k: _pounds(r[k]) for k in ("annual_budget", "budget_to_date",
                                               "spend_to_date", "variance",
                                               "forecast_outturn")}}
                for r in pd.concat([lines, total]).to_dict("records")]
    if position:
        position[-1]["line"] = "Total"
    drivers = []
    for dim in DIMENSIONS:
        d = pack.drivers.get(dim)
        if d is None or not len(d):
            continue
        shown = d.reindex(d.variance.abs().sort_values(ascending=False).index
                          ).head(drivers_shown)
        drivers.append({"by": DIMENSION_LABELS.get(dim, dim), "rows": [
            {"label": line_name(str(r["label"])) if dim == "service_line" else str(r["label"]),
             **{k: _pounds(r[k]) for k in ("budget_to_date", "spend_to_date", "variance",
                                           "volume_effect", "price_effect")}}
            for r in shown.to_dict("records")]})
    ledger = [{"year": str(r["financial_year"]), "basis": str(r["outturn_basis"]),
               **{k: _pounds(r[k]) for k in ("budget", "outturn", "freed", "reinvestable",
                                             "drawn", "closing")}}
              for r in pack.ledger.to_dict("records")]
    restatements = [{"month": str(r.get("month", "")), "line": str(r.get("service_line", "")),
                     "old": _pounds(r.get("old")), "new": _pounds(r.get("new")),
                     "why": str(r.get("why", ""))}
                    for r in pack.restatements.to_dict("records")]
    p = ps.position
    chart = base64.b64encode(chart_png(ps, pack, source=source)).decode("ascii")
    return _env.get_template("pdf_pack.html").render(
        holder=f"{pack.code} {pack.name}".strip(), level=pack.level, code=pack.code,
        period=p.period, financial_year=p.financial_year,
        month_name=MONTH_NAMES[p.month - 1], summary=_summary(ps, pack), position=position,
        drivers=drivers, ledger=ledger, restatements=restatements, chart=chart,
        source=source, notes=[ps.backtest_note, *ps.drivers_notes])


def pack_pdf(ps: PackSet, pack: HolderPack, *, source: str) -> bytes:
    """The pack as PDF bytes (WeasyPrint)."""
    from weasyprint import HTML

    pdf: bytes = HTML(string=pack_html(ps, pack, source=source)).write_pdf()
    return pdf


# ------------------------------------------------------------------ routes
def _source(request: Request) -> str:
    return f"pbc warehouse {auth.settings_of(request).warehouse.name}"


def _attachment(data: bytes, media: str, name: str) -> Response:
    return Response(data, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _pdf(request: Request, level: str, code: str, month: str | None) -> Response:
    v = auth.viewer(request)
    ps, pack = holder_pack(request, v, level, code, month)
    data = pack_pdf(ps, pack, source=_source(request))
    return _attachment(data, PDF, f"pbc-pack-{level}-{code}-{ps.position.period}.pdf")


def _xlsx(request: Request, level: str, code: str, month: str | None) -> Response:
    from pbc.reports.monitoring_pack import write_pack

    v = auth.viewer(request)
    ps, pack = holder_pack(request, v, level, code, month)
    name = f"pbc-pack-{level}-{code}-{ps.position.period}.xlsx"
    with tempfile.TemporaryDirectory() as tmp:
        data = write_pack(ps, pack, Path(tmp) / name, source=_source(request)).read_bytes()
    return _attachment(data, XLSX, name)


@router.get("/practices/{code}/pack.pdf")
def practice_pack_pdf(request: Request, code: str, month: str | None = None) -> Response:
    return _pdf(request, "practice", code, month)


@router.get("/practices/{code}/pack.xlsx")
def practice_pack_xlsx(request: Request, code: str, month: str | None = None) -> Response:
    return _xlsx(request, "practice", code, month)


@router.get("/groups/{code}/pack.pdf")
def group_pack_pdf(request: Request, code: str, month: str | None = None) -> Response:
    return _pdf(request, "group", code, month)


@router.get("/groups/{code}/pack.xlsx")
def group_pack_xlsx(request: Request, code: str, month: str | None = None) -> Response:
    return _xlsx(request, "group", code, month)
