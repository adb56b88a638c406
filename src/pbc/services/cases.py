"""Business cases, users and the audit log as services (the CLI and, later, the web app).

Every call takes the acting :class:`Principal` and asks the one permission table
(:mod:`pbc.services.permissions`). A principal naming a decision-store user
(``--as ROLE:ORG:USER``) must hold that role for that organisation in the store
(:func:`resolve`). Every change is one transaction of the decision store that also writes
its hash-chained audit row (:mod:`pbc.decisions.audit`), with the case's state before and
after.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from pbc.decisions.audit import Verification, append, verify
from pbc.decisions.cases import (
    BusinessCase,
    CaseError,
    CaseFile,
    ConflictError,
    next_status,
)
from pbc.decisions.models import AuditEvent, utcnow
from pbc.decisions.people import User, UserRole
from pbc.decisions.savings import Baseline, Projection, project
from pbc.decisions.store import DecisionStore
from pbc.pricing.schema import TARIFF_VALUE_SQL
from pbc.reference.codelists import codelist
from pbc.services.permissions import CaseParties, allowed, authorise
from pbc.services.principal import NAMED_USER, ROLES, AccessDenied, Principal
from pbc.warehouse import Warehouse, WarehouseError
from pbc.warehouse.validate import lit

ENTITY = "business_case"
#: roles a user of the store may hold (``public`` is nobody's)
USER_ROLES = tuple(r for r in ROLES if r != "public")


# --------------------------------------------------------------------------- people
def resolve(store: DecisionStore, who: Principal) -> Principal:
    """The principal, checked against the store when it names a user (``ROLE:ORG:USER``):
    that user must hold the role for the organisation. Self-declared principals pass as
    they are (docs/security.md)."""
    if who.source != NAMED_USER:
        return who
    with store._session() as s:
        user = s.scalar(select(User).where(User.name == who.user))
        if user is None:
            raise AccessDenied(f"{who}: there is no user {who.user!r} in the decision store "
                               "(an administrator adds one: pbc users add NAME --role ROLE "
                               "--org CODE)")
        held = {(r.role, r.organisation) for r in user.roles}
    if (who.role, who.organisation) not in held:
        roles = ", ".join(f"{r}:{o}" for r, o in sorted(held)) or "none"
        raise AccessDenied(f"{who}: user {who.user!r} does not hold the role {who.role} for "
                           f"{who.organisation} (their roles: {roles})")
    return who


def add_user(store: DecisionStore, who: Principal, name: str, role: str,
             organisation: str) -> bool:
    """Add a user (or another role to an existing user). Returns True if the user is new.

    Only an administrator may, except for the store's first administrator (nobody holds
    the role yet): anyone may add that one, and the audit row says it was the first."""
    name, organisation = name.strip(), organisation.strip()
    if not name or not organisation:
        raise CaseError("a user needs a name and an organisation")
    if role not in USER_ROLES:
        raise CaseError(f"--role {role!r}: expected one of {', '.join(USER_ROLES)}")
    who = resolve(store, who)
    with store._tx() as s:
        admins = s.scalar(select(func.count()).select_from(UserRole).where(
            UserRole.role == "administrator")) or 0
        first_admin = admins == 0 and role == "administrator"
        if not first_admin:
            authorise(who, "add_user")
        user = s.scalar(select(User).where(User.name == name))
        new = user is None
        if user is None:
            user = User(name=name, created_by=who.user or "anonymous")
            s.add(user)
        elif any(r.role == role and r.organisation == organisation for r in user.roles):
            raise CaseError(f"user {name!r} already holds {role}:{organisation}")
        user.roles.append(UserRole(role=role, organisation=organisation))
        s.flush()
        append(s, who, "add_user" if new else "add_role", "user", name,
               after={"role": role, "organisation": organisation},
               first_administrator=first_admin, source=who.source)
    return new


def users(store: DecisionStore, who: Principal) -> list[tuple[str, str, str]]:
    """(name, role, organisation) of every user's every role."""
    authorise(resolve(store, who), "list_users")
    with store._session() as s:
        rows = s.execute(select(User.name, UserRole.role, UserRole.organisation).join(
            UserRole).order_by(User.name, UserRole.role, UserRole.organisation)).all()
    return [(str(a), str(b), str(c)) for a, b, c in rows]


