"""XmR / Making Data Count rules (pbc docs/sources.md §4.9; NHSRplotthedots).

Series are built so that each rule fires on its own. The baseline is a saw-tooth 0, 4, 0,
4, … (12 points): mean 2, AMR 4, limits 2 ± 10.64, near-limit band beyond 2 ± 7.0933.
"""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbc.stats import xmr
from pbc.stats.xmr import xmr_panel

BASE = [0.0, 4.0] * 6


def _run(tail: list[float], **kw: object) -> pd.DataFrame:
    return xmr(np.array(BASE + tail), baseline=12, **kw)  # type: ignore[arg-type]


def test_limits_from_baseline() -> None:
    out = _run([2.0])
    row = out.iloc[-1]
    assert row["mean"] == pytest.approx(2) and row["amr"] == pytest.approx(4)
    assert row["upl"] == pytest.approx(2 + 2.66 * 4) and row["lpl"] == pytest.approx(2 - 10.64)
    assert row["near_upl"] == pytest.approx(2 + 2 / 3 * 2.66 * 4)
    assert out["in_baseline"].sum() == 12
    assert out["mr"].iloc[-1] == pytest.approx(2)
    assert (out["point_type"] == "common_cause").all()


def test_outside_limits() -> None:
    out = _run([2.0, 13.0, 2.0, -9.0])
    assert out["special_cause_type"].iloc[13] == "Above UCL"
    assert out["special_cause_type"].iloc[15] == "Below LCL"
    assert out["point_type"].iloc[13] == "special_cause_improvement"
    assert out["point_type"].iloc[15] == "special_cause_concern"
    assert out["point_type"].iloc[14] == "common_cause"
    down = _run([2.0, 13.0], improvement_direction="decrease")
    assert down["point_type"].iloc[13] == "special_cause_concern"
    neutral = _run([13.0, -9.0], improvement_direction="neutral")
    assert neutral["point_type"].iloc[12:].tolist() == ["special_cause_neutral_high",
                                                        "special_cause_neutral_low"]


def test_seven_on_one_side() -> None:
    out = _run([3.0] * 7 + [2.0])
    tail = out.iloc[12:19]
    assert tail["shift"].all() and (tail["special_cause_type"] == "7 Points Above CL").all()
    assert (tail["point_type"] == "special_cause_improvement").all()
    assert out["point_type"].iloc[19] == "common_cause"  # on the mean: ends the run
    six = _run([1.0] + [3.0] * 6 + [2.0])  # the last baseline point (4) is above the mean too
    assert not six["shift"].any()
    below = _run([1.0] * 7, improvement_direction="increase")
    assert (below["point_type"].iloc[12:] == "special_cause_concern").all()
    assert (below["special_cause_type"].iloc[12:] == "7 Points Below CL").all()


def test_point_on_mean_breaks_run() -> None:
    out = _run([3.0] * 3 + [2.0] + [3.0] * 3)
    assert not out["shift"].any()


def test_trend_of_seven() -> None:
    rising = [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 3.9]
    out = _run([*rising, 1.0])
    tail = out.iloc[12:19]
    assert tail["trend"].all()
    assert (tail["special_cause_type"] == "7 Point Trend (Increasing)").all()
    assert (tail["point_type"] == "special_cause_improvement").all()
    assert not out["trend"].iloc[19]
    six = _run([*rising[:6], 1.0])
    assert not six["trend"].any()
    falling = _run(rising[::-1], improvement_direction="increase")
    assert (falling["special_cause_type"].iloc[12:] == "7 Point Trend (Decreasing)").all()
    assert (falling["point_type"].iloc[12:] == "special_cause_concern").all()
    flat = _run([1.0, 1.5, 2.0, 2.0, 3.0, 3.5, 3.9])  # a tie breaks the trend
    assert not flat["trend"].any()


def test_two_of_three_near_limits() -> None:
    out = _run([9.5, 3.0, 9.5, 1.0])
    assert out["close_to_limits"].iloc[12] and not out["close_to_limits"].iloc[13]
    types = out["special_cause_type"].iloc[12:].tolist()
    assert types == ["2 in 3 Above CL", "Common Cause", "2 in 3 Above CL", "Common Cause"]
    low = _run([-5.5, -5.5, 1.0])
    assert low["special_cause_type"].iloc[12:14].tolist() == ["2 in 3 Below CL"] * 2
    assert low["point_type"].iloc[12] == "special_cause_concern"


