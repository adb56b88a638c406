"""Budget statements: the workbook a practice (or a group of practices) receives with its
indicative budget.

A practice manager opens it in Excel and reads, in this order:

1. **Summary**: this year's budget against last year's and against the fair share, in
   words and in figures (the figures are the totals of the *Budget* sheet);
2. **Budget**: one row per service line (last year's spend, the historic budget, the fair
   share, the budget, the change and the distance from fair share), with totals;
3. **Monthly phasing**: the budget by service line and month, April to March, with the
   year's total (which is the budget, to the penny);
4. **Explanation**: how each line's budget was built, one row per step (service line,
   step, figure, how it was computed), from :class:`pbc.budgets.explain.Explanation`.

A group's workbook has the summary, its **Practices** (name beside code, the months each
is in the group and its budget in those months), the budget by service line and the
monthly phasing. Group budgets move a practice's money with it month by month
(:func:`pbc.budgets.groups.group_budgets`), so a group's fair share here is its practices'
fair shares phased the same way and counted in the months they are members.

The file name holds the financial year and the budget version
(``practice_A81001_2025-26_v3.xlsx``); :func:`statement_paths` names every file of a
setting so a caller can check them before anything is stored. Money is int pence in, pounds
(``Decimal``) in the cells. Built with :mod:`pbc.reports.workbook` (the house style).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from pbc.budgets.explain import SERVICE_LINE_NAMES, Explanation
from pbc.budgets.money import format_pounds, pence_to_pounds
from pbc.budgets.phasing import phase_budgets
from pbc.calendar import format_financial_year, parse_financial_year
from pbc.reports.workbook import Column, TitleBlock, Workbook, months_wide

_SAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class LastYear:
    """Last year's budgets as recorded in the decision store (int pence)."""

    financial_year: str
    version: int
    status: str
    #: ``practice_code``, ``service_line``, ``budget``
    practices: pd.DataFrame
    #: ``group_code``, ``service_line``, ``budget`` (the months each practice was a member),
    #: or None when the version's monthly phasing is not in the warehouse
    groups: pd.DataFrame | None = None

    @property
    def label(self) -> str:
        return f"{self.financial_year}, version {self.version}, {self.status}"


@dataclass(frozen=True)
class StatementContext:
    """What a statement says about itself: the setting, the names, where it came from."""

    financial_year: str
    version: int
    status: str  # draft | agreed
    commissioner_code: str
    source: str
    commissioner_name: str = ""
    practice_names: Mapping[str, str] = field(default_factory=dict)
    group_names: Mapping[str, str] = field(default_factory=dict)
    last_year: LastYear | None = None
    produced: dt.datetime = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).replace(microsecond=0))

    @property
    def version_text(self) -> str:
        if self.status == "agreed":
            return f"Version {self.version}, agreed"
        return f"Draft version {self.version} (not agreed)"

    def practice(self, code: str) -> str:
        return _named(code, self.practice_names.get(code, ""))

    def group(self, code: str) -> str:
        return _named(code, self.group_names.get(code, ""))

    def title(self, what: str, organisation: str) -> TitleBlock:
        return TitleBlock(title=what, organisation=organisation,
                          period=f"Financial year {self.financial_year} (April to March)",
                          source=self.source, version=self.version_text,
                          produced=self.produced)


def _named(code: str, name: str) -> str:
    return f"{code} {name}".strip() if name else f"{code} (no name in the warehouse)"


def file_code(code: str) -> str:
    """An organisation code as it may appear in a file name."""
    safe = _SAFE.sub("_", str(code))
    if not safe.strip("_"):
        raise ValueError(f"organisation code {code!r} cannot name a file")
    return safe


def statement_paths(folder: Path, financial_year: str, version: int,
                    practices: list[str], groups: list[str]) -> dict[str, Path]:
    """Every file a setting's statements write, by what it is: ``budgets`` and ``held``
    (CSV), ``practice:CODE`` and ``group:CODE`` (workbooks); the year and version in each
    name."""
    tag = f"{financial_year}_v{int(version)}"
    paths = {"budgets": folder / f"indicative_budgets_{tag}.csv",
             "held": folder / f"commissioner_held_{tag}.csv"}
    paths |= {f"practice:{c}": folder / f"practice_{file_code(c)}_{tag}.xlsx" for c in practices}
    paths |= {f"group:{c}": folder / f"group_{file_code(c)}_{tag}.xlsx" for c in groups}
    return paths


