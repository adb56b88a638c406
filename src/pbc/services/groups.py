"""Group agreements and membership as a service, feeding the warehouse's ``practice_groups``.

* :func:`agree` records the agreement between the commissioner and a group (terms, start,
  review date, signatories with role and date).
* :func:`join` and :func:`leave` record a practice joining or leaving a group, with dates,
  as decisions (:class:`pbc.decisions.groups.GroupMembership`). Overlapping memberships of
  one practice are refused, naming both windows.
* :func:`load_memberships` makes the resulting ``practice_groups`` table (the delivered rows
  with the recorded memberships over them, by the table's key: practice and ``valid_from``)
  and loads it **through the normal loader** (:func:`pbc.warehouse.load.load`) as a new
  warehouse version: validated against the data contract, reconciled, atomic, every file
  hashed in the manifest (Guarantees 1-7 of docs/architecture.md hold because nothing else
  writes the table). Attribution follows at the next ``pbc price``, which applies the one
  rule of group membership (:mod:`pbc.attribution.organisations`) to every activity row.

Why load rather than write the table directly: the loader is the only writer of input
tables, so a recorded membership is checked by the same rules as a delivered one (codes
that exist, ``valid_from <= valid_to``, one row per key), a refused row can never half-change
the table, and the manifest says where the table came from. A later delivery of
``practice_groups`` replaces the table, as every reference file does: load the memberships
again after it (``pbc group load``), and pbc puts the recorded windows back over it.

Every change is one transaction of the decision store with its hash-chained audit row;
every call takes the acting :class:`Principal` and asks the one permission table.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from pbc.decisions.audit import append
from pbc.decisions.groups import (
    GroupAgreement,
    GroupError,
    GroupMembership,
    Window,
    merge_windows,
    overlapping,
)
from pbc.decisions.models import utcnow
from pbc.decisions.store import DecisionStore
from pbc.services.cases import resolve
from pbc.services.permissions import CaseParties, authorise
from pbc.services.principal import Principal
from pbc.warehouse import Warehouse, WarehouseError

AGREEMENT, MEMBERSHIP = "group_agreement", "group_membership"


@dataclass(frozen=True)
class Signatory:
    name: str
    role: str
    signed_on: dt.date

    @classmethod
    def parse(cls, text: str) -> Signatory:
        """``NAME;ROLE;YYYY-MM-DD`` (e.g. ``Dr A Khan;group lead;2026-03-01``)."""
        parts = [p.strip() for p in text.split(";")]
        if len(parts) != 3 or not all(parts):
            raise GroupError(f"--signatory {text!r}: expected NAME;ROLE;YYYY-MM-DD")
        return cls(parts[0], parts[1], _date(parts[2], "--signatory date"))


def _date(text: str | dt.date, what: str) -> dt.date:
    if isinstance(text, dt.date):
        return text
    try:
        return dt.date.fromisoformat(str(text).strip())
    except ValueError:
        raise GroupError(f"{what} {text!r}: expected a date like 2026-04-01") from None


@dataclass(frozen=True)
class Agreement:
    id: int
    group_code: str
    commissioner_code: str
    terms: str
    starts_on: dt.date
    review_on: dt.date
    signatories: list[Signatory]
    recorded_by: str


@dataclass(frozen=True)
class GroupView:
    group_code: str
    commissioner_code: str
    agreements: list[Agreement]
    #: every membership window of the group, delivered and recorded
    windows: list[Window]
    #: practices whose default group (``practices.group_code``) it is
    default_members: list[str] = field(default_factory=list)


def _organisation(warehouse: Warehouse, table: str, key: str, code: str) -> dict[str, Any]:
    if not warehouse.has_table(table):
        raise WarehouseError(f"{warehouse.root}: no {table} in the warehouse (run pbc load)")
    rows = warehouse.query(f"SELECT * FROM {table} WHERE {key} = ?", [code])
    if not rows:
        raise GroupError(f"{code}: no such {key.removesuffix('_code')} in the warehouse's "
                         f"{table}")
    cols = [r[0] for r in warehouse.query(f"DESCRIBE {table}")]
    return dict(zip(cols, rows[0], strict=True))


def _group(warehouse: Warehouse, code: str) -> str:
    """The group's commissioner."""
    return str(_organisation(warehouse, "groups", "group_code", code)["commissioner_code"])


