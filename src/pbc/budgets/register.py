"""Fair-share inputs from the patient register, as engine expressions (Ibis).

:func:`pbc.budgets.fair_shares.band_costs` and
:func:`~pbc.budgets.fair_shares.need_index_from_conditions` take the register as pandas
frames: fine for a commissioner, but the whole of England is 62 million patients and about
as many condition records. These are the same two measures written as Ibis expressions, so
the engine (DuckDB, or Spark) aggregates the register and only the small results (cost by
age-sex band and service line; one need index per practice) reach pandas. Tests hold each
equal to its pandas twin on random registers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ibis
import ibis.expr.datatypes as dt
from ibis import _

from pbc.budgets.fair_shares import DEFAULT_CONDITION_WEIGHTS, DEFAULT_DEPRIVATION_GRADIENT
from pbc.indicators.compute import age_band

#: an IMD decile that is missing counts as the average decile
AVERAGE_DECILE = 5.5
#: a person's need score, exact to 15 places (at most 999: the weights add up to about 2.4)
SCORE = dt.Decimal(18, 15)


def band_costs_expr(patients: Any, patient_costs: Any) -> Any:
    """Cost by age-sex band and service line: ``sex``, ``age_band``, ``service_line``,
    ``patients`` (everyone registered in the band), ``cost_pence`` (int).

    As :func:`pbc.budgets.fair_shares.band_costs`: ``patient_costs`` (``patient_id``,
    ``service_line``, ``cost`` in pounds) joined to the register; every band gets a row for
    every service line that has any cost, zero where its patients cost nothing.
    """
    people = patients.select(
        patient_id=_.patient_id.cast("string"), sex=_.sex.cast("string"),
        age_band=age_band(_.age))
    denom = people.group_by(["sex", "age_band"]).aggregate(patients=_.count())
    costs = patient_costs.select(
        patient_id=_.patient_id.cast("string"), service_line=_.service_line.cast("string"),
        cost_pence=(_.cost * 100).round(0).cast("int64"))
    num = costs.inner_join(people, "patient_id").group_by(
        ["sex", "age_band", "service_line"]).aggregate(cost_pence=_.cost_pence.sum())
    lines = num.select("service_line").distinct()
    grid = denom.cross_join(lines)
    return grid.left_join(num, ["sex", "age_band", "service_line"]).select(
        "sex", "age_band", "patients", "service_line",
        cost_pence=_.cost_pence.fill_null(0).cast("int64"))


def need_index_expr(
    patients: Any,
    conditions: Any | None = None,
    *,
    condition_weights: Mapping[str, float] | None = None,
    deprivation_gradient: float = DEFAULT_DEPRIVATION_GRADIENT,
) -> Any:
    """Need index per practice from conditions and deprivation: ``practice_code``,
    ``need_index``.

    The model of :func:`pbc.budgets.fair_shares.need_index_from_conditions`: a person's
    score is ``(1 + sum of the weights of their distinct recorded conditions) x (1 +
    gradient x (10 - IMD decile) / 9)`` (a missing decile counts as 5.5); a practice's
    index is its mean score over everyone's mean score.
    """
    weights = dict(DEFAULT_CONDITION_WEIGHTS if condition_weights is None else condition_weights)
    people = patients.select(
        patient_id=_.patient_id.cast("string"), practice_code=_.practice_code.cast("string"),
        decile=(_.imd_decile.cast("float64").fill_null(AVERAGE_DECILE)
                if "imd_decile" in patients.columns else ibis.literal(AVERAGE_DECILE)))
    if conditions is not None and weights:
        cond = conditions.select(patient_id=_.patient_id.cast("string"),
                                 condition=_.condition.cast("string")).distinct()
        weight = ibis.cases(*((cond.condition == k, ibis.literal(float(v)))
                              for k, v in weights.items()), else_=ibis.literal(0.0))
        extra = cond.mutate(w=weight).group_by("patient_id").aggregate(extra=_.w.sum())
        people = people.left_join(extra, "patient_id").select(
            "practice_code", "decile", extra=_.extra.fill_null(0.0))
    else:
        people = people.mutate(extra=ibis.literal(0.0))
    # each score held to 15 decimal places and summed exactly: a float sum would depend on
    # the order the engine's threads add in, and the budgets must not change between runs
    scored = people.mutate(
        score=((1.0 + _.extra) * (1.0 + deprivation_gradient * (10.0 - _.decile) / 9.0))
        .cast(SCORE))

    def mean(t: Any) -> Any:
        return t.score.sum().cast("float64") / t.count()

    overall = scored.aggregate(overall=mean)
    by_practice = scored.group_by("practice_code").aggregate(mean=mean)
    return by_practice.cross_join(overall).select(
        "practice_code", need_index=_.mean / _.overall).order_by("practice_code")
