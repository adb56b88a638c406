"""Explain a practice's indicative budget, step by step, so it can be checked by hand.

:func:`explain` turns one practice's rows of a :class:`~pbc.budgets.indicative.BudgetResult`
into an :class:`Explanation`: for each service line a list of :class:`Step` (a stable
``key``, a ``label`` in NHS terms, the ``value`` as shown, the ``formula`` with the
numbers put in). :meth:`Explanation.to_text` renders it as plain text: first a summary in
plain English (the budget, its change on last year's spend, its distance from the fair share
and why), then how each service line's fair share was measured, then the detail. No code
word of pbc's reaches the text: service lines, methods and caps are named in words.

Every figure is printed with the digits needed for a practice manager to recompute the
next line from it to the penny: weighted populations and indices to 15 significant
figures, the share of the weighted population to two more decimal places than the
available amount has digits in pence, the scale factor to 15 significant figures. An
amount divided by largest remainder (fair shares, calculated budgets, shares of the
top-slices) is within one penny of the product of the printed figures.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import pandas as pd

from pbc.budgets.money import format_pounds

if TYPE_CHECKING:
    from pbc.budgets.indicative import BudgetResult

Row = Mapping[str, Any]
"""One row of a budget frame or summary as a plain mapping (``frame.to_dict("records")``)."""

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


TEXT_WIDTH = 80
"""The explanation's text fits a terminal of this many columns."""

METHOD_SHORT: dict[str, str] = {
    "weighted_capitation": "weighted capitation", "person_based": "person-based model",
    "astro_pu": "ASTRO-PU", "supplied": "as supplied",
}
"""A fair-share method in a word or two (the value column)."""

METHOD_NAMES: dict[str, str] = {
    "weighted_capitation": "weighted capitation (registered patients x age-sex cost weights "
                           "from the commissioner's own priced activity x a need index)",
    "person_based": "a person-based model (each patient's predicted cost from age, sex and "
                    "conditions)",
    "astro_pu": "ASTRO-PU weighted patients (registered patients x the published age-sex "
                "prescribing weights, NHS Business Services Authority)",
    "supplied": "weighted populations supplied with the policy",
}
"""How each fair-share method is named to a reader."""

COMPONENT_NAMES: dict[str, str] = {
    "general_and_acute": "general and acute", "community": "community services",
    "mental_health": "mental health", "maternity": "maternity", "prescribing": "prescribing",
    "health_inequalities": "health inequalities", "overall_core": "overall core",
    "primary_medical_care_need": "primary medical care need",
    "primary_medical_care": "primary medical care",
}

CAP_WORDS: dict[str, str] = {
    "": "none", "none": "none", "floor": "floor", "ceiling": "ceiling",
    "new_practice": "fair share (new)", "floor_relaxed": "floor, scaled",
    "ceiling_relaxed": "ceiling, scaled",
}
"""The cap a budget was held at, in words (the value column of the explanation)."""


def method_name(method: str) -> str:
    """A fair-share method in words: ``'astro_pu'`` -> ``'ASTRO-PU weighted patients
    (...)'``; ``'nhse_weighted_population:prescribing'`` -> ``"NHS England's weighted
    population for prescribing ..."``."""
    if method.startswith("nhse_weighted_population"):
        comp = method.split(":", 1)[-1]
        return (f"NHS England's published weighted population for "
                f"{COMPONENT_NAMES.get(comp, comp)} (its allocation formula)")
    return METHOD_NAMES.get(method, method)


