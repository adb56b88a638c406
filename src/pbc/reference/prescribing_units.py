"""Prescribing units: the age-sex weights that make practices' prescribing comparable.

An ASTRO-PU (Age, Sex and Temporary Resident Originated Prescribing Unit) weights each
registered patient by the relative cost of prescribing for their age band and sex
(Roberts SJ, Harris CM. BMJ 1993;307:485; revised as ASTRO(09)-PU by the Prescribing
Support Unit, now published by the NHS Business Services Authority). A practice's
prescribing units are Σ patients × weight; its cost per ASTRO-PU compares with other
practices' regardless of list age. The weights are in ``prescribing_units.csv`` beside
this module, with their source; the loader checks every row, so a bad edit is an error
naming the file, row and column, never a silent default. Shared by benchmarking (the
prescribing indicator's denominator) and, later, prescribing budgets.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path

PATH = Path(__file__).resolve().parent / "prescribing_units.csv"


class PrescribingUnitsError(ValueError):
    """The weights file is not valid; the message names the file, row and column."""


@dataclass(frozen=True)
class Band:
    """One age-sex band: ``age_from`` to ``age_to`` inclusive (None: no upper bound)."""

    sex: str
    age_from: int
    age_to: int | None
    weight: Decimal

    def holds(self, sex: str, age: int) -> bool:
        return sex == self.sex and age >= self.age_from and (
            self.age_to is None or age <= self.age_to)


@cache
def astro_pu_bands(path: Path = PATH) -> tuple[Band, ...]:
    """The bands of ``path`` (default: the shipped ASTRO(09)-PU table), checked: each sex's
    bands start at 0, follow on without gaps or overlaps and end open."""
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines()]
    body = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip() and not ln.startswith("#")]
    if not body:
        raise PrescribingUnitsError(f"{path}: no rows")
    header_row, header = body[0]
    reader = csv.DictReader([header] + [ln for _, ln in body[1:]])
    need = {"sex", "age_from", "age_to", "astro_pu"}
    if set(reader.fieldnames or ()) < need:
        raise PrescribingUnitsError(f"{path}: row {header_row}: columns must include "
                                    f"{', '.join(sorted(need))}")
    bands = []
    for (row_no, _), rec in zip(body[1:], reader, strict=True):
        where = f"{path}: row {row_no}"
        if rec["sex"] not in ("M", "F"):
            raise PrescribingUnitsError(f"{where}: column sex: {rec['sex']!r} is not M or F")
        try:
            lo = int(rec["age_from"])
            hi = int(rec["age_to"]) if rec["age_to"] else None
        except ValueError as e:
            raise PrescribingUnitsError(f"{where}: column age_from/age_to: {e}") from e
        try:
            w = Decimal(rec["astro_pu"])
        except InvalidOperation as e:
            raise PrescribingUnitsError(f"{where}: column astro_pu: {rec['astro_pu']!r} is "
                                        "not a number") from e
        if w <= 0:
            raise PrescribingUnitsError(f"{where}: column astro_pu: must be positive")
        bands.append(Band(rec["sex"], lo, hi, w))
    for sex in ("M", "F"):
        own = sorted((b for b in bands if b.sex == sex), key=lambda b: b.age_from)
        edge: int | None = 0
        for b in own:
            if edge is None or b.age_from != edge:
                raise PrescribingUnitsError(f"{path}: sex {sex}: bands must run from age 0 "
                                            f"without gaps or overlaps (at age {b.age_from})")
            edge = None if b.age_to is None else b.age_to + 1
        if not own or edge is not None:
            raise PrescribingUnitsError(f"{path}: sex {sex}: the last band must be open "
                                        "(age_to blank)")
    return tuple(bands)


def astro_pu(sex: str, age: int) -> Decimal:
    """The ASTRO-PU weight of one patient."""
    for b in astro_pu_bands():
        if b.holds(sex, age):
            return b.weight
    raise ValueError(f"no ASTRO-PU band for sex {sex!r}, age {age}")
