"""Provider contracts and invoice validation as services (the CLI and, later, the web app).

Every call takes the acting :class:`Principal` and asks the one permission table
(``add_contract``, ``view_contract``, ``check_invoice``): only the commissioner's finance role
records a contract or reads an invoice, and only for its own organisation. Every change is
one transaction of the decision store with its hash-chained audit row.

Money (docs/money.md): contracts are planned at tariff and invoices bill each activity at
tariff, so both are compared with pbc's **tariff value** (``TARIFF_VALUE_SQL``, the price
before the emergency marginal rate). The marginal-rate cut is a settlement of the whole
contract year against its baseline, keyed by (commissioner, provider, year); which spells it
falls on depends on the order they were discharged in, so no provider can bill it line by
line. The position shows the cut to date apart from the plan comparison.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pbc.decisions.audit import append
from pbc.decisions.models import utcnow
from pbc.decisions.provider_contracts import (
    CONTRACT_LINES,
    MONTHS,
    BilledActivity,
    ContractError,
    ContractFile,
    InvoiceCheckRecord,
    LinePlan,
    ProviderContract,
    contract_toml,
    read_contract_file,
)
from pbc.decisions.store import DecisionStore
from pbc.invoices.check import CLASSES, Activity, CheckedLine, InvoiceCheck, check_invoice
from pbc.invoices.invoice import InvoiceLine, invoice_csv, parse_invoice, pence_text
from pbc.invoices.plant import Planted, plant_errors
from pbc.invoices.position import ContractPosition, contract_position
from pbc.pricing.schema import TARIFF_VALUE_SQL
from pbc.services.cases import resolve
from pbc.services.permissions import CaseParties, authorise
from pbc.services.principal import Principal
from pbc.warehouse import Warehouse, WarehouseError

CONTRACT = "provider_contract"
INVOICE_CHECK = "invoice_check"
#: pbc's tariff value of a priced_activity row ``p``, in pence (NULL when unpriced)
VALUE_PENCE = ("CAST(round(" + TARIFF_VALUE_SQL.replace("price", "p.price").replace(
    "marginal_rate_adjustment", "p.marginal_rate_adjustment") + " * 100) AS BIGINT)")
CLASS_WORDS = {"matched": "Matched", "not_ours": "Not ours", "duplicate": "Duplicate",
               "not_in_contract": "Not in contract", "wrong_price": "Wrong price",
               "wrong_practice": "Wrong practice"}


def _parties(commissioner: str, provider: str) -> CaseParties:
    return CaseParties(provider, commissioner)


def _commissioner_of(warehouse: Warehouse | None, who: Principal) -> str:
    """The commissioner a principal acts for: its own organisation on the commissioner's
    side; otherwise the warehouse's commissioner when it has one (so that a refusal says
    who may), else the principal's organisation."""
    if who.role.startswith("commissioner") or warehouse is None:
        return who.organisation
    if warehouse.has_table("commissioners"):
        found = warehouse.query("SELECT commissioner_code FROM commissioners ORDER BY 1")
        if len(found) == 1:
            return str(found[0][0])
    return who.organisation


def _contract_key(commissioner: str, provider: str, year: str) -> str:
    return f"{commissioner} {provider} {year}"


def _require(warehouse: Warehouse, table: str, column: str, code: str, what: str) -> None:
    if not warehouse.has_table(table):
        raise WarehouseError(f"{warehouse.root}: no {table} table (load the data first)")
    if not warehouse.query(f"SELECT 1 FROM {table} WHERE {column} = ?", [code]):
        raise ContractError(f"{what} {code}: not in the warehouse's {table}")


# --------------------------------------------------------------------------- contracts
@dataclass(frozen=True)
class ContractView:
    id: int
    contract: ContractFile
    created_by: str
    created_at: Any

    @property
    def plan_pence(self) -> int:
        return sum(sum(p.month_plan().pence) for p in self.contract.plan.values())


