"""Benchmark tables: each practice (group, commissioner) against its peers, with sound statistics.

For one indicator and one level (practice, group, commissioner, or a user's own grouping):

* value = numerator / denominator × multiplier, with a 95% confidence interval chosen by
  the indicator's kind: Wilson for proportions, exact Poisson (< 10 events) or Byar for rates
  and ratios (PHEindicatormethods); none for cost per head (money is not a count);
* for age-sex standardised indicators, the indirectly standardised ratio against the
  commissioner (observed / expected × 100, expected from the commissioner's own band rates;
  PHEindicatormethods ``calculate_ISRatio``), or the DSR with Dobson limits
  (``phe_dsr``), each sex's 19 age bands weighted by the European Standard Population 2013
  (a band with no registered patients counts as a rate of 0 and keeps its weight);
* every judgement is made on one measure, named in ``judged_on``: the ISR for indirectly
  standardised indicators, the DSR for directly standardised ones, the crude value
  otherwise (:func:`judged_measure`). On it: funnel-plot significance at 95% and 99.8%
  against the commissioner (PHE funnel methods; the DSR funnel for a DSR), with
  Spiegelhalter's overdispersion-adjusted limits where the units are significantly
  overdispersed (``phi``, ``tau2``, ``limits``, ``significance_unadjusted``);
  percentile and decile among peers; and the saving if the unit were at the peers' 25th
  and 10th percentile of that measure (OpenPrescribing's "potential savings"), in the
  numerator's unit (admissions, days or pounds), zero for a unit already below it, only
  where low is good (:func:`_peers` gives the formulas), per year, their unit in
  ``saving_unit``;
* ``compared``: the judgement in words with the indicator's polarity (Higher / Similar /
  Lower, and better / worse where a direction is good; :mod:`pbc.indicators.wording`);
  ``financial_year``: the year the table covers;
* the ratio against England (``value / national × 100`` with the value's 95% limits scaled
  the same way) where the indicator file gives England's published value (``national:``,
  with period and source). It is a crude comparison: England's age-sex band rates are not
  in a commissioner's warehouse, so a practice with an old list will look high against
  England even when its standardised ratio against the commissioner is 100.

:func:`monthly_series` gives each unit's value by month with Making Data Count XmR
classification (NHS England, Making Data Count): the SPC view of the same indicator.
Method pages: docs/methods/.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.stats import chi2

from pbc.indicators import wording
from pbc.indicators.compute import ACTIVITY_TABLE, events_by_band, indicator_by_practice
from pbc.indicators.definition import Indicator
from pbc.stats.crude_rate import crude_rate
from pbc.stats.dsr import DSR_MIN_COUNT, ESP2013, ESP2013_BANDS, dsr_by_group
from pbc.stats.funnel_poisson import DSR_NOT_APPLICABLE, funnel_dsr, funnel_rate, funnel_ratio
from pbc.stats.funnel_proportion import funnel_proportion
from pbc.stats.isr import isratio
from pbc.stats.wilson import wilson_ci
from pbc.stats.xmr import Direction, xmr_panel

Level = Literal["practice", "group", "commissioner"]
NOT_APPLICABLE = "Not applicable"


def unit_of(tables: Mapping[str, Any], level: Level,
            grouping: pd.DataFrame | None = None) -> pd.DataFrame:
    """``practice_code -> unit`` for a level; ``grouping`` (practice_code, group_code) is a
    user-defined grouping that overrides the warehouse's groups."""
    practices = tables["practices"].select("practice_code", "group_code",
                                           "commissioner_code").execute()
    if level == "practice":
        return practices.assign(unit=practices.practice_code)[["practice_code", "unit"]]
    if level == "group":
        if grouping is not None:
            g = grouping.rename(columns={"group_code": "unit"})[["practice_code", "unit"]]
            return g.astype({"practice_code": str, "unit": str})
        return practices.rename(columns={"group_code": "unit"})[["practice_code", "unit"]]
    return practices.rename(columns={"commissioner_code": "unit"})[["practice_code", "unit"]]


