"""Business cases: the case file, the lifecycle, and their table in the decision store.

Lifecycle (who may take each step: :mod:`pbc.services.permissions`)::

    draft --submit--> submitted --approve--> approved --implement--> implemented
                          |      --reject--> rejected                    |
                          |      --return--> returned --submit--> ...    v
                          |                            evaluated (again as data arrives)
    (touches social care) draft --submit--> consultation --consult--> submitted
                                            consultation --reject / return--> ...

A case that touches social care is sent to its local authority when it is submitted; it
cannot be approved until the council has recorded its response. Where the proposer would
provide the service itself (make rather than buy), a conflict-of-interest declaration must be
in the case before it can be approved, and the case lists the alternative providers
considered. Every change bumps the case's ``version`` (optimistic locking: an update that
finds another version than the one it read is refused as a conflict).
"""

from __future__ import annotations

import datetime as dt
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import Boolean, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pbc.calendar import normalise_financial_year
from pbc.decisions.models import Base, utcnow
from pbc.decisions.store import DecisionError
from pbc.pricing.schema import SERVICE_LINES
from pbc.reference.codelists import known_condition_codelist, known_names

Status = Literal["draft", "submitted", "consultation", "approved", "rejected", "returned",
                 "implemented", "evaluated"]

#: action -> (statuses it may start from, status it leads to); ``submit`` of a case that
#: touches social care leads to ``consultation`` instead (:func:`next_status`)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "submit": (frozenset({"draft", "returned"}), "submitted"),
    "consult": (frozenset({"consultation"}), "submitted"),
    "approve": (frozenset({"submitted"}), "approved"),
    "reject": (frozenset({"submitted", "consultation"}), "rejected"),
    "return": (frozenset({"submitted", "consultation"}), "returned"),
    "implement": (frozenset({"approved"}), "implemented"),
    # evaluation (pbc.services.evaluation): again when more months are loaded
    "evaluate": (frozenset({"implemented", "evaluated"}), "evaluated"),
}

#: the categories of a case: a service redesign, or one of the flexible uses of NHS funds
#: the practice-based commissioning guidance lists (Department of Health, Practice based
#: commissioning: budget setting refinements and clarification of health funding
#: flexibilities, 2006)
CATEGORIES = ("service_redesign", "respite_care", "carer_support", "crisis_avoidance",
              "healthy_lifestyles", "long_term_condition_independence",
              "practice_advice_and_advocacy", "parent_support", "practice_mental_health",
              "isolated_older_people")


class CaseError(DecisionError):
    """A case file or a step in the lifecycle that cannot be taken (the message says why)."""


class ConflictError(CaseError):
    """Someone else changed the case since it was read: nothing was done."""


def next_status(action: str, status: str, touches_social_care: bool) -> str:
    """The status ``action`` leads to from ``status``; CaseError if it cannot be taken."""
    if action not in TRANSITIONS:
        raise CaseError(f"unknown action {action!r}")
    starts, to = TRANSITIONS[action]
    if status not in starts:
        raise CaseError(f"a case that is {status} cannot be {_done(action)}: only a case "
                        f"that is {' or '.join(sorted(starts))} can")
    if action == "submit" and touches_social_care:
        return "consultation"
    return to


def _done(action: str) -> str:
    return {"submit": "submitted", "consult": "consulted on", "approve": "approved",
            "reject": "rejected", "return": "returned", "implement": "implemented",
            "evaluate": "evaluated"}[action]


