"""The money measure for budgets, phasing and benchmarking: the tariff value before the
emergency marginal rate (:func:`pbc.pricing.schema.tariff_value`), which does not depend on
the order in which a contract's spells were discharged; ``price`` does."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pbc.indicators.compute import indicator_by_practice
from pbc.indicators.definition import load_indicators
from pbc.pricing import price_activity, settings_from_dict
from pricing_fixtures import arrow_table, economy, memtables, spell

D = Decimal

# one contract (QHM / RXX) with a 2025-26 emergency baseline of £1,500
SETTINGS = settings_from_dict({"financial_year": "2025-26", "emergency_marginal_rate": {
    "rate": 0.30, "baseline": [
        {"commissioner_code": "QHM", "provider_code": "RXX", "baseline": 1500.0}]}})
PATIENTS = [{"patient_id": p, "practice_code": c, "sex": "F", "age": 70}
            for p, c in (("P1", "A81001"), ("P2", "A81002"))]


def _tables(first: str) -> dict:
    """Two practices with identical activity: one emergency COPD stay (DZ65K, 3 days at
    RXX, tariff value £1,000.00) each; practice ``first``'s patient is discharged first."""
    days = {"A81001": "2025-05-01", "A81002": "2025-05-10"}
    if first == "A81002":
        days = {"A81001": "2025-05-10", "A81002": "2025-05-01"}
    spells = [spell(f"S{p}", patient_id=p, practice_code=c, admission_date=days[c], los=3)
              for p, c in (("P1", "A81001"), ("P2", "A81002"))]
    tables = memtables({**economy(apc=spells), "patients": arrow_table("patients", PATIENTS)})
    tables["priced_activity"] = price_activity(tables, SETTINGS)
    return tables


@pytest.mark.parametrize("first", ["A81001", "A81002"])
def test_identical_practices_get_identical_benchmark_spend(first: str) -> None:
    """The contract's 2,000 of value is 500 over its 1,500 baseline: whichever spell is
    discharged second is cut (price 1000 - 500 + 0.30 x 500 = 650.00). Benchmark spend is
    the tariff value, £1,000.00 for each practice in either order; before, the practice
    discharged second showed £650.00."""
    tables = _tables(first)
    prices = {r["practice_code"]: r["price"]
              for r in tables["priced_activity"].to_pyarrow().to_pylist()}
    second = "A81002" if first == "A81001" else "A81001"
    assert prices == {first: D("1000.00"), second: D("650.00")}  # the contract settlement
    ind = load_indicators()["spend_non_elective_per_weighted_patient"]
    frame = indicator_by_practice(tables, ind, financial_year="2025-26").execute()
    spend = {r.practice_code: (r.numerator, r.denominator) for r in frame.itertuples()}
    assert spend["A81001"] == spend["A81002"]
    assert spend["A81001"][0] == 1000.0
