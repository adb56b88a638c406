"""Indicative budgets: fair share, historic spend, pace of change, caps, top-slices.

For each delegated service line ``s`` and practice ``p`` (money in integer pence)::

    envelope_s        = policy pounds, or prior-year priced spend of the commissioner
                        (attributed and unattributed) x (1 + uplift_s)
    top_slices_s      = sum of the policy's top-slices that apply to s: a per-cent
                        top-slice is that per cent of envelope_s (rounded half up to a
                        penny); a pounds top-slice is spread over its lines pro rata to
                        their envelopes (largest remainder)
    unattributed_s    = prior-year priced spend on activity with no known practice
                        x (1 + uplift_s), rounded half up: held by the commissioner (it
                        pays for that activity; no practice manages it), never shared out
    available_s       = envelope_s - top_slices_s - unattributed_s
    fair_share_ps     = available_s x weighted_population_ps / sum_p weighted_population_ps
                        (largest remainder, so the fair shares add up to available_s)
    historic_ps       = prior-year priced spend_ps x (1 + uplift_s), rounded half up
    target_ps         = historic_ps + pace x (fair_share_ps - historic_ps), rounded half
                        up to a penny; for a practice with no prior-year spend (a new
                        practice) target_ps = fair_share_ps
    floor_ps, ceil_ps = historic_ps x (1 + floor), historic_ps x (1 + ceiling), each
                        rounded half up to a penny
    budget_ps         = clip(lambda_s x target_ps, floor_ps, ceil_ps)
    distance_from_target_ps = (budget_ps - fair_share_ps) / fair_share_ps

Targets, floors and ceilings are whole pence so that the explanation a practice receives
can be recomputed from its printed figures to the penny (:mod:`pbc.budgets.explain`).
The blend of historic spend and fair share moved by a pace of change follows DH's
practice based commissioning budget guidance for 2009/10 and 2010/11 (DH_094364): practices
receive "a 'fair share' of the resources available to the whole of the PCT", reached from
historic budgets at a minimum pace of change (the guidance gives no numeric pace; the
policy file sets it).

A practice with no prior-year spend has no history to move from: it starts at its fair
share, is held there (cap ``new_practice``) and the other practices share the rest. Where
a fallback is needed (every target zero) the money is shared by fair shares, never equally.

How the caps and the exact sum interact
---------------------------------------
The targets do not in general add up to ``available_s`` (historic spend need not equal
it), so one scale factor ``lambda_s`` per service line is found such that
``sum_p clip(lambda_s x target_ps, floor_ps, ceil_ps) = available_s``. This is the fixed
point of "scale the uncapped practices, fix any that cross a cap at the cap, repeat":
practices held at a cap keep their capped amount and the rest share the remainder in
proportion to their targets. The sum is non-decreasing in ``lambda`` so the solution is
found by bisection and then solved exactly on the final set of free practices. The float
budgets are then rounded to pence by largest remainder so that
``sum_p budget_ps = available_s`` **exactly**; a capped practice may therefore be up to
one penny beyond its cap.

If no ``lambda`` can satisfy the caps (``available_s`` below the sum of floors or above
the sum of ceilings) the exact sum wins: every practice is set to its floor (ceiling)
scaled pro rata so the total is right, and ``cap`` says ``floor_relaxed``
(``ceiling_relaxed``). A practice with no historic spend (e.g. a new practice) has no
basis for a year-on-year cap: its floor and ceiling are both its fair share.

With no cap binding, ``budget_ps = available_s x ((1 - mu) x historic share + mu x fair
share)`` where ``mu = pace x A / ((1 - pace) x H + pace x A)``, ``A = available_s``,
``H = sum_p historic_ps``; ``mu`` rises with pace from 0 to 1, so a practice's budget
moves monotonically towards its fair share as pace rises (to within the penny rounding).

Opt-outs
--------
A practice (or every member of a group, membership on 1 April) that opts out of a
service line keeps its row with ``opted_out = True`` and ``budget = 0``: the amount it
would have had (``calculated_budget``) is held by the commissioner and reported in
``BudgetResult.commissioner_retained``. No other practice's budget changes. Hence
``sum budget + sum opt-out retained = available_s`` exactly.

``top_slice_share`` is the practice's notional share of the line's top-slices, pro rata
to its calculated budget (largest remainder), so budgets plus top-slice shares plus the
money held for unattributed activity add up to the envelope; it explains, it does not
allocate.

The commissioner's lines (``BudgetResult.commissioner_retained``): top-slices, the money
held for unattributed activity and opted-out budgets. Per service line::

    envelope = sum budget + sum top-slices + unattributed held + sum opt-outs retained
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from pbc.budgets.fair_shares import FairShareInputs, fair_share_populations
from pbc.budgets.money import (
    allocate_to_sum,
    largest_remainder,
    pence_to_pounds,
    series_pounds_to_pence,
)
from pbc.budgets.policy import BudgetPolicy
from pbc.calendar import parse_financial_year

if TYPE_CHECKING:
    from pbc.budgets.explain import Explanation

MONEY_COLUMNS: tuple[str, ...] = (
    "fair_share", "historic", "budget", "prior_spend", "target", "floor", "ceiling",
    "top_slice_share", "calculated_budget",
)
BUDGET_COLUMNS: tuple[str, ...] = (
    "financial_year", "practice_code", "service_line", "fair_share", "historic", "budget",
    "method", "population", "weighted_population", "need_index", "cost_weight_index",
    "weighted_share", "prior_spend", "uplift_percent", "pace", "target", "floor", "ceiling",
    "cap", "scale_factor", "calculated_budget", "top_slice_share", "opted_out",
    "distance_from_target",
)


class BudgetError(ValueError):
    """Budgets cannot be set from these inputs."""


@dataclass(frozen=True)
class BudgetResult:
    """The outcome of :func:`set_budgets`.

    ``frame``: one row per practice x service line (columns :data:`BUDGET_COLUMNS`; the
    money columns in :data:`MONEY_COLUMNS` are int64 **pence**).
    ``commissioner_retained``: money the commissioner holds: ``service_line``, ``kind``
    (``top_slice``, ``unattributed`` or ``opt_out``), ``name`` (top-slice name,
    ``unattributed activity`` or the opted-out practice), ``practice_code`` (opt-outs),
    ``amount`` (pence).
    ``summary``: one row per service line: ``envelope``, ``top_slices``,
    ``unattributed_held``, ``available``, ``prior_spend``, ``prior_spend_unattributed``,
    ``historic``, ``fair_share``, ``budget``, ``retained_opt_out`` (pence),
    ``uplift_percent``, ``scale_factor``, ``caps_feasible``, ``total_weighted_population``.
    """

    policy: BudgetPolicy
    frame: pd.DataFrame
    commissioner_retained: pd.DataFrame
    summary: pd.DataFrame
    #: what the explanation must say about how the inputs were made (e.g. a need index
    #: from deprivation only), so no substitute is silent
    notes: tuple[str, ...] = ()
    #: (practice, service line) -> the indices in ``policy.opt_out`` that opted it out (a
    #: practice's own opt-out, its group's), so an explanation can name the decision
    opted_by: Mapping[tuple[str, str], tuple[int, ...]] = field(default_factory=dict)
    explanations: Explanations = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "explanations", Explanations(self))

    def explain(self, practice_code: str) -> Explanation:
        from pbc.budgets.explain import explain

        return explain(self, practice_code)

    def in_pounds(self) -> pd.DataFrame:
        """``frame`` with the money columns as Decimal pounds (for statements/exports)."""
        return budgets_in_pounds(self.frame)


class Explanations(Mapping[str, "Explanation"]):
    """Lazy mapping practice_code -> :class:`~pbc.budgets.explain.Explanation`."""

    def __init__(self, result: BudgetResult) -> None:
        self._result = result

    def __getitem__(self, practice_code: str) -> Explanation:
        return self._result.explain(practice_code)

    def __iter__(self) -> Iterator[str]:
        return iter(pd.unique(self._result.frame["practice_code"]))

    def __len__(self) -> int:
        return int(self._result.frame["practice_code"].nunique())


def budgets_in_pounds(frame: pd.DataFrame) -> pd.DataFrame:
    """Money columns (int pence) -> Decimal pounds with 2 places; other columns as they are."""
    out = frame.copy()
    for col in MONEY_COLUMNS:
        if col in out.columns:
            values = [None if pd.isna(v) else pence_to_pounds(int(v)) for v in out[col]]
            out[col] = pd.Series(values, index=out.index, dtype=object)
    return out


def _scale_int(values: npt.NDArray[np.int64], factor: Decimal) -> npt.NDArray[np.int64]:
    """``round_half_up(values x factor)`` for non-negative int pence, exactly."""
    num, den = factor.as_integer_ratio()
    if num < 0:
        raise BudgetError("an uplift below -100% gives negative money")
    if len(values) and int(values.max()) * num * 2 + den < 2**62:
        return (values * (2 * num) + den) // (2 * den)
    return np.array([(int(v) * 2 * num + den) // (2 * den) for v in values], dtype=np.int64)


def _round_half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def prior_spend_by_practice(priced_spend: pd.DataFrame) -> pd.DataFrame:
    """Aggregate priced spend to ``practice_code``, ``service_line``, ``spend_pence``.

    Accepts ``practice_code``, ``service_line`` and one of ``spend_pence`` (int pence),
    ``spend`` or ``price`` (pounds; e.g. the ``priced_activity`` table itself). Money is
    converted to pence per row before summing. Blank practice codes become ``""``.
    """
    for col in ("practice_code", "service_line"):
        if col not in priced_spend.columns:
            raise BudgetError(f"priced spend is missing column {col!r}")
    if "financial_year" in priced_spend.columns:
        years = priced_spend["financial_year"].dropna().unique()
        if len(years) > 1:
            raise BudgetError(f"priced spend covers several financial years {sorted(years)}; "
                              "give the prior year only")
    if "spend_pence" in priced_spend.columns:
        pence = priced_spend["spend_pence"].to_numpy(dtype=np.int64)
    elif "spend" in priced_spend.columns:
        pence = series_pounds_to_pence(priced_spend["spend"])
    elif "price" in priced_spend.columns:
        pence = series_pounds_to_pence(priced_spend["price"])
    else:
        raise BudgetError("priced spend needs a money column: spend_pence, spend or price")
    frame = pd.DataFrame({
        "practice_code": priced_spend["practice_code"].fillna("").astype(str).str.strip(),
        "service_line": priced_spend["service_line"].astype(str),
        "spend_pence": pence,
    })
    return frame.groupby(["practice_code", "service_line"], as_index=False, sort=True).sum()


def solve_caps(
    target: npt.NDArray[np.float64],
    lo: npt.NDArray[np.float64],
    hi: npt.NDArray[np.float64],
    available: float,
    *,
    fallback: npt.NDArray[np.float64] | None = None,
) -> tuple[npt.NDArray[np.float64], float, npt.NDArray[np.str_], bool]:
    """Find ``lambda`` with ``sum clip(lambda x target, lo, hi) = available``.

    ``fallback`` (the fair shares) is what is scaled instead when every target is zero:
    the money then follows need, never an equal split. Returns the float budgets,
    ``lambda``, a cap label per row (``""``, ``floor``, ``ceiling``, ``floor_relaxed``,
    ``ceiling_relaxed``) and whether the caps were feasible.
    """
    n = target.size
    label = np.full(n, "", dtype=object)
    if n == 0:
        return np.zeros(0), 1.0, label.astype(str), True
    target = np.maximum(target, 0.0)
    if target.sum() <= 0:  # nothing to scale: follow the fair shares
        if fallback is None or float(np.maximum(fallback, 0).sum()) <= 0:
            if available > float(lo.sum()) + 1e-6:
                raise BudgetError("every target and every fair share is zero: nothing to "
                                  "share the money by")
        else:
            target = np.maximum(np.asarray(fallback, dtype=float), 0.0)
    s_lo = float(lo.sum())
    reach_hi = np.where(target > 0, hi, lo)
    s_hi = float(reach_hi.sum())
    if available < s_lo - 1e-6:
        b = lo * (available / s_lo)
        return b, float("nan"), np.full(n, "floor_relaxed"), False
    if available > s_hi + 1e-6:
        if np.isfinite(s_hi) and s_hi > 0:
            b = reach_hi * (available / s_hi)
        else:
            weights = target if fallback is None else np.maximum(fallback, 0.0)
            b = weights * (available / weights.sum())
        return b, float("nan"), np.full(n, "ceiling_relaxed"), False

    def total(lam: float) -> float:
        return float(np.clip(lam * target, lo, hi).sum())

    lo_l, hi_l = 0.0, 1.0
    while total(hi_l) < available and hi_l < 1e300:
        hi_l *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo_l + hi_l)
        if total(mid) < available:
            lo_l = mid
        else:
            hi_l = mid
        if hi_l - lo_l <= 1e-15 * hi_l:
            break
    lam = hi_l
    at_lo = lam * target <= lo
    # a row held at a floor equal to its ceiling (a new practice at its fair share) is
    # fixed once, not counted at both caps
    at_hi = (lam * target >= hi) & ~at_lo
    free = ~(at_lo | at_hi)
    free_sum = float(target[free].sum())
    if free_sum > 0:
        fixed = float(lo[at_lo].sum() + hi[at_hi].sum())
        lam = (available - fixed) / free_sum
    b = np.clip(lam * target, lo, hi)
    if not free.any():
        lam = float("nan")  # every practice is held at a cap: no factor applies
    label[at_lo & (lo > 0)] = "floor"
    label[at_hi & np.isfinite(hi)] = "ceiling"
    return b, float(lam), label.astype(str), True


def _membership_on(practices: pd.DataFrame, practice_groups: pd.DataFrame | None,
                   day: dt.date) -> dict[str, str]:
    """practice -> group on ``day``, by the rule attribution uses
    (:func:`pbc.budgets.groups.groups_on`); practices in no group are left out."""
    from pbc.budgets.groups import GroupError, groups_on

    try:
        on = groups_on([day], practices, practice_groups)
    except GroupError as exc:
        raise BudgetError(str(exc)) from None
    on = on[on["group_code"].notna()]
    return dict(zip(on["practice_code"].astype(str), on["group_code"].astype(str),
                    strict=True))


def fy_start(financial_year: str) -> dt.date:
    """``'2025-26'`` (or ``'2025/26'``) -> 1 April 2025."""
    return dt.date(parse_financial_year(financial_year), 4, 1)


def _blend(historic: npt.NDArray[np.int64], fair: npt.NDArray[np.int64],
           pace: Decimal) -> npt.NDArray[np.int64]:
    """``historic + pace x (fair - historic)`` rounded half up to a penny, exactly."""
    num, den = pace.as_integer_ratio()
    return np.array([(2 * (h * den + num * (f - h)) + den) // (2 * den)
                     for h, f in zip(historic.tolist(), fair.tolist(), strict=True)],
                    dtype=np.int64)


def set_budgets(
    policy: BudgetPolicy,
    population: FairShareInputs | pd.DataFrame,
    priced_spend: pd.DataFrame,
    *,
    practices: pd.DataFrame | None = None,
    practice_groups: pd.DataFrame | None = None,
) -> BudgetResult:
    """Set indicative budgets for every practice and delegated service line.

    ``policy``: from :func:`pbc.budgets.policy.read_policy`.
    ``population``: either :class:`~pbc.budgets.fair_shares.FairShareInputs` (the policy's
    fair-share methods are then applied), or a ready fair-share frame with
    ``practice_code``, ``service_line``, ``weighted_population`` and optionally
    ``population``, ``need_index``, ``cost_weight_index``, ``method``.
    ``priced_spend``: prior-year priced spend, see :func:`prior_spend_by_practice`
    (``practice_code``, ``service_line``, and ``spend_pence`` | ``spend`` | ``price``).
    Spend on a practice outside the population counts as unattributed: it is in a
    prior-year-derived envelope but in no practice's historic.
    ``practices`` (``practice_code``, ``group_code``: the default group) and
    ``practice_groups`` (``practice_code``, ``group_code``, ``valid_from``, ``valid_to``):
    group membership on 1 April, by the rule attribution uses (a window covering the day,
    else the default group); needed only when an opt-out names a group.
    """
    if isinstance(population, FairShareInputs):
        fs = fair_share_populations(policy, population)
    else:
        fs = population.copy()
        for col in ("practice_code", "service_line", "weighted_population"):
            if col not in fs.columns:
                raise BudgetError(f"the fair-share frame is missing column {col!r}")
        fs["practice_code"] = fs["practice_code"].astype(str)
        for col, default in (("population", np.nan), ("need_index", np.nan),
                             ("cost_weight_index", np.nan), ("method", "supplied")):
            if col not in fs.columns:
                fs[col] = default
    if (fs["weighted_population"] < 0).any() or not np.isfinite(fs["weighted_population"]).all():
        raise BudgetError("weighted populations must be finite and non-negative")
    dups = fs.duplicated(["practice_code", "service_line"])
    if dups.any():
        raise BudgetError(f"the fair-share frame has duplicate rows, e.g. "
                          f"{fs.loc[dups, ['practice_code', 'service_line']].iloc[0].tolist()}")
    spend = prior_spend_by_practice(priced_spend)
    # Plain object columns: per-line filtering and takes are much cheaper than on Arrow
    # strings (pandas 3's default) for frames of this shape.
    for frame_, cols in ((fs, ("practice_code", "service_line", "method")),
                         (spend, ("practice_code", "service_line"))):
        for col in cols:
            frame_[col] = frame_[col].astype(object)
    empty = np.zeros(0, dtype=np.intp)
    fs_rows = fs.groupby("service_line", sort=False).indices
    sp_rows = spend.groupby("service_line", sort=False).indices

    codes_all = set(fs["practice_code"])
    membership: dict[str, str] = {}
    if any(oo.code not in codes_all for oo in policy.opt_out):
        known = (practices if practices is not None else
                 pd.DataFrame({"practice_code": sorted(codes_all), "group_code": None}))
        membership = _membership_on(known, practice_groups, fy_start(policy.financial_year))
    opted: set[tuple[str, str]] = set()
    opted_by: dict[tuple[str, str], tuple[int, ...]] = {}
    for i, oo in enumerate(policy.opt_out):
        if oo.code in codes_all:
            members = [oo.code]
        else:
            members = sorted(p for p, g in membership.items() if g == oo.code and p in codes_all)
            if not members:
                raise BudgetError(f"opt_out[{i}].code {oo.code!r} is neither a practice in the "
                                  "population nor a group with member practices on "
                                  f"{fy_start(policy.financial_year)}")
        opted.update((m, s) for m in members for s in oo.service_lines)
        for key in ((m, s) for m in members for s in oo.service_lines):
            opted_by[key] = (*opted_by.get(key, ()), i)

    envelopes: dict[str, int] = {}
    prior_total: dict[str, int] = {}
    for line in policy.scope:
        total = int(spend["spend_pence"].to_numpy()[sp_rows.get(line, empty)].sum())
        prior_total[line] = total
        env = policy.envelope[line]
        if env.pounds is not None:
            envelopes[line] = _round_half_up(env.pounds * 100)
        else:
            envelopes[line] = _round_half_up(Decimal(total) * (1 + env.uplift))

    slices: dict[str, list[tuple[str, int]]] = {line: [] for line in policy.scope}
    for ts in policy.top_slice:
        lines = list(ts.service_lines or policy.scope)
        if ts.percent is not None:
            for line in lines:
                slices[line].append(
                    (ts.name, _round_half_up(Decimal(envelopes[line]) * ts.percent / 100)))
        else:
            assert ts.pounds is not None
            parts = largest_remainder([envelopes[s] for s in lines],
                                      _round_half_up(ts.pounds * 100))
            for line, amount in zip(lines, parts, strict=True):
                slices[line].append((ts.name, int(amount)))

    pace = policy.pace
    pace_exact = policy.pace_of_change.pace
    floor_pct = policy.pace_of_change.floor_percent
    ceiling_pct = policy.pace_of_change.ceiling_percent
    frames, retained, summary = [], [], []
    for line in policy.scope:
        g = fs.iloc[fs_rows.get(line, empty)].sort_values("practice_code", kind="stable")
        if g.empty:
            raise BudgetError(f"no weighted population for service line {line!r}")
        codes = g["practice_code"].to_numpy()
        top = sum(a for _, a in slices[line])
        s = spend.iloc[sp_rows.get(line, empty)].set_index("practice_code")["spend_pence"]
        prior = s.reindex(codes).fillna(0).to_numpy(dtype=np.int64)
        if (prior < 0).any():
            raise BudgetError(f"service line {line!r}: negative prior-year spend for a practice")
        unattributed = prior_total[line] - int(prior.sum())
        uplift = policy.envelope[line].uplift
        # prior-year spend on no known practice, uplifted: the commissioner's to hold
        if unattributed < 0:
            raise BudgetError(f"service line {line!r}: prior-year spend on activity with no "
                              f"known practice is negative ({unattributed / 100:,.2f})")
        held = int(_scale_int(np.array([unattributed], dtype=np.int64), 1 + uplift)[0])
        available = envelopes[line] - top - held
        if available < 0:
            raise BudgetError(f"service line {line!r}: top-slices ({top / 100:,.2f}) and "
                              f"unattributed activity ({held / 100:,.2f}) exceed the "
                              f"envelope ({envelopes[line] / 100:,.2f})")
        historic = _scale_int(prior, 1 + uplift)
        wp = g["weighted_population"].to_numpy(dtype=float)
        if available > 0 and wp.sum() <= 0:
            raise BudgetError(f"service line {line!r}: every practice's weighted population "
                              "is zero, so there are no fair shares to set budgets by")
        fair = largest_remainder(wp, available)
        new = historic == 0
        target = np.where(new, fair, _blend(historic, fair, pace_exact))
        n = len(codes)
        lo_i = (_scale_int(historic, 1 + floor_pct / 100) if floor_pct is not None
                else np.zeros(n, dtype=np.int64))
        hi_i = (_scale_int(historic, 1 + ceiling_pct / 100) if ceiling_pct is not None
                else None)
        lo = np.where(new, fair, lo_i).astype(float)
        hi = np.where(new, fair, hi_i if hi_i is not None else 0).astype(float)
        if hi_i is None:
            hi = np.where(new, hi, np.inf)
        b, lam, cap, feasible = solve_caps(target.astype(float), lo, hi, float(available),
                                           fallback=fair.astype(float))
        if feasible:
            cap = np.where(new, "new_practice", cap)
        budget = allocate_to_sum(b, available)
        opt = np.array([(c, line) in opted for c in codes], dtype=bool)
        ts_share = largest_remainder(budget, top)
        wsum = wp.sum()
        frame = pd.DataFrame({
            "financial_year": policy.financial_year,
            "practice_code": codes,
            "service_line": line,
            "fair_share": fair,
            "historic": historic,
            "budget": np.where(opt, 0, budget).astype(np.int64),
            "method": g["method"].to_numpy(),
            "population": g["population"].to_numpy(dtype=float),
            "weighted_population": wp,
            "need_index": g["need_index"].to_numpy(dtype=float),
            "cost_weight_index": g["cost_weight_index"].to_numpy(dtype=float),
            "weighted_share": wp / wsum if wsum > 0 else np.zeros(len(codes)),
            "prior_spend": prior,
            "uplift_percent": float(policy.envelope[line].uplift_percent),
            "pace": pace,
            "target": target.astype(np.int64),
            "floor": pd.array(np.where(new, np.nan, lo_i.astype(float)), dtype="Int64")
            if floor_pct is not None else pd.array([pd.NA] * n, dtype="Int64"),
            "ceiling": pd.array(np.where(new, np.nan, hi_i.astype(float)), dtype="Int64")
            if hi_i is not None else pd.array([pd.NA] * n, dtype="Int64"),
            "cap": cap,
            "scale_factor": lam,
            "calculated_budget": budget,
            "top_slice_share": ts_share,
            "opted_out": opt,
            "distance_from_target": np.divide((budget - fair).astype(float), fair.astype(float),
                                              out=np.full(len(codes), np.nan), where=fair > 0),
        })
        frames.append(frame)
        for name, amount in slices[line]:
            retained.append({"service_line": line, "kind": "top_slice", "name": name,
                             "practice_code": None, "amount": amount})
        if held:
            retained.append({"service_line": line, "kind": "unattributed",
                             "name": "unattributed activity", "practice_code": None,
                             "amount": held})
        for c, amount in zip(codes[opt], budget[opt], strict=True):
            retained.append({"service_line": line, "kind": "opt_out", "name": str(c),
                             "practice_code": str(c), "amount": int(amount)})
        summary.append({
            "service_line": line, "envelope": envelopes[line], "top_slices": top,
            "unattributed_held": held, "available": available,
            "envelope_from_prior_year": policy.envelope[line].from_prior_year,
            "prior_spend": prior_total[line],
            "prior_spend_unattributed": unattributed, "historic": int(historic.sum()),
            "fair_share": int(fair.sum()), "budget": int(frame["budget"].sum()),
            "retained_opt_out": int(budget[opt].sum()),
            "uplift_percent": float(policy.envelope[line].uplift_percent),
            "scale_factor": lam, "caps_feasible": feasible,
            "total_weighted_population": float(wsum),
        })
    out = pd.concat(frames, ignore_index=True)[list(BUDGET_COLUMNS)]
    ret = pd.DataFrame(retained, columns=["service_line", "kind", "name", "practice_code",
                                          "amount"])
    ret["amount"] = ret["amount"].astype(np.int64)
    return BudgetResult(policy=policy, frame=out, commissioner_retained=ret,
                        summary=pd.DataFrame(summary), opted_by=opted_by)
