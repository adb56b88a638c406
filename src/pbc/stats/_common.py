"""Shared helpers: confidence levels, z values, array/scalar handling."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import norm

FloatArray = NDArray[np.float64]
#: What the public functions return in each field: a float when every input was a scalar,
#: otherwise a float64 array of the broadcast shape.
FloatOrArray = float | FloatArray

#: z for the two-sided 95% and 99.8% limits used throughout PHE/UKHSA methods.
Z95 = float(norm.ppf(0.975))
Z998 = float(norm.ppf(0.999))


def normalise_confidence(confidence: float) -> float:
    """A confidence level as a fraction: 0.95 and 95 both mean 95%; allowed 0.9 to 1.

    Follows PHEindicatormethods: a value of 90 or more is a percentage; anything outside
    0.9-1 (or 90-100) is an error.
    """
    c = float(confidence)
    if not np.isfinite(c):
        raise ValueError(f"confidence must be a number, got {confidence!r}")
    if c >= 90:
        c = c / 100
    if c < 0.9 or c > 1:
        raise ValueError(
            f"confidence level must be between 90 and 100 or between 0.9 and 1, got {confidence!r}"
        )
    return c


def z_value(confidence: float) -> float:
    """Two-sided normal quantile z = Φ⁻¹(c + (1 − c)/2) for a normalised confidence c."""
    c = normalise_confidence(confidence)
    return float(norm.ppf(c + (1 - c) / 2))


def as_float(a: ArrayLike) -> FloatArray:
    """The input as a float64 array (None and pandas missing values become NaN)."""
    if hasattr(a, "to_numpy"):
        return np.asarray(a.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    return np.asarray(a, dtype=np.float64)


def is_scalar(*values: Any) -> bool:
    """True when every value is a Python or numpy scalar (0-d)."""
    return all(np.ndim(v) == 0 for v in values)


def finish(arr: FloatArray, scalar: bool) -> FloatOrArray:
    """A 0-d result as a float when the inputs were scalars, else the array."""
    if scalar:
        return float(np.asarray(arr).reshape(()))
    return np.asarray(arr, dtype=np.float64)


def check_non_negative(name: str, arr: FloatArray) -> None:
    """Raise a readable error when any (non-NaN) value is negative."""
    if np.any(arr < 0):
        bad = np.flatnonzero(np.asarray(arr < 0).ravel())[:5].tolist()
        raise ValueError(f"{name} must be greater than or equal to zero (negative at {bad})")


def check_positive(name: str, arr: FloatArray) -> None:
    """Raise a readable error when any (non-NaN) value is zero or negative."""
    if np.any(arr <= 0):
        bad = np.flatnonzero(np.asarray(arr <= 0).ravel())[:5].tolist()
        raise ValueError(f"{name} must be greater than zero (not at positions {bad})")
