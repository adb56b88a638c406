"""Pricing and attribution at 10% of national scale: pbc vs hand-written SQL vs pandas.

In the same run, on the same loaded warehouse (a synthetic economy of 10% of England):

* **pbc**: ``pbc price`` — the Ibis expressions on DuckDB, exact decimal money, every
  adjustment in its own column, attribution, reconciliation, partitioned Parquet written in a
  warehouse transaction;
* **hand-written SQL**: one DuckDB query doing the same rules (base price, long stay, short
  stay emergency, top-ups, MFF, the emergency marginal rate per contract, outpatients, A&E,
  attribution) straight to Parquet — the practical limit of the engine;
* **pandas**: a straightforward pandas implementation of the same rules.

Prints seconds, rows/s, peak RSS and the ratios (targets: pbc within 1.3x of the SQL and at
least 20x faster than pandas), the totals of each (a check that they did the same work), and
extrapolates pbc to the national year (about 170 million rows).

    python benchmarks/bench_pricing.py [--scale 0.1] [--workdir bench-out]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import NATIONAL_ACTIVITY_ROWS_PER_YEAR, NATIONAL_PRACTICES, measure, report

EMERGENCY = "('21','22','23','24','25','2A','2B','2C','2D','28')"
TOP_UP = {"children": 0.60, "orthopaedic": 0.24, "spinal": 0.32, "neurosciences": 0.28}


def prepare(scale: float, base: str) -> int:
    from pbc.synth import SynthConfig, generate
    from pbc.warehouse import Warehouse
    from pbc.warehouse.load import load

    practices = max(10, round(NATIONAL_PRACTICES * scale))
    generate(SynthConfig(practices=practices, groups=max(4, practices // 40),
                         local_authorities=max(2, practices // 200)), Path(base) / "in")
    return load(Path(base) / "in", Warehouse(Path(base) / "wh")).rows_in


def run_pbc(base: str) -> int:
    from pbc.services.pricing import run_pricing
    from pbc.warehouse import Warehouse

    r = run_pricing(Warehouse(Path(base) / "wh"))
    return sum(int(x["rows_in"]) for x in r.reconciliation)


def _baselines(base: str) -> list[tuple[str, str, float]]:
    with open(Path(base) / "in" / "tariff_settings.toml", "rb") as f:
        s = tomllib.load(f)
    return [(b["commissioner_code"], b["provider_code"], float(b["baseline"]))
            for b in s.get("emergency_marginal_rate", {}).get("baseline", [])]


def hand_sql(base: str) -> int:
    """The same rules as one DuckDB query over the warehouse's Parquet, written once."""
    from pbc.warehouse import Warehouse

    wh = Warehouse(Path(base) / "wh")
    con = wh.connect()
    con.execute("CREATE TABLE baselines (commissioner_code VARCHAR, provider_code VARCHAR, "
                "baseline DOUBLE)")
    con.executemany("INSERT INTO baselines VALUES (?, ?, ?)", _baselines(base))
    top = " ".join(f"WHEN '{k}' THEN {v}" for k, v in TOP_UP.items())
    out = Path(base) / "hand.parquet"
    con.execute(f"""COPY (
    WITH a AS (
      SELECT s.spell_id AS activity_id, s.patient_id, s.practice_code, s.provider_code,
        s.commissioner_code, s.discharge_date AS activity_date, s.financial_year, s.month,
        date_diff('day', s.admission_date, s.discharge_date) AS los,
        s.admission_method IN ('11','12','13') AS elective,
        s.admission_method IN {EMERGENCY} AS emergency, s.patient_classification AS cp,
        s.age_on_admission AS age, s.top_up_category, t.*, p.mff_payment_index AS mff
      FROM apc_spells s LEFT JOIN tariff_apc t USING (hrg_code)
      LEFT JOIN providers p USING (provider_code)),
    b AS (SELECT *,
        CASE WHEN elective THEN CASE WHEN cp IN ('2','3','4')
               THEN coalesce(day_case_price, combined_elective_price)
               ELSE coalesce(ordinary_elective_price, combined_elective_price) END
             ELSE non_elective_price END AS base,
        CASE WHEN elective THEN elective_trim_days ELSE non_elective_trim_days END AS trim
      FROM a),
    c AS (SELECT *, CASE
        WHEN sse_applies = 'Y' AND emergency AND age >= 19 AND los <= 1 THEN sse_price
        WHEN los > trim THEN base + (los - trim) * excess_bed_day_price ELSE base END
        * (1 + CASE top_up_category {top} ELSE 0 END) * mff AS pre
      FROM b),
    d AS (SELECT c.*, m.baseline, sum(CASE WHEN emergency THEN pre ELSE 0 END) OVER (
        PARTITION BY c.commissioner_code, c.provider_code, c.financial_year
        ORDER BY activity_date, activity_id ROWS UNBOUNDED PRECEDING) AS cum
      FROM c LEFT JOIN baselines m USING (commissioner_code, provider_code)),
    apc AS (SELECT 'apc' AS activity_type, activity_id, patient_id, practice_code,
        commissioner_code, provider_code, activity_date, financial_year, month,
        CASE WHEN NOT elective THEN 'non_elective' WHEN cp = '1' THEN 'elective_inpatient'
             ELSE 'day_case' END AS service_line,
        round(CASE WHEN emergency AND baseline IS NOT NULL AND cum > baseline
              THEN pre - 0.7 * least(pre, cum - baseline) ELSE pre END, 2) AS price
      FROM d),
    op AS (SELECT 'op', o.attendance_id, o.patient_id, o.practice_code, o.commissioner_code,
        o.provider_code, o.appointment_date, o.financial_year, o.month,
        CASE WHEN o.hrg_code IS NOT NULL AND t.outpatient_procedure_price IS NOT NULL
             THEN 'outpatient_procedure' WHEN o.first_attendance IN ('1','3')
             THEN 'outpatient_first' ELSE 'outpatient_follow_up' END,
        round(CASE WHEN NOT o.attended THEN 0
             WHEN o.hrg_code IS NOT NULL AND t.outpatient_procedure_price IS NOT NULL
             THEN t.outpatient_procedure_price
             WHEN o.first_attendance IN ('1','3') THEN f.first_attendance_price
             ELSE f.follow_up_price END * p.mff_payment_index, 2)
      FROM op_attendances o LEFT JOIN tariff_op f USING (treatment_function_code)
      LEFT JOIN tariff_apc t ON t.hrg_code = o.hrg_code
      LEFT JOIN providers p ON p.provider_code = o.provider_code),
    ae AS (SELECT 'ae', e.attendance_id, e.patient_id, e.practice_code, e.commissioner_code,
        e.provider_code, e.arrival_date, e.financial_year, e.month, 'ae',
        round(t.price * CASE WHEN e.department_type IN ('3','4') THEN 0.5 ELSE 1 END
              * p.mff_payment_index, 2)
      FROM ae_attendances e LEFT JOIN tariff_ae t USING (hrg_code)
      LEFT JOIN providers p USING (provider_code)),
    allrows AS (SELECT * FROM apc UNION ALL SELECT * FROM op UNION ALL SELECT * FROM ae)
    SELECT r.*, pr.group_code, coalesce(pr.commissioner_code, r.commissioner_code)
      AS attributed_commissioner, pr.practice_code IS NOT NULL AS attributed
    FROM allrows r LEFT JOIN practices pr USING (practice_code)
    ) TO '{out}' (FORMAT parquet)""")
    n = con.execute(f"SELECT count(*) FROM '{out}'").fetchall()[0][0]
    con.close()
    return int(n)


