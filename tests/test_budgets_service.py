"""Budget setting through the service, on a small hand-made warehouse: what prior-year spend
is (tariff value before the marginal rate, one commissioner, prescribing once), how the
budget tables are stored (exact decimals, one financial-year spelling) and the money the
commissioner holds."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from pbc.services.principal import Principal
from pbc.warehouse import Warehouse

ICB = Principal("analyst", "commissioner", "Q1")

POLICY = """
financial_year = "2025/26"
{commissioner}
scope = ["non_elective", "prescribing"]

[envelope.non_elective]
uplift_percent = 0
[envelope.prescribing]
uplift_percent = 0

[fair_share.non_elective]
method = "weighted_capitation"
[fair_share.prescribing]
method = "weighted_capitation"

[pace_of_change]
pace = 0
"""


def _spell(practice: str, month: int, tariff: str, marginal: str = "0.00",
           commissioner: str = "Q1", line: str = "non_elective",
           patient: str | None = None) -> dict[str, object]:
    price = Decimal(tariff) + Decimal(marginal)
    return {"financial_year": "2024-25", "month": month, "practice_code": practice,
            "commissioner_code": commissioner, "service_line": line,
            "patient_id": patient or (f"{practice}0" if practice else None), "price": price,
            "marginal_rate_adjustment": Decimal(marginal)}


def _warehouse(root: Path, activity: list[dict[str, object]],
               practices: list[tuple[str, str, str]] | None = None,
               windows: bool = True) -> Warehouse:
    """practices (code, commissioner, default group); two identical patients each; with
    ``windows`` a practice_groups table whose one window (B in G1, 2020 to 2099) changes
    nothing."""
    practices = practices or [("A", "Q1", "G1"), ("B", "Q1", "G1")]
    prac = pd.DataFrame(practices, columns=["practice_code", "commissioner_code", "group_code"])
    pats = pd.DataFrame([(f"{p}{i}", p, sex, age, 5) for p, _, _ in practices
                         for i, (sex, age) in enumerate([("F", 40), ("M", 70)])],
                        columns=["patient_id", "practice_code", "sex", "age", "imd_decile"])
    act = pd.DataFrame(activity)
    # the loaded prescribing table too, as in a real warehouse: pricing copies its rows into
    # priced_activity (service line prescribing), so they must not be counted twice
    rx = act[act.service_line == "prescribing"]
    presc = pd.DataFrame({"practice_code": rx.practice_code, "financial_year": rx.financial_year,
                          "month": rx.month, "actual_cost": rx.price})
    wh = Warehouse(root)
    with wh.begin("test") as tx:
        con = tx.connect()
        for name, df, sql in (
                ("practices", prac, "SELECT * FROM df"),
                ("patients", pats, "SELECT * FROM df"),
                ("priced_activity", act,
                 "SELECT financial_year, CAST(month AS BIGINT) AS month, practice_code, "
                 "commissioner_code, service_line, patient_id, "
                 "CAST(price AS DECIMAL(18, 2)) AS price, "
                 "CAST(marginal_rate_adjustment AS DECIMAL(18, 2)) AS marginal_rate_adjustment "
                 "FROM df"),
                ("prescribing", presc,
                 "SELECT practice_code, financial_year, CAST(month AS BIGINT) AS month, "
                 "CAST(actual_cost AS DECIMAL(18, 2)) AS actual_cost FROM df")):
            con.register("df", df)
            tx.write(con, name, sql, file_prefix=name, replace=True)
            con.unregister("df")
        if windows:
            tx.write(con, "practice_groups", "SELECT 'B' AS practice_code, 'G1' AS group_code, "
                     "DATE '2020-04-01' AS valid_from, DATE '2099-03-31' AS valid_to",
                     file_prefix="pg", replace=True)
        con.close()
    return wh


def _policy(tmp_path: Path, commissioner: str | None = "Q1") -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY.format(
        commissioner=f'commissioner_code = "{commissioner}"' if commissioner else ""))
    return path


def _rx(practice: str, month: int, cost: str, commissioner: str = "Q1") -> dict[str, object]:
    return _spell(practice, month, cost, commissioner=commissioner, line="prescribing")


def test_historic_and_phasing_do_not_depend_on_discharge_order(tmp_path: Path) -> None:
    """A and B have the same activity: a £1,000.00 emergency spell in April and one in
    March. B's March spell was discharged after the contract's threshold, so the marginal
    rate took £700.00 off its price. Budgets start from the tariff value, so A and B get the
    same historic (£2,000.00), the same budget and the same months (half in April, half in
    March)."""
    from pbc.services.budgets import set_indicative_budgets

    wh = _warehouse(tmp_path / "wh", [
        _spell("A", 1, "1000.00"), _spell("A", 12, "1000.00"),
        _spell("B", 1, "1000.00"), _spell("B", 12, "1000.00", marginal="-700.00"),
        _rx("A", 1, "10.00"), _rx("B", 1, "10.00"),
    ])
    run = set_indicative_budgets(wh, _policy(tmp_path), ICB, statements=tmp_path / "st")
    f = run.result.frame.query("service_line == 'non_elective'").set_index("practice_code")
    assert list(f["historic"]) == [200000, 200000]
    assert list(f["budget"]) == [200000, 200000]
    m = run.monthly.query("service_line == 'non_elective'")
    a = m[m.practice_code == "A"]["budget"].tolist()
    b = m[m.practice_code == "B"]["budget"].tolist()
    assert a == b == [100000] + [0] * 10 + [100000]


def test_prior_spend_is_the_commissioners_own(tmp_path: Path) -> None:
    """Two commissioners in one warehouse: Q2's practice C, its unattributed activity and its
    prescribing are not in Q1's envelope; Q1's prescribing is counted once."""
    from pbc.services.budgets import set_indicative_budgets

    wh = _warehouse(tmp_path / "wh", [
        _spell("A", 3, "1000.00"), _spell("B", 3, "3000.00"),
        _spell("", 3, "500.00"),                         # Q1's unattributed activity
        _spell("C", 3, "9000.00", commissioner="Q2"),
        _spell("", 3, "4000.00", commissioner="Q2"),     # Q2's unattributed activity
        _rx("A", 2, "40.00"), _rx("B", 2, "60.00"), _rx("C", 2, "999.00", commissioner="Q2"),
    ], practices=[("A", "Q1", "G1"), ("B", "Q1", "G1"), ("C", "Q2", "G9")])
    run = set_indicative_budgets(wh, _policy(tmp_path), ICB, statements=tmp_path / "st")
    s = run.result.summary.set_index("service_line")
    assert s.loc["non_elective", "prior_spend"] == 450000      # £1,000 + £3,000 + £500
    assert s.loc["non_elective", "unattributed_held"] == 50000
    assert s.loc["non_elective", "available"] == 400000
    assert s.loc["prescribing", "prior_spend"] == 10000        # £40 + £60, once
    assert sorted(run.result.frame.practice_code.unique()) == ["A", "B"]
    # without a commissioner in the policy, two commissioners cannot share one envelope
    from pbc.warehouse import WarehouseError

    with pytest.raises(WarehouseError, match=r"2 commissioners .*Q1, Q2.*commissioner_code"):
        set_indicative_budgets(wh, _policy(tmp_path, None), ICB, statements=tmp_path / "s2")
    # and one commissioner does not set another's budgets
    from pbc.services.principal import AccessDenied

    with pytest.raises(AccessDenied, match="commissioner Q1"):
        set_indicative_budgets(wh, _policy(tmp_path), Principal("x", "commissioner", "Q2"),
                               statements=tmp_path / "s3")


def test_cli_sets_and_agrees_with_either_year_spelling(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pbc.cli import app
    from pbc.decisions import DecisionStore

    wh = _warehouse(tmp_path / "wh", [_spell("A", 1, "100.00"), _spell("B", 1, "300.00"),
                                      _spell("", 2, "12.34"),
                                      _rx("A", 1, "1.00"), _rx("B", 1, "3.00")])
    runner = CliRunner()
    res = runner.invoke(app, ["budgets", "set", "--policy", str(_policy(tmp_path)),
                              "--warehouse", str(wh.root), "--as", "commissioner:Q1"])
    assert res.exit_code == 0, res.output
    assert "£12.34" in res.output and "£400.00" in res.output
    res = runner.invoke(app, ["budgets", "agree", "--year", "2025/26", "--version", "1",
                              "--warehouse", str(wh.root), "--as", "commissioner:Q1"])
    assert res.exit_code == 0, res.output
    current = DecisionStore.beside(wh.root).current("2025-26")
    assert current is not None and current.status == "agreed"


def test_stored_money_is_exact_decimal_and_years_are_2025_26(tmp_path: Path) -> None:
    from pbc.decisions import DecisionStore
    from pbc.services.budgets import set_indicative_budgets

    wh = _warehouse(tmp_path / "wh", [
        _spell("A", 3, "1000.01"), _spell("B", 3, "2000.02"), _spell("", 4, "33.33"),
        _rx("A", 2, "40.00"), _rx("B", 2, "60.00"),
    ])
    run = set_indicative_budgets(wh, _policy(tmp_path), ICB)
    con = wh.connect()
    try:
        def types(table: str) -> dict[str, str]:
            return {r[0]: r[1] for r in con.execute(f"DESCRIBE {table}").fetchall()}

        ib = types("indicative_budgets")
        for col in ("budget", "fair_share", "historic", "prior_spend", "target",
                    "calculated_budget", "top_slice_share"):
            assert ib[col] == "DECIMAL(18,2)", col
        assert types("indicative_budgets_monthly")["budget"] == "DECIMAL(18,2)"
        assert types("group_budgets")["budget"] == "DECIMAL(18,2)"
        assert types("budget_commissioner_lines")["amount"] == "DECIMAL(18,2)"
        years = {r[0] for t in ("indicative_budgets", "indicative_budgets_monthly",
                                "group_budgets", "budget_commissioner_lines")
                 for r in con.execute(f"SELECT DISTINCT financial_year FROM {t}").fetchall()}
        assert years == {"2025-26"}
        total = con.execute("SELECT sum(budget) FROM indicative_budgets WHERE "
                            "service_line = 'non_elective'").fetchone()
        held = con.execute("SELECT kind, amount FROM budget_commissioner_lines").fetchall()
    finally:
        con.close()
    assert total is not None and total[0] == Decimal("3000.03")
    assert held == [("unattributed", Decimal("33.33"))]
    assert DecisionStore.beside(wh.root).current("2025-26") is not None
    assert run.statements.name == "2025-26"
    lines = pd.read_csv(run.statements / f"commissioner_held_2025-26_v{run.version}.csv",
                        dtype=str)
    assert lines[["kind", "amount"]].values.tolist() == [["unattributed", "33.33"]]


def test_group_membership_gap_falls_back_to_the_default_group(tmp_path: Path) -> None:
    """Practice A's default group is G1; practice_groups put it in G2 from April to June
    2025 and in G3 from October: in July to September no window covers it, so it is in its
    default group G1, as attribution says (the same rule, one function), never "(no
    group)". Budgets are phased flat (equal prior spend in every month)."""
    import ibis

    from pbc.attribution import group_as_at
    from pbc.services.budgets import set_indicative_budgets

    activity = [_spell(p, m, "100.00") for p in ("A", "B") for m in range(1, 13)]
    activity += [_rx("A", 1, "12.00"), _rx("B", 1, "12.00")]
    wh = _warehouse(tmp_path / "wh", activity)
    pg = pd.DataFrame({"practice_code": ["A", "A"], "group_code": ["G2", "G3"],
                       "valid_from": ["2025-04-01", "2025-10-01"],
                       "valid_to": ["2025-06-30", None]})
    with wh.begin("groups") as tx:
        con = tx.connect()
        con.register("df", pg)
        tx.write(con, "practice_groups", "SELECT practice_code, group_code, "
                 "CAST(valid_from AS DATE) AS valid_from, CAST(valid_to AS DATE) AS valid_to "
                 "FROM df", file_prefix="pg", replace=True)
        con.close()
    run = set_indicative_budgets(wh, _policy(tmp_path), ICB, statements=tmp_path / "st")
    g = run.groups.query("service_line == 'non_elective'").set_index("group_code")["budget"]
    # A's £1,200.00 is £100.00 a month: 3 months in G2, 3 in G1 (the gap), 6 in G3; B all G1
    assert g.to_dict() == {"G1": 30000 + 120000, "G2": 30000, "G3": 60000}
    # attribution puts an activity on 1 August 2025 in the same group
    con = wh.connect()
    try:
        backend = ibis.duckdb.from_connection(con)
        act = ibis.memtable(pd.DataFrame({"practice_code": ["A"],
                                          "activity_date": [pd.Timestamp("2025-08-01")]}))
        got = group_as_at(act.mutate(activity_date=act.activity_date.cast("date")),
                          {"practices": backend.table("practices"),
                           "practice_groups": backend.table("practice_groups")})
        assert backend.execute(got)["group_code"].tolist() == ["G1"]
    finally:
        con.close()


def test_budgets_without_a_practice_groups_table(tmp_path: Path) -> None:
    """practice_groups is optional: every practice is then in its default group all year."""
    from pbc.services.budgets import set_indicative_budgets

    wh = _warehouse(tmp_path / "wh", [_spell("A", 1, "100.00"), _spell("B", 1, "300.00"),
                                      _rx("A", 1, "1.00"), _rx("B", 1, "3.00")],
                    windows=False)
    run = set_indicative_budgets(wh, _policy(tmp_path), ICB, statements=tmp_path / "st")
    g = run.groups.set_index(["group_code", "service_line"])["budget"]
    assert g.to_dict() == {("G1", "non_elective"): 40000, ("G1", "prescribing"): 400}
