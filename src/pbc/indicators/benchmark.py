"""Benchmark tables: each practice (group, commissioner) against its peers, with sound statistics.

For one indicator and one level (practice, group, commissioner, or a user's own grouping):

* value = numerator / denominator × multiplier, with a 95% confidence interval chosen by
  the indicator's kind: Wilson for proportions, exact Poisson (< 10 events) or Byar for rates
  and ratios (PHEindicatormethods; reference.md §4); none for cost per head (money is not a
  count);
* for age-sex standardised indicators, the indirectly standardised ratio against the
  commissioner (observed / expected × 100, expected from the commissioner's own band rates;
  reference.md §4.7), and for direct standardisation the DSR with Dobson limits (§4.6),
  each sex's age bands weighted by the European Standard Population 2013 (bands with no
  registered patients in a unit are left out of that unit's DSR);
* funnel-plot significance at 95% and 99.8% against the commissioner's average (§4.8);
* percentile and decile among peers (all units at the level), and the saving if the unit
  performed at the peers' 25th and 10th percentile (OpenPrescribing's "potential savings"):
  ``max(value - p, 0) × denominator / multiplier``, in the numerator's unit (admissions, days
  or pounds), only for indicators where low is good.

National comparison needs national reference rates, which a commissioner's warehouse does
not hold; pass ``national`` (rates by sex and age band) to add the ratio against England.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from pbc.indicators.compute import events_by_band, indicator_by_practice
from pbc.indicators.definition import Indicator
from pbc.stats.crude_rate import crude_rate
from pbc.stats.dsr import ESP2013, ESP2013_BANDS, dsr_by_group
from pbc.stats.funnel_poisson import funnel_rate, funnel_ratio
from pbc.stats.funnel_proportion import funnel_proportion
from pbc.stats.isr import isratio
from pbc.stats.wilson import wilson_ci

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
) -> pd.DataFrame:
    """One row per unit: value, CI, standardised ratio, significance, percentile, savings."""
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
    out["significance"] = _significance(ind, x, n, ok)
    if ind.standardisation != "none" and "patients" in tables:
        out = _standardised(tables, ind, out, units, financial_year, level)
    _peers(ind, out, n)
    return out


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


def _significance(ind: Indicator, x: np.ndarray, n: np.ndarray, ok: np.ndarray) -> np.ndarray:
    sig = np.full(len(x), NOT_APPLICABLE, dtype=object)
    if ok.sum() < 2 or ind.kind == "cost_per_head":
        return sig
    if ind.kind == "proportion":
        f = funnel_proportion(x[ok], n[ok], multiplier=ind.multiplier)
    else:
        f = funnel_rate(np.round(x[ok]), n[ok], multiplier=ind.multiplier)
    sig[ok] = f.significance.to_numpy()
    return sig


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
        good = std.expected > 0
        std["significance"] = NOT_APPLICABLE
        if good.sum() >= 2:
            f = funnel_ratio(std.observed[good], std.expected[good], ratio_type="isr")
            std.loc[good, "significance"] = f.significance.to_numpy()
        out = out.drop(columns=["significance"]).merge(std, on=key, how="left")
    else:  # direct, European Standard Population 2013, each sex weighted by the ESP
        weights = dict(zip(ESP2013_BANDS, ESP2013, strict=True))
        long = by[by.patients > 0].rename(columns={"unit": key})
        long = long.assign(esp=long.age_band.map(weights).astype(float))
        dsrs = dsr_by_group(long, key, "events", "patients", standard_population="esp",
                            multiplier=ind.multiplier)
        dsrs = dsrs.rename(columns={"value": "dsr", "lower": "dsr_lower_95",
                                    "upper": "dsr_upper_95"})
        keep = [c for c in (key, "dsr", "dsr_lower_95", "dsr_upper_95") if c in dsrs.columns]
        out = out.merge(dsrs[keep], on=key, how="left")
    return out


def _peers(ind: Indicator, out: pd.DataFrame, n: np.ndarray) -> None:
    """Percentile, decile and savings at the peers' 25th and 10th percentiles (in place)."""
    col = "isr" if "isr" in out.columns else "value"
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
    raw = out["value"].to_numpy(float)
    for p in (25, 10):
        target = np.nanpercentile(raw, p)
        out[f"saving_at_p{p}"] = np.where(
            np.isnan(raw), np.nan, np.maximum(raw - target, 0) * n / ind.multiplier)
