"""Budget-setting policy: a validated TOML file.

A policy says, for one financial year, which service lines are delegated to practices,
how much money the commissioner puts into each (its resource envelope), what it keeps
back (top-slices), how each line's fair share is measured, how fast budgets move from
historic spend towards fair shares, and which practices or groups have handed lines
back. See ``src/pbc/reference/budgets/sample_policy.toml`` for a commented example.

Layout::

    financial_year = "2025-26"             # "2025/26" is accepted and stored as 2025-26
    commissioner_code = "QHM"              # whose activity and practices: needed when the
                                           # warehouse holds more than one commissioner
    scope = ["elective_inpatient", ...]    # delegated service lines

    [envelope.<service_line>]              # one table per line in scope
    pounds = 12345678.90                   # either a fixed amount ...
    uplift_percent = 2.5                   # ... or omit pounds: prior-year priced spend
                                           #     x (1 + uplift); the uplift also turns
                                           #     prior-year spend into `historic`

    [[top_slice]]                          # any number
    name = "contingency reserve"
    percent = 1.0                          # of the envelope of its service lines, or
    # pounds = 250000                      # a fixed amount, spread pro rata to envelope
    service_lines = ["non_elective"]       # optional; default all lines in scope

    [fair_share.<service_line>]
    method = "nhse_weighted_population"    # or "weighted_capitation", "person_based",
                                           # "astro_pu" (ASTRO-PU weighted patients: the
                                           # standard for prescribing)
    component = "general_and_acute"        # needed by nhse_weighted_population

    [pace_of_change]
    pace = 0.25                            # 0 = historic, 1 = fair share
    floor_percent = -2.0                   # year-on-year change vs historic, optional
    ceiling_percent = 6.0

    [[opt_out]]
    code = "A81005"                        # a practice or a group code
    service_lines = ["prescribing"]

    [reinvestment]                         # optional; these are the defaults
    share = 0.70                           # of freed resources; below 0.70 needs guidance
    carry_years = 1                        # drawn within this many years, else it lapses
    level = "practice"                     # or "group": who frees and reinvests
    # guidance = "..."                     # what sets a share below 0.70

    [risk_sharing]                         # optional; needed by pbc settle
    overspend = "carry_forward"            # or "write_off": an overspend of a practice
                                           # outside a pool or a real budget
    [risk_sharing.risk_pool]               # optional: groups pool part of their budgets
    contribution_share = 0.02              # of each member's budget
    fallback = "commissioner"              # or "pro_rata_budget", "pro_rata_overspend"
    groups = ["G01"]                       # optional; default every group not on a
                                           # real budget
    [risk_sharing.real_budget.G02]         # a group on a real budget (a local clinical
    savings_share = 0.5                    # partnership): keeps this share of a saving,
    overspend_share = 0.5                  # bears this share of an overspend,
    savings_cap = 100000                   # each up to a cap in pounds (optional)
    overspend_cap = 250000

Errors name the file and the key path (e.g. ``envelope.prescribing.uplift_percent``).
"""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pbc.budgets.needs import COMPONENT_COLUMNS
from pbc.calendar import normalise_financial_year

SERVICE_LINES: tuple[str, ...] = (
    "elective_inpatient",
    "day_case",
    "non_elective",
    "outpatient_first",
    "outpatient_follow_up",
    "outpatient_procedure",
    "ae",
    "prescribing",
    "social_care",
)
ServiceLine = Literal[
    "elective_inpatient",
    "day_case",
    "non_elective",
    "outpatient_first",
    "outpatient_follow_up",
    "outpatient_procedure",
    "ae",
    "prescribing",
    "social_care",
]
FairShareMethod = Literal["weighted_capitation", "nhse_weighted_population", "person_based",
                          "astro_pu"]


class PolicyError(ValueError):
    """A budget policy file is missing, unreadable or invalid."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _two_dp(value: Decimal | None) -> Decimal | None:
    if value is None:
        return None
    if value != value.quantize(Decimal("0.01")):
        raise ValueError("money must have at most 2 decimal places")
    if value < 0:
        raise ValueError("money must not be negative")
    return value


class Envelope(_Model):
    """The commissioner's resource envelope for one service line."""

    pounds: Decimal | None = Field(None, description="Fixed envelope in pounds.")
    uplift_percent: Decimal = Field(
        Decimal(0), ge=-100, le=1000,
        description="Uplift on prior-year priced spend, per cent: gives `historic`, and the "
        "envelope itself when `pounds` is not given.",
    )

    _check_pounds = field_validator("pounds")(_two_dp)

    @property
    def from_prior_year(self) -> bool:
        return self.pounds is None

    @property
    def uplift(self) -> Decimal:
        return self.uplift_percent / 100