# --------------------------------------------------------------------------- baseline
def read_baseline(warehouse: Warehouse, case: CaseFile) -> tuple[Baseline, str]:
    """The proposer's priced activity in the case's scope in its baseline year (the file's
    ``baseline_year``, else the latest financial year with all twelve months priced), and
    the proposer's commissioner."""
    if not warehouse.has_table("priced_activity"):
        raise WarehouseError(f"{warehouse.root}: no priced activity (run pbc price): the "
                             "savings are computed from the proposer's priced baseline")
    org_table, key = (("practices", "practice_code") if case.proposer_kind == "practice"
                      else ("groups", "group_code"))
    found = warehouse.query(f"SELECT DISTINCT commissioner_code FROM {org_table} "
                            f"WHERE {key} = ?", [case.proposer])
    if not found:
        raise CaseError(f"proposer {case.proposer}: no such {case.proposer_kind} in the "
                        f"warehouse's {org_table}")
    commissioner = str(found[0][0])
    council = case.social_care.local_authority
    if council is not None and (not warehouse.has_table("local_authorities") or not
                                warehouse.query("SELECT 1 FROM local_authorities WHERE "
                                                "local_authority_code = ?", [council])):
        raise CaseError(f"local authority {council}: not in the warehouse's "
                        "local_authorities (the council a social-care case is sent to)")
    year = case.baseline_year
    if year is None:
        full = warehouse.query("SELECT financial_year FROM priced_activity GROUP BY 1 "
                               "HAVING count(DISTINCT month) = 12 ORDER BY 1 DESC LIMIT 1")
        if not full:
            raise CaseError("no financial year has all twelve months of priced activity: "
                            "name the case's baseline_year")
        year = str(full[0][0])
    join, scoped, what = scope_filter(case)
    where = [f"p.financial_year = {lit(year)}", f"p.{key} = {lit(case.proposer)}", *scoped]
    described = [f"{case.proposer_kind} {case.proposer}", what]
    pence = PENCE_SQL
    rows = warehouse.query(
        f"SELECT count(*), coalesce(sum({pence}), 0), coalesce(sum({pence} * {pence}), 0) "
        f"FROM priced_activity p {join} WHERE {' AND '.join(where)}")
    n, spend, squares = rows[0]
    return Baseline(year, int(n), int(spend), int(squares), "; ".join(described)), commissioner


#: a row of ``priced_activity p``'s tariff value in pence (before the marginal rate)
PENCE_SQL = "CAST(round({} * 100) AS HUGEINT)".format(
    TARIFF_VALUE_SQL.replace("price", "p.price")
    .replace("marginal_rate_adjustment", "p.marginal_rate_adjustment"))


def scope_filter(case: CaseFile) -> tuple[str, list[str], str]:
    """The case's scope over ``priced_activity p``: a join (for a condition code list), the
    conditions (priced, attributed rows in the scope) and the scope in words. The baseline
    and the evaluation (:mod:`pbc.services.evaluation`) read the same rows."""
    where = ["p.price IS NOT NULL", "p.attributed",
             f"p.service_line IN ({', '.join(lit(s) for s in case.scope.service_lines)})"]
    described = ["service lines " + ", ".join(case.scope.service_lines)]
    if case.scope.hrg_prefixes:
        where.append("(" + " OR ".join(f"starts_with(p.hrg_code, {lit(h)})"
                                       for h in case.scope.hrg_prefixes) + ")")
        described.append("HRG " + ", ".join(f"{h}*" for h in case.scope.hrg_prefixes))
    join = ""
    if case.scope.condition_codelist:
        codes = codelist(case.scope.condition_codelist)
        join = ("JOIN apc_spells s ON p.activity_type = 'apc' "
                "AND p.activity_id = CAST(s.spell_id AS VARCHAR)")
        where.append("(" + " OR ".join(f"starts_with(s.primary_diagnosis, {lit(c)})"
                                       for c in codes) + ")")
        described.append(f"primary diagnosis in {case.scope.condition_codelist}")
    return join, where, "; ".join(described)


# --------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class CaseView:
    """A case as its reader may see it."""

    id: int
    version: int
    status: str
    title: str
    proposer_kind: str
    proposer_code: str
    commissioner_code: str
    category: str
    touches_social_care: bool
    local_authority_code: str | None
    provider_is_proposer: bool
    case_file: str
    savings: dict[str, Any]
    consultation_response: str | None
    consulted_by: str | None
    decision_note: str | None
    decided_by: str | None
    created_by: str
    history: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _parties(case: BusinessCase) -> CaseParties:
    return CaseParties(case.proposer_code, case.commissioner_code, case.local_authority_code,
                       case.sent_to_local_authority, case.id, case.proposer_kind)


def _history(s: Session, case_id: int) -> list[dict[str, Any]]:
    events = s.scalars(select(AuditEvent).where(
        AuditEvent.entity == ENTITY, AuditEvent.entity_id == str(case_id)).order_by(
        AuditEvent.id))
    return [{"audit_id": e.id, "at": e.at.isoformat(timespec="seconds"), "actor": e.actor,
             "role": e.actor_role, "action": e.action,
             "after": json.loads(e.after_state) if e.after_state else None} for e in events]


