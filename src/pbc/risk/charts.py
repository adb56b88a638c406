"""The calibration plot of a risk model's validation (a chart, not a domain rule).

Patients are split into ten equal groups by predicted risk; each point is a group's mean
predicted risk (across) against the share of it that had the outcome (up), with a 95%
Wilson interval. A well-calibrated model lies on the diagonal; the calibration intercept
and slope (Cox 1958; Steyerberg, *Clinical Prediction Models*, 2019) summarise the same
picture. Save with :func:`pbc.indicators.charts.save_chart`.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from pbc.risk.validation import ValidationReport
from pbc.stats.wilson import wilson_ci


def calibration_frame(report: ValidationReport) -> pd.DataFrame:
    """One row per group of predicted risk: ``group``, ``n``, ``mean_predicted``,
    ``observed``, ``lower_95`` and ``upper_95`` (Wilson), all as proportions."""
    bins = report.calibration_bins
    n = np.array([b.n for b in bins], dtype=float)
    observed = np.array([b.observed_rate for b in bins])
    events = np.round(observed * n)
    ci = wilson_ci(events, n)
    return pd.DataFrame({
        "group": [b.group for b in bins], "n": n.astype(int),
        "mean_predicted": [b.mean_predicted for b in bins], "observed": observed,
        "lower_95": np.asarray(ci.lower), "upper_95": np.asarray(ci.upper),
    })


def calibration_chart(report: ValidationReport) -> alt.LayerChart:
    """Observed against predicted risk by decile, with the line of perfect calibration."""
    frame = calibration_frame(report)
    top = float(max(frame.mean_predicted.max(), frame.upper_95.max(), 0.01)) * 1.05
    c = report.calibration
    axis_x = alt.X("mean_predicted:Q", title="Mean predicted risk",
                   axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, top]))
    axis_y = alt.Y("observed:Q", title="Observed share with the outcome",
                   axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, top]))
    base = alt.Chart(frame)
    ideal = alt.Chart(pd.DataFrame({"x": [0.0, top], "y": [0.0, top]})).mark_line(
        color="grey", strokeDash=[4, 4]).encode(x="x:Q", y="y:Q").properties(name="ideal")
    bars = base.mark_rule(color="#005EB8").encode(
        x=axis_x, y=alt.Y("lower_95:Q"), y2="upper_95:Q").properties(name="interval")
    points = base.mark_circle(size=70, color="#005EB8", opacity=1).encode(
        x=axis_x, y=axis_y,
        tooltip=[alt.Tooltip("group:Q", title="decile"), alt.Tooltip("n:Q", format=","),
                 alt.Tooltip("mean_predicted:Q", format=".1%"),
                 alt.Tooltip("observed:Q", format=".1%")],
    ).properties(name="points")
    return alt.LayerChart(
        layer=[ideal, bars, points], width=420, height=420,
        title=alt.Title(
            report.title,
            subtitle=f"Deciles of predicted risk; calibration intercept {c.intercept:+.3f} "
                     f"(ideal 0), slope {c.slope:.3f} (ideal 1); dashed: perfect calibration"),
    )
