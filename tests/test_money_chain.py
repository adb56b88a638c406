"""Every pound from the source tables to the budgets, on random economies (Hypothesis).

The chain, to the penny, for each random economy priced at random tariff settings (marginal
rates, baselines, MFFs):

1. money priced before attribution (computed by pricing on its own) = money attributed +
   money unattributed after attribution (the reconciliation of ``pbc price``, which also
   checks rows against the source tables and each price against its parts);
2. the tariff value (``price - marginal_rate_adjustment``) of all rows = the marginal-rate
   adjustments added back to that money;
3. budgets set from that spend (no uplift) put every penny of it somewhere: the practices'
   historic spend plus the commissioner's held line for unattributed activity.
"""

from __future__ import annotations

from decimal import Decimal

import ibis
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from pbc.attribution import attribute, check_reconciliation, reconcile
from pbc.budgets import FairShareInputs, parse_policy, set_budgets
from pbc.pricing import price_activity
from pricing_fixtures import PRACTICES, memtables
from test_pricing_properties import PROPERTY, _economy, activity, mffs, tariff_settings

LINES = ("elective_inpatient", "day_case", "non_elective", "outpatient_first",
         "outpatient_follow_up", "outpatient_procedure", "ae")


def _policy() -> object:
    return parse_policy({
        "financial_year": "2026-27",
        "scope": list(LINES),
        "envelope": {line: {"uplift_percent": 0} for line in LINES},
        "fair_share": {line: {"method": "weighted_capitation"} for line in LINES},
        "pace_of_change": {"pace": 0},
    })


def _inputs() -> FairShareInputs:
    codes = [p["practice_code"] for p in PRACTICES]
    sizes = pd.DataFrame([{"practice_code": c, "sex": s, "age_band": "40-44", "patients": 500}
                          for c in codes for s in ("F", "M")])
    weights = pd.DataFrame([{"sex": sx, "age_band": "40-44", "service_line": line,
                             "cost_weight": 1.0} for sx in ("F", "M") for line in LINES])
    return FairShareInputs(list_sizes=sizes, cost_weights=weights, practice_codes=codes)


@PROPERTY
@given(acts=activity, s=tariff_settings, mff=st.tuples(mffs, mffs))
def test_every_pound_reaches_a_budget_or_the_commissioner(acts, s, mff) -> None:
    tables = memtables(_economy(acts, mff))
    priced = price_activity(tables, s)
    out = attribute(priced, tables).to_pyarrow()
    rec = reconcile(ibis.memtable(out), tables, priced=ibis.memtable(priced.to_pyarrow()))
    check_reconciliation(rec)  # 1
    money_in = sum((Decimal(str(r["money_in"])) for r in rec), Decimal(0))

    rows = [r for r in out.to_pylist() if r["price"] is not None]
    adjustments = sum((r["marginal_rate_adjustment"] for r in rows), Decimal(0))
    value = sum((r["price"] - r["marginal_rate_adjustment"] for r in rows), Decimal(0))
    assert value == money_in - adjustments  # 2

    spend = pd.DataFrame({
        "practice_code": [r["practice_code"] if r["attributed"] else (r["practice_code"] or "")
                          for r in rows],
        "service_line": [r["service_line"] for r in rows],
        "spend_pence": [int((r["price"] - r["marginal_rate_adjustment"]) * 100) for r in rows],
    }, columns=["practice_code", "service_line", "spend_pence"])
    if spend.empty:
        return
    result = set_budgets(_policy(), _inputs(), spend)
    held = int(result.commissioner_retained.query("kind == 'unattributed'")["amount"].sum())
    unattributed = sum((r["price"] - r["marginal_rate_adjustment"] for r in rows
                        if not r["attributed"]), Decimal(0))
    assert held == int(unattributed * 100)
    assert int(result.frame["historic"].sum()) + held == int(value * 100)  # 3