def benchmark(
    tables: Mapping[str, Any],
    ind: Indicator,
    *,
    level: Level = "practice",
    financial_year: str | None = None,
    grouping: pd.DataFrame | None = None,
    overdispersion: bool | None = None,
) -> pd.DataFrame:
    """One row per unit: value, CI, standardised ratio, significance, percentile, savings.

    ``financial_year`` (``2025/26`` or ``2025-26``) defaults to the latest complete year of
    the indicator's activity, so a rate per head is a rate per year. Every judgement
    (significance, percentile, decile, savings) is on the measure named in ``judged_on``.
    ``overdispersion``: None (default) uses Spiegelhalter's overdispersion-adjusted limits
    where the units are significantly overdispersed, True always, False never."""
    if financial_year is None:
        years = financial_years(tables, ind)
        financial_year = years[-1] if years else None
    units = unit_of(tables, level, grouping)
    frame = indicator_by_practice(tables, ind, financial_year=financial_year).execute()
    frame = frame.merge(units, on="practice_code", how="inner")
    agg = frame.groupby("unit", as_index=False)[["numerator", "denominator"]].sum()
    agg = agg.sort_values("unit").reset_index(drop=True)
    x = agg.numerator.to_numpy(float)
    n = agg.denominator.to_numpy(float)
    ok = n > 0
    out = agg.rename(columns={"unit": level if grouping is None else "grouping"})
    out.insert(0, "indicator", ind.id)
    value = np.full(len(agg), np.nan)
    value[ok] = x[ok] / n[ok] * ind.multiplier
    out["value"] = value
    out["lower_95"], out["upper_95"] = _interval(ind, x, n, ok)
    if ind.standardisation != "none":
        if "patients" not in tables:
            raise ValueError(
                f"{ind.id} is age-sex standardised ({ind.standardisation}) and needs the "
                "patients table (patient-level ages); the warehouse has list sizes only")
        out = _standardised(tables, ind, out, units, financial_year, level)
    _judge(ind, out, overdispersion)
    _national(ind, out)
    _peers(ind, out)
    out["compared"] = [wording.compared(ind, s) for s in out["significance"]]
    out["saving_unit"] = wording.saving_unit(ind) if ind.low_is_good is True else ""
    out["financial_year"] = financial_year
    return out


def _national(ind: Indicator, out: pd.DataFrame) -> None:
    """Ratio of each unit's value to England's published value, × 100 (in place)."""
    if ind.national is None:
        return
    nat = ind.national.value
    out["national_value"] = nat
    out["ratio_to_national"] = out["value"] / nat * 100
    out["ratio_to_national_lower_95"] = out["lower_95"] / nat * 100
    out["ratio_to_national_upper_95"] = out["upper_95"] / nat * 100


def _direction(ind: Indicator) -> Direction:
    if ind.low_is_good is None:
        return "neutral"
    return "decrease" if ind.low_is_good else "increase"


def financial_years(tables: Mapping[str, Any], ind: Indicator) -> list[str]:
    """The complete financial years (``YYYY-YY``, activity in all 12 months) of the
    indicator's numerator activity; every year present if none is complete.

    A year with a few months only (spells admitted in March and discharged in April fall
    in the next year) would show as a false fall in a rate, so it is left out by default."""
    m = ind.numerator
    if m.activity is None:
        return []
    name = ACTIVITY_TABLE[m.activity]
    if name not in tables:
        return []
    t = tables[name]
    months = t.group_by("financial_year").aggregate(months=t.month.nunique()).execute()
    months = months.dropna(subset=["financial_year"])
    complete = months[months.months == 12]
    chosen = complete if len(complete) else months
    return sorted(str(y) for y in chosen.financial_year)


