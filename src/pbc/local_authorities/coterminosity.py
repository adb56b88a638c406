"""Coterminosity of practice groups with councils and their neighbourhoods (pure core).

Practice-based commissioning asked groups of practices to be *coterminous* with social
services: a group's patients living in one council, and within it in the neighbourhoods
that council's teams serve, so that a group, a council and its neighbourhood teams can plan
for the same people (Department of Health, *Practice based commissioning: practical
implementation*, 2006, and its guidance for local authorities). This module measures it
from counts of registered patients by practice and neighbourhood of residence, and suggests
a regrouping that follows neighbourhood boundaries. docs/local-authorities.md
("Coterminosity") states every rule.

Scores of a group (patients whose residence is not known are counted apart and left out of
every share):

* ``local_authority_share``: the share of its patients living in its **main council** (the
  one holding most of them);
* ``neighbourhood_share``: the share living in its **main neighbourhood**;
* ``neighbourhood_index``: the Herfindahl concentration index of its patients across
  neighbourhoods, ``sum of s_i^2`` over each neighbourhood's share ``s_i`` (Herfindahl,
  *Concentration in the steel industry*, 1950; Hirschman, *The paternity of an index*,
  AER 54(5), 1964): 1 when every patient lives in one neighbourhood, ``1/k`` when they are
  spread evenly over ``k``;
* ``spans_councils``: at least :data:`SPAN_THRESHOLD` (10%) of its patients live outside
  its main council.

A grouping's overall score is each share weighted by the groups' patients (for the two
shares: the share of all patients living in their own group's main council or
neighbourhood).

The suggested regrouping (:func:`regroup`):

1. each practice's **home council** is the council holding most of its patients, and its
   **home neighbourhood** the neighbourhood of that council holding most of them (ties:
   the lowest code);
2. one cluster per home neighbourhood: the practices at home there;
3. while a cluster has fewer registered patients than ``min_list`` and another cluster
   shares its home council, the smallest such cluster (ties: lowest code) joins the
   cluster of the same council whose neighbourhoods hold most of its patients (ties: the
   smaller cluster, then the lowest code); a cluster alone in its council stays, flagged
   ``below_minimum``.

Every practice is placed in exactly one cluster. The council share after regrouping is the
largest any grouping of whole practices can reach (each practice's patients in its home
council are the most it can bring to any group's main council, and every cluster's
practices share that council), so it never falls. Without a minimum list size the
neighbourhood share is the largest any grouping can reach as well, whenever each
practice's main neighbourhood lies in its home council (it always does when a practice's
patients live in one council); a merge for the minimum list size can lower it, and the
report shows it before and after.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

#: a group spans several councils when at least this share of its patients live outside
#: its main council
SPAN_THRESHOLD = 0.10
#: the smallest cluster the regrouping aims for, in registered patients (about the size
#: the 2006 guidance gave for a locality: several practices, tens of thousands of patients;
#: a primary care network today serves 30,000 to 50,000)
DEFAULT_MIN_LIST = 30_000

#: columns of the counts every function here takes
COUNT_COLUMNS = ("practice_code", "group_code", "local_authority_code", "neighbourhood_code",
                 "patients")


@dataclass(frozen=True)
class GroupScore:
    """How one group's (or cluster's) patients spread over councils and neighbourhoods."""

    group_code: str
    practices: int
    patients: int  # with a known neighbourhood of residence
    unknown_residence: int
    main_local_authority: str | None
    local_authority_share: float | None
    councils: int
    spans_councils: bool
    main_neighbourhood: str | None
    neighbourhood_share: float | None
    neighbourhood_index: float | None
    below_minimum: bool = False


@dataclass(frozen=True)
class OverallScore:
    """A grouping's scores, weighted by the groups' patients with a known residence."""

    groups: int
    patients: int
    local_authority_share: float | None
    neighbourhood_share: float | None
    neighbourhood_index: float | None
    spanning_groups: int


def check_counts(counts: pd.DataFrame) -> pd.DataFrame:
    """The counts with the expected columns, whole non-negative patients, codes as text
    (``None`` for a missing neighbourhood or council). Raises ValueError naming the
    problem."""
    missing = [c for c in COUNT_COLUMNS if c not in counts.columns]
    if missing:
        raise ValueError(f"coterminosity counts need the columns {', '.join(missing)}")
    out = counts[list(COUNT_COLUMNS)].copy()
    if out["practice_code"].isna().any() or out["group_code"].isna().any():
        raise ValueError("coterminosity counts: every row needs a practice and a group")
    if (out["patients"] < 0).any():
        raise ValueError("coterminosity counts: patients must not be negative")
    out["patients"] = out["patients"].astype("int64")
    for c in COUNT_COLUMNS[:-1]:
        out[c] = out[c].astype(object).where(out[c].notna(), None)
    known = out["neighbourhood_code"].notna()
    if out.loc[known, "local_authority_code"].isna().any():
        raise ValueError("coterminosity counts: a neighbourhood without a council")
    membership = out.groupby("practice_code")["group_code"].nunique()
    if (membership > 1).any():
        raise ValueError(f"coterminosity counts: practice "
                         f"{membership[membership > 1].index[0]} is in two groups")
    return out


def _argmax(series: pd.Series) -> tuple[str, int]:
    """The label with the largest value, ties to the lowest label."""
    best = min(series.items(), key=lambda kv: (-kv[1], str(kv[0])))
    return str(best[0]), int(best[1])


def group_scores(counts: pd.DataFrame, *, min_list: int | None = None) -> list[GroupScore]:
    """The scores of each group in ``counts`` (sorted by group code); with ``min_list``,
    groups of fewer registered patients are flagged ``below_minimum``."""
    c = check_counts(counts)
    out = []
    for code, rows in sorted(c.groupby("group_code"), key=lambda kv: str(kv[0])):
        known = rows[rows["neighbourhood_code"].notna()]
        n = int(known["patients"].sum())
        unknown = int(rows["patients"].sum()) - n
        if n == 0:
            out.append(GroupScore(str(code), rows["practice_code"].nunique(), 0, unknown,
                                  None, None, 0, False, None, None, None,
                                  min_list is not None and unknown < min_list))
            continue
        by_la = known.groupby("local_authority_code")["patients"].sum()
        by_hood = known.groupby("neighbourhood_code")["patients"].sum()
        la, la_n = _argmax(by_la)
        hood, hood_n = _argmax(by_hood)
        la_share = la_n / n
        out.append(GroupScore(
            str(code), int(rows["practice_code"].nunique()), n, unknown, la, la_share,
            int((by_la > 0).sum()), 1 - la_share >= SPAN_THRESHOLD - 1e-12, hood,
            hood_n / n, float(((by_hood / n) ** 2).sum()),
            min_list is not None and n + unknown < min_list))
    return out


def overall(scores: Iterable[GroupScore]) -> OverallScore:
    """The grouping's scores weighted by each group's patients with a known residence."""
    s = list(scores)
    n = sum(g.patients for g in s)
    scored = [g for g in s if g.patients]

    def mean(attr: str) -> float | None:
        if not n:
            return None
        return sum(getattr(g, attr) * g.patients for g in scored) / n

    return OverallScore(len(s), n, mean("local_authority_share"), mean("neighbourhood_share"),
                        mean("neighbourhood_index"), sum(g.spans_councils for g in s))


def spread(counts: pd.DataFrame, by: str, across: str) -> pd.DataFrame:
    """Patients of each ``by`` unit across the ``across`` units, with each cell's share of
    the ``by`` unit's patients of known residence (``by``/``across``: ``group_code``,
    ``local_authority_code``, ``neighbourhood_code`` or ``practice_code``). Rows with an
    unknown residence are left out when either side is a place."""
    c = check_counts(counts)
    places = ("local_authority_code", "neighbourhood_code")
    if by in places or across in places:
        c = c[c["neighbourhood_code"].notna()]
    keys = [by, across]
    if "neighbourhood_code" in keys and "local_authority_code" not in keys:
        keys.append("local_authority_code")  # a neighbourhood's council beside it
    cells = c.groupby(keys, dropna=False)["patients"].sum().reset_index()
    cells = cells[cells["patients"] > 0]
    totals = cells.groupby(by)["patients"].transform("sum")
    cells["share"] = cells["patients"] / totals
    return cells.sort_values([by, across]).reset_index(drop=True)


@dataclass(frozen=True)
class Regrouping:
    """A suggested grouping of practices that follows neighbourhood boundaries."""

    min_list: int
    #: practice code -> cluster code
    assignment: dict[str, str]
    #: each practice's home council and home neighbourhood
    homes: dict[str, tuple[str | None, str | None]]
    clusters: list[GroupScore]
    before: OverallScore
    after: OverallScore
    current: list[GroupScore]
    #: practice code -> its group now
    current_group: dict[str, str]


def _homes(c: pd.DataFrame) -> dict[str, tuple[str | None, str | None]]:
    homes: dict[str, tuple[str | None, str | None]] = {}
    for code, rows in c.groupby("practice_code"):
        known = rows[rows["neighbourhood_code"].notna() & (rows["patients"] > 0)]
        if known.empty:
            homes[str(code)] = (None, None)
            continue
        la, _ = _argmax(known.groupby("local_authority_code")["patients"].sum())
        mine = known[known["local_authority_code"] == la]
        hood, _ = _argmax(mine.groupby("neighbourhood_code")["patients"].sum())
        homes[str(code)] = (la, hood)
    return homes


def regroup(counts: pd.DataFrame, min_list: int = DEFAULT_MIN_LIST) -> Regrouping:
    """Suggest clusters of practices that follow neighbourhood boundaries (the rule in the
    module's docstring), with the grouping's scores before and after."""
    if min_list < 0:
        raise ValueError("the minimum list size must not be negative")
    c = check_counts(counts)
    homes = _homes(c)
    size = c.groupby("practice_code")["patients"].sum()
    # clusters: code -> (home council, member practices); practices with no known
    # residence form a cluster of their own (nothing says where they belong)
    clusters: dict[str, tuple[str | None, list[str]]] = {}
    for practice, (la, hood) in sorted(homes.items()):
        key = hood if hood is not None else f"unknown-{practice}"
        clusters.setdefault(key, (la, []))[1].append(practice)
    hood_patients = c[c["neighbourhood_code"].notna()].groupby(
        ["practice_code", "neighbourhood_code"])["patients"].sum()

    def patients(members: list[str]) -> int:
        return int(size[members].sum())

    def hoods_of(key: str) -> set[str]:
        return set(key.split("+"))

    while True:
        small = sorted((patients(m), k) for k, (la, m) in clusters.items()
                       if la is not None and patients(m) < min_list
                       and any(o != k and clusters[o][0] == la for o in clusters))
        if not small:
            break
        _, key = small[0]
        la, members = clusters[key]

        def pull(other: str, members: list[str] = members) -> int:
            return int(sum(hood_patients.get((p, h), 0) for p in members
                           for h in hoods_of(other)))

        partners = [o for o in clusters if o != key and clusters[o][0] == la]
        best = min(partners, key=lambda o: (-pull(o), patients(clusters[o][1]), o))
        merged = "+".join(sorted(hoods_of(key) | hoods_of(best)))
        clusters[merged] = (la, sorted(clusters.pop(key)[1] + clusters.pop(best)[1]))
    assignment = {p: k for k, (_, members) in clusters.items() for p in members}
    new = c.assign(group_code=c["practice_code"].map(assignment))
    current = group_scores(c, min_list=min_list)
    after_scores = group_scores(new, min_list=min_list)
    now = {str(k): str(v) for k, v in c.groupby("practice_code")["group_code"].first().items()}
    return Regrouping(min_list, dict(sorted(assignment.items())), homes, after_scores,
                      overall(current), overall(after_scores), current, now)


def as_frame(scores: Iterable[GroupScore], grouping: str) -> pd.DataFrame:
    """Scores as a table, one row per group, with the grouping's name."""
    rows = [{"grouping": grouping, **vars(g)} for g in scores]
    return pd.DataFrame(rows, columns=["grouping", *GroupScore.__dataclass_fields__])


def members(assignment: Mapping[str, str]) -> dict[str, list[str]]:
    """Cluster code -> its practices (sorted)."""
    out: dict[str, list[str]] = {}
    for practice, cluster in sorted(assignment.items()):
        out.setdefault(cluster, []).append(practice)
    return out
