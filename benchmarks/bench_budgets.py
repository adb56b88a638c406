"""Indicative budgets at national scale, against naive baselines in the same run.

1. All 6,553 English practices from NHS England's weighted-population file, all nine
   service lines (fair shares from the NHS England components), pace, floor and ceiling,
   top-slices, opt-outs: ``pbc.budgets.set_budgets`` vs a plain Python loop over practices
   (Decimal money, the same blend and iterative capping). Target < 5 s.
2. A synthetic register of ~62 million patients given as age-sex band counts per practice
   (made with numpy from the real list sizes, not patient data): weighted capitation +
   budgets vs a pandas merge/groupby baseline for the weighted populations. Target < 60 s.
3. The same register as one row per patient in Parquet, as the warehouse holds it: list
   sizes counted by DuckDB (what ``pbc budgets set`` does), weighted capitation and budgets,
   vs pandas reading the register and counting list sizes only.

    python benchmarks/bench_budgets.py [--nhse-file PATH]

Synthetic prior-year spend is seeded; results are checked to the penny against each other.
"""

from __future__ import annotations

import argparse
import sys
import time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import NATIONAL_PATIENTS, NATIONAL_PRACTICES, report
from pbc.budgets import (
    AGE_BANDS,
    SERVICE_LINES,
    FairShareInputs,
    packaged_nhse_file,
    parse_policy,
    read_nhse_file,
    set_budgets,
    weighted_capitation,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NHSE = packaged_nhse_file()
COMPONENT = {
    "elective_inpatient": "general_and_acute", "day_case": "general_and_acute",
    "non_elective": "general_and_acute", "outpatient_first": "general_and_acute",
    "outpatient_follow_up": "general_and_acute", "outpatient_procedure": "general_and_acute",
    "ae": "general_and_acute", "prescribing": "prescribing", "social_care": "community",
}
PER_HEAD = {"elective_inpatient": 180, "day_case": 120, "non_elective": 420,
            "outpatient_first": 60, "outpatient_follow_up": 70, "outpatient_procedure": 30,
            "ae": 45, "prescribing": 150, "social_care": 90}


def policy(method: str) -> object:
    fair = {line: ({"method": "nhse_weighted_population", "component": COMPONENT[line]}
                   if method == "nhse" else {"method": "weighted_capitation"})
            for line in SERVICE_LINES}
    return parse_policy({
        "financial_year": "2025/26", "scope": list(SERVICE_LINES),
        "envelope": {line: {"uplift_percent": 3} for line in SERVICE_LINES},
        "top_slice": [{"name": "reserve", "percent": 1},
                      {"name": "recovery", "pounds": 25_000_000}],
        "fair_share": fair,
        "pace_of_change": {"pace": 0.3, "floor_percent": -2, "ceiling_percent": 5},
        "opt_out": [{"code": "A81005", "service_lines": ["prescribing"]}],
    }, source="bench")


def prior_spend(codes: np.ndarray, pop: np.ndarray, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for line in SERVICE_LINES:
        pence = np.rint(pop * PER_HEAD[line] * 100 * rng.lognormal(0, 0.15, len(pop)))
        frames.append(pd.DataFrame({"practice_code": codes, "service_line": line,
                                    "spend_pence": pence.astype(np.int64)}))
    return pd.concat(frames, ignore_index=True)


def naive_budgets(pol: object, fs: pd.DataFrame, spend: pd.DataFrame) -> dict[tuple, int]:
    """Plain Python: loop over lines and practices, Decimal money, iterative capping."""
    out: dict[tuple, int] = {}
    envs = {}
    for line in pol.scope:  # type: ignore[attr-defined]
        total_prior = int(spend.loc[spend["service_line"] == line, "spend_pence"].sum())
        up = 1 + pol.envelope[line].uplift  # type: ignore[attr-defined]
        envs[line] = int((Decimal(total_prior) * up).quantize(Decimal(1), ROUND_HALF_UP))
    for line in pol.scope:  # type: ignore[attr-defined]
        g = fs[fs["service_line"] == line]
        sp = spend[spend["service_line"] == line]
        prior = {c: int(v) for c, v in zip(sp["practice_code"], sp["spend_pence"], strict=True)}
        up = 1 + pol.envelope[line].uplift  # type: ignore[attr-defined]
        env = envs[line]
        top = 0
        for ts in pol.top_slice:  # type: ignore[attr-defined]
            if ts.percent is not None:
                top += int((Decimal(env) * ts.percent / 100).quantize(Decimal(1), ROUND_HALF_UP))
            else:
                top += round(int(ts.pounds * 100) * env / sum(envs.values()))
        avail = env - top
        wp = dict(zip(g["practice_code"], g["weighted_population"], strict=True))
        wsum = sum(wp.values())
        rows = {}
        for code, w in wp.items():
            hist = int((Decimal(prior.get(code, 0)) * up).quantize(Decimal(1), ROUND_HALF_UP))
            fair = avail * w / wsum
            target = hist + pol.pace * (fair - hist)  # type: ignore[attr-defined]
            rows[code] = (target, hist * 0.98, hist * 1.05)
        # Fix practices beyond a cap, rescale the rest, reclassify everyone; repeat.
        fixed: dict[str, float] = {}
        lam = 1.0
        for _ in range(100):
            free_sum = sum(r[0] for c, r in rows.items() if c not in fixed)
            if free_sum == 0:
                break
            lam = (avail - sum(fixed.values())) / free_sum
            new_fixed: dict[str, float] = {}
            for c, (t, lo, hi) in rows.items():
                v = lam * t if c not in fixed else fixed[c]
                if c in fixed and lo < lam * t < hi:
                    continue  # released: the new scale puts it back inside its caps
                if v <= lo:
                    new_fixed[c] = lo
                elif v >= hi:
                    new_fixed[c] = hi
            if new_fixed == fixed:
                break
            fixed = new_fixed
        for c, (t, _, _) in rows.items():
            out[(c, line)] = round(fixed.get(c, lam * t))
    return out


def bench_real(path: Path) -> list[dict[str, object]]:
    t0 = time.perf_counter()
    nhse = read_nhse_file(path)
    read_s = time.perf_counter() - t0
    pol = policy("nhse")
    spend = prior_spend(nhse["Practice_Code"].to_numpy(), nhse["population"].to_numpy())
    t0 = time.perf_counter()
    res = set_budgets(pol, FairShareInputs(nhse=nhse), spend)  # type: ignore[arg-type]
    pbc_s = time.perf_counter() - t0
    for _, s in res.summary.iterrows():
        got = res.frame.loc[res.frame["service_line"] == s["service_line"], "budget"].sum()
        assert got + s["retained_opt_out"] == s["available"], "budgets do not sum exactly"
    fs = res.frame[["practice_code", "service_line", "weighted_population"]]
    t0 = time.perf_counter()
    naive = naive_budgets(pol, fs, spend)
    naive_s = time.perf_counter() - t0
    calc = res.frame.set_index(["practice_code", "service_line"])["calculated_budget"]
    diff = max(abs(int(calc[k]) - v) for k, v in naive.items())
    return [{
        "case": "6,553 practices x 9 lines (NHS England file)", "practices": len(nhse),
        "rows": len(res.frame), "read_file_s": round(read_s, 3),
        "pbc_set_budgets_s": round(pbc_s, 3), "naive_python_loop_s": round(naive_s, 3),
        "ratio_naive_to_pbc": round(naive_s / pbc_s, 2),
        "max_diff_vs_naive_pence": diff, "target_s": 5, "ok": pbc_s < 5,
    }]


def synthetic_register(codes: np.ndarray, pop: np.ndarray, seed: int = 2) -> pd.DataFrame:
    """Age-sex band counts per practice summing to ~62 million patients (numpy)."""
    rng = np.random.default_rng(seed)
    n_bands = 2 * len(AGE_BANDS)
    ages = np.tile(np.r_[np.full(14, 1.0), np.linspace(1, 0.1, 5)], 2)
    sizes = np.rint(pop / pop.sum() * NATIONAL_PATIENTS).astype(np.int64)
    probs = rng.dirichlet(ages * 40, size=len(pop))
    counts = np.empty((len(pop), n_bands), dtype=np.int64)
    for i in range(len(pop)):  # multinomial per practice: its own age profile
        counts[i] = rng.multinomial(sizes[i], probs[i])
    sexes = np.repeat(["F", "M"], len(AGE_BANDS))
    bands = np.tile(np.asarray(AGE_BANDS), 2)
    return pd.DataFrame({
        "practice_code": np.repeat(codes, n_bands),
        "sex": np.tile(sexes, len(pop)), "age_band": np.tile(bands, len(pop)),
        "patients": counts.reshape(-1),
    })


def cost_weights() -> pd.DataFrame:
    rows = []
    for line in SERVICE_LINES:
        for s in ("F", "M"):
            for i, b in enumerate(AGE_BANDS):
                rows.append((s, b, line, 0.3 + (i / 18) ** 2 * 4 + (0.1 if s == "M" else 0)))
    return pd.DataFrame(rows, columns=["sex", "age_band", "service_line", "cost_weight"])


def bench_register(codes: np.ndarray, pop: np.ndarray) -> list[dict[str, object]]:
    t0 = time.perf_counter()
    reg = synthetic_register(codes, pop)
    make_s = time.perf_counter() - t0
    cw = cost_weights()
    pol = policy("capitation")
    spend = prior_spend(codes, pop)
    t0 = time.perf_counter()
    wc = weighted_capitation(reg, cw, list(SERVICE_LINES))
    res = set_budgets(pol, wc, spend)  # type: ignore[arg-type]
    pbc_s = time.perf_counter() - t0
    assert res.frame.groupby("service_line")["budget"].sum().sum() + \
        res.summary["retained_opt_out"].sum() == res.summary["available"].sum()
    t0 = time.perf_counter()
    m = reg.merge(cw, on=["sex", "age_band"])
    m["wp"] = m["patients"] * m["cost_weight"]
    base = m.groupby(["practice_code", "service_line"])["wp"].sum()
    base_s = time.perf_counter() - t0
    ours = wc.set_index(["practice_code", "service_line"])["weighted_population"]
    err = float((ours - base.reindex(ours.index)).abs().max())
    return [{
        "case": "synthetic register as band counts", "practices": len(pop),
        "patients": int(reg["patients"].sum()), "band_rows": len(reg),
        "make_register_s": round(make_s, 2),
        "pbc_capitation_plus_budgets_s": round(pbc_s, 3),
        "pandas_merge_groupby_weighted_pop_only_s": round(base_s, 3),
        "ratio_pbc_to_baseline": round(pbc_s / base_s, 2),
        "max_weighted_pop_diff": err, "target_s": 60, "ok": pbc_s < 60,
    }]


def bench_patient_register(codes: np.ndarray, pop: np.ndarray,
                           workdir: Path) -> list[dict[str, object]]:
    """A register of one row per patient (~62 million, Parquet), as the warehouse holds it:
    list sizes and the need index (deprivation) computed by the engine
    (``pbc.services.budgets.list_sizes``, :func:`pbc.budgets.register.need_index_expr`,
    DuckDB), then weighted capitation and budgets, against pandas reading the register and
    counting list sizes (no need index)."""
    import duckdb
    import ibis

    from pbc.budgets import list_sizes_from_patients
    from pbc.budgets.register import need_index_expr
    from pbc.services.budgets import list_sizes

    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "register.parquet"
    t0 = time.perf_counter()
    reg = synthetic_register(codes, pop)
    con = duckdb.connect()
    con.register("bands", reg)
    con.execute(f"""COPY (
        SELECT practice_code || '-' || sex || '-' || age_band || '-' || k AS patient_id,
               practice_code, sex,
               CASE WHEN age_band = '90+' THEN 90 + k % 15
                    ELSE CAST(split_part(age_band, '-', 1) AS INTEGER) + k % 5 END AS age,
               CAST(1 + hash(practice_code) % 10 AS INTEGER) AS imd_decile
        FROM bands, unnest(range(patients)) AS t(k)) TO '{path}' (FORMAT parquet)""")
    con.close()
    make_s = time.perf_counter() - t0
    cw = cost_weights()
    pol = policy("capitation")
    spend = prior_spend(codes, pop)
    t0 = time.perf_counter()
    register = ibis.duckdb.connect().read_parquet(str(path))
    sizes = list_sizes(register)
    need = need_index_expr(register).execute()
    wc = weighted_capitation(sizes, cw, list(SERVICE_LINES), need)
    res = set_budgets(pol, wc, spend)  # type: ignore[arg-type]
    pbc_s = time.perf_counter() - t0
    patients = int(sizes.patients.sum())
    assert patients == int(reg.patients.sum())
    assert len(need) == len(sizes.practice_code.unique()), (len(need), len(codes))
    assert need.need_index.between(0.8, 1.2).all(), need.need_index.describe()
    assert res.frame.groupby("service_line")["budget"].sum().sum() + \
        res.summary["retained_opt_out"].sum() == res.summary["available"].sum()
    t0 = time.perf_counter()
    frame = pd.read_parquet(path, columns=["practice_code", "sex", "age"])
    base = list_sizes_from_patients(frame)
    base_s = time.perf_counter() - t0
    assert int(base.patients.sum()) == patients
    path.unlink()
    return [{
        "case": "register of one row per patient (Parquet)", "patients": patients,
        "make_register_s": round(make_s, 1),
        "pbc_list_sizes_and_need_index_in_engine_plus_capitation_plus_budgets_s":
            round(pbc_s, 2),
        "pandas_read_and_count_only_s": round(base_s, 2),
        "ratio_pbc_to_baseline": round(pbc_s / base_s, 2), "target_s": 60, "ok": pbc_s < 60,
    }]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nhse-file", type=Path, default=DEFAULT_NHSE)
    ap.add_argument("--workdir", type=Path, default=Path("bench-out"))
    args = ap.parse_args()
    if args.nhse_file.exists():
        rows = bench_real(args.nhse_file)
        report("budgets: all English practices, pbc vs a plain Python loop", rows)
        nhse = read_nhse_file(args.nhse_file)
        codes = nhse["Practice_Code"].to_numpy(dtype=object)
        pop = nhse["population"].to_numpy()
    else:
        print(f"(no NHS England file at {args.nhse_file}: skipping the real-file benchmark)")
        pop = np.random.default_rng(3).lognormal(9, 0.6, NATIONAL_PRACTICES)
        codes = np.array([f"P{i:05d}" for i in range(len(pop))], dtype=object)
        codes[5] = "A81005"  # the policy's opted-out practice
    report("budgets: 62 million patient register (band counts), pbc vs pandas groupby",
           bench_register(codes, pop))
    report("budgets: 62 million patient register (one row per patient), pbc vs pandas",
           bench_patient_register(codes, pop, args.workdir / "budgets"))


if __name__ == "__main__":
    main()