def test_two_of_three_needs_same_side() -> None:
    # two near points but the third is below the mean: not all three on one side
    out = _run([9.5, 1.0, 9.5, 1.0])
    assert not out["two_in_three"].any()


def test_outside_does_not_count_as_near() -> None:
    out = _run([1.0, 13.0, 9.5, 3.0, 1.0])
    assert not out["close_to_limits"].iloc[13] and out["outside_limits"].iloc[13]
    assert out["close_to_limits"].iloc[14]
    assert not out["two_in_three"].iloc[14]
    assert out["special_cause_type"].iloc[14] == "Common Cause"


def test_outside_takes_priority() -> None:
    out = _run([9.5, 13.0, 9.5])
    assert out["special_cause_type"].iloc[12:].tolist() == [
        "2 in 3 Above CL", "Above UCL", "2 in 3 Above CL"]


def test_screen_outliers() -> None:
    y = np.array([10, 11, 10, 12, 11, 10, 40, 11, 10, 12, 11, 10], dtype=float)
    plain = xmr(y)
    screened = xmr(y, screen_outliers=True)
    mr = np.abs(np.diff(y))
    amr = mr.mean()
    assert plain["amr"].iloc[0] == pytest.approx(amr)
    assert screened["amr"].iloc[0] == pytest.approx(mr[mr < 3.267 * amr].mean())
    assert screened["upl"].iloc[0] < plain["upl"].iloc[0]


def test_rebase_groups() -> None:
    y = np.r_[np.tile([0.0, 4.0], 5), np.tile([10.0, 14.0], 5)]
    out = xmr(y, rebase=[10])
    assert out["rebase_group"].tolist() == [0] * 10 + [1] * 10
    assert out["mean"].iloc[0] == pytest.approx(2) and out["mean"].iloc[-1] == pytest.approx(12)
    assert np.isnan(out["mr"].iloc[10])  # moving range restarts
    assert (out["point_type"] == "common_cause").all()
    flags = np.zeros(20, dtype=bool)
    flags[10] = True
    assert xmr(y, rebase=flags)["mean"].tolist() == out["mean"].tolist()
    without = xmr(y)
    assert without["special_cause_flag"].any()


def test_nan_values_do_not_crash() -> None:
    y = pd.Series([*BASE, np.nan, 2.0, 13.0], index=pd.RangeIndex(100, 115))
    out = xmr(y, baseline=12)
    assert list(out.index) == list(range(100, 115))
    assert pd.isna(out["point_type"].iloc[12])
    assert out["point_type"].iloc[14] == "special_cause_improvement"


def test_short_series_and_errors() -> None:
    out = xmr([1.0, 2.0, 3.0])
    assert (out["point_type"] == "common_cause").all()
    with pytest.raises(ValueError, match="improvement_direction"):
        xmr([1.0, 2.0], improvement_direction="up")  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    panel=hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(2, 30)),
                     elements=st.one_of(st.floats(-50, 50, allow_nan=False),
                                        st.just(np.nan), st.sampled_from([0.0, 1.0, 2.0]))),
    baseline=st.one_of(st.none(), st.integers(2, 12)),
    direction=st.sampled_from(["increase", "decrease", "neutral"]),
    screen=st.booleans(),
)
def test_panel_equals_each_series_on_its_own(panel: np.ndarray, baseline: int | None,
                                             direction: str, screen: bool) -> None:
    out = xmr_panel(panel, baseline=baseline, improvement_direction=direction,  # type: ignore[arg-type]
                    screen_outliers=screen)
    assert list(out.series) == list(np.repeat(np.arange(panel.shape[0]), panel.shape[1]))
    for i, row in enumerate(panel):
        one = xmr(row, baseline=baseline, improvement_direction=direction,  # type: ignore[arg-type]
                  screen_outliers=screen)
        got = out[out.series == i].drop(columns="series").reset_index(drop=True)
        pd.testing.assert_frame_equal(_missing_as_none(got), _missing_as_none(one),
                                      check_dtype=False)


def _missing_as_none(frame: pd.DataFrame) -> pd.DataFrame:
    """The point type of a missing value is missing, whichever way pandas stores it."""
    out = frame.astype({"point_type": object, "special_cause_type": object})
    out["point_type"] = out.point_type.where(out.point_type.notna(), None)
    return out


def test_panel_needs_two_dimensions() -> None:
    with pytest.raises(ValueError, match="2-D"):
        xmr_panel([1.0, 2.0, 3.0])
