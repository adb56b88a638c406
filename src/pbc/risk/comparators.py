"""LACE-form and PARR-30-form scores on the case-finding features, for a same-data comparison.

LACE and PARR-30 (:mod:`pbc.risk.scores`, docs/sources.md §3.2, §3.3) score a patient at
discharge from an index admission, for readmission within 30 days; case finding ranks a
whole registered population for an emergency admission in the next 12 months. Their *form*
(published points and coefficients) can still be applied to the features every patient has,
so the validation report shows how well each ranks the same patients as the local model
(AUC is about ranking, so a score built for another outcome can be compared on it). What
each form can and cannot use is stated here and in the report:

``lace_form``
    Modified LACE (:func:`pbc.risk.scores.modified_lace_score`): **A** = an emergency
    admission in the last 12 months (the acute-admission points); **C** = the capped
    cumulative weight of the patient's recorded conditions that modified LACE lists
    (heart failure, COPD, cancer, chronic kidney disease, dementia, diabetes); **E** = A&E
    attendances in the last 12 months, banded as LACE bands ED visits in 6 months (the
    features count 12 months). **L** (length of stay of an index admission) is left out: most
    of a population has no index stay, and a constant does not change the ranking.

``parr30_form``
    PARR-30 (:func:`pbc.risk.scores.parr30_logit`): age², emergency admissions in the last
    year, an emergency admission in the last 30 days, and the conditions PARR-30 lists that
    the register records (heart failure, COPD, chronic kidney disease, dementia, cancer as
    "other malignant cancer"). No current admission (0 for everyone) and no hospital term;
    the deprivation term is left out, because PARR-30 bands the IMD *score* and the
    warehouse holds the decile (its coefficients are 0 to 0.10).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from pbc.risk.reference import load_reference
from pbc.risk.scores import modified_lace_score, parr30_logit

#: register condition column -> modified LACE comorbidity (lace.yaml)
LACE_CONDITIONS: dict[str, str] = {
    "ltc_hf": "congestive_heart_failure", "ltc_copd": "copd", "ltc_cancer": "cancer",
    "ltc_ckd": "renal_disease", "ltc_dem": "dementia", "ltc_dm": "diabetes_without_complications",
}
#: register condition column -> PARR-30 condition (parr30.yaml)
PARR30_CONDITIONS: dict[str, str] = {
    "ltc_hf": "congestive_heart_failure", "ltc_copd": "chronic_pulmonary_disease",
    "ltc_ckd": "renal_disease", "ltc_dem": "dementia", "ltc_cancer": "other_malignant_cancer",
}

LACE_FORM = "LACE form (modified LACE: A, C, E; no index stay)"
PARR30_FORM = "PARR-30 form (no deprivation, current-admission or hospital terms)"


def _flag(frame: pd.DataFrame, col: str) -> npt.NDArray[np.float64]:
    if col not in frame.columns:
        return np.zeros(len(frame))
    return frame[col].fillna(0).to_numpy(dtype=float)


def lace_form(frame: pd.DataFrame) -> npt.NDArray[np.float64]:
    """The LACE-form score of each row of a features frame (see the module docstring)."""
    doc = load_reference("lace.yaml", "modified_lace")
    weights: dict[str, int] = doc["comorbidity_weights"]
    comorbidity = np.zeros(len(frame))
    for col, name in LACE_CONDITIONS.items():
        comorbidity += _flag(frame, col) * int(weights[name])
    score = modified_lace_score(
        np.zeros(len(frame)), _flag(frame, "emergency_12m") > 0,
        np.minimum(comorbidity, int(doc["comorbidity_cap"])).astype(int),
        _flag(frame, "ae_12m"))
    return np.asarray(score, dtype=float)


def parr30_form(frame: pd.DataFrame) -> npt.NDArray[np.float64]:
    """The PARR-30-form linear predictor of each row of a features frame (see the module
    docstring); a logit, so it ranks as the risk does."""
    coefficients = dict(load_reference("parr30.yaml"))
    coefficients["deprivation"] = {"bands": [[0, 0.0]]}  # left out: no IMD score
    conditions = {name: _flag(frame, col) for col, name in PARR30_CONDITIONS.items()}
    logit = parr30_logit(
        frame["age"].fillna(0).to_numpy(dtype=float), np.zeros(len(frame)),
        _flag(frame, "emergency_12m"), _flag(frame, "emergency_30d") > 0,
        np.zeros(len(frame)), conditions, hospital_coefficient=0.0,
        coefficients=coefficients)
    return np.asarray(logit, dtype=float)


def comparator_scores(frame: pd.DataFrame) -> dict[str, npt.NDArray[np.float64]]:
    """Both forms, by the names the validation report prints."""
    return {LACE_FORM: lace_form(frame), PARR30_FORM: parr30_form(frame)}
