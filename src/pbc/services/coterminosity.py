"""``pbc la coterminosity``: how practice groups follow councils and neighbourhoods.

Reads the registered list on one day (:func:`pbc.services.budgets.registered_on`; default
the last day of the warehouse's activity), each practice's group that day (the rule
attribution uses, :func:`pbc.budgets.groups.groups_on`) and each patient's neighbourhood of
residence (``patients.neighbourhood_code``, its council from ``neighbourhoods``), and
measures coterminosity with :mod:`pbc.local_authorities.coterminosity`.

Who may see what (the rule is here, in the service layer):

* commissioner roles (``commissioner``, ``commissioner_approver``, ``commissioner_data``)
  of a commissioner of this warehouse see their own practices' groups: every group's
  spread, scores, the suggested regrouping and the counts behind them. These are counts of
  registered patients by practice and neighbourhood, which the commissioner holds anyway
  (list sizes), not patient-level rows.
* a ``local_authority`` officer sees only how **its own council's residents** spread across
  the groups: patients by neighbourhood and group, counts 1-7 suppressed with secondary
  suppression across the neighbourhood and council tables together
  (:func:`pbc.services.suppression.suppress_levels`), shares only where the count is shown;
  not the groups' scores or the regrouping (they count other councils' residents).
* every other role is refused, with who may.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pbc.budgets.groups import groups_on
from pbc.local_authorities.coterminosity import (
    DEFAULT_MIN_LIST,
    SPAN_THRESHOLD,
    GroupScore,
    OverallScore,
    Regrouping,
    as_frame,
    group_scores,
    regroup,
    spread,
)
from pbc.services.budgets import registered_on
from pbc.services.principal import AccessDenied, Principal
from pbc.services.suppression import DEFAULT_THRESHOLD, suppress_levels
from pbc.warehouse import Warehouse, WarehouseError
from pbc.warehouse.export import spreadsheet_safe
from pbc.warehouse.validate import lit

COMMISSIONER_ROLES = ("commissioner", "commissioner_approver", "commissioner_data")
#: what a refusal says
WHO_MAY = ("a commissioner role of the warehouse's commissioner (commissioner:CODE, "
           "commissioner_approver:CODE, commissioner_data:CODE), or a council officer "
           "(local_authority:CODE) for its own residents")
#: the local authority principal's CSV columns
COUNCIL_COLUMNS = ("local_authority_code", "neighbourhood_code", "group_code", "patients",
                   "share", "suppressed")
#: the commissioner's CSV columns (one row per group and per suggested cluster)
SCORE_COLUMNS = ("grouping", "group_code", "practices", "patients", "unknown_residence",
                 "main_local_authority", "local_authority_share", "councils",
                 "spans_councils", "main_neighbourhood", "neighbourhood_share",
                 "neighbourhood_index", "below_minimum")


@dataclass
class CoterminosityReport:
    """The result for one principal: the full view (commissioner roles) or one council's."""

    on: dt.date
    principal: Principal
    #: patients counted: registered on ``on``, of the principal's practices or council
    patients: int
    unknown_residence: int
    #: commissioner view (None for a council)
    scores: list[GroupScore] | None = None
    regrouping: Regrouping | None = None
    by_group: pd.DataFrame | None = None  # group x council x neighbourhood
    by_neighbourhood: pd.DataFrame | None = None  # neighbourhood x group
    #: council view: COUNCIL_COLUMNS, suppressed (None for the commissioner)
    council: pd.DataFrame | None = None
    threshold: int = DEFAULT_THRESHOLD

    @property
    def before(self) -> OverallScore | None:
        return self.regrouping.before if self.regrouping else None

    @property
    def after(self) -> OverallScore | None:
        return self.regrouping.after if self.regrouping else None

    def scores_frame(self) -> pd.DataFrame:
        """Current groups and suggested clusters, one row each (commissioner view)."""
        if self.regrouping is None or self.scores is None:
            raise AccessDenied(f"{self.principal}: the groups' scores are the "
                               "commissioner's view")
        return pd.concat([as_frame(self.scores, "current"),
                          as_frame(self.regrouping.clusters, "suggested")],
                         ignore_index=True)[list(SCORE_COLUMNS)]


