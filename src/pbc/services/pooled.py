"""Section 75 pooled budgets as services: spend in scope, the monthly position, the year-end
settlement, the register of agreements, and who may see them.

**Spend in scope** (docs/local-authorities.md, "Pooled budgets (Section 75)"):

* *NHS activity*: the tariff value (:data:`pbc.pricing.schema.TARIFF_VALUE_SQL`) of the
  commissioner partner's priced activity (``priced_activity.commissioner_code``; with a
  group partner, only the activity attributed to that group) in the scope's service lines,
  HRG prefixes and condition, **for the council's residents**: patients whose neighbourhood
  of residence (``patients.neighbourhood_code``) lies in the council partner
  (``neighbourhoods.local_authority_code``). Residence, not the practice's council, because
  a Section 75 fund serves the council's population (as its social care does), and practices
  register patients across council boundaries. Activity in scope whose patient has no known
  neighbourhood is not counted, and the position says how much there was.
* *Social care*: the council partner's packages of the scope's service types, each costed
  by days within the year (:func:`pbc.local_authorities.pooled.package_cost_by_month`).

Every call takes the acting :class:`Principal` and asks the one permission table
(``view_pooled_budget``, ``record_pooled_agreement``): a partner sees its agreement, nobody
else does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select

from pbc.budgets.money import format_pounds, pence_to_pounds
from pbc.calendar import format_financial_year, normalise_financial_year, parse_financial_year
from pbc.decisions.audit import append
from pbc.decisions.models import utcnow
from pbc.decisions.pooled import PooledAgreementRecord
from pbc.decisions.store import DecisionStore
from pbc.local_authorities.pooled import (
    Agreement,
    PooledError,
    Settlement,
    package_cost_by_month,
    parse_agreement,
    settle,
)
from pbc.monitoring.forecast import METHODS, ForecastError, Method, forecast
from pbc.pricing.schema import TARIFF_VALUE_SQL
from pbc.reference.codelists import codelist
from pbc.services.cases import resolve
from pbc.services.permissions import PERMISSIONS, AgreementParties, allowed, authorise
from pbc.services.principal import Principal
from pbc.warehouse import Warehouse, WarehouseError
from pbc.warehouse.validate import lit

ENTITY = "pooled_agreement"
#: the columns of the settlement (CSV and workbook), one row per partner
SETTLEMENT_COLUMNS = ("partner", "contribution", "share_of_variance", "bears", "keeps",
                      "final_position")


def read_agreement(path: Path) -> tuple[Agreement, str]:
    """The validated agreement file and its text; :class:`PooledError` naming the file and
    each key that is wrong."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PooledError(f"{path}: no such agreement file") from None
    try:
        data = tomllib.loads(text, parse_float=Decimal)  # pounds exactly, never a float
    except tomllib.TOMLDecodeError as e:
        raise PooledError(f"{path}: not valid TOML: {e}") from None
    return parse_agreement(data, str(path)), text


def parties(agreement: Agreement) -> AgreementParties:
    return AgreementParties(agreement.reference,
                            tuple((p.kind, p.code) for p in agreement.partners))


# --------------------------------------------------------------------------- spend
@dataclass(frozen=True)
class Spend:
    """Spend in scope by month (pence, April..March) for the two streams of the pool."""

    nhs: np.ndarray
    social_care: np.ndarray
    #: in-scope NHS activity whose patient has no known residence: (rows, pence)
    unknown_residence: tuple[int, int] = (0, 0)


def _check_partners(warehouse: Warehouse, agreement: Agreement) -> None:
    """The agreement's partners exist in the warehouse (else PooledError naming them)."""
    checks = [("commissioners", "commissioner_code", agreement.commissioner.code),
              ("local_authorities", "local_authority_code", agreement.local_authority.code)]
    if agreement.group is not None:
        checks.append(("groups", "group_code", agreement.group.code))
    for table, column, code in checks:
        if not warehouse.has_table(table) or not warehouse.query(
                f"SELECT 1 FROM {table} WHERE {column} = ?", [code]):
            raise PooledError(f"agreement {agreement.reference}: partner {code} is not in the "
                              f"warehouse's {table}")


