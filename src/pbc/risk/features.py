"""Features for case finding, per registered patient at a reference date, as Ibis expressions.

Pure (docs/architecture.md): takes the warehouse's contract tables as Ibis tables and
returns one Ibis table with a row per patient registered on the reference date, so the same
expression runs on DuckDB or Spark; nothing here loops over patients in Python.

The inputs are those of the Combined Predictive Model (docs/sources.md §3.1): age, sex,
deprivation, long-term conditions, and prior inpatient (emergency, elective), A&E and
outpatient use, plus chronic ambulatory care sensitive condition (ACSC) emergency admissions
(docs/sources.md §5.2, code list ``pbc/reference/codelists/acsc_chronic.txt``) and an emergency
admission in the last 30 days (a PARR-30 input, §3.2).

Windows are half-open in dates: "prior 12 months" at reference date R is
``[R - 12 months, R)``, "last 30 days" is ``[R - 30 days, R)`` and the outcome window is
``[R, R + 12 months)``. Admissions are dated by ``admission_date``, A&E by ``arrival_date``,
outpatients by ``appointment_date`` (attended appointments only; a null ``attended`` counts
as attended). Emergency and elective admission methods follow docs/sources.md §5.1.

Age is the recorded ``patients.age`` (age at 1 April of the data's year, docs/data-contracts.md).

Every feature has one definition at training, validation and scoring; its look-back is
:data:`FEATURE_WINDOWS`. A feature whose look-back is not covered by the data at a reference
date would be truncated there (a 24-month count equal to the 12-month one), so
:func:`covered_features` names the features that may be used, and the model keeps only those.

Conditions are known from their ``recorded_date``; a condition with no date is known only
from ``undated_known_from`` (the first day after the data: it cannot have been known earlier)
and never at an earlier reference date, so a later diagnosis cannot reach an earlier index
date. Prior cost is the unadjusted tariff value (base price and the national long-stay,
short-stay and top-up adjustments; before the market forces factor and the emergency
marginal rate, which depend on the provider and on contract order: DH, Payment by Results
guidance 2012-13, sections on the MFF and the marginal rate).

The outcome is any emergency admission in ``[R, R + 12 months)``; ``outcome_complete`` is 1
when the patient was followed for the whole outcome year (neither left the list nor died in
it). Training and validation use only those patients (:func:`outcome_cohort`): a person who
dies or leaves in the outcome year is excluded, not counted as a negative.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import ibis
from ibis import _

from pbc.contracts.tables import (
    CONDITIONS,
    ELECTIVE_ADMISSION_METHODS,
    EMERGENCY_ADMISSION_METHODS,
)
from pbc.reference.codelists import codelist

Tables = Mapping[str, Any]  # table name -> ibis.Table

CONDITION_COLUMNS: tuple[str, ...] = tuple(f"ltc_{c.lower()}" for c in CONDITIONS)
ID_COLUMNS: tuple[str, ...] = ("patient_id", "practice_code", "neighbourhood_code",
                               "reference_date")
#: Every model input the features table carries, in order.
FEATURE_COLUMNS: tuple[str, ...] = (
    "age", "female", "imd_decile", *CONDITION_COLUMNS, "ltc_count",
    "emergency_12m", "emergency_24m", "emergency_30d", "acsc_12m",
    "elective_12m", "elective_24m", "ae_12m", "ae_24m", "op_12m", "op_24m", "prior_cost",
)
OUTCOME_COLUMNS: tuple[str, ...] = ("outcome_emergency", "outcome_emergency_count",
                                     "outcome_complete")
#: The naive comparator (validation): prior-12-month emergency admissions, as a count.
NAIVE_FEATURE = "emergency_12m"
#: Look-back of each feature in months before the reference date (activity windows);
#: ``0``: known at the reference date from the patient record (age, sex, deprivation,
#: dated conditions), needing no activity history.
FEATURE_WINDOWS: dict[str, int] = {
    "age": 0, "female": 0, "imd_decile": 0, **{c: 0 for c in CONDITION_COLUMNS},
    "ltc_count": 0, "emergency_12m": 12, "emergency_24m": 24, "emergency_30d": 1,
    "acsc_12m": 12, "elective_12m": 12, "elective_24m": 24, "ae_12m": 12, "ae_24m": 24,
    "op_12m": 12, "op_24m": 24, "prior_cost": 12,
}
REQUIRED_TABLES = ("patients",)


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` moved by ``months`` calendar months (the day clipped to the month's end)."""
    m0 = day.month - 1 + months
    year, month = day.year + m0 // 12, m0 % 12 + 1
    nxt = dt.date(year + (month == 12), month % 12 + 1, 1)
    last = (nxt - dt.timedelta(days=1)).day
    return dt.date(year, month, min(day.day, last))


def months_between(first: dt.date, reference_date: dt.date) -> int:
    """Whole calendar months of data from ``first`` up to ``reference_date``: the longest
    look-back covered at that reference date."""
    m = (reference_date.year - first.year) * 12 + reference_date.month - first.month
    return m if add_months(first, m) <= reference_date else m - 1


