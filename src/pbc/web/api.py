"""The REST API under ``/api/v1`` (OpenAPI at ``/api/v1/openapi.json``): the same services
and the same access rules as the command line and the pages, for a bearer token
(``pbc users token``). docs/api.md describes every endpoint.

The API adds no business logic: each endpoint authenticates the token
(:mod:`pbc.services.api_tokens`), takes the principal of the user's role
(:func:`pbc.services.accounts.principals_for`; ``X-PBC-Role: ROLE:ORG`` chooses among
several), and calls the service the CLI calls with it. Status codes: 401 (no, unknown or
revoked token; with ``WWW-Authenticate``), 403 (the service refused the principal: the body
names who may, and the attempt is in the audit log as ``access_denied``), 404 (no such
practice, group, case or indicator, or nothing computed for it yet), 409 (a case changed
since the version you read, or a step its status does not allow), 422 (bad parameters).

Money is a string of pounds with two decimals (``"1234.56"``; negative with ``-``), so no
client has to trust a binary float with money.
"""

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from pbc.web.settings import WebSettings

# ----------------------------------------------------------------------- models
Pounds = Annotated[str, Field(pattern=r"^-?[0-9]+\.[0-9]{2}$", examples=["12345.67"],
                              description="money: pounds with two decimals")]
Code = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9]{1,12}$",
                                description="an organisation code, e.g. A81001")]
CaseIdParam = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="a case id")]
Month = Annotated[str, Query(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", examples=["2025-09"],
                             description="calendar month: the position at its end")]
Method = Annotated[Literal["run_rate", "seasonal_run_rate", "ratio_model"], Query(
    description="forecast method (as pbc monitor --method)")]


class ErrorBody(BaseModel):
    """Why a request was refused; ``who_may`` on a 403 names who may have it."""

    detail: str
    who_may: str | None = None


class PositionLine(BaseModel):
    service_line: str = Field(description="a service line, or 'all' for the total")
    annual_budget: Pounds
    budget_to_date: Pounds
    spend_to_date: Pounds
    variance: Pounds = Field(description="spend to date less budget to date")
    forecast_outturn: Pounds | None
    forecast_lower: Pounds | None = Field(description="80% interval (ratio_model only)")
    forecast_upper: Pounds | None
    forecast_note: str | None = Field(description="why there is no forecast, if none")


class Position(BaseModel):
    """The monitoring position at the end of a month (pbc monitor)."""

    level: Literal["practice", "group"]
    code: str
    commissioner_code: str
    financial_year: str = Field(examples=["2025-26"])
    month: int = Field(ge=1, le=12, description="month of the financial year, 1 = April")
    period: str = Field(examples=["2025-09"])
    budget_version: int
    budget_status: Literal["agreed", "draft"]
    forecast_method: str
    total: PositionLine
    lines: list[PositionLine]


class BudgetLine(BaseModel):
    """A practice's budget for one service line and every term of its calculation (see
    pbc budgets explain and docs/methods)."""

    service_line: str
    method: str | None
    population: float | None
    weighted_population: float | None
    need_index: float | None
    cost_weight_index: float | None
    weighted_share: float | None
    fair_share: Pounds | None
    prior_spend: Pounds | None
    uplift_percent: float | None
    historic: Pounds | None
    distance_from_target: float | None
    pace: float | None
    target: Pounds | None
    floor: Pounds | None
    ceiling: Pounds | None
    cap: str | None
    scale_factor: float | None
    calculated_budget: Pounds | None
    top_slice_share: Pounds | None
    opted_out: bool | None
    budget: Pounds


class PracticeBudget(BaseModel):
    practice_code: str
    commissioner_code: str
    financial_year: str
    total: Pounds
    lines: list[BudgetLine]
    explanation: str = Field(description="the budget built up step by step, in plain "
                                         "English (pbc budgets explain)")


class GroupBudgetLine(BaseModel):
    service_line: str
    budget: Pounds
    practices: int


class GroupBudget(BaseModel):
    group_code: str
    commissioner_code: str
    financial_year: str
    total: Pounds
    lines: list[GroupBudgetLine]


class CaseFindingRow(BaseModel):
    practice_rank: int
    patient_id: str
    age: int
    sex: str
    risk_percent: float
    segment: str
    population_rank: int
    top_factors: str
    emergency_admissions_12m: int
    long_term_conditions: int
    reference_date: str
    model_version: str