def line_name(service_line: str, *, in_sentence: bool = False) -> str:
    """A service line in words; ``in_sentence``: as inside a sentence (``'day cases'``,
    but ``'A&E attendances'`` keeps its capitals)."""
    name = SERVICE_LINE_NAMES.get(service_line, service_line)
    if in_sentence and len(name) > 1 and name[1].islower():
        return name[0].lower() + name[1:]
    return name


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
    unattributed_held: int = 0
    summary: tuple[str, ...] = field(default=())
    methods: tuple[str, ...] = field(default=())

    def line(self, service_line: str) -> LineExplanation:
        for ln in self.lines:
            if ln.service_line == service_line:
                return ln
        raise KeyError(service_line)

    def to_dict(self) -> dict[str, object]:
        return {
            "practice_code": self.practice_code, "financial_year": self.financial_year,
            "total_budget_pence": self.total_budget, "total_retained_pence": self.total_retained,
            "unattributed_held_pence": self.unattributed_held,
            "lines": [{"service_line": ln.service_line,
                       "steps": [s.__dict__ for s in ln.steps]} for ln in self.lines],
            "notes": list(self.notes), "summary": list(self.summary),
            "methods": list(self.methods),
        }

    def to_text(self) -> str:
        """The explanation as text that fits an 80-column terminal: the summary, the
        methods, then per service line each step's label and figure on one line and how it
        was computed on the lines below it."""
        out = [f"Indicative budget {self.financial_year} for practice {self.practice_code}", ""]
        if self.summary:
            for sentence in self.summary:
                out += wrap(sentence, TEXT_WIDTH)
            out.append("")
        if self.methods:
            out.append("How fair shares were measured:")
            for m in self.methods:
                out += wrap(m, TEXT_WIDTH, initial_indent="  ", subsequent_indent="    ")
            out.append("")
        width = max((len(s.label) for ln in self.lines for s in ln.steps), default=10)
        for ln in self.lines:
            title = line_name(ln.service_line)
            out += [title, "-" * len(title)]
            for s in ln.steps:
                out.append(f"  {s.label:<{width}}  {s.value:>18}".rstrip())
                if s.formula:
                    out += wrap(s.formula, TEXT_WIDTH, initial_indent=" " * 6,
                                subsequent_indent=" " * 6, break_on_hyphens=False)
            out.append("")
        out.append(f"Total indicative budget: {format_pounds(self.total_budget)}")
        if self.total_retained:
            out.append(f"Held by the commissioner for opted-out lines: "
                       f"{format_pounds(self.total_retained)}")
        if self.unattributed_held:
            out.append("Held by the commissioner for activity with no known practice "
                       f"(these service lines): {format_pounds(self.unattributed_held)}")
        out += [f"Note: {n}" for n in self.notes]
        return "\n".join(out) + "\n"


_WRAP_WHITESPACE = frozenset("\t\n\x0b\x0c\r")


def wrap(text: str, width: int = TEXT_WIDTH, *, initial_indent: str = "",
         subsequent_indent: str = "", break_on_hyphens: bool = True) -> list[str]:
    """:func:`textwrap.wrap` with the same arguments and the same lines, without building a
    wrapper for the text that fits on one line as it is (most of an explanation's lines:
    textwrap was a fifth of the national budgets stage). Such a text (not empty, not
    ending in white space, no tab or line break) is one line: the indent and the text."""
    if (text and len(initial_indent) + len(text) <= width and not text[-1].isspace()
            and _WRAP_WHITESPACE.isdisjoint(text)):
        return [initial_indent + text]
    return textwrap.wrap(text, width, initial_indent=initial_indent,
                         subsequent_indent=subsequent_indent,
                         break_on_hyphens=break_on_hyphens)


def _num(x: float, places: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{places}f}"