def pandas_impl(base: str) -> int:
    """The same rules in straightforward pandas (merges and vectorised columns)."""
    import numpy as np
    import pandas as pd

    from pbc.warehouse import Warehouse

    wh = Warehouse(Path(base) / "wh")
    con = wh.connect()  # reading Parquet into pandas frames (I/O only, no rules)
    read = lambda t: con.execute(f"SELECT * FROM {t}").df()  # noqa: E731
    prov = read("providers")[["provider_code", "mff_payment_index"]]
    practices = read("practices")[["practice_code", "group_code", "commissioner_code"]]
    s = read("apc_spells").merge(read("tariff_apc"), on="hrg_code", how="left").merge(
        prov, on="provider_code", how="left")
    s["los"] = (pd.to_datetime(s.discharge_date) - pd.to_datetime(s.admission_date)).dt.days
    elective = s.admission_method.isin(["11", "12", "13"])
    emergency = s.admission_method.isin(["21", "22", "23", "24", "25", "2A", "2B", "2C",
                                         "2D", "28"])
    num = lambda c: pd.to_numeric(s[c], errors="coerce").astype(float)  # noqa: E731
    dc = num("day_case_price").fillna(num("combined_elective_price"))
    oe = num("ordinary_elective_price").fillna(num("combined_elective_price"))
    base_p = np.where(elective, np.where(s.patient_classification.isin(["2", "3", "4"]), dc,
                                         oe), num("non_elective_price"))
    trim = np.where(elective, s.elective_trim_days, s.non_elective_trim_days).astype(float)
    ssem = (s.sse_applies == "Y") & emergency & (s.age_on_admission >= 19) & (s.los <= 1)
    adj = np.where(ssem, num("sse_price"), np.where(s.los > trim, base_p + (s.los - trim)
                                                    * num("excess_bed_day_price"), base_p))
    top = s.top_up_category.map(TOP_UP).fillna(0).astype(float)
    s["pre"] = adj * (1 + top) * s.mff_payment_index.astype(float)
    s = s.merge(pd.DataFrame(_baselines(base), columns=["commissioner_code", "provider_code",
                                                        "baseline"]),
                on=["commissioner_code", "provider_code"], how="left")
    s = s.sort_values(["commissioner_code", "provider_code", "financial_year",
                       "discharge_date", "spell_id"])
    s["em_pre"] = np.where(emergency.loc[s.index], s.pre, 0.0)
    s["cum"] = s.groupby(["commissioner_code", "provider_code", "financial_year"],
                         dropna=False).em_pre.cumsum()
    over = emergency.loc[s.index] & s.baseline.notna() & (s.cum > s.baseline)
    s["price"] = np.where(over, s.pre - 0.7 * np.minimum(s.pre, s.cum - s.baseline),
                          s.pre).round(2)
    o = read("op_attendances").merge(read("tariff_op"), on="treatment_function_code",
                                     how="left").merge(prov, on="provider_code", how="left")
    o = o.merge(read("tariff_apc")[["hrg_code", "outpatient_procedure_price"]], on="hrg_code",
                how="left")
    first = o.first_attendance.isin(["1", "3"])
    opp = pd.to_numeric(o.outpatient_procedure_price, errors="coerce").astype(float)
    o["price"] = (np.where(~o.attended.astype(bool), 0.0, np.where(
        opp.notna(), opp, np.where(first, o.first_attendance_price.astype(float),
                                   o.follow_up_price.astype(float))))
        * o.mff_payment_index.astype(float)).round(2)
    e = read("ae_attendances").merge(read("tariff_ae"), on="hrg_code", how="left").merge(
        prov, on="provider_code", how="left")
    e["price"] = (e.price.astype(float) * np.where(e.department_type.isin(["3", "4"]), 0.5, 1)
                  * e.mff_payment_index.astype(float)).round(2)
    cols = ["patient_id", "practice_code", "provider_code", "financial_year", "month", "price"]
    allrows = pd.concat([s[["spell_id", *cols]].rename(columns={"spell_id": "activity_id"}),
                         o[["attendance_id", *cols]].rename(columns={"attendance_id":
                                                                     "activity_id"}),
                         e[["attendance_id", *cols]].rename(columns={"attendance_id":
                                                                     "activity_id"})])
    allrows = allrows.merge(practices, on="practice_code", how="left")
    allrows.to_parquet(Path(base) / "pandas.parquet")
    return len(allrows)


