"""Result types shared by the confidence-interval functions."""

from __future__ import annotations

from typing import NamedTuple

from pbc.stats._common import FloatOrArray


class Interval(NamedTuple):
    """A confidence interval: ``lower`` and ``upper`` (floats for scalar input, else arrays)."""

    lower: FloatOrArray
    upper: FloatOrArray