class TopSlice(_Model):
    """Money kept back by the commissioner before practices' budgets are set."""

    name: str = Field(min_length=1)
    pounds: Decimal | None = None
    percent: Decimal | None = Field(None, ge=0, le=100)
    service_lines: tuple[ServiceLine, ...] | None = None

    _check_pounds = field_validator("pounds")(_two_dp)

    @model_validator(mode="after")
    def _one_amount(self) -> TopSlice:
        if (self.pounds is None) == (self.percent is None):
            raise ValueError("give exactly one of `pounds` or `percent`")
        return self


class FairShareRule(_Model):
    """How one service line's fair share is measured."""

    method: FairShareMethod
    component: str | None = Field(
        None, description="NHS England allocation component, for nhse_weighted_population."
    )

    @model_validator(mode="after")
    def _component(self) -> FairShareRule:
        if self.method == "nhse_weighted_population":
            if self.component is None:
                raise ValueError("method nhse_weighted_population needs a `component`")
            if self.component not in COMPONENT_COLUMNS:
                raise ValueError(
                    f"unknown component {self.component!r}; expected one of "
                    f"{list(COMPONENT_COLUMNS)}"
                )
        elif self.component is not None:
            raise ValueError(f"`component` is only used by nhse_weighted_population, "
                             f"not {self.method}")
        return self


class PaceOfChange(_Model):
    """How far budgets move from historic spend towards fair shares this year."""

    pace: Decimal = Field(ge=0, le=1)
    floor_percent: Decimal | None = Field(None, ge=-100, le=0)
    ceiling_percent: Decimal | None = Field(None, ge=0)


class OptOut(_Model):
    """A practice or group hands service lines back to the commissioner."""

    code: str = Field(min_length=1)
    service_lines: tuple[ServiceLine, ...] = Field(min_length=1)
    reason: str | None = None


class Reinvestment(_Model):
    """What a budget holder may reinvest of the resources it frees (``pbc freed-resources``).

    Practice-based commissioning guaranteed practices "at least 70 per cent of any
    freed-up resource" (Department of Health; Hansard, Commons written answer, 6 November
    2006). A lower share is refused unless ``guidance`` names what sets it."""

    share: Decimal = Field(Decimal("0.70"), ge=0, le=1,
                           description="Share of freed resources that may be reinvested.")
    carry_years: int = Field(1, ge=1, description="Years after the year freed in which it "
                             "may be drawn; then it lapses.")
    level: Literal["practice", "group"] = Field(
        "practice", description="Who frees and reinvests: each practice, or each group.")
    guidance: str | None = Field(None, description="The guidance a share below 0.70 follows.")

    @model_validator(mode="after")
    def _at_least_seventy(self) -> Reinvestment:
        if self.share < Decimal("0.70") and not (self.guidance or "").strip():
            raise ValueError("reinvestment.share below 0.70 needs reinvestment.guidance naming "
                             "the guidance that sets it (practice-based commissioning "
                             "guarantees at least 70%)")
        return self


class RiskPool(_Model):
    """A group risk pool (see :class:`pbc.monitoring.risk_sharing.RiskPoolPolicy`)."""

    contribution_share: Decimal = Field(ge=0, le=1, description="Share of each member's "
                                        "budget paid into the pool.")
    fallback: Literal["commissioner", "pro_rata_budget", "pro_rata_overspend"] = Field(
        "commissioner", description="Who bears what the pool cannot cover.")
    groups: tuple[str, ...] = Field((), description="Groups with a pool; default every group "
                                    "not on a real budget.")


class RealBudget(_Model):
    """A group's real budget (see :class:`pbc.monitoring.risk_sharing.RealBudgetTerms`);
    caps in pounds."""

    savings_share: Decimal = Field(ge=0, le=1)
    overspend_share: Decimal = Field(ge=0, le=1)
    savings_cap: Decimal | None = Field(None, ge=0)
    overspend_cap: Decimal | None = Field(None, ge=0)