def nhs_spend(warehouse: Warehouse, agreement: Agreement, financial_year: str
              ) -> tuple[np.ndarray, tuple[int, int]]:
    """The tariff value of NHS activity in scope for the council's residents, by month
    (pence), and the (rows, pence) in scope whose patient's residence is not known."""
    months = np.zeros(12, dtype=np.int64)
    scope = agreement.scope
    if not scope.service_lines:
        return months, (0, 0)
    if not warehouse.has_table("priced_activity"):
        raise WarehouseError(f"{warehouse.root}: no priced activity (run pbc price): the "
                             "pool's NHS spend is priced activity")
    for table in ("patients", "neighbourhoods"):
        if not warehouse.has_table(table):
            raise WarehouseError(f"{warehouse.root}: no {table} table: the council's "
                                 "residents are patients whose neighbourhood lies in it")
    where = [f"p.financial_year = {lit(financial_year)}", "p.price IS NOT NULL",
             f"p.commissioner_code = {lit(agreement.commissioner.code)}",
             "p.service_line IN (" + ", ".join(lit(s) for s in scope.service_lines) + ")"]
    if agreement.group is not None:
        where.append(f"p.group_code = {lit(agreement.group.code)}")
    if scope.hrg_prefixes:
        where.append("(" + " OR ".join(f"starts_with(p.hrg_code, {lit(h)})"
                                       for h in scope.hrg_prefixes) + ")")
    join = ""
    if scope.condition_codelist:
        codes = codelist(scope.condition_codelist)
        join = ("JOIN apc_spells s ON p.activity_type = 'apc' "
                "AND p.activity_id = CAST(s.spell_id AS VARCHAR)")
        where.append("(" + " OR ".join(f"starts_with(s.primary_diagnosis, {lit(c)})"
                                       for c in codes) + ")")
    value = (TARIFF_VALUE_SQL.replace("price", "p.price")
             .replace("marginal_rate_adjustment", "p.marginal_rate_adjustment"))
    pence_sql = f"CAST(round({value} * 100) AS HUGEINT)"
    la = lit(agreement.local_authority.code)
    rows = warehouse.query(
        f"SELECT CASE WHEN n.local_authority_code IS NULL THEN 'unknown' "
        f"WHEN n.local_authority_code = {la} THEN 'resident' ELSE 'elsewhere' END AS residence,"
        f" p.month, count(*), sum({pence_sql}) "
        f"FROM priced_activity p {join} "
        "LEFT JOIN patients pt ON pt.patient_id = p.patient_id "
        "LEFT JOIN neighbourhoods n ON n.neighbourhood_code = pt.neighbourhood_code "
        f"WHERE {' AND '.join(where)} GROUP BY 1, 2")
    unknown_rows = unknown_pence = 0
    for residence, month, n, total in rows:
        if residence == "resident":
            months[int(month) - 1] += int(total)
        elif residence == "unknown":
            unknown_rows += int(n)
            unknown_pence += int(total)
    return months, (unknown_rows, unknown_pence)


def social_care_spend(warehouse: Warehouse, agreement: Agreement, financial_year: str
                      ) -> np.ndarray:
    """The council partner's packages of the scope's service types, costed by days in each
    month of the year (pence)."""
    months = np.zeros(12, dtype=np.int64)
    types = agreement.scope.social_care_service_types
    if not types:
        return months
    if not warehouse.has_table("social_care_packages"):
        raise WarehouseError(f"{warehouse.root}: no social_care_packages table: the pool's "
                             "scope names social care service types")
    start = parse_financial_year(financial_year)
    first, last = dt.date(start, 4, 1), dt.date(start + 1, 3, 31)
    rows = warehouse.query(
        "SELECT CAST(round(weekly_cost * 100) AS BIGINT), start_date, end_date "
        "FROM social_care_packages WHERE local_authority_code = ? AND service_type IN ("
        + ", ".join(lit(t) for t in types) + ") AND start_date <= ? "
        "AND (end_date IS NULL OR end_date >= ?) ORDER BY package_id",
        [agreement.local_authority.code, last, first])
    for weekly, begin, end in rows:
        months += np.asarray(package_cost_by_month(int(weekly), begin, end, financial_year),
                             dtype=np.int64)
    return months


