"""Provider contracts and invoice validation: the synthetic invoice's planted errors all found
and classified (through the command line, as a commissioner would), precedence when several
apply, lines and money reconciling over random invoices (Hypothesis), the contract position
against a hand-worked case and against the priced rows, bad input naming file, row and
column, the permission rows, invoices checked earlier, and the demo function."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from pbc.cli import app
from pbc.decisions import DecisionStore
from pbc.decisions.provider_contracts import (
    ContractError,
    ContractFile,
    LinePlan,
    contract_toml,
    read_contract_file,
)
from pbc.invoices.check import CLASSES, PRECEDENCE, Activity, check_invoice, classify
from pbc.invoices.invoice import InvoiceError, InvoiceLine, invoice_csv, parse_invoice
from pbc.invoices.position import MonthPlan, contract_position
from pbc.services import cases as case_svc
from pbc.services import invoices as svc
from pbc.services.principal import AccessDenied, Principal
from pbc.warehouse import Warehouse

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "provider_contract.toml"
FINANCE = Principal("fin", "commissioner", "Q99")
SEED = 5


@pytest.fixture(scope="module")
def economy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Warehouse]:
    """A synthetic economy and what ``pbc synth --invoice`` writes beside it (the synth
    loads and prices it in a scratch warehouse, kept here as the commissioner's warehouse:
    the same files loaded and priced the same way)."""
    from pbc.synth import SynthConfig, generate

    base = tmp_path_factory.mktemp("invoices")
    generate(SynthConfig(practices=3, groups=2, local_authorities=2, seed=SEED), base / "in")
    svc.synth_invoice(base / "in", seed=SEED, keep=base / "wh")
    return base / "in", Warehouse(base / "wh")


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh decision store (SQLite) that the command line uses; the services' tests
    below run on SQLite and PostgreSQL (``decision_url``)."""
    url = f"sqlite:///{tmp_path / 'cli-decisions.sqlite'}"
    monkeypatch.setenv("PBC_DATABASE_URL", url)
    return url


def run(*args: object) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def read_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def planted_invoice(folder: Path, sub: str = "invoices") -> tuple[Path, Path, Path]:
    """The invoice, its planted truth and its contract, as the synth writes them."""
    where = folder / sub if sub else folder
    (invoice,) = [p for p in where.glob("*.csv") if "_" not in p.stem]
    return (invoice, where / f"{invoice.stem}_planted.csv",
            where / f"{invoice.stem}_contract.toml")


def test_invoice_check_finds_every_planted_error(economy: tuple[Path, Warehouse], store_url: str,
                                                 tmp_path: Path) -> None:
    folder, wh = economy
    invoice, truth_file, contract = planted_invoice(folder)
    provider = invoice.stem
    truth = {int(r["row"]): r for r in read_rows(truth_file)}
    planted = sorted(r["class"] for r in truth.values())
    assert planted == sorted(k for k in CLASSES if k != "matched" for _ in range(3))

    # before the contract is recorded, every line of ours but a duplicate is outside it
    out = tmp_path / "before.csv"
    result = run("invoice", "check", invoice, "--provider", provider, "--csv", out,
                 "--warehouse", wh.root, "--as", "commissioner:Q99", "--no-record")
    assert result.exit_code == 0, result.output
    before = list(read_rows(out))
    assert {r["class"] for r in before} == {"not_ours", "duplicate", "not_in_contract"}

    result = run("contract", "add", contract, "--warehouse", wh.root, "--as", "commissioner:Q99")
    assert result.exit_code == 0, result.output
    out = tmp_path / "checked.csv"
    result = run("invoice", "check", invoice, "--provider", provider, "--csv", out, "--xlsx",
                 tmp_path / "checked.xlsx", "--warehouse", wh.root, "--as", "commissioner:Q99")
    assert result.exit_code == 0, result.output
    lines = list(read_rows(out))
    invoice_rows = list(read_rows(invoice))
    assert len(lines) == len(invoice_rows) > 100
    for row in lines:  # every planted error found and classified, every other line matched
        expected = truth[int(row["row"])]["class"] if int(row["row"]) in truth else "matched"
        assert row["class"] == expected, row
    # reconciliation: lines in = sum of classes; invoiced money = sum of classes' money
    invoiced = sum(Decimal(r["amount"]) for r in invoice_rows)
    assert sum(Decimal(r["amount"]) for r in lines) == invoiced
    # the challenge list: every line not matched, with its reason and amount
    challenges = list(read_rows(svc.challenge_path(out)))
    assert sorted(int(r["row"]) for r in challenges) == sorted(truth)
    assert all(r["reason"] and r["at_stake"] for r in challenges)
    for r in challenges:
        if r["class"] == "wrong_price":
            assert Decimal(r["at_stake"]) == Decimal(r["amount"]) - Decimal(r["pbc_price"]) != 0
        elif r["class"] != "wrong_practice":
            assert Decimal(r["at_stake"]) == Decimal(r["amount"])

    import openpyxl

    book = openpyxl.load_workbook(tmp_path / "checked.xlsx", read_only=True)
    assert book.sheetnames == ["Summary", "Challenges", "Lines"]
    book.close()

    # the same file again is refused (it was recorded), and the audit chain holds
    result = run("invoice", "check", invoice, "--provider", provider, "--csv", out,
                 "--warehouse", wh.root, "--as", "commissioner:Q99")
    assert result.exit_code == 2 and "checked already" in result.output
    with DecisionStore(store_url) as store:
        assert case_svc.verify_audit(store, FINANCE).ok
        actions = [e.action for e in store.audit_log()]
        assert actions == ["add_contract", "check_invoice"]