class RiskSharing(_Model):
    """Who bears an overspend and who keeps a saving at year end (``pbc settle``)."""

    overspend: Literal["carry_forward", "write_off"] = Field(
        description="An overspend of a practice outside a pool or a real budget: carried "
        "forward to its next budget, or written off by the commissioner.")
    risk_pool: RiskPool | None = None
    real_budget: dict[str, RealBudget] = {}

    @model_validator(mode="after")
    def _one_arrangement(self) -> RiskSharing:
        both = sorted(set(self.risk_pool.groups if self.risk_pool else ())
                      & set(self.real_budget))
        if both:
            raise ValueError(f"group(s) {both} are both in the risk pool and on a real "
                             "budget: choose one")
        return self


class BudgetPolicy(_Model):
    """A whole budget policy (see the module docstring for the TOML layout)."""

    financial_year: str
    commissioner_code: str | None = None
    scope: tuple[ServiceLine, ...] = Field(min_length=1)
    envelope: dict[ServiceLine, Envelope]
    top_slice: tuple[TopSlice, ...] = ()
    fair_share: dict[ServiceLine, FairShareRule]
    pace_of_change: PaceOfChange
    opt_out: tuple[OptOut, ...] = ()
    reinvestment: Reinvestment = Reinvestment(share=Decimal("0.70"), carry_years=1,
                                              level="practice", guidance=None)
    risk_sharing: RiskSharing | None = None

    @field_validator("financial_year")
    @classmethod
    def _fy(cls, value: str) -> str:
        try:
            return normalise_financial_year(value)
        except ValueError:
            raise ValueError("financial year must look like '2025-26' (or '2025/26')") from None

    @field_validator("scope")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        dups = sorted({v for v in value if value.count(v) > 1})
        if dups:
            raise ValueError(f"service line(s) listed more than once: {dups}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> BudgetPolicy:
        scope = set(self.scope)
        for table in ("envelope", "fair_share"):
            have = set(getattr(self, table))
            missing = [s for s in self.scope if s not in have]
            if missing:
                raise ValueError(f"`{table}` has no entry for service line(s) in scope: "
                                 f"{missing}")
            extra = sorted(have - scope)
            if extra:
                raise ValueError(f"`{table}` has entries for service line(s) not in scope: "
                                 f"{extra}")
        for i, ts in enumerate(self.top_slice):
            outside = sorted(set(ts.service_lines or ()) - scope)
            if outside:
                raise ValueError(f"top_slice[{i}] ({ts.name}) names service line(s) not in "
                                 f"scope: {outside}")
        for i, oo in enumerate(self.opt_out):
            outside = sorted(set(oo.service_lines) - scope)
            if outside:
                raise ValueError(f"opt_out[{i}] ({oo.code}) names service line(s) not in "
                                 f"scope: {outside}")
        return self

    @property
    def pace(self) -> float:
        return float(self.pace_of_change.pace)

    @property
    def floor(self) -> float | None:
        f = self.pace_of_change.floor_percent
        return None if f is None else float(f) / 100

    @property
    def ceiling(self) -> float | None:
        c = self.pace_of_change.ceiling_percent
        return None if c is None else float(c) / 100

    def top_slices_for(self, service_line: str) -> list[TopSlice]:
        return [t for t in self.top_slice
                if t.service_lines is None or service_line in t.service_lines]


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def parse_policy(data: dict[str, Any], *, source: str = "policy") -> BudgetPolicy:
    """Validate a policy given as a dict (the parsed TOML); errors name the key paths."""
    try:
        return BudgetPolicy.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not str(p).startswith("function-after"))
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"  {_key_path(loc)}: {msg}")
        raise PolicyError(f"{source}: invalid budget policy\n" + "\n".join(lines)) from None


def read_policy(path: str | Path) -> BudgetPolicy:
    """Read and validate a budget policy TOML file (the only file access in this module)."""
    path = Path(path)
    if not path.exists():
        raise PolicyError(f"{path}: policy file not found")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML ({exc})") from None
    return parse_policy(data, source=str(path))
