"""Neighbourhood profiles for the joint strategic needs assessment (JSNA): the pure core.

A council's JSNA describes need by neighbourhood (Department of Health, *Guidance on joint
strategic needs assessment*, 2007; Local Government and Public Involvement in Health Act
2007, s.116). For each neighbourhood of one local authority, and for the council as a whole
(``neighbourhood_code`` :data:`WHOLE_COUNCIL`), this module turns counts the service read
from the warehouse into the published rows:

* ``population``: residents by sex and age band, as a share of the neighbourhood (Wilson
  interval);
* ``deprivation``: residents by Index of Multiple Deprivation decile (and ``unknown``);
* ``prevalence``: residents on each long-term condition register (Wilson interval);
* ``emergency_admissions`` and ``acsc_admissions``: emergency admissions, and those for an
  ambulatory care sensitive condition (chronic or acute ACSC lists), directly standardised
  to the European Standard Population 2013 per 100,000 with Dobson 95% limits
  (:func:`pbc.stats.dsr_by_group`; not calculated below 10 admissions);
* ``ae_attendances``: A&E attendances per 1,000 residents (:func:`pbc.stats.crude_rate`);
* ``social_care_packages`` and ``social_care_cost``: the council's packages active in the
  year by service type, per 1,000 residents, and their cost in the year (pounds);
* ``risk_segment``: residents by the NHS risk segment of their latest score, and those not
  scored (only when the warehouse holds risk scores).

Each neighbourhood's value is compared with the council's and the commissioner's: *Higher*
or *Lower* where the comparator lies outside the neighbourhood's 95% interval (the
Fingertips comparison with a benchmark), *Similar* inside it, in the words of
:mod:`pbc.indicators.wording` with the measure's polarity.

Small numbers are suppressed with :func:`pbc.services.suppression.suppress_levels`: counts
1-7 are hidden, and further cells wherever a neighbourhood's total or the council's would
let a reader work a hidden one out (interval audit by linear programming); every rate,
interval and cost built on a hidden count is hidden too. Tables whose totals are the same
people (population, deprivation, risk segments: each neighbourhood's residents) hide a total
in all of them if any hides it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from pbc.indicators.wording import NOT_COMPARED, judged
from pbc.services.suppression import DEFAULT_THRESHOLD, TOTAL, CellKey, suppress_levels
from pbc.stats import ESP2013, crude_rate, dsr_by_group, wilson_ci

#: ``neighbourhood_code`` of the rows for the council as a whole
WHOLE_COUNCIL = "ALL"
#: the council's social care packages that cannot be placed in one of its neighbourhoods
#: (no linked person, or a person living elsewhere)
NOT_PLACED = "not placed"
#: ``breakdown`` of a table's total row
ALL = "all"
NOT_SCORED = "not scored"
UNKNOWN = "unknown"
#: published age bands (the DSRs use the 19 bands of the European Standard Population)
AGE_BANDS: tuple[tuple[str, int, int], ...] = (
    ("0-4", 0, 4), ("5-17", 5, 17), ("18-44", 18, 44), ("45-64", 45, 64),
    ("65-74", 65, 74), ("75-84", 75, 84), ("85+", 85, 200))
CSV_COLUMNS = ("la_code", "neighbourhood_code", "measure", "breakdown", "count",
               "denominator", "value", "lower_95", "upper_95", "suppressed")
COMPARISON_COLUMNS = ("local_authority_value", "compared_with_local_authority",
                      "commissioner_value", "compared_with_commissioner")
SIGNIFICANCE = {"higher": "High (0.025)", "lower": "Low (0.025)", "similar": "Not significant"}


@dataclass(frozen=True)
class Measure:
    name: str
    title: str
    value: str  # what the value column holds
    low_is_good: bool | None = None


MEASURES: dict[str, Measure] = {m.name: m for m in (
    Measure("population", "Residents by sex and age band", "% of residents"),
    Measure("deprivation", "Residents by IMD decile (1 most deprived)", "% of residents"),
    Measure("prevalence", "Residents on a long-term condition register", "% of residents"),
    Measure("emergency_admissions", "Emergency admissions",
            "directly standardised rate per 100,000 (ESP 2013)", low_is_good=True),
    Measure("acsc_admissions", "Emergency admissions for ambulatory care sensitive "
            "conditions", "directly standardised rate per 100,000 (ESP 2013)",
            low_is_good=True),
    Measure("ae_attendances", "A&E attendances", "crude rate per 1,000 residents",
            low_is_good=True),
    Measure("social_care_packages", "Social care packages active in the year",
            "packages per 1,000 residents"),
    Measure("social_care_cost", "Cost of social care packages in the year", "pounds"),
    Measure("risk_segment", "Residents by NHS risk segment", "% of residents"),
)}


@dataclass(frozen=True)
class ProfileInputs:
    """Counts for a set of units (neighbourhoods, or one commissioner), each a frame with a
    ``unit`` column:

    ``population`` (unit, sex, age, n): residents by single year of age;
    ``deprivation`` (unit, decile, n), decile None where unknown;
    ``conditions`` (unit, condition, n): residents on each register;
    ``admissions`` (unit, measure, age, n): emergency and ACSC admissions by the
    resident's age (measure ``emergency_admissions`` or ``acsc_admissions``);
    ``ae`` (unit, n); ``social_care`` (unit, service_type, packages, cost Decimal);
    ``segments`` (unit, segment, n), or None where the warehouse has no risk scores."""

    population: pd.DataFrame
    deprivation: pd.DataFrame
    conditions: pd.DataFrame
    admissions: pd.DataFrame
    ae: pd.DataFrame
    social_care: pd.DataFrame
    segments: pd.DataFrame | None


@dataclass(frozen=True)
class Breakdowns:
    """The breakdowns of each table (columns), fixed by the service so that every
    neighbourhood has every cell."""

    conditions: tuple[str, ...]
    services: tuple[str, ...]
    segments: tuple[str, ...]


@dataclass
class Profile:
    la_code: str
    la_name: str
    neighbourhoods: list[str]
    financial_year: str
    commissioner_code: str | None
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    threshold: int = DEFAULT_THRESHOLD

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=[*CSV_COLUMNS, *COMPARISON_COLUMNS])


# ------------------------------------------------------------------ counts
def esp_band(age: Any) -> int:
    """Index of the European Standard Population 2013 band (0 = 0-4 ... 18 = 90+)."""
    return min(int(age) // 5, len(ESP2013) - 1)


def age_band(age: Any) -> str:
    a = int(age)
    return next(label for label, lo, hi in AGE_BANDS if lo <= a <= hi)


def _breakdown_tables(inputs: ProfileInputs, b: Breakdowns
                      ) -> dict[str, tuple[pd.DataFrame, tuple[str, ...], bool]]:
    """Each measure's counts as (unit, column, n) with its columns and whether the columns
    partition the unit (so the unit's total is published)."""
    pop = inputs.population.assign(
        column=[f"{s} {age_band(a)}" for s, a in zip(inputs.population["sex"],
                                                       inputs.population["age"], strict=True)])
    dep = inputs.deprivation.assign(column=[
        UNKNOWN if d is None or (isinstance(d, float) and math.isnan(d)) else f"decile {int(d)}"
        for d in inputs.deprivation["decile"]])
    out: dict[str, tuple[pd.DataFrame, tuple[str, ...], bool]] = {
        "population": (pop, tuple(f"{s} {label}" for s in ("F", "M")
                                  for label, _, _ in AGE_BANDS), True),
        "deprivation": (dep, (*(f"decile {d}" for d in range(1, 11)), UNKNOWN), True),
        "prevalence": (inputs.conditions.rename(columns={"condition": "column"}),
                       b.conditions, False),
    }
    adm = inputs.admissions
    for m in ("emergency_admissions", "acsc_admissions"):
        out[m] = (adm[adm["measure"] == m].assign(column=ALL), (ALL,), False)
    out["ae_attendances"] = (inputs.ae.assign(column=ALL), (ALL,), False)
    sc = inputs.social_care.rename(columns={"service_type": "column", "packages": "n"})
    out["social_care_packages"] = (sc, b.services, True)
    if inputs.segments is not None:
        out["risk_segment"] = (inputs.segments.rename(columns={"segment": "column"}),
                               (*b.segments, NOT_SCORED), True)
    return out


def _grid(frame: pd.DataFrame, units: Sequence[str], columns: Sequence[str]
          ) -> dict[tuple[str, str], int]:
    """Every (unit, column) count, zeros included."""
    cells = {(u, c): 0 for u in units for c in columns}
    for u, c, n in zip(frame["unit"], frame["column"], frame["n"], strict=True):
        if (u, c) not in cells:
            raise ValueError(f"profile count for unit {u!r}, {c!r} outside the table")
        cells[(u, c)] += int(n)
    return cells


PublishedCounts = dict[tuple[str, str], int | None]


def suppress_table(cells: dict[tuple[str, str], int], units: Sequence[str],
                   columns: Sequence[str], *, partition: bool, la_code: str = WHOLE_COUNCIL,
                   threshold: int = DEFAULT_THRESHOLD, hide_totals: Iterable[str] = ()
                   ) -> PublishedCounts:
    """The published counts of one measure's table: every (unit, column) cell, each unit's
    total ``(unit, ALL)`` where ``partition`` (the columns split the unit), and the
    council's ``(WHOLE_COUNCIL, column)`` (the sum over units); ``None`` where hidden.

    With ``partition`` the table is suppressed as one (row and column totals shown); without
    it each column is its own table (the columns overlap: one person, several conditions)."""
    if partition:
        return _suppress(cells, units, columns, partition=True, la_code=la_code,
                         threshold=threshold, hide_totals=hide_totals)
    out: PublishedCounts = {}
    for c in columns:
        out.update(_suppress({k: v for k, v in cells.items() if k[1] == c}, units, [c],
                             partition=False, la_code=la_code, threshold=threshold,
                             hide_totals=()))
    return out


def _suppress(cells: dict[tuple[str, str], int], units: Sequence[str],
              columns: Sequence[str], *, partition: bool, la_code: str, threshold: int,
              hide_totals: Iterable[str]) -> PublishedCounts:
    base = pd.DataFrame([{"neighbourhood": u, "local_authority": la_code, "column": c,
                          "n": cells[(u, c)]} for u in units for c in columns])
    hide: list[CellKey] = [("neighbourhood", u, TOTAL) for u in hide_totals if u in units]
    hide += [("local_authority", la_code, TOTAL) for u in hide_totals if u == WHOLE_COUNCIL]
    tables = suppress_levels(base, ["neighbourhood", "local_authority"], list(columns),
                             threshold, hide=hide)
    out: PublishedCounts = {}
    for level, unit_of in (("neighbourhood", lambda code: code),
                           ("local_authority", lambda _code: WHOLE_COUNCIL)):
        for row in tables[level]:
            u = unit_of(row.code)
            for c, v in zip(columns, row.cells, strict=True):
                out[(u, c)] = v
            if partition:
                out[(u, ALL)] = row.total
    return out


def _population_like(tables: dict[str, tuple[pd.DataFrame, tuple[str, ...], bool]],
                     units: Sequence[str], la_code: str, threshold: int
                     ) -> dict[str, PublishedCounts]:
    """Population, deprivation and risk segments share their totals (each unit's
    residents): suppress them until they agree on which totals are hidden."""
    names = [m for m in ("population", "deprivation", "risk_segment") if m in tables]
    grids = {m: _grid(tables[m][0], units, tables[m][1]) for m in names}
    for m in names[1:]:
        for u in units:
            if sum(grids[m][(u, c)] for c in tables[m][1]) != \
                    sum(grids["population"][(u, c)] for c in tables["population"][1]):
                raise ValueError(f"{m} for {u} does not add up to its residents")
    hidden: set[str] = set()
    while True:
        out: dict[str, PublishedCounts] = {
            m: suppress_table(grids[m], units, tables[m][1], partition=True,
                              la_code=la_code, threshold=threshold, hide_totals=hidden)
            for m in names}
        now = {u for m in names for u in [*units, WHOLE_COUNCIL] if out[m][(u, ALL)] is None}
        if now <= hidden:
            return out
        hidden |= now


# ------------------------------------------------------------------ values
def _nan(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return None if math.isnan(f) else f


def _share(x: int, n: int) -> tuple[float | None, float | None, float | None]:
    if n <= 0:
        return None, None, None
    ci = wilson_ci(x, n)
    return 100 * x / n, 100 * float(ci.lower), 100 * float(ci.upper)


def _rate(x: int, n: int, per: float) -> tuple[float | None, float | None, float | None]:
    if n <= 0:
        return None, None, None
    r = crude_rate(x, n, multiplier=per)
    return _nan(r.value), _nan(r.lower), _nan(r.upper)


def directly_standardised(admissions: pd.DataFrame, population: pd.DataFrame,
                          units: Sequence[str]) -> dict[str, tuple[float | None, ...]]:
    """DSR per 100,000 (ESP 2013) with Dobson 95% limits for each unit, from counts by
    single year of age (:func:`pbc.stats.dsr_by_group`). A band with no residents (and so
    no admissions) contributes nothing; it is given a population of 1 so the rate's
    formula, which divides by every band's population, can be evaluated."""
    bands = len(ESP2013)
    x = np.zeros((len(units), bands))
    n = np.zeros((len(units), bands))
    index = {u: i for i, u in enumerate(units)}
    for u, a, k in zip(admissions["unit"], admissions["age"], admissions["n"], strict=True):
        x[index[u], esp_band(a)] += k
    for u, a, k in zip(population["unit"], population["age"], population["n"], strict=True):
        n[index[u], esp_band(a)] += k
    if ((n == 0) & (x > 0)).any():
        raise ValueError("admissions in an age band with no residents")
    frame = pd.DataFrame({"unit": np.repeat(list(units), bands), "x": x.ravel(),
                          "n": np.where(n == 0, 1.0, n).ravel()})
    res = dsr_by_group(frame, "unit", "x", "n")
    return {u: (_nan(v), _nan(lo), _nan(hi)) for u, v, lo, hi in
            zip(res["unit"], res["value"], res["lower"], res["upper"], strict=True)}


def _summed(frame: pd.DataFrame, to: str) -> pd.DataFrame:
    """The units of ``frame`` added up into one unit ``to``."""
    return frame.assign(unit=to)


def significance(value: float | None, lower: float | None, upper: float | None,
                 comparator: float | None) -> str | None:
    """PHE's label for a value against a comparator: outside the value's 95% interval is
    significant (Fingertips' comparison with a benchmark); None when either is missing."""
    if comparator is None or lower is None or upper is None or value is None:
        return None
    if comparator < lower:
        return SIGNIFICANCE["higher"]
    if comparator > upper:
        return SIGNIFICANCE["lower"]
    return SIGNIFICANCE["similar"]


# ------------------------------------------------------------------ the profile
def build_profile(la_code: str, la_name: str, neighbourhoods: Sequence[str],
                  local: ProfileInputs, breakdowns: Breakdowns, financial_year: str, *,
                  commissioner_code: str | None = None,
                  commissioner: ProfileInputs | None = None,
                  threshold: int = DEFAULT_THRESHOLD) -> Profile:
    """The published rows of one council's profile (see the module's docstring)."""
    units = list(neighbourhoods)
    sc_units = [*units, NOT_PLACED]
    tables = _breakdown_tables(local, breakdowns)
    published = _population_like(tables, units, la_code, threshold)
    for m, (frame, cols, partition) in tables.items():
        if m in published:
            continue
        us = sc_units if m == "social_care_packages" else units
        published[m] = suppress_table(_grid(frame, us, cols), us, cols, partition=partition,
                                      la_code=la_code, threshold=threshold)
    denominator = {u: published["population"][(u, ALL)] for u in [*units, WHOLE_COUNCIL]}

    comm = (_values(commissioner, breakdowns, [commissioner_code or "commissioner"], threshold)
            if commissioner is not None else {})
    local_values = _values(local, breakdowns, units, threshold, whole=True)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for m, (_, cols, partition) in tables.items():
        us = [*(sc_units if m == "social_care_packages" else units), WHOLE_COUNCIL]
        shown_cols = [*cols, ALL] if partition else list(cols)
        for c in shown_cols:
            council = _published_value(m, WHOLE_COUNCIL, c, published, denominator,
                                       local_values)
            comm_value = _comm_value(m, c, comm)
            for u in us:
                count = published[m][(u, c)]
                den = denominator.get(u)
                value, lo, hi = _published_value(m, u, c, published, denominator,
                                                 local_values)
                row = _row(la_code, u, m, c, count, den, value, lo, hi)
                row["local_authority_value"] = council[0] if u != WHOLE_COUNCIL else None
                row["compared_with_local_authority"] = (
                    _judge(m, (value, lo, hi), council[0]) if u != WHOLE_COUNCIL else None)
                row["commissioner_value"] = comm_value
                row["compared_with_commissioner"] = _judge(m, (value, lo, hi), comm_value)
                rows.append(row)
                if m == "social_care_packages":
                    cost = local_values.get(("social_care_cost", u, c), (None,))[0]
                    crow = _row(la_code, u, "social_care_cost", c, count, den,
                                None if count is None else cost, None, None)
                    crow.update(local_authority_value=None,
                                compared_with_local_authority=None,
                                commissioner_value=None, compared_with_commissioner=None)
                    rows.append(crow)
    if local.segments is None:
        notes.append("Risk segments: not shown, the warehouse holds no risk scores (run "
                     "pbc risk score as the commissioner to add them).")
    return Profile(la_code, la_name, units, financial_year, commissioner_code, rows, notes,
                   threshold)


def _row(la: str, unit: str, measure: str, breakdown: str, count: int | None,
         den: int | None, value: Any, lo: float | None, hi: float | None) -> dict[str, Any]:
    hidden = count is None
    if measure == "population" and breakdown == ALL:
        den = None
    if unit == NOT_PLACED:
        den = None
    return {"la_code": la, "neighbourhood_code": unit, "measure": measure,
            "breakdown": breakdown, "count": count, "denominator": den,
            "value": None if hidden else value, "lower_95": None if hidden else lo,
            "upper_95": None if hidden else hi, "suppressed": hidden}


def _published_value(m: str, u: str, c: str, published: dict[str, PublishedCounts],
                     denominator: dict[str, int | None],
                     values: dict[tuple[str, str, str], tuple[Any, ...]]
                     ) -> tuple[Any, float | None, float | None]:
    """A unit's value and interval, or Nones where its count (or, for a rate, its
    population) is hidden."""
    if published[m][(u, c)] is None or (m == "population" and c == ALL):
        return None, None, None
    if u != NOT_PLACED and denominator.get(u) is None:  # its residents are hidden
        return None, None, None
    v = values.get((m, u, c))
    if v is None:
        return None, None, None
    return v[0], v[1], v[2]


def _comm_value(m: str, c: str, comm: dict[tuple[str, str, str], tuple[Any, ...]]) -> Any:
    for (mm, _u, cc), v in comm.items():
        if mm == m and cc == c:
            return v[0]
    return None


def _judge(m: str, v: tuple[Any, float | None, float | None], comparator: Any) -> str | None:
    if m == "social_care_cost":
        return None
    label = significance(v[0], v[1], v[2], comparator)
    return judged(label, MEASURES[m].low_is_good) if label else NOT_COMPARED


def _values(inputs: ProfileInputs, b: Breakdowns, units: list[str], threshold: int, *,
            whole: bool = False) -> dict[tuple[str, str, str], tuple[Any, ...]]:
    """Every (measure, unit, breakdown) -> (value, lower, upper) from the raw counts, for
    ``units`` and, with ``whole``, the council (their sum). Comparator (commissioner)
    values whose count is 1..threshold are left out (not published)."""
    if whole:
        def both(f: pd.DataFrame) -> pd.DataFrame:
            return pd.concat([f, _summed(f, WHOLE_COUNCIL)])

        inputs = ProfileInputs(
            both(inputs.population), both(inputs.deprivation), both(inputs.conditions),
            both(inputs.admissions), both(inputs.ae), both(inputs.social_care),
            None if inputs.segments is None else both(inputs.segments))
        units = [*units, WHOLE_COUNCIL]
    tables = _breakdown_tables(inputs, b)
    pop = _grid(tables["population"][0], units, tables["population"][1])
    residents = {u: sum(pop[(u, c)] for c in tables["population"][1]) for u in units}
    out: dict[tuple[str, str, str], tuple[Any, ...]] = {}
    small = set()
    for m, (frame, cols, _partition) in tables.items():
        us = [*units, NOT_PLACED] if m == "social_care_packages" and whole else units
        grid = _grid(frame[frame["unit"].isin(us)], us, cols)
        for u in us:
            row_total = sum(grid[(u, c)] for c in cols)
            for c in cols:
                x = grid[(u, c)]
                if 1 <= x <= threshold:
                    small.add((m, u, c))
                if m in ("population", "deprivation", "prevalence", "risk_segment"):
                    out[(m, u, c)] = _share(x, residents.get(u, 0))
                elif m == "ae_attendances":
                    out[(m, u, c)] = _rate(x, residents[u], 1000)
                elif m == "social_care_packages":
                    out[(m, u, c)] = _rate(x, residents.get(u, 0), 1000)
            if m == "social_care_packages":
                out[(m, u, ALL)] = _rate(row_total, residents.get(u, 0), 1000)
                if 1 <= row_total <= threshold:
                    small.add((m, u, ALL))
            elif m in ("deprivation", "risk_segment"):
                out[(m, u, ALL)] = (100.0 if residents.get(u) else None, None, None)
    for m in ("emergency_admissions", "acsc_admissions"):
        adm = inputs.admissions[inputs.admissions["measure"] == m]
        for u, v in directly_standardised(adm, inputs.population, units).items():
            out[(m, u, ALL)] = v
    sc = inputs.social_care
    sc_units = [*units, NOT_PLACED] if whole else units
    for u in sc_units:
        mine = sc[sc["unit"] == u]
        total = Decimal("0.00")
        for c in b.services:
            cost = sum((Decimal(str(v)) for v in mine.loc[mine["service_type"] == c, "cost"]),
                       Decimal("0.00"))
            out[("social_care_cost", u, c)] = (cost, None, None)
            total += cost
        out[("social_care_cost", u, ALL)] = (total, None, None)
    if not whole:  # a comparator: hide its values built on small counts
        out = {k: v for k, v in out.items() if k not in small}
    return out
