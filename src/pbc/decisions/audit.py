"""The tamper-evident audit log: every row hash-chained to the one before it.

Each row of ``audit_log`` carries ``prev_hash`` (the ``row_hash`` of the row before it, in id
order; :data:`GENESIS` for the first) and ``row_hash``, the SHA-256 of its own content and
``prev_hash`` (:func:`row_digest`). A row is appended (:func:`append`) in the same transaction
as the change it records, after locking the one-row ``audit_head`` table (the id and hash of
the last row and the number of rows), so two writers never chain to the same row.

:func:`verify` walks the log in id order and names the first row that breaks the chain:

* a row whose content was **edited** no longer matches its own hash;
* a row **deleted** from the middle, or one **inserted**, breaks the link of the row after
  it (its ``prev_hash`` is not the hash of the row now before it);
* rows deleted from the **end** no longer reach the head.

What it cannot detect: someone with write access to the database who recomputes every hash
after their change, and the head too (there is no secret in the chain). Against that, keep
the head that ``pbc audit verify`` prints (its last id and hash) somewhere the database's
administrators cannot write, such as the minutes of the meeting that approved the cases, and
compare (docs/decisions.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pbc.decisions.models import AuditEvent, Base, utcnow

if TYPE_CHECKING:
    from pbc.services.principal import Principal

#: ``prev_hash`` of the first row
GENESIS = "0" * 64


class AuditHead(Base):
    """The end of the chain (one row, id 1): locked by every writer, checked by verify."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_id: Mapped[int] = mapped_column(Integer)
    last_hash: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(Integer)


def _at(value: dt.datetime | str) -> str:
    if isinstance(value, str):  # a raw SQLite value
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds")


def row_digest(*, id: int, at: dt.datetime | str, actor: str, actor_role: str, action: str,
               entity: str, entity_id: str, detail: str, before_state: str | None,
               after_state: str | None, prev_hash: str) -> str:
    """SHA-256 of a row's content and the hash of the row before it (hex)."""
    content = [id, _at(at), actor, actor_role, action, entity, entity_id, detail,
               before_state, after_state, prev_hash]
    return hashlib.sha256(json.dumps(content, ensure_ascii=False).encode()).hexdigest()


def digest_of(event: AuditEvent) -> str:
    return row_digest(id=event.id, at=event.at, actor=event.actor,
                      actor_role=event.actor_role, action=event.action, entity=event.entity,
                      entity_id=event.entity_id, detail=event.detail,
                      before_state=event.before_state, after_state=event.after_state,
                      prev_hash=event.prev_hash or "")


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def append(session: Session, who: Principal, action: str, entity: str, entity_id: str, *,
           before: Any = None, after: Any = None, **detail: Any) -> AuditEvent:
    """Append one audit row, chained to the last, inside the caller's transaction.

    The head row is locked first (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite write
    transactions are serialised by the store), so concurrent writers chain one after the
    other."""
    head = session.scalar(select(AuditHead).where(AuditHead.id == 1).with_for_update())
    if head is None:
        raise RuntimeError("the decision store has no audit head: run its migrations "
                           "(pbc.decisions.migrate)")
    event = AuditEvent(
        at=utcnow(), actor=who.user or "anonymous",
        actor_role=f"{who.role}:{who.organisation}", action=action, entity=entity,
        entity_id=entity_id, detail=_json(detail) or "{}", before_state=_json(before),
        after_state=_json(after), prev_hash=head.last_hash, row_hash="")
    session.add(event)
    session.flush()  # gives the row its id, which the hash covers
    event.row_hash = digest_of(event)
    head.last_id, head.last_hash, head.rows = event.id, event.row_hash, head.rows + 1
    return event


@dataclass(frozen=True)
class Verification:
    """The outcome of :func:`verify`: ``ok``, or the first bad row and why."""

    rows: int
    last_id: int
    last_hash: str
    bad_id: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify_rows(events: Sequence[AuditEvent], head: AuditHead | None) -> Verification:
    """Check a log (rows in id order) and its head; the first break wins."""
    if head is None:
        return Verification(0, 0, GENESIS, None, "the audit head is missing: the decision "
                            "store was not migrated, or the head was deleted")
    prev, prev_id = GENESIS, None
    for n, e in enumerate(events):
        what = f"audit row {e.id} ({e.action} {e.entity} {e.entity_id})"
        if e.prev_hash != prev:
            before = (f"row {prev_id}" if prev_id is not None else "the start of the log")
            return Verification(n, prev_id or 0, prev, e.id,
                                f"{what} does not follow {before}: its previous hash is "
                                f"{(e.prev_hash or '(none)')[:12]}..., the hash of {before} is "
                                f"{prev[:12]}...; a row between them was deleted or "
                                f"inserted, or {before} was changed")
        if digest_of(e) != e.row_hash:
            return Verification(n, prev_id or 0, prev, e.id,
                                f"{what} was changed: its content no longer matches its hash")
        if e.id > head.last_id:
            return Verification(n, prev_id or 0, prev, e.id,
                                f"{what} comes after the last row the head records (row "
                                f"{head.last_id}): it was inserted")
        if e.id == head.last_id and e.row_hash != head.last_hash:
            return Verification(n, prev_id or 0, prev, e.id,
                                f"{what} is the last row the head records, but its hash "
                                "differs from the head's: the row or the head was changed")
        prev, prev_id = e.row_hash or "", e.id
    rows, last_id = len(events), prev_id or 0
    if (head.last_id, head.last_hash, head.rows) != (last_id, prev, rows):
        return Verification(rows, last_id, prev, head.last_id,
                            f"the log ends at row {last_id} ({rows} rows) but its head "
                            f"records row {head.last_id} ({head.rows} rows): audit row "
                            f"{head.last_id} and any rows before it after row {last_id} "
                            "were deleted, or the head was changed")
    return Verification(rows, last_id, prev)


def verify(session: Session) -> Verification:
    """Verify the whole chain in the database of ``session``."""
    events = list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
    head = session.get(AuditHead, 1)
    return verify_rows(events, head)
