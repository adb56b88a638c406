"""Charts for practice benchmarking: funnel, caterpillar, SPC (XmR) and deciles (Vega-Lite).

Each function takes a frame that pbc already makes and returns an Altair chart (a Vega-Lite
specification with its data inline), drawn the way analysts and practice managers already
read these charts:

* :func:`funnel_chart`: PHE Fingertips funnel plot. One point per unit against its
  denominator (or expected count for an indirectly standardised ratio), 95% and 99.8%
  control limits from :mod:`pbc.stats.funnel_proportion` / :mod:`pbc.stats.funnel_poisson`
  evaluated on a grid of denominators that includes every unit's own, and the commissioner
  average as the centre line. Points are coloured by the table's ``significance`` in
  Fingertips colours (better green, similar amber, worse red; blue shades when neither
  direction is better).
* :func:`caterpillar_chart`: units ranked by value with their 95% confidence intervals
  and a reference line.
* :func:`spc_chart`: NHS England "Making Data Count" XmR chart for one unit (points
  coloured grey, blue, orange or purple for common cause, improvement, concern, neutral).
* :func:`deciles_chart`: OpenPrescribing's decile chart: the peers' 10th to 90th
  percentiles by month (dashed blue, the median heavier) and one unit's own line in red.

:func:`save_chart` writes a chart as a Vega-Lite ``.json`` spec, a self-contained ``.html``
page, or a static ``.svg`` / ``.png`` rendered by vl-convert; none of these fetch anything
from the internet.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import altair as alt
import numpy as np
import pandas as pd

from pbc.indicators import wording
from pbc.indicators.definition import Indicator
from pbc.stats._common import Z95, Z998
from pbc.stats.funnel_poisson import funnel_ratio
from pbc.stats.funnel_proportion import (
    HIGH_001,
    HIGH_025,
    LIMIT_COLUMNS,
    LOW_001,
    LOW_025,
    NOT_SIGNIFICANT,
    funnel_proportion_limits,
)

UNIT_COLUMNS: Final = ("practice", "group", "commissioner", "grouping")
NOT_APPLICABLE: Final = "Not applicable"
SIGNIFICANCE_ORDER: Final = (HIGH_001, HIGH_025, NOT_SIGNIFICANT, LOW_025, LOW_001,
                             NOT_APPLICABLE)
# Fingertips benchmarking colours; the 99.8% (0.001) level in the stronger shade.
BETTER: Final = ("#2E7D32", "#92D050")
WORSE: Final = ("#8B0000", "#C00000")
HIGHER: Final = ("#7F9CF5", "#BED2FF")  # Fingertips "higher" (no better/worse direction)
LOWER: Final = ("#2B2BB8", "#5555E6")  # Fingertips "lower"
SIMILAR: Final = "#FFC000"
NOT_COMPARED: Final = "#C9C9C9"
# Making Data Count (NHSRplotthedots) point colours.
MDC_COLOURS: Final = {
    "Common cause": "#7B7D7D",
    "Special cause: improvement": "#289DE0",
    "Special cause: concern": "#FAB428",
    "Special cause: neutral": "#361475",
}
_POINT_TYPE_LABEL: Final = {
    "common_cause": "Common cause",
    "special_cause_improvement": "Special cause: improvement",
    "special_cause_concern": "Special cause: concern",
    "special_cause_neutral": "Special cause: neutral",
    "special_cause_neutral_high": "Special cause: neutral",
    "special_cause_neutral_low": "Special cause: neutral",
}
DECILE_COLOUR: Final = "#1F5FAD"  # OpenPrescribing: deciles dashed blue, the unit in red
UNIT_COLOUR: Final = "#DA291C"
PERCENTILES: Final = (10, 20, 30, 40, 50, 60, 70, 80, 90)
GRID_POINTS: Final = 150
SAVE_FORMATS: Final = (".json", ".html", ".svg", ".png")
_LEVEL_NAME: Final = {"practice": "Practice", "group": "Group", "commissioner": "Commissioner",
                      "grouping": "Group"}


# ---------------------------------------------------------------------------- helpers

def unit_column(frame: pd.DataFrame) -> str:
    """The unit key column of a benchmark table or monthly series (the second column)."""
    if len(frame.columns) > 1 and frame.columns[1] in UNIT_COLUMNS:
        return str(frame.columns[1])
    for col in UNIT_COLUMNS:
        if col in frame.columns:
            return col
    raise ValueError(f"no unit column: expected one of {', '.join(UNIT_COLUMNS)} "
                     f"(the second column), got columns {list(frame.columns)}")


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; got {list(frame.columns)}")


def _check_unit(units: pd.Series, unit: str | None, what: str) -> None:
    """A unit code that is not in the frame is a user error: say which codes there are."""
    if unit is not None and unit not in set(units.astype(str)):
        shown = ", ".join(sorted(units.astype(str).unique())[:10])
        raise ValueError(f"{unit!r} is not a {units.name} in the {what} "
                         f"(it has {units.nunique()}, e.g. {shown})")


def _values(frame: pd.DataFrame) -> alt.InlineData:
    """Inline data, JSON-safe (NaN -> null), with no row limit and full float precision."""
    records = json.loads(frame.to_json(orient="records", double_precision=15))
    return alt.InlineData(values=records)


def _format(ind: Indicator) -> str:
    return ",.2f" if ind.kind in ("ratio", "cost_per_head") or ind.multiplier == 1 else ",.1f"


def _denominator_title(ind: Indicator) -> str:
    d = ind.denominator
    if d.population == "astro_pu":
        return "Prescribing units (ASTRO-PU)"
    if d.population is not None:
        return f"{d.population.capitalize()} patients (person-years)"
    names = {"apc": "admissions", "op": "outpatient attendances", "ae": "A&E attendances",
             "prescribing": "prescription items", "priced": "priced activity"}
    activity = names.get(d.activity or "", "activity")
    filters = ", ".join(f.replace("_", " ") for f in d.filters)
    return f"Denominator: {activity}" + (f" ({filters})" if filters else "")


def _significance_scale(ind: Indicator) -> alt.Scale:
    """Fingertips colours by direction: low-is-good makes "Low" better, high-is-good "High"."""
    if ind.low_is_good is None:
        high, low = HIGHER, LOWER
    elif ind.low_is_good:
        high, low = WORSE, BETTER
    else:
        high, low = BETTER, WORSE
    colours = [high[0], high[1], SIMILAR, low[1], low[0], NOT_COMPARED]
    return alt.Scale(domain=list(SIGNIFICANCE_ORDER), range=colours)


def _significance_title(ind: Indicator) -> str:
    if ind.low_is_good is None:
        return "Compared with average"
    return f"Compared with average ({'low' if ind.low_is_good else 'high'} is good)"


def _clean_significance(s: pd.Series) -> pd.Series:
    return s.where(s.isin(SIGNIFICANCE_ORDER[:-1]), NOT_APPLICABLE).astype(object)


def _average(table: pd.DataFrame, ind: Indicator) -> float:
    """The commissioner average: Σnumerator / Σdenominator × multiplier (units with n > 0)."""
    ok = (table["denominator"] > 0) & table["numerator"].notna()
    den = float(table.loc[ok, "denominator"].sum())
    if den <= 0:
        raise ValueError(f"{ind.id}: no unit has a positive denominator, so there is no "
                         "average to compare with")
    return float(table.loc[ok, "numerator"].sum()) / den * ind.multiplier


def _grid(x: np.ndarray) -> np.ndarray:
    """A smooth geometric grid over the units' range, plus every unit's own x."""
    pos = x[np.isfinite(x) & (x > 0)]
    lo, hi = float(pos.min()) * 0.8, float(pos.max()) * 1.05
    return np.unique(np.concatenate([np.geomspace(lo, hi, GRID_POINTS), pos]))


def _is_isr(table: pd.DataFrame) -> bool:
    return "isr" in table.columns and "expected" in table.columns


def _is_dsr(table: pd.DataFrame) -> bool:
    return {"dsr", "dsr_observed", "dsr_denominator"} <= set(table.columns)


def _tau2(table: pd.DataFrame) -> float | None:
    """τ² when the table's judgements used overdispersion-adjusted limits, else None."""
    if "limits" not in table.columns or "tau2" not in table.columns or not len(table):
        return None
    if not str(table["limits"].iloc[0]).startswith("overdispersion-adjusted"):
        return None
    tau2 = float(table["tau2"].iloc[0])
    return tau2 if np.isfinite(tau2) else None