def add_contract(store: DecisionStore, warehouse: Warehouse, who: Principal,
                 path: Path) -> ContractView:
    """Record a provider contract from its file; once per (commissioner, provider, year)."""
    contract, text = read_contract_file(path)
    return record_contract(store, warehouse, who, contract, text)


def record_contract(store: DecisionStore, warehouse: Warehouse, who: Principal,
                    contract: ContractFile, text: str) -> ContractView:
    who = resolve(store, who)
    authorise(who, "add_contract", _parties(contract.commissioner, contract.provider))
    _require(warehouse, "commissioners", "commissioner_code", contract.commissioner,
             "commissioner")
    _require(warehouse, "providers", "provider_code", contract.provider, "provider")
    key = _contract_key(contract.commissioner, contract.provider, contract.financial_year)
    plan = sum(sum(p.month_plan().pence) for p in contract.plan.values())
    with store._tx() as s:
        old = s.scalar(select(ProviderContract).where(
            ProviderContract.commissioner_code == contract.commissioner,
            ProviderContract.provider_code == contract.provider,
            ProviderContract.financial_year == contract.financial_year))
        if old is not None:
            raise ContractError(
                f"a contract of {contract.commissioner} with {contract.provider} for "
                f"{contract.financial_year} is already recorded (contract {old.id}, by "
                f"{old.created_by} on {old.created_at:%Y-%m-%d}); a contract is recorded "
                "once (variations are not supported yet)")
        row = ProviderContract(
            commissioner_code=contract.commissioner, provider_code=contract.provider,
            financial_year=contract.financial_year, title=contract.title,
            contract_file=text, content=contract.model_dump_json(), plan_pence=plan,
            created_by=who.user or "anonymous", created_at=utcnow())
        s.add(row)
        s.flush()
        append(s, who, "add_contract", CONTRACT, key,
               after={"id": row.id, "plan_pence": plan,
                      "service_lines": sorted(contract.plan)}, source=who.source)
        return ContractView(row.id, contract, row.created_by, row.created_at)


def show_contract(store: DecisionStore, who: Principal, provider: str, year: str,
                  warehouse: Warehouse | None = None) -> ContractView:
    """The contract of the principal's organisation with ``provider`` for ``year``."""
    from pbc.calendar import normalise_financial_year

    who = resolve(store, who)
    year = normalise_financial_year(year)
    authorise(who, "view_contract", _parties(_commissioner_of(warehouse, who), provider))
    with store._session() as s:
        row = _contract_row(s, who.organisation, provider, year)
        return ContractView(row.id, row.contract(), row.created_by, row.created_at)


def _contract_row(s: Session, commissioner: str, provider: str,
                  year: str) -> ProviderContract:
    row = s.scalar(select(ProviderContract).where(
        ProviderContract.commissioner_code == commissioner,
        ProviderContract.provider_code == provider,
        ProviderContract.financial_year == year))
    if row is None:
        raise ContractError(f"no contract of {commissioner} with {provider} for {year} "
                            "(record one: pbc contract add FILE)")
    return row


def read_actual(warehouse: Warehouse, commissioner: str, provider: str, year: str
                ) -> tuple[dict[tuple[str, int], tuple[int, int]], dict[int, int]]:
    """The contract's actual activity: (service line, month) -> (rows priced, tariff value
    in pence), and month -> the marginal-rate adjustment (pence, <= 0)."""
    if not warehouse.has_table("priced_activity"):
        raise WarehouseError(f"{warehouse.root}: no priced activity (run pbc price)")
    rows = warehouse.query(
        f"SELECT service_line, month, count(*), sum({VALUE_PENCE}), "
        "CAST(round(sum(p.marginal_rate_adjustment) * 100) AS BIGINT) "
        "FROM priced_activity p WHERE p.commissioner_code = ? AND p.provider_code = ? "
        "AND p.financial_year = ? AND p.price IS NOT NULL "
        "AND p.activity_type IN ('apc', 'op', 'ae') GROUP BY ALL",
        [commissioner, provider, year])
    actual = {(str(sl), int(m)): (int(n), int(v)) for sl, m, n, v, _ in rows}
    mra: dict[int, int] = {}
    for _sl, m, _n, _v, cut in rows:
        mra[int(m)] = mra.get(int(m), 0) + int(cut)
    return actual, mra


