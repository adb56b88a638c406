"""The synthetic health economy generator: every input table of the data contract.

Everything row-level is generated inside DuckDB SQL from hash-based pseudo-random numbers
(:mod:`pbc.synth.sql`), streaming to Parquet, so an economy of any size (up to the 62
million patients of England) is written in bounded memory and the same seed always gives
byte-identical files. Calibration targets and their sources: ``reference.py`` and
``docs/calibration.md``.

The model, in brief: each practice has an age profile (young urban to old coastal) and a
deprivation level; each patient has an age, sex, deprivation decile and long-term
conditions whose prevalence rises with age and deprivation; a latent risk (age band rate x
condition relative risks x deprivation x a lognormal frailty) drives emergency admissions,
and milder functions of it drive elective, outpatient, A&E, prescribing and social care use.
Activity counts per patient are binomial approximations to Poisson counts.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from pbc.contracts import TABLES
from pbc.synth import reference as ref
from pbc.synth.settings import settings_toml
from pbc.synth.sql import by_age, lookup, normal, quantiles, sql_str, u, u_indexed

Progress = Callable[[str, int, int], None]
# docs/calibration.md §1: list size median 8,210, P10 3,460, P90 16,435
LIST_MEDIAN, LIST_SIGMA = 8210.0, 0.62
MOVER_SHARE = 0.02  # patients who change practice in the last year
BLANK_PRACTICE, UNKNOWN_PRACTICE = 0.003, 0.002
UNKNOWN_PRACTICE_CODE = "V81999"
UNPRICEABLE_HRG = "UZ01Z"  # "ungroupable": deliberately absent from the tariff
LETTERS = "ABCDEFGHJKLMNPY"
#: spread of the unrecorded frailty in the latent risk: what a model of the recorded
#: tables cannot see (so the latent risk is an upper bound no honest model reaches)
FRAILTY_SIGMA = 0.5


@dataclass
class SynthConfig:
    """What to generate. The defaults are the demo economy: 50 practices in 4 groups across
    2 local authorities (≈470,000 patients), one financial year (2025/26), 0.1% faults.

    ``nhse_file`` (optionally with ``icb``, an ICS22 code) takes the real practices,
    hierarchy, list sizes and need from NHS England's weighted-population file instead of
    ``practices``/``groups``/``local_authorities``. ``list_scale`` shrinks every list (at
    least 50 patients a practice): all of England's practices with a tenth of the patients
    is ``nhse_file=..., list_scale=0.1``.

    The file layout and the way the work is done are separate. ``part_patients`` fixes the
    layout: an economy with more patients than that is written as folders of Parquet parts
    of whole practices, about ``part_patients`` patients each. ``chunk_patients`` bounds
    the patients generated at once (memory), ``workers`` the parts generated in parallel
    (processes; ``None``: one per core), ``threads`` DuckDB's threads in each and
    ``memory_limit`` DuckDB's memory, shared between the workers. None of these four
    changes a byte of the output: the same seed and layout give the same files.
    """

    practices: int = 50
    groups: int = 4
    local_authorities: int = 2
    seed: int = 1
    years: int = 1
    start_year: int = 2025
    fault_rate: float = 0.001
    nhse_file: Path | None = None
    icb: str | None = None
    format: str = "parquet"
    memory_limit: str = "4GB"
    threads: int | None = None
    chunk_patients: int = 2_000_000
    part_patients: int = 2_000_000
    workers: int | None = None
    list_scale: float = 1.0
    #: ``none``: one file per table; ``monthly``: delivery folders (pbc.synth.deliveries)
    deliveries: str = "none"

    def __post_init__(self) -> None:
        if self.deliveries not in ("none", "monthly"):
            raise ValueError(f"deliveries must be none or monthly, not {self.deliveries!r}")
        if self.format not in ("parquet", "csv"):
            raise ValueError(f"format must be parquet or csv, not {self.format!r}")
        if not 0 <= self.fault_rate < 0.5:
            raise ValueError("fault rate must be between 0 and 0.5")
        if self.years < 1:
            raise ValueError("years must be at least 1")
        if self.nhse_file is None and self.practices < 1:
            raise ValueError("practices must be at least 1")
        if self.chunk_patients < 1:
            raise ValueError("chunk_patients must be at least 1")
        if self.part_patients < 1:
            raise ValueError("part_patients must be at least 1")
        if self.workers is not None and self.workers < 1:
            raise ValueError("workers must be at least 1")
        if not 0 < self.list_scale <= 1:
            raise ValueError("list_scale must be above 0 and at most 1")
        if self.nhse_file is not None:
            self.nhse_file = Path(self.nhse_file)


@dataclass
class SynthSummary:
    """What was written: rows per table, practices, patients, seconds taken, deliberate faults
    by kind (``bad_date``, ``duplicate_id``, ... as written, exactly) and the unattributed
    (blank or unknown practice) activity rows, which are valid rows, not faults."""

    rows: dict[str, int]
    practices: int
    patients: int
    seconds: float
    faults: dict[str, int] = field(default_factory=dict)
    unattributed: dict[str, int] = field(default_factory=dict)
    #: delivery folders (``--deliveries monthly``), in order, and the rows revised in them
    deliveries: list[str] = field(default_factory=list)
    revisions: int = 0


# ------------------------------------------------------------------ organisations
def _scaled(sizes: np.ndarray, scale: float) -> np.ndarray:
    """List sizes times ``scale`` (1: unchanged), at least 50 patients a practice."""
    if scale == 1:
        return sizes
    return np.maximum(np.round(sizes * scale), 50).astype(int)


def _organisations(cfg: SynthConfig) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(cfg.seed)
    if cfg.nhse_file is not None:
        return _organisations_from_nhse(cfg, rng)
    n = cfg.practices
    n_la = max(1, min(cfg.local_authorities, n))
    n_groups = max(n_la, min(cfg.groups, n))
    las = pd.DataFrame({
        "local_authority_code": [f"E06{9000 + i:06d}" for i in range(n_la)],
        "local_authority_name": [f"Synthshire {i + 1}" for i in range(n_la)],
    })
    commissioner = "Q99"
    groups = pd.DataFrame({
        "group_code": [f"G{i + 1:02d}" for i in range(n_groups)],
        "group_name": [f"Locality {i + 1}" for i in range(n_groups)],
        "group_type": ["locality" if i % 2 == 0 else "pcn" for i in range(n_groups)],
        "commissioner_code": commissioner,
        "_la": [i % n_la for i in range(n_groups)],
    })
    group_idx = np.sort(np.arange(n) % n_groups)
    size = np.clip(np.round(LIST_MEDIAN * np.exp(LIST_SIGMA * rng.standard_normal(n))),
                   800, 60000).astype(int)
    practices = pd.DataFrame({
        "practice_code": [f"{LETTERS[i // 18999 % len(LETTERS)]}{81000 + i % 18999:05d}"
                          for i in range(n)],
        "practice_name": [f"Practice {i + 1} Medical Centre" for i in range(n)],
        "group_code": groups.group_code.to_numpy()[group_idx],
        "commissioner_code": commissioner,
        "_la": groups._la.to_numpy()[group_idx],
        "list_size": _scaled(size, cfg.list_scale),
        "age_skew": rng.normal(0, 1, n),
        "dep_centre": rng.uniform(1.5, 9.5, n),
    })
    commissioners = pd.DataFrame({"commissioner_code": [commissioner],
                                  "commissioner_name": ["NHS Synthetic ICB"]})
    return _finish_organisations(cfg, rng, commissioners, groups, las, practices)


def _organisations_from_nhse(cfg: SynthConfig, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    path = Path(cfg.nhse_file)  # type: ignore[arg-type]
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such NHS England weighted-population file")
    raw = pd.read_csv(path, dtype=str)
    need = ["Practice_Code", "GP_Practice_Name", "ICS22", "ICS22name", "LAD21", "LTLA21",
            "pop 2022/23", "G&A WP", "Final WP"]
    missing = [c for c in need if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} "
                         "(expected NHS England's practice weighted-population layout)")
    if cfg.icb:
        raw = raw.loc[raw["ICS22"].eq(cfg.icb)]
        if raw.empty:
            raise ValueError(f"{path}: no practices in ICB {cfg.icb!r} (column ICS22)")
    raw = raw.sort_values("Practice_Code").reset_index(drop=True)
    pop = pd.to_numeric(raw["pop 2022/23"]).to_numpy()
    ok = pop > 0
    raw, pop = raw[ok].reset_index(drop=True), pop[ok]
    need_index = pd.to_numeric(raw["Final WP"]).to_numpy() / pop
    older = pd.to_numeric(raw["G&A WP"]).to_numpy() / pop
    loc = raw["LOC22"].fillna("") if "LOC22" in raw.columns else pd.Series([""] * len(raw))
    group_key = np.where(loc.str.len() > 0, loc, raw.LAD21)
    group_name = np.where(loc.str.len() > 0,
                          raw.get("LOC22name", pd.Series(loc)).fillna(""),
                          raw.LTLA21.fillna("") + " locality")
    groups = (pd.DataFrame({"group_code": group_key, "group_name": group_name,
                            "commissioner_code": raw.ICS22, "la": raw.LAD21})
              .drop_duplicates("group_code").reset_index(drop=True))
    groups["group_type"] = "locality"
    las = (pd.DataFrame({"local_authority_code": raw.LAD21,
                         "local_authority_name": raw.LTLA21})
           .drop_duplicates("local_authority_code").sort_values("local_authority_code")
           .reset_index(drop=True))
    la_index = {c: i for i, c in enumerate(las.local_authority_code)}
    groups["_la"] = groups.la.map(la_index)
    rank = pd.Series(need_index).rank(pct=True).to_numpy()
    practices = pd.DataFrame({
        "practice_code": raw.Practice_Code.to_numpy(),
        "practice_name": raw.GP_Practice_Name.fillna("").to_numpy(),
        "group_code": group_key,
        "commissioner_code": raw.ICS22.to_numpy(),
        "_la": raw.LAD21.map(la_index).to_numpy(),
        "list_size": _scaled(np.round(pop).astype(int), cfg.list_scale),
        "age_skew": (older - older.mean()) / (older.std() or 1.0),
        "dep_centre": 10.0 - 8.5 * rank,
    })
    commissioners = (pd.DataFrame({"commissioner_code": raw.ICS22,
                                   "commissioner_name": raw.ICS22name})
                     .drop_duplicates("commissioner_code").reset_index(drop=True))
    return _finish_organisations(cfg, rng, commissioners,
                                 groups[["group_code", "group_name", "group_type",
                                         "commissioner_code", "_la"]], las, practices)


def _finish_organisations(cfg: SynthConfig, rng: np.random.Generator,
                          commissioners: pd.DataFrame, groups: pd.DataFrame,
                          las: pd.DataFrame, practices: pd.DataFrame) -> dict[str, pd.DataFrame]:
    n_la = len(las)
    hoods = pd.DataFrame({
        "neighbourhood_code": [f"N{i + 1:03d}{k + 1}" for i in range(n_la) for k in range(4)],
        "local_authority_code": [c for c in las.local_authority_code for _ in range(4)],
        "neighbourhood_name": [f"{n} {k + 1}" for n in las.local_authority_name
                               for k in range(4)],
    })
    n_acute = max(3, min(40, len(practices) // 40 + 3))
    providers = pd.DataFrame({
        "provider_code": [f"R{i // 26 % 10}{chr(65 + i % 26)}" for i in range(n_acute)]
        + ["RYC", "RYM"],
        "provider_name": [f"Synthetic Hospitals {i + 1} NHS Trust" for i in range(n_acute)]
        + ["Synthetic Community Health", "Synthetic Mental Health"],
        "provider_type": ["acute"] * n_acute + ["community", "mental_health"],
        "mff_payment_index": np.round(
            np.concatenate([rng.uniform(1.0, 1.25, n_acute), [1.02, 1.03]]), 4),
    })
    first = rng.integers(0, 4, len(practices))
    practices = practices.assign(
        local_authority_code=las.local_authority_code.to_numpy()[practices._la.to_numpy()],
        neighbourhood_base=practices._la.to_numpy() * 4,
        neighbourhood_code=[hoods.neighbourhood_code[la * 4 + f]
                            for la, f in zip(practices._la, first, strict=True)],
        open_date=[f"{1948 + int(x)}-04-01" for x in rng.integers(0, 70, len(practices))],
        close_date=None,
        home_provider=np.arange(len(practices)) * n_acute // max(len(practices), 1),
        pid_offset=np.concatenate([[0], np.cumsum(practices.list_size.to_numpy())[:-1]]),
        pidx=np.arange(len(practices)),
    )
    return {"commissioners": commissioners, "groups": groups, "local_authorities": las,
            "neighbourhoods": hoods, "practices": practices, "providers": providers}


AGE_Q = 1000  # entries in each practice's age quantile table


def _age_tables(practices: pd.DataFrame, rng: np.random.Generator) -> pa.Table:
    """Each practice's own age pyramid, as a 1,000-entry quantile table.

    The England shape (``ref.age_weights``) is tilted per practice: ``age_skew`` moves weight
    from young adults to the old (young urban lists to old coastal ones) and a ``family``
    factor moves weight to children. Tuned so that across practices the share aged 0-4 has
    mean ≈5.9% (5th-95th centile ≈3.7-8.8%) and 75+ mean ≈7.7% (≈2.6-12.9%), with 65+ ≈18%
    and 0-14 ≈17% overall (docs/calibration.md §1: BMJ Open practice characteristics; Census 2021).
    """
    a = np.arange(101)
    base = (np.array(ref.age_weights()) * np.where(a < 5, 1.1, 1.0)
            * np.where(a >= 75, 0.9, 1.0) * np.where(a < 15, 1.05, 1.0))
    skew = practices.age_skew.to_numpy(dtype=float)
    family = rng.normal(0.0, 0.18, len(practices))
    g = np.where(a >= 18, np.clip((a - 45) / 30, -0.9, 1.0), -0.5)
    w = base[None, :] * np.exp(0.4 * skew[:, None] * g[None, :]) \
        * np.exp(family[:, None] * (a < 15)[None, :])
    cdf = np.cumsum(w, axis=1)
    cdf /= cdf[:, -1:]
    probs = (np.arange(AGE_Q) + 0.5) / AGE_Q
    ages = np.stack([np.searchsorted(c, probs) for c in cdf]).astype(np.int16)
    return pa.table({
        "pidx": pa.array(practices.pidx.to_numpy(dtype=np.int64)),
        "ages": pa.array(list(ages), type=pa.list_(pa.int16())),
    })


def _practice_groups(cfg: SynthConfig, orgs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One practice moves group half way through the last year (a real, awkward case)."""
    p, g = orgs["practices"], orgs["groups"]
    year = cfg.start_year + cfg.years - 1
    if len(g) < 2 or len(p) < 2:
        return pd.DataFrame(columns=["practice_code", "group_code", "valid_from", "valid_to"])
    mover = p.iloc[len(p) // 2]
    others = [c for c in g.group_code if c != mover.group_code]
    new = others[0]
    return pd.DataFrame({
        "practice_code": [mover.practice_code, mover.practice_code],
        "group_code": [mover.group_code, new],
        "valid_from": [f"{cfg.start_year}-04-01", f"{year}-10-01"],
        "valid_to": [f"{year}-09-30", None],
    })


# ------------------------------------------------------------------ patients
def _condition_sql(age: str, imd: str, key: str, salt: int) -> list[str]:
    """A flag per long-term condition: prevalence by age x deprivation (most deprived
    decile about 1.5 times the least; docs/calibration.md §6, Cassell et al. 2018)."""
    cols = []
    for i, (code, bands, _rr) in enumerate(ref.CONDITIONS):
        prev = by_age(age, bands, 0.01)
        dep = f"(1 + 0.055 * (5.5 - {imd}))"
        cols.append(f"{u(key, salt + i)} < {prev} * {dep} AS c_{code}")
    return cols


def _patients_sql(cfg: SynthConfig, lo: int, hi: int) -> str:
    """Patients of practices ``lo`` <= pidx < ``hi``, in patient-number order.

    Age comes from the practice's own pyramid (:func:`_age_tables`); deprivation is centred on
    the practice's level (so correlated within practice); conditions by age x deprivation; the
    raw (uncalibrated) risk multiplies condition relative risks, deprivation and a lognormal
    frailty (sigma :data:`FRAILTY_SIGMA`) that no table records, so no model can see it."""
    s = cfg.seed * 1000
    key = "pid"
    z_imd = normal(key, s + 2)
    conds = _condition_sql("age", "imd_decile", key, s + 10)
    rr = " * ".join(f"(CASE WHEN c_{c} THEN {r} ELSE 1 END)" for c, _b, r in ref.CONDITIONS)
    ncond = " + ".join(f"CAST(c_{c} AS INTEGER)" for c, _b, _r in ref.CONDITIONS)
    frailty_sigma = FRAILTY_SIGMA
    return f"""
    WITH base AS (
      SELECT pr.*, aq.ages, CAST(pr.pid_offset + k AS BIGINT) AS pid
      FROM (SELECT p.*, nx.practice_code AS prev_practice_code
            FROM practices p JOIN practices nx
              ON nx.pidx = (p.pidx + 1) % (SELECT count(*) FROM practices)
            WHERE p.pidx >= {lo} AND p.pidx < {hi}) pr
      JOIN age_q aq ON aq.pidx = pr.pidx, unnest(range(pr.list_size)) AS t(k)
    ), people AS (
      SELECT pid, practice_code, pidx, group_code, commissioner_code, local_authority_code,
             neighbourhood_base, home_provider, prev_practice_code,
             'P' || lpad(CAST(pid + 1 AS VARCHAR), 10, '0') AS patient_id,
             CASE WHEN {u(key, s)} < 0.507 THEN 'F' ELSE 'M' END AS sex,
             CAST(list_extract(ages, CAST(floor({u(key, s + 1)} * {AGE_Q}) AS INTEGER) + 1)
               AS INTEGER) AS age,
             CAST(least(10, greatest(1, round(dep_centre + 1.6 * {z_imd}))) AS INTEGER)
               AS imd_decile,
             CAST(floor({u(key, s + 3)} * 4) AS INTEGER) AS hood,
             {normal(key, s + 4)} AS z_frail,
             {u(key, s + 5)} AS u_move,
             CAST(floor({u(key, s + 6)} * 365) AS INTEGER) AS move_day
      FROM base
    ), flagged AS (
      SELECT *, {", ".join(conds)} FROM people
    )
    SELECT *, {_onset_risk_sql(cfg)}, {_turnover_sql(cfg)}
    FROM (SELECT *, ({ncond}) AS n_conditions,
           {rr} * (1 + 0.05 * (5.5 - imd_decile))
             * exp({frailty_sigma} * z_frail - {frailty_sigma ** 2 / 2}) AS raw_risk
          FROM flagged)
    ORDER BY pid
    """


def _band(age: str) -> str:
    return (f"(CASE WHEN {age} < 5 THEN 0 WHEN {age} < 15 THEN 1 WHEN {age} < 45 THEN 2 "
            f"WHEN {age} < 65 THEN 3 WHEN {age} < 75 THEN 4 WHEN {age} < 85 THEN 5 ELSE 6 END)"
            )


RATES = {"em": ref.EMERGENCY_RATE, "el": ref.ELECTIVE_RATE, "op": ref.OP_FIRST_RATE,
         "ae": ref.AE_RATE}
POWER = {"em": 1.0, "el": 0.5, "op": 0.6, "ae": 0.8}


#: fixed-point scale of the exact sums behind every population mean the model uses: a sum
#: of doubles depends on the order it is taken in (threads, chunks), a sum of integers does
#: not, so the means (and every draw compared with them) are the same whatever the chunking
EXACT = 10**12


def exact_mean_sql(expr: str) -> str:
    """A mean of ``expr`` that is the same whatever the order of the rows: the sum is taken
    in integers (``expr`` rounded to 1e-12), then divided."""
    return (f"(CAST(sum(CAST(({expr}) * {EXACT} AS HUGEINT)) AS DOUBLE) / {EXACT} "
            "/ count(*))")


def _exact_means(con: duckdb.DuckDBPyConnection, exprs: list[str], source: str,
                 group: str | None = None) -> list[tuple[Any, ...]]:
    """``(group, mean...)`` rows (or one row without ``group``): each mean is an exact
    integer sum divided in Python, so it does not depend on the order of the rows."""
    sums = ", ".join(f"sum(CAST(({e}) * {EXACT} AS HUGEINT))" for e in exprs)
    if group is None:
        rows = con.execute(f"SELECT NULL, count(*), {sums} FROM {source}").fetchall()
    else:
        rows = con.execute(f"SELECT {group} AS g, count(*), {sums} FROM {source} "
                           "GROUP BY 1 ORDER BY 1").fetchall()
    return [(r[0], *(None if v is None or not r[1] else int(v) / EXACT / int(r[1])
                     for v in r[2:])) for r in rows]


def _calibrate(con: duckdb.DuckDBPyConnection, cfg: SynthConfig) -> list[str]:
    """Scale each person's risk so each age band's mean matches its target rate, and add the
    population dynamics (:func:`_dynamics_sql`). Returns the SQL that defines the views
    ``pat_dyn`` and ``pat`` over a ``pat_raw`` (all patients, or one part of them).

    ``lam_em`` is the expected number of emergency admissions a year (the latent risk) at
    the recorded age with every condition; ``lam_{kind}_{y}`` is the same in year ``y`` of
    the data (0 = first), at the patient's age that year and with only the conditions
    diagnosed by the middle of that year (people age, and a new diagnosis raises the risk
    from its onset). Elective, outpatient and A&E rates follow milder powers of the relative
    risk. The band means are one streaming aggregate, exact (:func:`_exact_means`); ``pat``
    is a view over ``pat_raw`` (which is stored in patient order), so nothing
    national-sized is sorted or copied again."""
    rows = _exact_means(con, [f"pow(raw_risk, {POWER[k]})" for k in RATES], "pat_raw",
                        _band("age"))
    lams = []
    for i, k in enumerate(RATES):
        factor = {int(r[0]): float(r[i + 1] or 0.0) for r in rows}

        def scaled(age: str, k: str = k, factor: dict[int, float] = factor) -> str:
            whens = " ".join(
                f"WHEN {b} THEN {rate * 0.001 / factor[b]!r}"
                for b, (_lo, _hi, rate) in enumerate(RATES[k]) if factor.get(b))
            return f"(CASE {_band(age)} {whens} ELSE 0.0 END)"

        lams.append(f"{scaled('age')} * pow(raw_risk, {POWER[k]}) AS lam_{k}")
        for y in range(cfg.years):
            back = cfg.years - 1 - y
            lams.append(f"{scaled(f'(age - {back})')} * pow(raw_risk_{y}, {POWER[k]}) "
                        f"AS lam_{k}_{y}")
    em_factor = {int(r[0]): float(r[1] or 0.0) for r in rows}
    rel = " ".join(f"WHEN {b} THEN {1.0 / em_factor[b]!r}" for b in em_factor if em_factor[b])
    return [f"""CREATE OR REPLACE VIEW pat_dyn AS
        SELECT *, raw_risk * (CASE {_band('age')} {rel} ELSE 1.0 END) AS rel_risk
        FROM pat_raw""",
            f"CREATE OR REPLACE VIEW pat AS SELECT *, {', '.join(lams)} FROM "
            f"({_dynamics_sql(cfg)})"]


#: deaths a year per 1,000 by age band (the bands of :func:`_band`), rounded from ONS,
#: Deaths registered in England and Wales: 2019 (age-specific mortality rates); with the
#: registered age mix they give about 9 deaths per 1,000 a year (ONS 2019: 530,841 deaths
#: in England and Wales, ≈0.9% of the population).
DEATH_RATE = (1.0, 0.1, 0.6, 3.5, 15.0, 45.0, 150.0)
#: patients leaving a practice list (moving away) and joining it, a year per registered
#: patient. The Carr-Hill formula (Review of the GMS global sum formula, 2007) weights list
#: turnover because new registrations are common; 6% a year each way keeps lists steady.
LEAVE_RATE = JOIN_RATE = 0.06
#: a long-term condition's years since onset are uniform on 0 .. min(age, 20), so each year
#: about 1/10 of a register is newly diagnosed at mean duration 10 years (steady state:
#: prevalence = incidence x mean duration; Rothman, Modern Epidemiology, 3rd ed., ch. 3).
ONSET_YEARS = 20
#: share of condition records with no recorded date (a real data-quality fault: a code
#: carried over without its date)
UNDATED_CONDITION = 0.03


def _days(cfg: SynthConfig) -> int:
    return (dt.date(cfg.start_year + cfg.years, 4, 1) - dt.date(cfg.start_year, 4, 1)).days


def _onset_sql(cfg: SynthConfig, i: int) -> str:
    """Onset of condition ``i`` in days from the first day of the data (negative: before)."""
    s = cfg.seed * 100_000 + 60_000
    return (f"({_days(cfg)} - CAST(floor({u('pid', s + i)} * least(age * 365 + 1, "
            f"{ONSET_YEARS * 365})) AS INTEGER))")


def _onset_risk_sql(cfg: SynthConfig) -> str:
    """``raw_risk_{y}``: the raw risk with only the conditions diagnosed by the middle of
    data year ``y`` (a later diagnosis does not raise an earlier year's risk)."""
    cols = []
    for y in range(cfg.years):
        mid = (dt.date(cfg.start_year + y, 10, 1) - dt.date(cfg.start_year, 4, 1)).days
        later = " * ".join(
            f"(CASE WHEN c_{c} AND {_onset_sql(cfg, i)} > {mid} THEN {1.0 / r!r} ELSE 1.0 END)"
            for i, (c, _b, r) in enumerate(ref.CONDITIONS))
        cols.append(f"raw_risk * {later} AS raw_risk_{y}")
    return ", ".join(cols)


def _patc_columns(cfg: SynthConfig, lams: tuple[str, ...] = (), conditions: bool = False
                  ) -> str:
    """The patient columns a row-level table reads (``patc``): only those, because every
    column of ``patc`` is computed and carried through the lateral joins that draw events.
    ``lams``: the rate kinds used (``em``, ``el``, ``op``, ``ae``: one column a year each;
    ``em_all``: the all-years ``lam_em``); ``conditions``: the condition flags."""
    cols = ["pid", "practice_code", "prev_practice_code", "pidx", "commissioner_code",
            "local_authority_code",
            "neighbourhood_base", "home_provider", "patient_id", "sex", "age", "imd_decile",
            "hood", "u_move", "move_day", "n_conditions",
            *((f"c_{c}" for c, _b, _r in ref.CONDITIONS) if conditions else ()),
            *("lam_em" for k in lams if k == "em_all"),
            *(f"lam_{k}_{y}" for k in lams if k != "em_all" for y in range(cfg.years)),
            "join_date", "registered_to_date", "date_of_death", "active_from", "active_to",
            "stays"]
    return ", ".join(cols)


def _active(date_sql: str) -> str:
    """True when ``date_sql`` falls while the patient is registered and alive (the date is
    computed only for the few who join, leave or die during the data)."""
    return f"(stays OR {date_sql} BETWEEN active_from AND active_to)"


def _turnover_sql(cfg: SynthConfig) -> str:
    """Per-patient draws for list turnover, stored with the patient (computed once):
    ``join_date`` (a new registration during the data, not for those who change practice),
    ``leave_raw`` (a move away) and ``u_death`` (the uniform behind the time of death)."""
    s = cfg.seed * 100_000 + 70_000
    days = _days(cfg)
    start = f"DATE '{cfg.start_year}-04-01'"
    pj, pl = JOIN_RATE * cfg.years, LEAVE_RATE * cfg.years
    join = (f"CASE WHEN u_move >= {MOVER_SHARE} AND {u('pid', s)} < {pj!r} THEN {start} + "
            f"CAST(floor({u('pid', s)} / {pj!r} * {days}) AS INTEGER) END")
    leave = (f"CASE WHEN {u('pid', s + 1)} < {pl!r} THEN {start} + "
             f"CAST(floor({u('pid', s + 1)} / {pl!r} * {days}) AS INTEGER) END")
    return f"{join} AS join_date, {leave} AS leave_raw, {u('pid', s + 2)} AS u_death"


def _dynamics_sql(cfg: SynthConfig) -> str:
    """Joiners, leavers and deaths over the data's years, as view columns.

    ``join_date``: a new registration during the data (no activity here before it);
    ``date_of_death``: death at an annual hazard of the age band's rate (``DEATH_RATE``)
    times the person's relative risk (mean 1 in each band, so the band rates hold);
    ``leave_raw``: moved away (no activity here after it). Leaving or death counts only
    after registration; the first of them ends it (``registered_to``). ``active_from`` /
    ``active_to`` bound the activity written for the patient."""
    days = _days(cfg)
    start = f"DATE '{cfg.start_year}-04-01'"
    last_start = f"DATE '{cfg.start_year + cfg.years - 1}-04-01'"
    reg_start = (f"coalesce(join_date, CASE WHEN u_move < {MOVER_SHARE} THEN {last_start} "
                 "+ move_day END)")
    hazard = (f"(CASE {_band('age')} "
              + " ".join(f"WHEN {b} THEN {r / 1000!r}" for b, r in enumerate(DEATH_RATE))
              + " END * rel_risk)")
    t_death = "(-ln(greatest(u_death, 1e-12)) / greatest(" + hazard + ", 1e-9) * 365.25)"
    death = f"CASE WHEN {t_death} < {days} THEN {start} + CAST(floor({t_death}) AS INTEGER) END"
    after_reg = "> coalesce(reg_start, DATE '1900-01-01')"
    return f"""
        SELECT *, coalesce(join_date, DATE '1900-01-01') AS active_from,
               coalesce(registered_to_date, DATE '2999-12-31') AS active_to,
               join_date IS NULL AND registered_to_date IS NULL AS stays
        FROM (SELECT *,
          CASE WHEN death_ok AND (NOT leave_ok OR death_raw <= leave_raw)
               THEN death_raw END AS date_of_death,
          CASE WHEN death_ok AND (NOT leave_ok OR death_raw <= leave_raw) THEN death_raw
               WHEN leave_ok THEN leave_raw END AS registered_to_date
        FROM (SELECT *, coalesce(death_raw {after_reg}, FALSE) AS death_ok,
                     coalesce(leave_raw {after_reg}, FALSE) AS leave_ok
        FROM (SELECT *, {reg_start} AS reg_start
        FROM (SELECT *, {death} AS death_raw FROM pat_dyn))))"""


# ------------------------------------------------------------------ activity
def _season(kind: str) -> list[int]:
    """Day offsets (0 = 1 April) by a seasonal profile: respiratory emergencies peak in winter,
    A&E minors in summer, the rest nearly flat (docs/calibration.md §7)."""
    amp = {"resp": 0.28, "flat": -0.01, "ae": -0.08}[kind]
    weights = [1 + amp * math.cos(2 * math.pi * (d - 275) / 365) for d in range(365)]
    return quantiles(weights, list(range(365)), 3650)


def _count_rows(lam: str, kmax: int, key: str, salt: int) -> tuple[str, str]:
    """FROM-clause and WHERE-clause drawing a binomial ~ Poisson(lam) number of events."""
    k = f"CAST(least({kmax}, greatest(2, ceil({lam} * 3))) AS INTEGER)"
    return (f"unnest(range({k})) AS e(k)",
            f"{u(f'{key} * 64 + k', salt)} < {lam} / {k}")


#: in outpatient and A&E rows (no discharge date, no age) two fault kinds become others
OP_AE_FAULTS: dict[str, str | None] = {"discharge_before_admission": "bad_date",
                                       "age_out_of_range": "unknown_provider"}
#: social care packages carry only date faults
SOCIAL_CARE_FAULTS: dict[str, str | None] = {
    "discharge_before_admission": "end_before_start", "duplicate_id": None,
    "missing_date": None, "age_out_of_range": None, "unknown_provider": None}


class _Faults:
    """SQL for deliberate faults on a fraction of rows, keyed by the row's own key."""

    KINDS = ("discharge_before_admission", "duplicate_id", "bad_date", "missing_date",
             "age_out_of_range", "unknown_provider")

    def __init__(self, rate: float, key: str, salt: int) -> None:
        self.on = f"({u(key, salt)} < {rate!r})"
        self.kind = f"CAST(floor({u(key, salt + 1)} * 6) AS INTEGER)"
        self.coin = u(key, salt + 2)

    def label(self, effective: dict[str, str | None] | None = None) -> str:
        """The fault written on a row, by name (NULL for a clean row). ``effective`` maps a
        kind to what it becomes in a table without that column (e.g. no age in A&E)."""
        names = [(effective or {}).get(k, k) for k in self.KINDS]
        items = ", ".join("NULL" if n is None else sql_str(n) for n in names)
        return f"(CASE WHEN {self.on} THEN list_extract([{items}], {self.kind} + 1) END)"

    def when(self, kind: str) -> str:
        return f"({self.on} AND {self.kind} = {self.KINDS.index(kind)})"

    def date(self, date_sql: str, *, allow_missing: bool = True) -> str:
        iso = f"strftime({date_sql}, '%Y-%m-%d')"
        missing = f"WHEN {self.when('missing_date')} THEN NULL " if allow_missing else ""
        return (f"CASE WHEN {self.when('bad_date')} AND {self.coin} < 0.5 THEN '2025-13-45' "
                f"WHEN {self.when('bad_date')} THEN strftime({date_sql}, '%d/%m/%Y') "
                f"{missing}ELSE {iso} END")


def _practice_on_row(cfg: SynthConfig, codes: list[str], y: int, day: str, key: str,
                     salt: int) -> str:
    """The practice recorded on an activity row: blank or unknown for a few rows
    (unattributed, not faults); the previous practice for movers before their move (the
    next practice in the list, ``prev_practice_code``, stored with the patient: a list of
    every practice code in each query took longer to plan than small chunks to run)."""
    last = cfg.years - 1
    prev = "prev_practice_code"
    moved_before = "TRUE" if y < last else f"{day} < move_day"
    ua = u(key, salt)
    return (f"CASE WHEN {ua} < {BLANK_PRACTICE} THEN NULL "
            f"WHEN {ua} < {BLANK_PRACTICE + UNKNOWN_PRACTICE} THEN '{UNKNOWN_PRACTICE_CODE}' "
            f"WHEN u_move < {MOVER_SHARE} AND {moved_before} THEN {prev} "
            "ELSE practice_code END")


def _until_death(date_sql: str) -> str:
    """A discharge date, no later than the patient's death."""
    return f"least({date_sql}, coalesce(date_of_death, {date_sql}))"


def _provider(providers: list[str], n_acute: int, key: str, salt: int) -> str:
    acute = ", ".join(sql_str(c) for c in providers[:n_acute])
    idx = (f"CASE WHEN {u(key, salt)} < 0.8 THEN home_provider "
           f"ELSE CAST(floor({u(key, salt + 1)} * {n_acute}) AS INTEGER) END")
    return f"list_extract([{acute}], {idx} + 1)"


def _apc_sql(cfg: SynthConfig, codes: list[str], providers: list[str], n_acute: int) -> str:
    parts: list[str] = []
    last = cfg.years - 1
    dx = ref.EMERGENCY_DIAGNOSES
    linked = [(i, d) for i, d in enumerate(dx) if d[3] is not None]
    general = [(i, d) for i, d in enumerate(dx) if d[3] is None]
    gen_table = quantiles([d[4] for _, d in general], [i for i, _ in general], 1000)
    em_method = quantiles([0.7, 0.15, 0.02, 0.04, 0.03, 0.02, 0.035, 0.005],
                          ["21", "22", "23", "24", "2A", "2B", "2D", "28"], 1000)
    el_method = quantiles([0.7, 0.25, 0.05], ["11", "12", "13"], 100)
    procs = ref.ELECTIVE_PROCEDURES
    proc_table = quantiles([p[5] for p in procs], list(range(len(procs))), 1000)
    resp_days, flat_days = _season("resp"), _season("flat")
    for y in range(cfg.years):
        fy = cfg.start_year + y
        back = last - y
        s = cfg.seed * 100_000 + y * 1000 + 100
        age_y = f"(age - {back})"
        # ---- emergency spells
        frm, where = _count_rows(f"lam_em_{y}", 40, "pid", s)
        ek = "(pid * 64 + k)"
        dx_idx = "CASE " + " ".join(
            f"WHEN c_{d[3]} AND {u(ek, s + 1 + j)} < {d[4]} THEN {i}"
            for j, (i, d) in enumerate(linked)
        ) + f" ELSE {lookup(gen_table, u(ek, s + 20))} END"
        f = _Faults(cfg.fault_rate, "ek", s + 90)
        p0 = f"(CASE WHEN {age_y} < 45 THEN 0.45 WHEN {age_y} < 75 THEN 0.33 ELSE 0.22 END)"
        # LOS: a third of emergency spells 0 days; mean ≈7-9 days, ≈11-12 at 85+, long tail
        # (docs/calibration.md §2: Health Foundation 2018, 2023)
        los = (f"CASE WHEN {u(ek, s + 30)} < {p0} THEN 0 ELSE CAST(least(200, greatest(1, round("
               f"exp(ln(1.0 + {age_y} / 9.0) + 1.0 * {normal(ek, s + 31)})))) AS INTEGER) END")
        suffix = (f"CASE WHEN n_conditions >= 3 OR {age_y} >= 80 THEN 'A' "
                  f"WHEN n_conditions >= 1 OR {age_y} >= 60 THEN 'B' ELSE 'C' END")
        em = f"""
        SELECT pid, k, {ek} AS ek, {dx_idx} AS dx, {los} AS los, {age_y} AS age_y,
               practice_code, prev_practice_code, pidx, u_move, move_day,
               commissioner_code, home_provider, patient_id, n_conditions, active_from,
               active_to, date_of_death, stays
        FROM patc, {frm} WHERE {age_y} >= 0 AND {where}"""
        dx_list = lambda n: "[" + ", ".join(sql_str(d[n]) for d in dx) + "]"  # noqa: E731
        resp_list = "[" + ", ".join("true" if d[5] else "false" for d in dx) + "]"
        day = (f"CASE WHEN list_extract({resp_list}, dx + 1) THEN "
               f"{lookup(resp_days, u('ek', s + 40))} ELSE {lookup(flat_days, u('ek', s + 40))}"
               " END")
        adm = f"(DATE '{fy}-04-01' + CAST(day AS INTEGER))"
        parts.append(f"""
        SELECT printf('S%dE%011d', {fy}, ek) AS spell_id, patient_id,
          {_practice_on_row(cfg, codes, y, 'day', 'ek', s + 50)} AS practice_code,
          commissioner_code,
          CASE WHEN {f.when('unknown_provider')} THEN 'RZZ'
               ELSE {_provider(providers, n_acute, 'ek', s + 60)} END AS provider_code,
          {f.date(adm)} AS admission_date,
          CASE WHEN {f.when('discharge_before_admission')}
               THEN strftime({adm} - 2, '%Y-%m-%d')
               ELSE strftime({_until_death(f"{adm} + los")}, '%Y-%m-%d') END
            AS discharge_date,
          {lookup(em_method, u('ek', s + 70))} AS admission_method,
          '1' AS patient_classification,
          CASE WHEN {u('ek', s + 71)} < 0.0005 THEN '{UNPRICEABLE_HRG}'
               ELSE list_extract({dx_list(1)}, dx + 1) || ({suffix.replace(age_y, 'age_y')})
          END AS hrg_code,
          CAST(CASE WHEN {f.when('age_out_of_range')} THEN
               (CASE WHEN {f.coin} < 0.5 THEN 130 ELSE -1 END) ELSE age_y END AS BIGINT)
            AS age_on_admission,
          list_extract({dx_list(0)}, dx + 1) AS primary_diagnosis,
          CASE WHEN age_y < 16 THEN '420' ELSE list_extract({dx_list(2)}, dx + 1) END
            AS treatment_function_code,
          CASE WHEN age_y < 18 AND {u('ek', s + 72)} < 0.25 THEN 'children' END
            AS top_up_category,
          {f.when('duplicate_id')} AS _dup, {f.label()} AS _fault, {len(parts)} AS _part,
          ek AS _ek
        FROM (SELECT *, {day} AS day FROM ({em}))
        WHERE {_active(adm)}""")
        # ---- elective spells
        s2 = s + 500
        frm, where = _count_rows(f"lam_el_{y}", 30, "pid", s2)
        f2 = _Faults(cfg.fault_rate, "ek", s2 + 90)
        pr = f"CAST({lookup(proc_table, u(ek, s2 + 1))} AS INTEGER)"
        pl = lambda n: "[" + ", ".join(  # noqa: E731
            "NULL" if p[n] is None else (sql_str(p[n]) if isinstance(p[n], str) else repr(p[n]))
            for p in procs) + "]"
        el = f"""
        SELECT pid, {ek} AS ek, {pr} AS pr, {age_y} AS age_y, practice_code,
               prev_practice_code, pidx, u_move, move_day, commissioner_code,
               home_provider, patient_id, n_conditions, active_from, active_to,
               date_of_death, stays,
               {lookup(flat_days, u(ek, s2 + 2))} AS day
        FROM patc, {frm} WHERE {age_y} >= 0 AND {where}"""
        daycase = f"({u('ek', s2 + 3)} < list_extract({pl(2)}, pr + 1))"
        los_el = (f"CASE WHEN {daycase} THEN 0 ELSE CAST(least(90, greatest(1, round(exp(ln(3.7)"
                  f" + 0.8 * {normal('ek', s2 + 4)})))) AS INTEGER) END")  # mean ≈5.2
        parts.append(f"""
        SELECT printf('S%dL%011d', {fy}, ek) AS spell_id, patient_id,
          {_practice_on_row(cfg, codes, y, 'day', 'ek', s2 + 50)} AS practice_code,
          commissioner_code,
          CASE WHEN {f2.when('unknown_provider')} THEN 'RZZ'
               ELSE {_provider(providers, n_acute, 'ek', s2 + 60)} END AS provider_code,
          {f2.date(adm)} AS admission_date,
          CASE WHEN {f2.when('discharge_before_admission')}
               THEN strftime({adm} - 2, '%Y-%m-%d')
               ELSE strftime({_until_death(f"{adm} + {los_el}")}, '%Y-%m-%d') END
            AS discharge_date,
          {lookup(el_method, u('ek', s2 + 70))} AS admission_method,
          CASE WHEN {daycase} THEN '2' ELSE '1' END AS patient_classification,
          list_extract({pl(0)}, pr + 1) ||
            (CASE WHEN age_y >= 70 OR n_conditions >= 2 THEN 'A' ELSE 'B' END) AS hrg_code,
          CAST(CASE WHEN {f2.when('age_out_of_range')} THEN
               (CASE WHEN {f2.coin} < 0.5 THEN 130 ELSE -1 END) ELSE age_y END AS BIGINT)
            AS age_on_admission,
          list_extract({pl(3)}, pr + 1) AS primary_diagnosis,
          list_extract({pl(1)}, pr + 1) AS treatment_function_code,
          CASE WHEN list_extract({pl(4)}, pr + 1) = 'children' AND age_y >= 18 THEN NULL
               ELSE list_extract({pl(4)}, pr + 1) END AS top_up_category,
          {f2.when('duplicate_id')} AS _dup, {f2.label()} AS _fault, {len(parts)} AS _part,
          ek AS _ek
        FROM ({el}) WHERE {_active(adm)}""")
        # ---- maternity (women 16-45)
        s3 = s + 800
        frm, where = _count_rows("0.055", 2, "pid", s3)
        parts.append(f"""
        SELECT printf('S%dM%011d', {fy}, pid * 64 + k) AS spell_id, patient_id,
          practice_code, commissioner_code,
          {_provider(providers, n_acute, 'pid * 64 + k', s3 + 60)} AS provider_code,
          strftime(DATE '{fy}-04-01' + CAST(floor({u('pid * 64 + k', s3 + 1)} * 365)
            AS INTEGER), '%Y-%m-%d') AS admission_date,
          strftime(DATE '{fy}-04-01' + CAST(floor({u('pid * 64 + k', s3 + 1)} * 365)
            AS INTEGER) + CAST(floor({u('pid * 64 + k', s3 + 2)} * 4) AS INTEGER),
            '%Y-%m-%d') AS discharge_date,
          '31' AS admission_method, '1' AS patient_classification,
          CASE WHEN {u('pid * 64 + k', s3 + 3)} < 0.3 THEN 'NZ30A' ELSE 'NZ30B' END
            AS hrg_code,
          CAST(age - {back} AS BIGINT) AS age_on_admission, 'O800' AS primary_diagnosis,
          '501' AS treatment_function_code, CAST(NULL AS VARCHAR) AS top_up_category,
          FALSE AS _dup, CAST(NULL AS VARCHAR) AS _fault, {len(parts)} AS _part,
          pid * 64 + k AS _ek
        FROM patc, {frm}
        WHERE sex = 'F' AND age - {back} BETWEEN 16 AND 45 AND {where}
          AND {_active(f"DATE '{fy}-04-01' + CAST(floor({u('pid * 64 + k', s3 + 1)} * 365) "
                       f"AS INTEGER) + CAST(floor({u('pid * 64 + k', s3 + 2)} * 4) AS INTEGER)")}
        """)
    return " UNION ALL ".join(parts)


def _with_duplicates(union_sql: str) -> str:
    """Every row once, each row chosen for a duplicate-id fault followed by its second copy
    (``_copy``), in a fixed order: by event key, then part (the parallel lateral unnest
    alone does not keep order). The event key starts with the patient number, so the order
    is patient by patient and the rows of a run of practices are the same whether they are
    generated at once or in chunks. The union is written once, as a CTE; both uses read it."""
    return (f"WITH rows_ AS ({union_sql}) "
            f"SELECT *, FALSE AS _copy FROM rows_ "
            f"UNION ALL BY NAME SELECT * REPLACE (1000 + _part AS _part), TRUE AS _copy "
            f"FROM rows_ WHERE _dup ORDER BY _ek, _part")


def _op_sql(cfg: SynthConfig, codes: list[str], providers: list[str], n_acute: int) -> str:
    parts: list[str] = []
    last = cfg.years - 1
    tfc = quantiles([w for _, w in ref.OP_TFC], [c for c, _ in ref.OP_TFC], 1000)
    refsrc = quantiles([0.54, 0.18, 0.06, 0.08, 0.06, 0.04, 0.04],
                       ["03", "05", "04", "10", "11", "92", "01"], 100)
    days = _season("flat")
    for y in range(cfg.years):
        fy = cfg.start_year + y
        back = last - y
        for kind, lam, letter, salt_off in (("first", "lam_op", "F", 0),
                                            ("follow_up", "lam_op * 2.2", "U", 500)):
            s = cfg.seed * 100_000 + y * 1000 + 10_000 + salt_off
            frm, where = _count_rows(lam.replace("lam_op", f"lam_op_{y}"), 60, "pid", s)
            ek = "(pid * 64 + k)"
            f = _Faults(cfg.fault_rate, ek, s + 90)
            day_sql = f"(DATE '{fy}-04-01' + CAST({lookup(days, u(ek, s + 1))} AS INTEGER))"
            day = "day_"  # computed once per row, below
            codes_fa = ("'1'", "'3'") if kind == "first" else ("'2'", "'4'")
            dna = "(0.04 + 0.008 * (10 - imd_decile))"
            source = lookup(refsrc, u(ek, s + 4)) if kind == "first" else "CAST(NULL AS VARCHAR)"
            parts.append(f"""
            SELECT printf('O%d{letter}%011d', {fy}, {ek}) AS attendance_id, patient_id,
              {_practice_on_row(cfg, codes, y, f"date_diff('day', DATE '{fy}-04-01', {day})",
                                ek, s + 50)} AS practice_code,
              commissioner_code,
              CASE WHEN {f.when('unknown_provider')} OR {f.when('age_out_of_range')}
                   THEN 'RZZ' ELSE {_provider(providers, n_acute, ek, s + 60)} END
                AS provider_code,
              CASE WHEN {f.when('discharge_before_admission')} THEN '2025-13-45'
                   ELSE {f.date(day)} END AS appointment_date,
              {lookup(tfc, u(ek, s + 2))} AS treatment_function_code,
              CASE WHEN {u(ek, s + 3)} < 0.15 THEN {codes_fa[1]} ELSE {codes_fa[0]} END
                AS first_attendance,
              {u(ek, s + 5)} >= {dna} AS attended,
              {source} AS referral_source,
              CASE WHEN {u(ek, s + 5)} >= {dna} AND {u(ek, s + 6)} < 0.06
                   THEN {lookup(ref.OP_PROCEDURE_HRG, u(ek, s + 7))} END AS hrg_code,
              {f.when('duplicate_id')} AS _dup, {f.label(OP_AE_FAULTS)} AS _fault,
              {len(parts)} AS _part, {ek} AS _ek
            FROM (SELECT *, {day_sql} AS day_ FROM patc, {frm}
                  WHERE age - {back} >= 0 AND {where})
            WHERE {_active(day)}""")
    return " UNION ALL ".join(parts)


def _ae_sql(cfg: SynthConfig, codes: list[str], providers: list[str], n_acute: int) -> str:
    parts: list[str] = []
    last = cfg.years - 1
    dept = quantiles([0.60, 0.05, 0.30, 0.05], ["1", "2", "3", "4"], 100)
    major = quantiles([w for _, w in ref.AE_HRG], [h for h, _ in ref.AE_HRG], 1000)
    minor = quantiles([0.2, 0.3, 0.5], ["VB09Z", "VB10Z", "VB11Z"], 100)
    days = _season("ae")
    for y in range(cfg.years):
        fy = cfg.start_year + y
        back = last - y
        s = cfg.seed * 100_000 + y * 1000 + 20_000
        frm, where = _count_rows(f"lam_ae_{y}", 40, "pid", s)
        ek = "(pid * 64 + k)"
        f = _Faults(cfg.fault_rate, ek, s + 90)
        day_sql = f"(DATE '{fy}-04-01' + CAST({lookup(days, u(ek, s + 1))} AS INTEGER))"
        day = "day_"  # computed once per row, below
        dtype = lookup(dept, u(ek, s + 2))
        parts.append(f"""
        SELECT printf('A%d%011d', {fy}, {ek}) AS attendance_id, patient_id,
          {_practice_on_row(cfg, codes, y, f"date_diff('day', DATE '{fy}-04-01', {day})",
                            ek, s + 50)} AS practice_code,
          commissioner_code,
          CASE WHEN {f.when('unknown_provider')} OR {f.when('age_out_of_range')} THEN 'RZZ'
               ELSE {_provider(providers, n_acute, ek, s + 60)} END AS provider_code,
          CASE WHEN {f.when('discharge_before_admission')} THEN '31/12/2025'
               ELSE {f.date(day)} END AS arrival_date,
          dtype AS department_type,
          CASE WHEN dtype IN ('3', '4') THEN {lookup(minor, u(ek, s + 3))}
               ELSE {lookup(major, u(ek, s + 3))} END AS hrg_code,
          {f.when('duplicate_id')} AS _dup, {f.label(OP_AE_FAULTS)} AS _fault,
          {len(parts)} AS _part, {ek} AS _ek
        FROM (SELECT *, {dtype} AS dtype, {day_sql} AS day_ FROM patc, {frm}
              WHERE age - {back} >= 0 AND {where})
        WHERE {_active(day)}
        """)
    return " UNION ALL ".join(parts)


def _prescribing_sql(cfg: SynthConfig) -> str:
    bnf = ref.BNF
    s = cfg.seed * 100_000 + 30_000
    col = lambda n: "[" + ", ".join(  # noqa: E731
        sql_str(b[n]) if isinstance(b[n], str) else repr(b[n]) for b in bnf) + "]"
    key = "(pidx * 100000 + mi * 100 + bi)"
    month = f"strftime(DATE '{cfg.start_year}-04-01' + INTERVAL (mi) MONTH, '%Y-%m')"
    season = "(1 + 0.06 * cos(2 * pi() * (mi % 12 - 9) / 12))"
    return f"""
    WITH ps AS (
      SELECT pidx, any_value(practice_code) AS practice_code, count(*) AS n,
             avg(CAST(age >= 65 AS DOUBLE)) AS s65, {exact_mean_sql("raw_risk")} AS risk
      FROM pat GROUP BY pidx
    ), tot AS (SELECT avg(CAST(age >= 65 AS DOUBLE)) AS s65,
                      {exact_mean_sql("raw_risk")} AS risk FROM pat)
    SELECT
      CASE WHEN {u(key, s)} < 0.002 THEN NULL ELSE ps.practice_code END AS practice_code,
      {month} AS year_month,
      list_extract({col(0)}, bi + 1) AS bnf_code,
      list_extract({col(1)}, bi + 1) AS bnf_name,
      CAST(greatest(0, round(n * list_extract({col(2)}, bi + 1) / 12 * {season}
        * {ref.PRESCRIBING_ITEMS_SCALE}
        * (CASE WHEN list_extract({col(4)}, bi + 1) THEN ps.s65 / tot.s65 ELSE 1 END)
        * pow(ps.risk / tot.risk, 0.3) * exp(0.15 * {normal(key, s + 1)} - 0.01125)))
        AS BIGINT) AS items,
      0.0 AS actual_cost, bi, mi, pidx
    FROM ps, tot, unnest(range({12 * cfg.years})) AS m(mi), unnest(range({len(bnf)})) AS b(bi)
    """


def _prescribing_final(cfg: SynthConfig, inner: str) -> str:
    col = "[" + ", ".join(repr(b[3]) for b in ref.BNF) + "]"
    s = cfg.seed * 100_000 + 30_500
    key = "(pidx * 100000 + mi * 100 + bi)"
    return f"""
    SELECT practice_code, year_month, bnf_code, bnf_name, items,
      round(items * list_extract({col}, bi + 1) * {ref.PRESCRIBING_COST_SCALE}
            * (1 + 0.08 * {normal(key, s)}), 2)
        AS actual_cost
    FROM ({inner}) ORDER BY pidx, mi, bi"""


def _social_care_weight(cfg: SynthConfig, y: int) -> str:
    """Relative chance of a care package: mostly older, higher-risk people."""
    age_y = f"(age - {cfg.years - 1 - y})"
    return (f"(CASE WHEN {age_y} >= 65 THEN 4.0 WHEN {age_y} >= 18 THEN 0.5 ELSE 0.02 END"
            " * pow(lam_em, 0.6))")


def _social_care_norms(cfg: SynthConfig, con: duckdb.DuckDBPyConnection) -> list[float]:
    """Mean weight over the whole population each year (so ≈15 packages per 1,000)."""
    out = []
    for y in range(cfg.years):
        w = _social_care_weight(cfg, y)
        v = _exact_means(con, [w], f"pat WHERE age - {cfg.years - 1 - y} >= 0")[0][1]
        out.append(float(v or 1.0))
    return out


def _social_care_sql(cfg: SynthConfig, norms: list[float]) -> str:
    """Adult social care packages (≈15 per 1,000 a year; weekly costs from docs/calibration.md §5:
    home care ≈£430, residential ≈£1,000, nursing ≈£1,200), linked to a patient for 90%."""
    parts: list[str] = []
    last = cfg.years - 1
    kinds = ref.SOCIAL_CARE
    table = quantiles([k[1] for k in kinds], list(range(len(kinds))), 1000)
    names = "[" + ", ".join(sql_str(k[0]) for k in kinds) + "]"
    costs = "[" + ", ".join(repr(k[2]) for k in kinds) + "]"
    for y in range(cfg.years):
        fy = cfg.start_year + y
        back = last - y
        s = cfg.seed * 100_000 + y * 1000 + 40_000
        age_y = f"(age - {back})"
        w = _social_care_weight(cfg, y)
        f = _Faults(cfg.fault_rate, "pid", s + 90)
        start = f"(DATE '{fy}-04-01' + CAST(floor({u('pid', s + 2)} * 365) AS INTEGER))"
        parts.append(f"""
        SELECT printf('C%d%011d', {fy}, pid) AS package_id, local_authority_code,
          list_extract({names}, st + 1) AS service_type,
          {f.date(start, allow_missing=False)} AS start_date,
          CASE WHEN {f.when('discharge_before_admission')} THEN strftime({start} - 7, '%Y-%m-%d')
               WHEN {u('pid', s + 3)} < 0.5 THEN strftime(date_of_death, '%Y-%m-%d')
               ELSE strftime({_until_death(f"{start} + 7 * (1 + CAST(floor({u('pid', s + 4)}"
                                            " * 40) AS INTEGER))")}, '%Y-%m-%d') END
            AS end_date,
          round(list_extract({costs}, st + 1) * exp(0.25 * {normal('pid', s + 5)} - 0.03125), 2)
            AS weekly_cost,
          CASE WHEN {u('pid', s + 6)} < 0.9 THEN patient_id END AS patient_id,
          FALSE AS _dup, {f.label(SOCIAL_CARE_FAULTS)} AS _fault, {y} AS _part, pid AS _ek
        FROM (SELECT *, CAST({lookup(table, u('pid', s + 1))} AS INTEGER) AS st FROM patc
              WHERE {age_y} >= 0 AND {u('pid', s)} < 0.015 * {w} / {norms[y]!r}
                AND {_active(start)})""")
    return " UNION ALL ".join(parts)


def _patients_out_sql(cfg: SynthConfig, hood_codes: list[str]) -> str:
    s = cfg.seed * 100_000 + 50_000
    last_start = cfg.start_year + cfg.years - 1
    hoods = "[" + ", ".join(sql_str(h) for h in hood_codes) + "]"
    dup = f"({u('pid', s)} < {cfg.fault_rate / 2!r})"
    bad_age = f"({u('pid', s + 1)} < {cfg.fault_rate / 2!r})"
    body = f"""
    SELECT patient_id, practice_code, sex,
      CAST(CASE WHEN {bad_age} THEN 130 ELSE age END AS BIGINT) AS age,
      CAST(imd_decile AS BIGINT) AS imd_decile,
      list_extract({hoods}, neighbourhood_base + hood + 1) AS neighbourhood_code,
      CASE WHEN join_date IS NOT NULL THEN strftime(join_date, '%Y-%m-%d')
           WHEN u_move < {MOVER_SHARE} THEN strftime(DATE '{last_start}-04-01' + move_day,
                                                       '%Y-%m-%d')
           ELSE strftime(DATE '{cfg.start_year}-04-01' - CAST(floor(
             {u('pid', s + 2)} * least(age * 365 + 1, 9000)) AS INTEGER), '%Y-%m-%d') END
        AS registered_from,
      strftime(registered_to_date, '%Y-%m-%d') AS registered_to,
      strftime(date_of_death, '%Y-%m-%d') AS date_of_death,
      {dup} AS _dup, {bad_age} AS _bad_age,
      0 AS _part, pid AS _ek
    FROM patc"""
    return body


def _conditions_sql(cfg: SynthConfig) -> str:
    """Condition records: recorded on the day of onset (:func:`_onset_sql`, some during the
    data: new diagnoses), none after registration ended (a practice does not record a
    condition for someone who has left or died); a few have no recorded date. One pass
    over the patients: the conditions are unnested from a list of flags, with the same
    per-condition draws as :func:`_onset_sql`."""
    s = cfg.seed * 100_000 + 60_000
    n = len(ref.CONDITIONS)
    start = f"DATE '{cfg.start_year}-04-01'"
    codes = "[" + ", ".join(sql_str(c) for c, _b, _r in ref.CONDITIONS) + "]"
    flags = "[" + ", ".join(f"c_{c}" for c, _b, _r in ref.CONDITIONS) + "]"
    onset = f"({_days(cfg)} - CAST(floor({u_indexed('pid', [s + i for i in range(n)], 'i')}" \
            f" * least(age * 365 + 1, {ONSET_YEARS * 365})) AS INTEGER))"
    undated = u_indexed("pid", [s + 40 + i for i in range(n)], "i")
    return f"""
    SELECT patient_id, list_extract({codes}, i + 1) AS condition,
      CASE WHEN {undated} < {UNDATED_CONDITION!r} THEN NULL
           ELSE strftime({start} + {onset}, '%Y-%m-%d') END AS recorded_date,
      pid AS _pid, i AS _i
    FROM (SELECT patient_id, pid, age, registered_to_date, {flags} AS flags FROM patc),
         unnest(range({n})) AS t(i)
    WHERE list_extract(flags, i + 1)
      AND (registered_to_date IS NULL OR {start} + {onset} <= registered_to_date)
    ORDER BY _pid, _i"""


# ------------------------------------------------------------------ tariff
def _price(code: str, salt: int, lo: float, hi: float) -> float:
    """A deterministic price for a code (a stable hash, not Python's salted ``hash``)."""
    h = int.from_bytes(__import__("hashlib").sha256(f"{code}:{salt}".encode()).digest()[:8],
                       "big")
    return round(lo + (hi - lo) * (h / 2**64), 0)


def _tariff(cfg: SynthConfig) -> dict[str, pd.DataFrame]:
    rows = []
    mult = {"A": 1.5, "B": 1.0, "C": 0.7}
    roots = {d[1]: "emergency" for d in ref.EMERGENCY_DIAGNOSES}
    for p in ref.ELECTIVE_PROCEDURES:
        roots[p[0]] = "elective"
    for root, kind in sorted(roots.items()):
        for suffix in ("A", "B", "C"):
            code = root + suffix
            nel = _price(root, 1, 1200, 3200) * mult[suffix]
            nel_trim = int(_price(root, 2, 5, 30) * (1.3 if suffix == "A" else 1))
            el_trim = int(_price(root, 3, 3, 15))
            ebd = _price(root, 4, 250, 350)
            if kind == "elective":  # docs/calibration.md §5: day case ≈£740, elective ≈£3,700
                dc = _price(root, 5, 450, 1100) * mult[suffix]
                ordinary = _price(root, 6, 2200, 5200) * mult[suffix]
                combined_only = _price(root, 7, 0, 3) < 1
            else:
                dc = ordinary = nel * 0.9
                combined_only = True
            sse = kind == "emergency" and _price(root, 8, 0, 2) >= 1
            pct = _price(root, 9, 20, 70) / 100
            rows.append({
                "hrg_code": code, "hrg_name": f"Synthetic HRG {code}",
                "day_case_price": None if combined_only else dc,
                "ordinary_elective_price": None if combined_only else ordinary,
                # a combined price, as in Annex A, is the blend at the national day-case mix
                "combined_elective_price": round(0.8 * dc + 0.2 * ordinary, 0)
                if combined_only else None,
                "elective_trim_days": el_trim, "non_elective_price": nel,
                "non_elective_trim_days": nel_trim, "excess_bed_day_price": ebd,
                "sse_applies": "Y" if sse else "N",
                "sse_price": round(nel * pct, 0) if sse else None,
                "outpatient_procedure_price": None, "sse_pct": pct if sse else None,
            })
    for code in ("NZ30A", "NZ30B"):
        nel = _price(code, 1, 1500, 3500)
        rows.append({"hrg_code": code, "hrg_name": f"Synthetic HRG {code}",
                     "day_case_price": None, "ordinary_elective_price": None,
                     "combined_elective_price": nel, "elective_trim_days": 5,
                     "non_elective_price": nel, "non_elective_trim_days": 8,
                     "excess_bed_day_price": 300.0, "sse_applies": "N", "sse_price": None,
                     "outpatient_procedure_price": None, "sse_pct": None})
    for code in ref.OP_PROCEDURE_HRG:
        rows.append({"hrg_code": code, "hrg_name": f"Outpatient procedure {code}",
                     "day_case_price": _price(code, 5, 400, 900), "ordinary_elective_price":
                     _price(code, 6, 900, 2000), "combined_elective_price": None,
                     "elective_trim_days": 5, "non_elective_price": _price(code, 1, 800, 1800),
                     "non_elective_trim_days": 10, "excess_bed_day_price": 300.0,
                     "sse_applies": "N", "sse_price": None,
                     "outpatient_procedure_price": _price(code, 10, 100, 400),
                     "sse_pct": None})
    apc = pd.DataFrame(rows)
    tfcs = sorted({c for c, _ in ref.OP_TFC})
    op = pd.DataFrame({
        "treatment_function_code": tfcs,
        "first_attendance_price": [_price(t, 11, 150, 230) for t in tfcs],
        "follow_up_price": [_price(t, 12, 70, 120) for t in tfcs],
    })
    ae = pd.DataFrame({"hrg_code": list(ref.AE_PRICE),
                       "price": [float(v) for v in ref.AE_PRICE.values()]})
    return {"tariff_apc": apc, "tariff_op": op, "tariff_ae": ae}


def _write_annex_a(tariff: dict[str, pd.DataFrame], path: Path) -> None:
    """The same tariff as an Annex A style workbook (the national tariff's own layout)."""
    import xlsxwriter

    apc, op = tariff["tariff_apc"], tariff["tariff_op"]
    book = xlsxwriter.Workbook(str(path), {"strings_to_formulas": False})
    book.set_properties({"created": dt.datetime(2000, 1, 1)})  # byte-identical files
    try:
        sheets: dict[str, tuple[list[str], list[list[Any]]]] = {
            "APC & OPROC": (
                ["HRG code", "HRG name", "Outpatient procedure tariff (£)",
                 "Combined day case / ordinary elective spell tariff (£)",
                 "Day case spell tariff (£)", "Ordinary elective spell tariff (£)",
                 "Ordinary elective long stay trim point (days)",
                 "Non-elective spell tariff (£)", "Non-elective long stay trim point (days)",
                 "Per day long stay payment (for days exceeding trim point) (£)",
                 "Reduced short stay emergency tariff _applicable?",
                 "% applied in calculation of reduced short stay emergency tariff",
                 "Reduced short stay emergency tariff (£)"],
                [[r.hrg_code, r.hrg_name, r.outpatient_procedure_price,
                  r.combined_elective_price, r.day_case_price, r.ordinary_elective_price,
                  r.elective_trim_days, r.non_elective_price, r.non_elective_trim_days,
                  r.excess_bed_day_price, "Yes" if r.sse_applies == "Y" else "No",
                  r.sse_pct, r.sse_price] for r in apc.itertuples()]),
            "OP": (["Treatment function code", "Treatment function name",
                    "First attendance - single professional (£)",
                    "Follow-up attendance - single professional (£)"],
                   [[r.treatment_function_code, f"TFC {r.treatment_function_code}",
                     r.first_attendance_price, r.follow_up_price] for r in op.itertuples()]),
            "A&E": (["HRG code", "HRG name", "Type 1 and 2 Departments (£)",
                     "Type 3 Departments (£)"],
                    [[code, f"A&E {code}", price, round(price / 2, 0)]
                     for code, price in ref.AE_PRICE.items()]),
        }
        for name, (header, data) in sheets.items():
            ws = book.add_worksheet(name)
            ws.write_row(0, 0, header)
            for i, row in enumerate(data, 1):
                for j, v in enumerate(row):
                    if v is None or (isinstance(v, float) and math.isnan(v)):
                        continue
                    ws.write(i, j, v)
    finally:
        book.close()


# ------------------------------------------------------------------ driver
#: settings that change how the economy is generated, never what is written (left out of
#: the manifest, which is byte-identical whatever they are)
EXECUTION = ("chunk_patients", "workers", "threads", "memory_limit")
#: tables written as one file whatever the number of parts
SINGLE_FILE_TABLES = ("commissioners", "groups", "local_authorities", "neighbourhoods",
                      "providers", "practices", "practice_groups", "list_sizes",
                      "prescribing", "tariff_apc", "tariff_op", "tariff_ae")
#: rows in every Parquet row group written: fixed, so that a file's bytes never depend on
#: how its rows were generated (in one piece or in chunks, by one process or several)
ROW_GROUP_ROWS = 122_880


def _chunks(sizes: np.ndarray, limit: int) -> list[tuple[int, int]]:
    """Practice-index ranges [lo, hi) holding at most about ``limit`` patients each."""
    out, lo, acc = [], 0, 0
    for i, n in enumerate(sizes):
        if acc and acc + int(n) > limit:
            out.append((lo, i))
            lo, acc = i, 0
        acc += int(n)
    out.append((lo, len(sizes)))
    return out


class _Sink:
    """One Parquet file written from Arrow batches in row groups of exactly
    :data:`ROW_GROUP_ROWS` rows (the last one shorter), each column contiguous: the bytes
    depend only on the rows and their order, not on the batches they came in."""

    def __init__(self, path: Path, compression: str = "zstd") -> None:
        self.path, self.compression = path, compression
        self.writer: Any = None
        self.buffer: list[pa.RecordBatch] = []
        self.buffered = 0
        self.rows = 0

    def open(self, schema: pa.Schema) -> None:
        import pyarrow.parquet as pq

        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, schema, compression=self.compression)

    def _flush(self, n: int) -> None:
        table = pa.Table.from_batches(self.buffer, schema=self.writer.schema)
        self.writer.write_table(table.slice(0, n).combine_chunks(), row_group_size=n)
        rest = table.slice(n)
        self.buffer = rest.to_batches()
        self.buffered = rest.num_rows

    def add(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        self.buffer.append(batch)
        self.buffered += batch.num_rows
        self.rows += batch.num_rows
        while self.buffered >= ROW_GROUP_ROWS:
            self._flush(ROW_GROUP_ROWS)

    def close(self) -> None:
        if self.buffered:
            self._flush(self.buffered)
        self.writer.close()


@dataclass(frozen=True)
class _Task:
    """One file written from queries run one after another (each after its ``prep``
    statement), in a DuckDB connection set up by ``setup``. A task is self-contained, so it
    runs in this process or in a worker process alike."""

    target: str
    setup: tuple[str, ...]
    queries: tuple[tuple[str | None, str], ...]
    columns: tuple[str, ...] | None  # None: every column (the patients' work files)
    tally: str = "none"  # "activity" (faults and unattributed rows), "patients" or "none"
    fmt: str = "parquet"
    compression: str = "zstd"
    memory_limit: str = "4GB"
    threads: int | None = None
    spill: str = ""


def _connect(memory_limit: str, threads: int | None, spill: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{memory_limit}'")
    if spill:
        con.execute(f"SET temp_directory = '{spill}'")
    con.execute("SET preserve_insertion_order = true")
    if threads:
        con.execute(f"SET threads = {threads}")
    return con


def _tally(batch: pa.RecordBatch, kind: str, faults: dict[str, int],
           unattributed: dict[str, int]) -> None:
    """Count this batch's deliberate faults (by kind) and unattributed rows: the first copy
    of each row only (a duplicate's second copy is the fault, counted on the first)."""
    import pyarrow.compute as pc

    first = batch.filter(pc.invert(batch.column("_copy")))
    if kind == "patients":
        for name, col in (("duplicate_patient_id", "_dup"),
                          ("patient_age_out_of_range", "_bad_age")):
            faults[name] = faults.get(name, 0) + int(pc.sum(first.column(col)).as_py() or 0)
        return
    for item in pc.value_counts(first.column("_fault")).to_pylist():
        if item["values"] is not None:
            faults[item["values"]] = faults.get(item["values"], 0) + int(item["counts"])
    if "practice_code" in first.schema.names:
        code = first.column("practice_code")
        unknown = int(pc.sum(pc.equal(code, UNKNOWN_PRACTICE_CODE)).as_py() or 0)
        blank, known = code.null_count, unknown
    else:
        blank = known = 0
    unattributed["blank_practice"] = unattributed.get("blank_practice", 0) + blank
    unattributed["unknown_practice"] = unattributed.get("unknown_practice", 0) + known


def _run(task: _Task, con: duckdb.DuckDBPyConnection | None = None
         ) -> tuple[int, dict[str, int], dict[str, int]]:
    """Write ``task.target`` in one pass over its rows, counting faults as they stream by;
    returns (rows, faults, unattributed)."""
    own = con is None
    if con is None:
        import os

        # a spill folder of its own: DuckDB's temporary files are per process
        con = _connect(task.memory_limit, task.threads,
                       task.spill and f"{task.spill}-{os.getpid()}")
    target = Path(task.target)
    parquet = target.with_suffix(".parquet.tmp") if task.fmt == "csv" else target
    sink = _Sink(parquet, task.compression)
    faults: dict[str, int] = {}
    unattributed: dict[str, int] = {}
    try:
        for statement in task.setup:
            con.execute(statement)
        for prep, query in task.queries:
            if prep:
                con.execute(prep)
            sql = query if task.columns is None else \
                f"SELECT * FROM ({query})" if task.tally != "none" else \
                "SELECT " + ", ".join(f'"{c}"' for c in task.columns) + f" FROM ({query})"
            reader = con.sql(sql).to_arrow_reader(batch_size=ROW_GROUP_ROWS)
            names = list(task.columns) if task.columns is not None else reader.schema.names
            sink.open(pa.schema([reader.schema.field(c) for c in names]))
            for batch in reader:
                if task.tally != "none":
                    _tally(batch, task.tally, faults, unattributed)
                sink.add(batch.select(names))
        sink.close()
        if task.fmt == "csv":
            con.execute(f"COPY (SELECT * FROM read_parquet('{parquet}')) TO '{target}' "
                        "(FORMAT csv, HEADER, DELIMITER ',')")
            parquet.unlink()
    finally:
        if own:
            con.close()
    return sink.rows, faults, unattributed


def _memory_share(limit: str, n: int) -> str:
    """A DuckDB memory limit (e.g. ``4GB``) divided between ``n`` processes."""
    import re

    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]i?B)?\s*", limit, re.IGNORECASE)
    if n <= 1 or m is None:
        return limit
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    unit = (m.group(2) or "B")[0].upper()
    size = float(m.group(1)) * units.get(unit, 1)
    return f"{max(64, int(size / n / 2**20))}MB"


