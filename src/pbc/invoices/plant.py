"""A synthetic invoice with planted errors (``pbc synth --invoice``, the demo), seeded.

Start from a correct invoice (one line per activity, at pbc's price, to pbc's practice, all
in the contract's plan) and plant a known number of each error:

* ``not_ours``: lines for activity ids that do not exist (and lines of other commissioners'
  patients when some are given);
* ``duplicate``: a line billed a second time (the copy, placed later in the invoice, is the
  duplicate; the first stays matched);
* ``not_in_contract``: lines of a service line outside the contract's plan;
* ``wrong_price``: the amount changed by between 1% and 25%, up or down;
* ``wrong_practice``: the practice code changed to another of the commissioner's practices.

Every planted line is a different activity, so each has exactly one error. The truth is the
row of each planted line and its class; every other line is a match.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from pbc.invoices.invoice import InvoiceLine


@dataclass(frozen=True)
class Planted:
    row: int
    dataset: str
    activity_id: str
    klass: str


def plant_errors(correct: Sequence[InvoiceLine], *, seed: int, per_class: int,
                 outside_contract: Sequence[InvoiceLine], practices: Sequence[str],
                 foreign: Sequence[InvoiceLine] = ()
                 ) -> tuple[list[InvoiceLine], list[Planted]]:
    """The invoice's lines (rows renumbered from 2) and the planted errors.

    ``correct``: right lines, in the contract; ``outside_contract``: right lines of service
    lines outside the plan (``per_class`` of them are billed); ``practices``: the
    commissioner's practice codes; ``foreign``: lines of other commissioners' patients
    (billed among the not-ours lines). ValueError when there are too few lines to plant."""
    rng = random.Random(seed)
    eligible = [x for x in correct if x.practice_code]
    need = 3 * per_class
    if len(eligible) < need or len(outside_contract) < per_class or len(set(practices)) < 2:
        raise ValueError(f"too little activity to plant {per_class} errors of each class: "
                         f"{len(eligible)} attributed lines (need {need}), "
                         f"{len(outside_contract)} outside the contract (need {per_class}), "
                         f"{len(set(practices))} practices (need 2)")
    chosen = rng.sample(eligible, need)
    dups = {x.key for x in chosen[:per_class]}
    prices = {x.key for x in chosen[per_class:2 * per_class]}
    moved = {x.key for x in chosen[2 * per_class:]}
    lines: list[tuple[InvoiceLine, str]] = []
    for x in correct:
        if x.key in prices:
            factor = rng.choice([-1, 1]) * rng.randint(1, 25)
            delta = max(1, abs(x.amount_pence) * abs(factor) // 100) * (1 if factor > 0 else -1)
            if x.amount_pence + delta < 0 or delta == 0:
                delta = abs(delta) or 1
            lines.append((replace(x, amount_pence=x.amount_pence + delta), "wrong_price"))
        elif x.key in moved:
            other = rng.choice(sorted(set(practices) - {x.practice_code}))
            lines.append((replace(x, practice_code=other), "wrong_practice"))
        else:
            lines.append((x, "matched"))
    extra: list[tuple[InvoiceLine, str]] = []
    extra += [(x, "duplicate") for x in correct if x.key in dups]
    extra += [(x, "not_in_contract") for x in rng.sample(list(outside_contract), per_class)]
    templates = rng.sample(list(correct), per_class)
    taken = {x.activity_id for x in correct} | {x.activity_id for x in outside_contract}
    for n, t in enumerate(templates):
        fake = f"X{seed % 1000:03d}{n:05d}{rng.randrange(10**6):06d}"
        while fake in taken:
            fake += "9"
        extra.append((replace(t, activity_id=fake), "not_ours"))
    extra += [(x, "not_ours") for x in foreign]
    for item in extra:  # each after a random position; a duplicate after its original
        key = item[0].key
        first = next((i for i, (x, _) in enumerate(lines) if x.key == key), -1)
        lines.insert(rng.randint(first + 1, len(lines)), item)
    out = [replace(x, row=i) for i, (x, _) in enumerate(lines, start=2)]
    truth = [Planted(x.row, x.dataset, x.activity_id, k)
             for x, (_, k) in zip(out, lines, strict=True) if k != "matched"]
    return out, truth
