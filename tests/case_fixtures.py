"""Shared by the business-case tests: a case file, principals in scope, a baseline."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pbc.decisions.savings import Baseline
from pbc.services.principal import Principal

PRACTICE, GROUP, ICB, LA = "A81001", "G01", "Q99", "E06000001"
BASELINE = Baseline("2025-26", 120, 24_000_000, 120 * 200_000**2)
#: the organisation each role acts for when it is "in scope" of the case below
ORG = {"practice": PRACTICE, "group": GROUP, "commissioner": ICB,
       "commissioner_approver": ICB, "commissioner_data": ICB, "administrator": ICB,
       "local_authority": LA, "public": "-"}


def case_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "title": "Respiratory nurses", "proposer": PRACTICE, "proposer_kind": "practice",
        "category": "crisis_avoidance",
        "scope": {"service_lines": ["non_elective"], "condition_codelist": "acsc_chronic"},
        "investment": {"2026-27": Decimal("20000.00")},
        "expected_change": {"description": "15% fewer", "reduction": Decimal("0.15"),
                            "reduction_sd": Decimal("0.05")},
        "social_care": {"touches_social_care": True, "local_authority": LA},
        "make_or_buy": {"provider_is_proposer": True, "provider": PRACTICE,
                        "alternatives_considered": ["community trust"],
                        "conflict_of_interest": "the partners employ the nurses"},
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def who(role: str, org: str | None = None) -> Principal:
    return Principal(f"{role}.user", role, org or ORG[role])  # type: ignore[arg-type]


#: the small warehouse's practices: A81001 and A81002 in G01, A81003..A81010 in G02
SMALL_PRACTICES = [("A81001", "G01"), ("A81002", "G01"),
                   *((f"A810{i:02d}", "G02") for i in range(3, 11))]


def small_warehouse(root: Any) -> Any:
    """A warehouse holding only organisations (practices, groups and commissioner ``Q99``),
    written directly: enough for the decision services that look codes up."""
    import duckdb

    from pbc.warehouse import Warehouse

    wh = Warehouse(root)
    con = duckdb.connect()
    values = ", ".join(f"('{p}', '{g}', 'Q99')" for p, g in SMALL_PRACTICES)
    with wh.begin("organisations") as tx:
        tx.write(con, "practices", "SELECT * FROM (VALUES " + values + ") "
                 "v(practice_code, group_code, commissioner_code)", file_prefix="practices")
        tx.write(con, "groups", "SELECT * FROM (VALUES ('G01', 'Q99'), ('G02', 'Q99')) "
                 "v(group_code, commissioner_code)", file_prefix="groups")
        tx.write(con, "commissioners", "SELECT 'Q99' AS commissioner_code",
                 file_prefix="commissioners")
    con.close()
    return wh