def covered_features(first_activity: dt.date, reference_date: dt.date) -> list[str]:
    """Features whose whole look-back at ``reference_date`` lies inside data whose first
    activity is on ``first_activity`` (the others would be truncated there). The data are
    taken to start on that day if it is the first of a month, else on the next first."""
    start = first_activity if first_activity.day == 1 else add_months(
        first_activity.replace(day=1), 1)
    months = months_between(start, reference_date)
    return [f for f in FEATURE_COLUMNS if FEATURE_WINDOWS[f] <= months]


def outcome_cohort(frame: Any) -> Any:
    """The rows of a features frame whose outcome year was fully observed (the patient
    neither left the list nor died in it): the population for training and validation."""
    return frame[frame["outcome_complete"] == 1]


def _prefix_match(col: Any, codes: Sequence[str]) -> Any:
    pattern = "^(" + "|".join(codes) + ")"
    return col.fill_null("").re_search(pattern)


def _count(cond: Any) -> Any:
    return ibis.ifelse(cond, 1, 0).sum()


def registered(patients: Any, reference_date: dt.date) -> Any:
    """Patients registered and alive on ``reference_date`` (blank dates count as open)."""
    ref = ibis.date(reference_date)
    alive = (patients.date_of_death.isnull() | (patients.date_of_death >= ref)
             if "date_of_death" in patients.columns else ibis.literal(True))
    return patients.filter(
        (patients.registered_from.isnull() | (patients.registered_from <= ref))
        & (patients.registered_to.isnull() | (patients.registered_to >= ref))
        & alive
    )


def _followed_up(p: Any, reference_date: dt.date) -> Any:
    """1 when the whole outcome year ``[R, R + 12 months)`` is observed for the patient."""
    end = add_months(reference_date, 12)
    stays = p.registered_to.isnull() | (p.registered_to >= ibis.date(end - dt.timedelta(days=1)))
    if "date_of_death" in p.columns:
        stays = stays & (p.date_of_death.isnull() | (p.date_of_death >= ibis.date(end)))
    return ibis.ifelse(stays, 1, 0).cast("int64")


def _apc_counts(apc: Any, ref: dt.date, with_outcome: bool, acsc: Sequence[str]) -> Any:
    r12, r24, r30 = add_months(ref, -12), add_months(ref, -24), ref - dt.timedelta(days=30)
    end = add_months(ref, 12) if with_outcome else ref
    d = apc.admission_date
    t = apc.filter((d >= ibis.date(r24)) & (d < ibis.date(end))).select(
        "patient_id",
        d=apc.admission_date,
        emerg=apc.admission_method.isin(EMERGENCY_ADMISSION_METHODS),
        elect=apc.admission_method.isin(ELECTIVE_ADMISSION_METHODS),
        acsc=_prefix_match(apc.primary_diagnosis, acsc),
    )
    before = _.d < ibis.date(ref)
    in12 = (_.d >= ibis.date(r12)) & before
    aggs: dict[str, Any] = {
        "emergency_12m": _count(_.emerg & in12),
        "emergency_24m": _count(_.emerg & before),
        "emergency_30d": _count(_.emerg & (_.d >= ibis.date(r30)) & before),
        "acsc_12m": _count(_.emerg & _.acsc & in12),
        "elective_12m": _count(_.elect & in12),
        "elective_24m": _count(_.elect & before),
    }
    if with_outcome:
        aggs["outcome_emergency_count"] = _count(_.emerg & (_.d >= ibis.date(ref)))
    return t.group_by("patient_id").aggregate(**aggs)


def _dated_counts(t: Any, date_col: str, ref: dt.date, prefix: str) -> Any:
    r12, r24 = add_months(ref, -12), add_months(ref, -24)
    d = t[date_col]
    t = t.filter((d >= ibis.date(r24)) & (d < ibis.date(ref))).select("patient_id", d=d)
    return t.group_by("patient_id").aggregate(
        **{f"{prefix}_12m": _count(_.d >= ibis.date(r12)), f"{prefix}_24m": _.count()}
    )


def _conditions(conds: Any, ref: dt.date, undated_known_from: dt.date | None) -> Any:
    known = conds.recorded_date < ibis.date(ref)
    if undated_known_from is not None and undated_known_from <= ref:
        known = known | conds.recorded_date.isnull()
    t = conds.filter(known.fill_null(False))
    aggs = {col: ibis.ifelse(_.condition == code, 1, 0).max()
            for code, col in zip(CONDITIONS, CONDITION_COLUMNS, strict=True)}
    return t.group_by("patient_id").aggregate(**aggs)


#: the unadjusted tariff value of a priced row: base price plus the national long-stay,
#: short-stay and top-up adjustments, before the MFF and the emergency marginal rate
UNADJUSTED_PRICE_COLUMNS = ("base_price", "long_stay_adjustment", "short_stay_adjustment",
                            "top_up_adjustment")


