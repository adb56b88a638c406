"""Validation of a risk model: discrimination, calibration, and case-finding yield.

- AUC (c-statistic) with a 95% CI by DeLong's method (DeLong, DeLong & Clarke-Pearson,
  Biometrics 1988;44:837-845), computed with the fast midrank algorithm of Sun & Xu
  (IEEE Signal Processing Letters 2014;21:1389-1393); two correlated AUCs are compared with
  DeLong's test.
- Calibration by logistic recalibration (Cox, Biometrika 1958;45:562-565; Steyerberg,
  Clinical Prediction Models, 2nd ed. 2019, ch. 15): the slope of ``logit(y) ~ a + b
  logit(p)``, and the calibration-in-the-large intercept ``a`` with ``logit(p)`` as an
  offset (slope fixed at 1). Perfect calibration: intercept 0, slope 1. Calibration-plot
  data: mean predicted risk against the observed rate in deciles of predicted risk.
- Yield in the NHS segments (docs/sources.md §3.1): per segment and cumulatively, the positive
  predictive value (share of flagged patients with the outcome) and sensitivity (share of
  all patients with the outcome who are flagged), compared with the naive rule "two or more
  emergency admissions in the prior 12 months" and with the model flagging the same number.
- The honest baseline for discrimination is the count of prior emergency admissions used as a
  continuous score (not the 0/1 rule, whose AUC is near 0.5 because most patients with the
  outcome had no admission the year before); the model is compared with it by DeLong's test.
- Performance by subgroup (age band, sex, deprivation quintile; :func:`subgroup_performance`):
  patients, events, AUC, mean predicted and observed rate in each group, so the report can
  say for whom the model works less well.
- A plain-English summary first (:meth:`ValidationReport.summary`) and the model card
  (intended use, limits, training data period) inside the report.
- A leakage check (:func:`leakage_check`): no model of the recorded data can rank better than
  the expected outcome itself, so on synthetic data, where the generator's latent risk in
  the outcome year is known, a model whose AUC exceeds that upper bound has seen the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from pbc.risk.segments import assign_segments, nhs_segments

FloatArray = npt.NDArray[np.float64]
Z95 = float(stats.norm.ppf(0.975))


# ------------------------------------------------------------------ discrimination
def _midrank(x: FloatArray) -> FloatArray:
    return np.asarray(stats.rankdata(x, method="average"), dtype=float)


def _delong_components(
    y: npt.ArrayLike, scores: list[npt.ArrayLike]
) -> tuple[FloatArray, FloatArray]:
    """AUCs and their DeLong covariance matrix for several scores on the same outcome."""
    yb = np.asarray(y).astype(bool)
    m, n = int(yb.sum()), int((~yb).sum())
    if m == 0 or n == 0:
        raise ValueError("AUC needs at least one patient with and one without the outcome")
    k = len(scores)
    aucs = np.empty(k)
    v01 = np.empty((k, m))
    v10 = np.empty((k, n))
    for i, s in enumerate(scores):
        sa = np.asarray(s, dtype=float)
        pos, neg = sa[yb], sa[~yb]
        tx, ty, tz = _midrank(pos), _midrank(neg), _midrank(np.concatenate([pos, neg]))
        aucs[i] = (tz[:m].sum() - m * (m + 1) / 2) / (m * n)
        v01[i] = (tz[:m] - tx) / n
        v10[i] = 1.0 - (tz[m:] - ty) / m
    s01 = np.atleast_2d(np.cov(v01)) if m > 1 else np.zeros((k, k))
    s10 = np.atleast_2d(np.cov(v10)) if n > 1 else np.zeros((k, k))
    return aucs, s01 / m + s10 / n


@dataclass(frozen=True)
class AUC:
    auc: float
    lower: float
    upper: float
    se: float
    method: str = "DeLong 1988 (Sun & Xu 2014 algorithm), normal 95% CI"


def auc_ci(y: npt.ArrayLike, score: npt.ArrayLike, level: float = 0.95) -> AUC:
    """AUC with a DeLong confidence interval (clipped to [0, 1])."""
    aucs, cov = _delong_components(y, [score])
    se = float(np.sqrt(max(cov[0, 0], 0.0)))
    z = float(stats.norm.ppf(0.5 + level / 2))
    a = float(aucs[0])
    return AUC(a, max(0.0, a - z * se), min(1.0, a + z * se), se)


def auc(y: npt.ArrayLike, score: npt.ArrayLike) -> float:
    """AUC (c-statistic): the probability a random case outranks a random non-case."""
    return float(_delong_components(y, [score])[0][0])


@dataclass(frozen=True)
class AUCComparison:
    auc_a: float
    auc_b: float
    difference: float
    se: float
    p_value: float
    method: str = "DeLong 1988 test for correlated AUCs"


def compare_auc(y: npt.ArrayLike, a: npt.ArrayLike, b: npt.ArrayLike) -> AUCComparison:
    """DeLong's test of AUC(a) = AUC(b) for two scores on the same patients."""
    aucs, cov = _delong_components(y, [a, b])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    diff = float(aucs[0] - aucs[1])
    se = float(np.sqrt(max(var, 0.0)))
    p = float(2 * stats.norm.sf(abs(diff) / se)) if se > 0 else (1.0 if diff == 0 else 0.0)
    return AUCComparison(float(aucs[0]), float(aucs[1]), diff, se, p)