def _od_ratio(expected: np.ndarray, tau2: float) -> dict[str, np.ndarray]:
    """O/E limits exp(±z√(1/E + τ²)) (Spiegelhalter 2005, SHMI log scale), as
    :func:`pbc.stats.funnel_poisson.funnel_ratio` ``overdispersion=True`` places them."""
    out = {}
    for name, z in (("95", Z95), ("998", Z998)):
        half = z * np.sqrt(1 / expected + tau2)
        out[f"lower_{name}"] = np.exp(-half)
        out[f"upper_{name}"] = np.exp(half)
    return out


def _od_proportion(baseline: float, n: np.ndarray, tau2: float) -> dict[str, np.ndarray]:
    """Arcsine-square-root limits target ± z√(1/(4n) + τ²), back-transformed, as
    :func:`pbc.stats.funnel_proportion.funnel_proportion` ``overdispersion=True``."""
    target = np.arcsin(np.sqrt(baseline))
    s = 1 / (2 * np.sqrt(n))
    out = {}
    for name, z in (("95", Z95), ("998", Z998)):
        half = z * np.sqrt(s**2 + tau2)
        out[f"lower_{name}"] = np.sin(np.clip(target - half, 0, np.pi / 2)) ** 2
        out[f"upper_{name}"] = np.sin(np.clip(target + half, 0, np.pi / 2)) ** 2
    return out


