"""Shared clients of NHS and social care (pure core).

A *shared client* of a council in a financial year is a person with an adult social care
package the council commissions that is active on at least one day of the year, whose
package carries a pseudonymous ``patient_id`` found in the NHS register (``patients``).
The same pseudonym links the two sides; a package without one, or with one the register
does not hold, is counted as *not linked* and nothing more.

For each shared client, over the financial year (1 April to 31 March):

* **social care cost**: for every package, ``weekly_cost x days / 7``, where ``days`` are
  the days of the package inside the year, counting its start and end dates (an open
  package runs to 31 March), rounded half up to the penny per package
  (:func:`package_cost_pence`);
* **NHS cost**: the tariff value (``price - marginal_rate_adjustment``, docs/money.md) of
  the person's priced hospital activity in the year;
* **emergency admissions**: admitted spells with an emergency admission method discharged
  in the year;
* **care type**: the service type of the person's costliest care in the year (each
  person has one, so a table of care types adds up to its total of people; ties go to the
  first type in the data contract's order);
* **risk segment**: the NHS risk segment from the warehouse's risk scores, or
  ``not_scored`` for a person the scores do not hold.

Joint-commissioning **opportunities** (:data:`OPPORTUNITIES`) are groups of shared clients
defined in advance, e.g. people at high risk who receive home care and had two or more
emergency admissions in the year. Nothing here suppresses or decides who may see what: the
service (:mod:`pbc.services.shared_clients`) does, and only aggregates leave it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd

from pbc.contracts.tables import SOCIAL_CARE_SERVICES

NOT_SCORED = "not_scored"
#: residence of a shared client outside the council's neighbourhoods, or not known
ELSEWHERE = "elsewhere"
UNKNOWN = "unknown"
#: segments counted as high risk in the opportunities (pbc.risk.segments)
HIGH_RISK = ("very_high", "high")
#: columns of the person-level frame (never leaves the service)
PERSON_COLUMNS = ("patient_id", "neighbourhood_code", "segment", "care_type",
                  "social_care_pence", "nhs_pence", "emergency_admissions", "care_types")


def package_cost_pence(weekly_cost: Decimal | float | str, start: dt.date,
                       end: dt.date | None, year_start: dt.date, year_end: dt.date) -> int:
    """The cost of a package inside one year, in pence: ``weekly_cost x days / 7`` with
    ``days`` the days from ``max(start, year_start)`` to ``min(end, year_end)`` counting
    both (an open package, ``end`` None, runs to ``year_end``), rounded half up once.

    >>> package_cost_pence("70.00", dt.date(2025, 3, 25), None,
    ...                    dt.date(2025, 4, 1), dt.date(2026, 3, 31))
    365000
    """
    first = max(start, year_start)
    last = min(end or year_end, year_end)
    days = (last - first).days + 1
    if days <= 0:
        return 0
    pounds = Decimal(str(weekly_cost)) * days / 7
    return int((pounds * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def active_in(start: dt.date, end: dt.date | None, year_start: dt.date,
              year_end: dt.date) -> bool:
    """A package is active in the year when it has at least one day inside it."""
    return start <= year_end and (end is None or end >= year_start)


@dataclass(frozen=True)
class Linkage:
    """How many of the council's packages active in the year link to the NHS register."""

    packages: int
    linked_packages: int
    no_patient_id: int
    not_in_register: int
    people: int  # shared clients


