"""Property tests (Hypothesis): prices never negative, conservation (and any lost, doubled or
repriced row caught by the reconciliation), exact MFF scaling."""

from __future__ import annotations

from decimal import Decimal

import ibis
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st

from pbc.attribution import ReconciliationError, attribute, check_reconciliation, reconcile
from pbc.pricing import price_activity, settings_from_dict
from pricing_fixtures import PROVIDERS, ae, economy, memtables, op, spell

D = Decimal
# each example runs whole pipelines on DuckDB: few examples, many rows each, no shrinking
PROPERTY = settings(max_examples=12, deadline=None, phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow])

practices = st.sampled_from(["A81001", "A81002", "", "Z99999"])
providers = st.sampled_from(["RTR", "RXX", "NOPE"])

spells = st.builds(
    lambda i, los, method, classpat, hrg, age, cat, prov, prac: spell(
        f"S{i}", los=los, admission_method=method, patient_classification=classpat,
        hrg_code=hrg, age_on_admission=age, top_up_category=cat, provider_code=prov,
        practice_code=prac, admission_date=f"2025-{4 + i % 9:02d}-0{1 + i % 9}"),
    st.integers(0, 10**6), st.integers(0, 20),
    st.sampled_from(["11", "12", "21", "22", "2A", "31", "81"]),
    st.sampled_from(["1", "2", "3", "4", "5"]), st.sampled_from(["DZ65K", "HB12C", "XX99Z"]),
    st.integers(0, 100), st.sampled_from([None, "children", "orthopaedic", "spinal"]),
    providers, practices,
)
ops = st.builds(
    lambda i, tfc, code, attended, hrg, prov, prac: op(
        f"O{i}", treatment_function_code=tfc, first_attendance=code, attended=attended,
        hrg_code=hrg, provider_code=prov, practice_code=prac),
    st.integers(0, 10**6), st.sampled_from(["110", "300", "999"]),
    st.sampled_from(["1", "2", "3", "4"]), st.booleans(), st.sampled_from([None, "HB12C"]),
    providers, practices,
)
aes = st.builds(
    lambda i, dept, hrg, prov, prac: ae(f"A{i}", department_type=dept, hrg_code=hrg,
                                        provider_code=prov, practice_code=prac),
    st.integers(0, 10**6), st.sampled_from(["1", "2", "3", "4"]),
    st.sampled_from(["VB07Z", "VB11Z", "VB99Z"]), providers, practices,
)


def unique(rows: list[dict], key: str) -> list[dict]:
    return list({r[key]: r for r in rows}.values())


activity = st.tuples(st.lists(spells, max_size=25), st.lists(ops, max_size=25),
                     st.lists(aes, max_size=15))
mffs = st.integers(1_000_000, 1_500_000).map(lambda n: D(n) / 1_000_000)
tariff_settings = st.builds(
    lambda rate, baseline, frac: settings_from_dict({
        "financial_year": "2025/26",
        "emergency_marginal_rate": {"rate": rate, "baseline": [
            {"commissioner_code": "QHM", "provider_code": "RXX", "baseline": baseline},
            {"commissioner_code": "QHM", "provider_code": "RTR", "baseline": baseline / 2}]},
        "outpatients": {"telephone_first_fraction": frac},
        "ae": {"department_type_fraction": {"3": frac}},
    }),
    st.sampled_from([0.0, 0.3, 0.5, 1.0]), st.integers(0, 20_000).map(float),
    st.sampled_from([0.0, 0.5, 0.75, 1.0]),
)


def _economy(acts, mff: tuple[D, D] | None = None):
    s, o, a = acts
    provs = PROVIDERS
    if mff is not None:
        provs = [{**PROVIDERS[0], "mff_payment_index": float(mff[0])},
                 {**PROVIDERS[1], "mff_payment_index": float(mff[1])}]
    return economy(apc=unique(s, "spell_id"), ops=unique(o, "attendance_id"),
                   aes=unique(a, "attendance_id"), providers=provs)


