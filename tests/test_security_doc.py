"""docs/security.md prints the permission table: it must say what the code does."""

from __future__ import annotations

import re
from pathlib import Path

from pbc.services.permissions import PERMISSIONS, SCOPE_BY_ROLE

DOC = Path(__file__).resolve().parents[1] / "docs" / "security.md"


def test_the_documented_permission_table_is_the_code() -> None:
    text = DOC.read_text(encoding="utf-8").split("## Who may decide what", 1)[1]
    documented: dict[str, set[tuple[str, str]]] = {}
    for action, cell in re.findall(r"^\| `(\w+)` \| (.+?) \|$", text, re.M):
        pairs = set()
        for part in cell.split(";"):
            found = re.match(r"\s*([\w, ]+?) \((\w+)\)", part)
            if found:
                for role in found.group(1).split(","):
                    pairs.add((role.strip(), found.group(2)))
        documented[action] = pairs
    code = {action: {(role, SCOPE_BY_ROLE.get((action, role), rule.scope))
                     for role in rule.roles} for action, rule in PERMISSIONS.items()}
    assert documented == code