def shared_clients(packages: pd.DataFrame, register: pd.DataFrame, nhs: pd.DataFrame,
                   year_start: dt.date, year_end: dt.date, *,
                   council_neighbourhoods: set[str],
                   segments: pd.DataFrame | None) -> tuple[pd.DataFrame, Linkage]:
    """One row per shared client (:data:`PERSON_COLUMNS`) and the linkage counts.

    ``packages``: the council's packages (``patient_id``, ``service_type``,
    ``start_date``, ``end_date``, ``weekly_cost``); ``register``: the NHS register
    (``patient_id``, ``neighbourhood_code``); ``nhs``: per patient ``nhs_pence`` and
    ``emergency_admissions`` in the year (patients without activity may be absent);
    ``segments``: ``patient_id``, ``segment`` (None: no risk scores, every segment
    ``not_scored``). A neighbourhood outside ``council_neighbourhoods`` is
    :data:`ELSEWHERE`, a missing one :data:`UNKNOWN`."""
    live = packages[[active_in(s, _date(e), year_start, year_end) for s, e in
                     zip(packages["start_date"], packages["end_date"], strict=True)]] \
        if len(packages) else packages
    ids = live["patient_id"]
    no_id = ids.isna() | (ids.astype(str).str.strip() == "")
    known = set(register["patient_id"].astype(str))
    in_register = ~no_id & ids.astype(str).isin(known)
    linked = live[in_register].copy()
    linked["patient_id"] = linked["patient_id"].astype(str)
    linked["pence"] = [package_cost_pence(w, s, _date(e), year_start, year_end)
                       for w, s, e in zip(linked["weekly_cost"], linked["start_date"],
                                          linked["end_date"], strict=True)]
    order = {t: i for i, t in enumerate(SOCIAL_CARE_SERVICES)}
    by_type = (linked.groupby(["patient_id", "service_type"])["pence"].sum().reset_index())
    by_type["order"] = by_type["service_type"].map(lambda t: order.get(t, len(order)))
    main = (by_type.sort_values(["patient_id", "pence", "order"],
                                ascending=[True, False, True])
            .drop_duplicates("patient_id").set_index("patient_id")["service_type"])
    people = pd.DataFrame({"patient_id": sorted(linked["patient_id"].unique())})
    people["care_type"] = people["patient_id"].map(main)
    people["care_types"] = people["patient_id"].map(
        by_type.groupby("patient_id")["service_type"].agg(lambda s: "+".join(sorted(s))))
    people["social_care_pence"] = people["patient_id"].map(
        linked.groupby("patient_id")["pence"].sum()).astype("int64")
    reg = register.assign(patient_id=register["patient_id"].astype(str)).drop_duplicates(
        "patient_id").set_index("patient_id")["neighbourhood_code"]
    hood = people["patient_id"].map(reg)
    people["neighbourhood_code"] = [
        UNKNOWN if h is None or (isinstance(h, float) and pd.isna(h))
        else (str(h) if str(h) in council_neighbourhoods else ELSEWHERE) for h in hood]
    n = nhs.assign(patient_id=nhs["patient_id"].astype(str)).set_index("patient_id")
    people["nhs_pence"] = people["patient_id"].map(n["nhs_pence"]).fillna(0).astype("int64")
    people["emergency_admissions"] = people["patient_id"].map(
        n["emergency_admissions"]).fillna(0).astype("int64")
    if segments is None:
        people["segment"] = NOT_SCORED
    else:
        seg = segments.assign(patient_id=segments["patient_id"].astype(str)).set_index(
            "patient_id")["segment"]
        people["segment"] = people["patient_id"].map(seg).fillna(NOT_SCORED).astype(str)
    linkage = Linkage(len(live), int(in_register.sum()), int(no_id.sum()),
                      int((~no_id & ~in_register).sum()), len(people))
    return people[list(PERSON_COLUMNS)], linkage


def _date(value: object) -> dt.date | None:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.date()
    return value  # type: ignore[return-value]


@dataclass(frozen=True)
class Opportunity:
    """A group of shared clients for joint commissioning, defined in advance."""

    name: str
    description: str
    needs_segments: bool
    rule: Callable[[pd.DataFrame], pd.Series]


OPPORTUNITIES: tuple[Opportunity, ...] = (
    Opportunity(
        "high_risk_home_care_repeat_emergency",
        "at high or very high risk, receiving home care, two or more emergency admissions",
        True, lambda p: p["segment"].isin(HIGH_RISK)
        & p["care_types"].str.split("+").apply(lambda t: "home_care" in t)
        & (p["emergency_admissions"] >= 2)),
    Opportunity(
        "high_risk_home_care",
        "at high or very high risk, receiving home care", True,
        lambda p: p["segment"].isin(HIGH_RISK)
        & p["care_types"].str.split("+").apply(lambda t: "home_care" in t)),
    Opportunity(
        "repeat_emergency_any_care",
        "two or more emergency admissions, receiving any care package", False,
        lambda p: p["emergency_admissions"] >= 2),
    Opportunity(
        "care_home_emergency",
        "in residential or nursing care, one or more emergency admissions", False,
        lambda p: p["care_types"].str.split("+").apply(
            lambda t: "residential" in t or "nursing" in t) & (p["emergency_admissions"] >= 1)),
)


@dataclass(frozen=True)
class OpportunityTotals:
    """An opportunity's people and costs (unsuppressed; ``available`` False when it needs
    risk scores the warehouse does not hold)."""

    name: str
    description: str
    available: bool
    people: int
    emergency_admissions: int
    nhs_pence: int
    social_care_pence: int


def opportunities(people: pd.DataFrame, *, scored: bool) -> list[OpportunityTotals]:
    """Every opportunity's totals, the largest combined cost first (those needing risk
    scores come last, unavailable, when there are none)."""
    out = []
    for o in OPPORTUNITIES:
        if o.needs_segments and not scored:
            out.append(OpportunityTotals(o.name, o.description, False, 0, 0, 0, 0))
            continue
        chosen = people[o.rule(people).astype(bool)] if len(people) else people
        out.append(OpportunityTotals(
            o.name, o.description, True, len(chosen),
            int(chosen["emergency_admissions"].sum()), int(chosen["nhs_pence"].sum()),
            int(chosen["social_care_pence"].sum())))
    return sorted(out, key=lambda t: (not t.available, -(t.nhs_pence + t.social_care_pence),
                                      t.name))
