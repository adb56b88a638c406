"""An invoice checked against pbc's pricing: every line classified exactly once.

The classes, in order of **precedence** (a line gets the first that applies; docs/decisions.md):

1. ``not_ours``: pbc has no such activity (no priced activity with that dataset and id), or
   it is another provider's, or another commissioner's patient. Nothing else about the line
   matters: the commissioner does not pay for it.
2. ``duplicate``: the activity was billed before: on an earlier line of this invoice (the
   first line stands on its own merits, every later one is a duplicate), or on an invoice
   checked earlier (recorded in the decision store).
3. ``not_in_contract``: there is no contract for (commissioner, provider, the activity's
   financial year), or the activity's service line (pbc's) is outside the contract's plan.
4. ``wrong_price``: the amount is not pbc's price of the activity (the tariff value,
   :data:`pbc.pricing.schema.TARIFF_VALUE_SQL`), or pbc could not price it.
5. ``wrong_practice``: the practice code differs from pbc's attribution (blank when pbc
   attributes it to no practice).
6. ``matched``: none of these.

Money: each line's **invoiced** amount falls in exactly one class, so the classes' invoiced
money adds up to the invoice. The money **at stake** (what the challenge list disputes) is
the whole amount for not ours, duplicates and lines outside the contract; the difference
(invoiced - pbc's price; negative when the provider under-bills) for a wrong price; for a
wrong practice the price is right and nothing is disputed in payment, but the amount is
charged to the wrong practice's budget, so it is shown as at stake for attribution.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pbc.invoices.invoice import InvoiceLine

CLASSES = ("matched", "not_ours", "duplicate", "not_in_contract", "wrong_price",
           "wrong_practice")
#: the classes a line can fall in, first that applies wins (matched when none does)
PRECEDENCE = ("not_ours", "duplicate", "not_in_contract", "wrong_price", "wrong_practice")


@dataclass(frozen=True)
class Activity:
    """pbc's view of one priced activity (a row of ``priced_activity``)."""

    dataset: str
    activity_id: str
    commissioner_code: str | None
    provider_code: str | None
    practice_code: str | None  # None: unattributed (the commissioner's)
    financial_year: str
    month: int
    service_line: str
    value_pence: int | None  # the tariff value; None when pbc could not price it
    unpriced_reason: str | None = None


@dataclass(frozen=True)
class CheckedLine:
    line: InvoiceLine
    klass: str
    reason: str
    at_stake_pence: int
    pbc: Activity | None = None

    @property
    def pbc_pence(self) -> int | None:
        return None if self.pbc is None else self.pbc.value_pence


@dataclass(frozen=True)
class ClassTotal:
    klass: str
    lines: int
    invoiced_pence: int
    at_stake_pence: int


@dataclass(frozen=True)
class InvoiceCheck:
    """The outcome: every line classified, with the totals per class."""

    provider_code: str
    commissioner_code: str
    lines: list[CheckedLine]
    totals: list[ClassTotal] = field(default_factory=list)

    @property
    def invoiced_pence(self) -> int:
        return sum(x.line.amount_pence for x in self.lines)

    @property
    def challenges(self) -> list[CheckedLine]:
        """Every line that is not matched, in the invoice's order: the list to send back."""
        return [x for x in self.lines if x.klass != "matched"]

    def total(self, klass: str) -> ClassTotal:
        return next(t for t in self.totals if t.klass == klass)

    def reconcile(self) -> None:
        """Lines in = the sum of the classes' lines; invoiced money = the sum of the
        classes' invoiced money (AssertionError naming the gap otherwise)."""
        lines = sum(t.lines for t in self.totals)
        money = sum(t.invoiced_pence for t in self.totals)
        if lines != len(self.lines) or money != self.invoiced_pence:
            raise AssertionError(
                f"the invoice check does not reconcile: {len(self.lines)} lines and "
                f"{self.invoiced_pence} pence in, {lines} lines and {money} pence in classes")


def _describe(amount: int) -> str:
    sign = "-" if amount < 0 else ""
    return f"{sign}£{abs(amount) // 100:,}.{abs(amount) % 100:02d}"