def delivered_windows(warehouse: Warehouse) -> list[Window]:
    """The warehouse's ``practice_groups`` rows (none when it has no such table)."""
    if not warehouse.has_table("practice_groups"):
        return []
    rows = warehouse.query("SELECT practice_code, group_code, valid_from, valid_to "
                           "FROM practice_groups WHERE valid_from IS NOT NULL")
    return [Window(str(p), str(g), f, t) for p, g, f, t in rows]


def _recorded(s: Any) -> list[GroupMembership]:
    return list(s.scalars(select(GroupMembership).order_by(GroupMembership.id)))


def _window(m: GroupMembership) -> Window:
    return Window(m.practice_code, m.group_code, m.valid_from, m.valid_to, "decision")


def windows(store: DecisionStore, warehouse: Warehouse) -> list[Window]:
    """The ``practice_groups`` pbc would load: delivered rows, recorded memberships over
    them."""
    with store._session() as s:
        recorded = [_window(m) for m in _recorded(s)]
    return merge_windows(delivered_windows(warehouse), recorded)


# --------------------------------------------------------------------------- agreements
def agree(store: DecisionStore, warehouse: Warehouse, who: Principal, group: str, *,
          terms: str, starts_on: str | dt.date, review_on: str | dt.date,
          signatories: list[Signatory]) -> Agreement:
    """Record the agreement between the commissioner and ``group``."""
    commissioner = _group(warehouse, group)
    start, review = _date(starts_on, "--start"), _date(review_on, "--review")
    if not terms.strip():
        raise GroupError("an agreement needs its terms (--terms TEXT or --terms-file FILE)")
    if review <= start:
        raise GroupError(f"the review date {review} must come after the start {start}")
    if not signatories:
        raise GroupError("an agreement needs its signatories (--signatory NAME;ROLE;DATE, "
                         "once for each)")
    who = resolve(store, who)
    authorise(who, "agree_group", CaseParties(group, commissioner, proposer_kind="group"))
    signed = json.dumps([{"name": x.name, "role": x.role, "signed_on": x.signed_on.isoformat()}
                         for x in signatories])
    with store._tx() as s:
        row = GroupAgreement(group_code=group, commissioner_code=commissioner,
                             terms=terms.strip(), starts_on=start, review_on=review,
                             signatories=signed, recorded_by=who.user or "anonymous",
                             recorded_at=utcnow())
        s.add(row)
        s.flush()
        append(s, who, "agree_group", AGREEMENT, str(row.id),
               after={"group_code": group, "starts_on": start.isoformat(),
                      "review_on": review.isoformat(), "signatories": json.loads(signed),
                      "terms": row.terms}, source=who.source)
        return _agreement(row)


def _agreement(row: GroupAgreement) -> Agreement:
    return Agreement(row.id, row.group_code, row.commissioner_code, row.terms, row.starts_on,
                     row.review_on,
                     [Signatory(x["name"], x["role"], dt.date.fromisoformat(x["signed_on"]))
                      for x in json.loads(row.signatories)], row.recorded_by)