def monthly_series(
    tables: Mapping[str, Any],
    ind: Indicator,
    *,
    level: Level = "practice",
    years: list[str] | None = None,
    grouping: pd.DataFrame | None = None,
    baseline: int | None = 12,
) -> pd.DataFrame:
    """Each unit's value by month, with XmR limits and Making Data Count classification.

    One row per unit and month, oldest first: ``indicator``, the unit, ``financial_year``,
    ``month`` (1 = April), ``period`` (``YYYY-MM``), ``numerator``, ``denominator``,
    ``value``, and from :func:`pbc.stats.xmr.xmr` ``mean``, ``lpl``, ``upl``,
    ``special_cause_type`` and ``point_type`` (improvement is a fall where low is good).
    A rate over a population is annualised (× 365.25 / days in the month), so months
    compare with each other and with the year's value. Limits are fixed on the first
    ``baseline`` months (all months if fewer), as Making Data Count advises; years default
    to the complete years of the activity (:func:`financial_years`).
    """
    units = unit_of(tables, level, grouping)
    key = level if grouping is None else "grouping"
    years = years or financial_years(tables, ind)
    parts = []
    for fy in years:
        f = indicator_by_practice(tables, ind, financial_year=fy, by_month=True).execute()
        parts.append(f.assign(financial_year=fy))
    if not parts:
        return pd.DataFrame(columns=["indicator", key, "financial_year", "month", "period",
                                     "numerator", "denominator", "value", "mean", "lpl",
                                     "upl", "special_cause_type", "point_type"])
    frame = pd.concat(parts, ignore_index=True).merge(units, on="practice_code", how="inner")
    agg = frame.groupby(["unit", "financial_year", "month"], as_index=False)[
        ["numerator", "denominator"]].sum()
    agg = agg.sort_values(["unit", "financial_year", "month"]).reset_index(drop=True)
    start = agg.financial_year.str.slice(0, 4).astype(int)
    calendar_month = (agg.month + 2) % 12 + 1
    year = start + (agg.month > 9).astype(int)
    agg.insert(3, "period", year.astype(str) + "-" + calendar_month.map("{:02d}".format))
    n = agg.denominator.to_numpy(float)
    if ind.denominator.population is not None:
        days = pd.to_datetime(agg.period + "-01").dt.days_in_month.to_numpy(float)
        annualise = 365.25 / days
    else:
        annualise = np.ones(len(agg))
    with np.errstate(divide="ignore", invalid="ignore"):
        agg["value"] = np.where(n > 0, agg.numerator / n * ind.multiplier * annualise, np.nan)
    # every unit has every month (practices x months, zero-filled), so the series stack
    # into a units x months panel for the vectorised XmR rules
    sizes = agg.groupby("unit").size()
    if sizes.nunique() > 1:
        raise ValueError("monthly series need every unit to have every month")
    months = int(sizes.iloc[0]) if len(sizes) else 0
    b = baseline if baseline is not None and months > baseline else None
    spc = xmr_panel(agg.value.to_numpy(float).reshape(-1, months), baseline=b,
                    improvement_direction=_direction(ind))
    for col in ("mean", "lpl", "upl", "special_cause_type", "point_type"):
        agg[col] = spc[col].to_numpy()
    agg = agg.rename(columns={"unit": key})
    agg.insert(0, "indicator", ind.id)
    return agg