# ---------------------------------------------------------------------- figures
def _pounds(pence: int) -> Decimal:
    return pence_to_pounds(int(pence))


def _line_name(line: str) -> str:
    return SERVICE_LINE_NAMES.get(line, line.replace("_", " ").capitalize())


METHOD_NAMES = {
    "weighted_capitation": "Weighted capitation (age, sex and need)",
    "person_based": "Person-based (patients' predicted costs)",
    "nhse_weighted_population": "NHS England weighted population",
}


def _method_name(method: str) -> str:
    base, _, comp = str(method).partition(":")
    name = METHOD_NAMES.get(base, base.replace("_", " "))
    return f"{name}, {comp}" if comp else name


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def _change(amount: int, base: int) -> str:
    """``£1,234.00 (2.5%) more than`` / ``less than`` / ``the same as``."""
    diff = amount - base
    if diff == 0:
        return "the same as"
    pct = _ratio(abs(diff), abs(base))
    share = f" ({pct:.1%})" if pct is not None else ""
    return f"{format_pounds(abs(diff))}{share} {'more' if diff > 0 else 'less'} than"


def _against_fair(amount: int, fair: int) -> str:
    diff = amount - fair
    if diff == 0:
        return "exactly its fair share"
    pct = _ratio(abs(diff), fair)
    share = f" ({pct:.1%})" if pct is not None else ""
    return (f"{format_pounds(abs(diff))}{share} {'above' if diff > 0 else 'below'} its fair "
            f"share of {format_pounds(fair)}")


@dataclass(frozen=True)
class Figures:
    """The summary's figures (int pence), each the total of a column of the Budget sheet."""

    budget: int
    held: int
    fair_share: int
    prior_spend: int
    historic: int
    last_year: int | None

    @property
    def allocated(self) -> int:
        """The budget with the lines the commissioner holds for the practice (opt-outs)."""
        return self.budget + self.held


def _summary_rows(who: str, fy: str, f: Figures, ctx: StatementContext,
                  prior: str, why_none: str | None = None) -> tuple[list[tuple[str, Any]], str]:
    """Summary rows (label, (pounds, kind) or text) and the sentence in words."""
    money = lambda p: (_pounds(p), "money")  # noqa: E731
    rows: list[tuple[str, Any]] = [(f"Indicative budget {fy}", money(f.budget))]
    compared = f.allocated
    if f.held:
        rows.append(("Held by the commissioner for opted-out lines", money(f.held)))
        rows.append(("Budget with the opted-out lines", money(f.allocated)))
    ly = ctx.last_year
    if ly is not None and f.last_year is not None:
        rows.append((f"Last year's budget ({ly.label})", money(f.last_year)))
        rows.append(("Change on last year's budget", money(compared - f.last_year)))
        rows.append(("Change on last year's budget (%)",
                     (_ratio(compared - f.last_year, f.last_year), "percent")))
        last = f"last year's budget of {format_pounds(f.last_year)} ({ly.label})"
        change = f"{_change(compared, f.last_year)} {last}"
    else:
        why = why_none or f"no budget for {prior} is recorded in pbc"
        rows.append(("Last year's budget", f"none: {why}"))
        change = (f"{_change(compared, f.prior_spend)} last year's spend of "
                  f"{format_pounds(f.prior_spend)} ({why})")
    rows.append((f"Spend {prior} (priced at the national tariff)", money(f.prior_spend)))
    rows.append((f"Historic budget (spend {prior} with the uplift)", money(f.historic)))
    rows.append((f"Fair share {fy}", money(f.fair_share)))
    rows.append(("Difference from fair share", money(compared - f.fair_share)))
    rows.append(("Difference from fair share (%)",
                 (_ratio(compared - f.fair_share, f.fair_share), "percent")))
    subject = "budget with the opted-out lines" if f.held else "indicative budget"
    words = (f"{who}'s {subject} for {fy} is {format_pounds(compared)}: {change}, and "
             f"{_against_fair(compared, f.fair_share)}.")
    return rows, words