class CaseFinding(BaseModel):
    """A practice's patients at highest risk of emergency admission (pbc risk list)."""

    practice_code: str
    patients: list[CaseFindingRow]


class IndicatorInfo(BaseModel):
    id: str
    title: str
    unit: str


class BenchmarkRow(BaseModel):
    code: str
    numerator: float | None
    denominator: float | None
    value: float | None
    lower_95: float | None
    upper_95: float | None
    significance: str | None
    compared: str | None
    percentile: float | None
    decile: float | None
    national_value: float | None
    ratio_to_national: float | None
    financial_year: str | None


class Benchmark(BaseModel):
    """An indicator's benchmark table (pbc benchmark), disclosure-controlled: counts 1 to
    7 and the figures derived from them are null."""

    indicator: str
    title: str
    level: Literal["practice", "group", "commissioner"]
    financial_year: str | None
    source: str
    note: str
    rows: list[BenchmarkRow]


class CaseYear(BaseModel):
    financial_year: str
    gross: Pounds
    investment: Pounds
    net: Pounds


class Savings(BaseModel):
    """pbc's projection of a case's savings (pbc case show)."""

    gross: Pounds
    investment: Pounds
    net: Pounds
    interval_level: float
    net_lower: Pounds
    net_upper: Pounds
    years: list[CaseYear]
    assumptions: list[str]


class CaseSummary(BaseModel):
    id: int
    version: int
    status: str
    title: str
    proposer_kind: str
    proposer_code: str
    commissioner_code: str
    category: str
    net_saving: Pounds


class HistoryEntry(BaseModel):
    audit_id: int
    at: str
    actor: str
    role: str
    action: str


class CaseDetail(CaseSummary):
    touches_social_care: bool
    local_authority_code: str | None
    provider_is_proposer: bool
    consultation_response: str | None
    consulted_by: str | None
    decision_note: str | None
    decided_by: str | None
    created_by: str
    case_file: str = Field(description="the case file as proposed (TOML)")
    savings: Savings
    history: list[HistoryEntry]


class Decision(BaseModel):
    """A step of a case's lifecycle: ``expected_version`` is the version you read (GET
    /cases/{id}); if the case has changed since, nothing is done (409)."""

    expected_version: int = Field(ge=1, le=2**31 - 1)
    note: str | None = Field(default=None, max_length=10_000,
                             description="why (needed to reject or return)")