def spend_in_scope(warehouse: Warehouse, agreement: Agreement, financial_year: str) -> Spend:
    nhs, unknown = nhs_spend(warehouse, agreement, financial_year)
    return Spend(nhs, social_care_spend(warehouse, agreement, financial_year), unknown)


# --------------------------------------------------------------------------- position
@dataclass(frozen=True)
class PooledPosition:
    """A pool's position for a year: at the end of ``month`` (1 = April) with a forecast
    outturn, or at the year end (``month`` 12, ``forecast_method`` None: actual spend).

    ``frame`` has one row per stream (``nhs``, ``social_care``) and the ``pool``: partners,
    annual contribution, contribution to date (``annual x months / 12``, rounded half up:
    the fund is drawn on evenly through the year), spend to date, variance to date, forecast
    outturn and its variance against the annual contribution (pence). ``settlement`` is
    the year-end settlement on the actual spend, or on the forecast outturn for a month;
    None where no forecast could be made (``notes`` say why)."""

    agreement: Agreement
    financial_year: str
    month: int
    forecast_method: str | None
    frame: pd.DataFrame
    settlement: Settlement | None
    notes: list[str] = field(default_factory=list)

    @property
    def basis(self) -> str:
        if self.forecast_method is None:
            return f"year-end settlement of {self.financial_year} on actual spend"
        return (f"forecast settlement of {self.financial_year} at month {self.month} "
                f"(NHS: {self.forecast_method.replace('_', ' ')}; social care: run rate)")


def _months_with_activity(warehouse: Warehouse, financial_year: str) -> int:
    if not warehouse.has_table("priced_activity"):
        return 0
    rows = warehouse.query("SELECT count(DISTINCT month), max(month) FROM priced_activity "
                           "WHERE financial_year = ?", [financial_year])
    return int(rows[0][1] or 0) if rows and rows[0][0] else 0


def view(store: DecisionStore | None, who: Principal, agreement: Agreement) -> None:
    """Refuse unless ``who`` may see the pool (a partner, in the partner's role)."""
    if store is not None:
        who = resolve(store, who)
    authorise(who, "view_pooled_budget", parties(agreement))