# ------------------------------------------------------------------ calibration
def _logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, 1e-12, 1 - 1e-12)
    return np.asarray(np.log(q / (1 - q)), dtype=float)


def _fit_logistic(y: FloatArray, x: FloatArray | None, offset: FloatArray) -> FloatArray:
    """Newton-Raphson maximum likelihood for logit(P(y)) = offset + b0 [+ b1 x]."""
    cols = [np.ones_like(offset)] + ([x] if x is not None else [])
    X = np.column_stack(cols)
    beta = np.zeros(X.shape[1])
    for _ in range(100):
        eta = offset + X @ beta
        mu = 1 / (1 + np.exp(-eta))
        w = mu * (1 - mu)
        grad = X.T @ (y - mu)
        hess = X.T @ (X * w[:, None])
        step = np.linalg.solve(hess + 1e-10 * np.eye(X.shape[1]), grad)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


@dataclass(frozen=True)
class Calibration:
    intercept: float  # calibration-in-the-large (logit(p) as offset); ideal 0
    slope: float  # logistic recalibration slope; ideal 1
    mean_predicted: float
    observed_rate: float
    method: str = "logistic recalibration (Cox 1958; Steyerberg 2019)"


def calibration(y: npt.ArrayLike, p: npt.ArrayLike) -> Calibration:
    """Calibration intercept and slope of predicted probabilities ``p`` against outcomes ``y``."""
    ya, pa = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    lp = _logit(pa)
    intercept = float(_fit_logistic(ya, None, lp)[0])
    slope = float(_fit_logistic(ya, lp, np.zeros_like(lp))[1])
    return Calibration(intercept, slope, float(pa.mean()), float(ya.mean()))


@dataclass(frozen=True)
class CalibrationBin:
    group: int
    n: int
    mean_predicted: float
    observed_rate: float


def calibration_bins(
    y: npt.ArrayLike, p: npt.ArrayLike, groups: int = 10
) -> list[CalibrationBin]:
    """Mean predicted vs observed in ``groups`` equal groups of predicted risk (1 = lowest)."""
    ya, pa = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    order = np.argsort(pa, kind="stable")
    out = []
    for g, idx in enumerate(np.array_split(order, groups), start=1):
        if idx.size:
            out.append(CalibrationBin(g, int(idx.size), float(pa[idx].mean()),
                                      float(ya[idx].mean())))
    return out