def _prior_cost(priced: Any, ref: dt.date) -> Any:
    d = priced.activity_date
    t = priced.filter(priced.patient_id.notnull() & priced.base_price.notnull()
                      & (d >= ibis.date(add_months(ref, -12))) & (d < ibis.date(ref)))
    value = t.base_price
    for c in UNADJUSTED_PRICE_COLUMNS[1:]:
        value = value + t[c].fill_null(0)
    t = t.select("patient_id", value=value)
    # summed exactly (decimal), then a float for the model
    return t.group_by("patient_id").aggregate(prior_cost=_.value.sum().cast("float64"))


def build_features(
    tables: Tables,
    reference_date: dt.date,
    *,
    with_outcome: bool = False,
    acsc_codes: Sequence[str] | None = None,
    undated_known_from: dt.date | None = None,
) -> Any:
    """One row per patient registered on ``reference_date`` with :data:`FEATURE_COLUMNS`.

    ``tables`` maps contract table names to Ibis tables; ``patients`` is required, the
    others (``patient_conditions``, ``apc_spells``, ``ae_attendances``, ``op_attendances``,
    ``priced_activity``) are optional and give zeros when absent. With ``with_outcome`` the
    table also has ``outcome_emergency`` (1 if any emergency admission in the 12 months from
    the reference date, else 0), ``outcome_emergency_count`` and ``outcome_complete`` (1 if
    the patient neither left the list nor died in the outcome year; see
    :func:`outcome_cohort`). A condition with no recorded date counts only when
    ``undated_known_from`` is given and is on or before the reference date.
    """
    missing = [t for t in REQUIRED_TABLES if t not in tables]
    if missing:
        raise KeyError(f"case-finding features need the table(s): {', '.join(missing)}")
    acsc = tuple(acsc_codes) if acsc_codes is not None else codelist("acsc_chronic")
    p = registered(tables["patients"], reference_date)
    out = p.select(
        "patient_id", "practice_code", "neighbourhood_code",
        reference_date=ibis.date(reference_date),
        age=p.age.cast("int64"),
        female=ibis.ifelse(p.sex == "F", 1, 0).cast("int64"),
        imd_decile=p.imd_decile.cast("int64"),
        **({"outcome_complete": _followed_up(p, reference_date)} if with_outcome else {}),
    )

    zero_cols: dict[str, Any] = {}
    parts: list[tuple[Any, tuple[str, ...]]] = []
    if "patient_conditions" in tables:
        parts.append((_conditions(tables["patient_conditions"], reference_date,
                                  undated_known_from), CONDITION_COLUMNS))
    else:
        zero_cols.update({c: ibis.literal(0, "int64") for c in CONDITION_COLUMNS})
    apc_cols: tuple[str, ...] = ("emergency_12m", "emergency_24m", "emergency_30d", "acsc_12m",
                "elective_12m", "elective_24m")
    if with_outcome:
        apc_cols = (*apc_cols, "outcome_emergency_count")
    if "apc_spells" in tables:
        parts.append((_apc_counts(tables["apc_spells"], reference_date, with_outcome, acsc),
                      apc_cols))
    else:
        zero_cols.update({c: ibis.literal(0, "int64") for c in apc_cols})
    for name, date_col, prefix in (("ae_attendances", "arrival_date", "ae"),
                                   ("op_attendances", "appointment_date", "op")):
        cols: tuple[str, ...] = (f"{prefix}_12m", f"{prefix}_24m")
        if name in tables:
            t = tables[name]
            if prefix == "op":
                t = t.filter(t.attended.fill_null(True))
            parts.append((_dated_counts(t, date_col, reference_date, prefix), cols))
        else:
            zero_cols.update({c: ibis.literal(0, "int64") for c in cols})
    if "priced_activity" in tables:
        parts.append((_prior_cost(tables["priced_activity"], reference_date), ("prior_cost",)))
    else:
        zero_cols["prior_cost"] = ibis.literal(0.0, "float64")

    for part, cols in parts:
        out = out.left_join(part, "patient_id").select(
            *[c for c in out.columns], *[part[c] for c in cols]
        )
    fills = {c: out[c].fill_null(0) for c in out.columns
             if c not in ("patient_id", "practice_code", "neighbourhood_code", "reference_date",
                          "age", "female", "imd_decile", "outcome_complete")}
    fills["prior_cost"] = (out["prior_cost"].fill_null(0.0) if "prior_cost" in out.columns
                           else zero_cols.pop("prior_cost"))
    out = out.mutate(**fills, **zero_cols)
    out = out.mutate(
        emergency_30d=ibis.ifelse(_.emergency_30d > 0, 1, 0).cast("int64"),
        ltc_count=sum((out[c] for c in CONDITION_COLUMNS), ibis.literal(0, "int64")),
    )
    if with_outcome:
        out = out.mutate(
            outcome_emergency=ibis.ifelse(_.outcome_emergency_count > 0, 1, 0).cast("int64")
        )
    return out.select(*ID_COLUMNS, *FEATURE_COLUMNS, *(OUTCOME_COLUMNS if with_outcome else ()))
