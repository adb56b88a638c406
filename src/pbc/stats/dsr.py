"""Directly standardised rates (DSR) with Dobson confidence limits.

Method: Dobson AJ, Kuulasmaa K, Eberle E, Scherer J. Confidence intervals for weighted sums
of Poisson parameters. Stat Med 1991;10:457-62, with Byar's limits for the total count
(Breslow & Day 1987), as implemented by PHEindicatormethods ``phe_dsr`` (``R/DSR.R``).
pbc docs/sources.md §4.6::

    DSR   = Σ (x_i / n_i × w_i) / Σ w_i × multiplier        (w = standard population)
    var   = Σ x_i (w_i / n_i)² / (Σ w_i)²
    O     = Σ x_i
    lower = DSR + √(var/O) × (Byar_lower(O) − O) × multiplier   (same for upper)

The DSR and its limits are not calculated (NaN) when O < 10, as PHE does
("dsr NA for total count < 10"). As in ``phe_dsr``, a missing band count counts as zero
(``missing_as_zero=True``); set it False to let NaN propagate instead.

The default standard population is the European Standard Population 2013 (Eurostat,
*Revision of the European Standard Population*, 2013): 19 five-year bands 0-4 … 85-89, 90+,
totalling 100,000.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from pbc.stats._common import (
    FloatArray,
    FloatOrArray,
    as_float,
    check_non_negative,
    check_positive,
    finish,
    normalise_confidence,
    z_value,
)
from pbc.stats.byars import byars_lower, byars_upper

#: European Standard Population 2013, five-year bands 0-4 … 85-89 then 90+ (sum 100,000).
ESP2013: FloatArray = np.array(
    [5000, 5500, 5500, 5500, 6000, 6000, 6500, 7000, 7000, 7000,
     7000, 6500, 6000, 5500, 5000, 4000, 2500, 1500, 1000],
    dtype=np.float64,
)  # fmt: skip
#: Band labels matching :data:`ESP2013`.
ESP2013_BANDS: tuple[str, ...] = (
    *(f"{a}-{a + 4}" for a in range(0, 90, 5)),
    "90+",
)
#: Total count below which a DSR is not calculated.
DSR_MIN_COUNT = 10


class DSRResult(NamedTuple):
    """A DSR with Dobson limits, the total count O and total population behind it."""

    value: FloatOrArray
    lower: FloatOrArray
    upper: FloatOrArray
    total_count: FloatOrArray
    total_pop: FloatOrArray


def _dobson(
    total_count: FloatArray,
    wt_sum: FloatArray,
    sq_sum: FloatArray,
    w_sum: FloatArray,
    multiplier: float,
    confidence: float,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Value and Dobson limits from the summed pieces (NaN where O < 10)."""
    z = z_value(confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = wt_sum / w_sum * multiplier
        var = sq_sum / w_sum**2
        scale = np.sqrt(var / total_count) * multiplier
        lower = value + scale * (byars_lower(total_count, z) - total_count)
        upper = value + scale * (byars_upper(total_count, z) - total_count)
    small = ~(total_count >= DSR_MIN_COUNT)
    return (
        np.where(small, np.nan, value),
        np.where(small, np.nan, lower),
        np.where(small, np.nan, upper),
    )


def dsr(
    x: ArrayLike,
    n: ArrayLike,
    standard_population: ArrayLike | None = None,
    multiplier: float = 100_000,
    confidence: float = 0.95,
    missing_as_zero: bool = True,
) -> DSRResult:
    """Directly standardised rate of counts ``x`` in populations ``n`` (bands on the last axis).

    Args:
        x: event counts per standardisation band; shape ``(..., k)`` — give a 2-D array
            ``(areas, bands)`` to standardise many areas at once.
        n: populations per band, same shape as ``x`` (> 0).
        standard_population: weights per band, length ``k``; default :data:`ESP2013` (k = 19).
        multiplier: e.g. 100_000 for a rate per 100,000.
        confidence: 0.95 or 95 for 95%; allowed 0.9-1 (or 90-100).
        missing_as_zero: treat NaN counts as 0 (PHE ``na.zero``); if False, NaN propagates.

    Returns:
        ``DSRResult(value, lower, upper, total_count, total_pop)``; floats for 1-D input,
        arrays of shape ``(...)`` otherwise. value/lower/upper are NaN where O < 10.
    """
    c = normalise_confidence(confidence)
    xa, na = as_float(x), as_float(n)
    w = ESP2013 if standard_population is None else as_float(standard_population)
    if xa.ndim == 0 or xa.shape != na.shape:
        raise ValueError(f"x and n must have the same shape with bands last; got {xa.shape} "
                         f"and {na.shape}")
    if w.ndim != 1 or w.shape[0] != xa.shape[-1]:
        raise ValueError(f"standard_population has {w.size} bands but the data have "
                         f"{xa.shape[-1]} on the last axis")
    check_non_negative("x", xa)
    check_positive("n", na)
    if missing_as_zero:
        xa = np.where(np.isnan(xa), 0.0, xa)
    with np.errstate(invalid="ignore", divide="ignore"):
        total_count = xa.sum(axis=-1)
        wt_sum = (xa * w / na).sum(axis=-1)
        sq_sum = (xa * (w / na) ** 2).sum(axis=-1)
    w_sum = np.broadcast_to(w.sum(), total_count.shape).astype(np.float64)
    value, lower, upper = _dobson(total_count, wt_sum, sq_sum, w_sum, multiplier, c)
    scalar = xa.ndim == 1
    return DSRResult(
        finish(value, scalar),
        finish(lower, scalar),
        finish(upper, scalar),
        finish(total_count, scalar),
        finish(na.sum(axis=-1), scalar),
    )


def dsr_by_group(
    df: pd.DataFrame,
    group_col: str | Sequence[str],
    x_col: str,
    n_col: str,
    standard_population: str | ArrayLike | None = None,
    multiplier: float = 100_000,
    confidence: float = 0.95,
    missing_as_zero: bool = True,
) -> pd.DataFrame:
    """DSRs for many groups (areas, practices, years) of a long table at once.

    Each group's rows are its standardisation bands. ``standard_population`` is a column
    name, or weights matched to bands by position within each group (rows in band order,
    every group the same number of rows, as ``phe_dsr`` requires), default :data:`ESP2013`.

    Returns:
        One row per group: the group columns, ``total_count``, ``total_pop``, ``value``,
        ``lower``, ``upper``, ``confidence`` (e.g. 0.95), ``method`` ("Dobson"; or
        "dsr NA for total count < 10").
    """
    c = normalise_confidence(confidence)
    groups = [group_col] if isinstance(group_col, str) else list(group_col)
    missing = [col for col in [*groups, x_col, n_col] if col not in df.columns]
    if isinstance(standard_population, str) and standard_population not in df.columns:
        missing.append(standard_population)
    if missing:
        raise ValueError(f"dsr_by_group: column(s) {missing} not in the data")
    xa = as_float(df[x_col])
    na = as_float(df[n_col])
    check_non_negative(x_col, xa)
    check_positive(n_col, na)
    if missing_as_zero:
        xa = np.where(np.isnan(xa), 0.0, xa)
    if isinstance(standard_population, str):
        w = as_float(df[standard_population])
    else:
        weights = ESP2013 if standard_population is None else as_float(standard_population)
        sizes = df.groupby(groups, sort=False, dropna=False).size()
        if (sizes != weights.size).any():
            bad = sizes[sizes != weights.size].index[:3].tolist()
            raise ValueError(
                f"every group needs {weights.size} rows (one per standard population band); "
                f"groups {bad} do not have that many"
            )
        position = df.groupby(groups, sort=False, dropna=False).cumcount().to_numpy()
        w = weights[position]
    with np.errstate(invalid="ignore", divide="ignore"):
        parts = pd.DataFrame(
            {
                "total_count": xa,
                "total_pop": na,
                "_wt": xa * w / na,
                "_sq": xa * (w / na) ** 2,
                "_w": w,
                "_nan": (np.isnan(xa) | np.isnan(na) | np.isnan(w)).astype(np.float64),
            },
            index=df.index,
        )
    for g in groups:
        parts[g] = df[g].to_numpy()
    summed = parts.groupby(groups, sort=False, dropna=False).sum().reset_index()
    has_nan = summed["_nan"].to_numpy() > 0  # groupby sums skip NaN; make it propagate
    summed.loc[has_nan, ["total_count", "total_pop", "_wt", "_sq", "_w"]] = np.nan
    value, lower, upper = _dobson(
        summed["total_count"].to_numpy(np.float64),
        summed["_wt"].to_numpy(np.float64),
        summed["_sq"].to_numpy(np.float64),
        summed["_w"].to_numpy(np.float64),
        multiplier,
        c,
    )
    out = summed[[*groups, "total_count", "total_pop"]].copy()
    out["value"] = value
    out["lower"] = lower
    out["upper"] = upper
    out["confidence"] = c
    out["method"] = np.where(
        out["total_count"] >= DSR_MIN_COUNT, "Dobson", "dsr NA for total count < 10"
    )
    return out