# ------------------------------------------------------------------ subgroups
@dataclass(frozen=True)
class GroupPerformance:
    """How the model does in one subgroup (``dimension`` e.g. ``age band``)."""

    dimension: str
    group: str
    n: int
    events: int
    auc: float | None  # None: too few patients or events to say
    mean_predicted: float
    observed_rate: float


#: a subgroup's AUC is given only with at least this many patients with and without the
#: outcome (below it the DeLong interval is too wide to say anything)
MIN_GROUP_EVENTS = 10
#: a subgroup whose AUC is this much below the whole population's is "less well"
LESS_WELL = 0.05


def subgroup_performance(y: npt.ArrayLike, p: npt.ArrayLike,
                         subgroups: Mapping[str, npt.ArrayLike]) -> list[GroupPerformance]:
    """Performance in each group of each dimension (``subgroups``: dimension -> one label
    per patient; groups in sorted label order, blank or missing labels as ``unknown``)."""
    ya = np.asarray(y).astype(bool)
    pa = np.asarray(p, dtype=float)
    out = []
    for dimension, labels in subgroups.items():
        lab = np.asarray([("unknown" if v is None or v != v or v == "" else str(v))
                          for v in np.asarray(labels, dtype=object)], dtype=object)
        for group in sorted(set(lab), key=_group_key):
            here = lab == group
            yy, pp = ya[here], pa[here]
            events = int(yy.sum())
            enough = min(events, int(here.sum()) - events) >= MIN_GROUP_EVENTS
            out.append(GroupPerformance(
                dimension, str(group), int(here.sum()), events,
                auc(yy, pp) if enough else None, float(pp.mean()), float(yy.mean())))
    return out


def _group_key(label: str) -> tuple[int, float, str]:
    """Groups in a natural order: numbers by value (``'5'``, ``'18-44'``, ``'85+'``), then
    words; ``unknown`` last."""
    if label == "unknown":
        return (2, 0.0, label)
    head = label.split("-")[0].rstrip("+")
    try:
        return (0, float(head), label)
    except ValueError:
        return (1, 0.0, label)


# ------------------------------------------------------------------ case-finding yield
@dataclass(frozen=True)
class Yield:
    name: str
    flagged: int
    true_positives: int
    ppv: float | None  # positive predictive value
    sensitivity: float | None


def _yield(name: str, y: npt.NDArray[np.bool_], flag: npt.NDArray[np.bool_]) -> Yield:
    n, tp, events = int(flag.sum()), int((flag & y).sum()), int(y.sum())
    return Yield(name, n, tp, tp / n if n else None, tp / events if events else None)


