"""Variance drivers: what explains a budget holder's variance, split into volume and price.

For a budget holder (practice, group or commissioner) at month ``M``, the variance to date
(spend to date - budget to date) is explained by **dimension**: service line, HRG chapter,
provider and risk segment. Within each dimension every segment (a chapter, a provider, ...)
gets its share of the budget, its spend and its variance, and the variance is split into a
**volume effect** and a **price effect**: the standard price-volume variance analysis of
management accounting (the flexible budget: Horngren, Datar and Rajan, *Cost Accounting: A
Managerial Emphasis*, 14th edn 2012, ch. 7; CIMA *Official Terminology* 2005, "sales volume
variance" and "sales price variance"), applied to activity bought instead of goods sold:

    budget          B = Qb x Pb    (planned activity at the planned unit cost)
    spend           A = Qa x Pa    (actual activity at its actual unit cost)
    volume effect   V = (Qa - Qb) x Pb = Qa x Pb - B
    price effect    P = (Pa - Pb) x Qa = A - Qa x Pb
    V + P = A - B   (the variance, exactly)

The price effect includes case mix within the segment (costlier spells in the same chapter)
as well as tariff changes; the volume effect is the change in the number of spells,
attendances or prescribing lines (``activity``: rows of ``priced_activity``).

**The plan below service line.** Budgets are phased by service line and month only, so a
segment's budget is the service line's budget to date shared in proportion to the holder's
own spend in the same segment and months last year (the mix the budget was built on), to the
penny by largest remainder; where the holder had no spend on the line last year, the
commissioner's mix; where nobody had, the budget stays whole in the segment
``(no activity last year)``. The planned unit cost ``Pb`` of a segment is the holder's own
average tariff value per row last year (whole year) in that service line and segment, else
the commissioner's; where neither exists (activity new this year) there is no plan to
compare the price with, so the whole variance is volume (``price_basis`` says which basis
each figure used). Money is integer pence; ``Qa x Pb`` is rounded half up to the penny, and
the two effects are defined from it so that they add up to the variance exactly, in every
segment, service line and in total (property-tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

import numpy as np
import pandas as pd

Dimension = Literal["service_line", "hrg_chapter", "provider", "risk_segment"]
DIMENSIONS: Final[tuple[Dimension, ...]] = ("service_line", "hrg_chapter", "provider",
                                            "risk_segment")
DIMENSION_LABELS: Final[dict[str, str]] = {
    "service_line": "Service line", "hrg_chapter": "HRG chapter", "provider": "Provider",
    "risk_segment": "Risk segment"}

NO_PLAN: Final = "(no activity last year)"
HOLDER_BASIS: Final = "own last year"
PEER_BASIS: Final = "commissioner last year"
NO_BASIS: Final = "none: new this year, all volume"
NO_ACTIVITY: Final = "no activity this year"

#: HRG4+ chapters, the first character of an HRG code (NHS Digital, *HRG4+ Reference
#: Costs Grouper: Code to Group documentation*, chapter listing)
HRG_CHAPTERS: Final[dict[str, str]] = {
    "A": "Nervous system", "B": "Eyes and periorbita", "C": "Mouth, head, neck and ears",
    "D": "Respiratory system", "E": "Cardiac", "F": "Digestive system",
    "G": "Hepatobiliary and pancreatic system", "H": "Musculoskeletal system",
    "J": "Skin, breast and burns", "K": "Endocrine and metabolic system",
    "L": "Urinary tract and male reproductive system", "M": "Female reproductive system",
    "N": "Obstetrics", "P": "Diseases of childhood and neonates", "Q": "Vascular system",
    "R": "Radiology and nuclear medicine",
    "S": "Haematology, chemotherapy, radiotherapy and palliative care",
    "U": "Undefined groups", "V": "Multiple trauma, emergency medicine and rehabilitation",
    "W": "Immunology, infectious diseases and other contacts",
    "X": "Critical care and high cost drugs", "Y": "Interventional imaging",
}

#: the columns of :func:`drivers`' output
COLUMNS: Final = ["code", "dimension", "segment", "budget_to_date", "spend_to_date",
                  "variance", "volume_effect", "price_effect", "activity",
                  "planned_activity", "price_basis"]


class DriversError(ValueError):
    """Drivers that cannot be computed as asked."""


def _round_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` rounded half up (away from zero), exact on Python integers."""
    out = np.empty(len(num), dtype=object)
    for i, (n, d) in enumerate(zip(num.tolist(), den.tolist(), strict=True)):
        q = (abs(int(n)) * 2 + int(d)) // (2 * int(d))
        out[i] = q if n >= 0 else -q
    return out


def _ints(values: pd.Series | np.ndarray) -> np.ndarray:
    """Python integers (exact, never overflowing) in an object array."""
    return np.array([int(v) for v in np.asarray(values).tolist()], dtype=object)