def pooled_position(warehouse: Warehouse, who: Principal, agreement: Agreement,
                    financial_year: str, *, month: int | None = None,
                    method: Method = "seasonal_run_rate",
                    store: DecisionStore | None = None) -> PooledPosition:
    """The pool's position and settlement (see :class:`PooledPosition`).

    Without ``month`` the year must be complete (priced activity for all twelve months)
    and the settlement is on actual spend; with ``month`` the position is at that month's
    end and the settlement is on the forecast outturn: NHS activity by ``method`` (the
    monitoring forecast rules, :mod:`pbc.monitoring.forecast`), social care by the run rate
    (a package costs the same every day it is open, so its spend has no seasonal profile to
    follow; last year's profile would instead follow the growth of last year's caseload)."""
    view(store, who, agreement)
    fy = normalise_financial_year(financial_year)
    contributions = agreement.contributions(fy)
    if method not in METHODS:
        raise PooledError(f"forecast method must be one of {', '.join(METHODS)}, not {method!r}")
    _check_partners(warehouse, agreement)
    reached = _months_with_activity(warehouse, fy)
    if month is None:
        if reached < 12:
            raise PooledError(f"{fy} is not complete in the warehouse (priced activity runs "
                              f"to month {reached} of 12): a year-end settlement needs the "
                              "whole year; ask for a month's position and forecast (--month)")
    elif not 1 <= month <= 12:
        raise PooledError(f"month must be 1 (April) to 12 (March), not {month}")
    elif month > reached:
        raise PooledError(f"the warehouse's priced activity for {fy} runs to month {reached}, "
                          f"not month {month}: no position can be given there yet")
    at = 12 if month is None else month
    spend = spend_in_scope(warehouse, agreement, fy)
    notes: list[str] = []
    if spend.unknown_residence[0]:
        rows, money = spend.unknown_residence
        notes.append(f"{rows:,} rows of NHS activity in scope ({format_pounds(money)}) are "
                     "for patients with no known neighbourhood of residence: not counted as "
                     "the council's residents")
    prior: Spend | None = None
    needs_prior = (month is not None and month < 12 and method != "run_rate"
                   and bool(agreement.scope.service_lines))
    if needs_prior:
        before = format_financial_year(parse_financial_year(fy) - 1)
        if _months_with_activity(warehouse, before) == 12:
            prior = spend_in_scope(warehouse, agreement, before)
    streams: list[dict[str, Any]] = []
    kinds = {"nhs": ("commissioner", "group"), "social_care": ("local_authority",)}
    for stream, actual, last in (("nhs", spend.nhs, None if prior is None else prior.nhs),
                                 ("social_care", spend.social_care,
                                  None if prior is None else prior.social_care)):
        members = [p for p in agreement.partners if p.kind in kinds[stream]]
        annual = sum(contributions[agreement.partners.index(p)] for p in members)
        to_date = (2 * annual * at + 12) // 24  # annual x months / 12, half up
        spent = int(actual[:at].sum())
        if month is None or month == 12:
            outturn, note = int(actual.sum()), ""
        else:
            rule: Method = method if stream == "nhs" else "run_rate"
            try:
                f = forecast(rule, actual.reshape(1, 12), at,
                             None if last is None or rule == "run_rate"
                             else last.reshape(1, 12))
            except ForecastError as e:
                raise PooledError(f"{agreement.reference}: {e}") from None
            outturn = int(f.outturn[0]) if bool(f.available[0]) else None  # type: ignore[assignment]
            note = "" if f.available[0] else f"{stream}: {f.reason[0]}"
        if note:
            notes.append(note)
        streams.append({"stream": stream, "partners": ", ".join(p.code for p in members),
                        "contribution": annual, "contribution_to_date": to_date,
                        "spend_to_date": spent, "variance_to_date": spent - to_date,
                        "forecast_outturn": outturn,
                        "forecast_variance": None if outturn is None else outturn - annual})
    frame = pd.DataFrame(streams)
    outturns = [r["forecast_outturn"] for r in streams]
    pool_outturn = None if any(o is None for o in outturns) else int(sum(outturns))
    pool = {"stream": "pool", "partners": ", ".join(p.code for p in agreement.partners),
            "contribution": int(sum(contributions)),
            "contribution_to_date": int(frame.contribution_to_date.sum()),
            "spend_to_date": int(frame.spend_to_date.sum()),
            "variance_to_date": int(frame.variance_to_date.sum()),
            "forecast_outturn": pool_outturn,
            "forecast_variance": None if pool_outturn is None
            else pool_outturn - int(sum(contributions))}
    frame = pd.concat([frame, pd.DataFrame([pool])], ignore_index=True)
    settlement = None if pool_outturn is None else settle(agreement, fy, pool_outturn)
    if settlement is None:
        notes.append("no forecast settlement: the pool's outturn could not be forecast")
    return PooledPosition(agreement, fy, at, None if month is None else method, frame,
                          settlement, notes)


def settlement_frame(settlement: Settlement, *, pounds: bool = True) -> pd.DataFrame:
    """One row per partner: ``partner, contribution, share_of_variance, bears, keeps,
    final_position`` (pounds as Decimal, or pence)."""
    rows = [{"partner": p.partner, "contribution": p.contribution,
             "share_of_variance": p.share_of_variance, "bears": p.bears, "keeps": p.keeps,
             "final_position": p.final_position} for p in settlement.partners]
    frame = pd.DataFrame(rows, columns=list(SETTLEMENT_COLUMNS))
    if pounds:
        for c in SETTLEMENT_COLUMNS[1:]:
            frame[c] = frame[c].map(lambda v: pence_to_pounds(int(v))).astype(object)
    return frame