# --------------------------------------------------------------------------- membership
def join(store: DecisionStore, warehouse: Warehouse, who: Principal, practice: str,
         group: str, valid_from: str | dt.date, reason: str) -> Window:
    """Record ``practice`` joining ``group`` from ``valid_from`` (an open window)."""
    start = _date(valid_from, "--from")
    if not reason.strip():
        raise GroupError("say why the practice joins (--reason TEXT)")
    p = _organisation(warehouse, "practices", "practice_code", practice)
    commissioner = _group(warehouse, group)
    if str(p["commissioner_code"]) != commissioner:
        raise GroupError(f"practice {practice} (commissioner {p['commissioner_code']}) cannot "
                         f"join group {group} of commissioner {commissioner}")
    who = resolve(store, who)
    authorise(who, "change_membership", CaseParties(group, commissioner, proposer_kind="group"))
    new = Window(practice, group, start, None, "decision")
    with store._tx() as s:
        current = merge_windows(delivered_windows(warehouse),
                                [_window(m) for m in _recorded(s)])
        mine = [w for w in current if w.practice_code == practice]
        if not any(w.covers(start) for w in mine) and str(p["group_code"]) == group:
            raise GroupError(f"practice {practice} is already in group {group} on {start} "
                             "(its default group, practices.group_code)")
        old = next((w for w in mine
                    if w.valid_from == start or overlapping([w, new]) is not None), None)
        if old is not None:
            where = ("recorded in pbc" if old.origin == "decision"
                     else "delivered in practice_groups")
            raise GroupError(
                f"practice {practice} cannot join {group} from {start}: it would overlap its "
                f"membership {old.describe()} ({where}); a practice is in one group on any "
                f"day: record its leaving first (pbc group leave {practice} --group "
                f"{old.group_code} --last-day {start - dt.timedelta(days=1)})")
        row = GroupMembership(practice_code=practice, group_code=group,
                              commissioner_code=commissioner, valid_from=start, valid_to=None,
                              reason=reason.strip(), joined_by=who.user or "anonymous",
                              joined_at=utcnow())
        s.add(row)
        s.flush()
        append(s, who, "join_group", MEMBERSHIP, str(row.id), after=row.state(),
               reason=reason.strip(), source=who.source)
        return _window(row)


def leave(store: DecisionStore, warehouse: Warehouse, who: Principal, practice: str,
          group: str, last_day: str | dt.date, reason: str) -> Window:
    """Record ``practice`` leaving ``group`` after ``last_day`` (the window that covers it
    closes then). After it the practice is in its default group (``practices.group_code``)
    unless it joins another; leaving its default group itself is refused."""
    end = _date(last_day, "--last-day")
    if not reason.strip():
        raise GroupError("say why the practice leaves (--reason TEXT)")
    p = _organisation(warehouse, "practices", "practice_code", practice)
    commissioner = _group(warehouse, group)
    who = resolve(store, who)
    authorise(who, "change_membership", CaseParties(group, commissioner, proposer_kind="group"))
    with store._tx() as s:
        recorded = {(m.practice_code, m.valid_from): m for m in _recorded(s)}
        current = merge_windows(delivered_windows(warehouse),
                                [_window(m) for m in recorded.values()])
        window = next((w for w in current if w.practice_code == practice
                       and w.group_code == group and w.covers(end)), None)
        if window is None:
            if str(p["group_code"]) == group:
                raise GroupError(
                    f"{group} is practice {practice}'s default group (practices.group_code): "
                    f"after {end} it would still be in {group}; record its joining another "
                    f"group instead (pbc group join {practice} --group OTHER --from "
                    f"{end + dt.timedelta(days=1)})")
            theirs = [w.describe() for w in current if w.practice_code == practice]
            raise GroupError(f"practice {practice} is not a member of {group} on {end} "
                             f"(its memberships: {'; '.join(theirs) or 'none recorded'})")
        row = recorded.get((practice, window.valid_from))
        before = window.__dict__ | {"valid_from": window.valid_from.isoformat(),
                                    "valid_to": window.valid_to and window.valid_to.isoformat()}
        if row is None:  # a delivered window: recorded now, with its end
            row = GroupMembership(practice_code=practice, group_code=group,
                                  commissioner_code=commissioner,
                                  valid_from=window.valid_from, valid_to=end,
                                  reason=f"delivered in practice_groups; {reason.strip()}",
                                  joined_by="practice_groups", joined_at=utcnow())
            s.add(row)
        row.valid_to, row.left_by, row.left_at = end, who.user or "anonymous", utcnow()
        s.flush()
        append(s, who, "leave_group", MEMBERSHIP, str(row.id), before=before,
               after=row.state(), reason=reason.strip(), source=who.source)
        return _window(row)


