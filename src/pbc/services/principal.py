"""Who is asking: every service call that touches decisions or patient data takes one.

The command line's principal is *self-declared* (``--as ROLE:ORGANISATION``): pbc does
not check it, so anyone who can read the warehouse folder can claim any role.
:func:`parse_principal` is the one parser every command uses; a principal it makes says so
(``authenticated=False``, ``source``). The web app and the API make principals of users
whose password or token was checked (``authenticated=True``, the source naming which:
:mod:`pbc.services.accounts`); docs/security.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Role = Literal["commissioner", "commissioner_data", "group", "practice", "local_authority",
               "public", "commissioner_approver", "administrator"]
ROLES: tuple[str, ...] = get_args(Role)
#: how the command line's ``--as`` principal came to be (shown in errors and audit rows)
SELF_DECLARED = "--as (self-declared)"


@dataclass(frozen=True)
class Principal:
    """A user acting in a role for an organisation (practice, group, commissioner or LA code).

    ``commissioner`` runs the commissioner's business (budgets, models, aggregates): its
    finance role; ``commissioner_approver`` approves, rejects or returns business cases;
    ``commissioner_data`` is the commissioner's data role, the only one that may take
    every patient's rows out of the warehouse; ``group`` is a group's lead, ``practice`` a
    practice user, ``local_authority`` a council officer, ``administrator`` manages the
    decision store's users (docs/security.md). ``authenticated`` is False for a principal
    nobody checked (the CLI's ``--as``); ``source`` says where it came from.
    """

    user: str | None
    role: Role
    organisation: str
    authenticated: bool = False
    source: str = "self-declared"

    def __str__(self) -> str:
        return f"{self.user or 'anonymous'} ({self.role} {self.organisation})"


class AccessDenied(PermissionError):
    """The principal may not do this; the message says why."""


#: the source of a principal that names a user of the decision store (``ROLE:ORG:USER``);
#: the role is then checked against the store's users, the name itself is not
NAMED_USER = "--as with a decision-store user (name self-declared, role checked)"


def parse_principal(text: str, *, user: str | None = None,
                    source: str = SELF_DECLARED) -> Principal:
    """``ROLE:ORGANISATION[:USER]`` (e.g. ``practice:A81001``) as an unauthenticated
    principal. With ``:USER`` the principal names a user of the decision store (its source
    says so, and :func:`pbc.services.people.resolve` checks the role against the store).

    Raises ValueError naming the expected form and the roles."""
    role, _, rest = text.strip().partition(":")
    org, _, named = rest.partition(":")
    if role not in ROLES or not org.strip() or (_ and not named.strip()):
        raise ValueError(f"--as {text!r}: expected ROLE:ORGANISATION[:USER] with ROLE one of "
                         f"{', '.join(ROLES)}")
    if named.strip():
        user, source = named.strip(), NAMED_USER
    return Principal(user, role, org.strip(), authenticated=False,  # type: ignore[arg-type]
                     source=source)
