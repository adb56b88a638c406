"""Every indicator for all of England's practices x 12 months, against hand-written SQL.

The warehouse: all 6,553 real practices of NHS England's weighted-population file, each
list scaled to a tenth (``pbc synth --nhse-file ... --list-scale 0.1``: about 6.2 million
patients, a 10%-scale economy with the national practice count), one financial year,
loaded and priced.

In the same run, for every indicator in the library:

* **pbc**: the registered and weighted populations computed once
  (:func:`pbc.indicators.compute.with_populations`, as :func:`pbc.services.benchmarking.
  benchmark_all` does), then :func:`pbc.indicators.benchmark.benchmark` (value, confidence interval,
  standardised ratio or DSR, funnel significance, ratio to England, peer percentile and
  savings) and :func:`pbc.indicators.benchmark.monthly_series` (12 months per practice with
  XmR limits and Making Data Count rules) at practice level;
* **hand-written SQL**: one DuckDB query per activity table computing every indicator's
  numerator by practice and month with ``count(*) FILTER (...)`` in a single scan, plus the
  registered population by practice: the numerators and denominators only, no statistics
  (the practical limit of the engine for the counting part of the work).

Target (issue 5): every indicator for 6,553 practices x 12 months in under 30 s.

    python benchmarks/bench_indicators.py [--list-scale 0.1] [--workdir bench-out]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import measure, report

ROOT = Path(__file__).resolve().parents[1]
NHSE = ROOT.parent / "shared" / "data" / "nhse-practice-weighted-populations" / "2024_2025.csv"
YEAR = "2025-26"


def prepare(base: str, list_scale: float, nhse: str) -> dict[str, int]:
    from pbc.services.pricing import run_pricing
    from pbc.synth import SynthConfig, generate
    from pbc.warehouse import Warehouse
    from pbc.warehouse.load import load

    summary = generate(SynthConfig(nhse_file=Path(nhse), list_scale=list_scale, seed=5,
                                   start_year=2025), Path(base) / "in")
    wh = Warehouse(Path(base) / "wh")
    rows = load(Path(base) / "in", wh).rows_in
    run_pricing(wh)
    return {"practices": summary.practices, "patients": summary.patients, "rows": rows}


def run_pbc(base: str) -> dict[str, float]:
    from pbc.indicators.benchmark import benchmark, monthly_series
    from pbc.indicators.compute import with_populations
    from pbc.indicators.definition import load_indicators
    from pbc.warehouse import Warehouse

    wh = Warehouse(Path(base) / "wh")
    backend = wh.ibis()
    t0 = time.perf_counter()
    tables = with_populations({n: backend.table(n) for n in wh.table_names()})
    seconds: dict[str, float] = {"populations": round(time.perf_counter() - t0, 2)}
    rows = 0
    for ind in load_indicators().values():
        t0 = time.perf_counter()
        table = benchmark(tables, ind, financial_year=YEAR)
        series = monthly_series(tables, ind, years=[YEAR])
        seconds[ind.id] = round(time.perf_counter() - t0, 2)
        rows += len(table) + len(series)
        assert series.groupby("practice").size().eq(12).all(), ind.id
    seconds["rows_out"] = rows
    return seconds


def _apc_numerators() -> str:
    from pbc.contracts.tables import ELECTIVE_ADMISSION_METHODS, EMERGENCY_ADMISSION_METHODS
    from pbc.reference.codelists import codelist

    em = ", ".join(f"'{m}'" for m in EMERGENCY_ADMISSION_METHODS)
    el = ", ".join(f"'{m}'" for m in ELECTIVE_ADMISSION_METHODS)
    chronic = "^(" + "|".join(codelist("acsc_chronic")) + ")"
    acute = "^(" + "|".join(codelist("acsc_acute")) + ")"
    return f"""
      SELECT practice_code, month,
        count(*) AS discharges,
        count(*) FILTER (WHERE admission_method IN ({em})) AS emergency,
        count(*) FILTER (WHERE admission_method IN ({em})
                         AND regexp_matches(coalesce(primary_diagnosis, ''), '{chronic}'))
          AS chronic_acsc,
        count(*) FILTER (WHERE admission_method IN ({em})
                         AND regexp_matches(coalesce(primary_diagnosis, ''), '{acute}'))
          AS acute_acsc,
        count(*) FILTER (WHERE admission_method IN ({el})) AS elective,
        count(*) FILTER (WHERE admission_method IN ({el}) AND patient_classification = '2')
          AS day_case,
        count(*) FILTER (WHERE readmission) AS readmissions,
        sum(excess) AS excess_bed_days
      FROM (SELECT s.*,
              s.admission_method IN ({em}) AND date_diff('day', lag(s.discharge_date) OVER w,
                s.admission_date) BETWEEN 0 AND 30 AS readmission,
              greatest(date_diff('day', s.admission_date, s.discharge_date) -
                CASE WHEN s.admission_method IN ({el}) THEN t.elective_trim_days
                     ELSE t.non_elective_trim_days END, 0) AS excess
            FROM apc_spells s LEFT JOIN tariff_apc t USING (hrg_code)
            WINDOW w AS (PARTITION BY s.patient_id ORDER BY s.admission_date, s.spell_id))
      WHERE financial_year = '{YEAR}' AND coalesce(practice_code, '') <> ''
      GROUP BY ALL"""


def hand_sql(base: str) -> int:
    from pbc.warehouse import Warehouse

    con = Warehouse(Path(base) / "wh").connect()
    queries = [
        _apc_numerators(),
        f"""SELECT practice_code, month,
              count(*) FILTER (WHERE first_attendance IN ('1','3') AND attended) AS first,
              count(*) FILTER (WHERE first_attendance IN ('2','4') AND attended) AS follow_up,
              count(*) FILTER (WHERE first_attendance IN ('1','3') AND attended
                               AND referral_source = '03') AS gp_referred,
              count(*) FILTER (WHERE first_attendance IN ('1','3') AND attended
                               AND referral_source = '05') AS consultant_referred
            FROM op_attendances WHERE financial_year = '{YEAR}'
              AND coalesce(practice_code, '') <> '' GROUP BY ALL""",
        f"""SELECT practice_code, month, count(*) AS ae FROM ae_attendances
            WHERE financial_year = '{YEAR}' AND coalesce(practice_code, '') <> ''
            GROUP BY ALL""",
        f"""SELECT practice_code, month, sum(actual_cost) AS cost FROM prescribing
            WHERE financial_year = '{YEAR}' AND coalesce(practice_code, '') <> ''
            GROUP BY ALL""",
        f"""PIVOT (SELECT practice_code, month, service_line, price FROM priced_activity
                   WHERE financial_year = '{YEAR}' AND attributed)
            ON service_line USING sum(price) GROUP BY practice_code, month""",
        "SELECT practice_code, count(*) AS patients FROM patients GROUP BY ALL",
    ]
    rows = 0
    for q in queries:
        rows += len(con.execute(q).fetchall())
    con.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--list-scale", type=float, default=0.1)
    ap.add_argument("--nhse-file", type=Path, default=NHSE)
    ap.add_argument("--workdir", type=Path, default=Path("bench-out"))
    ap.add_argument("--keep", action="store_true", help="keep the warehouse for another run")
    args = ap.parse_args()
    base = args.workdir / f"indicators-{args.list_scale}"
    if not (base / "wh").exists():
        shutil.rmtree(base, ignore_errors=True)
        prep = measure(prepare, str(base), args.list_scale, str(args.nhse_file))
        print(f"prepared {prep['result']} in {prep['seconds']:.0f} s", flush=True)
    pbc = measure(run_pbc, str(base))
    sql = measure(hand_sql, str(base))
    per = {k: v for k, v in pbc["result"].items() if k not in ("rows_out", "populations")}
    slowest = sorted(per.items(), key=lambda kv: -kv[1])[:5]
    slowest.insert(0, ("populations (once)", pbc["result"]["populations"]))
    report(f"every indicator, every practice x 12 months ({args.list_scale:g} of each list)", [
        {"engine": "pbc (statistics + SPC)", "indicators": len(per),
         "seconds": round(pbc["seconds"], 1), "peak_rss_gb": round(pbc["peak_rss_gb"], 2),
         "rows_out": pbc["result"]["rows_out"], "target_s": 30,
         "met": pbc["seconds"] < 30},
        {"engine": "hand-written SQL (numerators and denominators only)",
         "seconds": round(sql["seconds"], 1), "rows_out": sql["result"]},
        {"ratio_pbc_to_sql": round(pbc["seconds"] / sql["seconds"], 1),
         "slowest_indicators_s": slowest},
    ])
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