def _view(s: Session, case: BusinessCase) -> CaseView:
    return CaseView(case.id, case.version, case.status, case.title, case.proposer_kind,
                    case.proposer_code, case.commissioner_code, case.category,
                    case.touches_social_care, case.local_authority_code,
                    case.provider_is_proposer, case.case_file, json.loads(case.savings),
                    case.consultation_response, case.consulted_by, case.decision_note,
                    case.decided_by, case.created_by, _history(s, case.id))


def projection(case: CaseFile, baseline: Baseline) -> Projection:
    change = case.expected_change
    return project(baseline, change.reduction, change.reduction_sd, case.investment_pence(),
                   seed=case.seed)


def create_case(store: DecisionStore, who: Principal, case: CaseFile, text: str,
                baseline: Baseline, commissioner_code: str) -> CaseView:
    """Record a new draft case with pbc's projection of its savings; returns it."""
    who = resolve(store, who)
    authorise(who, "create_case", CaseParties(case.proposer, commissioner_code,
                                              proposer_kind=case.proposer_kind))
    savings = projection(case, baseline)
    with store._tx() as s:
        row = BusinessCase(
            status="draft", title=case.title, proposer_kind=case.proposer_kind,
            proposer_code=case.proposer, commissioner_code=commissioner_code,
            category=case.category,
            touches_social_care=case.social_care.touches_social_care,
            local_authority_code=case.social_care.local_authority,
            provider_is_proposer=case.make_or_buy.provider_is_proposer, case_file=text,
            content=case.model_dump_json(),
            savings=json.dumps(savings.as_dict(), sort_keys=True),
            created_by=who.user or "anonymous", created_at=utcnow(), updated_at=utcnow())
        s.add(row)
        s.flush()
        append(s, who, "create_case", ENTITY, str(row.id), after=row.state(),
               title=case.title, net_pence=savings.net_pence,
               interval=[savings.lower_pence, savings.upper_pence], source=who.source)
        return _view(s, row)


def act(store: DecisionStore, who: Principal, case_id: int, action: str, *,
        note: str | None = None, response: str | None = None,
        expected_version: int | None = None,
        revised: tuple[CaseFile, str, Baseline] | None = None,
        freed_from: Warehouse | None = None) -> CaseView:
    """Take one step of a case's lifecycle (submit, consult, approve, reject, return,
    implement). ``expected_version`` is the version the actor read: if the case has
    changed since, nothing is done and :class:`ConflictError` says who changed it.
    ``revised`` (with submit): the proposer's revised case file, its text and baseline; the
    audit log gets a ``revise_case`` row (title, file hash and savings before and after)
    and then the ``submit_case`` row, in the same transaction.
    ``freed_from`` (with approve): the warehouse where a case funded from freed resources finds the
    proposer's freed resources (:mod:`pbc.services.reinvestment`)."""
    from pbc.services import reinvestment

    who = resolve(store, who)
    freed = None
    if action == "approve":
        with store._session() as s:  # read, then let go: SQLite sessions hold the lock
            found = s.get(BusinessCase, case_id)
            drawing = (found is not None and found.status == "submitted"
                       and reinvestment.funded_from_freed(found)
                       and allowed(who, "approve_case", _parties(found)))
            if found is not None:
                s.expunge(found)
        if drawing and found is not None:
            if freed_from is None:
                raise CaseError(f"case {case_id} is funded from freed resources: its "
                                "approval needs the warehouse to read them")
            freed = reinvestment.proposer_freed(freed_from, store, found)
    if action == "consult" and not (response or "").strip():
        raise CaseError("the local authority's response is needed (--response TEXT)")
    if action in ("reject", "return") and not (note or "").strip():
        raise CaseError(f"say why the case is {'rejected' if action == 'reject' else 'returned'}"
                        " (--note TEXT)")
    try:
        with store._tx() as s:
            case = s.get(BusinessCase, case_id)
            if case is None:
                raise CaseError(f"no business case {case_id}")
            authorise(who, f"{action}_case", _parties(case))
            if expected_version is not None and case.version != expected_version:
                raise _conflict(s, case, expected_version)
            new_status = next_status(action, case.status, case.touches_social_care)
            if action == "approve" and case.provider_is_proposer:
                declared = case.case().make_or_buy.conflict_of_interest
                if not (declared or "").strip():
                    raise CaseError(
                        f"case {case.id} cannot be approved: {case.proposer_code} would "
                        "provide the service itself and has not declared its conflict of "
                        "interest (make_or_buy.conflict_of_interest in the case file); return "
                        "it for changes")
            if action == "approve" and reinvestment.funded_from_freed(case):
                if freed is None:  # the case changed funding since it was read
                    raise ConflictError(f"conflict: case {case.id} changed while it was "
                                        "being approved; nothing was done: try again")
                reinvestment.draw_on_freed(s, who, case, freed)
            before = case.state()
            was = _content(case) if revised is not None else None
            if revised is not None:
                if action != "submit":
                    raise CaseError("only a submission can carry a revised case file")
                _revise(case, *revised)
            case.status = new_status
            case.updated_at = utcnow()
            if action == "consult":
                case.consultation_response = response
                case.consulted_by, case.consulted_at = who.user or "anonymous", utcnow()
            if action in ("approve", "reject", "return"):
                case.decision_note = note
                case.decided_by, case.decided_at = who.user or "anonymous", utcnow()
            s.flush()  # UPDATE ... WHERE version = read version: StaleDataError if not
            if was is not None:  # the revision, then the submission: two steps of history
                append(s, who, "revise_case", ENTITY, str(case.id), before=was,
                       after=_content(case), source=who.source)
            append(s, who, f"{action}_case", ENTITY, str(case.id), before=before,
                   after=case.state(), note=note, source=who.source)
            return _view(s, case)
    except StaleDataError:
        with store._session() as s:
            case = s.get(BusinessCase, case_id)
            assert case is not None
            raise _conflict(s, case, expected_version) from None


