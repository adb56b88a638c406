"""Evaluation of business cases (difference in differences), reinvestment draws on freed
resources, and the demo's decision flow.

The pure core against a published 2x2 table (Card & Krueger, 1994, Table 3) and a
hand-worked example; a simulation study of the interval's coverage; then, on a small
warehouse whose case practice has a known effect planted (half of its emergency admissions
for chronic ambulatory care sensitive conditions after the case's start recoded out of the
scope), the service's evaluation, its refusals and its permissions; approvals drawing on
freed resources; and the demo's flow."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from pbc.decisions import DecisionStore
from pbc.decisions.cases import CaseError, parse_case
from pbc.decisions.evaluation import (
    EvaluationError,
    Unit,
    choose_comparators,
    difference_in_differences,
    evaluate,
    se_of_difference,
    two_by_two,
)
from pbc.services import cases as svc
from pbc.services.evaluation import evaluate_case, show_evaluation
from pbc.services.permissions import allowed
from pbc.services.principal import AccessDenied, Principal
from pbc.warehouse import Warehouse

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "business_case.toml"
PLANTED = "A81003"  # the case practice whose in-scope admissions are halved after START
START = "2025-04-01"
RECODED = "R69"  # an ill-defined cause: in no ACSC code list


# --------------------------------------------------------------------------- pure core
def test_card_and_krueger_table_3() -> None:
    """Card & Krueger (1994), Table 3: mean FTE employment per store, New Jersey (treated)
    20.44 before, 21.03 after; Pennsylvania 23.33 before, 21.17 after. The difference in
    differences is 2.75 from these rounded means (the paper prints 2.76, from unrounded
    ones), and its standard error from the two changes' (NJ 0.54, PA 1.25) is 1.36."""
    assert two_by_two(20.44, 21.03, 23.33, 21.17) == pytest.approx(2.75, abs=1e-9)
    assert round(se_of_difference(0.54, 1.25), 2) == 1.36


def test_hand_worked_difference_in_differences() -> None:
    # case 10 -> 7 (change -3); comparators' changes 1, 0, 2, 0 (mean 0.75)
    # DiD = -3 - 0.75 = -3.75; s = sqrt(2.75 / 3) = 0.957427; SE = s * sqrt(1 + 1/4)
    # = 1.070436; t(3, 0.975) = 3.182446; interval -3.75 -/+ 3.406605
    did = difference_in_differences((10, 7), [(9, 10), (11, 11), (10, 12), (12, 12)])
    assert did.estimate == pytest.approx(-3.75)
    assert did.comparators_before == pytest.approx(10.5)
    assert did.comparators_after == pytest.approx(11.25)
    assert did.se == pytest.approx(1.070436, abs=1e-6)
    assert (did.lower, did.upper) == (pytest.approx(-7.156605, abs=1e-5),
                                      pytest.approx(-0.343395, abs=1e-5))
    assert did.counterfactual_after == pytest.approx(10.75)


def test_comparators_are_the_nearest_in_standardised_features() -> None:
    def u(code: str, size: int, need: float, spend: int) -> Unit:
        return Unit(code, size, need, spend, 0, 0, 0)

    treated = u("T", 5000, 1.0, 5000)  # spend rate 1,000 per 1,000 a month (one month)
    pool = [u("near", 5100, 1.01, 5100), u("far_need", 5000, 1.6, 5000),
            u("far_size", 20000, 1.0, 20000), u("far_rate", 5000, 1.0, 15000),
            u("near2", 4900, 0.98, 4900)]
    chosen = [c.code for c, _ in choose_comparators(treated, pool, 2, 1)]
    assert chosen == ["near", "near2"]
    # a group is not matched on size: far_size is then as near as near
    group = [c.code for c, _ in choose_comparators(treated, pool, 3, 1,
                                                   match_list_size=False)]
    assert "far_size" in group


def test_too_few_comparators_or_no_months_after_are_refused() -> None:
    units = [Unit(f"P{i}", 5000, 1.0, 100, 1, 100, 1, 10_000, 10_000) for i in range(4)]
    with pytest.raises(EvaluationError, match="only 4 comparable practice"):
        evaluate(units[0], [*units[1:], units[0]], before_months=1, after_months=1)
    with pytest.raises(EvaluationError, match="no months after"):
        evaluate(units[0], units * 2, before_months=1, after_months=0)
    with pytest.raises(EvaluationError, match="at least 5 comparators"):
        evaluate(units[0], units * 2, before_months=1, after_months=1, k=3)