def total(path: str) -> float:
    import duckdb

    return float(duckdb.sql(f"SELECT sum(price) FROM '{path}'").fetchall()[0][0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--workdir", type=Path, default=Path("bench-out"))
    args = ap.parse_args()
    base = args.workdir / f"pricing-{args.scale:g}"
    shutil.rmtree(base, ignore_errors=True)
    rows = measure(prepare, args.scale, str(base))["result"]
    pbc = measure(run_pbc, str(base))
    sql = measure(hand_sql, str(base))
    pdx = measure(pandas_impl, str(base))
    import duckdb

    from pbc.warehouse import Warehouse

    wh = Warehouse(base / "wh")
    pbc_total = float(duckdb.sql(
        f"SELECT sum(price) FROM read_parquet('{wh.parquet_glob('priced_activity')}') "
        "WHERE activity_type IN ('apc', 'op', 'ae')").fetchall()[0][0])
    n = pbc["result"]
    report("pricing + attribution: pbc vs hand-written DuckDB SQL vs pandas", [{
        "scale": args.scale, "rows_loaded": rows, "rows_priced": n,
        "pbc_s": round(pbc["seconds"], 1), "hand_sql_s": round(sql["seconds"], 1),
        "pandas_s": round(pdx["seconds"], 1),
        "ratio_pbc_to_sql": round(pbc["seconds"] / sql["seconds"], 2),
        "speedup_pbc_over_pandas": round(pdx["seconds"] / pbc["seconds"], 1),
        "pbc_peak_rss_gb": round(pbc["peak_rss_gb"], 2),
        "sql_peak_rss_gb": round(sql["peak_rss_gb"], 2),
        "pandas_peak_rss_gb": round(pdx["peak_rss_gb"], 2),
        "pbc_rows_per_s": round(n / pbc["seconds"]),
        "national_year_extrapolated_s": round(NATIONAL_ACTIVITY_ROWS_PER_YEAR /
                                              (n / pbc["seconds"])),
        "total_pbc": round(pbc_total, 2),
        "total_sql": round(total(str(base / "hand.parquet")), 2),
        "total_pandas": round(total(str(base / "pandas.parquet")), 2),
    }])
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
