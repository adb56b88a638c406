"""Numerators and denominators of indicators, per practice (and month), as Ibis expressions.

Pure: takes Ibis tables (the warehouse's contract tables) and returns Ibis tables, so the
same expression runs on DuckDB or Spark. Activity is attributed to the practice recorded on
the activity row (the practice at the time of the activity); rows with a blank practice
are left out of practice indicators (they are the commissioner's unattributed activity).

Age-sex bands are the 19 five-year bands of the European Standard Population 2013 (0-4 ...
85-89, 90+), by the patient's age at 1 April (``patients.age``) and sex.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ibis
from ibis import _

from pbc.contracts.tables import (
    ELECTIVE_ADMISSION_METHODS,
    EMERGENCY_ADMISSION_METHODS,
)
from pbc.indicators.definition import Indicator, Measure
from pbc.pricing.schema import tariff_value
from pbc.reference.codelists import codelist

Tables = Mapping[str, Any]  # name -> ibis.Table

ACTIVITY_TABLE = {"apc": "apc_spells", "op": "op_attendances", "ae": "ae_attendances",
                  "prescribing": "prescribing", "priced": "priced_activity"}
READMISSION_DAYS = 30


def age_band(age: Any) -> Any:
    """ESP2013 band label ``0-4`` ... ``85-89``, ``90+`` for an integer age expression."""
    lower = (age.clip(upper=90) // 5) * 5
    return ibis.cases(
        (age >= 90, ibis.literal("90+")),
        else_=lower.cast("string") + "-" + (lower + 4).cast("string"),
    )


def _prefix_match(col: Any, codes: tuple[str, ...]) -> Any:
    pattern = "^(" + "|".join(codes) + ")"
    return col.fill_null("").re_search(pattern)


def _readmissions(apc: Any) -> Any:
    """Emergency admissions within 30 days of the same patient's previous discharge.

    The previous spell is the one before in (admission date, spell id) order; a spell that
    starts before the previous one ends (an overlap, e.g. a transfer) is not a readmission."""
    w = ibis.window(group_by=apc.patient_id, order_by=[apc.admission_date, apc.spell_id])
    prev = apc.discharge_date.lag().over(w)
    gap = apc.admission_date.delta(prev, unit="day")
    return apc.mutate(
        _readmission=apc.admission_method.isin(EMERGENCY_ADMISSION_METHODS)
        & prev.notnull() & (gap >= 0) & (gap <= READMISSION_DAYS)
    )


def _apply_filter(t: Any, name: str) -> Any:
    base, _sep, arg = name.partition(":")
    if base == "emergency":
        return t.filter(t.admission_method.isin(EMERGENCY_ADMISSION_METHODS))
    if base == "elective":
        return t.filter(t.admission_method.isin(ELECTIVE_ADMISSION_METHODS))
    if base == "day_case":
        return t.filter(t.admission_method.isin(ELECTIVE_ADMISSION_METHODS)
                        & (t.patient_classification == "2"))
    if base == "ordinary_elective":
        return t.filter(t.admission_method.isin(ELECTIVE_ADMISSION_METHODS)
                        & (t.patient_classification == "1"))
    if base == "acsc_chronic":
        return t.filter(_prefix_match(t.primary_diagnosis, codelist("acsc_chronic")))
    if base == "acsc_acute":
        return t.filter(_prefix_match(t.primary_diagnosis, codelist("acsc_acute")))
    if base == "readmission_30d":
        return t.filter(t._readmission)
    if base == "first":
        return t.filter(t.first_attendance.isin(["1", "3"]))
    if base == "follow_up":
        return t.filter(t.first_attendance.isin(["2", "4"]))
    if base == "attended":
        return t.filter(t.attended)
    if base == "gp_referred":
        return t.filter(t.referral_source == "03")
    if base == "consultant_referred":
        return t.filter(t.referral_source == "05")
    if base == "type_1_2":
        return t.filter(t.department_type.isin(["1", "2"]))
    if base == "service_line":
        return t.filter(t.service_line == arg)
    raise ValueError(f"unknown filter {name!r}")


def _activity(tables: Tables, m: Measure, financial_year: str | None) -> Any:
    assert m.activity is not None
    name = ACTIVITY_TABLE[m.activity]
    if name not in tables:
        raise KeyError(f"the warehouse has no {name} table (needed for {m.activity} activity)")
    t = tables[name]
    if m.activity == "apc":
        if "readmission_30d" in m.filters:
            t = _readmissions(t)
        if m.sum == "excess_bed_days":
            t = _with_excess_bed_days(t, tables)
    if financial_year is not None:
        t = t.filter(t.financial_year == financial_year.replace("/", "-"))
    for f in m.filters:
        t = _apply_filter(t, f)
    return t.filter(t.practice_code.notnull() & (t.practice_code != ""))


def _with_excess_bed_days(apc: Any, tables: Tables) -> Any:
    """Days beyond the tariff trim point (elective or non-elective), reference.md §1.3."""
    tariff = tables["tariff_apc"].select("hrg_code", "elective_trim_days",
                                         "non_elective_trim_days")
    j = apc.left_join(tariff, apc.hrg_code == tariff.hrg_code)
    los = j.discharge_date.delta(j.admission_date, unit="day")
    trim = ibis.cases(
        (j.admission_method.isin(ELECTIVE_ADMISSION_METHODS), j.elective_trim_days),
        else_=j.non_elective_trim_days,
    )
    excess = ibis.greatest(los - trim, 0).fill_null(0)
    return j.mutate(excess_bed_days=excess).drop("hrg_code_right")


def measure_by_practice(
    tables: Tables, m: Measure, *, financial_year: str | None = None, by_month: bool = False,
) -> Any:
    """``practice_code[, month], value`` for one numerator or denominator."""
    if m.population is not None:
        pop = population(tables, weighted=m.population == "weighted")
        return pop.group_by("practice_code").aggregate(value=_.patients.sum())
    t = _activity(tables, m, financial_year)
    keys = ["practice_code", "month"] if by_month else ["practice_code"]
    value = _summed(t, m).sum().cast("float64") if m.sum else t.count().cast("float64")
    return t.group_by(keys).aggregate(value=value)


def _summed(t: Any, m: Measure) -> Any:
    """The column a measure sums. Spend (``price`` of priced activity) is summed as the
    tariff value before the emergency marginal rate (:func:`pbc.pricing.schema.tariff_value`):
    the marginal rate is a contract settlement whose share per spell depends on the order of
    discharges, so it must not make two practices with the same activity look different."""
    if m.activity == "priced" and m.sum == "price":
        return tariff_value(t)
    return t[m.sum]


CACHED_POPULATION = {False: "_population_registered", True: "_population_weighted"}


def with_populations(tables: Tables) -> dict[str, Any]:
    """``tables`` plus the registered and weighted populations computed once and held by
    the engine (Ibis ``cache``), for computing many indicators from the same warehouse:
    the weighted population reads all priced activity, so computing it per indicator would
    repeat the same scan nineteen times."""
    out = dict(tables)
    for weighted, name in CACHED_POPULATION.items():
        out.pop(name, None)
        out[name] = population(out, weighted=weighted).cache()
    return out


def population(tables: Tables, *, weighted: bool = False) -> Any:
    """Registered (or need-weighted) population by practice, sex and age band.

    Weighted: each band's patients times its relative cost (the commissioner's own priced
    spend per head in that band over the overall spend per head; spend is the tariff value
    before the emergency marginal rate), so a weighted patient
    costs the average. Needs ``priced_activity``; falls back to the registered list.
    Uses the population held by :func:`with_populations` where there is one."""
    if CACHED_POPULATION[weighted] in tables:
        return tables[CACHED_POPULATION[weighted]]
    if "patients" in tables:
        p = tables["patients"]
        pop = p.mutate(age_band=age_band(p.age)).group_by(
            ["practice_code", "sex", "age_band"]).aggregate(patients=_.count().cast("float64"))
    elif "list_sizes" in tables:
        pop = tables["list_sizes"].select(
            "practice_code", "sex", "age_band", patients=_.patients.cast("float64"))
    else:
        raise KeyError("the warehouse has neither patients nor list_sizes")
    if not weighted or "priced_activity" not in tables or "patients" not in tables:
        return pop
    p = tables["patients"]
    bands = p.mutate(age_band=age_band(p.age)).select("patient_id", "sex", "age_band")
    priced = tables["priced_activity"]
    spend = priced.inner_join(bands, "patient_id").group_by(["sex", "age_band"]).aggregate(
        spend=tariff_value(priced).sum().cast("float64"))
    heads = pop.group_by(["sex", "age_band"]).aggregate(heads=_.patients.sum())
    w = heads.left_join(spend, ["sex", "age_band"]).select(
        "sex", "age_band", "heads", spend=_.spend.fill_null(0.0))
    overall = w.aggregate(total_spend=_.spend.sum(), total_heads=_.heads.sum())
    w = w.cross_join(overall).mutate(
        weight=ibis.cases(
            ((_.heads > 0) & (_.total_spend > 0),
             (_.spend / _.heads) / (_.total_spend / _.total_heads)),
            else_=1.0,
        ),
    ).select("sex", "age_band", "weight")
    return pop.left_join(w, ["sex", "age_band"]).select(
        "practice_code", "sex", "age_band", patients=_.patients * _.weight.fill_null(1.0))


def indicator_by_practice(
    tables: Tables, ind: Indicator, *, financial_year: str | None = None,
    by_month: bool = False,
) -> Any:
    """``practice_code[, month], numerator, denominator`` (practices with no activity: 0)."""
    num = measure_by_practice(tables, ind.numerator, financial_year=financial_year,
                              by_month=by_month)
    den = measure_by_practice(tables, ind.denominator, financial_year=financial_year,
                              by_month=by_month and ind.denominator.activity is not None)
    practices = tables["practices"].select("practice_code")
    keys = ["practice_code"]
    if by_month:
        months = ibis.memtable({"month": list(range(1, 13))})
        practices = practices.cross_join(months)
        keys = ["practice_code", "month"]
    out = practices.left_join(num.rename(numerator="value"), keys).drop(
        *[f"{k}_right" for k in keys])
    den_keys = keys if (by_month and ind.denominator.activity is not None) else ["practice_code"]
    out = out.left_join(den.rename(denominator="value"), den_keys).drop(
        *[f"{k}_right" for k in den_keys])
    return out.mutate(numerator=_.numerator.fill_null(0.0),
                      denominator=_.denominator.fill_null(0.0)).order_by(keys)


def events_by_band(
    tables: Tables, ind: Indicator, *, financial_year: str | None = None,
) -> Any:
    """``practice_code, sex, age_band, events, patients`` for age-sex standardisation.

    Events are joined to the register by patient_id; events of patients not on the
    register cannot be banded and are left out of standardised figures."""
    t = _activity(tables, ind.numerator, financial_year)
    p = tables["patients"]
    bands = p.mutate(age_band=age_band(p.age)).select("patient_id", "sex", "age_band")
    ev = t.select("patient_id", "practice_code").inner_join(bands, "patient_id").group_by(
        ["practice_code", "sex", "age_band"]).aggregate(events=_.count().cast("float64"))
    pop = population(tables)
    keys = ["practice_code", "sex", "age_band"]
    out = pop.outer_join(ev, keys).select(
        *[ibis.coalesce(pop[k], ev[k]).name(k) for k in keys],
        patients=pop.patients.fill_null(0.0), events=ev.events.fill_null(0.0),
    )
    return out.order_by(keys)
