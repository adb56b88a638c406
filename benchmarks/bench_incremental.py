"""One more month: load and price a month's delivery into a priced warehouse, against a
full re-price in the same run.

At ``--scale`` of national (default 10%): synthesise a year (not timed), split it into the
first eleven months (with the reference tables) and the last month's activity (March:
every activity table's rows of that month), load and price the eleven months (not timed),
then time

* (a) ``pbc load`` of the last month's delivery (validation of its rows only; the other
  months' files are linked into the new version, not rewritten),
* (b) ``pbc price`` after it: only the new month's partition is priced, the others kept,
* (c) the baseline: ``pbc price --full`` of the same warehouse (every partition again).

Reports each step's time and peak RSS, the ratios (b)/(c) and (a+b)/(c), and extrapolates
(a+b) to one month of England by rows (docs/performance.md, "Monthly deliveries").

    python benchmarks/bench_incremental.py [--scale 0.1] [--workdir bench-out]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import NATIONAL_ACTIVITY_ROWS_PER_YEAR, NATIONAL_PRACTICES, measure, report

#: activity tables and the date that puts a row in its month (SQL over the input)
ACTIVITY = {
    "apc_spells": "TRY_CAST(discharge_date AS DATE)",
    "op_attendances": "TRY_CAST(appointment_date AS DATE)",
    "ae_attendances": "TRY_CAST(arrival_date AS DATE)",
    "prescribing": "TRY_CAST(CAST(year_month AS VARCHAR) || '-01' AS DATE)",
}
LAST_MONTH = "2026-03-01"  # the synthetic year is 2025-26


def synthesise(scale: float, out: str) -> int:
    from pbc.synth import SynthConfig, generate

    practices = max(10, round(NATIONAL_PRACTICES * scale))
    summary = generate(SynthConfig(practices=practices, groups=max(4, practices // 40),
                                   local_authorities=max(2, practices // 200)), Path(out))
    return int(sum(summary.rows.values()))


def split(inputs: str, first: str, last: str) -> int:
    """Write the first eleven months (and every reference table) to ``first`` and the last
    month's activity to ``last``; returns the last month's rows."""
    import duckdb

    con = duckdb.connect()
    Path(first).mkdir(parents=True)
    Path(last).mkdir(parents=True)
    rows = 0
    for path in sorted(Path(inputs).iterdir()):
        name = path.name.removesuffix(".parquet")
        if name not in ACTIVITY:
            if path.suffix in (".parquet", ".toml", ".csv") or (path.is_dir() \
                    and name != "truth"):
                target = Path(first) / path.name
                (shutil.copytree if path.is_dir() else shutil.copy2)(path, target)
            continue
        src = f"'{path / '**' / '*.parquet'}'" if path.is_dir() else f"'{path}'"
        is_last = f"coalesce({ACTIVITY[name]} >= DATE '{LAST_MONTH}', false)"
        con.execute(f"COPY (SELECT * FROM read_parquet({src}) WHERE NOT {is_last}) "
                    f"TO '{Path(first) / (name + '.parquet')}' (FORMAT parquet)")
        con.execute(f"COPY (SELECT * FROM read_parquet({src}) WHERE {is_last}) "
                    f"TO '{Path(last) / (name + '.parquet')}' (FORMAT parquet)")
        rows += con.execute(f"SELECT count(*) FROM read_parquet("
                            f"'{Path(last) / (name + '.parquet')}')").fetchall()[0][0]
    return rows


def pbc_load(inputs: str, wdir: str) -> int:
    from pbc.warehouse import Warehouse
    from pbc.warehouse.load import load

    return load(inputs, Warehouse(wdir)).rows_in


def pbc_price(wdir: str, full: bool) -> dict[str, object]:
    from pbc.services.pricing import run_pricing
    from pbc.warehouse import Warehouse

    r = run_pricing(Warehouse(wdir), full=full)
    return {"rows_priced": r.rows_priced, "partitions": r.partitions_text()}


def one_scale(scale: float, workdir: Path) -> dict[str, object]:
    base = workdir / f"incremental-{scale:g}"
    shutil.rmtree(base, ignore_errors=True)
    inputs, first, last = base / "input", base / "first", base / "last"
    wh = str(base / "warehouse")
    measure(synthesise, scale, str(inputs))
    new_rows = measure(split, str(inputs), str(first), str(last))["result"]
    measure(pbc_load, str(first), wh)
    measure(pbc_price, wh, False)
    load = measure(pbc_load, str(last), wh)
    inc = measure(pbc_price, wh, False)
    full = measure(pbc_price, wh, True)
    month = load["seconds"] + inc["seconds"]
    shutil.rmtree(base, ignore_errors=True)
    return {
        "scale": scale, "load_avg": round(os.getloadavg()[0], 2),
        "new_month_rows": new_rows,
        "load_month_s": round(load["seconds"], 2),
        "load_peak_rss_gb": round(load["peak_rss_gb"], 2),
        "price_incremental_s": round(inc["seconds"], 2),
        "price_incremental_rows": inc["result"]["rows_priced"],
        "price_incremental_peak_rss_gb": round(inc["peak_rss_gb"], 2),
        "partitions": inc["result"]["partitions"],
        "price_full_s": round(full["seconds"], 2),
        "price_full_rows": full["result"]["rows_priced"],
        "price_full_peak_rss_gb": round(full["peak_rss_gb"], 2),
        "ratio_incremental_to_full": round(inc["seconds"] / full["seconds"], 2),
        "ratio_load_and_price_month_to_full_price": round(month / full["seconds"], 2),
        "month_s": round(month, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, nargs="+", default=[0.01, 0.1])
    ap.add_argument("--workdir", type=Path, default=Path("bench-out"))
    args = ap.parse_args()
    rows = [one_scale(scale, args.workdir) for scale in args.scale]
    report("one more month: load + incremental price vs a full re-price", rows)
    if len(rows) >= 2:
        # time = fixed + per row x rows, through the smallest and the largest scale
        a, b = rows[0], rows[-1]
        per_row = (float(b["month_s"]) - float(a["month_s"])) / (  # type: ignore[arg-type]
            int(b["new_month_rows"]) - int(a["new_month_rows"]))  # type: ignore[call-overload]
        fixed = float(a["month_s"]) - per_row * int(a["new_month_rows"])  # type: ignore[arg-type, call-overload]
        national = NATIONAL_ACTIVITY_ROWS_PER_YEAR / 12
        report("one month of England, extrapolated (fixed + per row, from the two scales)", [{
            "fixed_s": round(fixed, 2), "per_million_rows_s": round(per_row * 1e6, 2),
            "national_month_rows": round(national),
            "national_month_s": round(fixed + per_row * national, 1)}])


if __name__ == "__main__":
    main()