NOTES = (
    "Money in pounds. Spend is the tariff value of the practice's activity before the "
    "emergency marginal rate (see pbc docs/money.md).",
    "Fair share: the money available to practices shared by weighted population; the "
    "budget moves from the historic budget towards it at the commissioner's pace of change.",
)


# ---------------------------------------------------------------------- practice
def practice_statement(path: Path, explanation: Explanation, budgets: pd.DataFrame,
                       monthly: pd.DataFrame, ctx: StatementContext,
                       group: str | None = None) -> Path:
    """Write one practice's statement. ``budgets``: its rows of
    :attr:`BudgetResult.frame <pbc.budgets.indicative.BudgetResult.frame>` (int pence);
    ``monthly``: its phased rows (``service_line``, ``month``, ``budget``)."""
    code = explanation.practice_code
    fy = ctx.financial_year
    prior = _prior(fy)
    rows = budgets.sort_values("service_line").reset_index(drop=True)
    held = rows["calculated_budget"].where(rows["opted_out"].astype(bool), 0).astype("int64")
    last = _last_year_lines(ctx, "practice_code", code)
    table = pd.DataFrame({
        "service_line": rows["service_line"].map(_line_name),
        "method": rows["method"].map(_method_name),
        "opted_out": rows["opted_out"].astype(bool),
        "prior_spend": rows["prior_spend"].map(_pounds),
        "historic": rows["historic"].map(_pounds),
        "fair_share": rows["fair_share"].map(_pounds),
        "budget": rows["budget"].map(_pounds),
        "held": held.map(_pounds),
        "change": [_ratio(int(b + h - y), int(y)) for b, h, y in
                   zip(rows["budget"], held, rows["historic"], strict=True)],
        "distance": [_ratio(int(b + h - s), int(s)) for b, h, s in
                     zip(rows["budget"], held, rows["fair_share"], strict=True)],
    })
    columns = [Column("service_line", "Service line"), Column("method", "Fair share method"),
               Column("opted_out", "Opted out"),
               Column("prior_spend", f"Spend {prior}", "money"),
               Column("historic", "Historic budget (spend with uplift)", "money"),
               Column("fair_share", f"Fair share {fy}", "money"),
               Column("budget", f"Budget {fy}", "money"),
               Column("held", "Held by the commissioner (opted out)", "money"),
               Column("change", "Change on historic budget", "percent"),
               Column("distance", "Difference from fair share", "percent")]
    if not int(held.sum()):  # no line opted out: no column of zeros
        table = table.drop(columns=["held"])
        columns = [c for c in columns if c.key != "held"]
    if last is not None:
        table.insert(5, "last_year", rows["service_line"].map(
            lambda s: _pounds(last.get(s, 0))))
        columns.insert(5, Column("last_year", f"Budget {ctx.last_year.financial_year}"  # type: ignore[union-attr]
                                 , "money"))
    figures = Figures(budget=int(rows["budget"].sum()), held=int(held.sum()),
                      fair_share=int(rows["fair_share"].sum()),
                      prior_spend=int(rows["prior_spend"].sum()),
                      historic=int(rows["historic"].sum()),
                      last_year=None if last is None else int(sum(last.values())))
    who = ctx.practice(code)
    why = (f"the practice has no budget in {ctx.last_year.label}"
           if ctx.last_year is not None and last is None else None)
    summary, words = _summary_rows(f"Practice {code}", fy, figures, ctx, prior, why)
    head: list[tuple[str, Any]] = [("Practice", who)]
    if group is not None:
        head.append(("Group on 1 April", ctx.group(group)))
    head.append(("Commissioner", _named(ctx.commissioner_code, ctx.commissioner_name)))
    with Workbook(path, ctx.title("Indicative budget statement", who)) as wb:
        wb.summary("Summary", [*head, ("In words", words), *summary], notes=[
            "Each figure is the total of its column on the Budget sheet.", *NOTES])
        wb.table("Budget", table, columns, heading="Budget by service line", notes=NOTES)
        wide, cols = _monthly(monthly)
        wb.table("Monthly phasing", wide, [Column("service_line", "Service line"), *cols],
                 heading="Budget by month (phased by last year's seasonal pattern)",
                 notes=["The Year column is the budget of each line, to the penny."])
        steps, step_cols, notes = explanation_table(explanation)
        wb.table("Explanation", steps, step_cols, totals=None,
                 heading="How the budget was built, step by step", notes=notes)
    return path


