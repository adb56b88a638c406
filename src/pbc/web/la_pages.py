"""The local authority's view and the group dashboard: pooled budgets, neighbourhood profiles
(suppressed), shared clients, cases awaiting the council's response.

``/councils/{code}`` is ``pbc la register`` (the agreements the council is a partner of,
with each one's settlement from ``pbc la pooled`` for the year being monitored), ``pbc la
profile`` and ``pbc la shared-clients`` for that council, and the business cases waiting
for its consultation response (``pbc case list``). A council officer sees only its own
council (``local_authority:CODE``); the commissioner sees any council of its economy (the
services decide that). Every figure comes from the services' disclosure-controlled
aggregates: counts 1-7 are never shown (``*``), and no patient-level row reaches the page.

``/groups/{code}`` is ``pbc monitor --level group`` (the group's position and forecast
fan), its freed resources, its business cases, and its member practices' positions (``pbc
monitor --level practice --as group:CODE``: the practices that are members of the group in
the year, which the monitoring service shows to the group's lead and the commissioner), each
linked to its dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from pbc.reports.workbook import Column
from pbc.web import auth
from pbc.web.auth import Forbidden, Viewer
from pbc.web.pages import (
    COMMISSIONER_ROLES,
    MONEY,
    POSITION_COLUMNS,
    Table,
    _key,
    _names,
    _sorting,
    cached,
    cases_table,
    chart_spec,
    holder_pack,
    page_or_rows,
    period_of,
    pounds,
    refusals,
    table_response,
    warehouse_of,
)

router = APIRouter()
SUPPRESSED = "*"


@dataclass
class PageTable(Table):
    """A table whose downloads are served under its page (``{base}/download/NAME.FMT``)."""

    base: str = ""
    #: a row's first cell (a code) -> the page it links to (only pages the viewer may see)
    row_links: dict[str, str] = field(default_factory=dict)

    def link(self, fmt: str) -> str:
        plain = super().link(fmt)
        return self.base + plain


def named_table(v: Viewer, tables: list[Table], name: str) -> Table:
    for t in tables:
        if t.name == name:
            return t
    raise Forbidden(v.principal, f"there is no table {name!r} to download")


def _with_marker(frame: pd.DataFrame, hidden: pd.Series, columns: list[str]) -> pd.DataFrame:
    """Suppressed cells shown as ``*`` (never the count), as the workbooks show them."""
    out = frame.copy()
    for c in columns:
        out[c] = out[c].astype(object).where(~hidden.to_numpy(bool), SUPPRESSED)
    return out


# ------------------------------------------------------------------ councils
def _may_see_council(request: Request, v: Viewer, code: str) -> None:
    """A council's own officer, or a commissioner role (whose economy the services check);
    nobody else (403, audited)."""
    p = v.principal
    if (p.role == "local_authority" and p.organisation == code) or p.role in COMMISSIONER_ROLES:
        return
    raise auth.deny(request, v, f"{p} may not see council {code}'s pages",
                    f"local_authority:{code} and the commissioner")


def _month(request: Request, v: Viewer) -> tuple[str, int] | None:
    """The year and month being monitored (None when no budgets are set yet)."""
    from pbc.services.monitoring import parse_period
    from pbc.warehouse import WarehouseError

    try:
        return parse_period(period_of(request, None))
    except WarehouseError:
        return None


def pooled_tables(request: Request, v: Viewer, code: str) -> tuple[Table, Table, list[str]]:
    """The register rows the council is a partner to and each agreement's settlement for
    the monitored year (``pbc la register``, ``pbc la pooled --month``)."""
    from pbc.services.pooled import (
        PooledError,
        pooled_position,
        register,
        settlement_frame,
        stored_agreement,
    )

    store = auth.store_of(request)
    with refusals(request, v, f"local_authority:{code} and the commissioner"):
        rows = [r for r in register(store, v.principal)
                if code in {p.split(" ")[0] for p in r.partners.split(", ")}]
    frame = pd.DataFrame([r.as_dict() for r in rows],
                         columns=["reference", "name", "version", "host", "partners", "rule",
                                  "scope", "financial_year", "contributions"])
    notes: list[str] = []
    settlements = []
    at = _month(request, v)
    fy, month = at if at is not None else ("", 0)
    for r in rows:
        if r.financial_year != fy:
            continue

        def position(reference: str = r.reference) -> Any:
            return pooled_position(warehouse_of(request), v.principal,
                                   stored_agreement(store, v.principal, reference), fy,
                                   month=month, store=store)

        try:
            with refusals(request, v, f"the partners of {r.reference}"):
                pos = cached(request, ("pooled", _key(v.principal), r.reference, r.version,
                                       at), position)
        except PooledError as e:
            notes.append(f"{r.reference}: no settlement: {e}")
            continue
        notes += [f"{r.reference}: {n}" for n in pos.notes]
        if pos.settlement is not None:
            s = settlement_frame(pos.settlement)
            settlements.append(s.assign(reference=r.reference, basis=pos.basis))
    settled = pd.concat(settlements, ignore_index=True) if settlements else pd.DataFrame(
        columns=["reference", "partner", "contribution", "share_of_variance", "bears",
                 "keeps", "final_position", "basis"])
    base = f"/councils/{code}"
    register_t = PageTable(
        "la-register", f"Pooled budget agreements {code} is a partner of", frame,
        [Column("reference", "Reference"), Column("name", "Name"),
         Column("version", "Version", "general"), Column("host", "Host"),
         Column("partners", "Partners"), Column("rule", "Sharing rule"),
         Column("financial_year", "Year"), Column("contributions", "Contributions", "money")],
        code, "every year", filter_on="reference", base=base)
    settle_t = PageTable(
        "la-settlement", "Each partner's share of the pooled budget's variance (forecast "
        "settlement at the month being monitored)", settled,
        [Column("reference", "Agreement"), Column("partner", "Partner"),
         Column("contribution", "Contribution", "money"),
         Column("share_of_variance", "Share of variance", "money"),
         Column("bears", "Bears", "money"), Column("keeps", "Keeps", "money"),
         Column("final_position", "Final position", "money"), Column("basis", "Basis")],
        code, at[0] if at else "", base=base)
    return register_t, settle_t, notes


def profile_table(request: Request, v: Viewer, code: str) -> tuple[Table, Any]:
    """The council's neighbourhood profile (``pbc la profile``), suppressed cells ``*``."""
    from pbc.services import profiles

    with refusals(request, v, f"local_authority:{code} and its commissioner"):
        profile = cached(request, ("la-profile", _key(v.principal), code),
                         lambda: profiles.neighbourhood_profile(warehouse_of(request), code,
                                                                v.principal))
    frame = profile.frame()
    shown = _with_marker(frame, frame["suppressed"].astype(bool),
                         ["count", "denominator", "value", "lower_95", "upper_95"])
    for c in ("value", "lower_95", "upper_95"):
        shown[c] = [x if x == SUPPRESSED or x is None or pd.isna(x) else f"{float(x):,.1f}"
                    for x in shown[c]]
    return PageTable(
        "la-profile", f"Neighbourhood profiles of {profile.la_name} ({code}), "
        f"{profile.financial_year} (* suppressed)", shown,
        [Column("measure", "Measure"), Column("breakdown", "Breakdown"),
         Column("neighbourhood_code", "Neighbourhood"), Column("count", "Count", "general"),
         Column("denominator", "Denominator", "general"), Column("value", "Rate", "general"),
         Column("lower_95", "95% lower", "general"), Column("upper_95", "95% upper", "general"),
         Column("compared_with_local_authority", "Against the council")],
        code, profile.financial_year, filter_on="measure",
        base=f"/councils/{code}"), profile


