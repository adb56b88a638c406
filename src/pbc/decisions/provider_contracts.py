"""Provider contracts and checked invoices in the decision store.

A contract is agreed between a commissioner and a provider for a financial year, with an
activity and money plan by service line and month (April first). It is written as a TOML
file (``examples/provider_contract.toml``), validated as a whole (every problem named with
its field), and recorded once per (commissioner, provider, year). (Not the *data contracts*
of :mod:`pbc.contracts`, which are table schemas.)

A checked invoice is recorded with the activity it billed for the first time (every line
but the not-ours and duplicate ones), so a later invoice billing the same activity again is
caught as a duplicate.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pbc.calendar import normalise_financial_year
from pbc.decisions.models import Base, utcnow
from pbc.decisions.store import DecisionError
from pbc.invoices.position import MonthPlan
from pbc.pricing.schema import SERVICE_LINES

#: service lines a provider contract can plan (prescribing is paid at cost, not contracted)
ContractLine = Literal["elective_inpatient", "day_case", "non_elective", "outpatient_first",
                       "outpatient_follow_up", "outpatient_procedure", "ae"]
CONTRACT_LINES: tuple[str, ...] = get_args(ContractLine)
assert set(CONTRACT_LINES) == set(SERVICE_LINES) - {"prescribing"}
MONTHS = ("Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec", "Jan", "Feb", "Mar")


class ContractError(DecisionError):
    """A contract file, or a contract action, that cannot be taken (the message says why)."""


Pounds = Annotated[Decimal, Field(ge=0, decimal_places=2, max_digits=14)]


class LinePlan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    activity: list[Annotated[int, Field(ge=0)]] = Field(min_length=12, max_length=12)
    money: list[Pounds] = Field(min_length=12, max_length=12)

    def month_plan(self) -> MonthPlan:
        return MonthPlan(tuple(self.activity), tuple(int(m * 100) for m in self.money))


class ContractFile(BaseModel):
    """A provider contract as the commissioner writes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    commissioner: str = Field(min_length=1, max_length=20)
    provider: str = Field(min_length=1, max_length=20)
    financial_year: str
    title: str = Field(default="", max_length=200)
    plan: dict[ContractLine, LinePlan] = Field(min_length=1)

    @field_validator("financial_year")
    @classmethod
    def _year(cls, v: str) -> str:
        return normalise_financial_year(v)

    def month_plans(self) -> dict[str, MonthPlan]:
        return {str(sl): p.month_plan() for sl, p in self.plan.items()}

    def service_lines(self) -> frozenset[str]:
        return frozenset(str(sl) for sl in self.plan)


def parse_contract(data: dict[str, Any], where: str = "contract") -> ContractFile:
    try:
        return ContractFile.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(file)'}: "
            f"{err['msg'].removeprefix('Value error, ')}" for err in e.errors())
        raise ContractError(f"{where}: {problems}") from None


def read_contract_file(path: Path) -> tuple[ContractFile, str]:
    """The validated contract and its text; ContractError naming the file and each field."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ContractError(f"{path}: no such contract file") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ContractError(f"{path}: not valid TOML: {e}") from None
    return parse_contract(data, str(path)), text


def contract_toml(contract: ContractFile) -> str:
    """A contract as TOML text (the form :func:`read_contract_file` reads)."""
    out = [f'commissioner = "{contract.commissioner}"', f'provider = "{contract.provider}"',
           f'financial_year = "{contract.financial_year}"', f'title = "{contract.title}"']
    for sl, p in contract.plan.items():
        out += ["", f"[plan.{sl}]", f"activity = [{', '.join(str(a) for a in p.activity)}]",
                f"money = [{', '.join(f'{m:.2f}' for m in p.money)}]"]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- tables
class ProviderContract(Base):
    """One contract: (commissioner, provider, financial year), its file and plan."""

    __tablename__ = "provider_contracts"
    __table_args__ = (UniqueConstraint("commissioner_code", "provider_code",
                                       "financial_year"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    commissioner_code: Mapped[str] = mapped_column(String(20), index=True)
    provider_code: Mapped[str] = mapped_column(String(20), index=True)
    financial_year: Mapped[str] = mapped_column(String(7))
    title: Mapped[str] = mapped_column(String(200))
    contract_file: Mapped[str] = mapped_column(Text)  # the TOML as written
    content: Mapped[str] = mapped_column(Text)  # JSON: the validated ContractFile
    plan_pence: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    def contract(self) -> ContractFile:
        return ContractFile.model_validate_json(self.content)


class InvoiceCheckRecord(Base):
    """One checked invoice: who checked which file when, and its totals by class."""

    __tablename__ = "invoice_checks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    commissioner_code: Mapped[str] = mapped_column(String(20), index=True)
    provider_code: Mapped[str] = mapped_column(String(20), index=True)
    file_name: Mapped[str] = mapped_column(String(300))
    file_sha256: Mapped[str] = mapped_column(String(64), index=True)
    lines: Mapped[int] = mapped_column(Integer)
    invoiced_pence: Mapped[int] = mapped_column(BigInteger)
    summary: Mapped[str] = mapped_column(Text)  # JSON: lines, invoiced, at stake by class
    checked_by: Mapped[str] = mapped_column(String(100))
    checked_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class BilledActivity(Base):
    """An activity billed by a checked invoice (first billing only): a later invoice that
    bills it again is a duplicate."""

    __tablename__ = "billed_activity"
    __table_args__ = (UniqueConstraint("commissioner_code", "provider_code", "dataset",
                                       "activity_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    check_id: Mapped[int] = mapped_column(ForeignKey("invoice_checks.id"), index=True)
    commissioner_code: Mapped[str] = mapped_column(String(20))
    provider_code: Mapped[str] = mapped_column(String(20))
    dataset: Mapped[str] = mapped_column(String(10))
    activity_id: Mapped[str] = mapped_column(String(60))
    row: Mapped[int] = mapped_column(Integer)