@PROPERTY
@given(acts=activity, s=tariff_settings, mff=st.tuples(mffs, mffs))
def test_prices_never_negative_and_conserved(acts, s, mff) -> None:
    tables = memtables(_economy(acts, mff))
    priced = price_activity(tables, s)
    out = attribute(priced, tables).to_pyarrow()
    attributed, priced = ibis.memtable(out), ibis.memtable(priced.to_pyarrow())
    rows = out.to_pylist()
    n_in = sum(len(x) for x in (unique(acts[0], "spell_id"), unique(acts[1], "attendance_id"),
                                unique(acts[2], "attendance_id")))
    assert len(rows) == n_in
    for r in rows:
        if r["price"] is None:
            assert r["unpriced_reason"]  # never a silent NULL
        else:
            assert r["price"] >= 0 and r["unpriced_reason"] is None
            parts = sum(r[k] for k in ("base_price", "long_stay_adjustment",
                                       "short_stay_adjustment", "top_up_adjustment",
                                       "mff_adjustment", "marginal_rate_adjustment"))
            assert parts == r["price"]
    # nothing is wrong, so the reconciliation passes (it does not fail on sound data), and
    # its rows in are the rows generated, per source table
    rec = reconcile(attributed, tables, priced=priced)
    check_reconciliation(rec)
    assert {r["source_table"]: r["rows_in"] for r in rec} == {
        "apc_spells": len(unique(acts[0], "spell_id")),
        "op_attendances": len(unique(acts[1], "attendance_id")),
        "ae_attendances": len(unique(acts[2], "attendance_id"))}
    _contract_totals_are_exact(rows, acts[0], s)


EMERGENCY = {"21", "22", "2A"}  # the emergency methods the spells strategy draws


def _contract_totals_are_exact(rows: list[dict], spell_rows: list[dict], s) -> None:
    """Per contract and year, the emergency prices add up to exactly
    ``round(baseline + rate x (actual - baseline))`` (half up) when ``actual`` (the sum of
    the values before the marginal rate) is over the baseline, else to ``actual``."""
    emergency = {r["spell_id"] for r in spell_rows if r["admission_method"] in EMERGENCY}
    mret = s.emergency_marginal_rate
    for b in mret.baseline:
        mine = [r for r in rows if r["activity_type"] == "apc"
                and r["activity_id"] in emergency and r["price"] is not None
                and (r["commissioner_code"], r["provider_code"], r["financial_year"])
                == (b.commissioner_code, b.provider_code, b.financial_year)]
        actual = sum((r["price"] - r["marginal_rate_adjustment"] for r in mine), D(0))
        paid = sum((r["price"] for r in mine), D(0))
        if actual <= b.baseline:
            assert paid == actual
        else:
            exact = b.baseline + mret.rate * (actual - b.baseline)
            assert paid == exact.quantize(D("0.01"), rounding="ROUND_HALF_UP")



def _fault(table: pa.Table, kind: str, i: int, pennies: int) -> pa.Table:
    """``table`` with row ``i`` dropped, doubled, or its price moved by ``pennies``."""
    if kind == "drop":
        return pa.concat_tables([table.slice(0, i), table.slice(i + 1)])
    if kind == "double":
        return pa.concat_tables([table, table.slice(i, 1)])
    prices = table["price"].to_pylist()
    prices[i] = prices[i] + D(pennies) / 100
    col = table.schema.get_field_index("price")
    return table.set_column(col, "price", pa.array(prices, table.schema.field(col).type))


@PROPERTY
@given(acts=activity, fault=st.sampled_from(["drop", "double", "price"]),
       at=st.integers(0, 10**6), pennies=st.integers(-10**6, 10**6).filter(bool))