def show(store: DecisionStore, warehouse: Warehouse, who: Principal, group: str) -> GroupView:
    commissioner = _group(warehouse, group)
    who = resolve(store, who)
    authorise(who, "view_group", CaseParties(group, commissioner, proposer_kind="group"))
    with store._session() as s:
        agreements = [_agreement(a) for a in s.scalars(select(GroupAgreement).where(
            GroupAgreement.group_code == group).order_by(GroupAgreement.id))]
    defaults = [str(r[0]) for r in warehouse.query(
        "SELECT practice_code FROM practices WHERE group_code = ? ORDER BY 1", [group])]
    return GroupView(group, commissioner, agreements,
                     [w for w in windows(store, warehouse) if w.group_code == group], defaults)


# --------------------------------------------------------------------------- warehouse
PRACTICE_GROUPS_COLUMNS = ("practice_code", "group_code", "valid_from", "valid_to")


def write_practice_groups(rows: list[Window], path: Path) -> Path:
    """``practice_groups.csv`` (RFC 4180, the data contract's columns; blank: open)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, lineterminator="\r\n")
        out.writerow(PRACTICE_GROUPS_COLUMNS)
        for w in rows:
            out.writerow([w.practice_code, w.group_code, w.valid_from.isoformat(),
                          w.valid_to.isoformat() if w.valid_to else ""])
    return path


@dataclass(frozen=True)
class MembershipLoad:
    rows: int
    recorded: int
    version: int
    changed: bool


def load_memberships(store: DecisionStore, warehouse: Warehouse, who: Principal
                     ) -> MembershipLoad:
    """Load ``practice_groups`` (delivered rows, recorded memberships over them) through the
    normal loader as a new warehouse version. Refused, with nothing loaded, when two windows
    overlap or a row names a practice or group the warehouse does not have (the loader
    would quarantine it and the table would lose the row)."""
    commissioners = sorted(str(r[0]) for r in warehouse.query(
        "SELECT DISTINCT commissioner_code FROM practices"))
    who = resolve(store, who)
    mine = who.organisation if who.organisation in commissioners else (
        commissioners[0] if commissioners else "(none)")
    authorise(who, "load_memberships", CaseParties(mine, mine))
    rows = windows(store, warehouse)
    clash = overlapping(rows)
    if clash is not None:
        raise GroupError(f"practice_groups would overlap: {clash[0].describe()} and "
                         f"{clash[1].describe()}; nothing was loaded")
    practices = {str(r[0]) for r in warehouse.query("SELECT practice_code FROM practices")}
    groups = {str(r[0]) for r in warehouse.query("SELECT group_code FROM groups")}
    for n, w in enumerate(rows, start=1):
        if w.practice_code not in practices or w.group_code not in groups:
            raise GroupError(f"practice_groups row {n} ({w.describe()}): the practice or the "
                             "group is not in the warehouse; nothing was loaded")
    from pbc.warehouse.load import load

    with tempfile.TemporaryDirectory(prefix="pbc-memberships-") as tmp:
        write_practice_groups(rows, Path(tmp) / "practice_groups.csv")
        report = load(Path(tmp), warehouse)
    if report.rows_quarantined:  # cannot happen after the checks above; never silent
        raise WarehouseError(f"loading practice_groups quarantined {report.rows_quarantined} "
                             "row(s): pbc export quarantine shows them")
    recorded = sum(1 for w in rows if w.origin == "decision")
    with store._tx() as s:
        append(s, who, "load_memberships", "table", "practice_groups",
               after={"rows": len(rows), "recorded": recorded,
                      "warehouse_version": report.version, "changed": report.changed},
               source=who.source)
    return MembershipLoad(len(rows), recorded, report.version, report.changed)
