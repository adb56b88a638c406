"""Numerators and denominators of indicators, per practice (and month), as Ibis expressions.

Pure: takes Ibis tables (the warehouse's contract tables) and returns Ibis tables, so the
same expression runs on DuckDB or Spark. Activity is attributed to the practice recorded on
the activity row (the practice at the time of the activity); rows with a blank practice
are left out of practice indicators (they are the commissioner's unattributed activity).

Age-sex bands are the 19 five-year bands of the European Standard Population 2013 (0-4 ...
85-89, 90+), by the patient's age at 1 April (``patients.age``) and sex.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import ibis
from ibis import _

from pbc.calendar import format_financial_year, parse_financial_year, year_bounds
from pbc.contracts.tables import (
    ELECTIVE_ADMISSION_METHODS,
    EMERGENCY_ADMISSION_METHODS,
)
from pbc.indicators.definition import Indicator, Measure
from pbc.reference.codelists import codelist
from pbc.reference.prescribing_units import astro_pu_bands

Tables = Mapping[str, Any]  # name -> ibis.Table

ACTIVITY_TABLE = {"apc": "apc_spells", "op": "op_attendances", "ae": "ae_attendances",
                  "prescribing": "prescribing", "priced": "priced_activity"}
#: readmitted within 30 days: 0 to 29 days after discharge (NHS Digital, NHS OF 3b)
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


#: NHS Data Dictionary ADMISSION METHOD: transfer of an admitted patient from another
#: hospital provider (2B in an emergency, 81 otherwise)
TRANSFER_ADMISSION_METHODS = ("2B", "81")
#: a transfer-coded admission this many days after the previous discharge still continues
#: the stay (NHS Digital continuous inpatient spell rule: within 2 days)
TRANSFER_DAYS = 2
#: ICD-10 prefixes excluded from readmission index spells: cancer (C00-C97, D37-D48) and
#: obstetrics (chapter XV, O00-O99); NHS Digital, NHS OF 3b / CCG OIS 3.2 specification
READMISSION_EXCLUDED_DIAGNOSES = (
    *(f"C{n:02d}" for n in range(98)), *(f"D{n:02d}" for n in range(37, 49)), "O")
MATERNITY_ADMISSION_METHODS = ("31", "32")


def with_continuous_spells(apc: Any) -> Any:
    """Each provider spell with ``_continues`` (it continues the patient's previous stay:
    a transfer, not a new admission) and ``_cips`` (the number of its continuous inpatient
    spell, per patient).

    A spell continues the stay when it starts on or before the latest discharge of the
    patient's earlier spells (a same-day transfer or an overlap), or when it is coded as a
    transfer from another provider (admission method 2B or 81) and starts within
    :data:`TRANSFER_DAYS` days of it. NHS Digital joins provider spells into continuous
    inpatient spells the same way, with discharge destination and admission source as
    well (not in pbc's activity contract, so a transfer coded otherwise after a gap of a day
    or two is counted as a new admission)."""
    order = [apc.admission_date, apc.discharge_date, apc.spell_id]
    prior = ibis.window(group_by=apc.patient_id, order_by=order, rows=(None, -1))
    upto = ibis.window(group_by=apc.patient_id, order_by=order, rows=(None, 0))
    prev_end = apc.discharge_date.max().over(prior)
    gap = apc.admission_date.delta(prev_end, unit="day")
    continues = prev_end.notnull() & (
        (gap <= 0)
        | (apc.admission_method.isin(TRANSFER_ADMISSION_METHODS) & (gap <= TRANSFER_DAYS)))
    t = apc.mutate(_continues=continues.fill_null(False))
    return t.mutate(_cips=(~t._continues).cast("int64").sum().over(upto))


def _index_spells(apc: Any) -> Any:
    """One row per continuous inpatient spell (its last provider spell: practice, year and
    month of the final discharge) with ``_index`` (an index spell of the readmission
    indicator) and ``_readmitted`` (the patient's next stay is an emergency admission
    0 to :data:`READMISSION_DAYS` - 1 days after this one's discharge).

    Not index spells (NHS OF 3b exclusions the data can show): stays with a cancer or
    obstetric primary diagnosis or a maternity admission method on any of their spells;
    and regular day or night attenders (patient classification 3 or 4), which are not
    admissions. Deaths in hospital cannot be excluded: the activity contract has no
    discharge method."""
    c = with_continuous_spells(apc)
    diag = c.primary_diagnosis.fill_null("")
    excluded = (
        _prefix_match(diag, READMISSION_EXCLUDED_DIAGNOSES)
        | c.admission_method.isin(MATERNITY_ADMISSION_METHODS)
        | c.patient_classification.isin(["3", "4"])
    )
    c = c.mutate(_excluded_spell=excluded.cast("int64"))
    stays = c.group_by(["patient_id", "_cips"]).aggregate(
        _start=c.admission_date.min(), _end=c.discharge_date.max(),
        _first_method=c.admission_method.argmin(c.admission_date),
        _excluded=c._excluded_spell.max())
    w = ibis.window(group_by=stays.patient_id, order_by=stays._cips)
    nxt_start = stays._start.lead().over(w)
    nxt_method = stays._first_method.lead().over(w)
    gap = nxt_start.delta(stays._end, unit="day")
    stays = stays.mutate(_readmitted=(nxt_method.isin(EMERGENCY_ADMISSION_METHODS)
                                      & (gap >= 0) & (gap < READMISSION_DAYS)).fill_null(False))
    last = ibis.window(group_by=[c.patient_id, c._cips],
                       order_by=[ibis.desc(c.discharge_date), ibis.desc(c.spell_id)])
    rows = c.mutate(_rank=ibis.row_number().over(last)).filter(_._rank == 0)
    j = rows.inner_join(stays.select("patient_id", "_cips", "_excluded", "_readmitted"),
                        ["patient_id", "_cips"])
    return j.mutate(_index=j._excluded == 0).drop("_rank", "_excluded_spell")


def _apply_filter(t: Any, name: str) -> Any:
    base, _sep, arg = name.partition(":")
    if base == "emergency":
        return t.filter(t.admission_method.isin(EMERGENCY_ADMISSION_METHODS))
    if base == "elective":
        return t.filter(t.admission_method.isin(ELECTIVE_ADMISSION_METHODS))
    if base == "day_case":
        return t.filter(t.admission_method.isin(ELECTIVE_ADMISSION_METHODS)
                        & (t.patient_classification == "2"))
    if base == "day_case_or_ordinary":
        return t.filter(t.admission_method.isin(ELECTIVE_ADMISSION_METHODS)
                        & t.patient_classification.isin(["1", "2"]))
    if base == "new_admission":
        return t.filter(~t._continues)
    if base == "ordinary_elective":
        return t.filter(t.admission_method.isin(ELECTIVE_ADMISSION_METHODS)
                        & (t.patient_classification == "1"))
    if base == "acsc_chronic":
        return t.filter(_prefix_match(t.primary_diagnosis, codelist("acsc_chronic")))
    if base == "acsc_acute":
        return t.filter(_prefix_match(t.primary_diagnosis, codelist("acsc_acute")))
    if base == "index_spell":
        return t.filter(t._index)
    if base == "readmitted_30d":
        return t.filter(t._readmitted)
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
        bases = {f.split(":", 1)[0] for f in m.filters}
        if bases & {"index_spell", "readmitted_30d"}:
            t = _index_spells(t)
        elif "new_admission" in bases:
            t = with_continuous_spells(t)
        if m.sum == "excess_bed_days":
            t = _with_excess_bed_days(t, tables)
    if financial_year is not None:
        year = format_financial_year(parse_financial_year(financial_year), sep="-")
        t = t.filter(t.financial_year == year)
    for f in m.filters:
        t = _apply_filter(t, f)
    return t.filter(t.practice_code.notnull() & (t.practice_code != ""))


def _with_excess_bed_days(apc: Any, tables: Tables) -> Any:
    """Days beyond the tariff trim point (elective or non-elective), the days a long-stay
    payment is made for (DH, Payment by Results guidance: long stay payments)."""
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
    if m.population == "astro_pu":
        return prescribing_units(tables, financial_year).group_by("practice_code").aggregate(
            value=_.units.sum())
    if m.population is not None:
        pop = population(tables, weighted=m.population == "weighted",
                         financial_year=financial_year)
        return pop.group_by("practice_code").aggregate(value=_.patients.sum())
    t = _activity(tables, m, financial_year)
    keys = ["practice_code", "month"] if by_month else ["practice_code"]
    value = t[m.sum].sum().cast("float64") if m.sum else t.count().cast("float64")
    return t.group_by(keys).aggregate(value=value)


CACHED_POPULATION = {False: "_population_registered", True: "_population_weighted"}


def _cache_name(weighted: bool, financial_year: str | None) -> str:
    if financial_year is None:
        return CACHED_POPULATION[weighted]
    start = parse_financial_year(financial_year)
    return f"{CACHED_POPULATION[weighted]}_{format_financial_year(start, sep='-')}"


def with_populations(tables: Tables, financial_years: Sequence[str] = ()) -> dict[str, Any]:
    """``tables`` plus the registered and weighted populations computed once and held by
    the engine (Ibis ``cache``), for computing many indicators from the same warehouse:
    the weighted population reads all priced activity, so computing it per indicator would
    repeat the same scan nineteen times. One pair per financial year given (populations
    are person-years registered in the year) and one for no year."""
    out = dict(tables)
    for year in (None, *financial_years):
        for weighted in CACHED_POPULATION:
            name = _cache_name(weighted, year)
            out.pop(name, None)
            out[name] = population(out, weighted=weighted, financial_year=year).cache()
    return out


def registered_patients(tables: Tables, financial_year: str | None = None) -> Any:
    """``patient_id, practice_code, sex, age_band, patients``: each patient's share of the
    period's registered population.

    With ``registered_from``/``registered_to`` in the patients table, ``patients`` is the
    person-years registered in the financial year (NHS Digital counts a practice's
    registered population for a period from the registrations in it): the days from the
    later of registered_from and 1 April to the earlier of registered_to (the last day
    registered) and 31 March, over the days in the year; a blank registered_from counts as
    registered before the year, a blank registered_to as still registered. Without a year,
    those still registered (blank registered_to) count 1. Without the columns every
    patient counts 1 (a snapshot list)."""
    p = tables["patients"]
    p = p.mutate(age_band=age_band(p.age))
    cols = set(p.columns)
    if "registered_from" not in cols and "registered_to" not in cols:
        share: Any = ibis.literal(1.0)
    elif financial_year is None:
        share = (p.registered_to.isnull().cast("float64") if "registered_to" in cols
                 else ibis.literal(1.0))
    else:
        first, last = year_bounds(parse_financial_year(financial_year))
        days = (last - first).days + 1
        start = (ibis.greatest(p.registered_from.cast("date").fill_null(first), first)
                 if "registered_from" in cols else ibis.literal(first))
        end = (ibis.least(p.registered_to.cast("date").fill_null(last), last)
               if "registered_to" in cols else ibis.literal(last))
        share = ibis.greatest(end.delta(start, unit="day") + 1, 0).cast("float64") / days
    return p.select("patient_id", "practice_code", "sex", "age_band",
                    patients=share.cast("float64"))


def prescribing_units(tables: Tables, financial_year: str | None = None) -> Any:
    """``practice_code, units``: ASTRO-PUs, the person-years registered in the period
    (:func:`registered_patients`) times each patient's ASTRO-PU weight by age and sex
    (:mod:`pbc.reference.prescribing_units`; NHS Business Services Authority). With
    ``list_sizes`` instead of patients, the five-year bands map onto the ASTRO-PU bands
    (whose edges fall on five-year boundaries)."""
    bands = astro_pu_bands()
    if "patients" in tables:
        p = registered_patients(tables, financial_year)
        age = tables["patients"].select("patient_id", "age")
        p = p.inner_join(age, "patient_id")
        lower = p.age
    elif "list_sizes" in tables:
        p = tables["list_sizes"].mutate(patients=_.patients.cast("float64"))
        lower = ibis.cases((p.age_band == "90+", 90),
                           else_=p.age_band.split("-")[0].cast("int64"))
    else:
        raise KeyError("the warehouse has neither patients nor list_sizes")
    weight = ibis.cases(
        *[((p.sex == b.sex) & (lower >= b.age_from)
           & (True if b.age_to is None else lower <= b.age_to), float(b.weight))
          for b in bands],
        else_=ibis.null("float64"))
    units = p.mutate(units=p.patients * weight)
    missing = units.filter(units.units.isnull()).count().execute()
    if missing:
        raise ValueError(f"{missing} registered patients have a sex or age with no ASTRO-PU "
                         "band (sex must be M or F)")
    return units.select("practice_code", "units")


def population(tables: Tables, *, weighted: bool = False,
               financial_year: str | None = None) -> Any:
    """Registered (or need-weighted) population by practice, sex and age band: person-years
    registered in ``financial_year`` where the patients table has registration dates
    (:func:`registered_patients`), else the list.

    Weighted: each band's patients times its relative cost (the commissioner's own priced
    spend per head in that band over the overall spend per head), so a weighted patient
    costs the average. Needs ``priced_activity``; falls back to the registered list.
    Uses the population held by :func:`with_populations` where there is one."""
    cached = _cache_name(weighted, financial_year)
    if cached in tables:
        return tables[cached]
    if "patients" in tables:
        pop = registered_patients(tables, financial_year).group_by(
            ["practice_code", "sex", "age_band"]).aggregate(
            patients=_.patients.sum().cast("float64"))
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
        spend=_.price.sum().cast("float64"))
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
    pop = population(tables, financial_year=financial_year)
    keys = ["practice_code", "sex", "age_band"]
    out = pop.outer_join(ev, keys).select(
        *[ibis.coalesce(pop[k], ev[k]).name(k) for k in keys],
        patients=pop.patients.fill_null(0.0), events=ev.events.fill_null(0.0),
    )
    return out.order_by(keys)
