"""Risk scoring throughput: 1 million patients in memory, and a streaming path for 62 million.

(a) ``pbc`` in-memory scoring (:func:`pbc.risk.casefinding.score_frame`: vectorised
    numpy linear predictor, population ranking and NHS segments) of 1M patients, target < 10 s;
(b) baseline in the same run: a naive pandas row-wise ``apply`` of the same model on a
    sample, extrapolated to 1M;
(c) streaming path for the national register: DuckDB SQL over a Parquet features table
    (the model as one SQL expression, segments from a window rank), with a memory limit,
    writing Parquet; reports rows/s, peak RSS, and the extrapolated time for 62.15M.

The features are synthetic (made in DuckDB); the model is fitted once on a sample (not timed).

    python benchmarks/bench_risk.py [--rows 1000000] [--stream-rows 10000000] [--workdir bench-out]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import NATIONAL_PATIENTS, measure, report


def features_sql(rows: int) -> str:
    """A synthetic features table with every model input, in DuckDB SQL."""
    from pbc.risk.features import CONDITION_COLUMNS

    conds = ", ".join(f"CAST(random() < 0.06 AS BIGINT) AS {c}" for c in CONDITION_COLUMNS)
    return f"""
        SELECT 'P' || lpad(CAST(i AS VARCHAR), 9, '0') AS patient_id,
               'A' || lpad(CAST(i % 6553 AS VARCHAR), 5, '0') AS practice_code,
               CAST(floor(random() * 95) AS BIGINT) AS age,
               CAST(random() < 0.5 AS BIGINT) AS female,
               CAST(1 + floor(random() * 10) AS BIGINT) AS imd_decile,
               {conds},
               CAST(floor(random() * 4) AS BIGINT) AS ltc_count,
               CAST(floor(-ln(random()) * 0.15) AS BIGINT) AS emergency_12m,
               CAST(floor(-ln(random()) * 0.3) AS BIGINT) AS emergency_24m,
               CAST(random() < 0.01 AS BIGINT) AS emergency_30d,
               CAST(floor(-ln(random()) * 0.05) AS BIGINT) AS acsc_12m,
               CAST(floor(-ln(random()) * 0.1) AS BIGINT) AS elective_12m,
               CAST(floor(-ln(random()) * 0.2) AS BIGINT) AS elective_24m,
               CAST(floor(-ln(random()) * 0.3) AS BIGINT) AS ae_12m,
               CAST(floor(-ln(random()) * 0.6) AS BIGINT) AS ae_24m,
               CAST(floor(-ln(random()) * 1.0) AS BIGINT) AS op_12m,
               CAST(floor(-ln(random()) * 2.0) AS BIGINT) AS op_24m,
               0.0 AS prior_cost
        FROM range({rows}) t(i)"""


def make_model(path: str) -> str:
    """Fit the shipped spec on 50k synthetic rows with a known outcome; save as JSON."""
    import duckdb
    import numpy as np

    from pbc.risk.model import fit

    f = duckdb.connect().execute(features_sql(50_000)).df()
    rng = np.random.default_rng(1)
    lp = -4 + 0.03 * f["age"] + 0.5 * f["ltc_count"] + 0.4 * f["emergency_12m"]
    f["outcome_emergency"] = (rng.random(len(f)) < 1 / (1 + np.exp(-lp))).astype(int)
    fit(f).save(path)
    return path


def write_features(rows: int, path: str) -> int:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = 4; COPY ({features_sql(rows)}) TO '{path}' (FORMAT parquet)")
    return rows


def pbc_in_memory(model_path: str, features: str) -> dict[str, float]:
    import duckdb

    from pbc.risk.casefinding import score_frame
    from pbc.risk.model import RiskModel

    model = RiskModel.load(model_path)
    f = duckdb.connect().execute(f"SELECT * FROM read_parquet('{features}')").df()
    t0 = time.perf_counter()
    scored = score_frame(model, f)
    secs = time.perf_counter() - t0
    return {"rows": len(scored), "score_seconds": secs}


def baseline_rowwise(model_path: str, features: str, sample: int) -> dict[str, float]:
    """Naive pandas: apply a Python function per row (the obvious first implementation)."""
    import math

    import duckdb

    from pbc.risk.model import RiskModel

    model = RiskModel.load(model_path)
    f = duckdb.connect().execute(
        f"SELECT * FROM read_parquet('{features}') LIMIT {sample}").df()
    terms = [(t, model.coefficients[t.term]) for t in model.terms]

    def one(row: object) -> float:
        lp = model.intercept
        for t, b in terms:
            v = row[t.feature]  # type: ignore[index]
            x = (t.fill if v is None or v != v else float(v)) * t.scale
            x = math.log1p(max(x, 0.0)) if t.transform == "log1p" else (
                x * x if t.transform == "square" else x)
            lp += b * x
        return 1 / (1 + math.exp(-lp))

    t0 = time.perf_counter()
    risk = f.apply(one, axis=1)
    f = f.assign(risk=risk).sort_values("risk", ascending=False)
    return {"rows": len(f), "score_seconds": time.perf_counter() - t0}


def streaming_sql(model_path: str, features: str, out: str, memory_limit: str) -> dict[str, float]:
    """DuckDB streaming: the model as SQL, segments from a window rank, bounded memory."""
    import duckdb

    from pbc.risk.model import RiskModel
    from pbc.risk.segments import segment_sql

    model = RiskModel.load(model_path)
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{memory_limit}'; SET threads = 4; "
                "SET preserve_insertion_order = false")
    src = f"read_parquet('{features}')"
    n = con.execute(f"SELECT count(*) FROM {src}").fetchall()[0][0]
    t0 = time.perf_counter()
    con.execute(f"""
        COPY (
          WITH s AS (SELECT patient_id, practice_code, {model.sql()} AS risk FROM {src}),
               r AS (SELECT *, row_number() OVER (ORDER BY risk DESC, patient_id) AS rank
                     FROM s)
          SELECT *, {segment_sql('rank', str(n))} AS segment FROM r
        ) TO '{out}' (FORMAT parquet)""")
    secs = time.perf_counter() - t0
    return {"rows": n, "score_seconds": secs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--sample", type=int, default=20_000)
    ap.add_argument("--stream-rows", type=int, default=10_000_000)
    ap.add_argument("--memory-limit", default="2GB")
    ap.add_argument("--workdir", type=Path, default=Path("bench-out"))
    args = ap.parse_args()
    wd = args.workdir / "risk"
    wd.mkdir(parents=True, exist_ok=True)
    model = make_model(str(wd / "model.json"))
    feats = str(wd / "features-1m.parquet")
    write_features(args.rows, feats)

    pbc = measure(pbc_in_memory, model, feats)
    base = measure(baseline_rowwise, model, feats, args.sample)
    pbc_s = pbc["result"]["score_seconds"]
    base_s = base["result"]["score_seconds"] * args.rows / args.sample
    report(f"risk scoring, {args.rows:,} patients in memory", [
        {"step": "pbc score_frame (numpy, rank, segments)", "seconds": round(pbc_s, 3),
         "rows_per_s": round(args.rows / pbc_s), "peak_rss_gb": round(pbc["peak_rss_gb"], 2),
         "target_s": 10, "meets_target": pbc_s < 10},
        {"step": f"baseline pandas row-wise apply ({args.sample:,} rows, extrapolated)",
         "seconds": round(base_s, 1), "rows_per_s": round(args.rows / base_s),
         "peak_rss_gb": round(base["peak_rss_gb"], 2)},
        {"ratio_baseline_over_pbc": round(base_s / pbc_s, 1)},
    ])

    big = str(wd / "features-stream.parquet")
    write_features(args.stream_rows, big)
    st = measure(streaming_sql, model, big, str(wd / "scores-stream.parquet"), args.memory_limit)
    s = st["result"]["score_seconds"]
    rate = args.stream_rows / s
    report(f"streaming scoring (DuckDB SQL, memory_limit {args.memory_limit})", [
        {"rows": args.stream_rows, "seconds": round(s, 2), "rows_per_s": round(rate),
         "peak_rss_gb": round(st["peak_rss_gb"], 2),
         "national_62m_estimate_s": round(NATIONAL_PATIENTS / rate, 1)},
    ])


if __name__ == "__main__":
    main()