def _largest_remainder(frame: pd.DataFrame, group: list[str], amount: str,
                       weight: str) -> pd.Series:
    """Share each group's ``amount`` (integer pence, the same on every row of the group)
    over its rows in proportion to ``weight`` (>= 0, positive total), to the penny: floors,
    then one penny more to the largest remainders (ties: first row first)."""
    if frame.empty:
        return pd.Series([], dtype=object, index=frame.index)
    b = _ints(frame[amount])
    w = _ints(frame[weight])
    total = _ints(frame.groupby(group, sort=False)[weight].transform("sum"))
    prod = b * w
    floor = prod // total
    rem = (prod - floor * total).astype(np.float64) / total.astype(np.float64)
    work = pd.DataFrame({"floor": floor, "rem": rem, "pos": np.arange(len(frame))},
                        index=frame.index)
    for col in group:
        work[col] = frame[col].to_numpy()
    short = b - _ints(work.groupby(group, sort=False)["floor"].transform("sum"))
    work = work.sort_values([*group, "rem", "pos"], ascending=[True] * len(group) +
                            [False, True], kind="stable")
    rank = work.groupby(group, sort=False).cumcount().reindex(frame.index).to_numpy()
    extra = (rank < short.astype(np.int64)).astype(np.int64)
    return pd.Series(floor + extra, index=frame.index, dtype=object)


