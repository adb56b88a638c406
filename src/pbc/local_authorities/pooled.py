"""Section 75 pooled budgets: the agreement, social care costed by days, the settlement.

A pooled fund under Section 75 of the NHS Act 2006 (formerly Section 31 of the Health Act
1999; the NHS Bodies and Local Authorities Partnership Arrangements Regulations 2000, reg.
7) is hosted by one partner, and the partnership agreement must say how the partners
contribute and how an overspend or an underspend of the fund is shared. pbc reads the
agreement from a TOML file (``examples/pooled_budget.toml``, :class:`Agreement`) and
settles the year exactly:

* **contributions**: each partner's, by financial year, pounds to the penny;
* **spend**: the priced NHS activity and the social care packages in the agreement's scope
  (the services read them; :func:`package_cost_by_month` is the social care rule);
* **the variance** ``spend - contributions`` is shared by the agreement's rule
  (:func:`settle`):

  ``proportional``
      in proportion to the partners' contributions for the year;
  ``fixed``
      by a named split (fractions that add up to exactly 1);
  ``host_cap``
      the host partner bears (or keeps) the variance up to the cap; what is beyond the cap
      is shared by all partners, the host included, in proportion to contributions.

  The rule applies alike to an overspend (partners **bear** their share) and an underspend
  (partners **keep** theirs).

Every settlement reconciles to the penny: ``sum(contributions) + sum(shares) = spend``.
Money is integer pence. A split in proportion is made by the **largest remainder** method
in exact integer arithmetic: each partner gets the whole pence of its exact share, and the
pence left over go one each to the partners with the largest fractional remainders, ties
to the partner listed first in the agreement. A negative amount (an underspend) is split
as its absolute value and negated, so the same partner gets the odd penny either way.

Nothing here reads a file or a warehouse.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pbc.calendar import normalise_financial_year, parse_financial_year, year_bounds
from pbc.contracts.tables import SOCIAL_CARE_SERVICES
from pbc.pricing.schema import SERVICE_LINES
from pbc.reference.codelists import known_condition_codelist, known_names

PartnerKind = Literal["commissioner", "local_authority", "group"]
SharingRule = Literal["proportional", "fixed", "host_cap"]
SHARING_RULES: tuple[str, ...] = ("proportional", "fixed", "host_cap")
#: NHS service lines a pooled budget may hold: every line with a patient (prescribing rows
#: are per practice and month and carry no patient, so their residents cannot be known)
POOLABLE_SERVICE_LINES = tuple(s for s in SERVICE_LINES if s != "prescribing")

Money = Annotated[Decimal, Field(ge=0, decimal_places=2, max_digits=14)]


class PooledError(ValueError):
    """An agreement or a settlement that cannot be made as asked (the message says why)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def pence(pounds: Decimal) -> int:
    """Pounds (2 dp at most, as validated) in integer pence, exactly."""
    value = pounds * 100
    if value != value.to_integral_value():
        raise PooledError(f"£{pounds} is not a whole number of pence")
    return int(value)


class Partner(_Strict):
    """One partner of the pool and its contribution (pounds) by financial year."""

    code: str = Field(min_length=1, max_length=20)
    kind: PartnerKind
    name: str = ""
    contributions: dict[str, Money] = Field(min_length=1)

    @field_validator("contributions")
    @classmethod
    def _years(cls, v: dict[str, Decimal]) -> dict[str, Decimal]:
        out = {normalise_financial_year(k): amount for k, amount in v.items()}
        if len(out) != len(v):
            raise ValueError("a financial year is named twice (e.g. 2025-26 and 2025/26)")
        return out