# ----------------------------------------------------------------------- errors
class Problem(Exception):
    """A refusal with its status code (the body is :class:`ErrorBody`)."""

    def __init__(self, status: int, detail: str, *, who_may: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.who_may, self.headers = status, detail, who_may, headers


def _problem_response(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    body = ErrorBody(detail=exc.detail, who_may=exc.who_may)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=exc.status,
                        headers=exc.headers)


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    words = {400: "several roles and no (or a bad) X-PBC-Role header",
             401: "no, unknown or revoked token", 403: "not allowed (audited)",
             404: "not found, or nothing computed for it yet",
             409: "the case changed since the version read, or its status does not allow "
                  "this step"}
    return {c: {"model": ErrorBody, "description": words[c]} for c in codes}


COMMON = (400, 401, 403, 404)

# ----------------------------------------------------------------------- helpers


def _pounds(pence: Any) -> str | None:
    """Integer pence as pounds with two decimals (None for a missing value)."""
    if pence is None or pence is _na() or (isinstance(pence, float) and math.isnan(pence)):
        return None
    whole = int(pence)
    sign = "-" if whole < 0 else ""
    units, part = divmod(abs(whole), 100)
    return f"{sign}{units}.{part:02d}"


def _money(pence: Any) -> str:
    """Integer pence as pounds with two decimals (a value that is never missing)."""
    shown = _pounds(pence)
    if shown is None:
        raise ValueError("a money figure the service always gives is missing")
    return shown


def _decimal_pounds(value: Any) -> str | None:
    if value is None:
        return None
    return f"{Decimal(value).quantize(Decimal('0.01'))}"


def _na() -> Any:
    import pandas as pd

    return pd.NA


def _number(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) or math.isinf(f) else f


class _Context:
    """What one request works with: the settings, the decision store (one per app, made
    on first use), the warehouse."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self._store: Any = None
        self._lock = threading.Lock()

    @property
    def store(self) -> Any:
        from pbc.decisions import DecisionStore

        with self._lock:
            if self._store is None:
                url = self.settings.database_url
                self._store = (DecisionStore(url) if url
                               else DecisionStore.beside(self.settings.warehouse))
            return self._store

    @property
    def warehouse(self) -> Any:
        from pbc.warehouse import Warehouse

        return Warehouse(self.settings.warehouse)


def create_api(settings: WebSettings) -> FastAPI:
    """The API as its own application, mounted at ``/api/v1``."""
    from pbc.services import accounts, api_tokens
    from pbc.services.principal import AccessDenied, Principal

    api = FastAPI(title="pbc API", version="1", openapi_url="/openapi.json", docs_url=None,
                  redoc_url=None,
                  description="Practice-based commissioning: positions, budgets, case "
                              "finding, benchmarks and business cases, with the same access "
                              "rules as pbc's command line and pages. docs/api.md.")
    api.state.settings = settings
    ctx = _Context(settings)
    api.state.context = ctx
    api.add_exception_handler(Problem, _problem_response)
    bearer = HTTPBearer(auto_error=False, scheme_name="token",
                        description="a token printed by pbc users token NAME")

    def principal(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None,
                                         Depends(bearer)],
                  x_pbc_role: Annotated[str | None, Header(
                      description="ROLE:ORG, for a user with several roles")] = None,
                  ) -> Principal:
        """The principal of the token's user (401 without a valid token)."""
        if credentials is None:
            raise Problem(401, "send Authorization: Bearer TOKEN (a token from pbc users "
                          "token NAME)", headers={"WWW-Authenticate": 'Bearer realm="pbc"'})
        user = api_tokens.authenticate(ctx.store, credentials.credentials)
        if user is None:
            raise Problem(401, "the token is unknown or revoked", headers={
                "WWW-Authenticate": 'Bearer realm="pbc", error="invalid_token"'})
        roles = accounts.principals_for(ctx.store, user, source=accounts.API_TOKEN)
        named = ", ".join(f"{p.role}:{p.organisation}" for p in roles)
        if not roles:
            nobody = Principal(user, "public", "-", authenticated=True,
                               source=accounts.API_TOKEN)
            _deny(request, nobody, f"user {user!r} holds no role", None)
        if x_pbc_role is None:
            if len(roles) == 1:
                return roles[0]
            raise Problem(400, f"user {user!r} holds several roles ({named}): say which "
                          "with the header X-PBC-Role: ROLE:ORG")
        role, _, org = x_pbc_role.strip().partition(":")
        for p in roles:
            if (p.role, p.organisation) == (role, org.strip()):
                return p
        raise Problem(400, f"X-PBC-Role {x_pbc_role!r}: user {user!r} does not hold that "
                      f"role; their roles: {named}")

    Who = Annotated[Principal, Depends(principal)]

    def _deny(request: Request, who: Principal, reason: str, who_may: str | None) -> None:
        what = f"{request.method} {request.url.path}"
        accounts.record_access_denied(ctx.store, who, "request", what, reason,
                                      query=str(request.url.query) or None)
        raise Problem(403, reason, who_may=who_may)

    @contextmanager
    def service(request: Request, who: Principal, who_may: str | None = None
                ) -> Iterator[None]:
        """Service errors as status codes (403 audited)."""
        from pbc.decisions.cases import CaseError, ConflictError
        from pbc.decisions.store import DecisionError
        from pbc.warehouse import WarehouseError

        try:
            yield
        except AccessDenied as e:
            _deny(request, who, str(e), who_may or _who_may_from(str(e)))
        except ConflictError as e:
            raise Problem(409, str(e)) from None
        except (CaseError, DecisionError) as e:
            raise Problem(409, str(e)) from None
        except WarehouseError as e:
            raise Problem(404, str(e)) from None
        except (ValueError, KeyError) as e:
            raise Problem(422, str(e)) from None

    def organisation(level: str, code: str) -> tuple[str, str | None]:
        from pbc.services.budget_lines import _organisation
        from pbc.warehouse import WarehouseError

        try:
            return _organisation(ctx.warehouse, level, code)
        except WarehouseError as e:
            raise Problem(404, str(e)) from None

    # ------------------------------------------------------------------ positions
    def _lines(frame: Any) -> list[PositionLine]:
        return [PositionLine(
            service_line=str(r["service_line"]), annual_budget=_money(r["annual_budget"]),
            budget_to_date=_money(r["budget_to_date"]),
            spend_to_date=_money(r["spend_to_date"]), variance=_money(r["variance"]),
            forecast_outturn=_pounds(r["forecast_outturn"]),
            forecast_lower=_pounds(r["forecast_lower"]),
            forecast_upper=_pounds(r["forecast_upper"]),
            forecast_note=str(r["forecast_note"]) or None)
            for r in frame.to_dict("records")]

    def _position(pos: Any, level: Literal["practice", "group"], code: str) -> Position:
        lines = _lines(pos.frame[pos.frame.code.astype(str) == code])
        total = next(x for x in lines if x.service_line == "all")
        return Position(level=level, code=code, commissioner_code=pos.commissioner_code,
                        financial_year=pos.financial_year, month=pos.month,
                        period=pos.period, budget_version=pos.budget_version,
                        budget_status=pos.budget_status,
                        forecast_method=pos.method, total=total,
                        lines=[x for x in lines if x.service_line != "all"])

    def position(request: Request, who: Principal, level: Literal["practice", "group"],
                 code: str, month: str, method: str) -> Position:
        """One holder's position; the monitoring service decides who may see it (a
        practice itself, its group's lead for a member practice, the commissioner)."""
        from pbc.services.monitoring import monthly_position

        commissioner, group = organisation(level, code)
        may = (f"practice:{code}, its group's lead (group:{group}) or "
               f"commissioner:{commissioner}" if level == "practice" and group else
               f"{level}:{code} or commissioner:{commissioner}")
        with service(request, who, may):
            pos = monthly_position(ctx.warehouse, who, month, level=level,
                                   method=method, holder=code)  # type: ignore[arg-type]
        return _position(pos, level, code)

    @api.get("/practices/{code}/position", response_model=Position,
             responses=_responses(*COMMON), tags=["monitoring"])
    def practice_position(request: Request, who: Who, code: Code, month: Month,
                          method: Method = "seasonal_run_rate") -> Position:
        """A practice's position at the end of a month: budget, spend to date, variance and
        forecast outturn by service line (pbc monitor --level practice). The practice
        itself and its commissioner may see it."""
        return position(request, who, "practice", code, month, method)

    @api.get("/groups/{code}/position", response_model=Position,
             responses=_responses(*COMMON), tags=["monitoring"])
    def group_position(request: Request, who: Who, code: Code, month: Month,
                       method: Method = "seasonal_run_rate") -> Position:
        """A group's position (pbc monitor --level group): the group and its
        commissioner."""
        return position(request, who, "group", code, month, method)

    @api.get("/groups/{code}/practices", response_model=list[Position],
             responses=_responses(*COMMON), tags=["monitoring"])
    def group_practices(request: Request, who: Who, code: Code, month: Month,
                        method: Method = "seasonal_run_rate") -> list[Position]:
        """The position of each practice that is a member of the group in the year (pbc
        monitor --level practice --as group:CODE): the group's lead and its commissioner."""
        from pbc.services.monitoring import monthly_position

        commissioner, _ = organisation("group", code)
        with service(request, who, f"group:{code} or commissioner:{commissioner}"):
            pos = monthly_position(ctx.warehouse, who, month, level="practice",
                                   method=method, members_of=code)
        return [_position(pos, "practice", c) for c in sorted(set(pos.frame.code.astype(str)))]

    # ------------------------------------------------------------------ budgets
    @api.get("/practices/{code}/budget", response_model=PracticeBudget,
             responses=_responses(*COMMON), tags=["budgets"])
    def practice_budget(request: Request, who: Who, code: Code) -> PracticeBudget:
        """A practice's indicative budget by service line, every term of its calculation,
        and the explanation (pbc budgets explain). The practice, its group and its
        commissioner."""
        from pbc.services.budget_lines import practice_budget as read

        organisation("practice", code)
        with service(request, who):
            b = read(ctx.warehouse, who, code)
        from pbc.services.budget_lines import MONEY_TERMS

        lines = [BudgetLine.model_validate({k: (_decimal_pounds(v) if k in MONEY_TERMS else v)
                                            for k, v in line.items()}) for line in b.lines]
        return PracticeBudget(practice_code=code, commissioner_code=b.commissioner_code,
                              financial_year=b.financial_year,
                              total=_decimal_pounds(b.total) or "0.00", lines=lines,
                              explanation=b.explanation or "")

    @api.get("/groups/{code}/budget", response_model=GroupBudget,
             responses=_responses(*COMMON), tags=["budgets"])
    def group_budget(request: Request, who: Who, code: Code) -> GroupBudget:
        """A group's budget by service line (its practices' budgets added up). The group
        and its commissioner."""
        from pbc.services.budget_lines import group_budget as read

        organisation("group", code)
        with service(request, who):
            b = read(ctx.warehouse, who, code)
        return GroupBudget(
            group_code=code, commissioner_code=b.commissioner_code,
            financial_year=b.financial_year, total=_decimal_pounds(b.total) or "0.00",
            lines=[GroupBudgetLine(service_line=str(x["service_line"]),
                                   budget=_decimal_pounds(x["budget"]) or "0.00",
                                   practices=int(x["practices"])) for x in b.lines])

    # ------------------------------------------------------------------ case finding
    @api.get("/practices/{code}/case-finding", response_model=CaseFinding,
             responses=_responses(*COMMON), tags=["case finding"])
    def case_finding(request: Request, who: Who, code: Code,
                     top: Annotated[int, Query(ge=1, le=1000)] = 20) -> CaseFinding:
        """The practice's patients at highest risk of an emergency admission, with the
        reasons (pbc risk list). Only a user of that practice: anyone else gets 403, and
        the attempt is in the audit log."""
        from pbc.services import risk

        organisation("practice", code)
        with service(request, who, f"practice:{code}"):
            rows = risk.case_finding_list(ctx.warehouse, who, code, top)
        return CaseFinding(practice_code=code, patients=[CaseFindingRow(
            **{**{k: r[k] for k in CaseFindingRow.model_fields if k != "reference_date"},
               "reference_date": str(r["reference_date"])}) for r in rows])

    # ------------------------------------------------------------------ indicators
    @api.get("/indicators", response_model=list[IndicatorInfo],
             responses=_responses(400, 401), tags=["benchmarking"])
    def indicators(who: Who) -> list[IndicatorInfo]:
        """The indicator library (pbc benchmark --list)."""
        from pbc.services.benchmarking import list_indicators

        return [IndicatorInfo(id=i.id, title=i.title, unit=i.unit) for i in list_indicators()]

    @api.get("/indicators/{indicator_id}", response_model=Benchmark,
             responses=_responses(*COMMON), tags=["benchmarking"])
    def indicator(request: Request, who: Who,
                  indicator_id: Annotated[str, PathParam(pattern=r"^[a-z0-9_]{1,80}$")],
                  level: Literal["practice", "group", "commissioner"] = "practice",
                  year: Annotated[str | None, Query(
                      pattern=r"^[0-9]{4}[-/][0-9]{2}$", examples=["2025-26"])] = None,
                  ) -> Benchmark:
        """Every practice (or group) on an indicator, with its 95% limits and judgement
        (pbc benchmark --indicator ID --level LEVEL), with counts of 1 to 7 suppressed as in
        every table that leaves the commissioner."""
        from pbc.services.benchmarking import (
            DISCLOSURE_NOTE,
            benchmark_indicator,
            disclosure_controlled,
            list_indicators,
        )

        known = {i.id: i for i in list_indicators()}
        if indicator_id not in known:
            raise Problem(404, f"unknown indicator {indicator_id!r}; known: "
                          f"{', '.join(sorted(known))}")
        with service(request, who):
            result = disclosure_controlled(benchmark_indicator(
                ctx.warehouse, indicator_id, level=level, financial_year=year,
                monthly=False))
        table = result.table
        key = table.columns[1] if len(table.columns) > 1 else level
        rows = [BenchmarkRow(
            code=str(r[key]), **{f: _number(r.get(f)) for f in (
                "numerator", "denominator", "value", "lower_95", "upper_95", "percentile",
                "decile", "national_value", "ratio_to_national")},
            significance=_text(r.get("significance")), compared=_text(r.get("compared")),
            financial_year=_text(r.get("financial_year"))) for r in table.to_dict("records")]
        return Benchmark(indicator=indicator_id, title=known[indicator_id].title,
                         level=level, financial_year=result.financial_year,
                         source=result.source, note=DISCLOSURE_NOTE, rows=rows)

    # ------------------------------------------------------------------ cases
    def summary(v: Any) -> dict[str, Any]:
        return {"id": v.id, "version": v.version, "status": v.status, "title": v.title,
                "proposer_kind": v.proposer_kind, "proposer_code": v.proposer_code,
                "commissioner_code": v.commissioner_code, "category": v.category,
                "net_saving": _money(v.savings["net_pence"])}

    def detail(v: Any) -> CaseDetail:
        sv = v.savings
        savings = Savings(
            gross=_money(sv["gross_pence"]), investment=_money(sv["investment_pence"]),
            net=_money(sv["net_pence"]), interval_level=float(sv["interval"]["level"]),
            net_lower=_money(sv["interval"]["lower_pence"]),
            net_upper=_money(sv["interval"]["upper_pence"]),
            years=[CaseYear(financial_year=y["financial_year"], gross=_money(y["gross_pence"]),
                            investment=_money(y["investment_pence"]),
                            net=_money(y["net_pence"])) for y in sv["years"]],
            assumptions=[str(a) for a in sv["assumptions"]])
        return CaseDetail(
            **summary(v), touches_social_care=v.touches_social_care,
            local_authority_code=v.local_authority_code,
            provider_is_proposer=v.provider_is_proposer,
            consultation_response=v.consultation_response, consulted_by=v.consulted_by,
            decision_note=v.decision_note, decided_by=v.decided_by, created_by=v.created_by,
            case_file=v.case_file, savings=savings,
            history=[HistoryEntry(**{k: h[k] for k in HistoryEntry.model_fields})
                     for h in v.history])

    def case_exists(case_id: int) -> None:
        from pbc.decisions.cases import BusinessCase

        with ctx.store._session() as s:
            if s.get(BusinessCase, case_id) is None:
                raise Problem(404, f"no business case {case_id}")

    @api.get("/cases", response_model=list[CaseSummary], responses=_responses(400, 401),
             tags=["business cases"])
    def cases(request: Request, who: Who) -> list[CaseSummary]:
        """The business cases you may see (a council only those sent to it)."""
        from pbc.services.cases import visible_cases

        with service(request, who):
            return [CaseSummary(**summary(v)) for v in visible_cases(ctx.store, who)]

    @api.get("/cases/{case_id}", response_model=CaseDetail, responses=_responses(*COMMON),
             tags=["business cases"])
    def case(request: Request, who: Who, case_id: CaseIdParam) -> CaseDetail:
        """A case, its projected savings with every assumption, and its history (pbc case
        show)."""
        from pbc.services.cases import show

        case_exists(case_id)
        with service(request, who):
            return detail(show(ctx.store, who, case_id))

    def decide(request: Request, who: Principal, case_id: int, action: str,
               body: Decision) -> CaseDetail:
        from pbc.services.cases import act

        case_exists(case_id)
        with service(request, who):
            view = act(ctx.store, who, case_id, action, note=body.note,
                       expected_version=body.expected_version,
                       freed_from=ctx.warehouse if action == "approve" else None)
        return detail(view)

    def decision_endpoint(action: str) -> Any:
        def endpoint(request: Request, who: Who, case_id: CaseIdParam,
                     body: Decision) -> CaseDetail:
            return decide(request, who, case_id, action, body)

        return endpoint

    for action, words in (("approve", "Approve a submitted case (the commissioner's "
                           "approver; pbc case approve). A case funded from freed resources "
                           "draws on the proposer's reinvestment ledger."),
                          ("reject", "Reject a case, saying why in note (pbc case reject)."),
                          ("return", "Return a case to its proposer for changes, saying what "
                           "to change in note (pbc case return).")):
        api.post(f"/cases/{{case_id}}/{action}", response_model=CaseDetail,
                 responses=_responses(*COMMON, 409), tags=["business cases"],
                 summary=f"{action.capitalize()} a case", description=words,
                 operation_id=f"{action}_case")(decision_endpoint(action))

    return api


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def _who_may_from(message: str) -> str | None:
    """The ``only ... may`` part of a refusal from the permission table, if any."""
    _head, sep, rest = message.rpartition(": only ")
    if not sep or not rest.endswith(" may"):
        return None
    return rest.removesuffix(" may")
