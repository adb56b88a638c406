"""Two processes approve the same case at once: exactly one wins, the other is told of the
conflict, and the audit chain verifies; on SQLite and on PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

import pytest

from case_fixtures import BASELINE, ICB, case_data, who
from pbc.decisions import DecisionStore
from pbc.decisions.cases import CaseError, ConflictError, parse_case
from pbc.services import cases as svc

ROUNDS = 4


def _approve(url: str, case_ids: list[int], name: str, barrier: Any, queue: Any,
             read_first: bool) -> None:
    """One approver in its own process: for each case, read it, wait for the other
    approver, approve."""
    with DecisionStore(url, create=False) as store:
        approver = who("commissioner_approver")
        for case_id in case_ids:
            version = svc.show(store, approver, case_id).version if read_first else None
            barrier.wait(timeout=60)
            try:
                svc.act(store, approver, case_id, "approve", note=name,
                        expected_version=version)
                queue.put((case_id, name, "ok", ""))
            except ConflictError as e:
                queue.put((case_id, name, "conflict", str(e)))
            except CaseError as e:
                queue.put((case_id, name, "refused", str(e)))


def race(url: str, case_ids: list[int], read_first: bool
         ) -> dict[int, list[tuple[str, str, str]]]:
    """Both processes approve every case at once; each case's outcomes, sorted."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_approve, args=(url, case_ids, name, barrier, queue,
                                                read_first)) for name in ("first", "second")]
    for p in procs:
        p.start()
    out: dict[int, list[tuple[str, str, str]]] = {c: [] for c in case_ids}
    for _ in range(2 * len(case_ids)):
        case_id, name, outcome, message = queue.get(timeout=120)
        out[case_id].append((outcome, name, message))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return {c: sorted(r) for c, r in out.items()}


@pytest.fixture
def url(decision_url: str) -> str:
    return decision_url


def submitted_cases(url: str, n: int) -> list[int]:
    ids = []
    with DecisionStore(url) as store:
        for _ in range(n):
            cid = svc.create_case(store, who("practice"), parse_case(case_data(
                social_care={"touches_social_care": False, "local_authority": None})), "x",
                BASELINE, ICB).id
            svc.act(store, who("practice"), cid, "submit")
            ids.append(cid)
    return ids


@pytest.mark.slow
def test_two_approvals_at_once_exactly_one_wins(url: str) -> None:
    outcomes = race(url, submitted_cases(url, ROUNDS), read_first=True)
    for case_id, results in outcomes.items():
        assert [r[0] for r in results] == ["conflict", "ok"], results
        message = results[0][2]
        assert f"case {case_id} was changed by someone else" in message
        assert "now approved" in message and "Nothing was done" in message
    with DecisionStore(url, create=False) as store:
        approvals = [e for e in store.audit_log() if e.action == "approve_case"]
        assert len(approvals) == ROUNDS  # one per case: the loser wrote nothing
        assert svc.verify_audit(store, who("commissioner")).ok


@pytest.mark.slow
def test_without_a_read_version_the_second_is_still_refused(url: str) -> None:
    outcomes = race(url, submitted_cases(url, 2), read_first=False)
    with DecisionStore(url, create=False) as store:
        for case_id, results in outcomes.items():
            assert [r[0] for r in results] in (["conflict", "ok"], ["ok", "refused"]), results
            assert "approved" in results[0][2] or "approved" in results[1][2]
            view = svc.show(store, who("commissioner"), case_id)
            assert view.status == "approved" and view.version == 3
        assert svc.verify_audit(store, who("commissioner")).ok