def _ratio_limits(expected: np.ndarray, tau2: float | None) -> dict[str, np.ndarray]:
    if tau2 is not None:
        return _od_ratio(expected, tau2)
    f = funnel_ratio(np.zeros_like(expected), expected, ratio_type="ratio")
    return {col: f[col].to_numpy(float) for col in LIMIT_COLUMNS}


# ---------------------------------------------------------------------------- funnel

def funnel_limits(table: pd.DataFrame, ind: Indicator) -> pd.DataFrame:
    """The funnel's control limits on a grid: ``x``, ``centre``, ``lower_95``, ``upper_95``,
    ``lower_998``, ``upper_998`` (in the units of the plotted value), for the measure the
    table's judgements are made on.

    Proportions: :func:`~pbc.stats.funnel_proportion.funnel_proportion_limits` at the
    commissioner's p̄. Rates and ratios: Poisson O/E limits at E = r̄·n from
    :func:`~pbc.stats.funnel_poisson.funnel_ratio`, times r̄ × multiplier (as
    :func:`~pbc.stats.funnel_poisson.funnel_rate` places them at each unit's n). Indirectly
    standardised ratios: the same O/E limits at each expected count, × 100. Directly
    standardised rates: the rate limits against the derived denominator
    (multiplier × O / DSR) around ΣO / Σderived (:func:`~pbc.stats.funnel_poisson.funnel_dsr`).
    Where the table used overdispersion-adjusted limits (its ``limits`` and ``tau2``
    columns), the same adjusted limits are drawn.
    """
    if ind.kind == "cost_per_head":
        raise ValueError(
            f"{ind.id} is a cost per head ({ind.unit}): spending is not a count of events, so "
            "it has no funnel plot; use caterpillar_chart or deciles_chart instead")
    _require(table, ["numerator", "denominator"], "the benchmark table")
    tau2 = _tau2(table)
    if _is_isr(table):
        x = table["expected"].to_numpy(float)
        if not np.any(np.isfinite(x) & (x > 0)):
            raise ValueError(f"{ind.id}: no unit has a positive expected count")
        grid = _grid(x)
        out = pd.DataFrame({"x": grid, "centre": 100.0})
        for col, v in _ratio_limits(grid, tau2).items():
            out[col] = v * 100
        return out
    if _is_dsr(table):
        x = table["dsr_denominator"].to_numpy(float)
        o = table["dsr_observed"].to_numpy(float)
        ok = np.isfinite(x) & (x > 0)
        if not ok.any():
            raise ValueError(f"{ind.id}: no unit has a DSR to place on a funnel")
        baseline = float(o[ok].sum() / x[ok].sum())
        centre = baseline * ind.multiplier
        grid = _grid(x)
        out = pd.DataFrame({"x": grid, "centre": centre})
        for col, v in _ratio_limits(baseline * grid, tau2).items():
            out[col] = v * centre
        return out
    x = table["denominator"].to_numpy(float)
    if not np.any(np.isfinite(x) & (x > 0)):
        raise ValueError(f"{ind.id}: no unit has a positive denominator")
    grid = _grid(x)
    centre = _average(table, ind)
    baseline = centre / ind.multiplier
    if ind.kind == "proportion":
        out = pd.DataFrame({"x": grid, "centre": centre})
        if tau2 is not None:
            for col, v in _od_proportion(baseline, grid, tau2).items():
                out[col] = np.clip(v, 0, 1) * ind.multiplier
            return out
        lim = funnel_proportion_limits(baseline, grid, multiplier=ind.multiplier)
        for col in LIMIT_COLUMNS:
            out[col] = lim[col].to_numpy(float)
        return out
    if baseline <= 0:
        raise ValueError(f"{ind.id}: no unit has any events, so the funnel limits (Poisson, "
                         "around an average of zero) are undefined")
    out = pd.DataFrame({"x": grid, "centre": centre})
    for col, v in _ratio_limits(baseline * grid, tau2).items():
        out[col] = v * centre
    return out