class PoolScope(_Strict):
    """What the pool pays for: NHS activity (service lines, optionally only some HRGs or a
    condition) and social care packages (service types)."""

    service_lines: list[str] = []
    hrg_prefixes: list[str] = []
    condition_codelist: str | None = None
    social_care_service_types: list[str] = []

    @field_validator("service_lines")
    @classmethod
    def _lines(cls, v: list[str]) -> list[str]:
        if "prescribing" in v:
            raise ValueError("prescribing cannot be pooled: its rows are per practice and "
                             "month and carry no patient, so whether they are the council's "
                             "residents cannot be known")
        return known_names(v, POOLABLE_SERVICE_LINES, "service line")

    @field_validator("social_care_service_types")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        return known_names(v, SOCIAL_CARE_SERVICES, "social care service type")

    @field_validator("condition_codelist")
    @classmethod
    def _codelist(cls, v: str | None) -> str | None:
        return known_condition_codelist(v)

    @model_validator(mode="after")
    def _something(self) -> PoolScope:
        if not self.service_lines and not self.social_care_service_types:
            raise ValueError("the scope holds nothing: name service_lines (NHS) and/or "
                             "social_care_service_types")
        if (self.hrg_prefixes or self.condition_codelist) and not self.service_lines:
            raise ValueError("hrg_prefixes and condition_codelist filter NHS activity: "
                             "name its service_lines too")
        return self

    def describe(self) -> str:
        parts = []
        if self.service_lines:
            nhs = "NHS " + ", ".join(self.service_lines)
            if self.hrg_prefixes:
                nhs += " (HRG " + ", ".join(f"{h}*" for h in self.hrg_prefixes) + ")"
            if self.condition_codelist:
                nhs += f" (primary diagnosis in {self.condition_codelist})"
            parts.append(nhs)
        if self.social_care_service_types:
            parts.append("social care " + ", ".join(self.social_care_service_types))
        return "; ".join(parts)


class Sharing(_Strict):
    """How an overspend or underspend of the pool is shared (see the module's docstring)."""

    rule: SharingRule
    split: dict[str, Decimal] | None = None
    host_cap: Money | None = None

    @model_validator(mode="after")
    def _parameters(self) -> Sharing:
        if self.rule == "fixed":
            if not self.split:
                raise ValueError("rule 'fixed' needs split: each partner's share, e.g. "
                                 "{ Q99 = 0.6, E06000001 = 0.4 }")
            if any(s < 0 for s in self.split.values()):
                raise ValueError("split: a share cannot be negative")
            total = sum(self.split.values(), Decimal(0))
            if total != 1:
                raise ValueError(f"split: the shares add up to {total}, not exactly 1")
        elif self.split is not None:
            raise ValueError(f"split is only for rule 'fixed', not {self.rule!r}")
        if self.rule == "host_cap" and self.host_cap is None:
            raise ValueError("rule 'host_cap' needs host_cap: the most the host bears or "
                             "keeps, in pounds")
        if self.rule != "host_cap" and self.host_cap is not None:
            raise ValueError(f"host_cap is only for rule 'host_cap', not {self.rule!r}")
        return self


class Agreement(_Strict):
    """A Section 75 pooled budget agreement as the partners write it."""

    reference: str = Field(min_length=1, max_length=40)
    name: str = Field(min_length=1, max_length=200)
    host: str
    partners: list[Partner] = Field(min_length=2)
    scope: PoolScope
    sharing: Sharing

    @model_validator(mode="after")
    def _partners(self) -> Agreement:
        codes = [p.code for p in self.partners]
        if len(set(codes)) != len(codes):
            raise ValueError("partners: a partner is listed twice")
        kinds = [p.kind for p in self.partners]
        for kind, least, most in (("commissioner", 1, 1), ("local_authority", 1, 1),
                                  ("group", 0, 1)):
            n = kinds.count(kind)  # type: ignore[arg-type]
            if not least <= n <= most:
                want = "exactly one" if least == most else "at most one"
                raise ValueError(f"partners: {want} {kind} partner, not {n}")
        host = self.partner(self.host) if self.host in codes else None
        if host is None:
            raise ValueError(f"host {self.host!r} is not one of the partners "
                             f"({', '.join(codes)})")
        if host.kind == "group":
            raise ValueError("host: the host of a Section 75 pooled fund is the NHS body or "
                             "the local authority, not a group of practices")
        years = {p.code: set(p.contributions) for p in self.partners}
        first = self.partners[0]
        for p in self.partners[1:]:
            if years[p.code] != years[first.code]:
                raise ValueError(f"partners: {p.code} contributes for "
                                 f"{', '.join(sorted(years[p.code]))} but {first.code} for "
                                 f"{', '.join(sorted(years[first.code]))}; every partner "
                                 "names the same years (0.00 for none)")
        if self.sharing.split is not None and set(self.sharing.split) != set(codes):
            raise ValueError(f"sharing.split names {', '.join(sorted(self.sharing.split))}; "
                             f"it must name every partner: {', '.join(codes)}")
        if self.scope.service_lines and self.local_authority.code[:1] != "E":
            raise ValueError("partners: the local authority's code is an ONS code (E...)")
        return self

    def partner(self, code: str) -> Partner:
        for p in self.partners:
            if p.code == code:
                return p
        raise PooledError(f"{self.reference}: no partner {code}")

    def _only(self, kind: str) -> Partner:
        return next(p for p in self.partners if p.kind == kind)

    @property
    def commissioner(self) -> Partner:
        return self._only("commissioner")

    @property
    def local_authority(self) -> Partner:
        return self._only("local_authority")

    @property
    def group(self) -> Partner | None:
        return next((p for p in self.partners if p.kind == "group"), None)

    @property
    def years(self) -> list[str]:
        return sorted(self.partners[0].contributions, key=parse_financial_year)

    def contributions(self, financial_year: str) -> list[int]:
        """Each partner's contribution for the year, pence, in the agreement's order."""
        fy = normalise_financial_year(financial_year)
        if fy not in self.partners[0].contributions:
            raise PooledError(f"agreement {self.reference} has no contributions for {fy} "
                              f"(it names {', '.join(self.years)})")
        return [pence(p.contributions[fy]) for p in self.partners]