def shared_clients_table(request: Request, v: Viewer, code: str) -> tuple[Table, list[str]]:
    """The council's shared clients (``pbc la shared-clients``), suppressed cells ``*``."""
    from pbc.services import shared_clients as svc

    with refusals(request, v, f"local_authority:{code} and the commissioner"):
        report = cached(request, ("la-shared", _key(v.principal), code),
                        lambda: svc.shared_clients_report(warehouse_of(request), v.principal,
                                                          code))
    frame = report.rows
    shown = _with_marker(frame, frame["suppressed"].astype(bool),
                         ["people", "nhs_cost", "social_care_cost"])
    admissions = shown["emergency_admissions"].astype(object)
    shown["emergency_admissions"] = [
        "" if r["table"] != "opportunity" else SUPPRESSED if a is None or pd.isna(a) else a
        for r, a in zip(shown.to_dict("records"), admissions, strict=True)]
    for c in ("nhs_cost", "social_care_cost"):
        shown[c] = [x if x == SUPPRESSED else pounds(x) for x in shown[c]]
    return PageTable(
        "la-shared-clients", f"Shared clients of {code} (known to the NHS and to social "
        f"care), {report.financial_year} (* suppressed)", shown,
        [Column("table", "By"), Column("code", "What"), Column("care_type", "Care type"),
         Column("people", "People", "general"), Column("nhs_cost", "NHS cost", "general"),
         Column("social_care_cost", "Social care cost", "general"),
         Column("emergency_admissions", "Emergency admissions", "general")],
        code, report.financial_year, filter_on="code",
        base=f"/councils/{code}"), svc.summary_lines(report)


