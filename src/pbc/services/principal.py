"""Who is asking: every service call that touches decisions or patient data takes one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["commissioner", "group", "practice", "local_authority", "public"]


@dataclass(frozen=True)
class Principal:
    """A user acting in a role for an organisation (practice, group, commissioner or LA code)."""

    user: str
    role: Role
    organisation: str

    def __str__(self) -> str:
        return f"{self.user} ({self.role} {self.organisation})"


class AccessDenied(PermissionError):
    """The principal may not do this; the message says why."""