def _simulate(rng: np.random.Generator, effect: float) -> tuple[float, float, float, float]:
    """One economy: 40 practices, in-scope spells Poisson by list size and need, each
    practice's rate drifting between the periods (5%, beyond Poisson), a common shock;
    the first practice loses ``effect`` of its spells after. Returns the realised effect
    (rate units), the estimate, and the intervals' bounds (pbc's)."""
    n, months = 40, 12
    size = rng.integers(3000, 12000, n)
    need = rng.lognormal(0, 0.2, n)
    base = 1.5 * need  # spells per 1,000 a month
    drift = rng.lognormal(0, 0.05, n) * 1.04
    price = 2_000.0

    def spend(rate: np.ndarray) -> list[np.ndarray]:
        spells = rng.poisson(rate * size / 1000 * months)
        return [rng.lognormal(np.log(price), 0.6, k) for k in spells]

    before = spend(base)
    after_rate = base * drift
    after = spend(after_rate)
    # thin the treated practice's spells after: the realised effect is what is removed
    removed = rng.random(len(after[0])) < effect
    truth = -after[0][removed].sum() / months / size[0] * 1000
    after[0] = after[0][~removed]
    units = [Unit(f"P{i:02d}", int(size[i]), float(need[i]), int(before[i].sum()),
                  len(before[i]), int(after[i].sum()), len(after[i]),
                  int((before[i] ** 2).sum()), int((after[i] ** 2).sum())) for i in range(n)]
    _, measures = evaluate(units[0], units[1:], before_months=months, after_months=months)
    did = measures[0].did
    return truth, did.estimate, did.lower, did.upper


def test_interval_covers_a_planted_effect_at_about_its_nominal_rate() -> None:
    """Simulation study: 300 economies with 30% of the case practice's spells removed
    after; pbc's 95% interval covers the realised effect in about 95% of them (91.7% here,
    96.2% over 1,000 with another seed). An interval
    from the comparators' mean alone (s / sqrt(J), as a bootstrap over the comparators
    would give) ignores the case's own variation and covers far less."""
    rng = np.random.default_rng(20261201)
    covered = naive = 0
    runs = 300
    for _ in range(runs):
        truth, estimate, lower, upper = _simulate(rng, 0.3)
        covered += lower <= truth <= upper
        half = (upper - lower) / 2 / math.sqrt(10 + 1)  # t * s / sqrt(J), J = 10
        naive += estimate - half <= truth <= estimate + half
    # 300 runs: the coverage's standard error is about 1.2 points (measured over 1,000
    # runs with another seed: 96.2%)
    assert 0.91 <= covered / runs <= 0.99, covered / runs
    assert naive / runs < 0.6, naive / runs


# --------------------------------------------------------------------------- the warehouse
def _plant(folder: Path) -> None:
    """Recode half (by spell id) of PLANTED's emergency chronic-ACSC admissions discharged
    from START on to a diagnosis outside the scope: they leave the case's scope but keep
    their price, so the effect in money is exactly their tariff value."""
    from pbc.reference.codelists import codelist

    path = folder / "apc_spells.parquet"
    spells = pd.read_parquet(path)
    codes = codelist("acsc_chronic")
    in_scope = (spells.practice_code.astype(str) == PLANTED) \
        & spells.admission_method.astype(str).str.startswith("2") \
        & spells.primary_diagnosis.fillna("").map(lambda d: any(d.startswith(c) for c in codes)) \
        & (pd.to_datetime(spells.discharge_date, errors="coerce") >= pd.Timestamp(START))
    half = spells.spell_id.astype(str).map(
        lambda s: int(hashlib.sha256(s.encode()).hexdigest(), 16) % 2 == 0)
    spells.loc[in_scope & half, "primary_diagnosis"] = RECODED
    assert (in_scope & half).sum() >= 5
    spells.to_parquet(path, index=False)


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    from conftest import budgeted_economy

    w = budgeted_economy(tmp_path_factory.mktemp("evaluation"), practices=14, seed=11,
                         years=2, start_year=2024, before_load=_plant)
    assert isinstance(w, Warehouse)
    return w