def council_tables(request: Request, v: Viewer, code: str
                   ) -> tuple[list[Table], list[str], list[str], Any]:
    _may_see_council(request, v, code)
    register_t, settle_t, pooled_notes = pooled_tables(request, v, code)
    profile_t, profile = profile_table(request, v, code)
    shared_t, shared_lines = shared_clients_table(request, v, code)
    cases = cases_table(request, v)
    cases.frame = cases.frame[cases.frame.status == "consultation"].reset_index(drop=True)
    cases.caption = f"Business cases awaiting {code}'s consultation response"
    cases = PageTable(**{**cases.__dict__, "name": "la-cases"}, base=f"/councils/{code}")
    return ([register_t, settle_t, profile_t, shared_t, cases], pooled_notes, shared_lines,
            profile)


@router.get("/councils/{code}", response_class=HTMLResponse)
def council(request: Request, code: str) -> HTMLResponse:
    v = auth.viewer(request)
    tables, pooled_notes, shared_lines, profile = council_tables(request, v, code)
    tables = [_sorting(request, t) for t in tables]
    return page_or_rows(request, "la_council.html", v, tables, code=code,
                        name=profile.la_name, pooled_notes=pooled_notes,
                        shared_lines=shared_lines, profile_notes=profile.notes)


@router.get("/councils/{code}/download/{name}.{fmt}")
def council_download(request: Request, code: str, name: str, fmt: str) -> Response:
    v = auth.viewer(request)
    tables, *_ = council_tables(request, v, code)
    return table_response(request, v, named_table(v, tables, name), fmt)


# ------------------------------------------------------------------ groups
def _may_see_group(request: Request, v: Viewer, code: str) -> None:
    p = v.principal
    if (p.role == "group" and p.organisation == code) or p.role == "commissioner":
        return
    raise auth.deny(request, v, f"{p} may not see group {code}'s dashboard",
                    f"group:{code} (the group's lead) and the commissioner")