def default_day(warehouse: Warehouse) -> dt.date:
    """The last day of the warehouse's activity (admissions, outpatients, A&E)."""
    from pbc.services.risk import data_span

    return data_span(warehouse)[1]


def _commissioners(warehouse: Warehouse) -> set[str]:
    return {str(r[0]) for r in warehouse.query(
        "SELECT DISTINCT commissioner_code FROM practices") if r[0] is not None}


def _councils(warehouse: Warehouse) -> set[str]:
    if not warehouse.has_table("local_authorities"):
        return set()
    return {str(r[0]) for r in warehouse.query(
        "SELECT local_authority_code FROM local_authorities")}


def authorise_view(warehouse: Warehouse, principal: Principal) -> None:
    """Refuse (:class:`AccessDenied`) a principal who may not see coterminosity."""
    if principal.role in COMMISSIONER_ROLES:
        codes = _commissioners(warehouse)
        if principal.organisation not in codes:
            raise AccessDenied(f"{principal}: {principal.organisation} is not a commissioner "
                               f"of this warehouse ({', '.join(sorted(codes)) or 'none'}); "
                               f"only {WHO_MAY} may see coterminosity")
        return
    if principal.role == "local_authority":
        if principal.organisation not in _councils(warehouse):
            raise AccessDenied(f"{principal}: {principal.organisation} is not a council of "
                               f"this warehouse (local_authorities); only {WHO_MAY} may "
                               "see coterminosity")
        return
    raise AccessDenied(f"{principal} may not see coterminosity: only {WHO_MAY} may")


def registered_counts(warehouse: Warehouse, on: dt.date,
                      commissioner: str | None = None) -> pd.DataFrame:
    """Registered patients on ``on`` by practice, group (that day), council and
    neighbourhood of residence: the counts :mod:`pbc.local_authorities.coterminosity`
    takes. A practice with no group that day is left out (it is in no group to score)."""
    for table in ("patients", "practices"):
        if not warehouse.has_table(table):
            raise WarehouseError(f"{warehouse.root}: no {table} table (run pbc load)")
    con = warehouse.connect()
    try:
        mine = f"WHERE commissioner_code = {lit(commissioner)}" if commissioner else ""
        practices = con.execute(f"SELECT practice_code, group_code FROM practices {mine}").df()
        windows = (con.execute("SELECT practice_code, group_code, valid_from, valid_to "
                               "FROM practice_groups").df()
                   if warehouse.has_table("practice_groups") else None)
        hoods = ("LEFT JOIN neighbourhoods n ON n.neighbourhood_code = p.neighbourhood_code"
                 if warehouse.has_table("neighbourhoods") else "")
        council = "n.local_authority_code" if hoods else "CAST(NULL AS VARCHAR)"
        counts = con.execute(f"""
            SELECT p.practice_code, p.neighbourhood_code AS raw_neighbourhood,
                   {council} AS local_authority_code, count(*) AS patients
            FROM patients p {hoods}
            WHERE {registered_on(con, on)}
              AND p.practice_code IN (SELECT practice_code FROM practices {mine})
            GROUP BY ALL""").df()
    finally:
        con.close()
    groups = groups_on([on], practices, windows)
    group_of = {str(r.practice_code): r.group_code for r in groups.itertuples()}
    counts["group_code"] = counts["practice_code"].astype(str).map(group_of)
    counts = counts[counts["group_code"].notna()]
    # a neighbourhood the register names but the neighbourhoods table does not hold has no
    # council: its residents are counted as of unknown residence
    known = counts["local_authority_code"].notna()
    counts["neighbourhood_code"] = counts["raw_neighbourhood"].where(known, None)
    counts = counts.groupby(["practice_code", "group_code", "local_authority_code",
                             "neighbourhood_code"], dropna=False)["patients"].sum().reset_index()
    counts = counts.astype({"patients": "int64"})
    return counts.sort_values(["practice_code", "neighbourhood_code"],
                              na_position="last").reset_index(drop=True)