def test_synth_without_invoice_writes_no_invoice(economy: tuple[Path, Warehouse]) -> None:
    # the option off leaves the synth's outputs as they were (test_synth.py checks them
    # byte for byte); the invoice is written only into invoices/
    folder, _ = economy
    assert sorted(p.name for p in (folder / "invoices").iterdir()) == sorted(
        p.name for p in planted_invoice(folder))


def test_an_invoice_checked_earlier_makes_its_lines_duplicates(
        economy: tuple[Path, Warehouse], decision_url: str, tmp_path: Path) -> None:
    folder, wh = economy
    invoice, _, contract_file = planted_invoice(folder)
    lines = parse_invoice(invoice.read_text(encoding="utf-8"))
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    first.write_text(invoice_csv(lines[:40]), encoding="utf-8")
    second.write_text(invoice_csv(lines[30:60]), encoding="utf-8")
    with DecisionStore(decision_url) as store:
        svc.add_contract(store, wh, FINANCE, contract_file)
        one = svc.check_invoice_file(store, wh, FINANCE, first, invoice.stem)
        two = svc.check_invoice_file(store, wh, FINANCE, second, invoice.stem)
        billed_in_one = {x.line.key for x in one.check.lines
                         if x.klass not in ("not_ours", "duplicate")}
        for x in two.check.lines:
            if x.line.key in billed_in_one:
                assert x.klass == "duplicate"
                assert f"invoice check {one.check_id}" in x.reason
            else:
                assert x.klass != "duplicate" or "this invoice" in x.reason
        assert sum(x.line.key in billed_in_one for x in two.check.lines) >= 8
        with pytest.raises(ContractError, match="checked already"):
            svc.check_invoice_file(store, wh, FINANCE, second, invoice.stem)
        again = svc.check_invoice_file(store, wh, FINANCE, second, invoice.stem, record=False)
        assert again.check_id is None
        assert case_svc.verify_audit(store, FINANCE).ok


