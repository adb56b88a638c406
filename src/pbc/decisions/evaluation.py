"""Evaluation of an implemented business case: difference in differences against similar
practices (pure), and the table that keeps each evaluation.

**Outcome.** For each practice (or the proposing group, its practices pooled), the case's
in-scope activity and its tariff value per 1,000 registered patients per month, in two
periods: *before* (the case's baseline year, the same months of the year as *after*, so
that seasons cancel) and *after* (the months loaded since the service started).

**Comparison group.** Practices of the same commissioner that are not in the case (nor
proposers of another approved or implemented case touching the same service lines), the
``k`` nearest to the case's practice in a standardised distance over three features: the
need index (:func:`pbc.budgets.register.need_index_expr`), the log of the list size (left
out for a group, whose size no practice matches) and the in-scope spend rate before. Each
feature is divided by its standard deviation among the candidates (a feature that does not
vary is left out), and the distance is Euclidean (:func:`choose_comparators`).

**Estimator.** With ``D_i = rate_i(after) - rate_i(before)``, the difference in
differences is ``DiD = D_case - mean(D_comparators)`` (the 2x2 table of Card & Krueger,
1994, :func:`two_by_two`). The case is one practice, so its own change is not averaged:
its variance is estimated by the comparators' variance of ``D`` (the treated unit is
assumed to vary as a comparable practice does; Conley & Taber, 2011), and

    SE(DiD) = s_D * sqrt(1 + 1/J)        (s_D: standard deviation of D over J comparators)

which is ``sqrt(SE_case^2 + SE_comparators^2)``, the standard error of a difference of two
independent changes (:func:`se_of_difference`). Practices differ in size, and a small
practice's rate varies more than a large one's, so pbc scales this unit by unit (Ferman and
Pinto, 2019): each unit's change has a compound Poisson variance ``v_i`` (its rows arrive
independently, priced as observed: a period's variance is the sum of its squared row
values; :meth:`Unit.change_variance`; the case's own from its before period, as its after
is changed by the case), the comparators' standardised spread
``s_z^2 = sum (D_i - mean D)^2 / v_i / (J-1)`` measures the dispersion beyond Poisson, and

    SE(DiD)^2 = s_z^2 * (v_case + sum v_i / J^2)

(with equal ``v`` this is the formula above). The 95% interval is ``DiD +/- t(J-1,
0.975) * SE``. It is analytic, so it needs no seed and is the same every time. A bootstrap
over the comparators alone would give ``s_D / sqrt(J)`` and ignore the case practice's own
variation: ``tests/test_evaluation.py`` shows it under-covers a planted effect badly.

References: D. Card and A. B. Krueger, Minimum wages and employment: a case study of the
fast-food industry in New Jersey and Pennsylvania, American Economic Review 84 (1994)
772-793, Table 3; T. G. Conley and C. R. Taber, Inference with "difference in differences"
with a small number of policy changes, Review of Economics and Statistics 93 (2011) 113-125;
B. Ferman and C. Pinto, Inference in differences-in-differences with few treated groups and
heteroskedasticity, Review of Economics and Statistics 101 (2019) 452-467.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from scipy import stats
from sqlalchemy import DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pbc.decisions.models import Base, utcnow

#: comparison practices chosen by default
COMPARATORS = 10
#: fewer comparators than this and pbc refuses to evaluate (the interval needs their spread)
MIN_COMPARATORS = 5
#: the interval's level
LEVEL = 0.95


class EvaluationError(ValueError):
    """An evaluation that cannot be made honestly (the message says why)."""


# --------------------------------------------------------------------------- the 2x2 table
def two_by_two(treated_before: float, treated_after: float, control_before: float,
               control_after: float) -> float:
    """The difference in differences of a 2x2 table of group means:
    ``(treated_after - treated_before) - (control_after - control_before)``."""
    return (treated_after - treated_before) - (control_after - control_before)


def se_of_difference(*standard_errors: float) -> float:
    """The standard error of a sum or difference of independent estimates."""
    return math.sqrt(sum(se * se for se in standard_errors))


# --------------------------------------------------------------------------- units
@dataclass(frozen=True)
class Unit:
    """A practice (or a group's practices pooled) in the case's scope, before and after:
    money in pence, ``rows`` the activity (spells, attendances, items)."""

    code: str
    list_size: int
    need_index: float
    before_spend: int
    before_rows: int
    after_spend: int
    after_rows: int
    before_squares: int = 0  # sum over rows of (tariff value in pence) squared
    after_squares: int = 0

    def rate(self, measure: str, period: str, months: int) -> float:
        """``measure`` (spend or rows) per 1,000 patients per month in ``period``."""
        if self.list_size <= 0 or months <= 0:
            raise EvaluationError(f"{self.code}: no registered patients or no months")
        value = getattr(self, f"{period}_{measure}")
        return float(value) / months / self.list_size * 1000.0

    def change_variance(self, measure: str, before_months: int, after_months: int, *,
                        before_only: bool = False) -> float:
        """The compound Poisson variance of the rate's change (rows arrive independently,
        priced as observed: a period's variance is the sum of squared row values). With
        ``before_only`` the after period is taken to vary as the before period did (for
        the case itself, whose after is changed by the case: the variance wanted is that
        of what it would have been)."""
        scale = (1000.0 / self.list_size) ** 2
        before = self.before_rows if measure == "rows" else self.before_squares
        after: float = self.after_rows if measure == "rows" else self.after_squares
        if before_only:
            after = before * after_months / before_months
        return scale * (before / before_months ** 2 + after / after_months ** 2)


def choose_comparators(treated: Unit, candidates: Sequence[Unit], k: int, before_months: int,
                       *, match_list_size: bool = True) -> list[tuple[Unit, float]]:
    """The ``k`` candidates nearest to ``treated`` (see the module docstring), each with its
    distance, nearest first (ties by code)."""
    if not candidates:
        return []

    def features(u: Unit) -> list[float]:
        out = [u.need_index, u.rate("spend", "before", before_months)]
        if match_list_size:
            out.append(math.log(u.list_size))
        return out

    pool = [features(c) for c in candidates]
    scales = []
    for j in range(len(pool[0])):
        column = [row[j] for row in pool]
        mean = sum(column) / len(column)
        sd = math.sqrt(sum((x - mean) ** 2 for x in column) / max(len(column) - 1, 1))
        scales.append(sd)
    target = features(treated)
    scored = []
    for c, row in zip(candidates, pool, strict=True):
        d = math.sqrt(sum(((a - b) / s) ** 2 for a, b, s in zip(row, target, scales,
                                                                 strict=True) if s > 0))
        scored.append((d, c.code, c))
    scored.sort(key=lambda x: (x[0], x[1]))
    return [(c, d) for d, _, c in scored[:k]]


@dataclass(frozen=True)
class DiD:
    """A difference in differences with its interval (rate units)."""

    treated_before: float
    treated_after: float
    comparators_before: float  # mean over the comparators
    comparators_after: float
    estimate: float
    se: float
    lower: float
    upper: float
    level: float
    comparators: int

    @property
    def counterfactual_after(self) -> float:
        """What the case's rate after would have been had it moved as its comparators."""
        return self.treated_before + (self.comparators_after - self.comparators_before)


def difference_in_differences(treated: tuple[float, float],
                              comparators: Sequence[tuple[float, float]], *,
                              level: float = LEVEL,
                              variances: tuple[float, Sequence[float]] | None = None) -> DiD:
    """DiD of one treated unit against ``comparators`` ((before, after) each), with the
    interval ``DiD +/- t(J-1) * s_D * sqrt(1 + 1/J)`` (module docstring); with
    ``variances`` (the treated unit's and each comparator's model variance of its change)
    the spread is scaled unit by unit (Ferman and Pinto, 2019)."""
    j = len(comparators)
    if j < 2:
        raise EvaluationError(f"a difference in differences needs at least 2 comparators "
                              f"to estimate its spread, not {j}")
    if not 0 < level < 1:
        raise EvaluationError("level must be between 0 and 1")
    changes = [after - before for before, after in comparators]
    mean_change = sum(changes) / j
    sd = math.sqrt(sum((c - mean_change) ** 2 for c in changes) / (j - 1))
    c_before = sum(b for b, _ in comparators) / j
    c_after = sum(a for _, a in comparators) / j
    estimate = two_by_two(treated[0], treated[1], c_before, c_after)
    se = se_of_difference(sd, sd / math.sqrt(j))
    if variances is not None:
        v_treated, v_comparators = variances
        if len(v_comparators) != j or min(v_comparators) <= 0 or v_treated <= 0:
            raise EvaluationError("every unit needs a positive variance of its change")
        # standardised residuals: their spread is the extra-Poisson dispersion, applied to
        # each unit's own variance (a small practice varies more than a large one)
        z2 = sum((c - mean_change) ** 2 / v for c, v in zip(changes, v_comparators,
                                                            strict=True)) / (j - 1)
        se = math.sqrt(z2 * (v_treated + sum(v_comparators) / j ** 2))
    t = float(stats.t.ppf(0.5 + level / 2, j - 1))
    return DiD(treated[0], treated[1], c_before, c_after, estimate, se, estimate - t * se,
               estimate + t * se, level, j)


@dataclass(frozen=True)
class Measure:
    """One measure's DiD (per 1,000 patients per month) and what it means for the case:
    ``effect`` over the after period for the case's own list (pence or rows)."""

    measure: str  # spend | rows
    did: DiD
    list_size: int
    after_months: int

    def scale(self, rate: float) -> float:
        return rate * self.list_size / 1000.0 * self.after_months

    def as_dict(self) -> dict[str, object]:
        d = self.did
        cf = d.counterfactual_after
        return {
            "measure": self.measure, "per_1000_per_month": asdict(d),
            "counterfactual_after": cf,
            "effect": self.scale(d.estimate), "effect_lower": self.scale(d.lower),
            "effect_upper": self.scale(d.upper),
            "effect_share": d.estimate / cf if cf > 0 else None,
        }


def evaluate(treated: Unit, candidates: Sequence[Unit], *, before_months: int,
             after_months: int, k: int = COMPARATORS, match_list_size: bool = True,
             level: float = LEVEL) -> tuple[list[tuple[Unit, float]], list[Measure]]:
    """The comparators and the DiD of spend and of activity. Refuses (EvaluationError) with
    fewer than :data:`MIN_COMPARATORS` candidates."""
    if after_months <= 0:
        raise EvaluationError("no months after the service started: nothing to evaluate yet")
    if k < MIN_COMPARATORS:
        raise EvaluationError(f"at least {MIN_COMPARATORS} comparators are needed, not {k}")
    if not (treated.before_rows and treated.after_rows):
        raise EvaluationError(f"{treated.code} has no activity in the case's scope before or "
                              "after: there is no rate to compare")
    candidates = [c for c in candidates if c.before_rows and c.after_rows]
    if len(candidates) < MIN_COMPARATORS:
        raise EvaluationError(
            f"only {len(candidates)} comparable practice(s) (same commissioner, not in this "
            f"or another case in the same service lines, with registered patients and "
            f"activity in the scope before and after): at least {MIN_COMPARATORS} are needed "
            "for a comparison group")
    chosen = choose_comparators(treated, candidates, k, before_months,
                                match_list_size=match_list_size)
    measures = []
    for measure in ("spend", "rows"):
        def rates(u: Unit, m: str = measure) -> tuple[float, float]:
            return u.rate(m, "before", before_months), u.rate(m, "after", after_months)

        def var(u: Unit, m: str = measure, before_only: bool = False) -> float:
            return u.change_variance(m, before_months, after_months, before_only=before_only)

        did = difference_in_differences(
            rates(treated), [rates(c) for c, _ in chosen], level=level,
            variances=(var(treated, before_only=True), [var(c) for c, _ in chosen]))
        measures.append(Measure(measure, did, treated.list_size, after_months))
    return chosen, measures


# --------------------------------------------------------------------------- the table
class CaseEvaluation(Base):
    """One evaluation of a case (a case is evaluated again as more months are loaded)."""

    __tablename__ = "case_evaluations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("business_cases.id"), index=True)
    started: Mapped[str] = mapped_column(String(7))  # YYYY-MM the service started
    result: Mapped[str] = mapped_column(Text)  # JSON: the evaluation as shown
    evaluated_by: Mapped[str] = mapped_column(String(100))
    evaluated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