def classify(line: InvoiceLine, pbc: Activity | None, *, provider: str, commissioner: str,
             contracts: Mapping[str, frozenset[str]], seen_earlier: str | None
             ) -> CheckedLine:
    """One line's class, by :data:`PRECEDENCE`. ``seen_earlier``: where the activity was
    billed before (an earlier line of this invoice or an earlier checked invoice), if it
    was; ``contracts``: financial year -> the service lines of that year's contract plan."""
    amount = line.amount_pence
    if pbc is None:
        return CheckedLine(line, "not_ours", f"no {line.dataset} activity "
                           f"{line.activity_id} in pbc's priced activity", amount)
    if pbc.provider_code != provider:
        return CheckedLine(line, "not_ours", f"activity of provider {pbc.provider_code}, "
                           f"not {provider}", amount, pbc)
    if pbc.commissioner_code != commissioner:
        return CheckedLine(line, "not_ours", "another commissioner's patient "
                           f"({pbc.commissioner_code or 'none'})", amount, pbc)
    if seen_earlier is not None:
        return CheckedLine(line, "duplicate", f"already billed ({seen_earlier})", amount, pbc)
    plan = contracts.get(pbc.financial_year)
    if plan is None:
        return CheckedLine(line, "not_in_contract", f"no contract with {provider} for "
                           f"{pbc.financial_year}", amount, pbc)
    if pbc.service_line not in plan:
        return CheckedLine(line, "not_in_contract", f"service line {pbc.service_line} is "
                           f"not in the {pbc.financial_year} contract's plan", amount, pbc)
    if pbc.value_pence is None:
        return CheckedLine(line, "wrong_price", "pbc does not price it: "
                           f"{pbc.unpriced_reason or 'unpriced'}", amount, pbc)
    if amount != pbc.value_pence:
        diff = amount - pbc.value_pence
        return CheckedLine(line, "wrong_price", f"billed {_describe(amount)}, pbc's price "
                           f"is {_describe(pbc.value_pence)} ({_describe(diff)})", diff, pbc)
    if line.practice_code != (pbc.practice_code or ""):
        return CheckedLine(line, "wrong_practice", f"billed to practice "
                           f"{line.practice_code or '(blank)'}, pbc attributes it to "
                           f"{pbc.practice_code or 'no practice (unattributed)'}", amount, pbc)
    return CheckedLine(line, "matched", "", 0, pbc)


def check_invoice(lines: Sequence[InvoiceLine], activity: Mapping[tuple[str, str], Activity],
                  *, provider: str, commissioner: str,
                  contracts: Mapping[str, frozenset[str]],
                  billed_before: Mapping[tuple[str, str], str] | None = None
                  ) -> InvoiceCheck:
    """Classify every line of an invoice from ``provider`` to ``commissioner``.

    ``activity``: pbc's priced activity by (dataset, activity id), at least every key the
    invoice names; ``contracts``: financial year -> service lines of the plan of the
    contract (commissioner, provider, year); ``billed_before``: keys billed on invoices
    checked earlier -> a description of where."""
    earlier = dict(billed_before or {})
    checked: list[CheckedLine] = []
    for line in lines:
        pbc = activity.get(line.key)
        result = classify(line, pbc, provider=provider, commissioner=commissioner,
                          contracts=contracts, seen_earlier=earlier.get(line.key))
        checked.append(result)
        if result.klass != "not_ours":
            earlier.setdefault(line.key, f"row {line.row} of this invoice")
    return InvoiceCheck(provider, commissioner, checked, totals(checked))


def totals(lines: Iterable[CheckedLine]) -> list[ClassTotal]:
    """Lines, invoiced money and money at stake per class, in :data:`CLASSES` order."""
    acc = {k: [0, 0, 0] for k in CLASSES}
    for x in lines:
        a = acc[x.klass]
        a[0] += 1
        a[1] += x.line.amount_pence
        a[2] += x.at_stake_pence
    return [ClassTotal(k, *acc[k]) for k in CLASSES]