def write_settlement_csv(position: PooledPosition, path: Path) -> int:
    """The settlement as CSV (pounds, 2 dp); refuses when there is none."""
    if position.settlement is None:
        raise PooledError("no settlement to write: " + "; ".join(position.notes))
    frame = settlement_frame(position.settlement)
    frame.to_csv(path, index=False)
    return len(frame)


def write_workbook(position: PooledPosition, path: Path, source: str) -> Path:
    """The position and the settlement as a workbook in the house style."""
    from pbc.reports.workbook import Column, TitleBlock, Workbook

    a = position.agreement
    period = (position.financial_year if position.forecast_method is None
              else f"{position.financial_year}, month {position.month}")
    title = TitleBlock(f"Pooled budget {a.reference}: {a.name}",
                       f"host {a.host}; partners " + ", ".join(p.code for p in a.partners),
                       period, source)
    money = [c for c in position.frame.columns if c not in ("stream", "partners")]
    frame = position.frame.copy()
    for c in money:
        frame[c] = frame[c].astype(object).map(
            lambda v: None if v is None or pd.isna(v) else pence_to_pounds(int(v)))
    with Workbook(path, title) as wb:
        settlement = position.settlement
        wb.summary("Summary", [
            ("Agreement", f"{a.reference}: {a.name}"),
            ("Scope", a.scope.describe()),
            ("Sharing rule", a.sharing.rule),
            ("Basis", position.basis),
            ("Spend", (None if settlement is None else pence_to_pounds(settlement.spend),
                       "money")),
            ("Contributions", (None if settlement is None
                               else pence_to_pounds(settlement.contributions), "money")),
            ("Variance (spend - contributions)", (
                None if settlement is None else pence_to_pounds(settlement.variance),
                "money"))], notes=position.notes)
        wb.table("Position", frame[frame.stream != "pool"], [
            Column("stream", "Stream"), Column("partners", "Partners"),
            Column("contribution", "Annual contribution", "money"),
            Column("contribution_to_date", "Contribution to date", "money"),
            Column("spend_to_date", "Spend to date", "money"),
            Column("variance_to_date", "Variance to date", "money"),
            Column("forecast_outturn", "Forecast outturn", "money"),
            Column("forecast_variance", "Forecast variance", "money")])
        if settlement is not None:
            wb.table("Settlement", settlement_frame(settlement), [
                Column("partner", "Partner"),
                Column("contribution", "Contribution", "money"),
                Column("share_of_variance", "Share of variance", "money"),
                Column("bears", "Bears (overspend)", "money"),
                Column("keeps", "Keeps (underspend)", "money"),
                Column("final_position", "Final position", "money")],
                notes=["Contributions plus each partner's share of the variance equal the "
                       "spend to the penny; the odd penny goes by largest remainder."])
    return path


# --------------------------------------------------------------------------- register
def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record_agreement(store: DecisionStore, who: Principal, agreement: Agreement,
                     text: str) -> tuple[int, bool]:
    """Record the agreement in the register (a partner may); returns (version, changed).
    The same file again changes nothing; a changed file under the same reference is a new
    version. One transaction with its audit row."""
    who = resolve(store, who)
    authorise(who, "record_pooled_agreement", parties(agreement))
    digest = _sha(text)
    with store._tx() as s:
        row = s.scalar(select(PooledAgreementRecord).where(
            PooledAgreementRecord.reference == agreement.reference).with_for_update())
        if row is not None:
            old = row.agreement()
            authorise(who, "record_pooled_agreement", parties(old))  # a partner of both
            if row.sha256 == digest:
                return row.version, False
            before = row.state()
            row.version += 1
        else:
            before = None
            row = PooledAgreementRecord(reference=agreement.reference, version=1)
            s.add(row)
        row.name, row.host_code = agreement.name, agreement.host
        row.commissioner_code = agreement.commissioner.code
        row.local_authority_code = agreement.local_authority.code
        row.group_code = agreement.group.code if agreement.group else None
        row.agreement_file, row.content = text, agreement.model_dump_json()
        row.sha256, row.recorded_by, row.recorded_at = digest, who.user or "anonymous", utcnow()
        s.flush()
        append(s, who, "record_pooled_agreement", ENTITY, agreement.reference,
               before=before, after=row.state(), source=who.source,
               contributions={fy: str(sum(pence_to_pounds(c) for c in
                                          agreement.contributions(fy)))
                              for fy in agreement.years})
        return row.version, True