def explanation_table(explanation: Explanation) -> tuple[pd.DataFrame, list[Column], list[str]]:
    """The explanation as rows (service line, step, figure, how it was computed), the
    columns to show it, and its closing lines as notes."""
    records = [{"service_line": _line_name(ln.service_line), "step": s.label,
                "figure": s.value, "how": s.formula}
               for ln in explanation.lines for s in ln.steps]
    frame = pd.DataFrame(records, columns=["service_line", "step", "figure", "how"])
    columns = [Column("service_line", "Service line"), Column("step", "Step"),
               Column("figure", "Figure"), Column("how", "How it was computed", width=80)]
    notes = [f"Total indicative budget: {format_pounds(explanation.total_budget)}"]
    if explanation.total_retained:
        notes.append("Held by the commissioner for opted-out lines: "
                     f"{format_pounds(explanation.total_retained)}")
    if explanation.unattributed_held:
        notes.append("Held by the commissioner for activity with no known practice (these "
                     f"service lines): {format_pounds(explanation.unattributed_held)}")
    notes += [f"Note: {n}" for n in explanation.notes]
    return frame, columns, notes


def _monthly(monthly: pd.DataFrame) -> tuple[pd.DataFrame, list[Column]]:
    """Service line x Apr..Mar in pounds, from int pence (summed exactly first)."""
    frame = monthly[["service_line", "month", "budget"]].copy()
    frame["budget"] = frame["budget"].astype("int64")
    wide, cols = months_wide(frame, ["service_line"], "budget")
    for c in cols:
        wide[c.key] = wide[c.key].map(_pounds)
    wide["service_line"] = wide["service_line"].map(_line_name)
    return wide, cols


def _prior(fy: str) -> str:
    return format_financial_year(parse_financial_year(fy) - 1)


def _last_year_lines(ctx: StatementContext, key: str, code: str) -> dict[str, int] | None:
    ly = ctx.last_year
    if ly is None:
        return None
    frame = ly.practices if key == "practice_code" else ly.groups
    if frame is None:
        return None
    mine = frame[frame[key].astype(str) == code]
    if mine.empty:
        return None
    return {str(k): int(v) for k, v in mine.groupby("service_line")["budget"].sum().items()}