def funnel_chart(table: pd.DataFrame, ind: Indicator, *,
                 highlight: str | None = None) -> alt.LayerChart:
    """A PHE Fingertips funnel plot of a benchmark table (from ``benchmark``).

    x is the denominator (the expected count for indirectly standardised ratios), y the
    value (the ISR when present); dashed lines are the 95% limits, solid the 99.8% limits,
    and the horizontal line the commissioner average (100 for ISRs). Units outside the
    funnel differ from the average by more than chance would explain. Units with no
    denominator (or expected count) cannot be placed and are left out.

    Args:
        table: one row per unit, as returned by :func:`pbc.indicators.benchmark.benchmark`.
        ind: the indicator the table is for.
        highlight: a unit code to draw larger and label.

    Raises:
        ValueError: for a cost-per-head indicator (no funnel), a missing column, or a
            highlight that is not in the table.
    """
    limits = funnel_limits(table, ind)
    key = unit_column(table)
    _check_unit(table[key], highlight, "benchmark table")
    isr = _is_isr(table)
    level = _LEVEL_NAME[key]
    if not isr and _is_dsr(table):
        points = pd.DataFrame({"unit": table[key].astype(str), "x": table["dsr_denominator"],
                               "y": table["dsr"], "lower": table["dsr_lower_95"],
                               "upper": table["dsr_upper_95"],
                               "numerator": table["dsr_observed"]})
        x_title = "Derived denominator (multiplier × events / DSR, PHE funnel method)"
        y_title = f"Directly standardised rate, {ind.unit}"
        count_tips = [alt.Tooltip("numerator:Q", title="Events", format=",.0f"),
                      alt.Tooltip("x:Q", title="Derived denominator", format=",.0f")]
        fmt = _format(ind)
    elif isr:
        points = pd.DataFrame({"unit": table[key].astype(str), "x": table["expected"],
                               "y": table["isr"], "lower": table["isr_lower_95"],
                               "upper": table["isr_upper_95"], "observed": table["observed"]})
        x_title, y_title = "Expected events (at the commissioner's rates)", \
            "Indirectly standardised ratio (commissioner = 100)"
        count_tips = [alt.Tooltip("observed:Q", title="Observed", format=",.0f"),
                      alt.Tooltip("x:Q", title="Expected", format=",.1f")]
        fmt = ",.1f"
    else:
        _require(table, ["value", "lower_95", "upper_95"], "the benchmark table")
        points = pd.DataFrame({"unit": table[key].astype(str), "x": table["denominator"],
                               "y": table["value"], "lower": table["lower_95"],
                               "upper": table["upper_95"], "numerator": table["numerator"]})
        x_title, y_title = _denominator_title(ind), ind.unit
        count_tips = [alt.Tooltip("numerator:Q", title="Numerator", format=",.0f"),
                      alt.Tooltip("x:Q", title="Denominator", format=",.0f")]
        fmt = _format(ind)
    points["significance"] = _clean_significance(
        table["significance"] if "significance" in table.columns
        else pd.Series(NOT_APPLICABLE, index=table.index))
    points["highlighted"] = points["unit"] == (highlight or "")
    points = points[np.isfinite(points["x"].to_numpy(float)) & (points["x"] > 0)
                    & points["y"].notna()].reset_index(drop=True)

    x_enc = alt.X("x:Q", title=x_title, scale=alt.Scale(zero=True))
    y_scale = alt.Scale(zero=False)
    lines = alt.Chart(_values(limits), name="limits").transform_fold(
        list(LIMIT_COLUMNS), as_=["limit", "limit_value"]
    ).transform_calculate(
        level="indexof(datum.limit, '998') >= 0 ? '99.8% limits' : '95% limits'"
    ).mark_line(color="#444444", clip=True).encode(
        x=x_enc,
        y=alt.Y("limit_value:Q", title=y_title, scale=y_scale),
        detail="limit:N",
        strokeDash=alt.StrokeDash("level:N", title="Control limits", scale=alt.Scale(
            domain=["95% limits", "99.8% limits"], range=[[5, 4], [1, 0]])),
        strokeWidth=alt.value(1.2),
    )
    centre_value = float(limits["centre"].iloc[0])
    centre_label = ("Commissioner = 100" if isr
                    else f"Commissioner average {format(centre_value, fmt)}")
    centre = alt.Chart(_values(pd.DataFrame({"centre": [centre_value],
                                             "label": [centre_label]})), name="centre")
    centre_rule = centre.mark_rule(color="#000000", strokeWidth=1.5).encode(
        y=alt.Y("centre:Q", scale=y_scale),
        tooltip=[alt.Tooltip("label:N", title="Centre line")])
    tips = [alt.Tooltip("unit:N", title=level),
            alt.Tooltip("y:Q", title="ISR" if isr else "Value", format=fmt),
            alt.Tooltip("lower:Q", title="95% CI lower", format=fmt),
            alt.Tooltip("upper:Q", title="95% CI upper", format=fmt),
            alt.Tooltip("significance:N", title="Significance"), *count_tips]
    base = alt.Chart(_values(points))
    dots = base.mark_circle(size=60, opacity=0.9, stroke="#333333", strokeWidth=0.5).encode(
        x=x_enc, y=alt.Y("y:Q", scale=y_scale),
        color=alt.Color("significance:N", title=_significance_title(ind),
                        legend=alt.Legend(titleLimit=400),
                        scale=_significance_scale(ind)),
        tooltip=tips,
    ).properties(name="points")
    layers: list[alt.Chart] = [lines, centre_rule, dots]
    if highlight is not None:
        layers += _highlight_layers(base, x_enc, alt.Y("y:Q", scale=y_scale), tips)
    title = alt.Title(_titled(ind, table), subtitle=[
        f"{level}s against the commissioner average; dashed 95%, solid 99.8% control "
        "limits (PHE funnel method)", *_judgement_note(table), _source(ind)],
        anchor="start")
    return alt.LayerChart(
        layer=layers, title=title, width=640, height=400,
        description=f"Funnel plot of {ind.title} by {level.lower()}",
    )