def _exact(x: float, significant: int = 15) -> str:
    """``x`` to ``significant`` figures (what a float holds), trailing zeros dropped:
    ``12000.0`` -> ``'12,000.0'``, ``1.0734567891234567`` -> ``'1.07345678912346'``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if x == 0:
        return "0.0"
    places = min(20, max(1, significant - (math.floor(math.log10(abs(x))) + 1)))
    text = f"{x:,.{places}f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _share_places(available: int) -> int:
    """Decimal places for a share of ``available`` pence: the share's printing error times
    the amount stays below a twentieth of a penny."""
    return max(6, len(str(abs(int(available)))) + 1)


def _pct(x: object) -> str:
    """``-3`` -> ``'- 3%'``, ``4`` -> ``'+ 4%'`` (to follow ``1 ``)."""
    v = float(str(x))
    return f"{'-' if v < 0 else '+'} {abs(v):g}%"


def _line_steps(row: Row, summ: Row, floor_pct: object = None,
                ceiling_pct: object = None) -> list[Step]:
    p = format_pounds
    steps: list[Step] = []
    pop, wp = float(row["population"]), float(row["weighted_population"])
    cwi, need = float(row["cost_weight_index"]), float(row["need_index"])
    method = str(row["method"])
    short = ("NHS England" if method.startswith("nhse_weighted_population")
             else METHOD_SHORT.get(method, method))
    steps.append(Step("method", "Fair share measured by", short, method_name(method)))
    steps.append(Step("population", "Registered population", _num(pop, 0),
                      "patients on the practice list"))
    if method == "astro_pu":
        steps.append(Step("cost_weight_index", "ASTRO-PUs per patient", _exact(cwi),
                          "sum over age-sex bands of patients x ASTRO-PU weight / population"))
        steps.append(Step("need_index", "Need index", _exact(need),
                          "none: ASTRO-PUs weight age and sex only"))
        steps.append(Step("weighted_population", "Prescribing units (ASTRO-PU)", _exact(wp),
                          f"{_num(pop, 0)} x {_exact(cwi)}"))
    elif method == "weighted_capitation":
        steps.append(Step("cost_weight_index", "Age-sex cost weight", _exact(cwi),
                          "sum over age-sex bands of patients x band weight / population"))
        steps.append(Step("need_index", "Need index", _exact(need),
                          "practice need relative to the commissioner average (1 = average)"))
        steps.append(Step("weighted_population", "Weighted population", _exact(wp),
                          f"{_num(pop, 0)} x {_exact(cwi)} x {_exact(need)}"))
    elif method.startswith("nhse_weighted_population"):
        comp = method.split(":", 1)[-1]
        steps.append(Step("need_index", "Need index", _exact(need),
                          "(weighted population / population) relative to all practices"))
        steps.append(Step("weighted_population", "Weighted population", _exact(wp),
                          "NHS England's weighted population for "
                          f"{COMPONENT_NAMES.get(comp, comp)}"))
    elif method == "person_based":
        steps.append(Step("need_index", "Need index", _exact(need),
                          "predicted cost per head / commissioner average"))
        steps.append(Step("weighted_population", "Weighted population", _exact(wp),
                          "sum of patients' predicted costs / average predicted cost per head"))
    else:
        steps.append(Step("need_index", "Need index", _exact(need), "as supplied"))
        steps.append(Step("weighted_population", "Weighted population", _exact(wp),
                          "as supplied"))
    total_wp = float(summ["total_weighted_population"])
    env, top, avail = int(summ["envelope"]), int(summ["top_slices"]), int(summ["available"])
    held = int(summ.get("unattributed_held", 0))
    share = _num(float(row["weighted_share"]), _share_places(avail))
    steps.append(Step("weighted_share", "Share of weighted population", share,
                      f"{_exact(wp)} / {_exact(total_wp)}"))
    up = float(row["uplift_percent"])
    prior_all = int(summ["prior_spend"])
    from_prior = bool(summ.get("envelope_from_prior_year", False))
    steps.append(Step("envelope", "Commissioner envelope", p(env),
                      f"{p(prior_all)} x (1 + {up:g}%), prior-year spend of all practices and "
                      "unattributed activity" if from_prior else "set by the budget policy"))
    steps.append(Step("top_slices", "Top-slices", p(top), "reserves etc. held back"))
    steps.append(Step("unattributed", "Held for unattributed activity", p(held),
                      f"{p(int(summ['prior_spend_unattributed']))} x (1 + {up:g}%), prior-year "
                      "spend with no known practice, held by the commissioner"))
    steps.append(Step("available", "Available to practices", p(avail),
                      f"{p(env)} - {p(top)} - {p(held)}"))
    fair = int(row["fair_share"])
    steps.append(Step("fair_share", "Fair share", p(fair),
                      f"{p(avail)} x {share} (to the penny)"))
    prior, hist = int(row["prior_spend"]), int(row["historic"])
    steps.append(Step("prior_spend", "Prior-year priced spend", p(prior),
                      "tariff value before the emergency marginal rate"))
    steps.append(Step("uplift", "Uplift", f"{up:g}%", ""))
    steps.append(Step("historic", "Historic budget", p(hist), f"{p(prior)} x (1 + {up:g}%)"))
    pace = float(row["pace"])
    new = str(row["cap"]) == "new_practice"
    steps.append(Step("pace", "Pace of change", f"{pace:g}", "0 = historic, 1 = fair share"))
    steps.append(Step("target", "Target before caps", p(int(row["target"])),
                      "no prior-year spend: starts at its fair share" if new else
                      f"{p(hist)} + {pace:g} x ({p(fair)} - {p(hist)})"))
    fl, ce = row["floor"], row["ceiling"]
    steps.append(Step("floor", "Floor (least allowed)", "none" if _na(fl) else p(int(fl)),
                      "no year-on-year cap without prior-year spend" if new else
                      f"{p(hist)} x (1 {_pct(floor_pct)}), half up to the penny"
                      if floor_pct is not None else "no floor in the policy"))
    steps.append(Step("ceiling", "Ceiling (most allowed)", "none" if _na(ce) else p(int(ce)),
                      "no year-on-year cap without prior-year spend" if new else
                      f"{p(hist)} x (1 {_pct(ceiling_pct)}), half up to the penny"
                      if ceiling_pct is not None else "no ceiling in the policy"))
    cap = str(row["cap"]) or "none"
    cap_why = {"floor": "the budget would have fallen below the floor",
               "ceiling": "the budget would have risen above the ceiling",
               "new_practice": "a new practice starts at its fair share",
               "floor_relaxed": "the floors could not all be met within the money "
                                "available, so every floor was scaled down pro rata",
               "ceiling_relaxed": "the ceilings could not all be met with the money "
                                  "available, so every ceiling was scaled up pro rata"}
    lam = float(row["scale_factor"])
    steps.append(Step("cap", "Cap applied", CAP_WORDS.get(cap, cap), cap_why.get(cap, "")))
    steps.append(Step("scale_factor", "Scaling to the available total", _exact(lam),
                      "one factor for all uncapped practices so budgets add up to "
                      "the amount available"))
    calc = int(row["calculated_budget"])
    how = {"floor": "held at the floor", "ceiling": "held at the ceiling",
           "new_practice": "held at its fair share (no prior-year spend)",
           "floor_relaxed": "floor scaled down pro rata (the floors could not all be met)",
           "ceiling_relaxed": "ceiling scaled up pro rata (the ceilings could not all be "
                              "met)"}
    steps.append(Step("calculated_budget", "Calculated budget", p(calc),
                      how.get(str(row["cap"]),
                              f"{p(int(row['target']))} x {_exact(lam)}, to the penny")))
    steps.append(Step("top_slice_share", "Your share of the top-slices",
                      p(int(row["top_slice_share"])),
                      f"{p(top)} x {p(calc)} / {p(avail)}, to the penny"))
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


def opt_out_notes(result: BudgetResult, practice_code: str, rows: pd.DataFrame) -> list[str]:
    """A sentence per opted-out line of a practice: which opt-out (the policy's entry, or
    the decision recorded in pbc, with its reason) and the money moved to the commissioner,
    so no line leaves a budget silently."""
    return _opt_out_notes(result, practice_code, _records(rows))


def _opt_out_notes(result: BudgetResult, practice_code: str, rows: list[Row]) -> list[str]:
    out = []
    for row in rows:
        if not bool(row["opted_out"]):
            continue
        line = str(row["service_line"])
        sources = result.opted_by.get((practice_code, line), ())
        said = "; ".join(
            result.policy.opt_out[i].reason or
            f"opt_out[{i}] of the budget policy ({result.policy.opt_out[i].code})"
            for i in sources) or "an opt-out of the budget policy"
        out.append(f"Opted out: {line_name(line, in_sentence=True)}: {said}. "
                   f"{format_pounds(int(row['calculated_budget']))} moved from this "
                   "practice's budget to the commissioner's line for opted-out services.")
    return out


def _na(v: object) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _records(frame: pd.DataFrame) -> list[Row]:
    """A frame's rows as plain mappings (Python values), in order."""
    return cast("list[Row]", frame.to_dict("records"))