def test_lines_are_checked_at_tariff_value_not_after_the_marginal_rate(
        economy: tuple[Path, Warehouse], decision_url: str, tmp_path: Path) -> None:
    # emergency spells discharged after the contract passed its baseline carry a
    # marginal-rate cut; the provider bills them at tariff, which pbc matches
    folder, wh = economy
    _, _, contract_file = planted_invoice(folder)
    contract, _ = read_contract_file(contract_file)
    cut = wh.query(
        "SELECT activity_id, coalesce(practice_code, ''), activity_date, "
        "price - marginal_rate_adjustment, price FROM priced_activity WHERE provider_code = ? "
        "AND commissioner_code = 'Q99' AND financial_year = ? AND marginal_rate_adjustment < 0 "
        "AND service_line IN ('non_elective') ORDER BY activity_id LIMIT 5",
        [contract.provider, contract.financial_year])
    assert len(cut) == 5 and "non_elective" in contract.plan
    lines = [InvoiceLine(n, r[0], "apc", r[1], r[2], int(r[3] * 100))
             for n, r in enumerate(cut, start=2)]
    lines.append(InvoiceLine(7, cut[0][0], "apc", cut[0][1], cut[0][2], int(cut[0][4] * 100)))
    invoice = tmp_path / "cut.csv"
    invoice.write_text(invoice_csv(lines[:5]), encoding="utf-8")
    with DecisionStore(decision_url) as store:
        svc.add_contract(store, wh, FINANCE, contract_file)
        got = svc.check_invoice_file(store, wh, FINANCE, invoice, contract.provider,
                                     record=False)
        assert [x.klass for x in got.check.lines] == ["matched"] * 5
        invoice.write_text(invoice_csv(lines[5:]), encoding="utf-8")  # billed after the cut
        got = svc.check_invoice_file(store, wh, FINANCE, invoice, contract.provider,
                                     record=False)
        assert got.check.lines[0].klass == "wrong_price"
        assert got.check.lines[0].at_stake_pence == int((cut[0][4] - cut[0][3]) * 100) < 0


# --------------------------------------------------------------------------- precedence
def _line(row: int = 2, aid: str = "S1", amount: int = 10000, practice: str = "A1"
          ) -> InvoiceLine:
    return InvoiceLine(row, aid, "apc", practice, dt.date(2025, 4, 3), amount)


def _pbc(aid: str = "S1", *, commissioner: str = "Q99", provider: str = "RA",
         practice: str | None = "A1", value: int | None = 10000, line: str = "day_case",
         year: str = "2025-26") -> Activity:
    return Activity("apc", aid, commissioner, provider, practice, year, 1, line, value,
                    None if value is not None else "no tariff")


CONTRACTS = {"2025-26": frozenset({"day_case"})}


@pytest.mark.parametrize(("line", "pbc", "contracts", "seen", "expected"), [
    (_line(), _pbc(), CONTRACTS, None, "matched"),
    (_line(), None, CONTRACTS, "row 2", "not_ours"),  # unknown and billed before
    (_line(), _pbc(provider="RB"), CONTRACTS, None, "not_ours"),
    (_line(amount=1), _pbc(commissioner="Q98"), {}, "row 2", "not_ours"),
    (_line(amount=1, practice="A2"), _pbc(), {}, "row 2", "duplicate"),
    (_line(amount=1, practice="A2"), _pbc(), {}, None, "not_in_contract"),
    (_line(amount=1), _pbc(line="ae"), CONTRACTS, None, "not_in_contract"),
    (_line(), _pbc(year="2026-27"), CONTRACTS, None, "not_in_contract"),
    (_line(amount=1, practice="A2"), _pbc(), CONTRACTS, None, "wrong_price"),
    (_line(), _pbc(value=None), CONTRACTS, None, "wrong_price"),
    (_line(practice="A2"), _pbc(), CONTRACTS, None, "wrong_practice"),
    (_line(practice="A1"), _pbc(practice=None), CONTRACTS, None, "wrong_practice"),
    (_line(practice=""), _pbc(practice=None), CONTRACTS, None, "matched"),
])
def test_precedence_when_several_classes_apply(line: InvoiceLine, pbc: Activity | None,
                                               contracts: dict[str, frozenset[str]],
                                               seen: str | None, expected: str) -> None:
    got = classify(line, pbc, provider="RA", commissioner="Q99", contracts=contracts,
                   seen_earlier=seen)
    assert got.klass == expected
    assert got.reason or expected == "matched"


def test_wrong_price_at_stake_is_the_difference() -> None:
    got = classify(_line(amount=10250), _pbc(), provider="RA", commissioner="Q99",
                   contracts=CONTRACTS, seen_earlier=None)
    assert (got.klass, got.at_stake_pence) == ("wrong_price", 250)
    under = classify(_line(amount=9000), _pbc(), provider="RA", commissioner="Q99",
                     contracts=CONTRACTS, seen_earlier=None)
    assert under.at_stake_pence == -1000 and "-£10.00" in under.reason


