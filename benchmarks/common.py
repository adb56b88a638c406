"""Shared helpers for benchmarks: run a step in a child process, measure time and peak RSS.

Benchmarks compare pbc against a baseline in the same run and report ratios; they are
scripts (``make bench``), not timed unit tests.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import queue
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

NATIONAL_PRACTICES = 6553
NATIONAL_PATIENTS = 62_150_000
NATIONAL_ACTIVITY_ROWS_PER_YEAR = 170_000_000


def _child(fn: Callable[..., Any], args: tuple[Any, ...], q: Any) -> None:
    t0 = time.perf_counter()
    result = fn(*args)
    seconds = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    q.put({"seconds": seconds, "peak_rss_gb": peak_kb / 1024 / 1024, "result": result})


def measure(fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
    """Run ``fn(*args)`` in a fresh process; return seconds, peak RSS (GB) and its result."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(fn, args, q))
    p.start()
    while True:  # a child that dies (an exception, the OOM killer) never puts a result
        try:
            out: dict[str, Any] = q.get(timeout=1.0)
            break
        except queue.Empty:
            if not p.is_alive():
                raise RuntimeError(f"benchmark step {getattr(fn, '__name__', fn)} failed "
                                   f"with exit code {p.exitcode}") from None
    p.join()
    if p.exitcode != 0:
        raise RuntimeError(f"benchmark step failed with exit code {p.exitcode}")
    return out


def report(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n== {title}")
    for r in rows:
        print("  " + json.dumps(r, default=str))


def one_commissioner_nhse(root: Path, commissioner: str) -> Path:
    """A copy of NHS England's weighted-population file shipped with pbc with every practice
    under one national ``commissioner`` (pbc sets one commissioner's budgets per
    warehouse); nothing else changes. Written to ``root/nhse_one_commissioner.csv``."""
    import pandas as pd

    from pbc.budgets import packaged_nhse_file

    nhse = pd.read_csv(packaged_nhse_file(), dtype=str, keep_default_na=False,
                       encoding="utf-8-sig")
    nhse["ICS22"] = commissioner
    nhse["ICS22name"] = "NHS Benchmark national commissioner"
    one = root / "nhse_one_commissioner.csv"
    nhse.to_csv(one, index=False)
    return one
