"""Load throughput at 1% and 10% of national scale, against a plain DuckDB copy.

For each scale: synthesise an economy (not timed here; see bench_synth.py), then time
(a) ``pbc load`` (validate every row against the contract, quarantine, reconcile, write
partitioned Parquet, swap atomically) and (b) the baseline: one DuckDB ``COPY`` of the same
input files to partitioned Parquet with no validation at all — the floor any loader pays.
Reports rows/s, peak RSS, the ratio pbc/baseline, and extrapolates to the national year.

    python benchmarks/bench_load.py --scale 0.01 0.1 [--workdir bench-out]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import NATIONAL_ACTIVITY_ROWS_PER_YEAR, NATIONAL_PRACTICES, measure, report


def synthesise(scale: float, out: str) -> int:
    from pbc.synth import SynthConfig, generate

    practices = max(10, round(NATIONAL_PRACTICES * scale))
    summary = generate(SynthConfig(practices=practices, groups=max(4, practices // 40),
                                   local_authorities=max(2, practices // 200)), Path(out))
    return int(sum(summary.rows.values()))


def _folder_bytes(folder: Path) -> int:
    total = 0
    with contextlib.suppress(OSError):  # a folder removed while we walked it
        for f in folder.rglob("*"):
            with contextlib.suppress(OSError):  # removed while we looked
                total += f.stat().st_size if f.is_file() else 0
    return total


def pbc_load(inputs: str, wdir: str) -> tuple[int, float]:
    """Load the files; returns the rows in and the peak size (GB) of the loader's scratch
    space: DuckDB's spill folder ``.tmp`` and the loader's work files in the version being built."""
    import threading

    from pbc.warehouse import Warehouse
    from pbc.warehouse.load import load

    peak = [0]
    done = threading.Event()

    def watch() -> None:
        root = Path(wdir)
        while not done.wait(0.5):
            scratch = _folder_bytes(root / ".tmp") + sum(
                _folder_bytes(p) for p in root.glob("versions/.staging-*/.work-*"))
            peak[0] = max(peak[0], scratch)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        rows = load(inputs, Warehouse(wdir)).rows_in
    finally:
        done.set()
        t.join()
    return rows, peak[0] / 1e9


def baseline_copy(inputs: str, out: str) -> int:
    """Plain DuckDB: read every input table and write it as Parquet, no checks."""
    import duckdb

    con = duckdb.connect()
    total = 0
    for path in sorted(Path(inputs).iterdir()):
        if path.suffix == ".parquet" or (path.is_dir() and path.name != "truth"):
            src = str(path / "**" / "*.parquet") if path.is_dir() else str(path)
            dest = Path(out) / f"{path.stem}.parquet"
            dest.parent.mkdir(parents=True, exist_ok=True)
            con.execute(f"COPY (SELECT * FROM read_parquet('{src}')) TO '{dest}' (FORMAT parquet)")
            total += con.execute(f"SELECT count(*) FROM read_parquet('{dest}')").fetchall()[0][0]
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, nargs="+", default=[0.01, 0.1])
    ap.add_argument("--workdir", type=Path, default=Path("bench-out"))
    args = ap.parse_args()
    rows = []
    for scale in args.scale:
        base = args.workdir / f"load-{scale:g}"
        shutil.rmtree(base, ignore_errors=True)
        inputs = base / "input"
        measure(synthesise, scale, str(inputs))
        pbc = measure(pbc_load, str(inputs), str(base / "warehouse"))
        plain = measure(baseline_copy, str(inputs), str(base / "plain"))
        n, spill_gb = pbc["result"]
        rate = n / pbc["seconds"]
        rows.append({
            "scale": scale, "rows_in": n, "pbc_load_s": round(pbc["seconds"], 2),
            "pbc_rows_per_s": round(rate), "pbc_peak_rss_gb": round(pbc["peak_rss_gb"], 2),
            "pbc_peak_scratch_gb": round(spill_gb, 2),
            "baseline_copy_s": round(plain["seconds"], 2),
            "ratio_pbc_to_baseline": round(pbc["seconds"] / plain["seconds"], 2),
            "national_year_extrapolated_min": round(
                NATIONAL_ACTIVITY_ROWS_PER_YEAR / rate / 60, 1),
        })
        shutil.rmtree(base, ignore_errors=True)
    report("load: pbc load vs a plain DuckDB copy of the same files", rows)


if __name__ == "__main__":
    main()
