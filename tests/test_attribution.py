"""Attribution to practice, group (as at the activity date) and commissioner; reconciliation."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pbc.attribution import (
    ATTRIBUTED_SCHEMA,
    ReconciliationError,
    attribute,
    check_reconciliation,
    reconcile,
)
from pbc.pricing import price_activity
from pricing_fixtures import ae, arrow_table, economy, memtables, op, spell

D = Decimal

PRESCRIBING = [
    {"practice_code": "A81001", "year_month": "2025-04", "bnf_code": "0206", "items": 3,
     "actual_cost": "12.34"},
    {"practice_code": "Z99999", "year_month": "2026-03", "bnf_code": "0206", "items": 1,
     "actual_cost": "1.01"},
]
PRACTICE_GROUPS = [
    {"practice_code": "A81001", "group_code": "G02", "valid_from": "2025-10-01",
     "valid_to": None},
]


def _run(raw):
    tables = memtables(raw)
    attributed = attribute(price_activity(tables), tables)
    rows = {r["activity_id"]: r for r in attributed.to_pyarrow().to_pylist()}
    return attributed, tables, rows


def test_practice_group_and_commissioner() -> None:
    raw = economy(
        apc=[spell("EARLY"), spell("LATE", admission_date="2025-11-01", los=2)],
        ops=[op("BLANK", practice_code=""), op("UNKNOWN", practice_code="Z99999")],
        aes=[ae("NULL", practice_code=None)],
        prescribing=PRESCRIBING, practice_groups=PRACTICE_GROUPS,
    )
    attributed, _, rows = _run(raw)
    assert dict(attributed.schema().items()) == ATTRIBUTED_SCHEMA
    assert rows["EARLY"]["group_code"] == "G01"  # before the move
    assert rows["LATE"]["group_code"] == "G02"   # practice_groups overrides in its window
    assert rows["EARLY"]["attributed"] and rows["EARLY"]["commissioner_code"] == "QHM"
    for key in ("BLANK", "UNKNOWN", "NULL"):
        r = rows[key]
        assert r["attributed"] is False and r["group_code"] is None
        assert r["commissioner_code"] == "QHM"  # the only commissioner
    assert rows["BLANK"]["practice_code"] == ""
    assert rows["UNKNOWN"]["practice_code"] == "Z99999"
    presc = rows["A81001/2025-04/0206"]
    assert presc["service_line"] == "prescribing" and presc["price"] == D("12.34")
    assert presc["financial_year"] == "2025-26" and presc["month"] == 1
    assert rows["Z99999/2026-03/0206"]["attributed"] is False


def test_commissioner_for_unknown_practice_with_several_commissioners() -> None:
    commissioners = [{"commissioner_code": "QHM", "commissioner_name": "N"},
                     {"commissioner_code": "QXX", "commissioner_name": "S"}]
    raw = economy(ops=[op("OWN", practice_code="Z99999", commissioner_code="QXX"),
                       op("NONE", practice_code="Z99999")], commissioners=commissioners)
    _, _, rows = _run(raw)
    assert rows["OWN"]["commissioner_code"] == "QXX"
    assert rows["NONE"]["commissioner_code"] is None
    assert rows["NONE"]["attributed"] is False


def test_practice_commissioner_wins_over_activity_commissioner() -> None:
    raw = economy(ops=[op("O", commissioner_code="QXX")])
    _, _, rows = _run(raw)
    assert rows["O"]["commissioner_code"] == "QHM"


def test_overlapping_group_windows_never_duplicate_rows() -> None:
    groups = [*PRACTICE_GROUPS, {"practice_code": "A81001", "group_code": "G01",
                                 "valid_from": "2025-01-01", "valid_to": "2026-12-31"}]
    raw = economy(ops=[op("O", appointment_date="2025-11-01")], practice_groups=groups)
    attributed, _, rows = _run(raw)
    assert attributed.count().execute() == 1
    assert rows["O"]["group_code"] == "G02"  # the window that started last


def test_reconciliation_balances_to_the_penny() -> None:
    raw = economy(
        apc=[spell("S1"), spell("S2", hrg_code="XX99Z", practice_code="")],
        ops=[op("O1"), op("O2", practice_code="Z99999"), op("O3", attended=False)],
        aes=[ae("A1", practice_code="")], prescribing=PRESCRIBING,
    )
    tables = memtables(raw)
    priced = price_activity(tables)
    rows = reconcile(attribute(priced, tables), tables, priced=priced)
    rec = {r["activity_type"]: r for r in rows}
    check_reconciliation(rows)
    assert rec["apc"]["rows_in"] == 2 and rec["apc"]["rows_unpriced"] == 1
    # O1 and O2: £168.00 + MFF £7.74 (RTR 1.0461) each; O3 did not attend (£0)
    assert rec["op"]["money_in"] == rec["op"]["money_priced"] == D("351.48")
    assert rec["op"]["money_unattributed"] == D("175.74")  # O2: practice Z99999 not known
    assert rec["ae"]["money_attributed"] == 0
    assert rec["prescribing"]["money_in"] == D("13.35")  # 12.34 + 1.01 of actual_cost
    assert rec["prescribing"]["source_table"] == "prescribing"


def test_check_reconciliation_catches_losses() -> None:
    row = {"activity_type": "apc", "source_table": "apc_spells", "rows_in": 3,
           "rows_before": 3, "rows_priced": 1, "rows_unpriced": 1, "money_in": D("1.00"),
           "money_priced": D("0.99"), "money_attributed": D("0.50"),
           "money_unattributed": D("0.49"), "rows_off": 0, "rows_reason_off": 0,
           "duplicate_ids": 0, "duplicate_example": None}
    with pytest.raises(ReconciliationError, match="apc: 3 rows in apc_spells but 2 in "
                                                  "priced_activity") as e:
        check_reconciliation([row])
    assert "money before attribution 1.00 != attributed 0.50 + unattributed 0.49" \
        in str(e.value)


def test_attribute_without_practices_is_all_unattributed() -> None:
    raw = economy(ops=[op("O")])
    tables = memtables(raw)
    priced = price_activity(tables)
    out = attribute(priced, {"prescribing": memtables({"p": arrow_table("prescribing",
                                                                        PRESCRIBING)})["p"]})
    rows = out.to_pyarrow().to_pylist()
    assert len(rows) == 3 and not any(r["attributed"] for r in rows)


def test_prescribing_lines_of_blank_practices_have_distinct_activity_ids() -> None:
    """Prescribing has no key: two blank-practice lines for one month and BNF code are two
    lines (found in the demo economy), so each needs an activity_id of its own."""
    lines = [
        {"practice_code": None, "year_month": "2024-09", "bnf_code": "0601023AG", "items": 208,
         "actual_cost": "10652.40"},
        {"practice_code": None, "year_month": "2024-09", "bnf_code": "0601023AG", "items": 83,
         "actual_cost": "4125.86"},
        {"practice_code": "", "year_month": "2024-09", "bnf_code": "0601023AG", "items": 1,
         "actual_cost": "1.00"},
        {"practice_code": "A81001", "year_month": "2024-09", "bnf_code": "0601023AG",
         "items": 3, "actual_cost": "2.00"},
    ]
    raw = economy(ops=[op("O1")], prescribing=lines)
    tables = memtables(raw)
    priced = price_activity(tables)
    rows = attribute(priced, tables).to_pyarrow().to_pylist()
    ids = {r["activity_id"]: r["price"] for r in rows if r["activity_type"] == "prescribing"}
    # numbered within practice/month/BNF code, the blank practice ('' after NULL), then by
    # items and cost; a line alone keeps the plain id
    assert ids == {"/2024-09/0601023AG/1": D("4125.86"), "/2024-09/0601023AG/2": D("10652.40"),
                   "/2024-09/0601023AG/3": D("1.00"), "A81001/2024-09/0601023AG": D("2.00")}
    check_reconciliation(reconcile(attribute(priced, tables), tables, priced=priced))
