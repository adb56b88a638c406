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


#: the condition code lists a scope (a business case's, a pooled budget's) may name: the
#: ambulatory care sensitive conditions, by primary diagnosis of admitted spells
CONDITION_CODELISTS = ("acsc_acute", "acsc_chronic")


def known_names(values: list[str], allowed: tuple[str, ...], what: str) -> list[str]:
    """``values`` unchanged if every one is in ``allowed``; else ValueError naming the
    unknown ones and what is expected (``what``: e.g. "service line")."""
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ValueError(f"unknown {what}(s) {', '.join(bad)}; expected some of "
                         f"{', '.join(allowed)}")
    return values


def known_condition_codelist(name: str | None) -> str | None:
    """``name`` unchanged if it is None or one of :data:`CONDITION_CODELISTS`."""
    if name is not None and name not in CONDITION_CODELISTS:
        raise ValueError(f"condition_codelist must be one of {', '.join(CONDITION_CODELISTS)}, "
                         f"not {name!r}")
    return name