@dataclass(frozen=True)
class RegisterRow:
    reference: str
    name: str
    version: int
    host: str
    partners: str
    rule: str
    scope: str
    financial_year: str
    contributions: int  # pence, the pool's total for the year
    by_partner: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "by_partner"}
        out["contributions"] = pence_to_pounds(self.contributions)
        for code, amount in self.by_partner.items():
            out[f"contribution_{code}"] = pence_to_pounds(amount)
        return out


def register(store: DecisionStore, who: Principal) -> list[RegisterRow]:
    """Every recorded agreement ``who`` is a partner of, one row per financial year with
    the pool's total contributions and each partner's. A role that may see no pool is
    refused; a partner of none gets an empty register."""
    who = resolve(store, who)
    if who.role not in PERMISSIONS["view_pooled_budget"].roles:
        authorise(who, "view_pooled_budget")  # refused, saying who may
    with store._session() as s:
        records = list(s.scalars(select(PooledAgreementRecord).order_by(
            PooledAgreementRecord.reference)))
    out = []
    for r in records:
        a = r.agreement()
        if not allowed(who, "view_pooled_budget", parties(a)):
            continue
        for fy in a.years:
            amounts = a.contributions(fy)
            out.append(RegisterRow(a.reference, a.name, r.version, a.host,
                                   ", ".join(f"{p.code} ({p.kind})" for p in a.partners),
                                   a.sharing.rule, a.scope.describe(), fy, sum(amounts),
                                   {p.code: c for p, c in zip(a.partners, amounts,
                                                              strict=True)}))
    return out


def stored_agreement(store: DecisionStore, who: Principal, reference: str) -> Agreement:
    """A recorded agreement by its reference (a partner may read it)."""
    who = resolve(store, who)
    with store._session() as s:
        row = s.scalar(select(PooledAgreementRecord).where(
            PooledAgreementRecord.reference == reference))
        if row is None:
            raise PooledError(f"no pooled budget agreement {reference!r} in the register")
        a = row.agreement()
    view(None, who, a)
    return a


# --------------------------------------------------------------------------- demo
DEMO_AGREEMENT = """\
# A Section 75 pooled budget for intermediate care: the commissioner's emergency
# admissions of the council's residents and the council's home care and reablement.
reference = "S75-DEMO-1"
name = "Intermediate care and reablement"
host = "{la}"

[[partners]]
code = "{commissioner}"
kind = "commissioner"
contributions = {{ "{year}" = {nhs} }}

[[partners]]
code = "{la}"
kind = "local_authority"
contributions = {{ "{year}" = {council} }}

[scope]
service_lines = ["non_elective"]
social_care_service_types = ["home_care", "reablement"]

[sharing]
rule = "host_cap"
host_cap = {cap}
"""


