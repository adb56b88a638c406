"""Benchmarking charts: the drawn limits are pbc.stats' limits, one mark per unit, files open.

Frames are built here the way ``benchmark`` and ``monthly_series`` build them: 40 practices
with realistic list sizes, intervals from pbc.stats, significance from the funnel functions.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import pytest

from pbc.indicators.charts import (
    BETTER,
    MDC_COLOURS,
    UNIT_COLOUR,
    WORSE,
    caterpillar_chart,
    deciles,
    deciles_chart,
    funnel_chart,
    save_chart,
    spc_chart,
    unit_column,
)
from pbc.indicators.definition import Indicator, load_indicators
from pbc.stats.crude_rate import crude_rate
from pbc.stats.exact_poisson import poisson_ci
from pbc.stats.funnel_poisson import funnel_dsr, funnel_rate, funnel_ratio
from pbc.stats.funnel_proportion import LIMIT_COLUMNS, funnel_proportion
from pbc.stats.wilson import wilson_ci
from pbc.stats.xmr import xmr

N_UNITS = 40
CODES = [f"A81{i:03d}" for i in range(1, N_UNITS + 1)]
PERIODS = [f"{y}-{m:02d}" for y, m in [(2023, m) for m in range(4, 13)]
           + [(2024, m) for m in range(1, 13)] + [(2025, m) for m in range(1, 4)]]


@pytest.fixture(scope="module")
def inds() -> dict[str, Indicator]:
    return load_indicators()


def _peers(out: pd.DataFrame) -> pd.DataFrame:
    out["percentile"] = out["value"].rank(pct=True) * 100
    out["decile"] = np.ceil(out["percentile"] / 10)
    out["saving_at_p25"] = np.nan
    out["saving_at_p10"] = np.nan
    out["national_value"] = 80.0  # an extra column the charts must ignore
    return out


@pytest.fixture(scope="module")
def proportion_table() -> pd.DataFrame:
    """Day cases among elective admissions at 40 practices (about 80%, a few outliers)."""
    rng = np.random.default_rng(7)
    n = rng.integers(150, 1500, N_UNITS).astype(float)
    p = np.clip(rng.normal(0.80, 0.02, N_UNITS), 0, 1)
    p[:3] = [0.68, 0.72, 0.90]
    x = rng.binomial(n.astype(int), p).astype(float)
    ci = wilson_ci(x, n)
    out = pd.DataFrame({"indicator": "day_case_rate", "practice": CODES, "numerator": x,
                        "denominator": n, "value": x / n * 100,
                        "lower_95": np.asarray(ci.lower) * 100,
                        "upper_95": np.asarray(ci.upper) * 100,
                        "significance": funnel_proportion(x, n).significance.to_numpy()})
    return _peers(out)


@pytest.fixture(scope="module")
def rate_table() -> pd.DataFrame:
    """Excess bed days per 1,000 patients (a crude rate) at 40 practices."""
    rng = np.random.default_rng(11)
    n = rng.integers(2_000, 20_000, N_UNITS).astype(float)
    x = rng.poisson(n * 0.03 * rng.lognormal(0, 0.3, N_UNITS)).astype(float)
    rate = crude_rate(x, n, multiplier=1000)
    out = pd.DataFrame({"indicator": "excess_bed_days", "practice": CODES, "numerator": x,
                        "denominator": n, "value": x / n * 1000, "lower_95": rate.lower,
                        "upper_95": rate.upper,
                        "significance": funnel_rate(x, n, multiplier=1000).significance})
    return _peers(out)


@pytest.fixture(scope="module")
def isr_table() -> pd.DataFrame:
    """Emergency admissions with an indirectly standardised ratio, as ``benchmark`` gives."""
    rng = np.random.default_rng(3)
    n = rng.integers(2_000, 20_000, N_UNITS).astype(float)
    expected = n * 0.09 * rng.uniform(0.7, 1.4, N_UNITS)
    observed = rng.poisson(expected * rng.lognormal(0, 0.12, N_UNITS)).astype(float)
    expected = expected * observed.sum() / expected.sum()  # ISRs average 100, as they do
    rate = crude_rate(observed, n, multiplier=1000)
    lo, hi = poisson_ci(observed, 0.95)
    out = pd.DataFrame({"indicator": "emergency_admissions", "practice": CODES,
                        "numerator": observed, "denominator": n,
                        "value": observed / n * 1000, "lower_95": rate.lower,
                        "upper_95": rate.upper, "observed": observed, "expected": expected,
                        "isr": observed / expected * 100, "isr_lower_95": lo / expected * 100,
                        "isr_upper_95": hi / expected * 100,
                        "significance": funnel_ratio(observed, expected,
                                                     ratio_type="isr").significance})
    return _peers(out)


@pytest.fixture(scope="module")
def series() -> pd.DataFrame:
    """24 months of day-case rates for 40 practices, XmR limits from the first 12 months."""
    rng = np.random.default_rng(5)
    frames = []
    for i, code in enumerate(CODES):
        n = rng.integers(20, 120, len(PERIODS)).astype(float)
        p = 0.78 + 0.004 * i / N_UNITS + np.where(np.arange(len(PERIODS)) > 15, 0.06, 0) * (
            i == 0)
        x = rng.binomial(n.astype(int), np.clip(p, 0, 1)).astype(float)
        value = x / n * 100
        chart = xmr(value, baseline=12, improvement_direction="increase")
        frames.append(pd.DataFrame({
            "indicator": "day_case_rate", "practice": code, "period": PERIODS,
            "numerator": x, "denominator": n, "value": value,
            "mean": chart["mean"].to_numpy(), "lpl": chart["lpl"].to_numpy(),
            "upl": chart["upl"].to_numpy(),
            "special_cause_type": chart["special_cause_type"].to_numpy(),
            "point_type": chart["point_type"].to_numpy()}))
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------- spec helpers

def _layer(spec: dict[str, Any], name: str) -> dict[str, Any]:
    layers = {layer.get("name"): layer for layer in spec["layer"]}
    assert name in layers, f"no layer {name!r}; have {list(layers)}"
    return layers[name]


def _data(spec: dict[str, Any], name: str) -> pd.DataFrame:
    data = _layer(spec, name).get("data", spec.get("data"))
    assert data is not None
    values = data["values"] if "values" in data else spec["datasets"][data["name"]]
    return pd.DataFrame(values)


def _colour_of(layer: dict[str, Any], label: str) -> str:
    scale = layer["encoding"]["color"]["scale"]
    return str(dict(zip(scale["domain"], scale["range"], strict=True))[label])


# ---------------------------------------------------------------------------- funnel

def test_unit_column_is_detected(proportion_table: pd.DataFrame) -> None:
    assert unit_column(proportion_table) == "practice"
    grouped = proportion_table.rename(columns={"practice": "group"})
    assert unit_column(grouped) == "group"
    with pytest.raises(ValueError, match="no unit column"):
        unit_column(proportion_table.drop(columns=["practice"]))


def test_funnel_proportion_limits_are_the_stats_limits(
        proportion_table: pd.DataFrame, inds: dict[str, Indicator]) -> None:
    t = proportion_table
    spec = funnel_chart(t, inds["day_case_rate"]).to_dict()
    limits = _data(spec, "limits").set_index("x")
    want = funnel_proportion(t.numerator, t.denominator)  # each practice's own limits
    drawn = limits.reindex(want["n"].to_numpy())
    for col in LIMIT_COLUMNS:
        assert drawn[col].to_numpy() == pytest.approx(want[col].to_numpy(), rel=1e-9)
    assert limits["centre"].iloc[0] == pytest.approx(t.numerator.sum() / t.denominator.sum()
                                                     * 100)
    assert _data(spec, "centre")["centre"].iloc[0] == pytest.approx(want.baseline.iloc[0])
    assert len(limits) > N_UNITS + 100  # a smooth grid, not just the units
    assert limits.index.is_monotonic_increasing
    assert (limits["lower_998"] <= limits["lower_95"]).all()
    assert (limits["upper_95"] <= limits["upper_998"]).all()


def test_funnel_rate_limits_are_funnel_rate_limits(
        rate_table: pd.DataFrame, inds: dict[str, Indicator]) -> None:
    t = rate_table
    spec = funnel_chart(t, inds["excess_bed_days"]).to_dict()
    limits = _data(spec, "limits").set_index("x")
    want = funnel_rate(t.numerator, t.denominator, multiplier=1000)
    drawn = limits.reindex(want["n"].to_numpy())
    for col in LIMIT_COLUMNS:
        assert drawn[col].to_numpy() == pytest.approx(want[col].to_numpy(), rel=1e-7)
    assert limits["centre"].iloc[0] == pytest.approx(want.baseline.iloc[0])


def test_funnel_isr_plots_isr_against_expected(
        isr_table: pd.DataFrame, inds: dict[str, Indicator]) -> None:
    t = isr_table
    spec = funnel_chart(t, inds["emergency_admissions"]).to_dict()
    points = _data(spec, "points").set_index("unit")
    assert points.loc[CODES, "x"].to_numpy() == pytest.approx(t.expected.to_numpy())
    assert points.loc[CODES, "y"].to_numpy() == pytest.approx(t.isr.to_numpy())
    limits = _data(spec, "limits").set_index("x")
    want = funnel_ratio(t.observed, t.expected, ratio_type="isr")
    drawn = limits.reindex(want["expected"].to_numpy())
    for col in LIMIT_COLUMNS:
        assert drawn[col].to_numpy() == pytest.approx(want[col].to_numpy(), rel=1e-7)
    assert _data(spec, "centre")["centre"].iloc[0] == 100
    assert "standardised" in _layer(spec, "limits")["encoding"]["y"]["title"].lower()


@pytest.fixture(scope="module")
def dsr_table(rate_table: pd.DataFrame) -> pd.DataFrame:
    """A directly standardised indicator as ``benchmark`` gives it: the DSR with its total
    count and derived denominator, judged on the DSR funnel."""
    rng = np.random.default_rng(13)
    observed = rate_table.numerator.to_numpy(float) + 20
    dsr = observed / rate_table.denominator.to_numpy(float) * 1e5 * rng.uniform(
        0.6, 1.6, N_UNITS)
    f = funnel_dsr(observed, dsr, multiplier=1e5)
    return rate_table.assign(indicator="chronic_acsc_admissions", dsr_observed=observed,
                             dsr=dsr, dsr_lower_95=dsr * 0.9, dsr_upper_95=dsr * 1.1,
                             dsr_denominator=1e5 * observed / dsr,
                             significance=f.significance.to_numpy(),
                             judged_on="DSR per 100,000 (ESP2013)", limits="Poisson (PHE)")


def test_funnel_of_a_dsr_plots_the_dsr_and_its_limits(
        dsr_table: pd.DataFrame, inds: dict[str, Indicator]) -> None:
    t = dsr_table
    spec = funnel_chart(t, inds["chronic_acsc_admissions"]).to_dict()
    points = _data(spec, "points").set_index("unit")
    assert points.loc[CODES, "y"].to_numpy() == pytest.approx(t.dsr.to_numpy())
    assert points.loc[CODES, "x"].to_numpy() == pytest.approx(t.dsr_denominator.to_numpy())
    want = funnel_dsr(t.dsr_observed, t.dsr, multiplier=1e5)
    limits = _data(spec, "limits").set_index("x")
    drawn = limits.reindex(want["denominator"].to_numpy())
    for col in LIMIT_COLUMNS:
        assert drawn[col].to_numpy() == pytest.approx(want[col].to_numpy(), rel=1e-7)
    assert _data(spec, "centre")["centre"].iloc[0] == pytest.approx(want.baseline.iloc[0])
    assert any("DSR per 100,000 (ESP2013)" in line for line in spec["title"]["subtitle"])


def test_funnel_draws_the_overdispersion_adjusted_limits_the_table_used(
        isr_table: pd.DataFrame, inds: dict[str, Indicator]) -> None:
    od = funnel_ratio(isr_table.observed, isr_table.expected, ratio_type="isr",
                      overdispersion=True)
    t = isr_table.assign(significance=od.significance.to_numpy(), tau2=od.attrs["tau2"],
                         phi=od.attrs["phi"], judged_on="ISR (commissioner = 100)",
                         limits="overdispersion-adjusted (Spiegelhalter random effects)")
    spec = funnel_chart(t, inds["emergency_admissions"]).to_dict()
    limits = _data(spec, "limits").set_index("x")
    drawn = limits.reindex(od["expected"].to_numpy())
    for col in LIMIT_COLUMNS:
        assert drawn[col].to_numpy() == pytest.approx(od[col].to_numpy(), rel=1e-9)
    assert any("overdispersion-adjusted" in line for line in spec["title"]["subtitle"])


def test_funnel_has_one_point_per_unit_with_tooltips(
        proportion_table: pd.DataFrame, inds: dict[str, Indicator]) -> None:
    spec = funnel_chart(proportion_table, inds["day_case_rate"]).to_dict()
    points = _data(spec, "points")
    assert len(points) == N_UNITS
    assert sorted(points["unit"]) == CODES
    layer = _layer(spec, "points")
    assert layer["mark"]["type"] == "circle"
    tips = {t["field"] for t in layer["encoding"]["tooltip"]}
    assert {"unit", "y", "lower", "upper", "significance"} <= tips
    assert set(points["significance"]) == set(proportion_table["significance"])
    assert not points["highlighted"].any()
    assert spec["title"]["text"] == inds["day_case_rate"].title


def test_funnel_colours_follow_the_direction_of_good(
        proportion_table: pd.DataFrame, rate_table: pd.DataFrame,
        inds: dict[str, Indicator]) -> None:
    # day cases: high is good, so a significantly low practice is "worse" (red)
    day = _layer(funnel_chart(proportion_table, inds["day_case_rate"]).to_dict(), "points")
    assert _colour_of(day, "Low (0.001)") == WORSE[0]
    assert _colour_of(day, "High (0.025)") == BETTER[1]
    # excess bed days: low is good
    beds = _layer(funnel_chart(rate_table, inds["excess_bed_days"]).to_dict(), "points")
    assert _colour_of(beds, "Low (0.001)") == BETTER[0]
    assert _colour_of(beds, "High (0.001)") == WORSE[0]


def test_funnel_highlight(proportion_table: pd.DataFrame, inds: dict[str, Indicator]) -> None:
    spec = funnel_chart(proportion_table, inds["day_case_rate"], highlight="A81003").to_dict()
    points = _data(spec, "points")
    assert points.loc[points["highlighted"], "unit"].tolist() == ["A81003"]
    ring = _layer(spec, "highlight")
    assert ring["mark"]["size"] > _layer(spec, "points")["mark"]["size"]
    assert {"filter": "datum.highlighted"} in ring["transform"]
    assert _layer(spec, "highlight_label")["encoding"]["text"]["field"] == "unit"
    with pytest.raises(ValueError, match="'Z99999' is not a practice"):
        funnel_chart(proportion_table, inds["day_case_rate"], highlight="Z99999")


def test_no_funnel_for_cost_per_head(proportion_table: pd.DataFrame,
                                     inds: dict[str, Indicator]) -> None:
    with pytest.raises(ValueError, match=r"cost per head.*no funnel plot"):
        funnel_chart(proportion_table, inds["spend_ae_per_weighted_patient"])


# ---------------------------------------------------------------------------- caterpillar

def test_caterpillar_ranks_isr_with_intervals(isr_table: pd.DataFrame,
                                              inds: dict[str, Indicator]) -> None:
    spec = caterpillar_chart(isr_table, inds["emergency_admissions"],
                             highlight="A81010").to_dict()
    order = _layer(spec, "points")["encoding"]["y"]["sort"]
    want = isr_table.sort_values("isr", ascending=False)["practice"].tolist()
    assert order == want
    data = _data(spec, "points").set_index("unit")
    assert data.loc[want[0], "rank"] == 1
    assert data.loc[CODES, "lower"].to_numpy() == pytest.approx(isr_table.isr_lower_95)
    assert _layer(spec, "intervals")["encoding"]["x2"]["field"] == "upper"
    assert _data(spec, "reference")["reference"].iloc[0] == 100
    assert "highlight" in {layer["name"] for layer in spec["layer"]}


def test_caterpillar_reference_is_the_average(proportion_table: pd.DataFrame,
                                              inds: dict[str, Indicator]) -> None:
    t = proportion_table
    spec = caterpillar_chart(t, inds["day_case_rate"]).to_dict()
    ref = _data(spec, "reference")["reference"].iloc[0]
    assert ref == pytest.approx(t.numerator.sum() / t.denominator.sum() * 100)
    assert len(_data(spec, "points")) == N_UNITS


def test_caterpillar_uses_dsr_when_present(rate_table: pd.DataFrame,
                                           inds: dict[str, Indicator]) -> None:
    t = rate_table.assign(dsr=rate_table.value * 1.1, dsr_lower_95=rate_table.lower_95 * 1.1,
                          dsr_upper_95=rate_table.upper_95 * 1.1)
    spec = caterpillar_chart(t, inds["chronic_acsc_admissions"]).to_dict()
    assert _data(spec, "points").set_index("unit").loc[CODES, "y"].to_numpy() == \
        pytest.approx(t.dsr.to_numpy())
    assert _data(spec, "reference")["reference"].iloc[0] == pytest.approx(t.dsr.median())


# ---------------------------------------------------------------------------- SPC

def test_spc_chart_for_one_unit(series: pd.DataFrame, inds: dict[str, Indicator]) -> None:
    spec = spc_chart(series, inds["day_case_rate"], "A81001").to_dict()
    data = _data(spec, "points")
    own = series[series.practice == "A81001"]
    assert len(data) == len(PERIODS)
    assert data["value"].to_numpy() == pytest.approx(own.value.to_numpy())
    assert data["upl"].to_numpy() == pytest.approx(own.upl.to_numpy())
    colour = _layer(spec, "points")["encoding"]["color"]["scale"]
    assert dict(zip(colour["domain"], colour["range"], strict=True)) == MDC_COLOURS
    assert MDC_COLOURS["Common cause"] == "#7B7D7D"
    assert MDC_COLOURS["Special cause: improvement"] == "#289DE0"
    assert MDC_COLOURS["Special cause: concern"] == "#FAB428"
    # A81001's rate steps up by 6 points from month 17: special cause improvement, in blue
    assert "Special cause: improvement" in set(data["point"])
    assert _layer(spec, "upl")["mark"]["strokeDash"]
    assert _layer(spec, "lpl")["mark"]["strokeDash"]
    assert "strokeDash" not in _layer(spec, "mean")["mark"]
    assert data["month"].iloc[0] == "Apr 2023"
    assert "A81001" in spec["title"]["text"]
    with pytest.raises(ValueError, match="'B99999' is not a practice in the monthly series"):
        spc_chart(series, inds["day_case_rate"], "B99999")


# ---------------------------------------------------------------------------- deciles

def test_deciles_match_numpy_percentiles(series: pd.DataFrame) -> None:
    dec = deciles(series)
    assert len(dec) == len(PERIODS) * 9
    for period in ("2023-04", "2024-09", "2025-03"):
        values = series.loc[series.period == period, "value"].to_numpy()
        got = dec[dec.period == period].sort_values("percentile")["value"].to_numpy()
        assert got == pytest.approx(np.percentile(values, range(10, 100, 10)))


def test_deciles_chart_with_highlighted_unit(series: pd.DataFrame,
                                             inds: dict[str, Indicator]) -> None:
    spec = deciles_chart(series, inds["day_case_rate"], highlight="A81001").to_dict()
    drawn = _data(spec, "deciles")
    med = drawn[drawn.percentile == 50].set_index("period")["value"]
    want = series.groupby("period")["value"].median()
    assert med.to_numpy() == pytest.approx(want.loc[med.index].to_numpy())
    unit = _data(spec, "unit")
    own = series[series.practice == "A81001"]
    assert unit["value"].to_numpy() == pytest.approx(own.value.to_numpy())
    assert _colour_of(_layer(spec, "unit"), "A81001") == UNIT_COLOUR
    widths = _layer(spec, "deciles")["encoding"]["strokeWidth"]["scale"]
    width_of = dict(zip(widths["domain"], widths["range"], strict=True))
    assert width_of["Median"] > width_of["Deciles (10th to 90th)"]
    no_unit = deciles_chart(series, inds["day_case_rate"]).to_dict()
    assert [layer["name"] for layer in no_unit["layer"]] == ["deciles"]


# ---------------------------------------------------------------------------- saving

@pytest.fixture(scope="module")
def chart(proportion_table: pd.DataFrame, inds: dict[str, Indicator]) -> alt.LayerChart:
    return funnel_chart(proportion_table, inds["day_case_rate"], highlight="A81003")


def test_save_json_and_html(chart: alt.LayerChart, tmp_path: Path) -> None:
    path = save_chart(chart, tmp_path / "funnel.json")
    assert json.loads(path.read_text()) == chart.to_dict()
    html = save_chart(chart, tmp_path / "out" / "funnel.html").read_text()
    assert "Day cases as a share of elective admissions" in html
    assert "cdn.jsdelivr.net" not in html  # the Vega libraries are inlined: works offline


def test_save_svg_is_xml_with_the_title(chart: alt.LayerChart, tmp_path: Path) -> None:
    path = save_chart(chart, tmp_path / "funnel.svg")
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    text = " ".join(t for t in root.itertext())
    assert "Day cases as a share of elective admissions" in text
    assert "A81003" in text  # the highlight label


def test_save_png(chart: alt.LayerChart, tmp_path: Path) -> None:
    data = save_chart(chart, tmp_path / "funnel.PNG").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(data[16:20], "big")
    assert width > 1000  # drawn at twice the nominal size


def test_save_unknown_suffix(chart: alt.LayerChart, tmp_path: Path) -> None:
    bad = tmp_path / "funnel.pdf"
    with pytest.raises(ValueError, match=r"funnel\.pdf.*\.json, \.html, \.svg, \.png"):
        save_chart(chart, bad)
    assert not bad.exists()
