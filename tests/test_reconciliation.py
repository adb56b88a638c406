"""The reconciliation of the price stage can fail: every fault below must be caught.

A small economy priced by hand (pricing_fixtures: no marginal rate baseline, so no marginal
rate adjustment):

* apc: S1 DZ65K non-elective, 3 days at RXX (MFF 1.0) = £1,000.00 (A81001); S2 HRG XX99Z,
  not in the tariff: unpriced (with a reason);
* op: O1 first attendance, TFC 110 at RTR: £168.00 + MFF 168.00 x 0.0461 = £7.74 = £175.74
  (A81001); O2 the same for practice Z99999 (not known: unattributed); O3 did not attend, £0;
* ae: A1 VB07Z at RXX = £148.00, practice blank (unattributed);
* prescribing: £12.34 (A81001) + £1.01 (Z99999, unattributed) = £13.35.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import ibis
import ibis.expr.types as ir
import pytest

from pbc.attribution import ReconciliationError, attribute, check_reconciliation, reconcile
from pbc.pricing import price_activity
from pricing_fixtures import ae, economy, memtables, op, spell

D = Decimal

PRESCRIBING = [
    {"practice_code": "A81001", "year_month": "2025-04", "bnf_code": "0206", "items": 3,
     "actual_cost": "12.34"},
    {"practice_code": "Z99999", "year_month": "2026-03", "bnf_code": "0206", "items": 1,
     "actual_cost": "1.01"},
]


def _raw(**overrides):
    kw = {"apc": [spell("S1"), spell("S2", hrg_code="XX99Z")],
          "ops": [op("O1"), op("O2", practice_code="Z99999"), op("O3", attended=False)],
          "aes": [ae("A1", practice_code="")], "prescribing": PRESCRIBING}
    kw.update(overrides)
    return economy(**kw)


def _priced(raw=None):
    """Priced (before attribution) and attributed activity, computed once and held as
    in-memory tables (so each fault below changes data, not the pricing expression)."""
    tables = memtables(raw if raw is not None else _raw())
    priced = price_activity(tables)
    attributed = attribute(priced, tables)
    return ibis.memtable(priced.to_pyarrow()), ibis.memtable(attributed.to_pyarrow()), tables


def _rec(change: Callable[[ir.Table], ir.Table] | None = None, raw=None):
    priced, attributed, tables = _priced(raw)
    if change is not None:
        attributed = change(attributed)
    return reconcile(attributed, tables, priced=priced)


def _fails(change: Callable[[ir.Table], ir.Table] | None = None, raw=None) -> str:
    with pytest.raises(ReconciliationError) as e:
        check_reconciliation(_rec(change, raw))
    return str(e.value)


def _set(column: str, activity_id: str, value: str | None) -> Callable[[ir.Table], ir.Table]:
    def change(t: ir.Table) -> ir.Table:
        new = ibis.literal(value, type=t[column].type())
        return t.mutate(**{column: ibis.ifelse(t.activity_id == activity_id, new, t[column])})
    return change


def test_sound_pricing_reconciles_with_hand_worked_figures() -> None:
    rec = {r["activity_type"]: r for r in _rec()}
    check_reconciliation(list(rec.values()))
    apc, op_, ae_, rx = rec["apc"], rec["op"], rec["ae"], rec["prescribing"]
    assert (apc["source_table"], apc["rows_in"], apc["rows_priced"], apc["rows_unpriced"]) == \
        ("apc_spells", 2, 1, 1)
    assert apc["money_in"] == D("1000.00") == apc["money_attributed"]
    assert (op_["rows_in"], op_["rows_priced"], op_["rows_unpriced"]) == (3, 3, 0)
    assert op_["money_in"] == D("351.48")
    assert (op_["money_attributed"], op_["money_unattributed"]) == (D("175.74"), D("175.74"))
    assert (ae_["money_in"], ae_["money_attributed"], ae_["money_unattributed"]) == \
        (D("148.00"), 0, D("148.00"))
    assert rx["source_table"] == "prescribing" and rx["rows_in"] == 2
    assert (rx["money_in"], rx["money_attributed"], rx["money_unattributed"]) == \
        (D("13.35"), D("12.34"), D("1.01"))


def test_a_dropped_row_is_caught() -> None:
    msg = _fails(lambda t: t.filter(t.activity_id != "O2"))
    assert "op: 3 rows in op_attendances but 2 in priced_activity" in msg
    assert "op: money before attribution 351.48 != attributed 175.74 + unattributed 0.00" in msg


def test_a_doubled_row_is_caught() -> None:
    msg = _fails(lambda t: t.union(t.filter(t.activity_id == "S1"), distinct=False))
    assert "apc: 2 rows in apc_spells but 3 in priced_activity" in msg
    assert "apc: activity_id S1 occurs 2 times in priced_activity" in msg
    assert "money before attribution 1000.00 != attributed 2000.00" in msg


def test_every_row_doubled_is_caught() -> None:
    msg = _fails(lambda t: t.union(t, distinct=False))
    for kind, table, n in (("apc", "apc_spells", 2), ("op", "op_attendances", 3),
                           ("ae", "ae_attendances", 1), ("prescribing", "prescribing", 2)):
        rows = "1 row" if n == 1 else f"{n} rows"
        assert f"{kind}: {rows} in {table} but {2 * n} in priced_activity" in msg


def test_a_row_doubled_and_another_dropped_is_caught_by_the_activity_id() -> None:
    """Same count and (the dropped row is a £0 DNA) the same money: only the key shows it."""
    msg = _fails(lambda t: t.filter(t.activity_id != "O3").union(
        t.filter(t.activity_id == "O1"), distinct=False))
    assert "op: activity_id O1 occurs 2 times in priced_activity" in msg
    assert "rows in" not in msg


def test_a_changed_price_is_caught_by_its_components() -> None:
    msg = _fails(_set("price", "O1", "175.75"))
    assert "op: 1 row whose base price and adjustments do not add up to its price" in msg
    assert "op: money before attribution 351.48 != attributed 175.75 + unattributed 175.74" \
        in msg


def test_a_price_changed_with_its_components_is_caught_by_the_total_before_attribution() -> None:
    def change(t: ir.Table) -> ir.Table:
        return _set("price", "O1", "175.75")(_set("base_price", "O1", "168.01")(t))

    msg = _fails(change)
    assert "add up" not in msg
    assert "op: money before attribution 351.48 != attributed 175.75 + unattributed 175.74" \
        in msg


def test_a_changed_prescribing_cost_is_caught_against_the_source() -> None:
    def change(t: ir.Table) -> ir.Table:
        key = "A81001/2025-04/0206"
        return _set("price", key, "12.35")(_set("base_price", key, "12.35")(t))

    msg = _fails(change)
    assert "prescribing: money in prescribing.actual_cost 13.35 != attributed 12.35 + " \
        "unattributed 1.01" in msg


def test_a_lost_activity_type_is_caught() -> None:
    msg = _fails(lambda t: t.filter(t.activity_type != "ae"))
    assert "ae: 1 row in ae_attendances but 0 in priced_activity" in msg


def test_a_silent_null_price_is_caught() -> None:
    msg = _fails(_set("unpriced_reason", "S2", None))
    assert "apc: 1 row unpriced without a reason (or priced with one)" in msg


def test_rows_with_no_source_table_are_caught() -> None:
    raw = _raw()
    priced, attributed, tables = _priced(raw)
    del tables["ae_attendances"]
    with pytest.raises(ReconciliationError, match="ae: 1 row in priced_activity but no "
                                                  "source table ae_attendances given"):
        check_reconciliation(reconcile(attributed, tables, priced=priced))


def test_a_duplicate_key_in_the_source_is_caught() -> None:
    """The loader rejects a duplicate key; the reconciliation is the second line of defence."""
    raw = _raw(ops=[op("O1"), op("O1", practice_code="Z99999")])
    msg = _fails(raw=raw)
    assert "op: activity_id O1 occurs 2 times in priced_activity" in msg
    assert "rows in" not in msg  # 2 rows in, 2 rows out


# ------------------------------------------------------------------ pbc price, end to end

@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory):
    from pbc.synth import SynthConfig, generate
    from pbc.warehouse import Warehouse
    from pbc.warehouse.load import load

    base = tmp_path_factory.mktemp("recon")
    generate(SynthConfig(practices=3, groups=2, local_authorities=1, seed=5, years=1,
                         list_scale=0.1), base / "in")
    wh = Warehouse(base / "wh")
    load(base / "in", wh)
    from pbc.services.pricing import run_pricing

    run_pricing(wh)  # a sound run, committed
    return wh


def _first_spell(t: ir.Table) -> ir.Value:
    return t.filter(t.activity_type == "apc").activity_id.min()


FAULTS: dict[str, tuple[Callable[[ir.Table], ir.Table], str]] = {
    "one spell dropped": (
        lambda t: t.filter(t.activity_id != _first_spell(t)),
        r"apc: (\d+) rows in apc_spells but (\d+) in priced_activity"),
    "one row doubled": (
        lambda t: t.union(t.filter(t.activity_id == _first_spell(t)), distinct=False),
        r"apc: activity_id \S+ occurs 2 times in priced_activity"),
    "every row doubled": (
        lambda t: t.union(t, distinct=False),
        r"op: (\d+) rows in op_attendances but (\d+) in priced_activity"),
    "one price changed": (
        lambda t: t.mutate(price=ibis.ifelse(t.activity_id == _first_spell(t),
                                             t.price + ibis.literal(D("0.01")), t.price)
                           .cast(t.price.type())),
        r"apc: 1 row whose base price and adjustments do not add up to its price"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_pbc_price_fails_and_commits_nothing_on_a_fault(loaded, monkeypatch, fault) -> None:
    import pbc.attribution
    from pbc.services.pricing import run_pricing

    version = loaded.manifest()["version"]
    before = loaded.query("SELECT count(*), sum(price) FROM priced_activity")
    recs = loaded.query("SELECT count(*) FROM reconciliation WHERE stage = 'price'")
    real = pbc.attribution.attribute
    change, pattern = FAULTS[fault]
    monkeypatch.setattr(pbc.attribution, "attribute",
                        lambda priced, tables: change(real(priced, tables)))
    with pytest.raises(ReconciliationError, match=pattern):
        run_pricing(loaded, full=True)  # already priced: only --full prices it again
    assert loaded.manifest()["version"] == version  # nothing committed
    assert loaded.query("SELECT count(*), sum(price) FROM priced_activity") == before
    assert loaded.query("SELECT count(*) FROM reconciliation WHERE stage = 'price'") == recs


def test_pbc_price_records_figures_from_the_source_tables(loaded) -> None:
    from pbc.services.pricing import run_pricing

    report = run_pricing(loaded)
    assert report.version == loaded.manifest()["version"]
    stored = {r[0]: r[1:] for r in loaded.query(
        "SELECT source_table, rows_in, rows_accepted, rows_quarantined, money_in, money_out, "
        "money_unattributed FROM reconciliation WHERE stage = 'price'")}
    assert {r["source_table"] for r in report.reconciliation} == set(stored)
    for table in ("apc_spells", "op_attendances", "ae_attendances", "prescribing"):
        n = loaded.query(f"SELECT count(*) FROM {table}")[0][0]
        rows_in, accepted, quarantined, money_in, money_out, unattributed = stored[table]
        assert rows_in == n == accepted + quarantined, table
        assert D(money_in) == D(money_out) + D(unattributed), table
    cost = loaded.query("SELECT sum(actual_cost) FROM prescribing")[0][0]
    assert D(stored["prescribing"][3]) == D(cost) > 0


def test_a_missing_figure_fails_rather_than_passes() -> None:
    """check_reconciliation refuses a row without its money before attribution."""
    row = {"activity_type": "op", "source_table": "op_attendances", "rows_in": 1,
           "rows_before": 1, "rows_priced": 1, "rows_unpriced": 0, "money_in": None,
           "money_priced": D("1.00"), "money_attributed": D("1.00"),
           "money_unattributed": D("0.00"), "rows_off": 0, "rows_reason_off": 0,
           "duplicate_ids": 0, "duplicate_example": None}
    with pytest.raises(ReconciliationError, match="op: no money before attribution"):
        check_reconciliation([row])


def test_pbc_price_on_the_command_line_says_what_is_off_in_one_line(loaded,
                                                                     monkeypatch) -> None:
    from typer.testing import CliRunner

    import pbc.attribution
    from pbc.cli import app

    real = pbc.attribution.attribute
    change, _ = FAULTS["one spell dropped"]
    monkeypatch.setattr(pbc.attribution, "attribute",
                        lambda priced, tables: change(real(priced, tables)))
    version = loaded.manifest()["version"]
    out = CliRunner().invoke(app, ["price", "--warehouse", str(loaded.root), "--full"])
    assert out.exit_code == 2
    assert "reconciliation failed: apc:" in out.output and "Traceback" not in out.output
    assert loaded.manifest()["version"] == version