def parse_agreement(data: dict[str, Any], where: str = "agreement") -> Agreement:
    """The validated agreement; :class:`PooledError` naming ``where`` and each key."""
    try:
        return Agreement.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(file)'}: "
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in e.errors())
        raise PooledError(f"{where}: {problems}") from None
    except ValueError as e:  # a financial year that is not one
        raise PooledError(f"{where}: {e}") from None


# --------------------------------------------------------------------------- social care
def _round_div7(amount: int) -> int:
    """``amount / 7`` rounded half up (``amount >= 0``), exactly."""
    return (2 * amount + 7) // 14


def package_days(start: dt.date, end: dt.date | None, first: dt.date, last: dt.date) -> int:
    """Days of a package (``start`` to ``end`` inclusive; ``end`` None: open) that fall
    from ``first`` to ``last`` inclusive."""
    lo = max(start, first)
    hi = last if end is None else min(end, last)
    return max((hi - lo).days + 1, 0)


def month_ends(financial_year: str) -> list[dt.date]:
    """The last day of each month of the financial year, April to March."""
    start = parse_financial_year(financial_year)
    out = []
    for m in range(12):  # the first day of the next month, less a day
        year, month = (start, 5 + m) if m < 8 else (start + 1, m - 7)
        out.append(dt.date(year, month, 1) - dt.timedelta(days=1))
    return out


def package_cost_by_month(weekly_pence: int, start: dt.date, end: dt.date | None,
                          financial_year: str) -> list[int]:
    """A social care package's cost in each month of the year (pence, April..March).

    The rule: a package costs ``weekly_cost / 7`` a day for every day from its start date
    to its end date **inclusive** (an open package, no end date, runs to the end of the
    year). The cost of the year to the end of month *m* is ``weekly_cost x days / 7``
    (days of the package from 1 April to the end of month *m*), rounded half up to the
    penny; a month's cost is that figure less the one before it. So the months add up
    exactly to the year's cost, ``round(weekly_cost x days in the year / 7)``, and no
    month differs from its exact share by a penny or more."""
    if weekly_pence < 0:
        raise PooledError("a weekly cost cannot be negative")
    first, _ = year_bounds(parse_financial_year(financial_year))
    out, before = [], 0
    for last in month_ends(financial_year):
        to_date = _round_div7(weekly_pence * package_days(start, end, first, last))
        out.append(to_date - before)
        before = to_date
    return out


