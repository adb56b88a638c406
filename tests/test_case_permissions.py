"""Who may do what with business cases and users: every role x action, allowed and
forbidden, through the services on a real decision store; scope (another practice, another
commissioner, a council the case was not sent to); the lifecycle's own rules."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, get_args

import pytest

from case_fixtures import (
    BASELINE,
    GROUP,
    ICB,
    LA,
    PRACTICE,
    SMALL_PRACTICES,
    case_data,
    small_warehouse,
    who,
)
from pbc.decisions import DecisionStore
from pbc.decisions.cases import CaseError, parse_case
from pbc.services import cases as svc
from pbc.services.permissions import PERMISSIONS, Action
from pbc.services.principal import ROLES, AccessDenied

#: who may, written out independently of pbc.services.permissions
EXPECTED: dict[str, set[str]] = {
    "create_case": {"practice"},
    "submit_case": {"practice"},
    "consult_case": {"local_authority"},
    "approve_case": {"commissioner_approver"},
    "reject_case": {"commissioner_approver"},
    "return_case": {"commissioner_approver"},
    "implement_case": {"practice", "commissioner_approver"},
    "view_case": {"practice", "commissioner", "commissioner_approver", "local_authority"},
    "manage_budgets": {"commissioner"},
    "add_user": {"administrator"},
    "list_users": {"administrator"},
    "verify_audit": {"commissioner", "commissioner_approver", "administrator"},
    "read_audit": {"commissioner", "commissioner_approver", "administrator"},
    "record_pooled_agreement": {"commissioner", "local_authority"},
    "view_pooled_budget": {"commissioner", "commissioner_approver", "local_authority",
                           "group"},
    "evaluate_case": {"commissioner", "commissioner_approver"},
    "view_evaluation": {"practice", "commissioner", "commissioner_approver"},
    # opt-outs of practice A81001, and group G01's agreement and members
    "propose_opt_out": {"practice"},
    "confirm_opt_out": {"commissioner_approver"},
    "withdraw_opt_out": {"practice", "commissioner_approver"},
    "view_opt_outs": {"practice", "commissioner", "commissioner_approver"},
    "agree_group": {"commissioner_approver"},
    "change_membership": {"group", "commissioner", "commissioner_approver"},
    "view_group": {"group", "commissioner", "commissioner_approver"},
    "load_memberships": {"commissioner"},
    "add_contract": {"commissioner"},
    "view_contract": {"commissioner", "commissioner_approver"},
    "check_invoice": {"commissioner"},
}
#: actions on provider contracts and invoices: here without a warehouse, so a permitted
#: principal gets past the table and is then told what is missing (tests/test_invoices.py
#: takes them to the end on a priced warehouse)
CONTRACT_ACTIONS = ("add_contract", "view_contract", "check_invoice")


OPT_OUT_ACTIONS = ("propose_opt_out", "confirm_opt_out", "withdraw_opt_out", "view_opt_outs",
                   "agree_group", "change_membership", "view_group", "load_memberships")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DecisionStore]:
    with DecisionStore(f"sqlite:///{tmp_path / 'd.sqlite'}") as s:
        svc.add_user(s, who("administrator"), "admin", "administrator", ICB)  # first admin
        yield s


def new_case(store: DecisionStore, **changes: Any) -> int:
    data = case_data(**changes)
    kind = data["proposer_kind"]
    view = svc.create_case(store, who(kind, data["proposer"]), parse_case(data), "x = 1",
                           BASELINE, ICB)
    return view.id


def case_in(store: DecisionStore, status: str) -> int:
    """A social-care case of A81001 taken by permitted principals to ``status``."""
    cid = new_case(store)
    path = {"draft": [], "consultation": ["submit"], "submitted": ["submit", "consult"],
            "approved": ["submit", "consult", "approve"]}[status]
    actors = {"submit": who("practice"), "consult": who("local_authority"),
              "approve": who("commissioner_approver")}
    for step in path:
        svc.act(store, actors[step], cid, step, response="supported" if step == "consult"
                else None)
    assert svc.show(store, who("commissioner"), cid).status == status
    return cid


def opt_out_attempt(store: DecisionStore, action: str, role: str) -> Callable[[], Any]:
    """An opt-out or group action by ``role`` (in scope: practice A81001, group G01,
    commissioner Q99) on a small warehouse of organisations."""
    from pbc.services import groups, optouts

    wh = small_warehouse(store.url.removeprefix("sqlite:///").removesuffix(".sqlite")
                         + f"-{action}-{role}")
    p = who(role)
    if action == "propose_opt_out":
        return lambda: optouts.propose(store, wh, p, PRACTICE, service_line="ae",
                                       financial_year="2026-27", reason="test")
    if action in ("confirm_opt_out", "withdraw_opt_out", "view_opt_outs"):
        n = ROLES.index(role)  # a year of its own, so no opt-out is a duplicate
        oid = optouts.propose(store, wh, who("practice"), PRACTICE, service_line="ae",
                              financial_year=f"{2030 + n}-{31 + n}", reason="test").id
        if action == "confirm_opt_out":
            return lambda: optouts.confirm(store, p, oid)
        if action == "withdraw_opt_out":
            return lambda: optouts.withdraw(store, p, oid, "changed our mind")
        return lambda: optouts.show(store, p, oid)
    if action == "agree_group":
        return lambda: groups.agree(store, wh, p, GROUP, terms="terms", starts_on="2026-04-01",
                                    review_on="2027-03-31",
                                    signatories=[groups.Signatory.parse("A;lead;2026-03-01")])
    if action == "change_membership":  # a practice of G02 joins G01 (its own per role)
        practice = SMALL_PRACTICES[2 + ROLES.index(role)][0]
        return lambda: groups.join(store, wh, p, practice, GROUP, "2026-04-01", "test")
    if action == "view_group":
        return lambda: groups.show(store, wh, p, GROUP)
    return lambda: groups.load_memberships(store, wh, p)


def attempt(store: DecisionStore, action: str, role: str) -> Callable[[], Any]:
    if action in OPT_OUT_ACTIONS:
        return opt_out_attempt(store, action, role)
    p = who(role)
    if action == "create_case":
        return lambda: svc.create_case(store, p, parse_case(case_data()), "x = 1", BASELINE,
                                       ICB)
    if action == "manage_budgets":
        from pbc.decisions import Line

        return lambda: store.record_budgets(p, "2026-27", [Line(PRACTICE, "ae", 100)],
                                            reason="test")
    if action == "add_user":
        return lambda: svc.add_user(store, p, "gp2", "practice", PRACTICE)
    if action == "list_users":
        return lambda: svc.users(store, p)
    if action == "verify_audit":
        return lambda: svc.verify_audit(store, p)
    if action == "read_audit":
        return lambda: svc.audit_log(store, p)
    if action in ("record_pooled_agreement", "view_pooled_budget"):
        from pbc.local_authorities.pooled import parse_agreement
        from pbc.services import pooled

        agreement = parse_agreement({
            "reference": "S75-1", "name": "pool", "host": ICB, "scope": {
                "service_lines": ["non_elective"]}, "sharing": {"rule": "proportional"},
            "partners": [{"code": code, "kind": kind, "contributions": {"2025-26": 1}}
                         for code, kind in ((ICB, "commissioner"), (LA, "local_authority"),
                                            (GROUP, "group"))]})
        if action == "record_pooled_agreement":
            return lambda: pooled.record_agreement(store, p, agreement, "x = 1")
        pooled.record_agreement(store, who("commissioner"), agreement, "x = 1")
        return lambda: pooled.stored_agreement(store, p, "S75-1")
    if action in ("evaluate_case", "view_evaluation"):
        return _evaluation_attempt(store, p, action)
    if action in CONTRACT_ACTIONS:
        from pbc.decisions.provider_contracts import ContractFile, LinePlan
        from pbc.services import invoices
        from pbc.warehouse import Warehouse

        wh = Warehouse(Path(store.url.removeprefix("sqlite:///")).parent / "no-warehouse")
        contract = ContractFile(commissioner=ICB, provider="RXX", financial_year="2025-26",
                                plan={"ae": LinePlan(activity=[1] * 12, money=[1] * 12)})
        if action == "add_contract":
            return lambda: invoices.record_contract(store, wh, p, contract, "")
        if action == "view_contract":
            return lambda: invoices.show_contract(store, p, "RXX", "2025-26", wh)
        return lambda: invoices.check_invoice_file(store, wh, p, wh.root / "inv.csv", "RXX")
    step = action.removesuffix("_case")
    before = {"submit": "draft", "consult": "consultation", "approve": "submitted",
              "reject": "submitted", "return": "submitted", "implement": "approved",
              "view": "submitted"}[step]
    cid = case_in(store, before)
    if step == "view":
        return lambda: svc.show(store, p, cid)
    return lambda: svc.act(store, p, cid, step, note="because", response="supported")


@pytest.mark.parametrize("action", sorted(EXPECTED))
def test_every_role_and_action(store: DecisionStore, action: str) -> None:
    assert set(PERMISSIONS) == set(EXPECTED) == set(get_args(Action))
    for role in ROLES:
        run = attempt(store, action, role)
        log_before = len(store.audit_log())
        if role in EXPECTED[action] and action in CONTRACT_ACTIONS:
            from pbc.decisions.store import DecisionError
            from pbc.warehouse import WarehouseError

            with pytest.raises((DecisionError, WarehouseError)):  # not AccessDenied
                run()
        elif role in EXPECTED[action]:
            run()
        else:
            with pytest.raises(AccessDenied, match=r"may not .* only .* (may|can)") as refused:
                run()
            assert str(who(role)) in str(refused.value)
            assert len(store.audit_log()) == log_before  # a refusal changes nothing
    assert svc.verify_audit(store, who("commissioner")).ok


def test_a_practice_cannot_act_for_another_practice(store: DecisionStore) -> None:
    other = who("practice", "A81002")
    with pytest.raises(AccessDenied, match="only practice:A81001 may"):
        svc.create_case(store, other, parse_case(case_data()), "x", BASELINE, ICB)
    cid = new_case(store)
    for step in ("submit", "implement"):
        with pytest.raises(AccessDenied, match="A81002"):
            svc.act(store, other, cid, step)
    with pytest.raises(AccessDenied):
        svc.show(store, other, cid)
    assert svc.visible_cases(store, other) == []
    # a group lead cannot propose or submit a practice's case, nor a practice a group's
    with pytest.raises(AccessDenied):
        svc.act(store, who("group", PRACTICE), cid, "submit")
    with pytest.raises(AccessDenied):
        svc.create_case(store, who("practice", GROUP),
                        parse_case(case_data(proposer=GROUP, proposer_kind="group")), "x",
                        BASELINE, ICB)
    gid = new_case(store, proposer=GROUP, proposer_kind="group")
    assert svc.act(store, who("group"), gid, "submit").status == "consultation"


def test_a_council_sees_only_cases_sent_to_it(store: DecisionStore) -> None:
    draft = new_case(store)
    sent = case_in(store, "consultation")
    not_social = new_case(store, social_care={"touches_social_care": False,
                                              "local_authority": None})
    svc.act(store, who("practice"), not_social, "submit")
    other_council = new_case(store, social_care={"local_authority": "E06000002"})
    svc.act(store, who("practice"), other_council, "submit")
    council = who("local_authority")
    assert [v.id for v in svc.visible_cases(store, council)] == [sent]
    for hidden in (draft, not_social, other_council):
        with pytest.raises(AccessDenied, match="may not see a business case"):
            svc.show(store, council, hidden)
    with pytest.raises(AccessDenied):
        svc.act(store, council, other_council, "consult", response="no")
    everyone = {v.id for v in svc.visible_cases(store, who("commissioner"))}
    assert everyone == {draft, sent, not_social, other_council}


def test_approver_of_another_commissioner_cannot_decide(store: DecisionStore) -> None:
    cid = case_in(store, "submitted")
    with pytest.raises(AccessDenied, match="only commissioner_approver:Q99 may"):
        svc.act(store, who("commissioner_approver", "Q98"), cid, "approve")


def test_social_care_case_waits_for_the_council(store: DecisionStore) -> None:
    cid = case_in(store, "consultation")
    with pytest.raises(CaseError, match="consultation cannot be approved"):
        svc.act(store, who("commissioner_approver"), cid, "approve")
    with pytest.raises(CaseError, match="response is needed"):
        svc.act(store, who("local_authority"), cid, "consult", response=" ")
    view = svc.act(store, who("local_authority"), cid, "consult", response="we agree")
    assert (view.status, view.consultation_response) == ("submitted", "we agree")
    assert svc.act(store, who("commissioner_approver"), cid, "approve").status == "approved"


def test_make_needs_a_conflict_of_interest_declaration(store: DecisionStore) -> None:
    cid = new_case(store, make_or_buy={"conflict_of_interest": None},
                   social_care={"touches_social_care": False, "local_authority": None})
    svc.act(store, who("practice"), cid, "submit")
    with pytest.raises(CaseError, match="has not declared its conflict of interest"):
        svc.act(store, who("commissioner_approver"), cid, "approve")
    assert svc.show(store, who("practice"), cid).status == "submitted"
    svc.act(store, who("commissioner_approver"), cid, "return", note="declare the interest")
    declared = case_data(social_care={"touches_social_care": False, "local_authority": None})
    svc.act(store, who("practice"), cid, "submit",
            revised=(parse_case(declared), "revised", BASELINE))
    assert svc.act(store, who("commissioner_approver"), cid, "approve").status == "approved"
    with pytest.raises(CaseError, match="alternative providers"):
        parse_case(case_data(make_or_buy={"alternatives_considered": []}))


def test_lifecycle_refuses_steps_out_of_order(store: DecisionStore) -> None:
    cid = new_case(store)
    approver = who("commissioner_approver")
    with pytest.raises(CaseError, match="a case that is draft cannot be approved"):
        svc.act(store, approver, cid, "approve")
    with pytest.raises(CaseError, match="say why"):
        svc.act(store, approver, cid, "reject")
    done = case_in(store, "approved")
    with pytest.raises(CaseError, match="approved cannot be approved"):
        svc.act(store, approver, done, "approve")
    assert svc.act(store, who("practice"), done, "implement").status == "implemented"
    hist = [h["action"] for h in svc.show(store, who("practice"), done).history]
    assert hist == ["create_case", "submit_case", "consult_case", "approve_case",
                    "implement_case"]


def test_named_users_must_hold_the_role(store: DecisionStore) -> None:
    from pbc.services.principal import parse_principal

    svc.add_user(store, who("administrator"), "j.smith", "commissioner_approver", ICB)
    cid = case_in(store, "submitted")
    with pytest.raises(AccessDenied, match="does not hold the role"):
        svc.act(store, parse_principal("commissioner_approver:Q98:j.smith"), cid, "approve")
    with pytest.raises(AccessDenied, match="no user 'nobody'"):
        svc.act(store, parse_principal("commissioner_approver:Q99:nobody"), cid, "approve")
    view = svc.act(store, parse_principal("commissioner_approver:Q99:j.smith"), cid,
                   "approve")
    assert view.history[-1]["actor"] == "j.smith"
    # only an administrator adds users once the first administrator exists
    with pytest.raises(AccessDenied, match="only administrator"):
        svc.add_user(store, who("practice"), "sneaky", "administrator", ICB)


def test_case_file_is_validated_naming_each_field() -> None:
    bad = case_data(category="golf", scope={"service_lines": ["boats"]},
                    social_care={"local_authority": None})
    with pytest.raises(CaseError) as e:
        parse_case(bad, "case.toml")
    message = str(e.value)
    for part in ("case.toml", "category", "golf", "scope.service_lines", "boats",
                 "social_care", "local_authority"):
        assert part in message


def _evaluation_attempt(store: DecisionStore, p: Any, action: str) -> Callable[[], Any]:
    """Evaluating (or seeing the evaluation of) an implemented case: a permitted principal
    gets past the permission table to the next refusal (no warehouse data: nothing loaded;
    not yet evaluated), which is not an AccessDenied."""
    import tempfile

    from pbc.decisions.evaluation import EvaluationError
    from pbc.services.evaluation import evaluate_case, show_evaluation
    from pbc.warehouse import Warehouse

    cid = case_in(store, "approved")
    svc.act(store, who("practice"), cid, "implement")

    def run() -> None:
        try:
            if action == "evaluate_case":
                evaluate_case(store, Warehouse(Path(tempfile.mkdtemp())), p, cid)
            else:
                show_evaluation(store, p, cid)
        except EvaluationError as e:
            assert "no priced activity" in str(e)
        except CaseError as e:
            assert "has not been evaluated" in str(e)

    return run
