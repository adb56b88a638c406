"""The server-rendered pages (Jinja2 templates in the NHS.UK frontend's look, htmx).

Every page calls the same service as the command line, with the signed-in principal
(:mod:`pbc.web.auth`): the commissioner overview is ``pbc monitor --level practice`` and
``--level group`` for the commissioner, the practice dashboard is the practice's monitoring
pack (``pbc monitor --xlsx``), the case-finding list is ``pbc risk list``, the budget
explainer is ``pbc budgets explain``, the decision queue is ``pbc case list``. A service
that refuses (:class:`~pbc.services.principal.AccessDenied`) gives a 403 page saying who may
see it, and the attempt is written to the audit log. Every table downloads as CSV and as an
Excel workbook in the house style (:mod:`pbc.reports.workbook`).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pandas as pd
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from pbc.reports.workbook import Column, TitleBlock, Workbook
from pbc.services.accounts import (
    AccountError,
    Throttled,
    check_password,
    end_session,
    start_session,
)
from pbc.services.principal import AccessDenied, Principal
from pbc.warehouse import Warehouse, WarehouseError
from pbc.warehouse.export import spreadsheet_safe
from pbc.web import auth
from pbc.web.auth import Forbidden, Viewer

TEMPLATES = Path(__file__).resolve().parent / "templates"
templates = Jinja2Templates(directory=TEMPLATES)
router = APIRouter()

COMMISSIONER_ROLES = ("commissioner", "commissioner_approver", "commissioner_data")
MONEY = ("annual_budget", "budget_to_date", "spend_to_date", "variance", "forecast_outturn")


# ------------------------------------------------------------------ formatting
def pounds(value: Any) -> str:
    """£1,234.56 (negative: -£1,234.56); blank for no value."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    d = Decimal(str(value)).quantize(Decimal("0.01"))
    return f"-£{-d:,.2f}" if d < 0 else f"£{d:,.2f}"


def shown(value: Any, kind: str) -> str:
    if kind == "money":
        return pounds(value)
    if kind == "percent":
        return "" if value is None or pd.isna(value) else f"{float(value):.1%}"
    if value is None or (not isinstance(value, str | list) and pd.isna(value)):
        return ""
    return str(value)


templates.env.filters["pounds"] = pounds
templates.env.filters["shown"] = shown


