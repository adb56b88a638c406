"""Monitoring as a use case: the monthly position of every budget holder, from the warehouse.

Reads the budget version (the agreed one, else the latest draft, and says which) and its
monthly phasing (``budget_phasing``), and the priced activity of this year and last year
valued at the tariff before the emergency marginal rate (the measure budgets are set on),
then calls the pure core (:mod:`pbc.monitoring.position`).

Levels:

* ``practice``: attributed activity of each practice (the practice at the activity date);
* ``group``: attributed activity by the practice's group as at the activity date, against
  the budgets of the practices that were members in each month;
* ``commissioner``: all of the commissioner's activity, unattributed included, against the
  whole envelope (practice budgets plus the money the commissioner holds).

A line a practice (or its group) opted out of for the year is the commissioner's: the
budget version's ``budget_phasing`` names it (kind ``opt_out`` with the practice), and its
spend and budget are left out of the practice's and the group's position and stay in the
commissioner's (docs/decisions.md, "Opt-outs").

Access (docs/security.md, "Who may see what"): the commissioner sees every holder; a
practice sees its own practice only; a group (its lead, ``group:CODE``) sees its own group
and, at the practice level, the practices that are members of the group in the year (those
the budget version phases with the group in at least one month: the practices whose budgets
the group holds), never another group's practice. Every level is aggregated money: no
patient rows (case finding stays with the patient's own practice, :mod:`pbc.services.risk`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ibis.expr.types as ir
import pandas as pd

from pbc.calendar import (
    financial_month,
    financial_year,
    format_financial_year,
    parse_financial_year,
)
from pbc.decisions import DecisionStore
from pbc.monitoring.forecast import ForecastError, Method
from pbc.monitoring.freed import (
    Draw,
    FreedResources,
    PlanDraw,
    ReinvestmentRule,
    freed_resources,
    reinvestment_ledger,
)
from pbc.monitoring.position import Level, position
from pbc.pricing.schema import tariff_value
from pbc.services.principal import AccessDenied, Principal
from pbc.warehouse import Warehouse, WarehouseError
from pbc.warehouse.spark import check_engine


@dataclass(frozen=True)
class MonthlyPosition:
    frame: pd.DataFrame  # pence; see pbc.monitoring.position.COLUMNS
    financial_year: str
    month: int  # 1 = April
    period: str  # YYYY-MM
    budget_version: int
    budget_status: str  # agreed | draft
    commissioner_code: str
    method: Method
    has_prior_year: bool


def parse_period(text: str) -> tuple[str, int]:
    """``2025-09`` -> (``2025-26``, 6)."""
    try:
        day = dt.date.fromisoformat(text.strip() + "-01")
    except ValueError:
        raise ValueError(f"--month must be a calendar month like 2025-09, not {text!r}") from None
    return financial_year(day), financial_month(day)


_CODE = {
    "practice": "practice_code",
    "group": "group_code",
    "commissioner": "commissioner_code",
}


#: the warehouse tables the position reads (``--engine spark`` reads these into Spark)
POSITION_INPUTS = ("priced_activity", "budget_phasing")


def _opted_out(phasing: ir.Table, fy: str, version: int) -> ir.Table:
    """The (practice, service line) pairs the commissioner holds in a budget version
    because the practice (or its group) opted out (``budget_phasing`` rows of kind
    ``opt_out`` with a practice code). The codes are cast to text: a version with no
    practice line at all can store the column with no type of its own (all NULL)."""
    t = phasing.filter(phasing.financial_year == fy, phasing.version == int(version),
                       phasing.kind == "opt_out", phasing.practice_code.notnull())
    return t.select(practice_code=t.practice_code.cast("string"),
                    service_line=t.service_line.cast("string")).distinct()


def _pence(money: ir.NumericValue) -> ir.IntegerValue:
    """A sum of exact pounds as integer pence (exact: the sum is a decimal)."""
    pence: ir.IntegerValue = (money.sum() * 100).cast("int64")
    return pence


def _spend(priced: ir.Table, fy: str, level: Level, commissioner: str,
           opted_out: ir.Table | None = None) -> ir.Table:
    """``code, service_line, month, spend`` (pence) of one year at ``level``. Below the
    commissioner, the lines in ``opted_out`` (practice, service line pairs) are left out:
    the commissioner holds them, as it holds unattributed activity."""
    code = _CODE[level]
    t = priced.filter(priced.financial_year == fy, priced.price.notnull(),
                      priced.commissioner_code == commissioner)
    if level != "commissioner":
        t = t.filter(t.attributed, t[code].notnull())
        if opted_out is not None:  # (codes as text: see _opted_out)
            t = t.mutate(practice_code=t.practice_code.cast("string"))
            t = t.anti_join(opted_out, ["practice_code", "service_line"])
    return t.group_by(code=t[code], service_line=t.service_line, month=t.month).aggregate(
        spend=_pence(tariff_value(t)))


def _frame(expr: ir.Table) -> pd.DataFrame:
    """The result as a DataFrame, through Arrow (no row order: the core indexes by key).

    Through Arrow, text columns become pandas' Arrow-backed strings directly; ``.df()``
    builds Python strings first and converts them again (measured: 0.3-0.5 s of a 1.2 s
    query returning 610,000 rows)."""
    frame: pd.DataFrame = expr.to_pyarrow().to_pandas()
    return frame


def _budget(phasing: ir.Table, fy: str, version: int, level: Level) -> ir.Table:
    """``code, service_line, month, budget`` (pence) of one version at ``level``; below the
    commissioner, without the opted-out lines (their budget is the commissioner's)."""
    t = phasing.filter(phasing.financial_year == fy, phasing.version == int(version))
    if level != "commissioner":
        t = t.filter(t.kind == "practice")
        if level == "group":
            t = t.filter(t.group_code.notnull())
        t = t.mutate(practice_code=t.practice_code.cast("string"))
        t = t.anti_join(_opted_out(phasing, fy, version), ["practice_code", "service_line"])
    code = _CODE[level]
    return t.group_by(code=t[code], service_line=t.service_line, month=t.month).aggregate(
        budget=_pence(t.budget))


def group_members(phasing: ir.Table, fy: str, version: int, group: str) -> ir.Table:
    """The practices that are members of ``group`` in budget version ``version`` of ``fy``:
    those the version phases with the group in at least one month (``budget_phasing``'s
    practice and opted-out lines carry each practice's group in each month)."""
    t = phasing.filter(phasing.financial_year == fy, phasing.version == int(version),
                       phasing.practice_code.notnull(),
                       phasing.group_code.cast("string") == group)
    return t.select(code=t.practice_code.cast("string")).distinct()


def _allowed(who: Principal, level: Level, commissioner: str,
             members: Callable[[str], frozenset[str]]) -> frozenset[str] | None:
    """The codes a principal may see at ``level`` (None: every code). ``members(group)``
    gives a group's member practices in the year."""
    if who.role == "commissioner":
        if who.organisation != commissioner:
            raise AccessDenied(f"{who} may not see commissioner {commissioner}'s position")
        return None
    if who.role == level and who.role in ("practice", "group"):
        return frozenset({who.organisation})
    if who.role == "group" and level == "practice":
        return members(who.organisation)
    raise AccessDenied(
        f"{who} may not see the {level} position: a practice sees its own practice "
        "(--level practice), a group its own group (--level group) and its member "
        "practices (--level practice), the commissioner all")


def _check_wanted(who: Principal, level: Level, fy: str, visible: frozenset[str] | None,
                  holder: str | None, members_of: str | None,
                  members: Callable[[str], frozenset[str]]) -> frozenset[str] | None:
    """Narrow what ``who`` may see to what was asked for: one holder, or a group's member
    practices. Asking for a holder ``who`` may not see is refused (before any work)."""
    if members_of is not None:
        if level != "practice":
            raise ValueError("members_of (a group's member practices) is for the practice "
                             f"level, not {level}")
        if who.role == "group" and who.organisation != members_of:
            raise AccessDenied(f"{who} may not see group {members_of}'s member practices: "
                               "a group sees its own members only")
        own = members(members_of)
        visible = own if visible is None else visible & own
    if holder is not None:
        if visible is not None and holder not in visible:
            whose = (f"the practices of group {who.organisation} in {fy}"
                     if who.role == "group" and level == "practice" else f"its own {level}")
            raise AccessDenied(f"{who} may not see {level} {holder}'s position: it sees "
                               f"{whose}, the commissioner every {level}")
        visible = frozenset({holder})
    return visible


def members_in(warehouse: Warehouse, fy: str, version: int) -> Callable[[str], frozenset[str]]:
    """``members(group)``: the practices that are members of a group in budget version
    ``version`` of ``fy`` (:func:`group_members`), read from the warehouse when asked."""

    def members(group: str) -> frozenset[str]:
        backend = warehouse.ibis()
        try:
            return frozenset(str(c) for c in _frame(group_members(
                backend.table("budget_phasing"), fy, version, group)).code)
        finally:
            backend.disconnect()

    return members


def _inputs(tables: dict[str, ir.Table], who: Principal, fy: str, version: int, level: Level,
            holder: str | None = None, members_of: str | None = None,
            ) -> tuple[str, frozenset[str] | None, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The commissioner, the codes ``who`` may see and asked for (None: all), this year's
    and last year's spend and the budget, computed on the engine the tables live on. Access
    is decided before the sums are computed."""
    phasing, priced = tables["budget_phasing"], tables["priced_activity"]
    commissioners = _frame(phasing.filter(phasing.financial_year == fy,
                                          phasing.version == int(version))
                           .select("commissioner_code").distinct())
    if commissioners.empty:
        raise WarehouseError(
            f"budget version {version} of {fy} has no monthly phasing stored (it was set "
            "before pbc kept the phasing of every version): set the budgets again")
    commissioner = str(commissioners.commissioner_code.iloc[0])

    def members(group: str) -> frozenset[str]:
        return frozenset(str(c) for c in _frame(group_members(phasing, fy, version,
                                                              group)).code)

    only = _check_wanted(who, level, fy, _allowed(who, level, commissioner, members),
                         holder, members_of, members)
    prior_fy = format_financial_year(parse_financial_year(fy) - 1)
    opted = _opted_out(phasing, fy, version)
    return (commissioner, only, _frame(_spend(priced, fy, level, commissioner, opted)),
            _frame(_spend(priced, prior_fy, level, commissioner, opted)),
            _frame(_budget(phasing, fy, version, level)))


def monthly_position(warehouse: Warehouse, who: Principal, period: str, *,
                     level: Level = "practice", method: Method = "seasonal_run_rate",
                     version: int | None = None, engine: str = "duckdb",
                     holder: str | None = None, members_of: str | None = None
                     ) -> MonthlyPosition:
    """The position at the end of calendar month ``period`` (``YYYY-MM``) of every holder
    at ``level`` that ``who`` may see; ``holder``: only that one (refused if ``who`` may
    not see it); ``members_of`` (practice level): only the practices that are members of
    that group in the year (a group's lead may ask for its own group only).

    The position of each holder is computed with every holder of the level (the ratio
    model pools them), so a holder's figures are the same whoever asks.

    ``engine="spark"`` computes the spend and budget sums (the same Ibis expressions) on
    Spark over the warehouse's Parquet files (:func:`pbc.warehouse.spark.spark_tables`);
    the sums come back as small frames and the position and forecast are computed here, as
    on DuckDB."""
    fy, month = parse_period(period)
    with DecisionStore.beside(warehouse.root) as store:
        chosen = store.current(fy, with_lines=False) if version is None else None
        if version is None:
            if chosen is None:
                raise WarehouseError(f"no budgets are set for {fy}: run pbc budgets set first")
            version, status = int(chosen.version), str(chosen.status)
        else:
            status = next((str(v.status) for v in store.history(fy) if v.version == version),
                          "")
            if not status:
                raise WarehouseError(f"{fy} has no budget version {version}")
    for table in ("priced_activity", "budget_phasing"):
        if not warehouse.has_table(table):
            raise WarehouseError(f"no {table} in the warehouse: run pbc price and pbc "
                                 "budgets set first")
    check_engine(engine)
    if engine == "spark":
        from pbc.warehouse.spark import spark_tables

        with spark_tables(warehouse, POSITION_INPUTS, stage="monitor") as tables:
            commissioner, only, spend, prior, budget = _inputs(tables, who, fy, version, level,
                                                               holder, members_of)
    else:
        backend = warehouse.ibis()
        try:
            commissioner, only, spend, prior, budget = _inputs(
                {n: backend.table(n) for n in POSITION_INPUTS}, who, fy, version, level,
                holder, members_of)
        finally:
            backend.disconnect()
    has_prior = not prior.empty
    frame = position(spend, budget, level=level, financial_year=fy, month=month,
                     budget_version=version, method=method,
                     prior_spend=prior if has_prior else None)
    if only is not None:
        frame = frame[frame.code.astype(str).isin(only)].reset_index(drop=True)
        if frame.empty:
            what = (f"{level} {next(iter(only))} has" if len(only) == 1 else
                    f"group {members_of or who.organisation}'s member practices have"
                    if level == "practice" and (members_of or who.role == "group")
                    else f"no {level} it may see has")
            raise WarehouseError(f"{what} no budget or spend in {fy}")
    return MonthlyPosition(frame, fy, month, period, version, status, commissioner, method,
                           has_prior)


# ---------------------------------------------------------------- freed resources
#: columns of the freed-resources table (money in pence here, pounds in the CSV)
FREED_COLUMNS = ["code", "level", "financial_year", "budget", "outturn", "outturn_basis",
                 "freed", "reinvestable", "opening", "drawn", "lapsed", "closing"]


@dataclass(frozen=True)
class FreedReport:
    frame: pd.DataFrame
    financial_year: str
    rule: ReinvestmentRule
    rule_source: str
    draws: list[PlanDraw]


def latest_month(warehouse: Warehouse, financial_year: str) -> int:
    """The last month (1-12) of ``financial_year`` with priced activity (0: none)."""
    rows = warehouse.query("SELECT max(month) FROM priced_activity WHERE financial_year = ?",
                           [financial_year])
    return int(rows[0][0] or 0) if rows else 0


def read_plans(path: Path) -> list[Draw]:
    """A plans file: CSV with ``code, financial_year, plan, amount`` (pounds) and optionally
    ``approved`` (true/false, default true). Errors name the file, row and column."""
    import csv

    from pbc.budgets.money import pounds_to_pence

    required = ("code", "financial_year", "plan", "amount")
    draws: list[Draw] = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (needs "
                             f"{', '.join(required)}, optional approved)")
        for row_no, row in enumerate(reader, start=2):
            for col in required:
                if not (row.get(col) or "").strip():
                    raise ValueError(f"{path}, row {row_no}, column {col}: empty")
            try:
                fy = format_financial_year(parse_financial_year(row["financial_year"]))
            except ValueError:
                raise ValueError(f"{path}, row {row_no}, column financial_year: "
                                 f"{row['financial_year']!r} is not a year like 2025-26") from None
            try:
                amount = pounds_to_pence(row["amount"].strip())
            except ValueError:
                raise ValueError(f"{path}, row {row_no}, column amount: {row['amount']!r} is "
                                 "not an amount in pounds") from None
            approved_text = (row.get("approved") or "true").strip().lower()
            if approved_text not in ("true", "false", "yes", "no", "1", "0"):
                raise ValueError(f"{path}, row {row_no}, column approved: expected true or "
                                 f"false, not {row.get('approved')!r}")
            draws.append(Draw(row["code"].strip(), fy, row["plan"].strip(), amount,
                              approved_text in ("true", "yes", "1")))
    return draws


@dataclass(frozen=True)
class Outturn:
    """A budget holder's annual budget and outturn for a year (pence)."""

    code: str
    budget: int
    outturn: int
    #: ``actual`` (all 12 months loaded) or ``forecast at month M (method)``
    basis: str


def year_outturns(warehouse: Warehouse, who: Principal, financial_year: str, *,
                  level: Level = "practice", method: Method = "seasonal_run_rate"
                  ) -> list[Outturn]:
    """Each holder's budget and outturn for ``financial_year``: the actual spend when all 12
    months are loaded, else the forecast by ``method`` at the latest month loaded (the run
    rate where ``method`` needs a year before this one that is not loaded; the basis says
    which). No activity loaded for the year: an empty list."""
    m = latest_month(warehouse, financial_year)
    if m == 0:
        return []
    start = parse_financial_year(financial_year)
    period = f"{start + (1 if m > 9 else 0)}-{(m + 2) % 12 + 1:02d}"
    try:
        pos = monthly_position(warehouse, who, period, level=level, method=method)
    except ForecastError:
        pos = monthly_position(warehouse, who, period, level=level, method="run_rate")
    return position_outturns(pos, actual=m == 12)


def position_outturns(pos: MonthlyPosition, *, actual: bool, skip_missing: bool = False
                      ) -> list[Outturn]:
    """Each holder's budget and outturn from a position (totals): its spend when ``actual``
    (the year is complete), else its forecast outturn. A holder with no forecast is an error
    naming it, or is left out with ``skip_missing``."""
    out = []
    for r in pos.frame[pos.frame.service_line == "all"].to_dict("records"):
        code = str(r["code"])
        if actual:
            outturn, how = int(r["spend_to_date"]), "actual"
        elif pd.isna(r["forecast_outturn"]):
            if skip_missing:
                continue
            raise WarehouseError(f"{pos.frame.level.iloc[0]} {code} {pos.financial_year}: no "
                                 f"forecast outturn ({r['forecast_note']}); choose --method "
                                 "run_rate")
        else:
            outturn = int(r["forecast_outturn"])
            how = f"forecast at month {pos.month} ({pos.method.replace('_', ' ')})"
        out.append(Outturn(code, int(r["annual_budget"]), outturn, how))
    return out


def freed_resources_report(warehouse: Warehouse, who: Principal, financial_year: str, *,
                           plans: list[Draw] | None = None, rule: ReinvestmentRule | None = None,
                           rule_source: str = "default", level: Level = "practice",
                           method: Method = "seasonal_run_rate") -> FreedReport:
    """Freed resources, the reinvestable share and the reinvestment ledger up to
    ``financial_year``, per practice (or group): each year's outturn is its actual spend when
    all 12 months are loaded, else the forecast by ``method`` (``outturn_basis`` says which).
    The draws of business cases approved on freed resources (pbc.services.reinvestment) are
    plans with ``plans``."""
    from pbc.services.reinvestment import approved_draws

    rule = rule or ReinvestmentRule()
    fy = format_financial_year(parse_financial_year(financial_year))
    with DecisionStore.beside(warehouse.root) as store:
        years = sorted({str(v.financial_year) for v in store.all_versions()
                        if parse_financial_year(str(v.financial_year))
                        <= parse_financial_year(fy)})
        plans = [*(plans or []), *approved_draws(store, level)]
    if fy not in years:
        raise WarehouseError(f"no budgets are set for {fy}: run pbc budgets set first")
    freed: list[FreedResources] = []
    basis: dict[tuple[str, str], str] = {}
    for year in years:
        for o in year_outturns(warehouse, who, year, level=level, method=method):
            freed.append(freed_resources(o.code, year, o.budget, o.outturn, rule))
            basis[(o.code, year)] = o.basis
    ledger = reinvestment_ledger(freed, plans or [], rule)
    by_key = {(f.code, f.financial_year): f for f in freed}
    rows = []
    for row in ledger.rows:
        if row.financial_year != fy:
            continue
        f = by_key.get((row.code, fy))
        rows.append({
            "code": row.code, "level": level, "financial_year": fy,
            "budget": f.budget if f else 0, "outturn": f.outturn if f else 0,
            "outturn_basis": basis.get((row.code, fy), "no activity"),
            "freed": f.freed if f else 0, "reinvestable": f.reinvestable if f else 0,
            "opening": row.opening, "drawn": row.drawn, "lapsed": row.lapsed,
            "closing": row.closing,
        })
    frame = pd.DataFrame(rows, columns=FREED_COLUMNS)
    return FreedReport(frame, fy, rule, rule_source, ledger.draws)