def position(store: DecisionStore, warehouse: Warehouse, who: Principal, provider: str,
             year: str, month: int) -> tuple[ContractView, ContractPosition]:
    """The contract's plan against actual priced activity, April to ``month``."""
    view = show_contract(store, who, provider, year, warehouse)
    c = view.contract
    actual, mra = read_actual(warehouse, c.commissioner, c.provider, c.financial_year)
    pos = contract_position(c.month_plans(), actual, month,
                            marginal_rate_pence=sum(v for m, v in mra.items() if m <= month))
    return view, pos


def position_frame(pos: ContractPosition) -> pd.DataFrame:
    """The position's rows, money in pounds (Decimal), for CSV and workbook."""
    def pounds(p: int) -> Decimal:
        return Decimal(p) / 100

    return pd.DataFrame([{
        "service_line": r.service_line, "month": r.month, "month_name": MONTHS[r.month - 1],
        "plan_activity": r.plan_activity, "actual_activity": r.actual_activity,
        "variance_activity": r.variance_activity, "plan": pounds(r.plan_pence),
        "actual": pounds(r.actual_pence), "variance": pounds(r.variance_pence),
        "ytd_plan_activity": r.ytd_plan_activity, "ytd_actual_activity": r.ytd_actual_activity,
        "ytd_variance_activity": r.ytd_variance_activity, "ytd_plan": pounds(r.ytd_plan_pence),
        "ytd_actual": pounds(r.ytd_actual_pence), "ytd_variance": pounds(r.ytd_variance_pence),
    } for r in pos.rows])


def write_position(view: ContractView, pos: ContractPosition, *, csv_out: Path | None,
                   xlsx_out: Path | None) -> list[Path]:
    frame = position_frame(pos)
    written = []
    if csv_out is not None:
        csv_out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(csv_out, index=False)
        written.append(csv_out)
    if xlsx_out is not None:
        from pbc.reports.workbook import Column, TitleBlock, Workbook

        c = view.contract
        title = TitleBlock(f"Contract position: {c.provider}", c.commissioner,
                           f"{c.financial_year}, April to {MONTHS[pos.month - 1]} (month "
                           f"{pos.month})", f"contract {view.id} ({c.title or 'untitled'}); "
                           "actual: tariff value of priced activity")
        money = [("plan", "Plan"), ("actual", "Actual"), ("variance", "Variance")]
        with Workbook(xlsx_out, title) as wb:
            ytd = frame[frame.month == pos.month]
            wb.table("Year to date", ytd, [
                Column("service_line", "Service line"),
                Column("ytd_plan_activity", "Plan activity", "count"),
                Column("ytd_actual_activity", "Actual activity", "count"),
                Column("ytd_variance_activity", "Variance (activity)", "count"),
                *[Column(f"ytd_{k}", label, "money") for k, label in money]],
                totals=None, notes=[
                    "Money is the tariff value (before the emergency marginal rate); the "
                    "marginal-rate adjustment of the contract to date is "
                    f"{_pounds(pos.marginal_rate_pence)}, so payable = actual + that."])
            wb.table("Months", frame, [
                Column("service_line", "Service line"), Column("month_name", "Month"),
                Column("plan_activity", "Plan activity", "count", total=False),
                Column("actual_activity", "Actual activity", "count", total=False),
                Column("variance_activity", "Variance (activity)", "count", total=False),
                *[Column(k, label, "money", total=False) for k, label in money]],
                totals=None)
        written.append(xlsx_out)
    return written


def _pounds(pence: int) -> str:
    from pbc.budgets.money import format_pounds

    return str(format_pounds(pence))


