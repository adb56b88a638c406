"""Published-form scores: LACE reproduces the worked examples of the cliot documentation;
PARR-30 has no published worked example in the sources found, so it is checked against
arithmetic done by hand on the coefficients as listed in the Nuffield Trust guide
(Billings et al., BMJ Open 2012;2:e001667), written out term by term below."""

from __future__ import annotations

import numpy as np
import pytest

from pbc.risk import (
    lace_risk_band,
    lace_score,
    modified_lace_comorbidity,
    modified_lace_score,
    parr30_logit,
    parr30_score,
)
from pbc.risk.reference import RiskReferenceError


def test_lace_published_examples() -> None:
    # cliot docs (docs/sources.md §3.3): 4 + 3 + 5 + 2 = 14 and 2 + 0 + 0 + 0 = 2
    assert lace_score(5, True, 5, 2) == 14
    assert lace_score(2, False, 0, 0) == 2
    assert isinstance(lace_score(5, True, 5, 2), int)


@pytest.mark.parametrize(("los", "points"), [
    (0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (6, 4), (7, 5), (13, 5), (14, 7), (60, 7),
])
def test_lace_length_of_stay_points(los: int, points: int) -> None:
    assert lace_score(los, False, 0, 0) == points


@pytest.mark.parametrize(("cci", "points"), [(0, 0), (1, 1), (2, 2), (3, 3), (4, 5), (9, 5)])
def test_lace_charlson_points(cci: int, points: int) -> None:
    assert lace_score(0, False, cci, 0) == points


@pytest.mark.parametrize(("ed", "points"), [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (10, 4)])
def test_lace_ed_points(ed: int, points: int) -> None:
    assert lace_score(0, False, 0, ed) == points


def test_lace_acute_and_range() -> None:
    assert lace_score(0, True, 0, 0) == 3
    assert lace_score(30, True, 10, 10) == 19  # the maximum


def test_lace_vectorised() -> None:
    out = lace_score(np.array([5, 2, 14]), np.array([True, False, False]),
                     np.array([5, 0, 3]), np.array([2, 0, 4]))
    assert out.tolist() == [14, 2, 14]
    assert lace_risk_band(np.array([0, 4, 5, 9, 10, 19])).tolist() == [
        "low", "low", "moderate", "moderate", "high", "high"]


def test_lace_rejects_negative() -> None:
    with pytest.raises(ValueError, match="los_days"):
        lace_score(-1, False, 0, 0)


def test_modified_lace() -> None:
    assert modified_lace_score(14, False, 0, 0) == 6  # LOS >= 14 scores 6, not 7
    assert modified_lace_score(5, True, 2, 2) == 4 + 3 + 2 + 2
    assert modified_lace_comorbidity(["congestive_heart_failure", "copd"]) == 4
    assert modified_lace_comorbidity(["metastatic_cancer", "dementia"]) == 6  # capped
    with pytest.raises(RiskReferenceError, match="unknown condition"):
        modified_lace_comorbidity(["gout"])


def test_parr30_hand_worked_example() -> None:
    # not a published example: hand arithmetic on the guide's coefficients. Age 80, IMD
    # score 30, 2 emergency admissions last year, one in the last 30 days, current admission
    # an emergency, heart failure and chronic pulmonary disease, hospital term 0:
    #   -2.91821 + 0.000060581 x 80^2 (0.3877184) + 0.0661 (IMD 25-40) + 0.1215 x 2
    #   + 0.5258 + 0.5565 + 0.0950 + 0.2243 = -0.8197916
    #   risk = 100 / (1 + e^0.8197916) = 100 / 3.27002 = 30.58 -> 30.6%
    conds = ["congestive_heart_failure", "chronic_pulmonary_disease"]
    assert parr30_logit(80, 30, 2, True, True, conds) == pytest.approx(-0.8197916, abs=1e-7)
    assert parr30_score(80, 30, 2, True, True, conds) == 30.6


def test_parr30_deprivation_bands_and_hospital() -> None:
    base = parr30_logit(0, 0, 0, 0, 0)
    assert base == pytest.approx(-2.91821)
    for imd, coef in [(9.99, 0.0), (10, 0.0209), (15, 0.0239), (25, 0.0661), (40, 0.1017),
                      (50, 0.0982)]:
        assert parr30_logit(0, imd, 0, 0, 0) - base == pytest.approx(coef)
    assert parr30_logit(0, 0, 0, 0, 0, hospital_coefficient=0.3) - base == pytest.approx(0.3)


def test_parr30_vectorised_and_configurable() -> None:
    out = parr30_score(np.array([80, 80]), np.array([30, 30]), np.array([2, 2]),
                       np.array([1, 1]), np.array([1, 1]),
                       {"congestive_heart_failure": np.array([1, 1]),
                        "chronic_pulmonary_disease": np.array([1, 0])})
    assert out[0] == 30.6 and out[1] < 30.6
    from pbc.risk.reference import load_reference

    coefs = dict(load_reference("parr30.yaml"))
    coefs["constant"] = 0.0
    assert parr30_score(0, 0, 0, 0, 0, coefficients=coefs) == 50.0
