"""The decision store on SQLite and on a real PostgreSQL server: versions, freezing, audit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pbc.decisions import DecisionError, DecisionStore, Line
from pbc.services.principal import AccessDenied, Principal

ICB = Principal("fin.analyst", "commissioner", "QHM")
PRACTICE = Principal("practice.manager", "practice", "A81001")
LINES = [Line("A81001", "non_elective", 123_456_78), Line("A81002", "non_elective", 98_765_43)]


@pytest.fixture
def store(decision_url: str) -> Iterator[DecisionStore]:
    with DecisionStore(decision_url) as s:
        yield s


def test_draft_then_agree_then_restate_keeps_history(store: DecisionStore) -> None:
    v1 = store.record_budgets(ICB, "2025/26", LINES, reason="first draft")
    store.agree(ICB, "2025/26", v1)
    with pytest.raises(DecisionError, match="only a draft can be agreed"):
        store.agree(ICB, "2025/26", v1)
    changed = [Line("A81001", "non_elective", 120_000_00), LINES[1]]
    v2 = store.record_budgets(ICB, "2025/26", changed, reason="list size correction")
    history = store.history("2025/26")
    assert [(h.version, h.status) for h in history] == [(1, "superseded"), (2, "agreed")]
    assert history[1].reason == "list size correction"
    current = store.current("2025/26")
    assert current is not None and current.version == v2
    assert store.lines("2025/26", 1) == LINES  # the agreed original is kept, unchanged
    actions = [(a.action, a.entity_id) for a in store.audit_log()]
    assert actions == [("record_budgets", "2025/26 v1"), ("agree_budgets", "2025/26 v1"),
                       ("restate_budgets", "2025/26 v2")]


def test_only_the_commissioner_sets_budgets(store: DecisionStore) -> None:
    with pytest.raises(AccessDenied, match="only the commissioner"):
        store.record_budgets(PRACTICE, "2025/26", LINES, reason="x")
    assert store.audit_log() == []


def test_failed_change_writes_nothing(store: DecisionStore) -> None:
    duplicate = [LINES[0], LINES[0]]  # violates the unique line constraint
    with pytest.raises(Exception):  # noqa: B017 - the database's own integrity error
        store.record_budgets(ICB, "2025/26", duplicate, reason="bad")
    assert store.history("2025/26") == []
    assert store.audit_log() == []  # no audit row without its change


def test_money_is_exact_pence(store: DecisionStore) -> None:
    big = [Line("A81001", "prescribing", 9_007_199_254_740_993)]  # beyond float precision
    v = store.record_budgets(ICB, "2026/27", big, reason="exactness")
    assert store.lines("2026/27", v)[0].budget_pence == 9_007_199_254_740_993
