"""Who is asking: every service call that touches decisions or patient data takes one.

Until the web app's accounts exist, the command line's principal is *self-declared*
(``--as ROLE:ORGANISATION``): pbc does not check it, so anyone who can read the warehouse
folder can claim any role. :func:`parse_principal` is the one parser every command uses;
a principal it makes says so (``authenticated=False``, ``source``). When the decision
store's users exist, the CLI will act as a named local user whose role comes from the
store, and that principal will carry ``authenticated=True`` and the store as its source
(docs/security.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Role = Literal["commissioner", "commissioner_data", "group", "practice", "local_authority",
               "public"]
ROLES: tuple[str, ...] = get_args(Role)
#: how the command line's ``--as`` principal came to be (shown in errors and audit rows)
SELF_DECLARED = "--as (self-declared)"


@dataclass(frozen=True)
class Principal:
    """A user acting in a role for an organisation (practice, group, commissioner or LA code).

    ``commissioner`` runs the commissioner's business (budgets, models, aggregates);
    ``commissioner_data`` is the commissioner's data role, the only one that may take
    every patient's rows out of the warehouse. ``authenticated`` is False for a principal
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


def parse_principal(text: str, *, user: str | None = None,
                    source: str = SELF_DECLARED) -> Principal:
    """``ROLE:ORGANISATION`` (e.g. ``practice:A81001``) as an unauthenticated principal.

    Raises ValueError naming the expected form and the roles."""
    role, _, org = text.strip().partition(":")
    if role not in ROLES or not org.strip():
        raise ValueError(f"--as {text!r}: expected ROLE:ORGANISATION with ROLE one of "
                         f"{', '.join(ROLES)}")
    return Principal(user, role, org.strip(), authenticated=False,  # type: ignore[arg-type]
                     source=source)