def coterminosity(warehouse: Warehouse, principal: Principal, *, on: dt.date | None = None,
                  min_list: int = DEFAULT_MIN_LIST,
                  threshold: int = DEFAULT_THRESHOLD) -> CoterminosityReport:
    """Coterminosity of the principal's groups (commissioner roles) or of its council's
    residents across groups (a council officer), on ``on`` (default: the last day of the
    activity)."""
    authorise_view(warehouse, principal)
    day = on or default_day(warehouse)
    if principal.role in COMMISSIONER_ROLES:
        counts = registered_counts(warehouse, day, principal.organisation)
        if counts.empty:
            raise WarehouseError(f"{warehouse.root}: no patients registered on {day} with "
                                 f"the practices of {principal.organisation}")
        known = counts["neighbourhood_code"].notna()
        return CoterminosityReport(
            day, principal, int(counts["patients"].sum()),
            int(counts.loc[~known, "patients"].sum()),
            scores=group_scores(counts, min_list=min_list),
            regrouping=regroup(counts, min_list),
            by_group=spread(counts, "group_code", "neighbourhood_code"),
            by_neighbourhood=spread(counts, "neighbourhood_code", "group_code"),
            threshold=threshold)
    counts = registered_counts(warehouse, day)
    mine = counts[counts["local_authority_code"] == principal.organisation]
    return CoterminosityReport(day, principal, int(mine["patients"].sum()), 0,
                               council=council_view(mine, principal.organisation, threshold),
                               threshold=threshold)