@dataclass
class ValidationReport:
    """Everything :func:`validate` measures; ``to_dict`` for JSON, ``to_markdown`` for people."""

    n: int
    events: int
    auc: AUC
    calibration: Calibration
    calibration_bins: list[CalibrationBin]
    segments: list[Yield]  # each segment on its own
    cumulative: list[Yield]  # the segment and every higher one
    naive_rule: Yield
    model_at_naive_count: Yield
    naive_auc: float | None  # prior emergency admissions (12 months) as a continuous score
    comparators: dict[str, AUC] = field(default_factory=dict)
    compared_with_naive: AUCComparison | None = None
    title: str = "Risk model validation"
    notes: list[str] = field(default_factory=list)
    subgroups: list[GroupPerformance] = field(default_factory=list)
    card: dict[str, Any] = field(default_factory=dict)
    predicts: str = "the chance of an emergency admission in the next 12 months"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> list[str]:
        """What the model predicts, how well, and for whom it works less well, in plain
        English (three short paragraphs, first in the report)."""
        a, c = self.auc, self.calibration
        out = [f"What it predicts: {self.predicts}, for each registered patient."]
        how = (f"How well: given one patient who was admitted and one who was not, the model "
               f"gives the admitted one the higher risk {a.auc:.0%} of the time (AUC "
               f"{a.auc:.2f}; 0.5 is chance, 1 is perfect)")
        if self.naive_auc is not None:
            how += (f"; counting last year's emergency admissions alone does so "
                    f"{self.naive_auc:.0%} of the time")
        top = self.segments[0] if self.segments else None
        if top is not None and top.flagged and top.ppv is not None:
            label = {seg.name: seg.label.lower() for seg in nhs_segments()}.get(top.name,
                                                                                top.name)
            how += (f". Of the {top.flagged:,} patients it puts at the highest risk "
                    f"({label} risk), {top.ppv:.0%} were admitted")
        how += (f". On average it predicted {c.mean_predicted:.1%} would be admitted, and "
                f"{c.observed_rate:.1%} were.")
        out.append(how)
        # within a group the model cannot use what separates the groups (age, say), so a
        # group's AUC is compared with the best group of the same kind, not the whole
        best: dict[str, GroupPerformance] = {}
        for g in self.subgroups:
            if g.auc is not None and (g.dimension not in best
                                      or g.auc > (best[g.dimension].auc or 0.0)):
                best[g.dimension] = g
        worse = [(g, best[g.dimension]) for g in self.subgroups
                 if g.auc is not None and g.auc < (best[g.dimension].auc or 0.0) - LESS_WELL]
        unknown = [g for g in self.subgroups if g.auc is None]
        if worse:
            who = "; ".join(f"{_group_words(g)} (AUC {g.auc:.2f}, against {b.auc:.2f} "
                            f"{_group_words(b)})" for g, b in worse)
            text = (f"For whom it works less well (the AUC within a group, {LESS_WELL:.2f} "
                    f"or more below the best group of its kind): {who}.")
        elif self.subgroups:
            dims = sorted({g.dimension for g in self.subgroups})
            text = ("For whom it works less well: no group stands out; within every "
                    f"{' and every '.join(dims)} with enough patients the AUC is within "
                    f"{LESS_WELL:.2f} of the best.")
        else:
            text = "For whom it works less well: not measured (no subgroups given)."
        if unknown:
            text += (" Too few admissions to say for "
                     + ", ".join(_group_words(g) for g in unknown) + ".")
        out.append(text)
        return out

    def to_markdown(self) -> str:
        def pct(v: float | None) -> str:
            return "-" if v is None else f"{100 * v:.1f}%"

        a = self.auc
        c = self.calibration
        lines = [f"# {self.title}", "", "## In short", ""]
        for para in self.summary():
            lines += [para, ""]
        lines += [
            f"Patients: {self.n:,}; with the outcome: {self.events:,} "
            f"({pct(self.events / self.n if self.n else None)}).", "",
            "## Discrimination", "",
            f"AUC {a.auc:.3f} (95% CI {a.lower:.3f} to {a.upper:.3f}; {a.method}).",
        ]
        if self.naive_auc is not None:
            lines.append(f"Prior emergency admissions in 12 months, as a score: AUC "
                         f"{self.naive_auc:.3f}.")
        if self.compared_with_naive is not None:
            d = self.compared_with_naive
            lines.append(f"Model minus prior emergency admissions: {d.difference:+.3f} "
                         f"(p = {d.p_value:.3g}, {d.method}).")
        for name, comp in self.comparators.items():
            lines.append(f"{name}: AUC {comp.auc:.3f} ({comp.lower:.3f} to {comp.upper:.3f}).")
        lines += [
            "", "## Calibration", "",
            f"Calibration intercept {c.intercept:+.3f} (ideal 0), slope {c.slope:.3f} "
            f"(ideal 1); mean predicted {pct(c.mean_predicted)}, observed "
            f"{pct(c.observed_rate)} ({c.method}).", "",
            "| decile of predicted risk | patients | mean predicted | observed |",
            "|---:|---:|---:|---:|",
        ]
        lines += [f"| {b.group} | {b.n:,} | {pct(b.mean_predicted)} | {pct(b.observed_rate)} |"
                  for b in self.calibration_bins]
        labels = {seg.name: seg.label for seg in nhs_segments()}
        tops = ", ".join(f"{seg.label.lower()} to the top {seg.top:.1%}".replace(".0%", "%")
                         for seg in nhs_segments())
        lines += [
            "", "## Case finding in the NHS segments", "",
            "| segment | flagged | admitted | PPV | sensitivity | PPV, this or higher "
            "| sensitivity, this or higher |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for s, cu in zip(self.segments, self.cumulative, strict=True):
            lines.append(f"| {labels.get(s.name, s.name)} | {s.flagged:,} | "
                         f"{s.true_positives:,} | {pct(s.ppv)} | {pct(s.sensitivity)} | "
                         f"{pct(cu.ppv)} | {pct(cu.sensitivity)} |")
        nv, mk = self.naive_rule, self.model_at_naive_count
        lines += [
            "", f"Segments by rank of risk: {tops}. PPV: the share of flagged patients who "
            "were admitted; sensitivity: the share of admitted patients who were flagged.", "",
            f"The naive rule ({nv.name}) flags {nv.flagged:,} patients, {nv.true_positives:,} "
            f"of them admitted (PPV {pct(nv.ppv)}, sensitivity {pct(nv.sensitivity)}); the "
            f"model's top {mk.flagged:,} include {mk.true_positives:,} admitted (PPV "
            f"{pct(mk.ppv)}, sensitivity {pct(mk.sensitivity)}).",
        ]
        if self.subgroups:
            lines += ["", "## Performance by age band, sex and deprivation", "",
                      "| group | patients | admitted | AUC | mean predicted | observed |",
                      "|---|---:|---:|---:|---:|---:|"]
            for g in self.subgroups:
                lines.append(f"| {_group_words(g)} | {g.n:,} | {g.events:,} | "
                             f"{'-' if g.auc is None else f'{g.auc:.3f}'} | "
                             f"{pct(g.mean_predicted)} | {pct(g.observed_rate)} |")
            lines.append(f"\nAUC is given where a group has at least {MIN_GROUP_EVENTS} "
                         "patients admitted and not admitted.")
        if self.card:
            lines += ["", "## Model card", "", *_card_lines(self.card)]
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def _group_words(g: GroupPerformance) -> str:
    if g.dimension == "age band":
        return f"aged {g.group}"
    if g.dimension == "deprivation quintile":
        return ("deprivation quintile unknown" if g.group == "unknown" else
                f"deprivation quintile {g.group}" + (" (most deprived)" if g.group == "1"
                                                     else " (least deprived)"
                                                     if g.group == "5" else ""))
    return g.group if g.dimension == "sex" else f"{g.dimension} {g.group}"


def _card_lines(card: dict[str, Any]) -> list[str]:
    """The model card in words: intended use, training data and period, validation, limits."""
    out = []
    if card.get("intended_use"):
        out.append(f"- **Intended use:** {card['intended_use']}.")
    t = card.get("training") or {}
    d = card.get("data") or {}
    if t:
        period = (f"features from {t['features_from']} to {t.get('reference_date')}, "
                  f"outcome in the 12 months after" if t.get("features_from") else
                  f"reference date {t.get('reference_date')}")
        out.append(f"- **Training data:** {int(t.get('n', 0)):,} patients "
                   f"({int(t.get('events', 0)):,} admitted); {period}"
                   + (f"; {t['population']}" if t.get("population") else "") + ".")
    if d:
        out.append(f"- **Data period:** activity from {d.get('first_activity')} to "
                   f"{d.get('last_activity')}.")
    v = card.get("validation") or {}
    if v.get("method"):
        out.append(f"- **Validation:** {str(v['method']).replace('_', '-')}"
                   + (f", at {v['reference_date']}" if v.get("reference_date") else "") + ".")
    for limit in card.get("limitations") or []:
        out.append(f"- **Limit:** {limit}.")
    return out


def validate(
    y: npt.ArrayLike,
    p: npt.ArrayLike,
    prior_emergency_12m: npt.ArrayLike,
    *,
    naive_threshold: int = 2,
    comparators: Mapping[str, npt.ArrayLike] | None = None,
    title: str = "Risk model validation",
    notes: list[str] | None = None,
    subgroups: Mapping[str, npt.ArrayLike] | None = None,
    card: dict[str, Any] | None = None,
) -> ValidationReport:
    """Validate predicted probabilities ``p`` against outcomes ``y`` (0/1).

    ``prior_emergency_12m`` is the baseline: as a continuous score for the AUC comparison
    (``naive_auc``, ``compared_with_naive``), and as the naive rule (flag when >=
    ``naive_threshold``) for the case-finding yield. ``comparators`` are other scores (e.g.
    the PARR-30 form) whose AUC is reported too. ``subgroups`` (dimension -> a label per
    patient) gives the performance in each group; ``card`` is the model card shown in the
    report. Segments are assigned by rank of ``p`` (ties in input order)."""
    ya = np.asarray(y).astype(bool)
    pa = np.asarray(p, dtype=float)
    seg, rank = assign_segments(pa)
    segments, cumulative = [], []
    flagged_so_far = np.zeros(ya.size, dtype=bool)
    for s in nhs_segments():
        here = seg == s.name
        flagged_so_far |= here
        segments.append(_yield(s.name, ya, here))
        cumulative.append(_yield(f"{s.name} or higher", ya, flagged_so_far.copy()))
    prior = np.asarray(prior_emergency_12m, dtype=float)
    naive = prior >= naive_threshold
    naive_y = _yield(f"{naive_threshold} or more emergency admissions in 12 months", ya, naive)
    k = int(naive.sum())
    model_k = _yield(f"model, top {k:,} (as many as the naive rule)", ya, rank <= k)
    has_both = 0 < ya.sum() < ya.size
    naive_auc = auc(ya, prior) if has_both else None
    comp = compare_auc(ya, pa, prior) if has_both else None
    return ValidationReport(
        n=int(ya.size), events=int(ya.sum()), auc=auc_ci(ya, pa),
        calibration=calibration(ya, pa), calibration_bins=calibration_bins(ya, pa),
        segments=segments, cumulative=cumulative, naive_rule=naive_y,
        model_at_naive_count=model_k, naive_auc=naive_auc,
        comparators={k2: auc_ci(ya, v) for k2, v in (comparators or {}).items()},
        compared_with_naive=comp, title=title, notes=list(notes or []),
        subgroups=subgroup_performance(ya, pa, subgroups or {}), card=dict(card or {}),
    )


@dataclass(frozen=True)
class LeakageCheck:
    model_auc: float
    upper_bound_auc: float
    margin: float
    leaked: bool
    message: str


def leakage_check(y: npt.ArrayLike, model_score: npt.ArrayLike, upper_bound: npt.ArrayLike,
                  *, margin: float = 0.005) -> LeakageCheck:
    """Compare a model's AUC with an upper bound that is not the model's own form: the
    expected outcome itself (e.g. the synthetic generator's latent risk in the outcome
    year). No model of data known at the reference date can rank better than that in
    expectation; an AUC above the bound by more than ``margin`` means the model has seen
    the outcome (leakage)."""
    m, b = auc(y, model_score), auc(y, upper_bound)
    leaked = m > b + margin
    verdict = "leakage: the model ranks better than the expected outcome" if leaked else \
        "no sign of leakage"
    return LeakageCheck(m, b, margin, leaked,
                        f"model AUC {m:.3f}, upper bound {b:.3f}: {verdict}")