def test_any_dropped_doubled_or_repriced_row_fails_the_reconciliation(acts, fault, at,
                                                                     pennies) -> None:
    tables = memtables(_economy(acts))
    priced = price_activity(tables)
    out = attribute(priced, tables).to_pyarrow()
    candidates = [i for i, p in enumerate(out["price"].to_pylist())
                  if fault != "price" or p is not None]
    assume(candidates)
    bad = ibis.memtable(_fault(out, fault, candidates[at % len(candidates)], pennies))
    with pytest.raises(ReconciliationError):
        check_reconciliation(reconcile(bad, tables, priced=ibis.memtable(priced.to_pyarrow())))


@PROPERTY
@given(acts=activity, m1=st.tuples(mffs, mffs), m2=st.tuples(mffs, mffs))
def test_changing_the_mff_scales_each_price_exactly(acts, m1, m2) -> None:
    """Without a marginal rate baseline, exact price / MFF does not depend on the MFF."""
    def exact(mff):
        expr = price_activity(memtables(_economy(acts, mff)), keep_exact=True)
        return {(r["activity_type"], r["activity_id"]): r
                for r in expr.to_pyarrow().to_pylist()}

    a, b = exact(m1), exact(m2)
    index = {"RTR": 0, "RXX": 1}
    assert a.keys() == b.keys()
    for key, ra in a.items():
        rb = b[key]
        if ra["price_exact"] is None:
            assert rb["price_exact"] is None
            continue
        if ra["provider_code"] not in index:  # a DNA: priced 0 without an MFF
            assert ra["price_exact"] == rb["price_exact"] == 0
            continue
        i = index[ra["provider_code"]]
        assert ra["price_exact"] * m2[i] == rb["price_exact"] * m1[i]
        assert ra["price"] == ra["price_exact"].quantize(D("0.01"), rounding="ROUND_HALF_UP")


# emergency spells at RXX from April to September over a small baseline: the later months
# are cut only because of the earlier ones (the explicit example; then a few drawn ones)
_CROSSING = [spell(f"S{m}{i}", admission_date=f"2025-{m:02d}-1{i}", los=3)
             for m in range(4, 10) for i in range(3)]
_LOW_BASELINE = settings_from_dict({
    "financial_year": "2025/26", "emergency_marginal_rate": {"rate": 0.3, "baseline": [
        {"commissioner_code": "QHM", "provider_code": "RXX", "baseline": 2000.0}]}})


@settings(max_examples=2, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow])
@example(spell_rows=_CROSSING, s=_LOW_BASELINE, cut=4)
@given(spell_rows=st.lists(spells, min_size=1, max_size=30), s=tariff_settings,
       cut=st.integers(2, 10))
def test_later_months_priced_from_the_earlier_months_totals_equal_the_year_at_once(
        spell_rows, s, cut) -> None:
    """Split a year's spells at a month: the later months priced on their own, from the
    contracts' running totals of the earlier months (``marginal_rate_totals`` added up:
    what pbc keeps with each priced month), give exactly the rows of the year priced at
    once."""
    from pbc.pricing import marginal_rate_totals

    rows = unique(spell_rows, "spell_id")
    whole = price_activity(memtables(economy(apc=rows)), s).to_pyarrow().to_pylist()
    month = {r["activity_id"]: r["month"] for r in whole}
    early = [r for r in rows if month[r["spell_id"]] < cut]
    late = [r for r in rows if month[r["spell_id"]] >= cut]
    assume(late)
    opening = None
    if early:
        totals = marginal_rate_totals(memtables(economy(apc=early)), s)
        opening = totals.group_by(["commissioner_code", "provider_code", "financial_year"]) \
            .aggregate(value_to_date=totals.value.sum())
    later = price_activity(memtables(economy(apc=late)), s,
                           marginal_rate_opening=opening).to_pyarrow().to_pylist()

    def key(r: dict) -> str:
        return str(r["activity_id"])
    assert sorted(later, key=key) == sorted((r for r in whole if r["month"] >= cut), key=key)