def group_tables(request: Request, v: Viewer, code: str, month: str | None
                 ) -> tuple[Any, Any, list[Table], list[str]]:
    """The group's pack (``pbc monitor --level group``), its member practices' positions
    (``pbc monitor --level practice``, the members of the group in the year, as the
    monitoring service shows them to the group's lead and the commissioner), freed
    resources and business cases."""
    from pbc.monitoring.position import TOTAL, in_pounds
    from pbc.services.monitoring import monthly_position
    from pbc.warehouse import WarehouseError
    _may_see_group(request, v, code)
    period = period_of(request, month)
    packs, pack = holder_pack(request, v, "group", code, month)
    notes: list[str] = []
    try:
        with refusals(request, v, f"group:{code} (the group's lead) and the commissioner"):
            pos = cached(request, ("members", _key(v.principal), period, code),
                         lambda: monthly_position(warehouse_of(request), v.principal, period,
                                                  level="practice", members_of=code))
        frame = in_pounds(pos.frame[pos.frame.service_line == TOTAL])
    except WarehouseError as e:
        notes.append(f"No member practice's position: {e}.")
        frame = pd.DataFrame(columns=["code", *MONEY])
    names = _names(request)["practices"]
    frame = frame.assign(name=[names.get(str(c), "") for c in frame.code])
    params = {"month": packs.position.period}
    base = f"/groups/{code}"
    position = in_pounds(pack.position).rename(columns={"service_line": "line"})
    ledger = in_pounds(pack.ledger, ["budget", "outturn", "freed", "reinvestable", "opening",
                                     "drawn", "lapsed", "closing"])
    cases = cases_table(request, v, proposer=code)
    tables: list[Table] = [
        PageTable("group-position", f"Group {code}: position by service line at the end "
                  f"of {packs.position.period}", position,
                  [Column("line", "Service line"), *POSITION_COLUMNS], code,
                  packs.position.period, params, filter_on="line", base=base),
        PageTable("group-members", f"Member practices of {code}: position at the end of "
                  f"{packs.position.period}", frame.reset_index(drop=True),
                  [Column("code", "Practice"), Column("name", "Name"), *POSITION_COLUMNS],
                  code, packs.position.period, params, filter_on="code", base=base,
                  # the service gave exactly the practices the viewer may see: each links
                  # to its dashboard (its case finding stays with the practice)
                  row_links={str(c): f"/practices/{c}" for c in frame.code}),
        PageTable("group-freed", "Freed resources", ledger,
                  [Column("financial_year", "Year"), Column("budget", "Budget", "money"),
                   Column("outturn", "Outturn", "money"),
                   Column("outturn_basis", "Outturn basis"),
                   Column("freed", "Freed", "money"),
                   Column("reinvestable", "Reinvestable", "money"),
                   Column("drawn", "Drawn", "money"), Column("closing", "Closing", "money")],
                  code, packs.position.period, params, base=base),
        PageTable(**{**cases.__dict__, "name": "group-cases"}, base=base),
    ]
    return packs, pack, tables, notes


@router.get("/groups/{code}", response_class=HTMLResponse)
def group_dashboard(request: Request, code: str, month: str | None = None) -> HTMLResponse:
    from pbc.reports.monitoring_pack import cumulative_chart

    v = auth.viewer(request)
    packs, pack, tables, notes = group_tables(request, v, code, month)
    tables = [_sorting(request, t) for t in tables]
    total = pack.position[pack.position.service_line == "all"].iloc[0]
    return page_or_rows(request, "group_dashboard.html", v, tables, code=code,
                        name=pack.name, period=packs.position.period, notes=notes,
                        total={k: Decimal(int(total[k])) / 100 for k in MONEY},
                        chart=cached(request, ("chart", _key(v.principal),
                                               packs.position.period, "group", code),
                                     lambda: chart_spec(cumulative_chart(
                                         packs, pack, source="pbc warehouse"))))


@router.get("/groups/{code}/download/{name}.{fmt}")
def group_download(request: Request, code: str, name: str, fmt: str,
                   month: str | None = None) -> Response:
    v = auth.viewer(request)
    _, _, tables, _ = group_tables(request, v, code, month)
    return table_response(request, v, named_table(v, tables, name), fmt)