# ------------------------------------------------------------------ tables
@dataclass
class Table:
    """One table of a page: its rows, columns (house style), caption and download name."""

    name: str
    caption: str
    frame: pd.DataFrame
    columns: list[Column]
    organisation: str
    period: str
    params: dict[str, str] = field(default_factory=dict)
    #: the column to filter with the table's search box (None: no filter)
    filter_on: str | None = None
    sort: str | None = None
    descending: bool = False
    query: str = ""
    #: the xlsx writer when the CLI has its own (e.g. the case-finding workbook)
    xlsx: Callable[[Path], Path] | None = None
    #: rows shown at once (None: every row); the downloads always hold every row
    page_size: int | None = None
    page: int = 1

    def link(self, fmt: str) -> str:
        q = urlencode(self.params)
        return f"/download/{self.name}.{fmt}" + (f"?{q}" if q else "")

    @property
    def pages(self) -> int:
        if not self.page_size:
            return 1
        return max(1, -(-len(self.frame) // self.page_size))

    def shown_frame(self) -> pd.DataFrame:
        """The rows of the page shown (all of them for a table without pages)."""
        if not self.page_size:
            return self.frame
        start = (min(self.page, self.pages) - 1) * self.page_size
        return self.frame.iloc[start:start + self.page_size]

    def first_row(self) -> int:
        return 0 if self.frame.empty else (min(self.page, self.pages) - 1) * (
            self.page_size or 0) + 1

    def last_row(self) -> int:
        return self.first_row() - 1 + len(self.shown_frame()) if len(self.frame) else 0

    def rows(self) -> list[list[str]]:
        return [[shown(r[c.key], c.kind) for c in self.columns]
                for r in self.shown_frame().to_dict("records")]

    def page_link(self, path: str, page: int) -> str:
        """This table's page ``page``, sorted and filtered as now."""
        q = {"table": self.name, **self.params, "page": str(page)}
        if self.sort:
            q.update(sort=self.sort, dir="desc" if self.descending else "asc")
        if self.query:
            q["q"] = self.query
        return f"{path}?{urlencode(q)}"


#: rows per page of a long table (the overview's practices and groups)
PAGE_SIZE = 50


def _sorted_filtered(t: Table, sort: str | None, descending: bool, q: str, page: int = 1
                     ) -> Table:
    frame = t.frame
    if q and t.filter_on:
        mask = frame[t.filter_on].astype(str).str.contains(q, case=False, regex=False)
        if "name" in frame.columns:
            mask |= frame["name"].astype(str).str.contains(q, case=False, regex=False)
        frame = frame[mask]
    keys = {c.key for c in t.columns}
    if sort in keys:
        frame = frame.sort_values(sort, ascending=not descending, kind="stable",
                                  key=lambda s: s.map(_sort_key))
    t.frame, t.sort, t.descending, t.query = frame.reset_index(drop=True), sort, descending, q
    t.page = max(1, page)
    return t


def _sort_key(v: Any) -> Any:
    if isinstance(v, Decimal | int | float):
        return float(v)
    return v


# ------------------------------------------------------------------ context
@contextmanager
def refusals(request: Request, v: Viewer, who_may: str) -> Iterator[None]:
    """A service's refusal becomes a 403 page, with its audit row."""
    try:
        yield
    except AccessDenied as e:
        raise auth.deny(request, v, str(e), who_may) from e


#: results kept per app (the warehouse version and the decision store's audit head in the
#: key, so a new load, budget or decision is seen at once); oldest dropped first
CACHE_SIZE = 256
_CACHE_LOCK = threading.Lock()
#: audit rows that change no service's result: a refused request (a 403 writes one) or a
#: new password must not make every page compute again
UNCHANGING_ACTIONS = ("access_denied", "set_password")


def data_version(request: Request) -> tuple[str, int | None]:
    """What the cached results depend on, read once per request: the warehouse version
    (the ``current`` link's target, without reading the manifest) and the last audit row
    that may change a result. Read from the store and the warehouse on every request, so
    every worker process sees a new load, budget or decision at its next request."""
    known: tuple[str, int | None] | None = getattr(request.state, "pbc_data_version", None)
    if known is None:
        known = read_data_version(auth.settings_of(request).warehouse, auth.store_of(request))
        request.state.pbc_data_version = known
    return known


def read_data_version(warehouse: Path, store: Any) -> tuple[str, int | None]:
    from sqlalchemy import select

    from pbc.decisions.models import AuditEvent

    try:
        version = os.readlink(warehouse / "current")
    except OSError:
        version = ""
    with store._session() as s:
        head = s.scalar(select(AuditEvent.id).where(AuditEvent.action.not_in(
            UNCHANGING_ACTIONS)).order_by(AuditEvent.id.desc()).limit(1))
    return version, head


def cached(request: Request, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    """A service's result for ``key`` (which names the principal's role and organisation
    and the arguments), computed once per warehouse version and audit head
    (:func:`data_version`).

    Concurrent first requests for one key wait for the one computing it (one computation,
    not one per user); a computation that raises (a refusal, say) is not kept, and the
    next request tries again."""
    return remember(request.app.state, (*key, *data_version(request)), compute)


def remember(state: Any, full: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    """The app's cache under its full key (single flight, at most CACHE_SIZE results)."""
    with _CACHE_LOCK:
        cache: dict[tuple[Any, ...], Any] | None = getattr(state, "pbc_cache", None)
        if cache is None:
            cache = state.pbc_cache = {}
            state.pbc_cache_locks = {}
        if full in cache:
            return cache[full]
        key_lock = state.pbc_cache_locks.setdefault(full, threading.Lock())
    with key_lock:  # single flight: the others wait, then find the value
        with _CACHE_LOCK:
            if full in cache:
                return cache[full]
        value = compute()
        with _CACHE_LOCK:
            while len(cache) >= CACHE_SIZE:
                cache.pop(next(iter(cache)))
            cache[full] = value
            state.pbc_cache_locks.pop(full, None)
    return value


def _key(p: Principal) -> tuple[str, str]:
    """The part of a cache key that names who asks: the services' results depend on the
    role and the organisation, not on the user's name, so the users of one practice (or the
    commissioner's analysts) share them; access is still checked on every request."""
    return (p.role, p.organisation)


def warehouse_of(request: Request) -> Warehouse:
    return Warehouse(auth.settings_of(request).warehouse)


def period_of(request: Request, month: str | None) -> str:
    """``?month=YYYY-MM``, else the last month with priced activity in the latest year
    that has budgets."""
    from pbc.calendar import parse_financial_year
    from pbc.services.monitoring import latest_month, parse_period

    if month:
        parse_period(month)
        return month
    years = cached(request, ("budget_years",), lambda: sorted(
        {str(v.financial_year) for v in auth.store_of(request).all_versions()}))
    if not years:
        raise WarehouseError("no budgets are set yet: pbc budgets set --policy FILE")
    fy = years[-1]
    m = cached(request, ("latest_month", fy),
               lambda: latest_month(warehouse_of(request), fy)) or 1
    start = parse_financial_year(fy)
    year, calendar_month = (start, m + 3) if m <= 9 else (start + 1, m - 9)
    return f"{year}-{calendar_month:02d}"


def nav(p: Principal) -> list[tuple[str, str]]:
    """The header's links for a role (each page still checks access itself)."""
    if p.role == "commissioner":
        return [("/overview", "Overview"), ("/indicators", "Indicators"),
                ("/cases", "Business cases")]
    if p.role == "group":
        return [(f"/groups/{p.organisation}", "Group dashboard"), ("/indicators", "Indicators"),
                ("/cases", "Business cases")]
    if p.role == "local_authority":
        return [(f"/councils/{p.organisation}", "Council"), ("/cases", "Business cases")]
    if p.role in COMMISSIONER_ROLES:
        return [("/cases", "Business cases")]
    if p.role == "practice":
        base = f"/practices/{p.organisation}"
        return [(base, "Dashboard"), (f"{base}/budget", "Budget explained"),
                (f"{base}/case-finding", "Case finding"), ("/indicators", "Indicators"),
                ("/cases", "Business cases")]
    return []


def render(request: Request, template: str, v: Viewer | None, status_code: int = 200,
           **ctx: Any) -> HTMLResponse:
    hollow = getattr(request.state, "pbc_hollow", False)  # a page kept whole: whole_page
    ctx.update(viewer=v, nav=nav(v.principal) if v else [],
               csrf=HOLE_CSRF if hollow else v.session.csrf_token if v else "",
               viewer_name=HOLE_USER if hollow else v.principal.user if v else "",
               path=request.url.path)
    return templates.TemplateResponse(request, template, ctx, status_code=status_code)


def page_or_rows(request: Request, template: str, v: Viewer, tables: list[Table],
                 **ctx: Any) -> HTMLResponse:
    """The page, or only the table htmx asked for (``HX-Request`` with ``?table=``)."""
    wanted = request.query_params.get("table")
    if request.headers.get("HX-Request") and wanted:
        t = next(t for t in tables if t.name == wanted)
        return render(request, "_table.html", v, table=t)
    return render(request, template, v, tables=tables, **ctx)


#: the two parts of a page that belong to the user, not to the role: the CSRF token of its
#: forms and the name in its header. A page kept whole (:func:`whole_page`) is rendered with
#: these in their place and each request puts its own back
HOLE_CSRF, HOLE_USER = "pbc-hole-csrf-5c1d0f", "pbc-hole-user-5c1d0f"


def whole_page(request: Request, v: Viewer, page: Callable[[Viewer], HTMLResponse]
               ) -> HTMLResponse:
    """A landing page's HTML, rendered once per role and organisation (with the roles the
    user may choose among), URL and data version (:func:`cached`): measured at 10% of
    England, rendering was half a warm page's time. ``page(viewer)`` checks access and
    renders, as the viewer; :func:`render` then writes placeholders where the user's CSRF
    token and name go, and each request puts its own user's back (so no user's token or
    name is ever kept). A refusal is not kept (the next request is refused, and audited,
    again). An htmx request for one table is rendered each time."""
    if request.headers.get("HX-Request"):
        return page(v)
    roles = tuple(sorted(auth.role_key(p) for p in v.roles))
    key = ("page", request.url.path, request.url.query, _key(v.principal), roles)

    def render_once() -> tuple[int, str]:
        request.state.pbc_hollow = True
        try:
            response = page(v)
        finally:
            request.state.pbc_hollow = False
        return response.status_code, bytes(response.body).decode("utf-8")

    status, body = cached(request, key, render_once)
    return HTMLResponse(body.replace(HOLE_CSRF, v.session.csrf_token).replace(
        HOLE_USER, html.escape(v.principal.user or "")), status_code=status)


def _sorting(request: Request, t: Table) -> Table:
    q = request.query_params
    if q.get("table") not in (None, t.name):
        return t
    page = q.get("page", "1")
    return _sorted_filtered(t, q.get("sort"), q.get("dir") == "desc", q.get("q", "").strip(),
                            int(page) if page.isdigit() else 1)


def chart_spec(chart: Any) -> str:
    """An Altair chart's Vega-Lite specification as JSON, for vega-embed; ``</`` escaped so
    the JSON can sit inside a script element."""
    return json.dumps(chart.to_dict()).replace("</", "<\\/")


# ------------------------------------------------------------------ errors
def install(app: FastAPI) -> None:
    """The pages' error pages: sign-in redirect, role choice, 403 (with who may)."""

    @app.exception_handler(auth.NotSignedIn)
    async def _login(request: Request, exc: auth.NotSignedIn) -> Response:
        if request.headers.get("HX-Request"):
            return Response(status_code=401, headers={"HX-Redirect": auth.login_url(exc.path)})
        return RedirectResponse(auth.login_url(exc.path), status_code=303)

    @app.exception_handler(auth.ChooseRole)
    async def _role(request: Request, exc: auth.ChooseRole) -> Response:
        return RedirectResponse("/role", status_code=303)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        return templates.TemplateResponse(
            request, "denied.html", {"message": exc.message, "who_may": exc.who_may,
                                     "viewer": None, "nav": [], "csrf": "",
                                     "path": request.url.path}, status_code=403)

    @app.exception_handler(WarehouseError)
    async def _missing(request: Request, exc: WarehouseError) -> Response:
        return templates.TemplateResponse(
            request, "problem.html", {"message": str(exc), "viewer": None, "nav": [],
                                      "csrf": "", "path": request.url.path}, status_code=409)


# ------------------------------------------------------------------ sign-in
@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    token = auth.secrets.token_urlsafe(32)
    response = render(request, "login.html", None, login_csrf=token, next=_safe_next(next))
    auth.set_cookie(request, response, auth.LOGIN_COOKIE, token)
    return response


def _safe_next(path: str) -> str:
    """Only a path on this site (no ``//host`` or scheme): no open redirect."""
    return path if path.startswith("/") and not path.startswith("//") else "/"


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    form = await request.form()
    if not auth.check_csrf(request.cookies.get(auth.LOGIN_COOKIE, ""), form):
        return Response("The form has expired: reload the sign-in page and try again.",
                        status_code=403, media_type="text/plain")
    user, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
    nxt = _safe_next(str(form.get("next", "/")))
    settings = auth.settings_of(request)
    store = auth.store_of(request)

    def again(message: str, status: int) -> HTMLResponse:
        token = auth.secrets.token_urlsafe(32)
        response = render(request, "login.html", None, status_code=status, error=message,
                          login_csrf=token, next=nxt, username=user)
        auth.set_cookie(request, response, auth.LOGIN_COOKIE, token)
        return response

    if not user or not password:
        return again("Enter your user name and password.", 400)
    try:
        ok = check_password(store, user, password, client=auth.client_of(request),
                            failures_allowed=settings.login_failures_allowed,
                            window=dt.timedelta(minutes=settings.login_window_minutes))
    except Throttled as e:
        return again(str(e).capitalize() + ".", 429)
    if not ok:
        return again("The user name or password is not right.", 401)
    session_id, _ = start_session(store, user, idle=auth.idle(request))
    response = RedirectResponse(nxt, status_code=303)
    auth.set_cookie(request, response, auth.SESSION_COOKIE, session_id)
    auth.clear_cookie(request, response, auth.LOGIN_COOKIE)
    auth.clear_cookie(request, response, auth.ROLE_COOKIE)
    return response


async def _posted(request: Request, v: Viewer) -> Any:
    """The form of a POST, after its CSRF token is checked (403 otherwise)."""
    form = await request.form()
    if not auth.check_csrf(v.session.csrf_token, form):
        raise Forbidden(v.principal, "This form did not come from this session (its "
                        "security token is missing or wrong). Reload the page and try again.")
    return form


@router.post("/logout")
async def logout(request: Request) -> Response:
    v = auth.viewer(request, need_role=False)
    await _posted(request, v)
    end_session(auth.store_of(request), request.cookies.get(auth.SESSION_COOKIE, ""))
    response = RedirectResponse("/login", status_code=303)
    for cookie in (auth.SESSION_COOKIE, auth.ROLE_COOKIE):
        auth.clear_cookie(request, response, cookie)
    return response


@router.get("/role", response_class=HTMLResponse)
def role_form(request: Request) -> HTMLResponse:
    v = auth.viewer(request, need_role=False)
    return render(request, "role.html", v, roles=[auth.role_key(p) for p in v.roles],
                  current=request.cookies.get(auth.ROLE_COOKIE))


@router.post("/role")
async def choose_role(request: Request) -> Response:
    v = auth.viewer(request, need_role=False)
    form = await _posted(request, v)
    chosen = str(form.get("role", ""))
    if chosen not in {auth.role_key(p) for p in v.roles}:
        return render(request, "role.html", v, status_code=400,
                      roles=[auth.role_key(p) for p in v.roles], current=None,
                      error="Choose one of your roles.")
    response = RedirectResponse("/", status_code=303)
    auth.set_cookie(request, response, auth.ROLE_COOKIE, chosen)
    return response


@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> Response:
    v = auth.viewer(request)
    links = nav(v.principal)
    if links:
        return RedirectResponse(links[0][0], status_code=303)
    return render(request, "home.html", v)


# ------------------------------------------------------------------ overview
def _names(request: Request) -> dict[str, dict[str, str]]:
    from pbc.services.names import organisation_names

    names: dict[str, dict[str, str]] = cached(
        request, ("names",), lambda: organisation_names(warehouse_of(request)))
    return names


POSITION_COLUMNS = [Column("annual_budget", "Annual budget", "money"),
                    Column("budget_to_date", "Budget to date", "money"),
                    Column("spend_to_date", "Spend to date", "money"),
                    Column("variance", "Variance (spend - budget)", "money"),
                    Column("forecast_outturn", "Forecast outturn", "money")]


def position_table(request: Request, v: Viewer, level: str, month: str | None) -> Table:
    """Every holder at ``level`` the principal may see: its totals (``pbc monitor``)."""
    from pbc.monitoring.position import TOTAL, in_pounds
    from pbc.services.monitoring import monthly_position

    period = period_of(request, month)
    who_may = "a commissioner (commissioner:CODE) sees every practice and group"
    with refusals(request, v, who_may):
        pos = cached(request, ("position", _key(v.principal), period, level),
                     lambda: monthly_position(warehouse_of(request), v.principal, period,
                                              level=level))  # type: ignore[arg-type]

    def totals() -> pd.DataFrame:
        frame = in_pounds(pos.frame[pos.frame.service_line == TOTAL])
        names = _names(request)["practices" if level == "practice" else "groups"]
        return frame.assign(name=[names.get(str(c), "") for c in frame.code])

    frame = cached(request, ("position-totals", _key(v.principal), period, level), totals)
    status = "agreed" if pos.budget_status == "agreed" else "draft, not agreed"
    return Table(f"{level}s", f"{level.capitalize()}s: position at the end of {pos.period} "
                 f"(budget version {pos.budget_version}, {status})", frame,
                 [Column("code", level.capitalize()), Column("name", "Name"),
                  *POSITION_COLUMNS], pos.commissioner_code, pos.period,
                 params={"month": period}, filter_on="code", page_size=PAGE_SIZE)


def cases_table(request: Request, v: Viewer, proposer: str | None = None) -> Table:
    """The business cases the principal may see (``pbc case list``), decision queue first."""
    from pbc.services.cases import visible_cases

    with refusals(request, v, "the proposer, its commissioner and a consulted council"):
        views = visible_cases(auth.store_of(request), v.principal)
    waiting = {"submitted": 0, "consultation": 1}
    rows = [{"id": c.id, "status": c.status, "proposer": c.proposer_code, "title": c.title,
             "net_saving": Decimal(int(c.savings.get("net_pence", 0))) / 100}
            for c in sorted(views, key=lambda c: (waiting.get(c.status, 2), c.id))
            if proposer is None or c.proposer_code == proposer]
    frame = pd.DataFrame(rows, columns=["id", "status", "proposer", "title", "net_saving"])
    return Table("cases", "Business cases (awaiting a decision first)", frame,
                 [Column("id", "Case", "general"), Column("status", "Status"),
                  Column("proposer", "Proposed by"), Column("title", "Title"),
                  Column("net_saving", "Net saving", "money")],
                 proposer or v.principal.organisation, "all",
                 params={"proposer": proposer} if proposer else {}, filter_on="title")


def loads_table(request: Request, v: Viewer) -> Table:
    """Every load's reconciliation: rows in = accepted + quarantined (``pbc load``)."""
    from pbc.services.loads import reconciliation

    with refusals(request, v, "a commissioner (commissioner:CODE)"):
        frame = cached(request, ("loads", _key(v.principal)),
                       lambda: reconciliation(warehouse_of(request), v.principal))
    return Table("loads", "Data loads: rows quarantined and reconciliation", frame,
                 [Column("stage", "Stage"), Column("source_table", "Table"),
                  Column("source_file", "File"), Column("rows_in", "Rows in", "count"),
                  Column("rows_accepted", "Accepted", "count"),
                  Column("rows_quarantined", "Quarantined", "count"),
                  Column("money_in", "Money in", "money"),
                  Column("money_out", "Money out", "money"),
                  Column("reconciles", "Reconciles")],
                 v.principal.organisation, "every load", filter_on="source_table")


def overview_results(request: Request, v: Viewer, month: str | None
                     ) -> tuple[dict[str, Callable[[], Table]], Any, Any, str]:
    """The commissioner overview's tables (builders), packs, pack and chart."""
    from pbc.reports.monitoring_pack import cumulative_chart
    from pbc.services.monitoring_pack import build_packs

    builders: dict[str, Callable[[], Table]] = {
        "practices": lambda: position_table(request, v, "practice", month),
        "groups": lambda: position_table(request, v, "group", month),
        "cases": lambda: cases_table(request, v), "loads": lambda: loads_table(request, v)}
    period = period_of(request, month)
    with refusals(request, v, "a commissioner (commissioner:CODE)"):
        packs = cached(request, ("packs", _key(v.principal), period, "commissioner"),
                       lambda: build_packs(warehouse_of(request), v.principal, period,
                                           level="commissioner"))
    pack = packs.packs[0]
    chart = cached(request, ("chart", _key(v.principal), period, "commissioner"),
                   lambda: chart_spec(cumulative_chart(packs, pack, source="pbc warehouse")))
    return builders, packs, pack, chart


@router.get("/overview", response_class=HTMLResponse)
def overview(request: Request, month: str | None = None) -> HTMLResponse:
    v = auth.viewer(request)
    wanted = request.query_params.get("table")
    if request.headers.get("HX-Request") and wanted in ("practices", "groups", "cases",
                                                         "loads"):
        one = {"practices": lambda: position_table(request, v, "practice", month),
               "groups": lambda: position_table(request, v, "group", month),
               "cases": lambda: cases_table(request, v),
               "loads": lambda: loads_table(request, v)}[wanted]
        return page_or_rows(request, "overview.html", v, [_sorting(request, one())])

    def page(v: Viewer) -> HTMLResponse:
        builders, packs, pack, chart = overview_results(request, v, month)
        tables = [_sorting(request, build()) for build in builders.values()]
        return page_or_rows(request, "overview.html", v, tables, chart=chart,
                            title=f"Commissioner overview: {pack.code} {pack.name}".strip(),
                            period=packs.position.period)

    return whole_page(request, v, page)


@router.get("/cases", response_class=HTMLResponse)
def cases_page(request: Request) -> HTMLResponse:
    v = auth.viewer(request)
    t = _sorting(request, cases_table(request, v))
    return page_or_rows(request, "cases.html", v, [t])


# ------------------------------------------------------------------ practice
def holder_pack(request: Request, v: Viewer, level: str, code: str, month: str | None
                ) -> tuple[Any, Any]:
    """The monitoring pack set at ``level`` that the principal may see, and the pack of
    practice or group ``code`` in it (403 and an audit row if it is not there): the
    dashboards, the group page and the PDF and Excel packs all read it from here."""
    who_may = (f"practice:{code} and the commissioner" if level == "practice"
               else f"group:{code} and the commissioner")
    period = period_of(request, month)
    with refusals(request, v, who_may):
        packs = shared_packs_for(request, v.principal, period, level)
    pack = next((p for p in packs.packs if p.code == code), None)
    if pack is None:
        raise auth.deny(request, v, f"{v.principal} may not see {level} {code}'s position",
                        who_may)
    return packs, pack


def shared_packs_for(request: Request, who: Principal, period: str, level: str) -> Any:
    """``who``'s monitoring packs at ``level`` (practice or group): every holder's packs
    computed once per data version (:func:`pbc.services.monitoring_pack.shared_packs`; one
    holder's pack costs as much as all of them) and ``who``'s part cut from them by the
    service, under its own access rule (:func:`~pbc.services.monitoring_pack.packs_for`)."""
    from pbc.services.monitoring_pack import packs_for, shared_packs

    full = cached(request, ("shared-packs", period, level),
                  lambda: shared_packs(warehouse_of(request), period,
                                       level=level))  # type: ignore[arg-type]
    return packs_for(full, who, warehouse_of(request))


def practice_tables(request: Request, v: Viewer, code: str, month: str | None
                    ) -> tuple[Any, Any, list[Table]]:
    from pbc.monitoring.drivers import DIMENSION_LABELS
    from pbc.monitoring.position import in_pounds

    packs, pack = holder_pack(request, v, "practice", code, month)
    period, params = packs.position.period, {"month": packs.position.period}

    def frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """The pack's tables in pounds (the same for everyone who may see the pack, so
        kept once: a request then only sorts and renders them)."""
        position = in_pounds(pack.position).rename(columns={"service_line": "line"})
        drivers = pd.concat([d.assign(dimension_label=DIMENSION_LABELS.get(dim, dim))
                             for dim, d in pack.drivers.items() if len(d)] or [pd.DataFrame(
                                 columns=["dimension_label", "label", "budget_to_date",
                                          "spend_to_date", "variance"])], ignore_index=True)
        if len(drivers):
            drivers = drivers.reindex(drivers.variance.abs().sort_values(ascending=False)
                                      .index).head(15)
            drivers = in_pounds(drivers, ["budget_to_date", "spend_to_date", "variance"])
        ledger = in_pounds(pack.ledger, ["budget", "outturn", "freed", "reinvestable",
                                         "opening", "drawn", "lapsed", "closing"])
        return position, drivers, ledger

    position, drivers, ledger = cached(request, ("practice-frames", period, code), frames)
    label = "label" if "label" in drivers.columns else "segment"
    tables = [
        Table("position", f"Position by service line at the end of {period}", position,
              [Column("line", "Service line"), *POSITION_COLUMNS], code, period, params,
              filter_on="line"),
        Table("drivers", "Main variance drivers (largest first)", drivers,
              [Column("dimension_label", "By"), Column(label, "What"),
               Column("budget_to_date", "Budget to date", "money"),
               Column("spend_to_date", "Spend to date", "money"),
               Column("variance", "Variance", "money")], code, period, params),
        Table("freed", "Freed resources", ledger,
              [Column("financial_year", "Year"), Column("budget", "Budget", "money"),
               Column("outturn", "Outturn", "money"),
               Column("outturn_basis", "Outturn basis"),
               Column("freed", "Freed", "money"), Column("reinvestable", "Reinvestable",
                                                         "money"),
               Column("drawn", "Drawn", "money"), Column("closing", "Closing", "money")],
              code, period, params),
    ]
    for t in tables:
        t.name = f"practice-{t.name}"
        t.params = {**t.params, "code": code}
    return packs, pack, tables


def practice_results(request: Request, v: Viewer, code: str, month: str | None
                     ) -> tuple[Any, Any, list[Table], str]:
    """The practice dashboard's packs, pack, tables and chart."""
    from pbc.reports.monitoring_pack import cumulative_chart

    packs, pack, tables = practice_tables(request, v, code, month)
    chart = cached(request, ("chart", _key(v.principal), packs.position.period, code),
                   lambda: chart_spec(cumulative_chart(packs, pack, source="pbc warehouse")))
    return packs, pack, tables, chart


@router.get("/practices/{code}", response_class=HTMLResponse)
def practice_dashboard(request: Request, code: str, month: str | None = None) -> HTMLResponse:
    def page(v: Viewer) -> HTMLResponse:
        packs, pack, tables, chart = practice_results(request, v, code, month)
        tables = [_sorting(request, t) for t in tables]
        cases = _sorting(request, cases_table(request, v, proposer=code))
        total = pack.position[pack.position.service_line == "all"].iloc[0]
        return page_or_rows(request, "practice.html", v, [*tables, cases], code=code,
                            name=pack.name, period=packs.position.period,
                            total={k: Decimal(int(total[k])) / 100 for k in MONEY},
                            chart=chart, own=v.principal.role == "practice"
                            and v.principal.organisation == code)

    return whole_page(request, auth.viewer(request), page)


def case_finding_table(request: Request, v: Viewer, code: str) -> Table:
    """The practice's own case-finding list with reasons (``pbc risk list``)."""
    from pbc.reports.case_finding import COLUMNS
    from pbc.services import risk

    wh = warehouse_of(request)
    with refusals(request, v, f"a user of practice {code} (practice:{code}) only"):
        rows = cached(request, ("case-finding", _key(v.principal), code),
                      lambda: risk.case_finding_list(wh, v.principal, code, top_n=50))
    frame = pd.DataFrame(rows)
    if len(frame):
        frame = frame.assign(risk=frame["risk_percent"].astype(float) / 100)
    else:
        frame = pd.DataFrame(columns=[c.key for c in COLUMNS])

    def xlsx(path: Path) -> Path:
        return risk.export_case_finding(wh, v.principal, code, path, top_n=50)

    return Table("case-finding", f"Patients at highest risk of emergency admission, {code}",
                 frame, list(COLUMNS), code, "next 12 months", {"code": code},
                 filter_on="top_factors", xlsx=xlsx)


@router.get("/practices/{code}/case-finding", response_class=HTMLResponse)
def case_finding(request: Request, code: str) -> HTMLResponse:
    def page(v: Viewer) -> HTMLResponse:
        t = _sorting(request, case_finding_table(request, v, code))
        return page_or_rows(request, "case_finding.html", v, [t], code=code)

    return whole_page(request, auth.viewer(request), page)


def may_see_holder(request: Request, v: Viewer, level: str, code: str, what: str) -> None:
    """A practice's figures (its budget explainer, its benchmarks): its own users, its
    group's lead, the commissioner (as the budget statements are shared); a group's: the
    group and the commissioner. Anyone else: 403 with an audit row."""
    p = v.principal
    if p.role in COMMISSIONER_ROLES or (p.role == level and p.organisation == code):
        return
    if level == "practice" and p.role == "group" and warehouse_of(request).query(
            "SELECT 1 FROM practices WHERE practice_code = ? AND group_code = ?",
            [code, p.organisation]):
        return
    who_may = (f"practice:{code}, its group's lead and the commissioner" if level == "practice"
               else f"group:{code} and the commissioner")
    raise auth.deny(request, v, f"{p} may not see {level} {code}'s {what}", who_may)


def budget_text(request: Request, code: str) -> str:
    """The practice's budget explained (``pbc budgets explain CODE``); access is checked
    by the caller."""
    from pbc.services.budgets import explanation

    text: str = cached(request, ("explanation", code),
                       lambda: explanation(warehouse_of(request), code))
    return text


@router.get("/practices/{code}/budget", response_class=HTMLResponse)
def budget_explainer(request: Request, code: str) -> HTMLResponse:
    def page(v: Viewer) -> HTMLResponse:
        may_see_holder(request, v, "practice", code, "budget")
        text = budget_text(request, code)
        return render(request, "budget.html", v, code=code, lines=text.splitlines(),
                      name=_names(request)["practices"].get(code, ""))

    return whole_page(request, auth.viewer(request), page)


# ------------------------------------------------------------------ downloads
def table_named(request: Request, v: Viewer, name: str) -> Table:
    q = request.query_params
    month, code = q.get("month"), q.get("code", "")
    if name in ("practices", "groups"):
        return position_table(request, v, name[:-1], month)
    if name == "cases":
        return cases_table(request, v, q.get("proposer"))
    if name == "loads":
        return loads_table(request, v)
    if name == "case-finding":
        return case_finding_table(request, v, code)
    if name.startswith("practice-"):
        _, _, tables = practice_tables(request, v, code, month)
        for t in tables:
            if t.name == name:
                return t
    raise Forbidden(v.principal, f"there is no table {name!r} to download")


@router.get("/download/{name}.{fmt}")
def download(request: Request, name: str, fmt: str) -> Response:
    v = auth.viewer(request)
    return table_response(request, v, table_named(request, v, name), fmt)


def table_response(request: Request, v: Viewer, t: Table, fmt: str) -> Response:
    """A page's table as a download: CSV (spreadsheet-safe, the columns' labels as headers)
    or an Excel workbook in the house style (the table's own writer, if it has one)."""
    stem = f"pbc-{t.name}-{t.organisation}".replace("/", "-")
    frame = t.frame[[c.key for c in t.columns]]
    if fmt == "csv":
        body = spreadsheet_safe(frame.rename(columns={c.key: c.label for c in t.columns})
                                ).to_csv(index=False)
        return Response(body, media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="{stem}.csv"'})
    if fmt != "xlsx":
        raise Forbidden(v.principal, f"download as .csv or .xlsx, not .{fmt}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{stem}.xlsx"
        if t.xlsx is not None:
            t.xlsx(path)
        else:
            title = TitleBlock(title=t.caption, organisation=t.organisation,
                               period=t.period, source=f"pbc warehouse "
                               f"{auth.settings_of(request).warehouse.name}")
            with Workbook(path, title) as wb:
                wb.table(t.name[:31], frame, t.columns)
        data = path.read_bytes()
    return Response(data, media_type="application/vnd.openxmlformats-officedocument."
                    "spreadsheetml.sheet", headers={
                        "Content-Disposition": f'attachment; filename="{stem}.xlsx"'})


__all__ = ["AccountError", "install", "router"]