def council_view(counts: pd.DataFrame, council: str,
                 threshold: int = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """One council's residents by neighbourhood and group (rows per neighbourhood, and the
    council as a whole with ``neighbourhood_code`` "all"; ``group_code`` "all" for each
    row's total), counts 1..``threshold`` suppressed together across both tables; a share
    of the row's total is shown only where the count and the total are."""
    groups = sorted({str(g) for g in counts["group_code"]})
    base = (counts.groupby(["neighbourhood_code", "group_code"])["patients"].sum()
            .reset_index().rename(columns={"neighbourhood_code": "neighbourhood",
                                           "group_code": "column", "patients": "n"}))
    base["local_authority"] = council
    rows: list[dict[str, Any]] = []
    if base.empty:
        return pd.DataFrame(columns=list(COUNCIL_COLUMNS))
    tables = suppress_levels(base, ["neighbourhood", "local_authority"], groups, threshold)
    for level, label in (("neighbourhood", None), ("local_authority", "all")):
        for r in tables[level]:
            hood = label or str(r.code)
            for g, cell in [*zip(groups, r.cells, strict=True), ("all", r.total)]:
                share = (None if cell is None or r.total is None or r.total == 0
                         else cell / r.total)
                rows.append({"local_authority_code": council, "neighbourhood_code": hood,
                             "group_code": g, "patients": cell, "share": share,
                             "suppressed": cell is None})
    out = pd.DataFrame(rows, columns=list(COUNCIL_COLUMNS))
    return out.astype({"patients": "Int64"})


# ------------------------------------------------------------------ files
def write_csv(report: CoterminosityReport, path: Path | str, warehouse: Warehouse) -> Path:
    """The council view (a council officer) or the groups' and clusters' scores (commissioner
    roles) as CSV; suppressed counts are empty."""
    p = Path(path)
    warehouse.refuse_inside(p)
    frame = report.council if report.council is not None else report.scores_frame()
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    spreadsheet_safe(frame).to_csv(tmp, index=False)
    os.replace(tmp, p)
    return p


def write_workbook(report: CoterminosityReport, path: Path | str,
                   warehouse: Warehouse) -> Path:
    """The same as a house-style workbook: for commissioner roles a summary, the scores,
    each group's spread, each neighbourhood's spread and the suggested clusters; for a
    council its residents by neighbourhood and group."""
    from pbc.reports.coterminosity import coterminosity_workbook

    p = Path(path)
    warehouse.refuse_inside(p)
    source = (f"pbc la coterminosity, warehouse {warehouse.root.name} version "
              f"{warehouse.manifest().get('version')}")
    return coterminosity_workbook(p, report, source=source)


def summary_lines(report: CoterminosityReport) -> list[str]:
    """The report in a few sentences (terminal and workbook summary)."""
    lines = [f"Registered patients on {report.on:%d %B %Y} counted where they live "
             f"(patients.neighbourhood_code): {report.patients:,}"
             + (f", {report.unknown_residence:,} of them with no known neighbourhood "
                "(left out of the shares)" if report.unknown_residence else "") + "."]
    if report.regrouping is None:
        lines.append(f"Residents of {report.principal.organisation} by neighbourhood and "
                     f"group; counts from 1 to {report.threshold} are suppressed, with "
                     "secondary suppression so none can be worked out from the totals.")
        return lines
    b, a = report.regrouping.before, report.regrouping.after
    spans = b.spanning_groups
    lines.append(f"{b.groups} groups; {spans} span several councils (at least "
                 f"{SPAN_THRESHOLD:.0%} of their patients outside their main council).")
    lines.append(f"Now: {_pct(b.local_authority_share)} of patients live in their group's "
                 f"main council and {_pct(b.neighbourhood_share)} in its main neighbourhood "
                 f"(Herfindahl index {_num(b.neighbourhood_index)}).")
    lines.append(f"Suggested: {a.groups} clusters following neighbourhoods (minimum list "
                 f"{report.regrouping.min_list:,}): {_pct(a.local_authority_share)} in the "
                 f"main council, {_pct(a.neighbourhood_share)} in the main neighbourhood "
                 f"(index {_num(a.neighbourhood_index)}).")
    return lines


def _pct(v: Any) -> str:
    return "-" if v is None or pd.isna(v) else f"{100 * float(v):.1f}%"


def _num(v: Any) -> str:
    return "-" if v is None or pd.isna(v) else f"{float(v):.3f}"


# ------------------------------------------------------------------ terminal
def print_report(report: CoterminosityReport, console: Any) -> None:
    """The report for an 80-column terminal (Rich): sentences, then the scores of the groups
    and the suggested clusters (commissioner roles) or the council's residents by
    neighbourhood and group (a council officer), suppressed cells as ``*``."""
    from rich import box
    from rich.table import Table as RichTable

    for line in summary_lines(report):
        console.print(line, highlight=False, markup=False)
    if report.council is not None:
        t = RichTable(title=f"Residents of {report.principal.organisation} by group",
                      box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for c, j in (("neighbourhood", "left"), ("group", "left"), ("residents", "right"),
                     ("share", "right")):
            t.add_column(c, justify=j, no_wrap=True)  # type: ignore[arg-type]
        for row in report.council.to_dict("records"):
            shown = not pd.isna(row["patients"])
            t.add_row(str(row["neighbourhood_code"]), str(row["group_code"]),
                      f"{int(row['patients']):,}" if shown else "*",
                      _pct(row["share"]) if shown and row["share"] is not None else "*")
        console.print(t)
        return
    frame = report.scores_frame()
    for grouping, title in (("current", "Groups now"),
                            ("suggested", "Suggested clusters following neighbourhoods")):
        t = RichTable(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for c, j in (("group", "left"), ("prac-\ntices", "right"), ("patients", "right"),
                     ("main\ncouncil", "left"), ("share", "right"),
                     ("main\nneigh-\nbour-\nhood", "left"), ("share", "right"),
                     ("index", "right"), ("flags", "left")):
            t.add_column(c, justify=j, no_wrap=c not in ("group", "flags"),  # type: ignore[arg-type]
                         overflow="fold", min_width=12 if c == "group" else None)
        for r in frame[frame["grouping"] == grouping].to_dict("records"):
            flags = ", ".join(f for f, on in (("spans councils", r["spans_councils"]),
                                              ("small", r["below_minimum"])) if on)
            t.add_row(str(r["group_code"]).replace("+", "+ "), f"{r['practices']:,}",
                      f"{r['patients']:,}", str(r["main_local_authority"] or "-"),
                      _pct(r["local_authority_share"]), str(r["main_neighbourhood"] or "-"),
                      _pct(r["neighbourhood_share"]), _num(r["neighbourhood_index"]), flags)
        console.print(t)
    console.print(f"share: of the patients with a known neighbourhood; index: Herfindahl "
                  f"concentration across neighbourhoods (1 = all in one); small: below the "
                  f"minimum list of {report.regrouping.min_list if report.regrouping else 0:,}"
                  ".", highlight=False, markup=False)
