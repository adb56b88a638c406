"""Scoring, case-finding lists and segment counts: pure functions over frames and Ibis tables.

Access control and suppression are *not* here: they are the service layer's job
(:mod:`pbc.services.risk`), which is the only way patient-level rows leave the warehouse.
"""

from __future__ import annotations

from typing import Any

import ibis
import pandas as pd
from ibis import _

from pbc.risk.features import FEATURE_COLUMNS, ID_COLUMNS
from pbc.risk.model import RiskModel
from pbc.risk.segments import SEGMENT_NAMES, assign_segments

LEVELS = ("practice", "group", "neighbourhood", "local_authority", "commissioner")
SCORE_COLUMNS = ("risk", "rank", "segment", "model_version")


def score_frame(model: RiskModel, features: pd.DataFrame) -> pd.DataFrame:
    """Features plus ``risk`` (probability), ``rank`` (1 = highest in the whole population),
    ``segment`` (NHS segments, docs/sources.md §3.1) and ``model_version``; rows are sorted by
    patient id first so ties in risk rank deterministically."""
    f = features.sort_values("patient_id", kind="stable").reset_index(drop=True)
    risk = model.predict(f)
    seg, rank = assign_segments(risk)
    f = f.assign(risk=risk, rank=rank, segment=seg.astype(str), model_version=model.version)
    return f.sort_values("rank", kind="stable").reset_index(drop=True)


def case_finding_frame(
    scores: pd.DataFrame, model: RiskModel, top_n: int | None = None, top_factors: int = 3
) -> pd.DataFrame:
    """Rows of one practice's scores ranked by risk with the plain-words top factors."""
    s = scores.sort_values(["risk", "patient_id"], ascending=[False, True], kind="stable")
    if top_n is not None:
        s = s.head(top_n)
    s = s.reset_index(drop=True)
    factors = model.explain(s, top=top_factors) if len(s) else []
    out = pd.DataFrame({
        "practice_rank": range(1, len(s) + 1),
        "patient_id": s["patient_id"].astype(str),
        "age": s["age"], "sex": s["female"].map({1: "F", 0: "M"}),
        "risk_percent": (100 * s["risk"]).round(1),
        "segment": s["segment"],
        "population_rank": s["rank"],
        "top_factors": factors,
        "emergency_admissions_12m": s["emergency_12m"],
        "long_term_conditions": s["ltc_count"],
        "reference_date": s["reference_date"],
        "model_version": s["model_version"],
    })
    return out


LEVEL_KEYS = {"practice": "practice_code", "group": "group_code",
              "neighbourhood": "neighbourhood_code", "local_authority": "local_authority_code",
              "commissioner": "commissioner_code"}


def segment_count_expr(scored: Any, level: str) -> Any:
    """Counts of patients by ``level`` code and segment (one column per segment), from the
    output of :func:`scores_with_organisations` (already filtered to what the caller may see).

    Levels: practice, group (the practice's group), neighbourhood (patient's residence),
    local_authority (of the patient's neighbourhood, else of the practice), commissioner."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}: use one of {', '.join(LEVELS)}")
    t = scored.mutate(code=scored[LEVEL_KEYS[level]])
    aggs = {name: ibis.ifelse(_.segment == name, 1, 0).sum() for name in SEGMENT_NAMES}
    return t.group_by("code").aggregate(**aggs).order_by("code")


def scores_with_organisations(scores: Any, practices: Any | None, neighbourhoods: Any | None
                              ) -> Any:
    """Scores with each patient's group, commissioner and local authority codes."""
    t = scores.select("patient_id", "practice_code", "neighbourhood_code", "segment")
    null = ibis.literal(None, "string")
    if practices is not None:
        p = practices.select(
            p_code=practices.practice_code, group_code=practices.group_code,
            commissioner_code=practices.commissioner_code,
            practice_la=(practices.local_authority_code if "local_authority_code"
                         in practices.columns else null),
        )
        t = t.left_join(p, t.practice_code == p.p_code).drop("p_code")
    else:
        t = t.mutate(group_code=null, commissioner_code=null, practice_la=null)
    if neighbourhoods is not None:
        n = neighbourhoods.select(n_code=neighbourhoods.neighbourhood_code,
                                  residence_la=neighbourhoods.local_authority_code)
        t = t.left_join(n, t.neighbourhood_code == n.n_code).drop("n_code")
    else:
        t = t.mutate(residence_la=null)
    return t.mutate(local_authority_code=t.residence_la.fill_null(t.practice_la))


FEATURE_AND_ID_COLUMNS = (*ID_COLUMNS, *FEATURE_COLUMNS)
