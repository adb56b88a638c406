"""Benchmarking in words: what a practice manager reads beside the figures.

The statistics name their results in PHE's terms (``High (0.001)``, ``Not significant``);
a reader needs them with the indicator's polarity, as Fingertips shows them: *Higher*,
*Similar* or *Lower* than the commissioner, and *better* or *worse* where the indicator
says which direction is good (``low_is_good``). Every table and chart says its period and
the source of its data; England's published comparator carries its own period, with a
warning when it is older than the data it is set against; monthly rates over a
population are annualised (:func:`pbc.indicators.benchmark.monthly_series`) and say so;
savings carry their unit (admissions, bed days, pounds) and are per year.
"""

from __future__ import annotations

import re

from pbc.calendar import parse_financial_year
from pbc.indicators.definition import Indicator

#: PHE's funnel labels (pbc.stats) -> (direction, limits crossed)
_PHE = {
    "High (0.001)": ("Higher", "99.8%"), "High (0.025)": ("Higher", "95%"),
    "Low (0.001)": ("Lower", "99.8%"), "Low (0.025)": ("Lower", "95%"),
}
SIMILAR = "Similar"
NOT_COMPARED = "Not compared"

#: where each kind of activity comes from, in words
DATA_SOURCES: dict[str, str] = {
    "apc": "admitted patient care spells",
    "op": "outpatient attendances",
    "ae": "A&E attendances",
    "prescribing": "practice prescribing (actual cost)",
    "priced": "activity priced at the national tariff (Payment by Results)",
}


def compared(ind: Indicator, significance: object) -> str:
    """A funnel judgement in words, with the indicator's polarity: ``'Higher, worse
    (99.8%)'`` where low is good, ``'Lower (95%)'`` where no direction is better,
    ``'Similar'`` inside the 95% limits, ``'Not compared'`` where there is no funnel
    (costs per head, too few events, no value)."""
    return judged(significance, ind.low_is_good)


def judged(significance: object, low_is_good: bool | None) -> str:
    """:func:`compared` for a measure that is not an :class:`Indicator` (a neighbourhood
    profile's measures): ``low_is_good`` None where neither direction is better."""
    if significance == "Not significant":
        return SIMILAR
    if not isinstance(significance, str) or significance not in _PHE:
        return NOT_COMPARED
    side, level = _PHE[significance]
    if low_is_good is None:
        return f"{side} ({level})"
    better = (side == "Lower") == low_is_good
    return f"{side}, {'better' if better else 'worse'} ({level})"


def saving_unit(ind: Indicator) -> str:
    """What a saving counts, per year: ``'admissions a year'``, ``'£ a year'``..."""
    m = ind.numerator
    if m.sum in ("actual_cost", "price"):
        return "£ a year"
    if m.sum == "excess_bed_days":
        return "excess bed days a year"
    if m.sum == "items":
        return "items a year"
    if m.activity == "apc":
        if "readmitted_30d" in m.filters:
            return "readmissions a year"
        if "day_case" in m.filters:
            return "day cases a year"
        return "admissions a year"
    if m.activity == "op":
        return "outpatient attendances a year"
    if m.activity == "ae":
        return "A&E attendances a year"
    return "events a year"


def period(financial_year: str | None) -> str:
    """``'2025-26'`` -> ``'2025-26 (April 2025 to March 2026)'``."""
    if not financial_year:
        return "no period"
    start = parse_financial_year(financial_year)
    return f"{financial_year} (April {start} to March {start + 1})"


def months(periods: list[str]) -> str:
    """``['2024-04', ..., '2026-03']`` -> ``'April 2024 to March 2026'``."""
    import datetime as dt

    if not periods:
        return "no months"
    lo, hi = min(periods), max(periods)

    def name(p: str) -> str:
        return dt.date(int(p[:4]), int(p[5:7]), 1).strftime("%B %Y")

    return name(lo) if lo == hi else f"{name(lo)} to {name(hi)}"


def source(ind: Indicator) -> str:
    """The data an indicator is computed from, in words."""
    what = DATA_SOURCES.get(ind.numerator.activity or "", "the warehouse")
    return f"{what} in the commissioner's warehouse (pbc)"


def monthly_unit(ind: Indicator) -> str:
    """The unit of a monthly value: annualised where the denominator is a population
    (each month's rate x 365.25 / days in the month)."""
    if ind.denominator.population is not None:
        return f"{ind.unit}, annualised"
    return ind.unit


def national(ind: Indicator, financial_year: str | None) -> str | None:
    """England's comparator with its period and source, and a caution when its period is
    older than the data's year (:func:`national_caution`); None where there is none."""
    if ind.national is None:
        return None
    nat = ind.national
    text = f"England: {nat.value:g} {ind.unit} ({nat.period}; {nat.source})"
    caution = national_caution(ind, financial_year)
    return text if caution is None else f"{text}. {caution}"


def national_caution(ind: Indicator, financial_year: str | None) -> str | None:
    """``"Caution: England's figure is 8 years older than the data (2025-26)"`` where
    England's period is older than the data's year (a span such as ``2008-2013`` counts
    from the year it ends in); None where it is not, or there is no comparator."""
    if ind.national is None or not financial_year:
        return None
    period_ = ind.national.period
    try:
        nat_year = parse_financial_year(period_)
    except ValueError:
        years = [int(y) for y in re.findall(r"\b(?:19|20)\d{2}\b", period_)]
        if not years:
            return (f"Caution: England's period ({period_}) could not be read, so its age "
                    "is unknown")
        nat_year = max(years) - 1
    gap = parse_financial_year(financial_year) - nat_year
    if gap <= 0:
        return None
    return (f"Caution: England's figure is {gap} year{'s' if gap != 1 else ''} older than "
            f"the data ({financial_year})")


def overdispersion(table_limits: str, outside_998: int, units: int, level: str) -> str | None:
    """A note when more units fall outside the 99.8% limits than chance allows (the
    benchmark then uses Spiegelhalter's overdispersion-adjusted limits)."""
    if not table_limits.startswith("overdispersion-adjusted"):
        return None
    return (f"{outside_998} of {units} {level}s fall outside the unadjusted 99.8% limits, "
            "more than chance allows (overdispersion): the judgements use limits widened "
            "for it (Spiegelhalter random effects); the unadjusted judgements are kept in "
            "the table --out writes")
