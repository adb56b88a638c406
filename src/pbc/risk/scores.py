"""Published-form scores: LACE, modified LACE and PARR-30 (docs/sources.md §3.2, §3.3).

The point tables and coefficients live in ``pbc/reference/risk/lace.yaml`` and
``parr30.yaml``; this module only applies them. Every function accepts scalars or numpy
arrays (vectorised) and returns the same shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from pbc.risk.reference import RiskReferenceError, bands, load_reference

ArrayLike = Any  # a scalar or a numpy array


def _band_points(values: ArrayLike, table: list[tuple[float, Any]]) -> npt.NDArray[Any]:
    """Points of the highest lower bound reached by each value (values below the first: first)."""
    lowers = np.array([lo for lo, _ in table], dtype=float)
    points = np.array([p for _, p in table])
    idx = np.searchsorted(lowers, np.asarray(values, dtype=float), side="right") - 1
    return points[np.clip(idx, 0, len(points) - 1)]


def _scalar_or_array(result: npt.NDArray[Any], *inputs: ArrayLike) -> Any:
    if all(np.ndim(x) == 0 for x in inputs):
        return result.item()
    return result


def _check_non_negative(name: str, values: ArrayLike) -> None:
    arr = np.asarray(values, dtype=float)
    if np.any(np.isnan(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must be a non-negative number (got {values!r})")


def lace_score(
    los_days: ArrayLike,
    acute_admission: ArrayLike,
    charlson_score: ArrayLike,
    ed_visits_6m: ArrayLike,
    *,
    table: Mapping[str, Any] | None = None,
) -> Any:
    """LACE index 0-19 (van Walraven et al., CMAJ 2010; docs/sources.md §3.3).

    ``los_days``: length of stay in days counting the admission and discharge days;
    ``acute_admission``: true for an emergent admission; ``charlson_score``: Charlson
    comorbidity index; ``ed_visits_6m``: ED visits in the 6 months before admission (not
    counting the one that led to it). Returns an ``int`` for scalars, an int array otherwise.

    >>> lace_score(5, True, 5, 2)
    14
    """
    doc = dict(table) if table is not None else load_reference("lace.yaml", "lace")
    for name, v in (("los_days", los_days), ("charlson_score", charlson_score),
                    ("ed_visits_6m", ed_visits_6m)):
        _check_non_negative(name, v)
    acute = np.asarray(acute_admission, dtype=bool)
    pts = (
        _band_points(los_days, bands(doc, "length_of_stay")).astype(int)
        + np.where(acute, int(doc["acute_admission"]["yes"]), int(doc["acute_admission"]["no"]))
        + _band_points(charlson_score, bands(doc, "charlson")).astype(int)
        + _band_points(ed_visits_6m, bands(doc, "ed_visits_6m")).astype(int)
    )
    return _scalar_or_array(np.asarray(pts, dtype=int), los_days, acute_admission,
                            charlson_score, ed_visits_6m)


def lace_risk_band(score: ArrayLike) -> Any:
    """``low`` (0-4), ``moderate`` (5-9) or ``high`` (>= 10), the cliot bands (§3.3)."""
    doc = load_reference("lace.yaml", "lace")
    out = _band_points(score, bands(doc, "risk_bands")).astype(object)
    return _scalar_or_array(out, score)


def modified_lace_comorbidity(conditions: Iterable[str]) -> int:
    """Modified-LACE C points: cumulative condition weights, capped (BMJ Open 2017, §3.3).

    Condition names are the keys of ``comorbidity_weights`` in ``lace.yaml``
    (e.g. ``congestive_heart_failure``, ``copd``, ``metastatic_cancer``)."""
    doc = load_reference("lace.yaml", "modified_lace")
    weights: dict[str, int] = doc["comorbidity_weights"]
    total = 0
    for c in set(conditions):
        if c not in weights:
            raise RiskReferenceError(
                f"modified LACE: unknown condition {c!r} (known: {', '.join(sorted(weights))})"
            )
        total += int(weights[c])
    return min(total, int(doc["comorbidity_cap"]))


def modified_lace_score(
    los_days: ArrayLike,
    acute_admission: ArrayLike,
    comorbidity_points: ArrayLike,
    ed_visits_6m: ArrayLike,
) -> Any:
    """Modified LACE (BMJ Open 2017, PMC5726103; docs/sources.md §3.3): LOS >= 14 scores 6 and C
    is the capped cumulative condition weight (see :func:`modified_lace_comorbidity`)."""
    doc = load_reference("lace.yaml", "modified_lace")
    for name, v in (("los_days", los_days), ("comorbidity_points", comorbidity_points),
                    ("ed_visits_6m", ed_visits_6m)):
        _check_non_negative(name, v)
    acute = np.asarray(acute_admission, dtype=bool)
    c = np.minimum(np.asarray(comorbidity_points, dtype=int), int(doc["comorbidity_cap"]))
    pts = (
        _band_points(los_days, bands(doc, "length_of_stay")).astype(int)
        + np.where(acute, int(doc["acute_admission"]["yes"]), int(doc["acute_admission"]["no"]))
        + c
        + _band_points(ed_visits_6m, bands(doc, "ed_visits_6m")).astype(int)
    )
    return _scalar_or_array(np.asarray(pts, dtype=int), los_days, acute_admission,
                            comorbidity_points, ed_visits_6m)


def parr30_logit(
    age: ArrayLike,
    imd_score: ArrayLike,
    emergency_admissions_last_year: ArrayLike,
    emergency_last_30_days: ArrayLike,
    current_admission_emergency: ArrayLike,
    conditions: Iterable[str] | Mapping[str, ArrayLike] = (),
    *,
    hospital: str | None = None,
    hospital_coefficient: float | None = None,
    coefficients: Mapping[str, Any] | None = None,
) -> Any:
    """The PARR-30 linear predictor (Billings et al. 2012; docs/sources.md §3.2).

    ``conditions`` is either an iterable of condition names (the keys of ``conditions`` in
    ``parr30.yaml``, applied to every row) or a mapping name -> 0/1 array. The hospital term
    is ``hospital_coefficient`` if given, else looked up by ``hospital`` (NHS org code) in
    ``hospital_coefficients`` (0 when absent)."""
    c = dict(coefficients) if coefficients is not None else load_reference("parr30.yaml")
    known: dict[str, float] = c["conditions"]
    age_a = np.asarray(age, dtype=float)
    logit = (
        float(c["constant"])
        + float(c["age_squared"]) * age_a**2
        + _band_points(imd_score, bands(c, "deprivation")).astype(float)
        + float(c["emergency_admissions_last_year"])
        * np.asarray(emergency_admissions_last_year, dtype=float)
        + float(c["emergency_last_30_days"]) * np.asarray(emergency_last_30_days, dtype=float)
        + float(c["current_admission_emergency"])
        * np.asarray(current_admission_emergency, dtype=float)
    )
    if hospital_coefficient is None:
        hospital_coefficient = float((c.get("hospital_coefficients") or {}).get(hospital, 0.0))
    logit = logit + hospital_coefficient
    items = conditions.items() if isinstance(conditions, Mapping) else (
        (name, 1.0) for name in set(conditions))
    for name, flag in items:
        if name not in known:
            raise RiskReferenceError(
                f"PARR-30: unknown condition {name!r} (known: {', '.join(sorted(known))})"
            )
        logit = logit + float(known[name]) * np.asarray(flag, dtype=float)
    return logit


def parr30_score(
    age: ArrayLike,
    imd_score: ArrayLike,
    emergency_admissions_last_year: ArrayLike,
    emergency_last_30_days: ArrayLike,
    current_admission_emergency: ArrayLike,
    conditions: Iterable[str] | Mapping[str, ArrayLike] = (),
    *,
    hospital: str | None = None,
    hospital_coefficient: float | None = None,
    coefficients: Mapping[str, Any] | None = None,
) -> Any:
    """PARR-30 risk of emergency readmission within 30 days, in percent to 1 dp (§3.2).

    >>> parr30_score(80, 30, 2, True, True, ["congestive_heart_failure",
    ...                                       "chronic_pulmonary_disease"])
    30.6
    """
    logit = parr30_logit(
        age, imd_score, emergency_admissions_last_year, emergency_last_30_days,
        current_admission_emergency, conditions, hospital=hospital,
        hospital_coefficient=hospital_coefficient, coefficients=coefficients,
    )
    risk = np.round(100.0 / (1.0 + np.exp(-np.asarray(logit, dtype=float))), 1)
    return _scalar_or_array(risk, age, imd_score, emergency_admissions_last_year,
                            emergency_last_30_days, current_admission_emergency)