def _titled(ind: Indicator, table: pd.DataFrame) -> str:
    """The indicator's title with the financial year the table covers (its
    ``financial_year`` column, which :func:`~pbc.indicators.benchmark.benchmark` gives)."""
    if "financial_year" not in table.columns or not len(table):
        return ind.title
    return f"{ind.title}, {wording.period(str(table['financial_year'].iloc[0]))}"


def _series_period(series: pd.DataFrame) -> str:
    """The months a monthly series covers, in words."""
    return wording.months(sorted(series["period"].astype(str).unique()))


def _source(ind: Indicator) -> str:
    return f"Source: {wording.source(ind)}"


def _judgement_note(table: pd.DataFrame) -> list[str]:
    """Which measure the colours judge and with which limits (the table's own columns)."""
    note = []
    if "judged_on" in table.columns and len(table):
        note.append(f"Judged on: {table['judged_on'].iloc[0]}")
    if "limits" in table.columns and len(table):
        note.append(f"Limits: {table['limits'].iloc[0]}")
    return note


def _highlight_layers(base: alt.Chart, x: alt.X, y: alt.Y,
                      tips: list[alt.Tooltip]) -> list[alt.Chart]:
    chosen = base.transform_filter("datum.highlighted")
    ring = chosen.mark_point(size=260, shape="circle", filled=False, color="#000000",
                             strokeWidth=2.5).encode(x=x, y=y, tooltip=tips)
    label = chosen.mark_text(align="left", dx=11, dy=-9, fontWeight="bold",
                             fontSize=12).encode(x=x, y=y, text="unit:N")
    return [ring.properties(name="highlight"), label.properties(name="highlight_label")]


# ---------------------------------------------------------------------------- caterpillar

