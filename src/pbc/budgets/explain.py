"""Explain a practice's indicative budget, step by step, so it can be checked by hand.

:func:`explain` turns one practice's rows of a :class:`~pbc.budgets.indicative.BudgetResult`
into an :class:`Explanation`: for each service line a list of :class:`Step` (a stable
``key``, a ``label`` in NHS terms, the ``value`` as shown, the ``formula`` with the
numbers put in). :meth:`Explanation.to_text` renders it as plain text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from pbc.budgets.money import format_pounds

if TYPE_CHECKING:
    from pbc.budgets.indicative import BudgetResult

INPUT_KEYS: frozenset[str] = frozenset({
    "population", "cost_weight_index", "need_index", "envelope", "top_slices",
    "prior_spend", "uplift", "pace", "floor", "ceiling", "opted_out",
})
"""Keys of the steps that are inputs (the rest are derived from them)."""


SERVICE_LINE_NAMES: dict[str, str] = {
    "elective_inpatient": "Elective inpatients", "day_case": "Day cases",
    "non_elective": "Non-elective (emergency) admissions",
    "outpatient_first": "Outpatient first attendances",
    "outpatient_follow_up": "Outpatient follow-ups",
    "outpatient_procedure": "Outpatient procedures", "ae": "A&E attendances",
    "prescribing": "Prescribing", "social_care": "Social care",
}


@dataclass(frozen=True)
class Step:
    key: str
    label: str
    value: str
    formula: str = ""


@dataclass(frozen=True)
class LineExplanation:
    service_line: str
    steps: tuple[Step, ...]

    def step(self, key: str) -> Step:
        for s in self.steps:
            if s.key == key:
                return s
        raise KeyError(key)


@dataclass(frozen=True)
class Explanation:
    practice_code: str
    financial_year: str
    lines: tuple[LineExplanation, ...]
    total_budget: int
    total_retained: int
    notes: tuple[str, ...] = field(default=())

    def line(self, service_line: str) -> LineExplanation:
        for ln in self.lines:
            if ln.service_line == service_line:
                return ln
        raise KeyError(service_line)

    def to_dict(self) -> dict[str, object]:
        return {
            "practice_code": self.practice_code, "financial_year": self.financial_year,
            "total_budget_pence": self.total_budget, "total_retained_pence": self.total_retained,
            "lines": [{"service_line": ln.service_line,
                       "steps": [s.__dict__ for s in ln.steps]} for ln in self.lines],
            "notes": list(self.notes),
        }

    def to_text(self) -> str:
        out = [f"Indicative budget {self.financial_year} for practice {self.practice_code}", ""]
        width = max((len(s.label) for ln in self.lines for s in ln.steps), default=10)
        for ln in self.lines:
            title = SERVICE_LINE_NAMES.get(ln.service_line, ln.service_line)
            out += [title, "-" * len(title)]
            for s in ln.steps:
                row = f"  {s.label:<{width}}  {s.value:>18}"
                if s.formula:
                    row += f"   {s.formula}"
                out.append(row.rstrip())
            out.append("")
        out.append(f"Total indicative budget: {format_pounds(self.total_budget)}")
        if self.total_retained:
            out.append(f"Held by the commissioner for opted-out lines: "
                       f"{format_pounds(self.total_retained)}")
        out += [f"Note: {n}" for n in self.notes]
        return "\n".join(out) + "\n"


def _num(x: float, places: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{places}f}"


def _line_steps(row: pd.Series, summ: pd.Series) -> list[Step]:
    p = format_pounds
    steps: list[Step] = []
    pop, wp = float(row["population"]), float(row["weighted_population"])
    cwi, need = float(row["cost_weight_index"]), float(row["need_index"])
    method = str(row["method"])
    steps.append(Step("population", "Registered population", _num(pop, 0),
                      "patients on the practice list"))
    if method == "weighted_capitation":
        steps.append(Step("cost_weight_index", "Age-sex cost weight", _num(cwi),
                          "sum over age-sex bands of patients x band weight / population"))
        steps.append(Step("need_index", "Need index", _num(need),
                          "practice need relative to the commissioner average (1 = average)"))
        steps.append(Step("weighted_population", "Weighted population", _num(wp, 1),
                          f"{_num(pop, 0)} x {_num(cwi)} x {_num(need)}"))
    elif method.startswith("nhse_weighted_population"):
        comp = method.split(":", 1)[-1]
        steps.append(Step("need_index", "Need index", _num(need),
                          "(weighted population / population) relative to all practices"))
        steps.append(Step("weighted_population", "Weighted population", _num(wp, 1),
                          f"NHS England weighted population, component {comp}"))
    elif method == "person_based":
        steps.append(Step("need_index", "Need index", _num(need),
                          "predicted cost per head / commissioner average"))
        steps.append(Step("weighted_population", "Weighted population", _num(wp, 1),
                          "sum of patients' predicted costs / average predicted cost per head"))
    else:
        steps.append(Step("need_index", "Need index", _num(need), "as supplied"))
        steps.append(Step("weighted_population", "Weighted population", _num(wp, 1),
                          "as supplied"))
    total_wp = float(summ["total_weighted_population"])
    steps.append(Step("weighted_share", "Share of weighted population",
                      _num(float(row["weighted_share"]), 6),
                      f"{_num(wp, 1)} / {_num(total_wp, 1)}"))
    env, top, avail = int(summ["envelope"]), int(summ["top_slices"]), int(summ["available"])
    steps.append(Step("envelope", "Commissioner envelope", p(env), "for this service line"))
    steps.append(Step("top_slices", "Top-slices", p(top), "reserves etc. held back"))
    steps.append(Step("available", "Available to practices", p(avail),
                      f"{p(env)} - {p(top)}"))
    fair = int(row["fair_share"])
    steps.append(Step("fair_share", "Fair share", p(fair),
                      f"{p(avail)} x {_num(float(row['weighted_share']), 6)} (to the penny)"))
    prior, hist = int(row["prior_spend"]), int(row["historic"])
    up = float(row["uplift_percent"])
    steps.append(Step("prior_spend", "Prior-year priced spend", p(prior), ""))
    steps.append(Step("uplift", "Uplift", f"{up:g}%", ""))
    steps.append(Step("historic", "Historic budget", p(hist), f"{p(prior)} x (1 + {up:g}%)"))
    pace = float(row["pace"])
    steps.append(Step("pace", "Pace of change", f"{pace:g}", "0 = historic, 1 = fair share"))
    steps.append(Step("target", "Target before caps", p(int(row["target"])),
                      f"{p(hist)} + {pace:g} x ({p(fair)} - {p(hist)})"))
    fl, ce = row["floor"], row["ceiling"]
    steps.append(Step("floor", "Floor (least allowed)", "none" if _na(fl) else p(int(fl)),
                      "historic x (1 + floor %)"))
    steps.append(Step("ceiling", "Ceiling (most allowed)", "none" if _na(ce) else p(int(ce)),
                      "historic x (1 + ceiling %)"))
    cap = str(row["cap"]) or "none"
    lam = float(row["scale_factor"])
    steps.append(Step("cap", "Cap applied", cap, ""))
    steps.append(Step("scale_factor", "Scaling to the available total", _num(lam, 6),
                      "one factor for all uncapped practices so budgets add up to "
                      "the amount available"))
    calc = int(row["calculated_budget"])
    how = {"floor": "held at the floor", "ceiling": "held at the ceiling",
           "floor_relaxed": "floor scaled pro rata (caps could not all be met)",
           "ceiling_relaxed": "ceiling scaled pro rata (caps could not all be met)"}
    steps.append(Step("calculated_budget", "Calculated budget", p(calc),
                      how.get(str(row["cap"]),
                              f"target x {_num(lam, 6)}, to the penny")))
    steps.append(Step("top_slice_share", "Your share of the top-slices",
                      p(int(row["top_slice_share"])), "top-slices x your share of budgets"))
    opted = bool(row["opted_out"])
    steps.append(Step("opted_out", "Opted out", "yes" if opted else "no",
                      "the commissioner holds this line's money" if opted else ""))
    steps.append(Step("budget", "Indicative budget", p(int(row["budget"])),
                      "0 (opted out)" if opted else "calculated budget"))
    d = float(row["distance_from_target"])
    steps.append(Step("distance_from_target", "Distance from fair share",
                      "n/a" if math.isnan(d) else f"{d:+.2%}",
                      "(calculated budget - fair share) / fair share"))
    return steps


def _na(v: object) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def explain(result: BudgetResult, practice_code: str) -> Explanation:
    """A step-by-step explanation of one practice's budget in ``result``."""
    rows = result.frame[result.frame["practice_code"] == practice_code]
    if rows.empty:
        raise KeyError(f"practice {practice_code!r} has no budget in this result")
    summary = result.summary.set_index("service_line")
    lines = []
    notes = []
    for _, row in rows.iterrows():
        line = str(row["service_line"])
        summ = summary.loc[line]
        assert isinstance(summ, pd.Series)
        lines.append(LineExplanation(line, tuple(_line_steps(row, summ))))
        if not bool(summary.loc[line, "caps_feasible"]):
            notes.append(f"{line}: the floor/ceiling could not all be met with the money "
                         "available; every budget was scaled pro rata from its cap.")
    retained = int(rows.loc[rows["opted_out"], "calculated_budget"].sum())
    return Explanation(
        practice_code=practice_code,
        financial_year=str(rows["financial_year"].iloc[0]),
        lines=tuple(lines),
        total_budget=int(rows["budget"].sum()),
        total_retained=retained,
        notes=tuple(notes),
    )