UNIVERSE = [_pbc(f"S{i}", commissioner="Q99" if i % 5 else "Q98",
                 provider="RA" if i % 7 else "RB", practice=f"A{i % 3}" if i % 4 else None,
                 value=None if i % 11 == 0 else 1000 + 37 * i,
                 line=("day_case", "ae", "non_elective")[i % 3]) for i in range(30)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 34), st.integers(0, 5000), st.sampled_from(
    ["A0", "A1", "A2", ""]), st.booleans()), min_size=1, max_size=60),
    st.sets(st.sampled_from(["day_case", "ae", "non_elective"])),
    st.sets(st.integers(0, 34)))
def test_lines_and_money_reconcile_over_random_invoices(
        picks: list[tuple[int, int, str, bool]], planned: set[str], earlier: set[int]) -> None:
    known = {("apc", a.activity_id): a for a in UNIVERSE}
    lines = []
    for n, (i, amount, practice, exact) in enumerate(picks, start=2):
        pbc = known.get(("apc", f"S{i}"))
        pence = pbc.value_pence if exact and pbc and pbc.value_pence is not None else amount
        lines.append(_line(n, f"S{i}", pence,
                           (pbc.practice_code or "") if exact and pbc else practice))
    check = check_invoice(lines, known, provider="RA", commissioner="Q99",
                          contracts={"2025-26": frozenset(planned)} if planned else {},
                          billed_before={("apc", f"S{i}"): "check 1" for i in earlier})
    check.reconcile()
    assert len(check.lines) == len(lines) == sum(t.lines for t in check.totals)
    assert sum(x.amount_pence for x in lines) == sum(t.invoiced_pence for t in check.totals)
    assert [t.klass for t in check.totals] == list(CLASSES)
    seen: set[tuple[str, str]] = set()
    for x in check.lines:  # each line's class, re-derived by the written precedence
        pbc = known.get(x.line.key)
        applies = {
            "not_ours": pbc is None or pbc.provider_code != "RA" or pbc.commissioner_code != "Q99",
            "duplicate": x.line.key in seen or int(x.line.activity_id[1:]) in earlier,
            "not_in_contract": pbc is not None and pbc.service_line not in planned,
            "wrong_price": pbc is not None and pbc.value_pence != x.line.amount_pence,
            "wrong_practice": pbc is not None and (pbc.practice_code or "") != x.line.practice_code,
        }
        expected = next((k for k in PRECEDENCE if applies[k]), "matched")
        assert x.klass == expected
        if x.klass != "not_ours":
            seen.add(x.line.key)
    assert sum(1 for x in check.lines if x.klass != "matched") == len(check.challenges)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("text", "message"), [
    ("activity_id,dataset,practice_code,activity_date\nS1,apc,A1,2025-04-01\n",
     "row 1 (the header): missing column(s) amount"),
    ("activity_id,dataset,practice_code,activity_date,amount\nS1,apc,A1,2025-04-01,12.3x\n",
     "row 2, column amount: '12.3x' is not an amount in pounds"),
    ("activity_id,dataset,practice_code,activity_date,amount\nS1,apc,A1,2025-04-01,1\n"
     "S2,apc,A1,2025-04-01,1.005\n", "row 3, column amount: '1.005' has fractions of a penny"),
    ("activity_id,dataset,practice_code,activity_date,amount\nS1,apc,A1,2025-04-01,-5\n",
     "row 2, column amount: '-5' is negative"),
    ("activity_id,dataset,practice_code,activity_date,amount\nS1,apc,A1,01/04/2025,5\n",
     "row 2, column activity_date: '01/04/2025' is not a date YYYY-MM-DD"),
    ("activity_id,dataset,practice_code,activity_date,amount\nS1,rx,A1,2025-04-01,5\n",
     "row 2, column dataset: 'rx' is not one of apc, op, ae"),
    ("activity_id,dataset,practice_code,activity_date,amount\n,apc,A1,2025-04-01,5\n",
     "row 2, column activity_id: blank"),
    ("activity_id,dataset,practice_code,activity_date,amount\nS1,apc,A1,2025-04-01\n",
     "row 2: 4 fields, the header has 5"),
    ("", "empty file"),
])
def test_bad_invoice_names_file_row_and_column(text: str, message: str) -> None:
    with pytest.raises(InvoiceError) as e:
        parse_invoice(text, "inv.csv")
    assert str(e.value).startswith("inv.csv: ") and message in str(e.value)


