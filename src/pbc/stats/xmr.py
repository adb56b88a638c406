"""XmR (individuals and moving range) statistical process control with "Making Data Count" rules.

Method: Wheeler DJ, *Understanding Variation* (1993): limits mean ± 2.66 × average moving
range; the NHS England / NHS Improvement "Making Data Count" rules as implemented by
NHSRplotthedots (nhs-r-community, ``R/ptd_spc_standard.R`` and
``R/ptd_calculate_point_type.R``). pbc docs/sources.md §4.9.

* mean and average moving range (AMR) from the baseline (the first ``baseline`` points of
  each rebase period, ``fix_after_n_points``); optional outlier screen drops moving ranges
  ≥ 3.267 × AMR before the AMR is recomputed;
* process limits mean ± 2.66 AMR; near-limit band beyond mean ± (2/3)(2.66) AMR;
* a point is special cause if it is (priority order) outside the limits; part of a run of 7
  strictly increasing or decreasing points (6 same-sign differences); one of 2 or more of 3
  consecutive points in the near-limit band, all three on the same side of the mean (points
  outside the limits do not count as near); part of a run of 7 points on the same side of
  the mean (a point on the mean breaks a run);
* point type: ``common_cause``, ``special_cause_improvement``, ``special_cause_concern``
  (per ``improvement_direction``) or ``special_cause_neutral_high``/``_low``.

Rules are applied within each rebase period.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike

from pbc.stats._common import FloatArray, as_float

LIMIT = 2.66
NEAR_LIMIT = 2 * LIMIT / 3
MR_SCREEN = 3.267
RUN = 7
Direction = Literal["increase", "decrease", "neutral"]
_DIRECTION = {"increase": 1, "decrease": -1, "neutral": 0}
STATS = ("mean", "mr", "amr", "lpl", "upl", "near_lpl", "near_upl")


def _part_of_run(flag: np.ndarray, length: int = RUN) -> np.ndarray:
    """True where this point or one of the next ``length − 1`` points ends a flagged run
    (along the last axis: one series per row)."""
    k, m = flag.shape
    padded = np.concatenate([flag.astype(np.int64), np.zeros((k, length - 1), np.int64)], axis=1)
    c = np.concatenate([np.zeros((k, 1), np.int64), np.cumsum(padded, axis=1)], axis=1)
    idx = np.arange(m)
    return np.asarray((c[:, idx + length] - c[:, idx]) > 0)


def _rules(y: FloatArray, rtm: np.ndarray, close: np.ndarray) -> dict[str, np.ndarray]:
    """The Making Data Count run, trend and 2-in-3 rules for a panel (one series per row;
    a series shorter than the panel is padded with NaN at the end, which breaks no rule)."""
    k, m = y.shape
    # 7 points on the same side of the mean (ending at i)
    side_end = np.zeros((k, m), dtype=bool)
    trend_end = np.zeros((k, m), dtype=np.int64)
    with np.errstate(invalid="ignore"):
        d = np.sign(np.diff(y, axis=1))
    if m >= RUN:
        w = sliding_window_view(rtm, RUN, axis=1)
        side_end[:, RUN - 1:] = (w.min(axis=2) == w.max(axis=2)) & (w[:, :, -1] != 0)
        dw = sliding_window_view(d, RUN - 1, axis=1)
        trend_end[:, RUN - 1:] = np.where((dw == 1).all(axis=2), 1,
                                          np.where((dw == -1).all(axis=2), -1, 0))
    shift = _part_of_run(side_end)
    trend = _part_of_run(trend_end != 0)
    # 2 of 3 near the limits, all three on the same side of the mean
    window_flag = np.zeros((k, m), dtype=bool)  # indexed by window start
    if m >= 3:
        cw = sliding_window_view(close.astype(np.int64), 3, axis=1).sum(axis=2)
        rw = np.abs(sliding_window_view(rtm, 3, axis=1).sum(axis=2))
        window_flag[:, : m - 2] = (cw >= 2) & (rw == 3)
    in_flagged = window_flag.copy()
    in_flagged[:, 1:] |= window_flag[:, :-1]
    in_flagged[:, 2:] |= window_flag[:, :-2]
    two_in_three = in_flagged & close
    # trend direction: right-hand difference inside a trend, else left-hand (NHSRplotthedots)
    right = np.concatenate([d, d[:, -1:]], axis=1) if m > 1 else np.zeros((k, m))
    left = np.concatenate([np.zeros((k, 1)), d], axis=1)
    both = trend & np.concatenate([trend[:, 1:], np.zeros((k, 1), dtype=bool)], axis=1)
    trend_dir = np.where(both, right, left)
    return {"shift": shift, "trend": trend, "two_in_three": two_in_three,
            "trend_direction": trend_dir}


def _panel(y: FloatArray, baseline: int | None, screen_outliers: bool) -> dict[str, np.ndarray]:
    """Limits, flags and rules for a panel of series (rows), each its own period."""
    k, m = y.shape
    pos = np.arange(m)
    fix = np.broadcast_to(pos < (baseline if baseline is not None else m), (k, m))
    fix_y = np.where(fix, y, np.nan)
    nan_col = np.full((k, 1), np.nan)
    mr_fix = np.concatenate([nan_col, np.abs(np.diff(fix_y, axis=1))], axis=1)
    with warnings.catch_warnings():  # all-NaN series give NaN limits, quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(fix_y, axis=1, keepdims=True)
        amr = np.nanmean(mr_fix, axis=1, keepdims=True)
        if screen_outliers:
            amr = np.nanmean(np.where(mr_fix < MR_SCREEN * amr, mr_fix, np.nan), axis=1,
                             keepdims=True)
    ones = np.ones((k, m))
    cols = {
        "in_baseline": fix.copy(),
        "mean": mean * ones,
        "mr": np.concatenate([nan_col, np.abs(np.diff(y, axis=1))], axis=1),
        "amr": amr * ones,
        "lpl": (mean - LIMIT * amr) * ones,
        "upl": (mean + LIMIT * amr) * ones,
        "near_lpl": (mean - NEAR_LIMIT * amr) * ones,
        "near_upl": (mean + NEAR_LIMIT * amr) * ones,
    }
    with np.errstate(invalid="ignore"):
        outside = (y > cols["upl"]) | (y < cols["lpl"])
        rtm = np.nan_to_num(np.sign(y - cols["mean"]), nan=0.0)
        close = ~outside & ((y < cols["near_lpl"]) | (y > cols["near_upl"]))
    cols.update(outside=outside, rtm=rtm, close=close)
    cols.update(_rules(y, rtm, close))
    return cols


def _groups(n: int, rebase: ArrayLike | None) -> np.ndarray:
    if rebase is None:
        return np.zeros(n, dtype=np.int64)
    r = np.asarray(rebase)
    if r.dtype == bool:
        if r.shape != (n,):
            raise ValueError(f"a boolean rebase needs one flag per value ({n}), got {r.shape}")
        starts = r.copy()
    else:
        pos = r.astype(np.int64).ravel()
        if np.any((pos < 0) | (pos >= n)):
            raise ValueError(f"rebase positions must be between 0 and {n - 1}, got {pos.tolist()}")
        starts = np.zeros(n, dtype=bool)
        starts[pos] = True
    starts[0] = False
    return np.cumsum(starts).astype(np.int64)


def xmr(
    values: ArrayLike,
    baseline: int | None = None,
    rebase: Sequence[int] | ArrayLike | None = None,
    improvement_direction: Direction = "increase",
    screen_outliers: bool = False,
) -> pd.DataFrame:
    """XmR chart statistics and Making Data Count classification for a series in time order.

    Args:
        values: the series, oldest first (a pandas Series keeps its index).
        baseline: compute mean and limits from the first ``baseline`` points of each rebase
            period (NHSRplotthedots ``fix_after_n_points``); default all points.
        rebase: 0-based positions where a new period (with its own limits) starts, or a
            boolean array with one flag per value.
        improvement_direction: ``"increase"``, ``"decrease"`` or ``"neutral"``.
        screen_outliers: drop moving ranges ≥ 3.267 × AMR and recompute the AMR.

    Returns:
        One row per value: ``value``, ``rebase_group``, ``in_baseline``, ``mean``, ``mr``,
        ``amr``, ``lpl``, ``upl``, ``near_lpl``, ``near_upl``, ``relative_to_mean``,
        ``outside_limits``, ``close_to_limits``, the rule flags ``shift`` (part of 7 on one
        side), ``trend`` (part of 7 rising/falling) and ``two_in_three``,
        ``special_cause_type`` (e.g. "Above UCL", "7 Point Trend (Increasing)",
        "2 in 3 Below CL", "7 Points Above CL", "Common Cause"), ``special_cause_flag`` and
        ``point_type`` (None where the value is missing).
    """
    if improvement_direction not in _DIRECTION:
        raise ValueError("improvement_direction must be 'increase', 'decrease' or 'neutral', "
                         f"got {improvement_direction!r}")
    if baseline is not None and baseline < 2:
        raise ValueError(f"baseline needs at least 2 points, got {baseline}")
    index = values.index if isinstance(values, pd.Series) else None
    y = np.atleast_1d(as_float(values)).ravel()
    n = y.size
    group = _groups(n, rebase)
    # each rebase period is a series of its own: stack them as a panel padded with NaN
    periods = [np.flatnonzero(group == g) for g in np.unique(group)]
    width = max((p.size for p in periods), default=0)
    panel = np.full((len(periods), width), np.nan)
    for i, p in enumerate(periods):
        panel[i, : p.size] = y[p]
    res = _panel(panel, baseline, screen_outliers)
    rows = np.concatenate([np.full(p.size, i) for i, p in enumerate(periods)]) if n else \
        np.zeros(0, dtype=np.int64)
    cols_pos = np.concatenate([np.arange(p.size) for p in periods]) if n else \
        np.zeros(0, dtype=np.int64)
    order = np.concatenate(periods) if n else np.zeros(0, dtype=np.int64)
    flat = {name: np.empty(n, dtype=a.dtype) for name, a in res.items()}
    for name, a in res.items():
        flat[name][order] = a[rows, cols_pos]
    return _classified(y, group, flat, improvement_direction, index)


def xmr_panel(
    values: ArrayLike,
    baseline: int | None = None,
    improvement_direction: Direction = "increase",
    screen_outliers: bool = False,
) -> pd.DataFrame:
    """:func:`xmr` for many series of the same length at once (one series per row of a 2-D
    array, e.g. every practice's 12 months), vectorised; rows of the result are series by
    series, oldest first, exactly as :func:`xmr` gives for each row on its own (a series
    shorter than the others is padded with NaN at its end)."""
    if improvement_direction not in _DIRECTION:
        raise ValueError("improvement_direction must be 'increase', 'decrease' or 'neutral', "
                         f"got {improvement_direction!r}")
    if baseline is not None and baseline < 2:
        raise ValueError(f"baseline needs at least 2 points, got {baseline}")
    y = np.asarray(values, dtype=float)
    if y.ndim != 2:
        raise ValueError(f"xmr_panel needs a 2-D array (series x time), got shape {y.shape}")
    res = _panel(y, baseline, screen_outliers)
    flat = {name: a.ravel() for name, a in res.items()}
    group = np.repeat(np.arange(y.shape[0]), y.shape[1])
    out = _classified(y.ravel(), np.zeros_like(group), flat, improvement_direction, None)
    out.insert(0, "series", group)
    return out


def _classified(y: FloatArray, group: np.ndarray, cols: dict[str, np.ndarray],
                improvement_direction: Direction, index: pd.Index | None) -> pd.DataFrame:
    """Special-cause type and point type from the rules (flat arrays, one per point)."""
    outside, rtm, close = cols["outside"], cols["rtm"], cols["close"]
    flags = {k: cols[k] for k in ("shift", "trend", "two_in_three")}
    trend_dir = cols["trend_direction"]
    in_baseline = cols["in_baseline"]
    above = np.where(rtm > 0, "Above", "Below")
    kind = np.select(
        [outside, flags["trend"], flags["two_in_three"], flags["shift"]],
        [
            np.where(rtm == 1, "Above UCL", "Below LCL"),
            np.where(trend_dir == 1, "7 Point Trend (Increasing)", "7 Point Trend (Decreasing)"),
            np.char.add(np.char.add("2 in 3 ", above), " CL"),
            np.char.add(np.char.add("7 Points ", above), " CL"),
        ],
        default="Common Cause",
    )
    up = np.where(rtm > 0, 1, -1)
    sign = np.select(
        [outside, flags["trend"], flags["two_in_three"], flags["shift"]],
        [np.where(rtm == 1, 1, -1), np.where(trend_dir == 1, 1, -1), up, up],
        default=0,
    )
    direction = _DIRECTION[improvement_direction]
    if direction == 0:
        point_type = np.select([sign > 0, sign < 0],
                               ["special_cause_neutral_high", "special_cause_neutral_low"],
                               default="common_cause")
    else:
        oriented = sign * direction
        point_type = np.select([oriented > 0, oriented < 0],
                               ["special_cause_improvement", "special_cause_concern"],
                               default="common_cause")
    missing = np.isnan(y)
    point_type_obj = point_type.astype(object)
    point_type_obj[missing] = None
    out = pd.DataFrame(
        {
            "value": y,
            "rebase_group": group,
            "in_baseline": in_baseline,
            **{k: cols[k] for k in STATS},
            "relative_to_mean": rtm.astype(np.int64),
            "outside_limits": outside,
            "close_to_limits": close,
            **flags,
            "special_cause_type": kind.astype(object),
            "special_cause_flag": kind != "Common Cause",
            "point_type": point_type_obj,
        },
        index=index,
    )
    return out