def caterpillar_chart(table: pd.DataFrame, ind: Indicator, *,
                      highlight: str | None = None) -> alt.LayerChart:
    """Units ranked by value with 95% confidence intervals and a reference line.

    Plots the ISR (reference 100) when the table has one, else the DSR (reference: the
    median of the units' DSRs, since the commissioner's own DSR is not in the table), else
    the value (reference: the commissioner average Σnumerator / Σdenominator × multiplier).
    Points are coloured by the table's funnel ``significance``. An interval that does not
    cross the reference line suggests a real difference. Units with no value are left out.
    """
    key = unit_column(table)
    _check_unit(table[key], highlight, "benchmark table")
    level = _LEVEL_NAME[key]
    if "isr" in table.columns:
        col, lo, hi, name = "isr", "isr_lower_95", "isr_upper_95", "ISR"
        reference, ref_label = 100.0, "Commissioner = 100"
        x_title = "Indirectly standardised ratio (commissioner = 100)"
        fmt = ",.1f"
    elif "dsr" in table.columns:
        col, lo, hi, name = "dsr", "dsr_lower_95", "dsr_upper_95", "DSR"
        fmt = _format(ind)
        if _is_dsr(table):  # the DSR funnel's centre: Σevents / Σderived denominators
            ok = np.isfinite(table["dsr_denominator"].to_numpy(float))
            reference = float(table["dsr_observed"][ok].sum()
                              / table["dsr_denominator"][ok].sum()) * ind.multiplier
            ref_label = f"Commissioner (funnel centre) {format(reference, fmt)}"
        else:
            reference = float(np.nanmedian(table["dsr"].to_numpy(float)))
            ref_label = f"Median of {level.lower()}s {format(reference, fmt)}"
        x_title = f"Directly standardised rate, {ind.unit}"
    else:
        col, lo, hi, name = "value", "lower_95", "upper_95", "Value"
        _require(table, ["numerator", "denominator"], "the benchmark table")
        reference = _average(table, ind)
        fmt = _format(ind)
        ref_label = f"Commissioner average {format(reference, fmt)}"
        x_title = ind.unit
    _require(table, [col], "the benchmark table")
    frame = pd.DataFrame({
        "unit": table[key].astype(str), "y": table[col],
        "lower": table[lo] if lo in table.columns else np.nan,
        "upper": table[hi] if hi in table.columns else np.nan,
        "significance": _clean_significance(
            table["significance"] if "significance" in table.columns
            else pd.Series(NOT_APPLICABLE, index=table.index)),
    })
    frame = frame[frame["y"].notna()].sort_values(["y", "unit"], ascending=[False, True])
    frame = frame.reset_index(drop=True)
    frame["rank"] = np.arange(1, len(frame) + 1)
    frame["highlighted"] = frame["unit"] == (highlight or "")
    order = frame["unit"].tolist()
    bold = f"datum.value == {json.dumps(highlight)}" if highlight is not None else "false"
    y = alt.Y("unit:N", title=level, sort=order, axis=alt.Axis(
        labelFontWeight=alt.ExprRef(f"{bold} ? 'bold' : 'normal'"),
        labelColor=alt.ExprRef(f"{bold} ? '#000000' : '#555555'")))
    x = alt.X("y:Q", title=x_title, scale=alt.Scale(zero=False))
    tips = [alt.Tooltip("unit:N", title=level), alt.Tooltip("rank:Q", title="Rank"),
            alt.Tooltip("y:Q", title=name, format=fmt),
            alt.Tooltip("lower:Q", title="95% CI lower", format=fmt),
            alt.Tooltip("upper:Q", title="95% CI upper", format=fmt),
            alt.Tooltip("significance:N", title="Significance")]
    base = alt.Chart(_values(frame))
    bars = base.mark_rule(color="#777777", strokeWidth=1.5).encode(
        y=y, x=alt.X("lower:Q"), x2="upper:Q", tooltip=tips).properties(name="intervals")
    dots = base.mark_circle(size=55, opacity=1, stroke="#333333", strokeWidth=0.5).encode(
        y=y, x=x, tooltip=tips,
        color=alt.Color("significance:N", title=_significance_title(ind),
                        legend=alt.Legend(titleLimit=400),
                        scale=_significance_scale(ind)),
    ).properties(name="points")
    ref = alt.Chart(_values(pd.DataFrame({"reference": [reference], "label": [ref_label]})),
                    name="reference").mark_rule(color="#000000", strokeDash=[4, 3]).encode(
        x="reference:Q", tooltip=[alt.Tooltip("label:N", title="Reference")])
    layers: list[alt.Chart] = [ref, bars, dots]
    if highlight is not None:
        ring = base.transform_filter("datum.highlighted").mark_point(
            size=200, shape="circle", filled=False, color="#000000", strokeWidth=2.5
        ).encode(y=y, x=x, tooltip=tips)
        layers.append(ring.properties(name="highlight"))
    title = alt.Title(_titled(ind, table), subtitle=[
        f"{level}s ranked, with 95% confidence intervals; dashed line: {ref_label}",
        *_judgement_note(table), _source(ind)], anchor="start")
    return alt.LayerChart(
        layer=layers, title=title, width=560, height=alt.Step(14),
        description=f"Caterpillar plot of {ind.title} by {level.lower()}")


# ---------------------------------------------------------------------------- SPC