def test_bad_invoice_on_the_command_line(economy: tuple[Path, Warehouse], store_url: str,
                                         tmp_path: Path) -> None:
    _, wh = economy
    bad = tmp_path / "bad.csv"
    bad.write_text("activity_id,dataset,practice_code,activity_date,amount\n"
                   "S1,apc,A1,2025-04-01,£12\nS2,apc,A1,2025-04-31,3\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    result = run("invoice", "check", bad, "--provider", "R0A", "--csv", out, "--warehouse",
                 wh.root, "--as", "commissioner:Q99", "--no-record")
    assert result.exit_code == 2
    assert f"{bad}: row 3, column activity_date: '2025-04-31'" in " ".join(
        result.output.split())
    assert not out.exists()


def test_bad_contract_files_name_each_field(tmp_path: Path) -> None:
    good, _ = read_contract_file(EXAMPLE)
    assert good.financial_year == "2025-26" and "non_elective" in good.plan
    bad = tmp_path / "c.toml"
    bad.write_text('commissioner = "Q99"\nprovider = "R0A"\nfinancial_year = "2025/26"\n'
                   '[plan.maternity]\nactivity = [1]\nmoney = [1, 2]\n'
                   '[plan.day_case]\nactivity = [1,1,1,1,1,1,1,1,1,1,1,1]\n'
                   'money = [1,1,1,1,1,1,1,1,1,1,1,-1]\n', encoding="utf-8")
    with pytest.raises(ContractError) as e:
        read_contract_file(bad)
    text = str(e.value)
    assert text.startswith(f"{bad}: ")
    assert "plan.maternity.[key]: Input should be 'elective_inpatient'" in text
    assert "plan.maternity.activity" in text and "plan.day_case.money.11" in text


# --------------------------------------------------------------------------- position
def test_contract_position_hand_worked() -> None:
    plan = {"day_case": MonthPlan((10, 12) + (0,) * 10, (100000, 120000) + (0,) * 10),
            "ae": MonthPlan((5, 5) + (0,) * 10, (5000, 5000) + (0,) * 10)}
    actual = {("day_case", 1): (11, 104500), ("day_case", 2): (9, 93000),
              ("ae", 2): (7, 7700), ("non_elective", 2): (1, 250000)}
    pos = contract_position(plan, actual, 2, marginal_rate_pence=-1234)
    may = pos.row("day_case", 2)
    assert (may.plan_pence, may.actual_pence, may.variance_pence) == (120000, 93000, -27000)
    assert (may.ytd_plan_pence, may.ytd_actual_pence, may.ytd_variance_pence) == (
        220000, 197500, -22500)
    assert (may.ytd_plan_activity, may.ytd_actual_activity, may.ytd_variance_activity) == (
        22, 20, -2)
    april_ae = pos.row("ae", 1)
    assert (april_ae.actual_pence, april_ae.variance_pence) == (0, -5000)
    outside = pos.row("non_elective", 2)  # activity outside the plan is shown, plan 0
    assert (outside.plan_pence, outside.ytd_variance_pence) == (0, 250000)
    total = pos.row("total", 2)
    assert (total.ytd_plan_pence, total.ytd_actual_pence) == (230000, 455200)
    assert total.ytd_variance_pence == -22500 - 2300 + 250000
    assert [r.service_line for r in pos.year_to_date] == ["day_case", "ae", "non_elective",
                                                          "total"]
    with pytest.raises(ValueError, match="month 13"):
        contract_position(plan, actual, 13)