def _summaries(result: BudgetResult) -> dict[str, Row]:
    """``result.summary`` as one plain mapping per service line."""
    return {str(r["service_line"]): r for r in _records(result.summary)}


def explain(result: BudgetResult, practice_code: str, *, rows: pd.DataFrame | None = None
            ) -> Explanation:
    """A step-by-step explanation of one practice's budget in ``result`` (``rows``: the
    practice's rows of ``result.frame`` when the caller has them)."""
    if rows is None:
        rows = result.frame[result.frame["practice_code"] == practice_code]
    if rows.empty:
        raise KeyError(f"practice {practice_code!r} has no budget in this result")
    return _explain(result, practice_code, _records(rows), _summaries(result))


def _explain(result: BudgetResult, practice_code: str, rows: list[Row],
             summary: dict[str, Row]) -> Explanation:
    """:func:`explain` from the practice's rows as plain mappings (``frame.to_dict(
    "records")``), in the frame's order, and the summary by service line: no pandas per
    practice (at national scale, 6,553 practices, pandas per row and per lookup took three
    minutes)."""
    lines = []
    notes = list(result.notes)
    pace = result.policy.pace_of_change
    for row in rows:
        line = str(row["service_line"])
        summ = summary[line]
        lines.append(LineExplanation(line, tuple(_line_steps(
            row, summ, pace.floor_percent, pace.ceiling_percent))))
        if not bool(summ["caps_feasible"]):
            notes.append(f"{line_name(line)}: the floor or ceiling could not be met for "
                         "every practice with the money available, so every budget was "
                         "scaled pro rata from its cap.")
    retained = sum(int(r["calculated_budget"]) for r in rows if bool(r["opted_out"]))
    notes += _opt_out_notes(result, practice_code, rows)
    mine = dict.fromkeys(str(r["service_line"]) for r in rows)
    held = (sum(int(s["unattributed_held"]) for line, s in summary.items() if line in mine)
            if "unattributed_held" in result.summary.columns else 0)
    methods = []
    for m in dict.fromkeys(str(r["method"]) for r in rows):
        mine_m = [line_name(str(r["service_line"])) for r in rows if str(r["method"]) == m]
        methods.append(f"{_listing(mine_m)}: {method_name(m)}.")
    return Explanation(
        practice_code=practice_code,
        financial_year=str(rows[0]["financial_year"]),
        lines=tuple(lines),
        total_budget=sum(int(r["budget"]) for r in rows),
        total_retained=retained,
        notes=tuple(notes),
        unattributed_held=held,
        summary=_summary(rows, result),
        methods=tuple(methods),
    )