# --------------------------------------------------------------------------- invoices
def read_activity(warehouse: Warehouse, keys: Sequence[tuple[str, str]]
                  ) -> dict[tuple[str, str], Activity]:
    """pbc's priced activity for the (dataset, activity id) keys an invoice names."""
    if not warehouse.has_table("priced_activity"):
        raise WarehouseError(f"{warehouse.root}: no priced activity (run pbc price): an "
                             "invoice is checked against pbc's pricing")
    wanted = pd.DataFrame(sorted(set(keys)), columns=["dataset", "activity_id"])
    con = warehouse.connect()
    try:
        con.register("invoice_keys", wanted)
        rows = con.execute(
            "SELECT p.activity_type, p.activity_id, p.commissioner_code, p.provider_code, "
            "p.practice_code, p.financial_year, p.month, p.service_line, "
            f"{VALUE_PENCE}, p.unpriced_reason FROM priced_activity p JOIN invoice_keys k "
            "ON p.activity_type = k.dataset AND p.activity_id = k.activity_id").fetchall()
    finally:
        con.close()
    return {(str(r[0]), str(r[1])): Activity(
        str(r[0]), str(r[1]), r[2], r[3], r[4] or None, str(r[5]), int(r[6]), str(r[7]),
        None if r[8] is None else int(r[8]), r[9]) for r in rows}


@dataclass(frozen=True)
class CheckOutcome:
    check: InvoiceCheck
    check_id: int | None  # None: not recorded (--no-record)
    file_name: str


