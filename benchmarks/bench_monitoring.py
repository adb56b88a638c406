"""The monthly position of all 6,553 English practices, against hand-written DuckDB SQL.

The warehouse: every practice of NHS England's 2024/25 weighted-population file (shipped
with pbc) with a tenth of its list (``list_scale=0.1``, a 10%-scale economy with the
national practice count), two financial years (2024-25, 2025-26), loaded and priced, and
indicative budgets for 2025-26 set from 2024-25 spend. pbc sets the budgets of one
commissioner per warehouse, so the benchmark's copy of the NHS England file puts every
practice under one commissioner (``QBM``, a national commissioner); nothing else changes.

In the same run, for month 6 (September 2025):

* **pbc**: :func:`pbc.services.monitoring.monthly_position` at practice level with the
  default forecast (``seasonal_run_rate``): budget version, phasing, spend of this year and
  last, the core's position and forecast per practice and service line and in total;
* **hand-written SQL**: one DuckDB query giving the same figures (annual budget, budget to
  date, spend to date, variance, the seasonal run-rate outturn) per practice and service
  line and in total, read straight from ``priced_activity`` and ``budget_phasing``.

Every row is then compared: the same (practice, service line) keys, every money figure to
the penny. Target (issue 14): pbc within 1.3x of the SQL.

    python benchmarks/bench_monitoring.py [--list-scale 0.1] [--workdir bench-out]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import measure, one_commissioner_nhse, report

ROOT = Path(__file__).resolve().parents[1]
YEAR = "2025-26"
PERIOD = "2025-09"
MONTH = 6
COMMISSIONER = "QBM"
REPEATS = 3


def prepare(base: str, list_scale: float) -> dict[str, int]:
    """Synthesise, load, price and set 2025-26 budgets (kept in ``base`` and reused)."""

    from pbc.services.budgets import set_indicative_budgets
    from pbc.services.pricing import run_pricing
    from pbc.services.principal import Principal
    from pbc.synth import SynthConfig, generate
    from pbc.warehouse import Warehouse
    from pbc.warehouse.load import load

    root = Path(base)
    root.mkdir(parents=True, exist_ok=True)
    one = one_commissioner_nhse(root, COMMISSIONER)
    summary = generate(SynthConfig(nhse_file=one, list_scale=list_scale, seed=5, years=2,
                                   start_year=2024), root / "in")
    wh = Warehouse(root / "wh")
    rows = load(root / "in", wh).rows_in
    run_pricing(wh)
    policy_text = (ROOT / "src" / "pbc" / "reference" / "budgets" / "demo_policy.toml"
                   ).read_text(encoding="utf-8")
    policy_text = (policy_text.replace('financial_year = "2026-27"', f'financial_year = "{YEAR}"')
                   .replace('commissioner_code = "Q99"', f'commissioner_code = "{COMMISSIONER}"'))
    policy_text = policy_text[:policy_text.index("[[opt_out]]")]
    policy = root / "policy.toml"
    policy.write_text(policy_text, encoding="utf-8")
    set_indicative_budgets(wh, policy, Principal("bench", "commissioner", COMMISSIONER),
                           statements=root / "statements")
    return {"practices": summary.practices, "patients": summary.patients, "rows": rows}


def run_pbc(base: str) -> dict[str, object]:
    from pbc.services.monitoring import monthly_position
    from pbc.services.principal import Principal
    from pbc.warehouse import Warehouse

    wh = Warehouse(Path(base) / "wh")
    who = Principal("bench", "commissioner", COMMISSIONER)
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        pos = monthly_position(wh, who, PERIOD, level="practice")
        times.append(time.perf_counter() - t0)
    frame = pos.frame
    out = frame[["code", "service_line", "annual_budget", "budget_to_date", "spend_to_date",
                 "variance", "forecast_outturn"]]
    import pandas as pd

    rows = [tuple(v if isinstance(v, str) else None if pd.isna(v) else int(v) for v in r)
            for r in out.itertuples(index=False)]
    return {"seconds": min(times), "rows": rows,
            "practices": int(frame.code.nunique()), "version": pos.budget_version}


def hand_sql_text(version: int) -> str:
    """The position by hand: budgets to date, spend to date (tariff value before the
    marginal rate), variance and the seasonal run rate, per practice, line and in total."""
    return f"""
    WITH spend AS (
        SELECT practice_code AS code, service_line, month, financial_year,
               CAST(sum(price - marginal_rate_adjustment) * 100 AS BIGINT) AS pence
        FROM priced_activity
        WHERE financial_year IN ('2024-25', '{YEAR}') AND price IS NOT NULL AND attributed
          AND practice_code IS NOT NULL AND commissioner_code = '{COMMISSIONER}'
        GROUP BY ALL),
    budget AS (
        SELECT practice_code AS code, service_line, month,
               CAST(sum(budget) * 100 AS BIGINT) AS pence
        FROM budget_phasing
        WHERE financial_year = '{YEAR}' AND version = {version} AND kind = 'practice'
        GROUP BY ALL),
    s AS (
        SELECT code, coalesce(service_line, 'all') AS service_line,
               sum(pence) FILTER (WHERE financial_year = '{YEAR}' AND month <= {MONTH}) AS ytd,
               sum(pence) FILTER (WHERE financial_year = '2024-25' AND month <= {MONTH}) AS p_ytd,
               sum(pence) FILTER (WHERE financial_year = '2024-25') AS p_year,
               count(*) FILTER (WHERE financial_year = '{YEAR}') AS this_year
        FROM spend GROUP BY GROUPING SETS ((code, service_line), (code))),
    b AS (
        SELECT code, coalesce(service_line, 'all') AS service_line,
               sum(pence) AS annual, sum(pence) FILTER (WHERE month <= {MONTH}) AS to_date
        FROM budget GROUP BY GROUPING SETS ((code, service_line), (code))),
    keys AS (SELECT code, service_line FROM s WHERE this_year > 0
             UNION SELECT code, service_line FROM b)
    SELECT k.code, k.service_line,
           coalesce(b.annual, 0) AS annual_budget, coalesce(b.to_date, 0) AS budget_to_date,
           coalesce(s.ytd, 0) AS spend_to_date,
           coalesce(s.ytd, 0) - coalesce(b.to_date, 0) AS variance,
           CASE WHEN s.p_ytd > 0 AND s.p_year > 0 THEN
             CAST(round(CAST(coalesce(s.ytd, 0) AS DOUBLE) * s.p_year / s.p_ytd) AS BIGINT)
           END AS forecast_outturn
    FROM keys k LEFT JOIN s USING (code, service_line) LEFT JOIN b USING (code, service_line)
    ORDER BY k.code, k.service_line = 'all', k.service_line"""


def run_sql(base: str, version: int) -> dict[str, object]:
    from pbc.warehouse import Warehouse

    wh = Warehouse(Path(base) / "wh")
    sql = hand_sql_text(version)
    times = []
    rows: list[tuple[object, ...]] = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        con = wh.connect()
        rows = con.execute(sql).fetchall()
        con.close()
        times.append(time.perf_counter() - t0)
    return {"seconds": min(times), "rows": [tuple(r) for r in rows]}


def compare(ours: list[tuple[object, ...]], theirs: list[tuple[object, ...]]) -> dict[str, int]:
    a = {(r[0], r[1]): r[2:] for r in ours}
    b = {(r[0], r[1]): r[2:] for r in theirs}
    only_pbc = len(set(a) - set(b))
    only_sql = len(set(b) - set(a))
    differ = 0
    forecast_pence = 0
    for k in set(a) & set(b):
        x, y = a[k], b[k]
        if x[:4] != y[:4]:
            differ += 1
        if (x[4] is None) != (y[4] is None):
            differ += 1
        elif x[4] is not None and y[4] is not None:
            forecast_pence = max(forecast_pence, abs(int(x[4]) - int(y[4])))  # type: ignore
    return {"keys_only_in_pbc": only_pbc, "keys_only_in_sql": only_sql,
            "rows_differing": differ, "max_forecast_diff_pence": forecast_pence}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--list-scale", type=float, default=0.1)
    ap.add_argument("--workdir", type=Path, default=Path("bench-out"))
    args = ap.parse_args()
    base = args.workdir / f"monitoring-{args.list_scale:g}"
    if not (base / "wh" / "current").exists():
        prep = measure(prepare, str(base), args.list_scale)
        print(f"prepared {base}: {prep['result']} in {prep['seconds']:.0f} s", flush=True)
    ours = measure(run_pbc, str(base))
    version = int(ours["result"]["version"])
    theirs = measure(run_sql, str(base), version)
    check = compare(ours["result"]["rows"], theirs["result"]["rows"])
    pbc_s = float(ours["result"]["seconds"])
    sql_s = float(theirs["result"]["seconds"])
    report(f"monthly position, every practice, month {MONTH} of {YEAR} "
           f"({args.list_scale:g} of each list)", [{
               "practices": ours["result"]["practices"],
               "rows": len(ours["result"]["rows"]),
               "pbc_monthly_position_s": round(pbc_s, 3),
               "hand_written_duckdb_sql_s": round(sql_s, 3),
               "ratio_pbc_to_sql": round(pbc_s / sql_s, 2), "target_ratio": 1.3,
               "ok": pbc_s / sql_s <= 1.3, "pbc_peak_rss_gb": round(ours["peak_rss_gb"], 2),
               **check}])


if __name__ == "__main__":
    main()