ICB = "Q99"
APPROVER = Principal("j.smith", "commissioner_approver", ICB)
FINANCE = Principal("f.jones", "commissioner", ICB)


def _case(code: str, **changes: Any) -> tuple[Any, str]:
    import tomllib

    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    data.update({"proposer": code, "baseline_year": "2024-25",
                 "investment": {"2025-26": 40000},
                 "social_care": {"touches_social_care": False}})
    data["make_or_buy"] = {**data["make_or_buy"], "provider": code}
    data.update(changes)
    return parse_case(data), json.dumps(data, default=str)


def _implemented(store: DecisionStore, wh: Warehouse, code: str, **changes: Any) -> int:
    case, text = _case(code, **changes)
    base, icb = svc.read_baseline(wh, case)
    me = Principal("dr", "practice", code)
    view = svc.create_case(store, me, case, text, base, icb)
    for action, who in (("submit", me), ("approve", APPROVER), ("implement", me)):
        view = svc.act(store, who, view.id, action, freed_from=wh)
    return view.id


@pytest.fixture(scope="module")
def store(wh: Warehouse):
    with DecisionStore.beside(wh.root) as s:
        yield s


def _rates(wh: Warehouse, code: str, fy: str, recoded: bool) -> tuple[int, int]:
    """A practice's in-scope spend (pence) in a year, from the rows, in Python; with
    ``recoded`` also the planted rows (what it would have been without the case)."""
    from pbc.reference.codelists import codelist

    con = wh.connect()
    try:
        rows = con.execute(
            "SELECT p.price, p.marginal_rate_adjustment, s.primary_diagnosis FROM "
            "priced_activity p JOIN apc_spells s ON p.activity_id = CAST(s.spell_id AS "
            "VARCHAR) WHERE p.activity_type = 'apc' AND p.practice_code = ? AND "
            "p.financial_year = ? AND p.service_line = 'non_elective' AND p.attributed AND "
            "p.price IS NOT NULL", [code, fy]).fetchall()
    finally:
        con.close()
    codes = codelist("acsc_chronic")
    keep = [(p, m) for p, m, d in rows if any(str(d).startswith(c) for c in codes)
            or (recoded and d == RECODED)]
    return len(keep), sum(round((p - (m or 0)) * 100) for p, m in keep)


def test_evaluation_finds_the_planted_effect(wh: Warehouse, store: DecisionStore) -> None:
    case_id = _implemented(store, wh, PLANTED)
    view = evaluate_case(store, wh, FINANCE, case_id)
    assert view.status == "evaluated"
    r = view.result
    assert r["before"][0] == "2024-04" and r["after"] == [
        f"{2025 + (m > 9)}-{(m + 2) % 12 + 1:02d}" for m in range(1, 13)]
    spend = r["measures"][0]
    did = spend["per_1000_per_month"]
    size = r["case_unit"]["list_size"]
    # the case's own rates, recomputed from the rows
    _, before = _rates(wh, PLANTED, "2024-25", recoded=False)
    _, after = _rates(wh, PLANTED, "2025-26", recoded=False)
    _, would_have = _rates(wh, PLANTED, "2025-26", recoded=True)
    assert did["treated_before"] == pytest.approx(before / 12 / size * 1000)
    assert did["treated_after"] == pytest.approx(after / 12 / size * 1000)
    # the planted effect: the recoded rows' tariff value, per 1,000 a month
    truth = (after - would_have) / 12 / size * 1000
    assert truth < 0
    # in activity (spells, Poisson) the 95% interval covers the planted effect
    rows = r["measures"][1]["per_1000_per_month"]
    n_after, _ = _rates(wh, PLANTED, "2025-26", recoded=False)
    n_would, _ = _rates(wh, PLANTED, "2025-26", recoded=True)
    rows_truth = (n_after - n_would) / 12 / size * 1000
    assert rows["lower"] <= rows_truth <= rows["upper"], (rows_truth, rows)
    # without the plant, the same comparators would give exactly the estimate less it
    unplanted = difference_in_differences(
        (did["treated_before"], would_have / 12 / size * 1000),
        [(c["spend_before_per_1000_per_month"], c["spend_after_per_1000_per_month"])
         for c in r["comparators"]])
    assert did["estimate"] == pytest.approx(unplanted.estimate + truth)
    assert len(r["comparators"]) == 10 and PLANTED not in {c["code"] for c in r["comparators"]}
    # the proposer may see it; stored and audited
    shown = show_evaluation(store, Principal("dr", "practice", PLANTED), case_id)
    assert shown.result == r
    # and pbc case show prints it after the case, for those who may see it
    import json

    from typer.testing import CliRunner

    from pbc.cli import app

    base = ["case", "show", str(case_id), "--warehouse", str(wh.root)]
    out = CliRunner().invoke(app, [*base, "--as", f"practice:{PLANTED}"], terminal_width=200)
    assert out.exit_code == 0, out.output
    assert "difference in differences" in out.output and "comparison group" in out.output
    out = CliRunner().invoke(app, [*base, "--json", "--as", f"practice:{PLANTED}"])
    assert json.loads(out.output)["evaluation"]["result"] == r
    assert svc.verify_audit(store, FINANCE).ok
    events = svc.audit_log(store, FINANCE, entity="business_case", entity_id=str(case_id))
    assert events[-1].action == "evaluate_case"


