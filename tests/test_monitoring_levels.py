"""Property: practices' variances add up to their groups' and to the commissioner's, by
service line and in total, for any activity, budgets, group membership (a practice may
move group in any month) and opt-outs (a practice's opted-out line is the commissioner's:
its spend and budget leave the practice and its group and stay with the commissioner).
Expected sums come from the generated rows, not from pbc."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbc.decisions import DecisionStore
from pbc.services.monitoring import monthly_position
from pbc.services.principal import Principal
from pbc.warehouse import Warehouse

FY = "2025-26"
COMMISSIONER = Principal("finance", "commissioner", "Q99")
PRACTICES = ("A81001", "A81002", "A81003")
LINES = ("ae", "non_elective")
GROUPS = st.sampled_from(["G01", "G02", None])
pence = st.integers(min_value=-5_000_00, max_value=2_000_000_00)
activity_row = st.tuples(st.sampled_from([*PRACTICES, None]), st.sampled_from(LINES),
                         st.integers(1, 12), pence, st.integers(0, 1_000_00))


def _warehouse(root: Path, membership: dict[str, list[str | None]],
               activity: list[tuple[str | None, str, int, int, int]],
               budgets: dict[tuple[str, str, int], int], held: int,
               opted: dict[tuple[str, str], int] | None = None) -> Warehouse:
    wh = Warehouse(root)
    priced = pd.DataFrame([{
        "financial_year": FY, "commissioner_code": "Q99", "practice_code": p,
        "group_code": membership[p][m - 1] if p else None, "attributed": p is not None,
        "service_line": line, "month": m, "price": (amount + mfa) / 100,
        "marginal_rate_adjustment": mfa / 100} for p, line, m, amount, mfa in activity]
        or [], columns=["financial_year", "commissioner_code", "practice_code", "group_code",
                        "attributed", "service_line", "month", "price",
                        "marginal_rate_adjustment"])
    phasing = pd.DataFrame(
        [{"financial_year": FY, "version": 1, "kind": "practice", "commissioner_code": "Q99",
          "practice_code": p, "group_code": membership[p][m - 1], "service_line": line,
          "month": m, "budget": b / 100} for (p, line, m), b in budgets.items()]
        + [{"financial_year": FY, "version": 1, "kind": "commissioner",
            "commissioner_code": "Q99", "practice_code": None, "group_code": None,
            "service_line": "ae", "month": 1, "budget": held / 100}]
        + [{"financial_year": FY, "version": 1, "kind": "opt_out", "commissioner_code": "Q99",
            "practice_code": p, "group_code": membership[p][0], "service_line": line,
            "month": 1, "budget": b / 100} for (p, line), b in (opted or {}).items()])
    import duckdb

    con = duckdb.connect()
    con.register("priced_df", priced)
    con.register("phasing_df", phasing)
    with wh.begin("test") as tx:
        tx.write(con, "priced_activity", """
            SELECT financial_year, commissioner_code, practice_code, group_code, attributed,
                   service_line, CAST(month AS INTEGER) AS month,
                   CAST(price AS DECIMAL(18,2)) AS price,
                   CAST(marginal_rate_adjustment AS DECIMAL(18,2)) AS marginal_rate_adjustment
            FROM priced_df""", file_prefix="priced")
        tx.write(con, "budget_phasing", """
            SELECT financial_year, CAST(version AS INTEGER) AS version, kind, commissioner_code,
                   practice_code, group_code, service_line, CAST(month AS INTEGER) AS month,
                   CAST(budget AS DECIMAL(18,2)) AS budget FROM phasing_df""",
                 file_prefix="phasing")
    con.close()
    with DecisionStore.beside(root) as store:
        store.record_budgets(COMMISSIONER, FY, [], reason="test")
    return wh


def _by_line(frame: pd.DataFrame, column: str) -> dict[str, int]:
    return {str(k): int(v) for k, v in frame.groupby("service_line")[column].sum().items()}


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(membership=st.fixed_dictionaries({p: st.lists(GROUPS, min_size=12, max_size=12)
                                         for p in PRACTICES}),
       activity=st.lists(activity_row, min_size=1, max_size=25),
       budget_values=st.lists(st.integers(0, 10_000_000_00), min_size=72, max_size=72),
       held=st.integers(0, 1_000_000_00), month=st.integers(1, 12),
       opted=st.dictionaries(st.tuples(st.sampled_from(PRACTICES), st.sampled_from(LINES)),
                             st.integers(0, 1_000_000_00), max_size=3))
def test_variances_add_up_across_levels(tmp_path_factory: pytest.TempPathFactory,
                                        membership: dict[str, list[str | None]],
                                        activity: list[tuple[str | None, str, int, int, int]],
                                        budget_values: list[int], held: int,
                                        month: int, opted: dict[tuple[str, str], int]) -> None:
    keys = list(itertools.product(PRACTICES, LINES, range(1, 13)))
    budgets = dict(zip(keys, budget_values, strict=True))
    wh = _warehouse(tmp_path_factory.mktemp("levels"), membership, activity, budgets, held,
                    opted)
    period = f"{2025 if month <= 9 else 2026}-{(month + 2) % 12 + 1:02d}"
    levels = {lv: monthly_position(wh, COMMISSIONER, period, level=lv, method="run_rate").frame
              for lv in ("practice", "group", "commissioner")}
    lines = {lv: f[f.service_line != "all"] for lv, f in levels.items()}
    # expected, from the generated rows: what has no group, and what has no practice
    # and what the commissioner holds because a practice opted out of the line
    ungrouped: dict[str, int] = defaultdict(int)
    unattributed: dict[str, int] = defaultdict(int)
    opted_out: dict[str, int] = defaultdict(int)
    for p, line, m, amount, _ in activity:
        if m > month:
            continue
        if p is None:
            unattributed[line] += amount
        elif (p, line) in opted:
            opted_out[line] += amount
        elif membership[p][m - 1] is None:
            ungrouped[line] += amount
    for (p, line, m), b in budgets.items():
        if m > month:
            continue
        if (p, line) in opted:
            opted_out[line] -= b
        elif membership[p][m - 1] is None:
            ungrouped[line] -= b
    for (_, line), b in opted.items():  # phased into month 1
        opted_out[line] -= b
    commissioner_extra = {line: unattributed[line] + opted_out[line] for line in LINES}
    # the commissioner's held line is phased into month 1
    commissioner_extra["ae"] -= held
    practice = _by_line(lines["practice"], "variance")
    group = _by_line(lines["group"], "variance")
    commissioner = _by_line(lines["commissioner"], "variance")
    # an opted-out line is not the practice's
    shown = set(zip(lines["practice"].code, lines["practice"].service_line, strict=True))
    assert not shown & set(opted), shown & set(opted)
    for line in LINES:
        assert practice.get(line, 0) == group.get(line, 0) + ungrouped.get(line, 0), line
        assert commissioner.get(line, 0) == practice.get(line, 0) + commissioner_extra.get(
            line, 0), line
    for lv, f in levels.items():  # the total line is the sum of the lines at every level
        totals = f[f.service_line == "all"].set_index("code").variance
        sums = lines[lv].groupby("code").variance.sum()
        assert totals.sort_index().tolist() == sums.reindex(totals.index).fillna(0).sort_index(
            ).astype("int64").tolist(), lv