def check_invoice_file(store: DecisionStore, warehouse: Warehouse, who: Principal,
                       path: Path, provider: str, *, record: bool = True) -> CheckOutcome:
    """Check a provider's invoice for the principal's organisation (the commissioner).

    Recorded (unless ``record`` is False) with the activity it bills for the first time, so
    a later invoice billing it again is a duplicate; the same file is checked once."""
    who = resolve(store, who)
    commissioner = who.organisation
    authorise(who, "check_invoice", _parties(_commissioner_of(warehouse, who), provider))
    _require(warehouse, "commissioners", "commissioner_code", commissioner, "commissioner")
    _require(warehouse, "providers", "provider_code", provider, "provider")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ContractError(f"{path}: no such invoice file") from None
    except OSError as e:
        raise ContractError(f"{path}: cannot read the invoice ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ContractError(f"{path}: not UTF-8 text (byte {e.start})") from None
    lines = parse_invoice(text, str(path))
    sha = hashlib.sha256(raw).hexdigest()
    activity = read_activity(warehouse, [x.key for x in lines])
    with store._session() as s:
        contracts = {str(r.financial_year): r.contract().service_lines() for r in s.scalars(
            select(ProviderContract).where(ProviderContract.commissioner_code == commissioner,
                                           ProviderContract.provider_code == provider))}
        ids = sorted({x.activity_id for x in lines})
        billed = {(b.dataset, b.activity_id): f"row {b.row} of invoice check {b.check_id}"
                  for start in range(0, len(ids), 500)
                  for b in s.scalars(select(BilledActivity).where(
                      BilledActivity.commissioner_code == commissioner,
                      BilledActivity.provider_code == provider,
                      BilledActivity.activity_id.in_(ids[start:start + 500])))}
    result = check_invoice(lines, activity, provider=provider, commissioner=commissioner,
                           contracts=contracts, billed_before=billed)
    result.reconcile()
    if not record:
        return CheckOutcome(result, None, path.name)
    summary = {t.klass: {"lines": t.lines, "invoiced_pence": t.invoiced_pence,
                         "at_stake_pence": t.at_stake_pence} for t in result.totals}
    try:
        return _record_check(store, who, result, path, sha, summary)
    except IntegrityError:  # another check recorded some of the same activity meanwhile
        raise ContractError(
            f"{path}: another invoice check billing some of the same activity was recorded "
            "while this one ran; nothing was recorded: check the invoice again (its lines "
            "billed by that check are then duplicates)") from None


def _record_check(store: DecisionStore, who: Principal, result: InvoiceCheck, path: Path,
                  sha: str, summary: dict[str, Any]) -> CheckOutcome:
    commissioner, provider = result.commissioner_code, result.provider_code
    with store._tx() as s:
        old = s.scalar(select(InvoiceCheckRecord).where(
            InvoiceCheckRecord.commissioner_code == commissioner,
            InvoiceCheckRecord.provider_code == provider,
            InvoiceCheckRecord.file_sha256 == sha))
        if old is not None:
            raise ContractError(
                f"{path}: this invoice (the same file) was checked already, as invoice check "
                f"{old.id} by {old.checked_by} on {old.checked_at:%Y-%m-%d %H:%M}; check it "
                "again without recording it with --no-record")
        row = InvoiceCheckRecord(
            commissioner_code=commissioner, provider_code=provider,
            file_name=path.name[:300], file_sha256=sha, lines=len(result.lines),
            invoiced_pence=result.invoiced_pence, summary=json.dumps(summary, sort_keys=True),
            checked_by=who.user or "anonymous", checked_at=utcnow())
        s.add(row)
        s.flush()
        s.add_all(BilledActivity(check_id=row.id, commissioner_code=commissioner,
                                 provider_code=provider, dataset=x.line.dataset,
                                 activity_id=x.line.activity_id, row=x.line.row)
                  for x in result.lines if x.klass not in ("not_ours", "duplicate"))
        append(s, who, "check_invoice", INVOICE_CHECK, str(row.id),
               after={"lines": len(result.lines), "invoiced_pence": result.invoiced_pence,
                      "classes": summary},
               provider=provider, file=path.name, sha256=sha, source=who.source)
        return CheckOutcome(result, row.id, path.name)


LINE_COLUMNS = ("row", "activity_id", "dataset", "practice_code", "service_line",
                "activity_date", "amount", "class", "reason", "pbc_price", "at_stake",
                "pbc_practice_code", "pbc_service_line", "financial_year")


def _money(pence: int) -> Decimal:
    return (Decimal(pence) / 100).quantize(Decimal("0.01"))


def _line_record(x: CheckedLine) -> dict[str, Any]:
    p = x.pbc
    return {"row": x.line.row, "activity_id": x.line.activity_id, "dataset": x.line.dataset,
            "practice_code": x.line.practice_code,
            "service_line": x.line.service_line, "activity_date": x.line.activity_date,
            "amount": _money(x.line.amount_pence), "class": x.klass,
            "reason": x.reason,
            "pbc_price": None if x.pbc_pence is None else _money(x.pbc_pence),
            "at_stake": _money(x.at_stake_pence),
            "pbc_practice_code": None if p is None else p.practice_code,
            "pbc_service_line": None if p is None else p.service_line,
            "financial_year": None if p is None else p.financial_year}


def _write_csv(path: Path, lines: Sequence[CheckedLine]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(LINE_COLUMNS)
        for x in lines:
            rec = _line_record(x)
            w.writerow(["" if rec[c] is None else rec[c] for c in LINE_COLUMNS])
    tmp.replace(path)


def challenge_path(csv_out: Path) -> Path:
    """Where the challenge list goes beside ``--csv OUT``: ``OUT_challenges.csv``."""
    return csv_out.with_name(f"{csv_out.stem}_challenges.csv")


def write_check(outcome: CheckOutcome, *, csv_out: Path, xlsx_out: Path | None = None
                ) -> list[Path]:
    """Every line with its class (``csv_out``), the challenge list beside it, and the
    workbook (Summary, Challenges, Lines) when asked."""
    check = outcome.check
    _write_csv(csv_out, check.lines)
    challenges = challenge_path(csv_out)
    _write_csv(challenges, check.challenges)
    written = [csv_out, challenges]
    if xlsx_out is not None:
        from pbc.reports.workbook import Column, TitleBlock, Workbook

        title = TitleBlock(f"Invoice check: {check.provider_code}", check.commissioner_code,
                           outcome.file_name, "pbc's priced activity (tariff value) and the "
                           "commissioner's contracts" + (
                               f"; invoice check {outcome.check_id}" if outcome.check_id
                               else "; not recorded"))
        summary = pd.DataFrame([{"class": CLASS_WORDS[t.klass], "lines": t.lines,
                                 "invoiced": Decimal(t.invoiced_pence) / 100,
                                 "at_stake": Decimal(t.at_stake_pence) / 100}
                                for t in check.totals])
        cols = [Column("row", "Row", "count", total=False),
                Column("activity_id", "Activity id"), Column("dataset", "Dataset"),
                Column("practice_code", "Practice"), Column("service_line", "Service line"),
                Column("activity_date", "Date", "date"),
                Column("amount", "Invoiced", "money"), Column("class", "Class"),
                Column("reason", "Reason", width=50),
                Column("pbc_price", "pbc's price", "money"),
                Column("at_stake", "At stake", "money"),
                Column("pbc_practice_code", "pbc's practice"),
                Column("pbc_service_line", "pbc's service line")]
        with Workbook(xlsx_out, title) as wb:
            wb.table("Summary", summary, [
                Column("class", "Class"), Column("lines", "Lines", "count"),
                Column("invoiced", "Invoiced", "money"),
                Column("at_stake", "At stake", "money")], notes=[
                "Every line is in exactly one class (precedence: not ours, duplicate, not "
                "in contract, wrong price, wrong practice); at stake: the whole amount, "
                "or for a wrong price the difference from pbc's price, or for a wrong "
                "practice the amount charged to the wrong practice's budget."])
            for name, rows in (("Challenges", check.challenges), ("Lines", check.lines)):
                frame = pd.DataFrame([_line_record(x) for x in rows],
                                     columns=list(LINE_COLUMNS))
                wb.table(name, frame, cols)
        written.append(xlsx_out)
    return written


# --------------------------------------------------------------------------- synthetic
@dataclass(frozen=True)
class SyntheticInvoice:
    commissioner: str
    provider: str
    financial_year: str
    month: int
    contract: ContractFile
    lines: list[InvoiceLine]
    planted: list[Planted]


def synthetic_invoice(warehouse: Warehouse, *, seed: int, per_class: int = 3,
                      month: int = 1, year: str | None = None, provider: str | None = None,
                      commissioner: str | None = None) -> SyntheticInvoice:
    """A contract and a month's invoice with ``per_class`` planted errors of each class,
    from a priced warehouse: the commissioner with most activity (or the one given), its
    provider with most tariff value that year, the latest year with twelve months priced.
    The contract plans every service line but one (the provider's smallest by rows, whose
    lines are then out of contract), at the actual activity and money give or take 5%."""
    def one(sql: str, params: list[Any]) -> Any:
        found = warehouse.query(sql, params)
        if not found or found[0][0] is None:
            raise WarehouseError(f"{warehouse.root}: no priced activity to make an invoice "
                                 "from")
        return found[0][0]

    typed = "p.activity_type IN ('apc', 'op', 'ae') AND p.price IS NOT NULL"
    if year is None:
        year = str(one("SELECT financial_year FROM priced_activity GROUP BY 1 HAVING "
                       "count(DISTINCT month) = 12 ORDER BY 1 DESC LIMIT 1", []))
    if commissioner is None:
        commissioner = str(one(f"SELECT commissioner_code FROM priced_activity p WHERE {typed} "
                               "AND financial_year = ? AND commissioner_code IS NOT NULL "
                               "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1", [year]))
    if provider is None:
        provider = str(one(f"SELECT provider_code FROM priced_activity p WHERE {typed} AND "
                           "financial_year = ? AND commissioner_code = ? GROUP BY 1 ORDER BY "
                           f"sum({VALUE_PENCE}) DESC, 1 LIMIT 1", [year, commissioner]))
    actual, _ = read_actual(warehouse, commissioner, provider, year)
    sizes: dict[str, int] = {}
    for (sl, _m), (n, _v) in actual.items():
        sizes[sl] = sizes.get(sl, 0) + n
    lines_in = sorted(sizes, key=lambda sl: (sizes[sl], sl))
    if len(lines_in) < 2:
        raise WarehouseError(f"{provider}: too few service lines to plant errors")
    left_out = lines_in[0]
    rng = random.Random(seed)
    plan: dict[str, LinePlan] = {}
    for sl in (s for s in CONTRACT_LINES if s in sizes and s != left_out):
        act, money = [], []
        for m in range(1, 13):
            n, v = actual.get((sl, m), (0, 0))
            f = Decimal(rng.randint(95, 105)) / 100
            act.append(int((n * f).to_integral_value()))
            money.append((Decimal(v) / 100 * f).quantize(Decimal("0.01")))
        plan[sl] = LinePlan(activity=act, money=money)
    contract = ContractFile.model_validate({
        "commissioner": commissioner, "provider": provider, "financial_year": year,
        "title": f"Synthetic contract with {provider} (seed {seed})", "plan": plan})
    rows = warehouse.query(
        "SELECT p.activity_id, p.activity_type, coalesce(p.practice_code, ''), "
        f"p.service_line, coalesce(p.hrg_code, ''), p.activity_date, {VALUE_PENCE}, "
        "p.commissioner_code FROM priced_activity p "
        f"WHERE {typed} AND p.provider_code = ? AND p.financial_year = ? AND p.month = ? "
        "ORDER BY p.activity_date, p.activity_type, p.activity_id", [provider, year, month])
    made = [(InvoiceLine(0, str(r[0]), str(r[1]), str(r[2]), r[5], int(r[6]), str(r[3]),
                         str(r[4])), r[7]) for r in rows]
    ours = [x for x, c in made if c == commissioner]
    correct = [x for x in ours if x.service_line != left_out]
    outside = [x for x in ours if x.service_line == left_out]
    foreign = [x for x, c in made if c != commissioner][:per_class]
    practices = [str(r[0]) for r in warehouse.query(
        "SELECT practice_code FROM practices WHERE commissioner_code = ? ORDER BY 1",
        [commissioner])]
    lines, planted = plant_errors(correct, seed=seed, per_class=per_class,
                                  outside_contract=outside, practices=practices,
                                  foreign=foreign)
    return SyntheticInvoice(commissioner, provider, year, month, contract, lines, planted)


def plant_invoice(store: DecisionStore, warehouse: Warehouse, who: Principal, folder: Path,
                  *, seed: int, per_class: int = 3, provider: str | None = None,
                  year: str | None = None, month: int = 1
                  ) -> tuple[SyntheticInvoice, list[Path]]:
    """``pbc invoice plant``: :func:`synthetic_invoice` from a priced warehouse (of the
    principal's commissioner; the same permission as checking an invoice), written to
    ``folder`` (:func:`write_synthetic`). For training and tests: the invoice holds
    activity ids, practices and prices of real rows of the warehouse."""
    who = resolve(store, who)
    authorise(who, "check_invoice", _parties(_commissioner_of(warehouse, who),
                                             provider or "any provider"))
    if not 1 <= month <= 12:
        raise ContractError(f"--month {month}: expected 1 (April) to 12 (March)")
    inv = synthetic_invoice(warehouse, seed=seed, per_class=per_class, month=month, year=year,
                            provider=provider, commissioner=who.organisation)
    return inv, write_synthetic(inv, folder)


def write_synthetic(inv: SyntheticInvoice, folder: Path) -> list[Path]:
    """``folder/<provider>.csv`` (the invoice), ``<provider>_planted.csv`` (the truth: row,
    dataset, activity id and class of every planted error) and ``<provider>_contract.toml``."""
    folder.mkdir(parents=True, exist_ok=True)
    invoice = folder / f"{inv.provider}.csv"
    invoice.write_text(invoice_csv(inv.lines), encoding="utf-8")
    truth = folder / f"{inv.provider}_planted.csv"
    with open(truth, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("row", "dataset", "activity_id", "class"))
        w.writerows((p.row, p.dataset, p.activity_id, p.klass) for p in inv.planted)
    contract = folder / f"{inv.provider}_contract.toml"
    contract.write_text(contract_toml(inv.contract), encoding="utf-8")
    return [invoice, truth, contract]


def synth_invoice(out: Path, *, seed: int, per_class: int = 3, keep: Path | None = None
                  ) -> tuple[SyntheticInvoice, list[Path]]:
    """``pbc synth --invoice``: load and price the synthetic economy just written to
    ``out`` in a scratch warehouse (kept at ``keep`` when given, else removed), and write
    its main provider's invoice for April of the latest full year, with planted errors, to
    ``out/invoices/``."""
    from pbc.services.pricing import run_pricing
    from pbc.warehouse.load import load

    with tempfile.TemporaryDirectory(prefix="pbc-synth-invoice-") as scratch:
        wh = Warehouse(keep if keep is not None else Path(scratch) / "wh")
        load(out, wh)
        run_pricing(wh)
        inv = synthetic_invoice(wh, seed=seed, per_class=per_class)
    return inv, write_synthetic(inv, out / "invoices")


# --------------------------------------------------------------------------- demo
def demo_invoice_check(warehouse: Warehouse, out: Path, console: Any, *,
                       who: Principal | None = None, seed: int = 1,
                       record: bool = True) -> CheckOutcome:
    """The demo's contract and invoice check: a contract for the commissioner's main
    provider (recorded in the decision store beside the warehouse, unless one is there),
    a month's invoice with three planted errors of each class, checked and recorded (unless
    ``record`` is False: a store where that invoice was checked refuses it); prints the summary
    and writes ``out/invoice_check/`` (contract, invoice, planted truth, lines, challenge
    list, workbook). ``who``: the commissioner's finance principal (default: self-declared
    ``commissioner:<the commissioner>`` as user ``finance``)."""
    inv = synthetic_invoice(warehouse, seed=seed)
    who = who or Principal("finance", "commissioner", inv.commissioner)
    folder = out / "invoice_check"
    files = write_synthetic(inv, folder)
    with DecisionStore.beside(warehouse.root) as store:
        try:
            show_contract(store, who, inv.provider, inv.financial_year)
        except ContractError:
            add_contract(store, warehouse, who, files[2])
        outcome = check_invoice_file(store, warehouse, who, files[0], inv.provider,
                                     record=record)
    written = write_check(outcome, csv_out=folder / "checked_lines.csv",
                          xlsx_out=folder / "invoice_check.xlsx")
    print_check(outcome, console)
    kinds = ", ".join(sorted({p.klass for p in inv.planted}))
    console.print(f"planted: {len(inv.planted)} errors ({kinds}); "
                  f"written: {', '.join(str(p) for p in [*files, *written])}",
                  soft_wrap=True, highlight=False, markup=False)
    return outcome


def print_check(outcome: CheckOutcome, console: Any) -> None:
    """The summary table of a check (lines, invoiced and at stake by class)."""
    from rich.table import Table

    check = outcome.check
    table = Table(title=f"Invoice {outcome.file_name} from {check.provider_code} to "
                        f"{check.commissioner_code}")
    for name, just in (("class", "left"), ("lines", "right"), ("invoiced", "right"),
                       ("at stake", "right")):
        table.add_column(name, justify=just)  # type: ignore[arg-type]
    for t in check.totals:
        table.add_row(CLASS_WORDS[t.klass], f"{t.lines:,}", _pounds(t.invoiced_pence),
                      _pounds(t.at_stake_pence))
    table.add_row("Total", f"{len(check.lines):,}", _pounds(check.invoiced_pence),
                  _pounds(sum(t.at_stake_pence for t in check.totals
                              if t.klass != "wrong_practice")) + " disputed")
    console.print(table)


__all__ = ["CLASSES", "add_contract", "check_invoice_file", "demo_invoice_check",
           "pence_text", "position", "show_contract", "synth_invoice", "write_check"]
