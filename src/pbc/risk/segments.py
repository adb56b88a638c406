"""NHS risk segments by rank of predicted risk (docs/sources.md §3.1).

Very high = the top 0.5% of the registered population, high = 0.5-5%, moderate = 5-20%,
low = the rest (Nuffield Trust, Bardsley 2012). The edges are data
(``pbc/reference/risk/segments.yaml``). Segments are by *rank*, so exactly
``ceil(0.005 N)`` patients are very high; ties in risk are broken by the order given
(callers sort by patient id first, so the result is deterministic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

from pbc.risk.reference import load_reference


@dataclass(frozen=True)
class Segment:
    name: str
    label: str
    top: float  # upper edge, as a fraction of the population ranked from highest risk


@cache
def nhs_segments() -> tuple[Segment, ...]:
    """The segments of ``segments.yaml``, highest risk first."""
    doc = load_reference("segments.yaml", "nhs_segments")
    segs = tuple(Segment(s["name"], s["label"], float(s["top"])) for s in doc["segments"])
    tops = [s.top for s in segs]
    if tops != sorted(tops) or tops[-1] != 1.0:
        raise ValueError("segments.yaml: 'top' must increase and end at 1.0")
    return segs


SEGMENT_NAMES: tuple[str, ...] = tuple(s.name for s in nhs_segments())


def segment_cutoffs(n: int, segments: tuple[Segment, ...] | None = None) -> list[int]:
    """For a population of ``n``, the number of top-ranked patients within each segment's edge."""
    segs = segments or nhs_segments()
    return [min(n, math.ceil(round(s.top * n, 9))) for s in segs]


def assign_segments(
    risk: npt.ArrayLike, segments: tuple[Segment, ...] | None = None
) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.int64]]:
    """Segment name and rank (1 = highest risk) for each risk, by a stable sort on -risk."""
    segs = segments or nhs_segments()
    r = np.asarray(risk, dtype=float)
    n = r.size
    order = np.argsort(-r, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1)
    cut = np.array(segment_cutoffs(n, segs))
    idx = np.searchsorted(cut, rank, side="left")  # rank <= cut[i] -> segment i
    names = np.array([s.name for s in segs], dtype=object)
    return names[np.clip(idx, 0, len(segs) - 1)], rank


def segment_sql(rank_sql: str, n_sql: str, segments: tuple[Segment, ...] | None = None) -> str:
    """SQL CASE giving the segment from a 1-based rank and the population size (any engine)."""
    segs = segments or nhs_segments()
    whens = " ".join(
        f"WHEN {rank_sql} <= ceil(round({s.top!r} * {n_sql}, 9)) THEN '{s.name}'"
        for s in segs[:-1]
    )
    return f"CASE {whens} ELSE '{segs[-1].name}' END"
