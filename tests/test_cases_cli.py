"""Business cases on a priced synthetic warehouse, through the command line: the baseline
pbc reads (checked against the priced rows by hand), the whole flow with users, a
consultation, refusals that say who may, a lost race, and the audit log."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pbc.cli import app
from pbc.decisions.cases import CaseError, read_case_file
from pbc.decisions.savings import gross_saving
from pbc.reference.codelists import codelist
from pbc.services.cases import read_baseline
from pbc.warehouse import Warehouse

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "business_case.toml"


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    from pbc.services.pricing import run_pricing
    from pbc.synth import SynthConfig, generate
    from pbc.warehouse.load import load

    base = tmp_path_factory.mktemp("cases")
    generate(SynthConfig(practices=4, groups=2, local_authorities=2, seed=3, years=2,
                         start_year=2024), base / "in")
    w = Warehouse(base / "wh")
    load(base / "in", w)
    run_pricing(w)
    return w


@pytest.mark.parametrize("condition", ["acsc_chronic", None])
def test_baseline_is_the_proposers_priced_activity_in_scope(wh: Warehouse,
                                                            condition: str | None) -> None:
    case, _ = read_case_file(EXAMPLE)
    case = case.model_copy(update={"scope": case.scope.model_copy(
        update={"condition_codelist": condition})})
    baseline, commissioner = read_baseline(wh, case)
    # the same figure from the rows themselves, in Python: a year with all twelve months,
    # the practice's attributed non-elective spells with a chronic ACSC primary diagnosis
    con = wh.connect()
    try:
        priced = con.execute("SELECT * FROM priced_activity").df()
        spells = con.execute("SELECT CAST(spell_id AS VARCHAR) AS activity_id, "
                             "primary_diagnosis FROM apc_spells").df()
    finally:
        con.close()
    months = priced.groupby("financial_year")["month"].nunique()
    year = max(y for y, n in months.items() if n == 12)
    rows = priced[(priced.financial_year == year) & (priced.practice_code == "A81001")
                  & (priced.service_line == "non_elective") & priced.price.notna()
                  & priced.attributed.astype(bool)]
    if condition is not None:
        rows = rows.merge(spells, on="activity_id")
        codes = codelist(condition)
        rows = rows[rows.primary_diagnosis.map(
            lambda d: any(str(d).startswith(c) for c in codes))]
    else:  # every non-elective spell: some bear the emergency marginal rate, left out
        assert (rows.marginal_rate_adjustment != 0).any()
    pence = [int((Decimal(str(p)) - Decimal(str(m))) * 100)
             for p, m in zip(rows.price, rows.marginal_rate_adjustment, strict=True)]
    assert len(pence) > 0
    assert (baseline.financial_year, baseline.rows, baseline.spend_pence,
            baseline.sum_squares_pence) == (year, len(pence), sum(pence),
                                            sum(p * p for p in pence))
    assert commissioner == "Q99"


def test_case_file_naming_what_is_not_in_the_warehouse_is_refused(wh: Warehouse) -> None:
    case, _ = read_case_file(EXAMPLE)
    for change, message in (({"proposer": "Z99999"}, "no such practice"),
                            ({"social_care": case.social_care.model_copy(
                                update={"local_authority": "E06000001"})},
                             "E06000001: not in the warehouse")):
        with pytest.raises(CaseError, match=message):
            read_baseline(wh, case.model_copy(update=change))


def test_the_whole_flow_on_the_command_line(wh: Warehouse, tmp_path: Path) -> None:
    runner = CliRunner()
    w = ["--warehouse", str(wh.root)]

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, [*args, *w], terminal_width=200)
        assert result.exit_code == code, result.output
        return result.output

    run("users", "add", "admin", "--role", "administrator", "--org", "Q99")
    run("users", "add", "j.smith", "--role", "commissioner_approver", "--org", "Q99",
        "--as", "administrator:Q99:admin")
    refused = run("users", "add", "x", "--role", "practice", "--org", "A81001", "--as",
                  "practice:A81001", code=2)
    assert "only administrator" in refused

    out = run("case", "new", "--file", str(EXAMPLE), "--as", "practice:A81001")
    assert out.splitlines()[0] == "case 1"
    case, _ = read_case_file(EXAMPLE)
    baseline, _ = read_baseline(wh, case)
    gross = gross_saving(baseline.spend_pence, Decimal("0.15"))
    assert "assumptions" in out and "seed 2026" in out

    assert "now consultation" in run("case", "submit", "1", "--as", "practice:A81001")
    refused = run("case", "approve", "1", "--as", "practice:A81001", code=2)
    assert "may not approve" in refused and "only commissioner_approver:Q99 may" in refused
    hidden = run("case", "show", "1", "--as", "local_authority:E06009001", code=2)
    assert "only" in hidden
    assert "now submitted" in run("case", "consult", "1", "--response", "We support it",
                                  "--as", "local_authority:E06009000")
    wrong = run("case", "approve", "1", "--as", "commissioner_approver:Q99:nobody", code=2)
    assert "no user 'nobody'" in wrong
    assert "now approved (version 4)" in run("case", "approve", "1", "--as",
                                             "commissioner_approver:Q99:j.smith")
    lost = run("case", "reject", "1", "--note", "late", "--expect-version", "3", "--as",
               "commissioner_approver:Q99", code=3)
    assert "conflict: case 1 was changed by someone else" in lost
    assert "j.smith" in lost

    shown = json.loads(run("case", "show", "1", "--json", "--as", "practice:A81001"))
    assert shown["status"] == "approved" and shown["consultation_response"] == "We support it"
    assert shown["savings"]["net_pence"] == 2 * gross - 6_500_000
    assert [h["action"] for h in shown["history"]] == ["create_case", "submit_case",
                                                       "consult_case", "approve_case"]
    listed = run("case", "list", "--as", "local_authority:E06009001")
    assert "Community respiratory" not in listed

    assert "intact: 6 rows" in run("audit", "verify", "--as", "commissioner:Q99")
    log = run("audit", "log", "--entity", "business_case", "--id", "1", "--as",
              "administrator:Q99:admin")
    assert [line.split()[5] for line in log.splitlines()] == [
        "create_case", "submit_case", "consult_case", "approve_case"]
