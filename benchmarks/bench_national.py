"""The national year end to end: ``pbc run`` over every English practice (``make bench-national``).

Synthesises the national economy (every practice of NHS England's 2024/25 weighted-population
file shipped with pbc, its whole list, two financial years 2024-25 and 2025-26; kept in
``WORKDIR/in`` and reused while its settings are the same), then runs the whole pipeline in
a child process at default settings:

    pbc run --input WORKDIR/in --warehouse WORKDIR/wh --policy WORKDIR/policy.toml \\
        --year 2025-26 --indicator emergency_admissions --out WORKDIR/run

into a new warehouse, and reads each stage's time, rows, rows per second and peak resident
memory from ``WORKDIR/run/summary.json`` (pbc run measures each stage's own peak), the
child's peak from ``getrusage``, and the warehouse's size on disk. The table is printed and
written into docs/performance.md between the ``bench-national`` markers, with the date, the
load average and the machine's cores and memory, so the figures in the docs are the last
run's. Targets (issue 17): the run under 15 minutes with peak RSS under 8 GB.

The national economy is every practice at its whole list (``--list-scale 1``); a smaller
``--list-scale`` runs the same script quickly (the docs are then not rewritten unless
``--write-docs`` is given).

    python benchmarks/bench_national.py [--workdir bench-out/national] [--list-scale 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import measure, one_commissioner_nhse, report

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "performance.md"
START, END = "<!-- bench-national:start -->", "<!-- bench-national:end -->"
COMMISSIONER = "QBM"
YEAR = "2025-26"


def synthesise(base: str, list_scale: float, workers: int) -> dict[str, int]:
    """The national economy under one commissioner (``QBM``) in ``base/in``."""

    from pbc.synth import SynthConfig, generate

    root = Path(base)
    one = one_commissioner_nhse(root, COMMISSIONER)
    summary = generate(SynthConfig(nhse_file=one, list_scale=list_scale, seed=5, years=2,
                                   start_year=2024, workers=workers), root / "in")
    return {"practices": summary.practices, "patients": summary.patients}


def _policy(root: Path) -> Path:
    text = (ROOT / "src" / "pbc" / "reference" / "budgets" / "demo_policy.toml").read_text(
        encoding="utf-8")
    text = (text.replace('financial_year = "2026-27"', f'financial_year = "{YEAR}"')
            .replace('commissioner_code = "Q99"', f'commissioner_code = "{COMMISSIONER}"'))
    text = text[:text.index("[[opt_out]]")]  # the demo's opt-out names a demo practice
    policy = root / "policy.toml"
    policy.write_text(text, encoding="utf-8")
    return policy


def pbc_run(root: Path, input_dir: Path, out: str) -> dict[str, object]:
    """``pbc run`` in a child process; its summary, wall time and the child's peak RSS."""
    cmd = [sys.executable, "-m", "pbc.cli", "run", "--input", str(input_dir), "--warehouse",
           str(root / "wh"), "--policy", str(_policy(root)), "--year", YEAR,
           "--indicator", "emergency_admissions", "--out", str(root / out),
           "--as", f"commissioner:{COMMISSIONER}"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 / 1024
    if done.returncode != 0:
        raise SystemExit(f"pbc run failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                         f"{done.stderr[-3000:]}")
    summary = json.loads((root / out / "summary.json").read_text(encoding="utf-8"))
    return {"seconds": seconds, "child_peak_rss_gb": peak_gb, "summary": summary}


def _size_gb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e9


def table(synth: dict[str, object], run: dict[str, object], list_scale: float) -> str:
    summary = run["summary"]
    assert isinstance(summary, dict)
    lines = [f"Measured {dt.date.today().isoformat()} by `make bench-national` "
             f"(list scale {list_scale:g}; {os.cpu_count()} cores, "
             f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; "
             f"load average at the end of the run "
             f"{', '.join(f'{x:.1f}' for x in summary['load_average'])}).", "",
             "| stage | status | time (s) | rows | rows/s | peak RSS (GB) |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    s = synth
    lines.append(f"| synthesise (not part of the run) | ran | {s['seconds']:.0f} | "
                 f"{s['patients']:,} patients | | {s['peak_rss_gb']:.1f} |")
    for st in summary["stages"]:
        rate = st.get("rows_per_second")
        peak = st.get("peak_rss_bytes")
        lines.append(f"| {st['stage']} | {st['status']} | {st['seconds']:.0f} | "
                     f"{st['rows']:,} | {'' if rate is None else f'{rate:,.0f}'} | "
                     f"{'' if peak is None else f'{peak / 1e9:.1f}'} |")
    lines.append(f"| **pbc run, whole** | | **{run['seconds']:.0f}** | | | "
                 f"**{run['child_peak_rss_gb']:.1f}** |")
    return "\n".join(lines)


def write_docs(text: str) -> None:
    doc = DOC.read_text(encoding="utf-8")
    if START not in doc:
        raise SystemExit(f"{DOC}: no {START} marker")
    doc = re.sub(re.escape(START) + ".*?" + re.escape(END), f"{START}\n{text}\n{END}", doc,
                 flags=re.S)
    DOC.write_text(doc, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="bench-out/national")
    parser.add_argument("--list-scale", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--write-docs", action="store_true",
                        help="write the table into docs/performance.md (the default at "
                             "list scale 1)")
    args = parser.parse_args()
    root = Path(args.workdir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    stamp = root / "synth.json"
    wanted = {"list_scale": args.list_scale, "seed": 5, "years": 2, "start_year": 2024}
    if stamp.exists() and json.loads(stamp.read_text())["config"] == wanted \
            and (root / "in").exists():
        synth = json.loads(stamp.read_text())["measured"]
    else:
        shutil.rmtree(root / "in", ignore_errors=True)
        m = measure(synthesise, str(root), args.list_scale, args.workers)
        synth = {**m["result"], "seconds": m["seconds"], "peak_rss_gb": m["peak_rss_gb"]}
        stamp.write_text(json.dumps({"config": wanted, "measured": synth}))
    for old in ("wh", "run"):
        shutil.rmtree(root / old, ignore_errors=True)
    run = pbc_run(root, root / "in", "run")
    run["warehouse_gb"] = _size_gb(root / "wh")
    text = table(synth, run, args.list_scale)
    print(text)
    summary = run["summary"]
    assert isinstance(summary, dict)
    report("pbc run, national year", [{
        "list_scale": args.list_scale, "run_seconds": round(float(run["seconds"]), 1),  # type: ignore[arg-type]
        "target_seconds": 900, "ok_time": float(run["seconds"]) < 900,  # type: ignore[arg-type]
        "peak_rss_gb": round(float(run["child_peak_rss_gb"]), 2),  # type: ignore[arg-type]
        "target_rss_gb": 8, "ok_rss": float(run["child_peak_rss_gb"]) < 8,  # type: ignore[arg-type]
        "warehouse_gb": round(float(run["warehouse_gb"]), 2),  # type: ignore[arg-type]
        "stages": {s["stage"]: s["status"] for s in summary["stages"]}}])
    if args.write_docs or args.list_scale == 1.0:
        write_docs(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
