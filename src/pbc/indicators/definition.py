"""Indicator definitions: validated data files, not code (the OpenPrescribing measures habit).

Each indicator is a YAML file in ``pbc/reference/indicators/`` (or a user's folder) with
an id, a title, why it matters, a numerator and a denominator built from a small
vocabulary of named activity filters, a multiplier, the standardisation, whether low is
good, its source, a review date, and (optionally) the published exclusions and where pbc's
figure differs from the published one (docs/methods/ explains each indicator).
:func:`load_indicators` validates every file with pydantic and reports errors naming the
file and the key.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pbc.indicators.filters import FILTERS, SUM_FIELDS

Activity = Literal["apc", "op", "ae", "prescribing", "priced"]
Population = Literal["registered", "weighted", "astro_pu"]
REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "indicators"


class IndicatorError(ValueError):
    """An indicator file that is not valid; the message names the file and key."""


class Measure(BaseModel):
    """A numerator or denominator: a count or sum of filtered activity, or a population."""

    model_config = ConfigDict(extra="forbid")

    activity: Activity | None = None
    filters: list[str] = Field(default_factory=list)
    sum: str | None = None
    population: Population | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Measure:
        if (self.activity is None) == (self.population is None):
            raise ValueError("give exactly one of 'activity' or 'population'")
        if self.population is not None and (self.filters or self.sum):
            raise ValueError("a population measure takes no filters or sum")
        if self.activity is not None:
            unknown = [f for f in self.filters if _base(f) not in FILTERS]
            if unknown:
                raise ValueError(
                    f"unknown filter(s) {unknown}; known: {', '.join(sorted(FILTERS))}")
            wrong = [f for f in self.filters if self.activity not in FILTERS[_base(f)]]
            if wrong:
                raise ValueError(f"filter(s) {wrong} do not apply to {self.activity} activity")
            if self.sum is not None and self.sum not in SUM_FIELDS.get(self.activity, ()):
                raise ValueError(
                    f"cannot sum {self.sum!r} of {self.activity}; can sum: "
                    f"{', '.join(SUM_FIELDS.get(self.activity, ())) or 'nothing'}")
        return self


def _base(name: str) -> str:
    """``service_line:ae`` -> ``service_line`` (parameterised filters)."""
    return name.split(":", 1)[0]


class NationalValue(BaseModel):
    """England's published value of an indicator (crude, in the indicator's own unit), for
    the ratio against national; ``period`` and ``source`` say where it comes from."""

    model_config = ConfigDict(extra="forbid")

    value: float = Field(gt=0)
    period: str
    source: str


class Indicator(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str
    why_it_matters: str
    numerator: Measure
    denominator: Measure
    multiplier: float = 1.0
    unit: str
    kind: Literal["rate", "proportion", "ratio", "cost_per_head"]
    standardisation: Literal["none", "age_sex_direct", "age_sex_indirect"] = "none"
    low_is_good: bool | None
    source: str
    author: str = "pbc"
    review_date: dt.date
    national: NationalValue | None = None
    #: what the published definition leaves out, and whether pbc can apply it
    exclusions: str | None = None
    #: where pbc's figure differs from the published indicator, and why
    limitations: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Indicator:
        if self.standardisation != "none" and self.numerator.activity not in ("apc", "op", "ae"):
            raise ValueError("age-sex standardisation needs patient-level activity "
                             "(apc, op or ae) in the numerator")
        if self.standardisation != "none" and self.denominator.population != "registered":
            raise ValueError("age-sex standardisation needs the registered population as "
                             "the denominator")
        if self.kind == "proportion" and self.denominator.activity is None:
            raise ValueError("a proportion's denominator is activity (the numerator's superset)")
        return self


def read_indicator(path: Path) -> Indicator:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise IndicatorError(f"{path}: cannot read YAML: {e}") from e
    if not isinstance(data, dict):
        raise IndicatorError(f"{path}: expected a mapping of keys to values")
    try:
        ind = Indicator.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(file)'}: {err['msg']}"
            for err in e.errors()
        )
        raise IndicatorError(f"{path}: {problems}") from e
    if ind.id != path.stem:
        raise IndicatorError(f"{path}: id {ind.id!r} must match the file name {path.stem!r}")
    return ind


def load_indicators(folder: Path | None = None) -> dict[str, Indicator]:
    """Every indicator in ``folder`` (default: the library shipped with pbc), by id."""
    folder = folder or REFERENCE
    found = {p.stem: read_indicator(p) for p in sorted(folder.glob("*.yaml"))}
    if not found:
        raise IndicatorError(f"{folder}: no indicator files (*.yaml)")
    return found
