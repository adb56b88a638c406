"""Shipped code lists (ICD-10 prefixes etc.), kept as text files beside this module."""

from __future__ import annotations

from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent / "codelists"


@cache
def codelist(name: str) -> tuple[str, ...]:
    """The codes in ``codelists/<name>.txt`` (one per line; ``#`` starts a comment)."""
    path = HERE / f"{name}.txt"
    codes = []
    for line in path.read_text(encoding="utf-8").splitlines():
        code = line.split("#", 1)[0].strip()
        if code:
            codes.append(code)
    return tuple(codes)