# --------------------------------------------------------------------------- settlement
def split_exactly(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` pence in proportion to non-negative integer ``weights`` by the
    largest remainder, in exact integer arithmetic; ties go to the earlier weight.
    A negative total is split as its absolute value and negated."""
    w = [int(x) for x in weights]
    if any(x < 0 for x in w):
        raise PooledError("weights cannot be negative")
    whole = sum(w)
    if total == 0:
        return [0] * len(w)
    if whole == 0:
        raise PooledError(f"cannot share {total} pence in proportion to weights that are "
                          "all zero")
    sign, t = (1, total) if total > 0 else (-1, -total)
    parts = [t * x // whole for x in w]
    rest = [t * x % whole for x in w]
    left = t - sum(parts)
    for i in sorted(range(len(w)), key=lambda i: (-rest[i], i))[:left]:
        parts[i] += 1
    return [sign * p for p in parts]


def _decimal_weights(shares: Sequence[Decimal]) -> list[int]:
    """Decimal fractions as integer weights in the same exact ratio."""
    places = max((-s.as_tuple().exponent for s in shares  # type: ignore[operator]
                  if isinstance(s.as_tuple().exponent, int)), default=0)
    scale = Decimal(10) ** max(places, 0)
    return [int(s * scale) for s in shares]


@dataclass(frozen=True)
class PartnerSettlement:
    """One partner's year (pence). ``share_of_variance`` is positive where it bears part of
    an overspend, negative where it keeps part of an underspend; ``bears``/``keeps`` are
    those amounts as non-negative figures; ``final_position = contribution +
    share_of_variance``, what the partner puts into the pool in the end."""

    partner: str
    kind: str
    contribution: int
    share_of_variance: int
    bears: int
    keeps: int
    final_position: int


@dataclass(frozen=True)
class Settlement:
    reference: str
    financial_year: str
    rule: str
    spend: int
    contributions: int
    variance: int  # spend - contributions: > 0 overspend, < 0 underspend
    partners: list[PartnerSettlement]
    host_part: int | None = None  # host_cap: what the host takes before the proportional part
    cap_binds: bool = False

    def check(self) -> None:
        """Contributions + every partner's share of the variance = spend, to the penny."""
        c = sum(p.contribution for p in self.partners)
        s = sum(p.share_of_variance for p in self.partners)
        f = sum(p.final_position for p in self.partners)
        if c != self.contributions or c + s != self.spend or f != self.spend:
            raise PooledError(f"settlement of {self.reference} {self.financial_year} does not "
                              f"reconcile: contributions {c} + shares {s} != spend "
                              f"{self.spend}")


def settle(agreement: Agreement, financial_year: str, spend: int) -> Settlement:
    """Settle the pool's year: share ``spend - contributions`` by the agreement's rule."""
    fy = normalise_financial_year(financial_year)
    contrib = agreement.contributions(fy)
    return settle_amounts(agreement.reference, fy, [p.code for p in agreement.partners],
                          [p.kind for p in agreement.partners], contrib, int(spend),
                          agreement.sharing, agreement.host)


def settle_amounts(reference: str, financial_year: str, codes: Sequence[str],
                   kinds: Sequence[str], contributions: Sequence[int], spend: int,
                   sharing: Sharing, host: str) -> Settlement:
    """:func:`settle` on plain figures (pence)."""
    if spend < 0:
        raise PooledError("spend cannot be negative")
    contrib = [int(c) for c in contributions]
    total = sum(contrib)
    variance = int(spend) - total
    host_part: int | None = None
    binds = False
    if sharing.rule == "proportional":
        if variance and total == 0:
            raise PooledError(f"{reference} {financial_year}: nobody contributed, so a "
                              "variance cannot be shared in proportion to contributions")
        shares = split_exactly(variance, contrib)
    elif sharing.rule == "fixed":
        assert sharing.split is not None
        shares = split_exactly(variance, _decimal_weights([sharing.split[c] for c in codes]))
    else:
        assert sharing.host_cap is not None
        cap = pence(sharing.host_cap)
        binds = abs(variance) > cap
        host_part = variance if not binds else (cap if variance > 0 else -cap)
        beyond = variance - host_part
        if beyond and total == 0:
            raise PooledError(f"{reference} {financial_year}: nobody contributed, so the "
                              "variance beyond the host's cap cannot be shared in proportion "
                              "to contributions")
        shares = split_exactly(beyond, contrib)
        shares[list(codes).index(host)] += host_part
    rows = [PartnerSettlement(c, k, ct, sh, max(sh, 0), max(-sh, 0), ct + sh)
            for c, k, ct, sh in zip(codes, kinds, contrib, shares, strict=True)]
    out = Settlement(reference, financial_year, sharing.rule, int(spend), total, variance,
                     rows, host_part, binds)
    out.check()
    return out