def _sum(frame: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
    """``frame`` summed by ``keys``, with the same columns even when empty."""
    if frame.empty:
        return pd.DataFrame({**{k: pd.Series(dtype=object) for k in keys},
                             **{v: pd.Series(dtype=np.int64) for v in values}})
    return frame.groupby(keys, as_index=False)[values].sum()


def _cells(frame: pd.DataFrame, month: int, *, to_date: bool) -> pd.DataFrame:
    f = frame[frame["month"] <= month] if to_date else frame
    return _sum(f, ["code", "service_line", "segment"], ["spend", "activity"])


def drivers(spend: pd.DataFrame, budget: pd.DataFrame, prior: pd.DataFrame | None, *,
            month: int, dimension: Dimension, codes: Sequence[str] | None = None
            ) -> pd.DataFrame:
    """The variance of every holder at ``month`` (1 = April) explained by ``dimension``.

    ``spend`` and ``prior`` (this year and last year): ``code, service_line, segment,
    month, spend, activity`` (pence, rows of activity), where ``segment`` is the
    dimension's value (for ``service_line``, the service line again). ``budget``:
    ``code, service_line, month, budget`` (pence) of one budget version. ``codes``: only
    these holders (the plan's fallback still uses every holder's last year).

    Returns :data:`COLUMNS`, one row per holder and segment, largest absolute variance
    first; ``budget_to_date``, ``spend_to_date``, ``variance``, ``volume_effect`` and
    ``price_effect`` add up over a holder's segments to its position's figures exactly.
    """
    if dimension not in DIMENSIONS:
        raise DriversError(f"dimension must be one of {', '.join(DIMENSIONS)}, "
                           f"not {dimension!r}")
    if not 1 <= month <= 12:
        raise DriversError(f"month must be 1 (April) to 12 (March), not {month}")
    cols = ["code", "service_line", "segment", "month", "spend", "activity"]
    empty = pd.DataFrame({c: pd.Series(dtype=object if c in ("code", "service_line",
                                                             "segment") else np.int64)
                          for c in cols})
    spend = spend[cols] if len(spend) else empty
    prior = prior[cols] if prior is not None and len(prior) else empty
    keep = None if codes is None else {str(c) for c in codes}
    if keep is not None:
        spend = spend[spend["code"].astype(str).isin(keep)]
        budget = budget[budget["code"].astype(str).isin(keep)]

    actual = _cells(spend, month, to_date=True)
    b = _sum(budget[budget["month"] <= month], ["code", "service_line"], ["budget"])
    if actual.empty and b.empty:
        return pd.DataFrame({c: [] for c in COLUMNS})
    # the plan's mix: the holder's last year in the same months, else the commissioner's
    mix_own = _cells(prior, month, to_date=True)
    mix_own = mix_own.assign(w=mix_own["spend"].clip(lower=0))
    mix_peer = _sum(mix_own, ["service_line", "segment"], ["w"])
    own_total = mix_own.groupby(["code", "service_line"])["w"].sum()
    peer_total = mix_peer.groupby("service_line")["w"].sum()
    plans = []
    b = b.assign(
        own=np.array([own_total.get((c, s), 0) > 0
                      for c, s in zip(b["code"], b["service_line"], strict=True)], dtype=bool),
        peer=np.array([peer_total.get(s, 0) > 0 for s in b["service_line"]], dtype=bool))
    own = b[b["own"]].merge(mix_own[["code", "service_line", "segment", "w"]],
                            on=["code", "service_line"])
    peer = b[~b["own"] & b["peer"]].merge(mix_peer, on="service_line")
    none = b[~b["own"] & ~b["peer"]].assign(segment=NO_PLAN, w=1)
    for part in (own, peer, none):
        part = part[part["w"] > 0] if part is not none else part
        if len(part):
            part = part.sort_values(["code", "service_line", "segment"]).reset_index(drop=True)
            plans.append(part.assign(planned=_largest_remainder(
                part, ["code", "service_line"], "budget", "w")))
    plan = (pd.concat(plans, ignore_index=True)[["code", "service_line", "segment", "planned"]]
            if plans else pd.DataFrame(columns=["code", "service_line", "segment", "planned"]))

    cells = actual.merge(plan, on=["code", "service_line", "segment"], how="outer")
    cells["spend"] = cells["spend"].fillna(0).astype(np.int64)
    cells["activity"] = cells["activity"].fillna(0).astype(np.int64)
    cells["planned"] = [int(v) if not pd.isna(v) else 0 for v in cells["planned"]]
    # the planned unit cost: the holder's own last year (whole year), else the commissioner's
    year_own = _cells(prior, 12, to_date=False).rename(
        columns={"spend": "p_spend", "activity": "p_activity"})
    year_peer = (_sum(year_own, ["service_line", "segment"], ["p_spend", "p_activity"])
                 .rename(columns={"p_spend": "q_spend", "p_activity": "q_activity"}))
    cells = (cells.merge(year_own, on=["code", "service_line", "segment"], how="left")
             .merge(year_peer, on=["service_line", "segment"], how="left"))
    for c in ("p_spend", "p_activity", "q_spend", "q_activity"):
        cells[c] = cells[c].fillna(0).astype(np.int64)
    use_own = cells["p_activity"].to_numpy() > 0
    use_peer = ~use_own & (cells["q_activity"].to_numpy() > 0)
    unit_spend = np.where(use_own, cells["p_spend"], np.where(use_peer, cells["q_spend"], 0))
    unit_rows = np.where(use_own, cells["p_activity"],
                         np.where(use_peer, cells["q_activity"], 1))
    qa = cells["activity"].to_numpy()
    expected = _round_div(_ints(qa) * _ints(unit_spend), _ints(unit_rows))
    based = use_own | use_peer
    a = _ints(cells["spend"])
    expected = np.where(based, expected, a)
    planned = _ints(cells["planned"])
    with np.errstate(divide="ignore", invalid="ignore"):
        planned_activity = np.where(
            based & (unit_spend != 0),
            planned.astype(np.float64) * unit_rows / np.where(unit_spend != 0, unit_spend, 1),
            np.nan)
    cells = cells.assign(
        budget_to_date=planned, spend_to_date=a, variance=a - planned,
        volume_effect=expected - planned, price_effect=a - expected,
        planned_activity=planned_activity,
        price_basis=np.where(use_own, HOLDER_BASIS, np.where(
            use_peer, PEER_BASIS, np.where(qa > 0, NO_BASIS, NO_ACTIVITY))))
    money = ["budget_to_date", "spend_to_date", "variance", "volume_effect", "price_effect"]
    grouped = cells.groupby(["code", "segment"], as_index=False)
    out = grouped[[*money, "activity"]].sum()
    out["planned_activity"] = grouped["planned_activity"].sum(min_count=1)["planned_activity"]
    out["price_basis"] = grouped["price_basis"].agg(
        lambda s: "; ".join(sorted(set(s))))["price_basis"]
    for c in money:
        out[c] = out[c].astype(np.int64)
    out = out[(out[money[:2]] != 0).any(axis=1) | (out["activity"] != 0)]
    out = out.assign(dimension=dimension, _abs=out["variance"].abs())
    out = out.sort_values(["code", "_abs", "segment"], ascending=[True, False, True])
    return out[COLUMNS].reset_index(drop=True)


def hrg_chapter(hrg_code: str | None) -> str:
    """The HRG4+ chapter letter of an HRG code (``(no HRG)`` for none)."""
    text = (hrg_code or "").strip().upper()
    return text[0] if text and text[0].isalpha() else "(no HRG)"


def segment_label(dimension: str, segment: str, names: dict[str, str] | None = None) -> str:
    """A segment as a reader sees it: ``F Digestive system``, ``RTR South Tees ...``."""
    if dimension == "hrg_chapter" and segment in HRG_CHAPTERS:
        return f"{segment} {HRG_CHAPTERS[segment]}"
    name = (names or {}).get(segment)
    return f"{segment} {name}" if name else segment