def test_contract_position_on_the_warehouse(economy: tuple[Path, Warehouse],
                                            decision_url: str, tmp_path: Path) -> None:
    folder, wh = economy
    _, _, contract_file = planted_invoice(folder)
    inv, _ = read_contract_file(contract_file)
    with DecisionStore(decision_url) as store:
        svc.add_contract(store, wh, FINANCE, contract_file)
        view, pos = svc.position(store, wh, FINANCE, inv.provider, inv.financial_year, 12)
    con = wh.connect()
    try:
        rows = con.execute("SELECT * FROM priced_activity").df()
    finally:
        con.close()
    rows = rows[(rows.commissioner_code == "Q99") & (rows.provider_code == inv.provider)
                & (rows.financial_year == inv.financial_year) & rows.price.notna()
                & rows.activity_type.isin(["apc", "op", "ae"])]
    for sl, part in rows.groupby("service_line"):
        value = sum(Decimal(str(p)) - Decimal(str(m)) for p, m in
                    zip(part.price, part.marginal_rate_adjustment, strict=True))
        r = pos.row(str(sl), 12)
        assert r.ytd_actual_pence == int(value * 100)
        assert r.ytd_actual_activity == len(part)
        plan = view.contract.month_plans().get(str(sl))
        assert r.ytd_plan_pence == (sum(plan.pence) if plan else 0)
        march = part[part.month == 12]
        assert r.actual_pence == int(sum(Decimal(str(p)) - Decimal(str(m)) for p, m in zip(
            march.price, march.marginal_rate_adjustment, strict=True)) * 100)
    mra = sum(Decimal(str(m)) for m in rows.marginal_rate_adjustment)
    assert pos.marginal_rate_pence == int(mra * 100) < 0  # the year's cut, shown apart
    written = svc.write_position(view, pos, csv_out=tmp_path / "p.csv",
                                 xlsx_out=tmp_path / "p.xlsx")
    assert all(p.exists() for p in written)


def test_contract_commands(economy: tuple[Path, Warehouse], store_url: str, tmp_path: Path) -> None:
    _, wh = economy
    result = run("contract", "add", EXAMPLE, "--warehouse", wh.root, "--as",
                 "commissioner:Q99")
    assert result.exit_code == 0, result.output
    result = run("contract", "add", EXAMPLE, "--warehouse", wh.root, "--as",
                 "commissioner:Q99")
    assert result.exit_code == 2 and "already recorded" in result.output
    result = run("contract", "show", "R0A", "--year", "2025/26", "--warehouse", wh.root,
                 "--as", "commissioner_approver:Q99")
    assert result.exit_code == 0 and "non_elective" in result.output, result.output
    result = run("contract", "position", "R0A", "--year", "2025-26", "--month", "6",
                 "--csv", tmp_path / "pos.csv", "--xlsx", tmp_path / "pos.xlsx",
                 "--warehouse", wh.root, "--as", "commissioner:Q99")
    assert result.exit_code == 0, result.output
    rows = list(read_rows(tmp_path / "pos.csv"))
    assert {r["month"] for r in rows} == {str(m) for m in range(1, 7)}
    result = run("contract", "show", "R0B", "--year", "2025-26", "--warehouse", wh.root,
                 "--as", "commissioner:Q99")
    assert result.exit_code == 2 and "no contract of Q99 with R0B" in result.output


# --------------------------------------------------------------------------- permissions
PERMISSION_ROWS = [  # (who, action, allowed); every role that may not is refused
    (Principal("f", "commissioner", "Q99"), "add", True),
    (Principal("f", "commissioner", "Q98"), "add", False),
    (Principal("a", "commissioner_approver", "Q99"), "add", False),
    (Principal("p", "practice", "A81001"), "add", False),
    (Principal("a", "administrator", "Q99"), "add", False),
    (Principal("f", "commissioner", "Q99"), "check", True),
    (Principal("a", "commissioner_approver", "Q99"), "check", False),
    (Principal("p", "practice", "A81001"), "check", False),
    (Principal("g", "group", "G01"), "check", False),
    (Principal("l", "local_authority", "E06000001"), "check", False),
    (Principal("d", "commissioner_data", "Q99"), "check", False),
    (Principal("a", "commissioner_approver", "Q99"), "view", True),
    (Principal("f", "commissioner", "Q99"), "view", True),
    (Principal("p", "practice", "A81001"), "view", False),
    (Principal("l", "local_authority", "E06000001"), "view", False),
]