# --------------------------------------------------------------------------- the case file
Money = Annotated[Decimal, Field(ge=0, decimal_places=2, max_digits=14)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scope(_Strict):
    service_lines: list[str] = Field(min_length=1)
    hrg_prefixes: list[str] = []
    condition_codelist: str | None = None

    @field_validator("service_lines")
    @classmethod
    def _lines(cls, v: list[str]) -> list[str]:
        return known_names(v, SERVICE_LINES, "service line")

    @field_validator("condition_codelist")
    @classmethod
    def _codelist(cls, v: str | None) -> str | None:
        return known_condition_codelist(v)


class ExpectedChange(_Strict):
    description: str = Field(min_length=1)
    reduction: Decimal = Field(gt=-1, le=1)  # 0.15 = 15% less of the baseline
    reduction_sd: Decimal = Field(ge=0, le=1)


class SocialCare(_Strict):
    touches_social_care: bool
    local_authority: str | None = None

    @model_validator(mode="after")
    def _la(self) -> SocialCare:
        if self.touches_social_care and not self.local_authority:
            raise ValueError("a case that touches social care names its local_authority "
                             "(ONS code), which is consulted before approval")
        return self


class MakeOrBuy(_Strict):
    provider_is_proposer: bool
    provider: str = Field(min_length=1)
    alternatives_considered: list[str] = []
    conflict_of_interest: str | None = None

    @model_validator(mode="after")
    def _alternatives(self) -> MakeOrBuy:
        if self.provider_is_proposer and not self.alternatives_considered:
            raise ValueError("the proposer would provide the service itself: list the "
                             "alternative providers considered (alternatives_considered)")
        return self


class CaseFile(_Strict):
    """A business case as the proposer writes it (``examples/business_case.toml``)."""

    title: str = Field(min_length=1, max_length=200)
    proposer: str = Field(min_length=1, max_length=20)
    proposer_kind: Literal["practice", "group"]
    category: str
    summary: str = ""
    scope: Scope
    baseline_year: str | None = None
    investment: dict[str, Money] = Field(min_length=1)
    expected_change: ExpectedChange
    social_care: SocialCare
    make_or_buy: MakeOrBuy
    #: where the investment comes from: the commissioner's budget, or the proposer's freed
    #: resources (a reinvestment: drawn on its reinvestment ledger when the case is approved,
    #: refused when more than is reinvestable; pbc.services.reinvestment)
    funding: Literal["commissioner", "freed_resources"] = "commissioner"
    seed: int = 1

    @field_validator("category")
    @classmethod
    def _category(cls, v: str) -> str:
        if v not in CATEGORIES:
            raise ValueError(f"category must be one of {', '.join(CATEGORIES)}, not {v!r}")
        return v

    @field_validator("baseline_year")
    @classmethod
    def _baseline_year(cls, v: str | None) -> str | None:
        return None if v is None else normalise_financial_year(v)

    @field_validator("investment")
    @classmethod
    def _years(cls, v: dict[str, Decimal]) -> dict[str, Decimal]:
        out = {normalise_financial_year(k): amount for k, amount in v.items()}
        if len(out) != len(v):
            raise ValueError("a financial year is named twice in investment")
        return out

    def investment_pence(self) -> dict[str, int]:
        return {fy: int(amount * 100) for fy, amount in self.investment.items()}


def read_case_file(path: Path) -> tuple[CaseFile, str]:
    """The validated case file and its text; CaseError naming the file and each field."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CaseError(f"{path}: no such case file") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise CaseError(f"{path}: not valid TOML: {e}") from None
    return parse_case(data, str(path)), text


def parse_case(data: dict[str, Any], where: str = "case") -> CaseFile:
    try:
        return CaseFile.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(file)'}: "
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in e.errors())
        raise CaseError(f"{where}: {problems}") from None
    except ValueError as e:  # a financial year that is not one
        raise CaseError(f"{where}: {e}") from None


# --------------------------------------------------------------------------- the table
class BusinessCase(Base):
    """One business case; ``version`` counts its changes (optimistic locking)."""

    __tablename__ = "business_cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), index=True)
    title: Mapped[str] = mapped_column(String(200))
    proposer_kind: Mapped[str] = mapped_column(String(10))
    proposer_code: Mapped[str] = mapped_column(String(20), index=True)
    commissioner_code: Mapped[str] = mapped_column(String(20), index=True)
    category: Mapped[str] = mapped_column(String(60))
    touches_social_care: Mapped[bool] = mapped_column(Boolean)
    local_authority_code: Mapped[str | None] = mapped_column(String(20), nullable=True,
                                                             index=True)
    provider_is_proposer: Mapped[bool] = mapped_column(Boolean)
    case_file: Mapped[str] = mapped_column(Text)  # the TOML as the proposer wrote it
    content: Mapped[str] = mapped_column(Text)  # JSON: the validated CaseFile
    savings: Mapped[str] = mapped_column(Text)  # JSON: Projection.as_dict()
    consultation_response: Mapped[str | None] = mapped_column(Text, nullable=True)
    consulted_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    consulted_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    decision_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's own

    @property
    def sent_to_local_authority(self) -> bool:
        """The case was sent to its council (it touches social care and was submitted)."""
        return self.touches_social_care and self.status != "draft"

    def case(self) -> CaseFile:
        """The validated case file."""
        return CaseFile.model_validate_json(self.content)

    def state(self) -> dict[str, Any]:
        """What an audit row records as the case's before / after."""
        return {"status": self.status, "version": self.version,
                "decision_note": self.decision_note,
                "consultation_response": self.consultation_response}