class _Pool:
    """Runs tasks here (one worker) or in worker processes, in parallel."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.executor: Any = None
        if workers > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            self.executor = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))

    def run(self, tasks: list[_Task], done: Callable[[int], None] | None = None
            ) -> list[tuple[int, dict[str, int], dict[str, int]]]:
        if self.executor is None or len(tasks) < 2:
            out = []
            for i, t in enumerate(tasks):
                out.append(_run(t))
                if done:
                    done(i + 1)
            return out
        from concurrent.futures import as_completed

        futures = {self.executor.submit(_run, t): i for i, t in enumerate(tasks)}
        results: dict[int, tuple[int, dict[str, int], dict[str, int]]] = {}
        for f in as_completed(futures):
            results[futures[f]] = f.result()
            if done:
                done(len(results))
        return [results[i] for i in range(len(tasks))]

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown()


def _add(total: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        total[k] = total.get(k, 0) + v


def generate(cfg: SynthConfig, out: Path, progress: Progress | None = None) -> SynthSummary:
    """Write every input table of the data contract for a synthetic economy into ``out``.

    The practices are cut into parts of about ``cfg.part_patients`` patients (the file
    layout) and each part into chunks of at most ``cfg.chunk_patients`` (the memory bound).
    First each part's patients are generated, chunk by chunk, into a work file; one
    streaming pass over them all calibrates the risks (exact sums, so the same whatever the
    chunking); then each row-level table is written part by part, ``cfg.workers`` parts at a
    time, each streamed in one pass from DuckDB through Arrow into Parquet with its faults
    counted on the way. Every draw is a hash of the seed and stable identifiers (patient
    number, event number, practice), rows are in patient order and row groups have a fixed
    size, so the files are byte-identical for the same seed whatever the chunking and the
    number of workers. ``progress(step, done, total)`` is called as steps start and once at
    the end with ``("done", total, total)``.
    """
    import os

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "pat_raw").mkdir(parents=True)
    steps = ["organisations", "patients", "conditions", "apc_spells", "op_attendances",
             "ae_attendances", "prescribing", "social_care_packages", "tariff", "truth"]
    done = 0

    def step(name: str) -> None:
        nonlocal done
        if progress:
            progress(name, done, len(steps))
        done += 1

    step("organisations")
    orgs = _organisations(cfg)
    practices = orgs["practices"]
    sizes = practices.list_size.to_numpy()
    parts = _chunks(sizes, cfg.part_patients)
    parted = len(parts) > 1
    chunks = [[(lo + a, lo + b) for a, b in _chunks(sizes[lo:hi], cfg.chunk_patients)]
              for lo, hi in parts]
    workers = max(1, min(cfg.workers or os.cpu_count() or 1, len(parts)))
    threads = cfg.threads or (max(1, (os.cpu_count() or 1) // workers) if workers > 1
                              else None)
    share = _memory_share(cfg.memory_limit, workers)
    ext = cfg.format
    faults: dict[str, int] = {}
    unattributed: dict[str, int] = {}
    rows: dict[str, int] = {}
    last_start = cfg.start_year + cfg.years - 1

    def target(name: str, part: int | None) -> str:
        if part is None:
            return str(out / f"{name}.{ext}")
        return str(out / name / f"part-{part:05d}.{ext}")

    def clear(name: str) -> None:
        for old in (out / f"{name}.parquet", out / f"{name}.csv"):
            old.unlink(missing_ok=True)
        shutil.rmtree(out / name, ignore_errors=True)
        if parted and name not in SINGLE_FILE_TABLES:
            (out / name).mkdir()

    def task(name: str, queries: Sequence[tuple[str | None, str]], part: int | None = None,
             setup: tuple[str, ...] = (), tally: str = "none") -> _Task:
        return _Task(target(name, part), setup, tuple(queries),
                     tuple(TABLES[name].column_names), tally, ext, "zstd", share, threads,
                     str(tmp / "spill"))

    con = _connect(cfg.memory_limit, cfg.threads, str(tmp / "spill"))
    pool = _Pool(workers)
    try:
        def write(name: str, sql: str) -> None:
            clear(name)
            n, _f, _u = _run(task(name, [(None, sql)]), con)
            rows[name] = rows.get(name, 0) + n

        for name, frame in orgs.items():
            con.register(f"{name}_df", frame)
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_df")
            con.unregister(f"{name}_df")
        con.register("age_q_df", _age_tables(practices, np.random.default_rng(cfg.seed + 7)))
        con.execute("CREATE TABLE age_q AS SELECT * FROM age_q_df")
        con.unregister("age_q_df")
        for name in ("commissioners", "groups", "local_authorities", "neighbourhoods",
                     "providers"):
            write(name, f"SELECT * FROM {name}")
        write("practices", "SELECT * REPLACE (CAST(close_date AS VARCHAR) AS close_date) "
              "FROM practices")
        con.register("pg_df", _practice_groups(cfg, orgs))
        write("practice_groups", "SELECT * FROM pg_df")

        # the patients of each part, chunk by chunk, into work files (patient order)
        step("patients")
        for name in ("practices", "age_q"):
            con.execute(f"COPY {name} TO '{tmp / name}.parquet' (FORMAT parquet)")
        org_views = tuple(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM "
                          f"read_parquet('{tmp / name}.parquet')"
                          for name in ("practices", "age_q"))
        raw = [str(tmp / "pat_raw" / f"part-{j:05d}.parquet") for j in range(len(parts))]
        pool.run([_Task(raw[j], org_views,
                        tuple((None, _patients_sql(cfg, lo, hi)) for lo, hi in chunks[j]),
                        None, "none", "parquet", "lz4", share, threads, str(tmp / "spill"))
                  for j in range(len(parts))],
                 (lambda i: progress("patients", i, len(parts) + 1)) if progress else None)
        files = "[" + ", ".join(sql_str(f) for f in raw) + "]"
        con.execute(f"CREATE VIEW pat_raw AS SELECT * FROM read_parquet({files})")
        views = _calibrate(con, cfg)
        for statement in views:
            con.execute(statement)
        hoods = list(orgs["neighbourhoods"].neighbourhood_code)
        norms = _social_care_norms(cfg, con)
        codes = list(practices.practice_code)
        providers = list(orgs["providers"].provider_code)
        n_acute = int((orgs["providers"].provider_type == "acute").sum())
        per_chunk: list[tuple[str, str, str, str, str]] = [
            ("patients", "patients", _with_duplicates(_patients_out_sql(cfg, hoods)),
             _patc_columns(cfg), "patients"),
            ("conditions", "patient_conditions", _conditions_sql(cfg),
             _patc_columns(cfg, conditions=True), "none"),
            ("apc_spells", "apc_spells",
             _with_duplicates(_apc_sql(cfg, codes, providers, n_acute)),
             _patc_columns(cfg, ("em", "el"), conditions=True), "activity"),
            ("op_attendances", "op_attendances",
             _with_duplicates(_op_sql(cfg, codes, providers, n_acute)),
             _patc_columns(cfg, ("op",)), "activity"),
            ("ae_attendances", "ae_attendances",
             _with_duplicates(_ae_sql(cfg, codes, providers, n_acute)),
             _patc_columns(cfg, ("ae",)), "activity"),
            ("social_care_packages", "social_care_packages",
             _with_duplicates(_social_care_sql(cfg, norms)), _patc_columns(cfg, ("em_all",)),
             "activity"),
        ]

        def per_part(name: str, table: str, sql: str, patc_cols: str, tally: str) -> None:
            if name != "patients":
                step(name)
            clear(table)
            tasks = []
            for j in range(len(parts)):
                setup = (f"CREATE OR REPLACE VIEW pat_raw AS SELECT * FROM "
                         f"read_parquet('{raw[j]}')", *views)
                queries = [(f"CREATE OR REPLACE TABLE patc AS SELECT {patc_cols} FROM pat "
                            f"WHERE pidx >= {lo} AND pidx < {hi}", sql) for lo, hi in chunks[j]]
                tasks.append(task(table, queries, j if parted else None, setup, tally))
            for n, f, u_ in pool.run(tasks, (lambda i: progress(name, i, len(parts)))
                                     if progress and parted else None):
                rows[table] = rows.get(table, 0) + n
                _add(faults, f)
                if tally == "activity":
                    _add(unattributed, u_)

        for args in per_chunk[:-1]:
            per_part(*args)
        write("list_sizes", """
            SELECT practice_code, sex, CASE WHEN age >= 90 THEN '90+' ELSE
              CAST(age // 5 * 5 AS VARCHAR) || '-' || CAST(age // 5 * 5 + 4 AS VARCHAR) END
              AS age_band, count(*) AS patients FROM pat GROUP BY ALL ORDER BY ALL""")

        step("prescribing")
        write("prescribing", _prescribing_final(cfg, _prescribing_sql(cfg)))
        per_part(*per_chunk[-1])

        step("tariff")
        tariff = _tariff(cfg)
        for name, frame in tariff.items():
            con.register(f"{name}_df", frame)
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_df")
            write(name, f"SELECT * FROM {name}")
        _write_annex_a(tariff, out / "tariff_annex_a.xlsx")
        spells = (str(out / "apc_spells" / f"*.{cfg.format}") if parted
                  else str(out / f"apc_spells.{cfg.format}"))
        if cfg.format == "csv":
            con.execute(f"COPY (SELECT * FROM read_csv('{spells}', all_varchar = true)) "
                        f"TO '{tmp / 's.parquet'}' (FORMAT parquet)")
            spells = str(tmp / "s.parquet")
        (out / "tariff_settings.toml").write_text(settings_toml(con, spells, last_start))

        step("truth")
        (out / "truth").mkdir(exist_ok=True)
        by_year = ", ".join(f"lam_em_{y} AS latent_risk_{cfg.start_year + y}"
                            for y in range(cfg.years))
        _run(_Task(str(out / "truth" / "patient_risk.parquet"), (), ((None, f"""
            SELECT patient_id, practice_code, age, n_conditions,
            lam_em_{cfg.years - 1} AS latent_risk,
            lam_em_{cfg.years - 1} AS expected_emergency_admissions, {by_year},
            date_of_death FROM pat"""),), None), con)
        patients = int(con.execute("SELECT count(*) FROM pat_raw").fetchall()[0][0])
    finally:
        pool.close()
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)
    faults = dict(sorted((k, v) for k, v in faults.items() if v))
    summary = SynthSummary(rows, len(practices), patients, time.perf_counter() - t0, faults,
                           dict(sorted(unattributed.items())))
    manifest = {"config": {k: str(v) if isinstance(v, Path) else v
                           for k, v in asdict(cfg).items() if k not in EXECUTION},
                "seed": cfg.seed, "rows": rows, "practices": len(practices),
                "patients": patients, "faults": faults,
                "unattributed_activity": summary.unattributed,
                "parts": len(parts),
                "financial_years": [f"{y}/{(y + 1) % 100:02d}" for y in
                                    range(cfg.start_year, last_start + 1)]}
    if cfg.deliveries == "monthly":
        from pbc.synth.deliveries import split_into_deliveries

        split = split_into_deliveries(out, seed=cfg.seed, last_start_year=last_start)
        manifest["deliveries"] = {"folders": [f.name for f in split.folders],
                                  "rows": split.rows, "revisions": split.revisions}
        summary.deliveries = [f.name for f in split.folders]
        summary.revisions = sum(sum(v.values()) for v in split.revisions.values())
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    if progress:
        progress("done", len(steps), len(steps))
    return summary