def test_permission_rows(economy: tuple[Path, Warehouse], decision_url: str,
                         tmp_path: Path) -> None:
    _, wh = economy
    contract = ContractFile(commissioner="Q99", provider="R0A", financial_year="2025-26",
                            plan={"ae": LinePlan(activity=[1] * 12, money=[1] * 12)})
    invoice = tmp_path / "inv.csv"
    with DecisionStore(decision_url) as store:
        for n, (who, action, allowed) in enumerate(PERMISSION_ROWS):
            invoice.write_text(invoice_csv([_line(2, f"X{n}")]), encoding="utf-8")

            def act(who: Principal = who, action: str = action) -> object:
                if action == "add":
                    return svc.record_contract(store, wh, who, contract,
                                               contract_toml(contract))
                if action == "check":
                    return svc.check_invoice_file(store, wh, who, invoice, "R0A")
                return svc.show_contract(store, who, "R0A", "2025-26", wh)

            if allowed:
                act()
            else:
                with pytest.raises(AccessDenied, match=r"only commissioner(_approver)?:Q99 "):
                    act()
        with pytest.raises(ContractError, match="no contract of Q98 with R0A"):
            svc.show_contract(store, Principal("f", "commissioner", "Q98"), "R0A", "2025-26")
        assert case_svc.verify_audit(store, FINANCE).ok
        assert [e.action for e in store.audit_log()] == ["add_contract", "check_invoice"]


def test_refusal_on_the_command_line_says_who_may(economy: tuple[Path, Warehouse], store_url: str,
                                                  tmp_path: Path) -> None:
    folder, wh = economy
    invoice, _, _ = planted_invoice(folder)
    result = run("invoice", "check", invoice, "--provider", invoice.stem, "--csv",
                 tmp_path / "x.csv", "--warehouse", wh.root, "--as", "practice:A81001")
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert "may not read and check a provider's invoice" in said
    assert "only commissioner:Q99 may" in said
    assert not (tmp_path / "x.csv").exists()


# --------------------------------------------------------------------------- demo
def test_demo_invoice_check(economy: tuple[Path, Warehouse], store_url: str,
                            tmp_path: Path) -> None:
    _, wh = economy
    console = Console(record=True, width=120)
    outcome = svc.demo_invoice_check(wh, tmp_path, console)
    text = console.export_text()
    assert "Wrong practice" in text and "planted: 15 errors" in text
    planted = next((tmp_path / "invoice_check").glob("*_planted.csv"))
    truth = {int(r["row"]): r["class"] for r in read_rows(planted)}
    assert {x.line.row: x.klass for x in outcome.check.lines if x.klass != "matched"} == truth
    for name in ("checked_lines.csv", "checked_lines_challenges.csv", "invoice_check.xlsx"):
        assert (tmp_path / "invoice_check" / name).exists()
    assert outcome.check_id == 1
    with DecisionStore(store_url) as store:
        assert [e.action for e in store.audit_log()] == ["add_contract", "check_invoice"]
        assert case_svc.verify_audit(store, FINANCE).ok


def test_invoice_plant_on_the_command_line(economy: tuple[Path, Warehouse], store_url: str,
                                           tmp_path: Path) -> None:
    _, wh = economy
    result = run("invoice", "plant", "--out", tmp_path, "--warehouse", wh.root, "--errors", 2,
                 "--month", 2, "--seed", 9, "--as", "commissioner:Q99")
    assert result.exit_code == 0, result.output
    invoice, truth_file, contract = planted_invoice(tmp_path, sub="")
    truth = {int(r["row"]): r["class"] for r in read_rows(truth_file)}
    assert sorted(truth.values()) == sorted(k for k in CLASSES[1:] for _ in range(2))
    lines = parse_invoice(invoice.read_text(encoding="utf-8"))
    assert {x.activity_date.month for x in lines if not x.activity_id.startswith("X")} == {5}
    with DecisionStore(store_url) as store:
        svc.add_contract(store, wh, FINANCE, contract)
        got = svc.check_invoice_file(store, wh, FINANCE, invoice, invoice.stem, record=False)
    assert {x.line.row: x.klass for x in got.check.lines if x.klass != "matched"} == truth
    result = run("invoice", "plant", "--out", tmp_path / "x", "--warehouse", wh.root,
                 "--as", "group:G01")
    assert result.exit_code == 2 and "only commissioner:Q99 may" in result.output
    result = run("synth", "--out", tmp_path / "s", "--invoice", "--deliveries", "monthly")
    assert result.exit_code == 2 and "--invoice needs --deliveries none" in result.output
    assert not (tmp_path / "s").exists()