def test_evaluation_refusals(wh: Warehouse, store: DecisionStore) -> None:
    case_id = _implemented(store, wh, "A81004")
    with pytest.raises(EvaluationError, match="no priced activity from 2026-10"):
        evaluate_case(store, wh, FINANCE, case_id, started="2026-10")
    with pytest.raises(EvaluationError, match="not after its baseline year"):
        evaluate_case(store, wh, FINANCE, case_id, started="2024-10")
    with pytest.raises(EvaluationError, match="at least 5 comparators"):
        evaluate_case(store, wh, FINANCE, case_id, comparators=4)
    for who in (Principal("dr", "practice", "A81004"), Principal("x", "commissioner", "Q00"),
                Principal("la", "local_authority", "E06009000")):
        with pytest.raises(AccessDenied, match="only commissioner:Q99 or "
                                               "commissioner_approver:Q99 may"):
            evaluate_case(store, wh, who, case_id)
    with pytest.raises(CaseError, match="has not been evaluated"):
        show_evaluation(store, Principal("dr", "practice", "A81004"), case_id)
    with pytest.raises(AccessDenied):
        show_evaluation(store, Principal("dr", "practice", "A81005"), case_id)
    # a case that is not implemented cannot be evaluated
    case, text = _case("A81006")
    base, icb = svc.read_baseline(wh, case)
    draft = svc.create_case(store, Principal("dr", "practice", "A81006"), case, text, base, icb)
    with pytest.raises(CaseError, match="only a case that is evaluated or implemented"):
        evaluate_case(store, wh, FINANCE, draft.id)
    # ten of the other 13 practices in cases on the same service line: excluded as
    # comparators, three remain
    busy = ["A81000", "A81001", "A81002", "A81005", "A81007", "A81008", "A81009", "A81010",
            "A81011"]
    for code in busy:
        _implemented(store, wh, code)
    with pytest.raises(EvaluationError, match="comparable practice"):
        evaluate_case(store, wh, FINANCE, case_id)


@pytest.mark.parametrize(("role", "org", "evaluate", "view"), [
    ("commissioner", ICB, True, True),
    ("commissioner_approver", ICB, True, True),
    ("commissioner", "Q00", False, False),
    ("practice", "A81001", False, True),
    ("practice", "A81002", False, False),
    ("group", "G01", False, False),
    ("local_authority", "E06009000", False, False),
    ("commissioner_data", ICB, False, False),
    ("administrator", ICB, False, False),
    ("public", "-", False, False),
])
def test_permission_rows(role: str, org: str, evaluate: bool, view: bool) -> None:
    from pbc.services.permissions import CaseParties

    case = CaseParties("A81001", ICB, "E06009000", True, 1, "practice")
    who = Principal("u", role, org)  # type: ignore[arg-type]
    assert allowed(who, "evaluate_case", case) is evaluate
    assert allowed(who, "view_evaluation", case) is view