def spc_chart(series: pd.DataFrame, ind: Indicator, unit: str) -> alt.LayerChart:
    """A Making Data Count XmR chart of one unit's monthly series.

    The grey line is the value by month, the solid line the mean and the dashed lines the
    process limits (mean ± 2.66 × average moving range). Points are coloured by
    ``point_type``: grey common cause, blue special cause improvement, orange special cause
    concern, purple special cause where neither direction is better. Limits that change
    (after a rebase) are drawn as separate segments.

    Raises:
        ValueError: if ``unit`` has no rows or a column is missing.
    """
    key = unit_column(series)
    _require(series, ["period", "value", "mean", "lpl", "upl", "point_type"],
             "the monthly series")
    _check_unit(series[key], unit, "monthly series")
    rows = series[series[key].astype(str) == unit].sort_values("period", kind="stable")
    frame = pd.DataFrame({
        "period": rows["period"].astype(str),
        "month": pd.to_datetime(rows["period"].astype(str), format="%Y-%m").dt.strftime("%b %Y"),
        "value": rows["value"], "mean": rows["mean"], "lpl": rows["lpl"], "upl": rows["upl"],
        "special_cause_type": rows.get("special_cause_type", None),
        "point": rows["point_type"].map(_POINT_TYPE_LABEL).fillna("Common cause"),
    }).reset_index(drop=True)
    limits_key = frame[["mean", "lpl", "upl"]].round(12).astype(str).agg("|".join, axis=1)
    frame["segment"] = (limits_key != limits_key.shift()).cumsum()
    fmt = _format(ind)
    months = frame["month"].tolist()
    x = alt.X("month:O", title="Month", sort=months, axis=alt.Axis(labelAngle=-45))
    y_scale = alt.Scale(zero=False)
    base = alt.Chart(_values(frame))
    line = base.mark_line(color="#7B7D7D", strokeWidth=1.5).encode(
        x=x, y=alt.Y("value:Q", title=wording.monthly_unit(ind), scale=y_scale)
    ).properties(name="value")
    mean = base.mark_line(color="#000000", strokeWidth=1.5).encode(
        x=x, y=alt.Y("mean:Q", scale=y_scale), detail="segment:N").properties(name="mean")
    lpl = base.mark_line(color="#5A5A5A", strokeDash=[6, 4], strokeWidth=1.2).encode(
        x=x, y=alt.Y("lpl:Q", scale=y_scale), detail="segment:N").properties(name="lpl")
    upl = base.mark_line(color="#5A5A5A", strokeDash=[6, 4], strokeWidth=1.2).encode(
        x=x, y=alt.Y("upl:Q", scale=y_scale), detail="segment:N").properties(name="upl")
    dots = base.mark_circle(size=70, opacity=1).encode(
        x=x, y=alt.Y("value:Q", scale=y_scale),
        color=alt.Color("point:N", title="Variation", scale=alt.Scale(
            domain=list(MDC_COLOURS), range=list(MDC_COLOURS.values()))),
        tooltip=[alt.Tooltip("month:O", title="Month"),
                 alt.Tooltip("value:Q", title="Value", format=fmt),
                 alt.Tooltip("mean:Q", title="Mean", format=fmt),
                 alt.Tooltip("lpl:Q", title="Lower process limit", format=fmt),
                 alt.Tooltip("upl:Q", title="Upper process limit", format=fmt),
                 alt.Tooltip("special_cause_type:N", title="Rule"),
                 alt.Tooltip("point:N", title="Variation")],
    ).properties(name="points")
    title = alt.Title(f"{ind.title}: {unit}, {_series_period(series)}", subtitle=[
        "XmR chart (Making Data Count): mean solid, process limits dashed; values "
        f"{wording.monthly_unit(ind)}", _source(ind)], anchor="start")
    return alt.LayerChart(
        layer=[line, mean, lpl, upl, dots], title=title, width=640, height=320,
        description=f"Statistical process control chart of {ind.title} for {unit}")


# ---------------------------------------------------------------------------- deciles

def deciles(series: pd.DataFrame) -> pd.DataFrame:
    """Peers' 10th to 90th percentiles of ``value`` by ``period`` (linear interpolation, as
    :func:`numpy.percentile`), over every unit with a value that month.

    Returns one row per period and percentile: ``period``, ``percentile``, ``value``.
    """
    _require(series, ["period", "value"], "the monthly series")
    finite = series[np.isfinite(series["value"].to_numpy(float))]
    rows = []
    for period, group in finite.groupby("period", sort=True):
        qs = np.percentile(group["value"].to_numpy(float), PERCENTILES)
        rows += [(str(period), p, float(q)) for p, q in zip(PERCENTILES, qs, strict=True)]
    return pd.DataFrame(rows, columns=["period", "percentile", "value"])


