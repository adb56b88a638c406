"""Synthetic economy throughput at 1% and 10% of national scale, against plain DuckDB.

For each scale, times ``pbc synth`` (every contract table, calibrated, seeded, with faults)
and, in the same run, the baseline: one DuckDB ``COPY (SELECT ... FROM range(n))`` writing
the same number of rows of comparable width with no model at all — the floor of generating
inside DuckDB. Reports rows/s, peak RSS, the ratio, and extrapolates to the national year
(62 million patients, about 170 million activity rows).

    python benchmarks/bench_synth.py [--scale 0.01 0.1] [--workdir bench-out]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import NATIONAL_PRACTICES, measure, report


def synthesise(scale: float, out: str) -> dict[str, int]:
    from pbc.synth import SynthConfig, generate

    practices = max(10, round(NATIONAL_PRACTICES * scale))
    s = generate(SynthConfig(practices=practices, groups=max(4, practices // 40),
                             local_authorities=max(2, practices // 200)), Path(out))
    return {"rows": int(sum(s.rows.values())), "patients": s.patients,
            "faults": int(sum(s.faults.values())),
            "parts": -(-s.patients // SynthConfig.part_patients)}


def baseline(rows: int, out: str) -> int:
    import duckdb

    con = duckdb.connect()
    Path(out).mkdir(parents=True, exist_ok=True)
    con.execute(f"""COPY (SELECT 'S' || lpad(CAST(range AS VARCHAR), 12, '0') AS id,
        'P' || lpad(CAST(range % 1000003 AS VARCHAR), 10, '0') AS patient_id,
        CAST(DATE '2025-04-01' + CAST(hash(range) % 365 AS INTEGER) AS VARCHAR) AS d1,
        CAST(hash(range, 1) % 100 AS BIGINT) AS age, 'DZ65' || chr(65 + CAST(range % 3
        AS INTEGER)) AS hrg FROM range({rows})) TO '{out}/plain.parquet' (FORMAT parquet)""")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, nargs="+", default=[0.01, 0.1])
    ap.add_argument("--workdir", type=Path, default=Path("bench-out"))
    args = ap.parse_args()
    rows_out = []
    for scale in args.scale:
        base = args.workdir / f"synth-{scale:g}"
        shutil.rmtree(base, ignore_errors=True)
        pbc = measure(synthesise, scale, str(base / "economy"))
        n = pbc["result"]["rows"]
        plain = measure(baseline, n, str(base / "plain"))
        rate = n / pbc["seconds"]
        rows_out.append({
            "scale": scale, "patients": pbc["result"]["patients"], "rows": n,
            "pbc_synth_s": round(pbc["seconds"], 1), "pbc_rows_per_s": round(rate),
            "pbc_peak_rss_gb": round(pbc["peak_rss_gb"], 2),
            "baseline_s": round(plain["seconds"], 1),
            "ratio_pbc_to_baseline": round(pbc["seconds"] / plain["seconds"], 1),
            "national_extrapolated_min": round(n / scale / rate / 60, 1),
            "parts": pbc["result"]["parts"], "faults": pbc["result"]["faults"],
            "memory_limit": "4GB (DuckDB), chunks of 2M patients: RSS bounded at any scale",
        })
        shutil.rmtree(base, ignore_errors=True)
    report("synth: pbc synth vs a plain DuckDB COPY of the same row count", rows_out)


if __name__ == "__main__":
    main()