def explain_all(result: BudgetResult) -> dict[str, Explanation]:
    """Every practice's explanation, the frame turned into plain rows once and split by
    practice (at national scale, 6,553 practices, per-practice pandas dominated the
    budgets stage); each is :func:`explain` of that practice."""
    summary = _summaries(result)
    by_practice: dict[str, list[Row]] = {}
    for row in _records(result.frame):
        by_practice.setdefault(str(row["practice_code"]), []).append(row)
    return {code: _explain(result, code, rows, summary) for code, rows in by_practice.items()}


def _listing(names: list[str]) -> str:
    """``['a', 'b', 'c']`` -> ``'a, b and c'``."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _pct_words(part: int, whole: int) -> str:
    return f"{abs(part) / whole:.1%}" if whole else "n/a"


def _summary(rows: list[Row], result: BudgetResult) -> tuple[str, ...]:
    """Three sentences in plain English: the budget, its change on last year's spend, and
    its distance from the fair share with the reason (pace of change and caps)."""
    p = format_pounds
    fy = str(rows[0]["financial_year"])
    held = [r for r in rows if bool(r["opted_out"])]
    mine = [r for r in rows if not bool(r["opted_out"])]
    budget = sum(int(r["budget"]) for r in mine)
    first = (f"The practice's indicative budget for {fy} is {p(budget)} for "
             f"{len(mine)} service line{'s' if len(mine) != 1 else ''}")
    if len(held):
        names = [line_name(str(r["service_line"]), in_sentence=True) for r in held]
        first += (f"; the commissioner holds "
                  f"{p(sum(int(r['calculated_budget']) for r in held))} for "
                  f"{_listing(names)}, which the practice opted out of")
    first += "."
    prior = sum(int(r["prior_spend"]) for r in mine)
    if prior == 0:
        second = ("It had no spend on these services last year (a new practice), so it "
                  "starts at its fair share.")
    else:
        diff = budget - prior
        word = "more" if diff >= 0 else "less"
        second = (f"That is {p(abs(diff))} ({_pct_words(diff, prior)}) {word} than its "
                  f"spend on the same services last year, {p(prior)}.")
    calc = sum(int(r["calculated_budget"]) for r in mine)
    fair = sum(int(r["fair_share"]) for r in mine)
    gap = calc - fair
    pace = float(result.policy.pace_of_change.pace)
    if not len(mine):
        third = "It holds no budget this year, so it has no fair share to move towards."
    elif fair == 0:
        third = "Its fair share is nil (no weighted population)."
    else:
        where = "above" if gap > 0 else "below"
        third = (f"It is {p(abs(gap))} ({_pct_words(gap, fair)}) {where} its fair share of "
                 f"{p(fair)}" if gap else f"It is at its fair share of {p(fair)}")
        why = []
        caps = [str(r["cap"]) for r in mine]
        if gap and any(c != "new_practice" for c in caps):
            why.append("budgets move from last year's spend towards fair shares only "
                       f"{pace:.0%} of the way each year (the pace of change)")
        for cap, words in (
                ("floor", "the floor (the most a budget may fall on last year) held {}"),
                ("ceiling", "the ceiling (the most a budget may rise on last year) held {}"),
                ("floor_relaxed", "for {} the floors could not all be met within the money "
                                  "available, so every practice's floor was scaled down pro "
                                  "rata"),
                ("ceiling_relaxed", "for {} the ceilings could not all be met with the money "
                                    "available, so every practice's ceiling was scaled up pro "
                                    "rata")):
            lines = [line_name(str(r["service_line"]), in_sentence=True)
                     for r, c in zip(mine, caps, strict=True) if c == cap]
            if lines:
                why.append(words.format(_listing(lines)))
        third += (", because " + "; and ".join(why) + "." if why else ".")
    return (first, second, third)