def deciles_chart(series: pd.DataFrame, ind: Indicator, *,
                  highlight: str | None = None) -> alt.LayerChart:
    """OpenPrescribing's decile chart: the peers' deciles by month, and one unit in red.

    Blue dashed lines are the 10th, 20th, ... 90th percentiles of all units each month (the
    median heavier); the red line is the highlighted unit. A unit near the top decile does
    more of this than nine in ten of its peers.
    """
    key = unit_column(series)
    _check_unit(series[key], highlight, "monthly series")
    dec = deciles(series)
    dec["month"] = pd.to_datetime(dec["period"], format="%Y-%m").dt.strftime("%b %Y")
    dec["line"] = np.where(dec["percentile"] == 50, "Median", "Deciles (10th to 90th)")
    dec["label"] = dec["percentile"].map(lambda p: "Median" if p == 50 else f"{p}th percentile")
    months = dec.drop_duplicates("period").sort_values("period")["month"].tolist()
    fmt = _format(ind)
    x = alt.X("month:O", title="Month", sort=months, axis=alt.Axis(labelAngle=-45))
    domain = ["Deciles (10th to 90th)", "Median"]
    colours, dashes, widths = [DECILE_COLOUR, DECILE_COLOUR], [[3, 3], [6, 3]], [1.0, 2.5]
    if highlight is not None:
        domain.append(highlight)
        colours.append(UNIT_COLOUR)
        dashes.append([1, 0])
        widths.append(2.5)
    legend = "Line"
    enc: dict[str, Any] = {
        "x": x,
        "y": alt.Y("value:Q", title=wording.monthly_unit(ind), scale=alt.Scale(zero=False)),
        "color": alt.Color("line:N", title=legend, legend=alt.Legend(symbolType="stroke"),
                           scale=alt.Scale(domain=domain, range=colours)),
        "strokeDash": alt.StrokeDash("line:N", title=legend,
                                     scale=alt.Scale(domain=domain, range=dashes)),
        "strokeWidth": alt.StrokeWidth("line:N", title=legend,
                                       scale=alt.Scale(domain=domain, range=widths)),
    }
    lines = alt.Chart(_values(dec), name="deciles").mark_line().encode(
        detail="percentile:O",
        tooltip=[alt.Tooltip("month:O", title="Month"), alt.Tooltip("label:N", title="Line"),
                 alt.Tooltip("value:Q", title="Value", format=fmt)],
        **enc)
    layers: list[alt.Chart] = [lines]
    level = _LEVEL_NAME[key]
    if highlight is not None:
        rows = series[series[key].astype(str) == highlight].sort_values("period")
        own = pd.DataFrame({"period": rows["period"].astype(str), "value": rows["value"],
                            "line": highlight})
        own["month"] = pd.to_datetime(own["period"], format="%Y-%m").dt.strftime("%b %Y")
        layers.append(alt.Chart(_values(own), name="unit").mark_line().encode(
            tooltip=[alt.Tooltip("month:O", title="Month"),
                     alt.Tooltip("line:N", title=level),
                     alt.Tooltip("value:Q", title="Value", format=fmt)],
            **enc))
    n_units = series[key].nunique()
    what = f"{highlight} (red) against " if highlight is not None else ""
    title = alt.Title(f"{ind.title}, {_series_period(series)}", subtitle=[
        f"{what}deciles of {n_units} {level.lower()}s by month (median heavier); values "
        f"{wording.monthly_unit(ind)}", _source(ind)], anchor="start")
    return alt.LayerChart(
        layer=layers, title=title, width=640, height=320,
        description=f"Decile chart of {ind.title} by month")


# ---------------------------------------------------------------------------- saving

def save_chart(chart: alt.TopLevelMixin, path: Path) -> Path:
    """Write a chart by the file's suffix, without fetching anything from the internet.

    ``.json``: the Vega-Lite specification; ``.html``: a self-contained page (the Vega
    libraries inlined, interactive tooltips); ``.svg`` and ``.png``: static images drawn by
    vl-convert (PNG at twice the nominal size, for print). The folder is created if needed.

    Raises:
        ValueError: for any other suffix, naming the path.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SAVE_FORMATS:
        raise ValueError(f"{path}: cannot save a chart as {suffix or 'a file with no suffix'};"
                         f" use one of {', '.join(SAVE_FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".json":
        path.write_text(chart.to_json(indent=2) + "\n", encoding="utf-8")
    elif suffix == ".html":
        chart.save(path, format="html", inline=True)
    elif suffix == ".svg":
        chart.save(path, format="svg")
    else:
        chart.save(path, format="png", scale_factor=2.0)
    return path