# ---------------------------------------------------------------------- group
def group_statement(path: Path, group: str, budgets: pd.DataFrame, phasing: pd.DataFrame,
                    profile: pd.DataFrame | None, ctx: StatementContext) -> Path:
    """Write one group's statement.

    ``budgets``: every practice's rows of the budget frame (int pence); ``phasing``: the
    practices' monthly budgets with their group in each month (``practice_code``,
    ``group_code``, ``service_line``, ``month``, ``budget``, as
    :func:`pbc.services.budgets.budget_phasing` makes them); ``profile``: the seasonal
    profile the budgets were phased by (so fair shares are phased the same way)."""
    fy = ctx.financial_year
    prior = _prior(fy)
    members = phasing[phasing["group_code"].astype(str) == str(group)]
    if members.empty:
        raise ValueError(f"group {group!r} has no practices in {fy}")
    # only the members' rows (phasing is row by row): one group's statement must not phase
    # every practice of the commissioner (1,250 groups x 6,553 practices nationally)
    budgets = budgets[budgets["practice_code"].astype(str).isin(
        set(members["practice_code"].astype(str)))]
    fair = phase_budgets(budgets[["practice_code", "service_line", "fair_share"]]
                         .rename(columns={"fair_share": "budget"}), profile)
    fair = fair.merge(members[["practice_code", "service_line", "month"]],
                      on=["practice_code", "service_line", "month"])
    spend = _in_group_share(budgets, members, "prior_spend", profile)
    by_practice = members.groupby("practice_code").agg(
        months=("month", "nunique"), budget=("budget", "sum")).reset_index()
    fair_p = fair.groupby("practice_code")["budget"].sum()
    annual = budgets.groupby("practice_code")["budget"].sum()
    practices = pd.DataFrame({
        "practice_code": by_practice["practice_code"],
        "practice_name": [ctx.practice_names.get(str(c), "") for c in by_practice.practice_code],
        "months": by_practice["months"],
        "budget": by_practice["budget"].map(_pounds),
        "fair_share": by_practice["practice_code"].map(fair_p).fillna(0).map(_pounds),
        "annual": by_practice["practice_code"].map(annual).fillna(0).map(_pounds),
    })
    p_cols = [Column("practice_code", "Practice code"), Column("practice_name", "Practice"),
              Column("months", "Months in the group", "count", total=False),
              Column("budget", f"Budget in the group {fy}", "money"),
              Column("fair_share", "Fair share in the group", "money"),
              Column("annual", "Practice's whole-year budget", "money")]
    lines = members.groupby("service_line")["budget"].sum()
    fair_l = fair.groupby("service_line")["budget"].sum()
    last = _last_year_lines(ctx, "group_code", str(group))
    by_line = pd.DataFrame({"service_line": lines.index.map(_line_name),
                            "fair_share": fair_l.reindex(lines.index).fillna(0).map(_pounds),
                            "budget": lines.map(_pounds)})
    l_cols = [Column("service_line", "Service line"),
              Column("fair_share", f"Fair share {fy}", "money"),
              Column("budget", f"Budget {fy}", "money")]
    if last is not None:
        by_line.insert(1, "last_year", [_pounds(last.get(s, 0)) for s in lines.index])
        l_cols.insert(1, Column("last_year", f"Budget {prior}", "money"))
    figures = Figures(budget=int(lines.sum()), held=0, fair_share=int(fair_l.sum()),
                      prior_spend=spend, historic=0,
                      last_year=None if last is None else int(sum(last.values())))
    who = ctx.group(str(group))
    why = None
    if ctx.last_year is not None and ctx.last_year.groups is None:
        why = (f"{ctx.last_year.label} is recorded by practice, but its monthly phasing by "
               "group is not in the warehouse")
    summary, words = _summary_rows(f"Group {group}", fy, figures, ctx, prior, why)
    summary = [r for r in summary if not r[0].startswith("Historic budget")]
    head: list[tuple[str, Any]] = [
        ("Group", who), ("Commissioner", _named(ctx.commissioner_code, ctx.commissioner_name)),
        ("Practices", f"{len(practices)} (listed on the Practices sheet)")]
    notes = ["The group's budget is its practices' monthly budgets in the months they are "
             "members; its fair share and last year's spend are counted the same way.",
             *NOTES]
    with Workbook(path, ctx.title("Group budget statement", who)) as wb:
        wb.summary("Summary", [*head, ("In words", words), *summary], notes=notes)
        wb.table("Practices", practices, p_cols, heading="The group's practices", notes=[
            "Budget in the group: the practice's monthly budgets in the months it is a member "
            "(on the first day of the month)."])
        wb.table("Budget", by_line, l_cols, heading="Budget by service line", notes=NOTES)
        wide, cols = _monthly(members)
        wb.table("Monthly phasing", wide, [Column("service_line", "Service line"), *cols],
                 heading="Budget by month", notes=[
                     "The Year column is the group's budget of each line, to the penny."])
    return path


def _in_group_share(budgets: pd.DataFrame, members: pd.DataFrame, column: str,
                    profile: pd.DataFrame | None) -> int:
    """A practice money column counted in the months each practice is in the group (phased
    like the budgets), int pence."""
    phased = phase_budgets(budgets[["practice_code", "service_line", column]]
                           .rename(columns={column: "budget"}), profile)
    mine = phased.merge(members[["practice_code", "service_line", "month"]],
                        on=["practice_code", "service_line", "month"])
    return int(mine["budget"].sum())