def _content(case: BusinessCase) -> dict[str, Any]:
    """What a revision's audit row records of the case file: its title, the SHA-256 of its
    text, and pbc's projection of its savings (net, with the interval)."""
    import hashlib

    sv = json.loads(case.savings)
    return {"title": case.title,
            "case_file_sha256": hashlib.sha256(case.case_file.encode()).hexdigest(),
            "net_pence": sv.get("net_pence"),
            "interval": [sv.get("interval", {}).get("lower_pence"),
                         sv.get("interval", {}).get("upper_pence")]}


def _revise(case: BusinessCase, file: CaseFile, text: str, baseline: Baseline) -> None:
    """Replace a draft or returned case's file by its proposer's revision, with pbc's
    projection of the revised savings (``pbc case submit ID --file F``, the case page's
    *Revise and resubmit*)."""
    if (file.proposer, file.proposer_kind) != (case.proposer_code, case.proposer_kind):
        raise CaseError(f"a revised case keeps its proposer ({case.proposer_kind} "
                        f"{case.proposer_code}), not {file.proposer_kind} {file.proposer}")
    case.title, case.category, case.case_file = file.title, file.category, text
    case.content = file.model_dump_json()
    case.touches_social_care = file.social_care.touches_social_care
    case.local_authority_code = file.social_care.local_authority
    case.provider_is_proposer = file.make_or_buy.provider_is_proposer
    case.savings = json.dumps(projection(file, baseline).as_dict(), sort_keys=True)


def _conflict(s: Session, case: BusinessCase, read: int | None) -> ConflictError:
    last = s.scalar(select(AuditEvent).where(
        AuditEvent.entity == ENTITY, AuditEvent.entity_id == str(case.id)).order_by(
        AuditEvent.id.desc()).limit(1))
    by = (f", last by {last.actor} ({last.actor_role}, {last.action}) at "
          f"{last.at:%Y-%m-%d %H:%M:%S}" if last is not None else "")
    seen = f"version {read}" if read is not None else "it"
    return ConflictError(
        f"conflict: case {case.id} was changed by someone else after you read {seen}; it "
        f"is now {case.status} (version {case.version}{by}). Nothing was done: look at it "
        f"again (pbc case show {case.id})")


def show(store: DecisionStore, who: Principal, case_id: int) -> CaseView:
    who = resolve(store, who)
    with store._session() as s:
        case = s.get(BusinessCase, case_id)
        if case is None:
            raise CaseError(f"no business case {case_id}")
        authorise(who, "view_case", _parties(case))
        return _view(s, case)


def visible_cases(store: DecisionStore, who: Principal) -> list[CaseView]:
    """Every case ``who`` may see (a council only those sent to it), by id."""
    who = resolve(store, who)
    with store._session() as s:
        cases = list(s.scalars(select(BusinessCase).order_by(BusinessCase.id)))
        return [_view(s, c) for c in cases if allowed(who, "view_case", _parties(c))]


# --------------------------------------------------------------------------- audit
def verify_audit(store: DecisionStore, who: Principal) -> Verification:
    authorise(resolve(store, who), "verify_audit")
    with store._session() as s:
        return verify(s)


def audit_log(store: DecisionStore, who: Principal, *, entity: str | None = None,
              entity_id: str | None = None) -> list[AuditEvent]:
    authorise(resolve(store, who), "read_audit")
    query = select(AuditEvent).order_by(AuditEvent.id)
    if entity is not None:
        query = query.where(AuditEvent.entity == entity)
    if entity_id is not None:
        query = query.where(AuditEvent.entity_id == entity_id)
    with store._session() as s:
        return list(s.scalars(query))


def case_file_path(path: Path) -> tuple[CaseFile, str]:
    from pbc.decisions.cases import read_case_file

    return read_case_file(path)
