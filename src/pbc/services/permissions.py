"""Who may do what: the one table of the decision services (CLI and web alike).

Each action names the roles that may take it and the **scope** the principal's organisation
must match:

* ``own``: the principal acts for its own organisation (a practice for itself, a group for
  itself); for a case, its organisation is the case's proposer; for an opt-out, the
  practice or group that opts out; for a group's agreement or members, the group;
* ``commissioner``: the principal's organisation is the case's commissioner (the
  commissioner of the proposing practice or group);
* ``consulted``: a local authority the case was sent to for consultation (it touches social
  care, names that council and has been submitted);
* ``partner``: the principal's organisation is a partner of a Section 75 pooled budget
  agreement, in the role of that partner (a ``local_authority`` principal for the council
  partner, ``commissioner`` roles for the commissioner partner, ``group`` for the group);
* ``any``: no organisation to match (managing users, verifying the audit log).

A refusal raises :class:`AccessDenied` with a message that says who may do it.
``docs/security.md`` prints this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pbc.services.principal import AccessDenied, Principal

Scope = Literal["own", "commissioner", "consulted", "partner", "any"]
Action = Literal["manage_budgets", "add_user", "list_users", "create_case", "submit_case",
                 "consult_case", "approve_case", "reject_case", "return_case",
                 "implement_case", "view_case", "evaluate_case", "view_evaluation",
                 "verify_audit", "read_audit", "record_pooled_agreement",
                 "view_pooled_budget", "propose_opt_out", "confirm_opt_out",
                 "withdraw_opt_out", "view_opt_outs", "agree_group", "change_membership",
                 "view_group", "load_memberships",
                 "add_contract", "view_contract", "check_invoice"]


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str]
    scope: Scope
    verb: str  # "approve a business case"


def _rule(roles: str, scope: Scope, verb: str) -> Rule:
    return Rule(frozenset(roles.split()), scope, verb)


#: THE table: action -> (roles, scope). Nothing else grants a decision action.
PERMISSIONS: dict[str, Rule] = {
    # set, agree and restate budgets, freeze monitoring positions (pbc.decisions.store; the
    # services check the commissioner is the warehouse's, or the position's, own)
    "manage_budgets": _rule("commissioner", "any", "set, agree or restate budgets, or "
                            "freeze a monitoring position"),
    "add_user": _rule("administrator", "any", "add a user or a role"),
    "list_users": _rule("administrator", "any", "list the users"),
    "create_case": _rule("practice group", "own", "propose a business case"),
    "submit_case": _rule("practice group", "own", "submit (or resubmit) a business case"),
    "consult_case": _rule("local_authority", "consulted",
                          "record the local authority's response to a business case"),
    "approve_case": _rule("commissioner_approver", "commissioner", "approve a business case"),
    "reject_case": _rule("commissioner_approver", "commissioner", "reject a business case"),
    "return_case": _rule("commissioner_approver", "commissioner",
                         "return a business case for changes"),
    "implement_case": _rule("practice group commissioner_approver", "own",
                            "record a business case as implemented"),
    "view_case": _rule("practice group commissioner commissioner_approver local_authority",
                       "own", "see a business case"),
    "evaluate_case": _rule("commissioner commissioner_approver", "commissioner",
                           "evaluate an implemented business case"),
    "view_evaluation": _rule("practice group commissioner commissioner_approver", "own",
                             "see a business case's evaluation"),
    # provider contracts and invoices (pbc.services.invoices): the case's parties are the
    # provider (as proposer_code) and the contract's commissioner
    "add_contract": _rule("commissioner", "commissioner", "record a provider contract"),
    "view_contract": _rule("commissioner commissioner_approver", "commissioner",
                           "see a provider contract or its position"),
    "check_invoice": _rule("commissioner", "commissioner",
                           "read and check a provider's invoice"),
    "verify_audit": _rule("commissioner commissioner_approver administrator", "any",
                          "verify the audit log"),
    "read_audit": _rule("commissioner commissioner_approver administrator", "any",
                        "read the audit log"),
    # Section 75 pooled budgets (pbc.services.pooled): a partner records its agreement in
    # the register, and sees its position and settlement; nobody else sees them
    "record_pooled_agreement": _rule("commissioner local_authority", "partner",
                                     "record a pooled budget agreement"),
    "view_pooled_budget": _rule("commissioner commissioner_approver local_authority group",
                                "partner", "see a pooled budget"),
    # opt-outs (pbc.services.optouts): the holder hands a line back, the commissioner's
    # approver confirms it; "own" is the practice or group that opts out
    "propose_opt_out": _rule("practice group", "own",
                             "opt out of a service line (hand it back to the commissioner)"),
    "confirm_opt_out": _rule("commissioner_approver", "commissioner", "confirm an opt-out"),
    "withdraw_opt_out": _rule("practice group commissioner_approver", "own",
                              "withdraw an opt-out"),
    "view_opt_outs": _rule("practice group commissioner commissioner_approver", "own",
                           "see opt-outs"),
    # group agreements and membership (pbc.services.groups): "own" is the group
    "agree_group": _rule("commissioner_approver", "commissioner",
                         "record a group's agreement with the commissioner"),
    "change_membership": _rule("group commissioner commissioner_approver", "own",
                               "record a practice joining or leaving a group"),
    "view_group": _rule("group commissioner commissioner_approver", "own",
                        "see a group's agreement and members"),
    "load_memberships": _rule("commissioner", "commissioner",
                              "load the recorded group memberships into the warehouse"),
}

#: for scope "own" actions that roles on the commissioner's side may also take, the scope
#: they take it in (their organisation is the case's commissioner), and for view_case the
#: local authority's (the case was sent to it)
SCOPE_BY_ROLE: dict[tuple[str, str], Scope] = {
    ("implement_case", "commissioner_approver"): "commissioner",
    ("view_case", "commissioner"): "commissioner",
    ("view_case", "commissioner_approver"): "commissioner",
    ("view_case", "local_authority"): "consulted",
    ("view_evaluation", "commissioner"): "commissioner",
    ("view_evaluation", "commissioner_approver"): "commissioner",
    ("withdraw_opt_out", "commissioner_approver"): "commissioner",
    ("view_opt_outs", "commissioner"): "commissioner",
    ("view_opt_outs", "commissioner_approver"): "commissioner",
    ("change_membership", "commissioner"): "commissioner",
    ("change_membership", "commissioner_approver"): "commissioner",
    ("view_group", "commissioner"): "commissioner",
    ("view_group", "commissioner_approver"): "commissioner",
}


@dataclass(frozen=True)
class CaseParties:
    """What the scope rules need to know about a case (or a case being proposed)."""

    proposer_code: str
    commissioner_code: str
    local_authority_code: str | None = None
    sent_to_local_authority: bool = False
    id: int | None = None
    proposer_kind: str | None = None  # practice or group


@dataclass(frozen=True)
class AgreementParties:
    """The partners of a pooled budget agreement: (kind, code) with kind commissioner,
    local_authority or group."""

    reference: str
    partners: tuple[tuple[str, str], ...]


#: the partner kind a role acts for under scope ``partner``
PARTNER_KIND = {"commissioner": "commissioner", "commissioner_approver": "commissioner",
                "local_authority": "local_authority", "group": "group"}


def who_may(action: str, case: CaseParties | AgreementParties | None = None) -> str:
    """Who may take ``action`` (on ``case``): ``commissioner_approver:Q99`` etc. when the
    case is known, the rule in words otherwise; for messages."""
    rule = PERMISSIONS[action]
    parts = []
    for role in sorted(rule.roles):
        scope = SCOPE_BY_ROLE.get((action, role), rule.scope)
        if scope == "partner":
            if isinstance(case, AgreementParties):
                parts += [f"{role}:{code}" for kind, code in case.partners
                          if kind == PARTNER_KIND.get(role)]
            else:
                parts.append(f"{role} of a partner")
            continue
        if isinstance(case, AgreementParties):
            continue
        if scope == "any":
            parts.append(f"{role} (any organisation)")
        elif scope == "own":
            if case is None:
                parts.append(f"{role} (for its own {role})")
            elif case.proposer_kind in (None, role):
                parts.append(f"{role}:{case.proposer_code}")
        elif scope == "commissioner":
            parts.append(f"{role}:{case.commissioner_code}" if case is not None
                         else f"{role} of the case's commissioner")
        elif case is not None and case.local_authority_code and case.sent_to_local_authority:
            parts.append(f"{role}:{case.local_authority_code}")
        elif case is not None and case.local_authority_code:
            parts.append(f"{role}:{case.local_authority_code} once the case is sent to it")
        elif case is None:
            parts.append(f"{role} of the council the case was sent to")
    return " or ".join(parts) or "nobody"


def allowed(who: Principal, action: str,
            case: CaseParties | AgreementParties | None = None) -> bool:
    rule = PERMISSIONS[action]
    if who.role not in rule.roles:
        return False
    scope = SCOPE_BY_ROLE.get((action, who.role), rule.scope)
    if scope == "any":
        return True
    if scope == "partner":
        return isinstance(case, AgreementParties) and (
            (PARTNER_KIND.get(who.role), who.organisation) in case.partners)
    if not isinstance(case, CaseParties):
        return False
    if scope == "own":  # a practice acts for its own practice, a group for its own group
        return who.organisation == case.proposer_code and (
            case.proposer_kind is None or who.role == case.proposer_kind)
    if scope == "commissioner":
        return who.organisation == case.commissioner_code
    return (case.sent_to_local_authority and case.local_authority_code is not None
            and who.organisation == case.local_authority_code)


def authorise(who: Principal, action: str,
              case: CaseParties | AgreementParties | None = None) -> None:
    """Refuse (:class:`AccessDenied`) unless the table lets ``who`` take ``action``."""
    if allowed(who, action, case):
        return
    rule = PERMISSIONS[action]
    what = rule.verb
    if isinstance(case, AgreementParties):
        what += f" ({case.reference})"
    elif case is not None and case.id is not None:
        what += f" (case {case.id}, proposed by {case.proposer_code})"
    elif case is not None:
        what += f" for {case.proposer_code}"
    raise AccessDenied(f"{who} may not {what}: only {who_may(action, case)} may")