def _interval(ind: Indicator, x: np.ndarray, n: np.ndarray,
              ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo = np.full(len(x), np.nan)
    hi = np.full(len(x), np.nan)
    if not ok.any() or ind.kind == "cost_per_head":
        return lo, hi
    if ind.kind == "proportion":
        ci = wilson_ci(x[ok], n[ok])
        lo[ok] = np.asarray(ci.lower) * ind.multiplier
        hi[ok] = np.asarray(ci.upper) * ind.multiplier
    else:
        rate = crude_rate(np.round(x[ok]), n[ok], multiplier=ind.multiplier)
        lo[ok], hi[ok] = rate.lower, rate.upper
    return lo, hi


def _standardised(tables: Mapping[str, Any], ind: Indicator, out: pd.DataFrame,
                  units: pd.DataFrame, financial_year: str | None, level: str) -> pd.DataFrame:
    bands = events_by_band(tables, ind, financial_year=financial_year).execute()
    bands = bands.merge(units, on="practice_code", how="inner")
    by = bands.groupby(["unit", "sex", "age_band"], as_index=False)[["events", "patients"]].sum()
    key = out.columns[1]
    if ind.standardisation == "age_sex_indirect":
        ref = by.groupby(["sex", "age_band"], as_index=False)[["events", "patients"]].sum()
        ref = ref[ref.patients > 0]
        wide_n = by.pivot_table(index="unit", columns=["sex", "age_band"], values="patients",
                                aggfunc="sum", fill_value=0.0)
        wide_n = wide_n.reindex(columns=pd.MultiIndex.from_frame(ref[["sex", "age_band"]]),
                                fill_value=0.0)
        observed = by.groupby("unit").events.sum().reindex(wide_n.index).to_numpy(float)
        res = isratio(observed, wide_n.to_numpy(float), ref.events.to_numpy(float),
                      ref.patients.to_numpy(float), refvalue=100)
        std = pd.DataFrame({key: wide_n.index, "observed": res.observed,
                            "expected": res.expected, "isr": res.value,
                            "isr_lower_95": res.lower, "isr_upper_95": res.upper})
        out = out.merge(std, on=key, how="left")
    else:  # direct, European Standard Population 2013, each sex weighted by the ESP
        out = out.merge(_direct(by, key, ind), on=key, how="left")
    return out


def _direct(by: pd.DataFrame, key: str, ind: Indicator) -> pd.DataFrame:
    """DSRs over all 19 ESP2013 bands of each sex (38 cells, standard total 200,000).

    A band in which the unit has no registered patients contributes no events but keeps
    its weight in the standard population (PHE ``phe_dsr``: the denominator is always the
    whole standard population); leaving such bands out would renormalise the standard to
    the bands the unit happens to have, and inflate the DSR of a unit with a narrow list.
    Events in a band where the unit has no registered person-time (a patient attributed
    to the practice on the activity but registered elsewhere, or not in the period) have
    no rate to standardise: they are left out of the DSR and counted in
    ``dsr_events_without_population``, so nothing is dropped unseen."""
    weights = dict(zip(ESP2013_BANDS, ESP2013, strict=True))
    cells = pd.MultiIndex.from_product([sorted(by.unit.unique()), ("F", "M"), ESP2013_BANDS],
                                       names=["unit", "sex", "age_band"])
    full = by.set_index(["unit", "sex", "age_band"])[["events", "patients"]].reindex(
        cells, fill_value=0.0).reset_index()
    orphan = (full.patients <= 0) & (full.events > 0)
    left_out = full.assign(left=full.events.where(orphan, 0.0)).groupby("unit").left.sum()
    full["events"] = full.events.where(~orphan, 0.0)
    # an empty band: rate 0 with its full weight (x = 0 over an infinite n adds 0 to both
    # the weighted sum and the variance, and keeps the band's w in the standard's total)
    full["patients"] = full.patients.where(full.patients > 0, np.inf)
    full["esp"] = full.age_band.map(weights).astype(float)
    dsrs = dsr_by_group(full.rename(columns={"unit": key}), key, "events", "patients",
                        standard_population="esp", multiplier=ind.multiplier)
    with np.errstate(divide="ignore", invalid="ignore"):
        derived = np.where(dsrs["value"] > 0,
                           ind.multiplier * dsrs["total_count"] / dsrs["value"], np.nan)
    return pd.DataFrame({key: dsrs[key], "dsr_observed": dsrs["total_count"],
                         "dsr": dsrs["value"], "dsr_lower_95": dsrs["lower"],
                         "dsr_upper_95": dsrs["upper"], "dsr_denominator": derived,
                         "dsr_events_without_population":
                             left_out.reindex(dsrs[key]).to_numpy(float)})


def judged_measure(ind: Indicator, out: pd.DataFrame) -> str:
    """The column every judgement is made on: ``isr``, ``dsr`` or ``value`` (crude)."""
    if ind.standardisation == "age_sex_indirect" and "isr" in out.columns:
        return "isr"
    if ind.standardisation == "age_sex_direct" and "dsr" in out.columns:
        return "dsr"
    return "value"


def judged_on(ind: Indicator, out: pd.DataFrame) -> str:
    """What the judgements are made on, in words, for the ``judged_on`` column."""
    col = judged_measure(ind, out)
    if col == "isr":
        return "ISR (commissioner = 100)"
    if col == "dsr":
        return f"DSR per {ind.multiplier:,.0f} (ESP2013)"
    if ind.kind == "cost_per_head":
        return "crude cost per head (no funnel: money is not a count of events)"
    return {"proportion": "crude proportion", "ratio": "crude ratio"}.get(ind.kind,
                                                                         "crude rate")


#: the 95th percentile of chi-squared with k - 1 degrees of freedom is the test of
#: overdispersion (Spiegelhalter 2005, Stat Med 24:1185, section 4: k phi ~ chi2(k - 1))
OVERDISPERSION_TEST = 0.95
POISSON_LIMITS = "Poisson (PHE)"
WILSON_LIMITS = "Wilson (PHE)"


def _funnel(ind: Indicator, out: pd.DataFrame, rows: np.ndarray,
            adjusted: bool) -> pd.DataFrame:
    """The funnel of the judged measure over ``rows`` (those with a value)."""
    col = judged_measure(ind, out)
    if col == "isr":
        return funnel_ratio(out.observed.to_numpy(float)[rows],
                            out.expected.to_numpy(float)[rows], ratio_type="isr",
                            overdispersion=adjusted)
    if col == "dsr":
        return funnel_dsr(out.dsr_observed.to_numpy(float)[rows],
                          out.dsr.to_numpy(float)[rows], multiplier=ind.multiplier,
                          overdispersion=adjusted)
    x = out.numerator.to_numpy(float)[rows]
    n = out.denominator.to_numpy(float)[rows]
    if ind.kind == "proportion":
        return funnel_proportion(x, n, multiplier=ind.multiplier, overdispersion=adjusted)
    return funnel_rate(np.round(x), n, multiplier=ind.multiplier, overdispersion=adjusted)


def _judge(ind: Indicator, out: pd.DataFrame, overdispersion: bool | None) -> None:
    """Funnel significance on the judged measure, with overdispersion (in place).

    Adds ``judged_on``, ``significance``, ``limits`` (which limits gave it), ``phi`` and
    ``tau2`` (Spiegelhalter's dispersion ratio and between-unit variance, on the measure's
    own scale) and, where the adjusted limits are used, ``significance_unadjusted``."""
    out["judged_on"] = judged_on(ind, out)
    sig = np.full(len(out), NOT_APPLICABLE, dtype=object)
    out["limits"] = "none"
    out["phi"] = np.nan
    out["tau2"] = np.nan
    col = judged_measure(ind, out)
    vals = out[col].to_numpy(float)
    rows = np.isfinite(vals)
    if col == "value":
        rows &= out.denominator.to_numpy(float) > 0
    if col == "isr":
        rows &= out.expected.to_numpy(float) > 0
    if col == "dsr":
        rows &= vals > 0
        small = out.dsr_observed.to_numpy(float) < DSR_MIN_COUNT
        sig[small] = DSR_NOT_APPLICABLE
    if rows.sum() < 2 or ind.kind == "cost_per_head":
        out["significance"] = sig
        return
    plain = _funnel(ind, out, rows, adjusted=False)
    od = _funnel(ind, out, rows, adjusted=True)
    phi, tau2, k = od.attrs["phi"], od.attrs["tau2"], od.attrs["k"]
    dispersed = bool(k >= 2 and np.isfinite(phi)
                     and k * phi > chi2.ppf(OVERDISPERSION_TEST, k - 1))
    adjust = dispersed if overdispersion is None else overdispersion
    base = WILSON_LIMITS if ind.kind == "proportion" and col == "value" else POISSON_LIMITS
    if adjust:
        sig[rows] = od.significance.to_numpy()
        unadjusted = np.full(len(out), NOT_APPLICABLE, dtype=object)
        unadjusted[rows] = plain.significance.to_numpy()
        if col == "dsr":
            unadjusted[small] = DSR_NOT_APPLICABLE
        out["significance_unadjusted"] = unadjusted
        out["limits"] = (f"overdispersion-adjusted (Spiegelhalter random effects, "
                         f"phi {phi:.2f}, tau2 {tau2:.4g}; unadjusted: {base})")
    else:
        sig[rows] = plain.significance.to_numpy()
        out["limits"] = base
    if col == "dsr":
        sig[small] = DSR_NOT_APPLICABLE
    out["significance"] = sig
    out["phi"] = phi
    out["tau2"] = tau2


def _peers(ind: Indicator, out: pd.DataFrame) -> None:
    """Percentile, decile and savings at the peers' 25th and 10th percentiles (in place),
    all on the judged measure (:func:`judged_measure`).

    Savings (OpenPrescribing's "potential savings", on the measure of the ranking): what
    the unit would save if it were at the percentile, in the numerator's unit, and zero
    for a unit already at or below it:

    * ISR: ``expected × (O/E − ratio at the percentile)`` = ``O − E × r_p``;
    * DSR: ``D × (DSR − DSR at the percentile) / multiplier`` where D = multiplier × O /
      DSR is the DSR's derived denominator (PHE funnel method), i.e. ``O × (1 − DSR_p /
      DSR)``: the unit's events with every band rate scaled to the percentile's DSR;
    * crude: ``denominator × (value − value at the percentile) / multiplier``.
    """
    col = judged_measure(ind, out)
    vals = out[col].to_numpy(float)
    finite = ~np.isnan(vals)
    pct = np.full(len(vals), np.nan)
    if finite.sum() >= 1:
        pct[finite] = pd.Series(vals[finite]).rank(pct=True, method="average").to_numpy() * 100
    out["percentile"] = pct
    out["decile"] = np.where(finite, np.clip(np.ceil(pct / 10), 1, 10), np.nan)
    if ind.low_is_good is not True or finite.sum() < 2:
        out["saving_at_p25"] = np.nan
        out["saving_at_p10"] = np.nan
        return
    for p in (25, 10):
        target = float(np.nanpercentile(vals, p))
        with np.errstate(invalid="ignore", divide="ignore"):
            if col == "isr":
                saving = out.observed.to_numpy(float) - out.expected.to_numpy(float) * (
                    target / 100)
            elif col == "dsr":
                saving = out.dsr_observed.to_numpy(float) * (1 - target / vals)
            else:
                saving = (vals - target) * out.denominator.to_numpy(float) / ind.multiplier
        out[f"saving_at_p{p}"] = np.where(finite, np.maximum(saving, 0.0), np.nan)