def demo_pooled(warehouse: Warehouse, out: Path, console: Any, *,
                financial_year: str | None = None) -> PooledPosition:
    """For ``pbc demo``: write an agreement for the economy's first council and its
    commissioner (contributions 95% of last complete year's spend in scope, so the pool
    overspends and the cap binds), record it in the register, and print the settlement;
    writes ``pooled_budget.toml``, ``pooled_settlement.csv`` and ``pooled_budget.xlsx`` to
    ``out``. Needs a priced warehouse with a complete financial year; no users."""
    from rich.table import Table as RichTable

    la = str(warehouse.query("SELECT min(local_authority_code) FROM local_authorities")[0][0])
    commissioner = str(warehouse.query("SELECT min(commissioner_code) FROM practices")[0][0])
    if financial_year is None:
        full = warehouse.query("SELECT financial_year FROM priced_activity GROUP BY 1 "
                               "HAVING count(DISTINCT month) = 12 ORDER BY 1 DESC LIMIT 1")
        if not full:
            raise PooledError("no financial year has all twelve months of priced activity")
        financial_year = str(full[0][0])
    fy = normalise_financial_year(financial_year)
    probe = parse_agreement(tomllib.loads(DEMO_AGREEMENT.format(
        la=la, commissioner=commissioner, year=fy, nhs="0.00", council="0.00", cap="0.00"),
        parse_float=Decimal))
    spend = spend_in_scope(warehouse, probe, fy)
    nhs, council = (int(x.sum()) * 95 // 100 for x in (spend.nhs, spend.social_care))
    text = DEMO_AGREEMENT.format(la=la, commissioner=commissioner, year=fy,
                                 nhs=pence_to_pounds(nhs), council=pence_to_pounds(council),
                                 cap=pence_to_pounds((nhs + council) // 50))
    out.mkdir(parents=True, exist_ok=True)
    (out / "pooled_budget.toml").write_text(text, encoding="utf-8")
    agreement, text = read_agreement(out / "pooled_budget.toml")
    host = Principal("demo", "local_authority", la)
    store = DecisionStore.beside(warehouse.root)
    try:
        record_agreement(store, host, agreement, text)
        pos = pooled_position(warehouse, host, agreement, fy, store=store)
    finally:
        store.close()
    assert pos.settlement is not None
    write_settlement_csv(pos, out / "pooled_settlement.csv")
    write_workbook(pos, out / "pooled_budget.xlsx", f"pbc warehouse {warehouse.root}")
    print_settlement(pos, console, RichTable)
    return pos


def print_settlement(pos: PooledPosition, console: Any, table_class: Any) -> None:
    """The position (streams) and the settlement (partners) as two Rich tables."""
    a = pos.agreement

    def money(v: Any) -> str:
        return "-" if v is None or pd.isna(v) else f"£{pence_to_pounds(int(v)):,.2f}"

    def whole(v: Any) -> str:  # tables show whole pounds so that no figure is ever cut
        return "-" if v is None or pd.isna(v) else f"£{round(pence_to_pounds(int(v))):,}"

    from rich import box

    t = table_class(title=f"Pooled budget {a.reference} ({a.name}), {pos.financial_year}, "
                    f"{'year end' if pos.forecast_method is None else f'month {pos.month}'}"
                    " (whole pounds; the CSV has pence)", box=box.SIMPLE_HEAD)
    t.add_column("stream", min_width=6)
    for col in ("contribution", "to date", "spent", "variance", "forecast"):
        t.add_column(col, justify="right", no_wrap=True)
    t.caption = ("to date: contribution to date; spent: spend to date; variance: spent - to "
                 "date; forecast: forecast outturn")
    for r in pos.frame.to_dict("records"):
        t.add_row(str(r["stream"]).replace("_", " "), whole(r["contribution"]),
                  whole(r["contribution_to_date"]), whole(r["spend_to_date"]),
                  whole(r["variance_to_date"]), whole(r["forecast_outturn"]))
    console.print(t)
    s = pos.settlement
    if s is None:
        for n in pos.notes:
            console.print(f"[yellow]{n}[/]", highlight=False)
        return
    kind = "overspend" if s.variance > 0 else "underspend" if s.variance < 0 else "on budget"
    t = table_class(title=f"{pos.basis}: {kind} {money(abs(s.variance))}, rule {s.rule}"
                    + (" (the host's cap binds)" if s.cap_binds else "")
                    + " (whole pounds; the CSV has pence)", box=box.SIMPLE_HEAD)
    t.add_column("partner", no_wrap=True)
    for col in ("contribution", "share", "bears", "keeps", "final"):
        t.add_column(col, justify="right", no_wrap=True)
    t.caption = ("share: share of the variance; final: final position (contribution + "
                 "share)")
    for p in s.partners:
        t.add_row(p.partner, whole(p.contribution), whole(p.share_of_variance),
                  whole(p.bears), whole(p.keeps), whole(p.final_position))
    console.print(t)
    for n in pos.notes:
        console.print(f"[yellow]{n}[/]", highlight=False)
    console.print(f"contributions {money(s.contributions)} + shares of the variance "
                  f"{money(s.variance)} = spend {money(s.spend)}", highlight=False)