# --------------------------------------------------------------------------- reinvestment
def test_reinvestment_draws_within_freed_resources_and_refuses_beyond(
        wh: Warehouse, store: DecisionStore) -> None:
    from pbc.decisions.reinvestment import ReinvestmentDraw
    from pbc.monitoring.freed import PlanDraw
    from pbc.services.monitoring import freed_resources_report

    freed = freed_resources_report(wh, FINANCE, "2025-26").frame
    row = freed[freed.reinvestable > 0].sort_values("code").iloc[0]
    code, reinvestable = str(row.code), int(row.reinvestable)
    me = Principal("dr", "practice", code)

    def propose(pounds: float, funding: str = "freed_resources") -> int:
        case, text = _case(code, investment={"2026-27": pounds}, funding=funding)
        base, icb = svc.read_baseline(wh, case)
        view = svc.create_case(store, me, case, text, base, icb)
        return svc.act(store, me, view.id, "submit").id

    within = round(reinvestable * 0.6) / 100
    first = propose(within)
    with pytest.raises(CaseError, match="needs the warehouse"):
        svc.act(store, APPROVER, first, "approve")
    svc.act(store, APPROVER, first, "approve", freed_from=wh)
    second = propose(within)  # 60% again: more than the 40% left
    rows_before = svc.verify_audit(store, FINANCE).rows
    with pytest.raises(CaseError) as refused:
        svc.act(store, APPROVER, second, "approve", freed_from=wh)
    message = str(refused.value)
    left = reinvestable - round(within * 100)
    assert f"only £{left / 100:,.2f} is reinvestable" in message
    assert "2025-26: budget" in message and "(actual)" in message
    assert svc.show(store, APPROVER, second).status == "submitted"
    assert svc.verify_audit(store, FINANCE).rows == rows_before  # nothing written
    # the same amount funded by the commissioner draws nothing and is approved
    third = propose(within, funding="commissioner")
    svc.act(store, APPROVER, third, "approve", freed_from=wh)
    with store._session() as s:
        draws = [(d.case_id, d.code, d.financial_year, d.amount_pence)
                 for d in s.query(ReinvestmentDraw).all()]
    assert draws == [(first, code, "2026-27", round(within * 100))]
    # pbc freed-resources shows it as an approved plan, drawn in 2026-27 on 2025-26's
    report = freed_resources_report(wh, FINANCE, "2025-26")
    title = svc.show(store, APPROVER, first).title
    assert PlanDraw(code, "2026-27", f"case {first}: {title}"[:250], "2025-26",
                    round(within * 100)) in report.draws
    assert svc.verify_audit(store, FINANCE).ok


# --------------------------------------------------------------------------- the demo
def test_demo_decisions(tmp_path: Path, wh: Warehouse) -> None:
    """The demo's flow on a copy of the warehouse with a fresh decision store."""
    import shutil

    from pbc.services.decisions_demo import demo_decisions

    copy = tmp_path / "wh"
    shutil.copytree(wh.root, copy, symlinks=True,
                    ignore=shutil.ignore_patterns("decisions.sqlite*"))
    w = Warehouse(copy)
    # the budgets of 2025-26 again, in the fresh store (freed resources need them)
    from conftest import DEMO_POLICY
    from pbc.services.budgets import set_indicative_budgets

    policy = tmp_path / "policy.toml"
    policy.write_text(DEMO_POLICY.read_text(encoding="utf-8").replace(
        'financial_year = "2026-27"', 'financial_year = "2025-26"'), encoding="utf-8")
    set_indicative_budgets(w, policy, FINANCE, statements=tmp_path / "statements")
    console = Console(record=True, width=200)
    seen: list[str] = []
    ctx = demo_decisions(w, tmp_path / "out", console,
                         extra_steps=[lambda c: seen.append(sorted(c.users)[0])])
    text = console.export_text()
    assert seen == ["administrator"]
    with DecisionStore.beside(copy) as s:
        case = svc.show(s, FINANCE, ctx.cases["respiratory"])
        assert case.status == "evaluated"
        assert [h["action"] for h in case.history] == [
            "create_case", "submit_case", "consult_case", "approve_case", "implement_case",
            "evaluate_case"]
        assert svc.show(s, FINANCE, ctx.cases["reinvestment_within"]).status == "approved"
        assert svc.show(s, FINANCE, ctx.cases["reinvestment_beyond"]).status == "submitted"
    assert "difference in differences" in text and "refused" in text
    assert f"audit log intact: {ctx.audit_rows:,} rows" in text
