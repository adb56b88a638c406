"""Risk stratification for case finding (docs/sources.md §3).

- :mod:`pbc.risk.features`: per-patient features and the outcome, as Ibis expressions;
- :mod:`pbc.risk.model`: the commissioner's own logistic model (JSON, model card, SQL form);
- :mod:`pbc.risk.scores`: published-form scores kept as data (PARR-30, LACE, modified LACE);
- :mod:`pbc.risk.validation`: AUC (DeLong), calibration, segment PPV/sensitivity;
- :mod:`pbc.risk.segments`: NHS segments (top 0.5%, 0.5-5%, 5-20%, rest);
- :mod:`pbc.risk.casefinding`: scoring, practice lists, segment counts (no access control:
  that is :mod:`pbc.services.risk`).
"""

from pbc.risk.features import FEATURE_COLUMNS, build_features
from pbc.risk.model import RiskModel, fit, load_spec
from pbc.risk.scores import (
    lace_risk_band,
    lace_score,
    modified_lace_comorbidity,
    modified_lace_score,
    parr30_logit,
    parr30_score,
)
from pbc.risk.segments import assign_segments, nhs_segments
from pbc.risk.validation import ValidationReport, auc_ci, calibration, validate

__all__ = [
    "FEATURE_COLUMNS",
    "RiskModel",
    "ValidationReport",
    "assign_segments",
    "auc_ci",
    "build_features",
    "calibration",
    "fit",
    "lace_risk_band",
    "lace_score",
    "load_spec",
    "modified_lace_comorbidity",
    "modified_lace_score",
    "nhs_segments",
    "parr30_logit",
    "parr30_score",
    "validate",
]
