"""The synthetic health economy: contract-shaped, deterministic, and calibrated.

Ranges are the calibration targets of docs/calibration.md, widened for sampling
noise on an economy of about 100,000 patients.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import duckdb
import pytest

from pbc.contracts import TABLES
from pbc.synth import SynthConfig, generate
from pbc.warehouse import Warehouse
from pbc.warehouse.load import load

EMERGENCY = "('21','22','23','24','25','2A','2B','2C','2D','28')"
BAND = ("CASE WHEN age < 5 THEN '00-04' WHEN age < 15 THEN '05-14' WHEN age < 45 THEN '15-44' "
        "WHEN age < 65 THEN '45-64' WHEN age < 75 THEN '65-74' WHEN age < 85 THEN '75-84' "
        "ELSE '85+' END")


@pytest.fixture(scope="module")
def economy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Warehouse]:
    base = tmp_path_factory.mktemp("economy")
    generate(SynthConfig(practices=12, groups=3, local_authorities=2, seed=5), base / "in")
    wh = Warehouse(base / "wh")
    load(base / "in", wh)
    return base / "in", wh


def one(wh: Warehouse, sql: str) -> float:
    return float(wh.query(sql)[0][0])


def test_every_contract_table_is_written_with_contract_columns(economy) -> None:
    folder, _ = economy
    con = duckdb.connect()
    for name, table in TABLES.items():
        path = folder / f"{name}.parquet"
        assert path.exists(), name
        cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM '{path}'").fetchall()]
        assert cols == table.column_names, name
    assert (folder / "tariff_annex_a.xlsx").exists()
    assert (folder / "tariff_settings.toml").exists()
    assert (folder / "truth" / "patient_risk.parquet").exists()


@pytest.mark.slow
def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    # a small part size: the streamed, multi-part layout (used at scale) is deterministic too
    cfg = SynthConfig(practices=3, groups=2, local_authorities=1, seed=9, years=2,
                      start_year=2024, part_patients=15_000)

    def digest(folder: Path) -> dict[str, str]:
        return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file()}

    generate(cfg, tmp_path / "a")
    generate(cfg, tmp_path / "b")
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert "apc_spells/part-00001.parquet" in digest(tmp_path / "a")  # several parts
    generate(dataclasses.replace(cfg, seed=10), tmp_path / "c")
    part = "truth/patient_risk.parquet"
    assert digest(tmp_path / "a")[part] != digest(tmp_path / "c")[part]


def test_age_sex_pyramid(economy) -> None:
    _, wh = economy
    share = lambda cond: one(wh, f"SELECT avg(CASE WHEN {cond} THEN 1.0 ELSE 0 END) "  # noqa: E731
                             "FROM patients")
    assert 0.15 <= share("age >= 65") <= 0.22        # 18.4% (Census 2021)
    assert 0.15 <= share("age < 15") <= 0.21         # 17.4%
    assert 0.015 <= share("age >= 85") <= 0.035      # about 2.3%
    assert 0.49 <= share("sex = 'F'") <= 0.53        # 51%
    # pyramids differ by practice: the share aged 75+ spreads across practices
    spread = wh.query("SELECT min(s), max(s) FROM (SELECT practice_code, avg(CASE WHEN "
                      "age >= 75 THEN 1.0 ELSE 0 END) s FROM patients GROUP BY 1)")[0]
    assert spread[1] - spread[0] > 0.02


def test_condition_prevalence_rises_with_age(economy) -> None:
    _, wh = economy
    n = one(wh, "SELECT count(*) FROM patients")
    prev = dict(wh.query(f"SELECT condition, count(*) * 100.0 / {n} FROM patient_conditions "
                         "GROUP BY 1"))
    assert 11 <= prev["HYP"] <= 17          # QOF 13.6-15.3%
    assert 5 <= prev["DM"] <= 9             # 6.5-7.8%
    assert 2 <= prev["CHD"] <= 4.5          # 3.0%
    assert 1 <= prev["COPD"] <= 3           # 1.9%
    by_age = wh.query(f"""
        SELECT {BAND} b, avg(CASE WHEN c.patient_id IS NOT NULL THEN 1.0 ELSE 0 END)
        FROM patients p LEFT JOIN (SELECT DISTINCT patient_id FROM patient_conditions
          WHERE condition = 'HYP') c USING (patient_id) GROUP BY 1 ORDER BY 1""")
    rates = [r[1] for r in by_age]
    assert rates[2] < rates[3] < rates[4] < rates[5]  # 15-44 < 45-64 < 65-74 < 75-84


#: years registered in 2025/26 per patient (joiners, leavers and the dead count for the part
#: of the year they were on the list): rates are per registered person-year
PERSON_YEARS = ("date_diff('day', greatest(coalesce(registered_from, DATE '2025-04-01'), "
                "DATE '2025-04-01'), least(coalesce(registered_to + 1, DATE '2026-04-01'), "
                "DATE '2026-04-01')) / 365.0")


def test_emergency_admissions_by_age_band(economy) -> None:
    _, wh = economy
    rows = dict(wh.query(f"""
        WITH pb AS (SELECT {BAND} b, sum({PERSON_YEARS}) n FROM patients GROUP BY 1),
        eb AS (SELECT {BAND} b, count(*) e FROM apc_spells s JOIN patients p USING (patient_id)
               WHERE admission_method IN {EMERGENCY} GROUP BY 1)
        SELECT b, e * 1000.0 / n FROM pb JOIN eb USING (b)"""))
    assert 80 <= one(wh, f"SELECT count(*) * 1000.0 / (SELECT sum({PERSON_YEARS}) FROM "
                     f"patients) FROM apc_spells WHERE admission_method IN {EMERGENCY}") <= 110
    assert 330 <= rows["85+"] <= 520                # ≈420 per 1,000 at 85+
    assert rows["05-14"] < rows["45-64"] < rows["65-74"] < rows["75-84"] < rows["85+"]


def test_activity_mix(economy) -> None:
    _, wh = economy
    n = one(wh, "SELECT count(*) FROM patients")
    assert 0.72 <= one(wh, "SELECT avg(CASE WHEN patient_classification = '2' THEN 1.0 "
                       "ELSE 0 END) FROM apc_spells WHERE admission_method IN "
                       "('11','12','13')") <= 0.85            # day-case rate ≈80%
    assert 0.25 <= one(wh, "SELECT avg(CASE WHEN discharge_date = admission_date THEN 1.0 "
                       f"ELSE 0 END) FROM apc_spells WHERE admission_method IN {EMERGENCY}"
                       ) <= 0.42                              # ≈1/3 zero-day emergencies
    assert 0.05 <= one(wh, "SELECT avg(CASE WHEN attended THEN 0.0 ELSE 1 END) "
                       "FROM op_attendances") <= 0.09         # DNA 6-8%
    ratio = one(wh, "SELECT count(*) FILTER (WHERE first_attendance IN ('2','4')) * 1.0 / "
                "count(*) FILTER (WHERE first_attendance IN ('1','3')) FROM op_attendances")
    assert 1.9 <= ratio <= 2.5                                # follow-up : first ≈2.2
    assert 350 <= one(wh, f"SELECT count(*) * 1000.0 / {n} FROM ae_attendances") <= 480
    assert 0.28 <= one(wh, "SELECT avg(CASE WHEN department_type IN ('3','4') THEN 1.0 "
                       "ELSE 0 END) FROM ae_attendances") <= 0.42  # 35% at types 3/4
    items, cost = wh.query(f"SELECT sum(items) / {n}, sum(actual_cost) / {n} "
                           "FROM prescribing")[0]
    assert 15 <= items <= 23 and 120 <= cost <= 185          # 18.7 items, £151 a head
    assert 10 <= one(wh, f"SELECT count(*) * 1000.0 / {n} FROM social_care_packages") <= 22


def test_winter_and_seasonality(economy) -> None:
    _, wh = economy
    by_month = dict(wh.query(f"SELECT month, count(*) FROM apc_spells WHERE admission_method "
                             f"IN {EMERGENCY} AND primary_diagnosis LIKE 'J%' GROUP BY 1"))
    winter = by_month[9] + by_month[10] + by_month[11]   # Dec-Feb
    summer = by_month[4] + by_month[5] + by_month[6]     # Jul-Sep
    assert winter > 1.3 * summer


def test_latent_risk_drives_emergency_admissions(economy) -> None:
    folder, wh = economy
    con = wh.connect()
    truth = folder / "truth" / "patient_risk.parquet"
    corr = con.execute(f"""
        SELECT corr(t.latent_risk, coalesce(e.n, 0)) FROM '{truth}' t
        LEFT JOIN (SELECT patient_id, count(*) n FROM apc_spells WHERE admission_method IN
                   {EMERGENCY} GROUP BY 1) e USING (patient_id)""").fetchall()[0][0]
    assert corr > 0.2


def test_unattributed_activity_is_real_not_faulty(economy) -> None:
    _, wh = economy
    blank, unknown = wh.query("SELECT avg(CASE WHEN practice_code IS NULL THEN 1.0 ELSE 0 END),"
                              " avg(CASE WHEN practice_code = 'V81999' THEN 1.0 ELSE 0 END) "
                              "FROM apc_spells")[0]
    assert 0.001 < blank < 0.006 and 0.0005 < unknown < 0.004
    assert wh.query("SELECT count(*) FROM quarantine WHERE value = 'V81999'")[0][0] == 0


def test_practice_moves(economy) -> None:
    _, wh = economy
    assert wh.query("SELECT count(*) FROM practice_groups")[0][0] == 2
    moved = one(wh, """SELECT count(DISTINCT s.patient_id) FROM apc_spells s JOIN patients p
        USING (patient_id) WHERE s.practice_code <> p.practice_code
        AND s.practice_code <> 'V81999'""")
    assert moved > 0


def test_faults_at_the_configured_rate(economy, tmp_path: Path) -> None:
    _, wh = economy
    rows = one(wh, "SELECT sum(rows_in) FROM reconciliation WHERE source_table IN "
               "('apc_spells', 'op_attendances', 'ae_attendances')")
    bad = one(wh, "SELECT count(*) FROM quarantine WHERE source_table IN "
              "('apc_spells', 'op_attendances', 'ae_attendances')")
    assert 0.0005 <= bad / rows <= 0.002            # default 0.1%
    reasons = {r[0] for r in wh.query("SELECT reason FROM quarantine")}
    for fragment in ("before admission_date", "duplicate", "not a valid date",
                     "missing value", "above the maximum", "unknown provider_code"):
        assert any(fragment in r for r in reasons), fragment
    generate(SynthConfig(practices=2, groups=1, local_authorities=1, fault_rate=0),
             tmp_path / "clean")
    clean = Warehouse(tmp_path / "cw")
    assert load(tmp_path / "clean", clean).rows_quarantined == 0


def test_tariff_covers_the_activity(economy) -> None:
    _, wh = economy
    missing = wh.query("SELECT DISTINCT hrg_code FROM apc_spells WHERE hrg_code NOT IN "
                       "(SELECT hrg_code FROM tariff_apc)")
    assert missing == [("UZ01Z",)]  # deliberately unpriceable, as in life


@pytest.mark.slow
def test_nhse_file_gives_real_practices(nhse_file: Path, tmp_path: Path) -> None:
    import pandas as pd

    raw = pd.read_csv(nhse_file, dtype=str)
    icb = raw.groupby("ICS22").size().sort_values().index[0]  # the smallest ICB
    generate(SynthConfig(nhse_file=nhse_file, icb=icb, seed=2), tmp_path / "n")
    practices = pd.read_parquet(tmp_path / "n" / "practices.parquet")
    real = raw[icb == raw.ICS22]
    assert sorted(practices.practice_code) == sorted(real.Practice_Code)
    patients = pd.read_parquet(tmp_path / "n" / "patients.parquet")
    sizes = patients.groupby("practice_code").size()
    code = real.Practice_Code.iloc[0]
    expected = round(float(real.set_index("Practice_Code").loc[code, "pop 2022/23"]))
    assert abs(sizes[code] - expected) <= max(3, expected * 0.002)  # only faults differ
    assert set(practices.commissioner_code) == {icb}


def test_list_scale_keeps_every_practice_with_fewer_patients(nhse_file: Path,
                                                            tmp_path: Path) -> None:
    import pandas as pd

    raw = pd.read_csv(nhse_file, dtype=str)
    icb = raw.groupby("ICS22").size().sort_values().index[0]
    generate(SynthConfig(nhse_file=nhse_file, icb=icb, seed=2, list_scale=0.1,
                         fault_rate=0), tmp_path / "s")
    real = raw[icb == raw.ICS22].set_index("Practice_Code")["pop 2022/23"].astype(float)
    sizes = pd.read_parquet(tmp_path / "s" / "patients.parquet").groupby("practice_code").size()
    assert sorted(sizes.index) == sorted(real.index)
    expected = (real.round() * 0.1).round().clip(lower=50)
    assert (sizes.sort_index() == expected.sort_index().astype(int)).all()


def test_bad_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fault rate"):
        SynthConfig(fault_rate=0.9)
    with pytest.raises(ValueError, match="list_scale"):
        SynthConfig(list_scale=0)
    with pytest.raises(FileNotFoundError):
        generate(SynthConfig(nhse_file=tmp_path / "nope.csv"), tmp_path / "o")


def test_bad_execution_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="part_patients"):
        SynthConfig(part_patients=0)
    with pytest.raises(ValueError, match="workers"):
        SynthConfig(workers=0)


def test_memory_limit_is_shared_between_workers() -> None:
    from pbc.synth.generator import _memory_share

    assert _memory_share("4GB", 2) == "2048MB"
    assert _memory_share("4GB", 1) == "4GB"
    assert _memory_share("1.5GiB", 3) == "512MB"


def test_summary_counts_faults_by_kind_and_unattributed(economy, tmp_path: Path) -> None:
    folder, _ = economy
    import json

    manifest = json.loads((folder / "MANIFEST.json").read_text())
    faults = manifest["faults"]
    for kind in ("discharge_before_admission", "duplicate_id", "bad_date", "missing_date",
                 "age_out_of_range", "unknown_provider", "duplicate_patient_id",
                 "patient_age_out_of_range"):
        assert faults.get(kind, 0) > 0, kind
    con = duckdb.connect()
    # the duplicate count in the summary is exactly the repeated ids in the files
    dups = sum(con.execute(f"SELECT count(*) - count(DISTINCT {key}) FROM "
                           f"'{folder / t}.parquet'").fetchall()[0][0]
               for t, key in (("apc_spells", "spell_id"), ("op_attendances", "attendance_id"),
                              ("ae_attendances", "attendance_id")))
    assert dups == faults["duplicate_id"]
    activity = sum(manifest["rows"][t] for t in ("apc_spells", "op_attendances",
                                                  "ae_attendances"))
    table_faults = sum(v for k, v in faults.items() if not k.startswith(("patient_",
                                                                       "duplicate_patient")))
    assert 0.0006 <= table_faults / activity <= 0.0016
    unattributed = manifest["unattributed_activity"]
    assert 0.002 <= unattributed["blank_practice"] / activity <= 0.004
    assert 0.001 <= unattributed["unknown_practice"] / activity <= 0.003
    s = generate(SynthConfig(practices=2, groups=1, local_authorities=1, fault_rate=0),
                 tmp_path / "clean")
    assert s.faults == {}


def test_practice_age_mix_and_length_of_stay(economy) -> None:
    folder, _ = economy
    con = duckdb.connect()
    mean04, mean75 = con.execute(f"""SELECT avg(s04), avg(s75) FROM (SELECT practice_code,
        avg(CASE WHEN age < 5 THEN 1.0 ELSE 0 END) s04,
        avg(CASE WHEN age >= 75 THEN 1.0 ELSE 0 END) s75
        FROM '{folder}/patients.parquet' GROUP BY 1)""").fetchall()[0]
    assert 0.045 <= mean04 <= 0.075          # mean 5.9% (BMJ Open practice table)
    assert 0.05 <= mean75 <= 0.10            # mean 7.7%
    los = con.execute(f"""SELECT avg(date_diff('day', TRY_CAST(admission_date AS DATE),
        TRY_CAST(discharge_date AS DATE))), max(date_diff('day',
        TRY_CAST(admission_date AS DATE), TRY_CAST(discharge_date AS DATE)))
        FROM '{folder}/apc_spells.parquet' WHERE admission_method IN {EMERGENCY}""").fetchall()
    assert 6 <= los[0][0] <= 10 and los[0][1] >= 60   # mean 7.9-9.1, long tail
    refs = dict(con.execute(f"""SELECT referral_source, count(*) * 1.0 / sum(count(*)) OVER ()
        FROM '{folder}/op_attendances.parquet' WHERE first_attendance IN ('1','3')
        GROUP BY 1""").fetchall())
    assert 0.50 <= refs["03"] <= 0.58 and 0.15 <= refs["05"] <= 0.21   # 54% GP, 18% consultant


def test_chunked_economy_writes_parts_with_the_same_rows(tmp_path: Path) -> None:
    """A big economy streams as folders of Parquet parts; the rows are the same as in one
    file (the part size changes only the layout, never the economy)."""
    cfg = dict(practices=4, groups=2, local_authorities=1, seed=3)
    one_file = generate(SynthConfig(**cfg), tmp_path / "one")  # type: ignore[arg-type]
    parts = generate(SynthConfig(**cfg, part_patients=10_000),  # type: ignore[arg-type]
                     tmp_path / "parts")
    assert one_file.rows == parts.rows and one_file.faults == parts.faults
    assert len(list((tmp_path / "parts" / "apc_spells").glob("part-*.parquet"))) >= 2
    con = duckdb.connect()
    for table in ("patients", "apc_spells", "op_attendances", "social_care_packages"):
        a = con.execute(f"SELECT * FROM '{tmp_path}/one/{table}.parquet' "
                        "ORDER BY ALL").fetchall()
        b = con.execute(f"SELECT * FROM '{tmp_path}/parts/{table}/*.parquet' "
                        "ORDER BY ALL").fetchall()
        assert a == b, table


@pytest.mark.slow
def test_same_bytes_whatever_the_chunking_and_the_workers(tmp_path: Path) -> None:
    """Chunk size, worker processes and DuckDB threads change how the economy is generated,
    never a byte of it: every file (parts, truth, settings, manifest) hashes the same."""
    cfg = SynthConfig(practices=4, groups=2, local_authorities=1, seed=4,
                      part_patients=16_000)

    def digest(folder: Path) -> dict[str, str]:
        return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file()}

    generate(cfg, tmp_path / "whole")
    generate(dataclasses.replace(cfg, chunk_patients=1, workers=2, threads=1),
             tmp_path / "chunked")  # a chunk per practice, two processes, a thread each
    whole = digest(tmp_path / "whole")
    assert "apc_spells/part-00001.parquet" in whole  # several parts
    assert whole == digest(tmp_path / "chunked")


def test_progress_is_reported(tmp_path: Path) -> None:
    seen: list[tuple[str, int, int]] = []
    generate(SynthConfig(practices=1, groups=1, local_authorities=1),
             tmp_path / "p", progress=lambda s, d, t: seen.append((s, d, t)))
    assert seen[-1][0] == "done" and {"patients", "apc_spells", "tariff"} <= {s for s, *_ in seen}


# ------------------------------------------------------------------ population dynamics
def test_deaths_at_the_national_rate_and_no_activity_after_death(economy) -> None:
    _, wh = economy
    n = one(wh, "SELECT count(*) FROM patients")
    died = one(wh, "SELECT count(*) FROM patients WHERE date_of_death IS NOT NULL")
    assert 0.006 <= died / n <= 0.013        # ≈0.9% a year (ONS deaths 2019)
    # registration ends on the day of death
    assert one(wh, "SELECT count(*) FROM patients WHERE date_of_death IS NOT NULL "
               "AND registered_to IS DISTINCT FROM date_of_death") == 0
    # the old die more: 85+ at least 10 times the rate under 65
    old, young = wh.query("SELECT avg(CASE WHEN date_of_death IS NOT NULL THEN 1.0 ELSE 0 END)"
                          " FILTER (WHERE age >= 85), avg(CASE WHEN date_of_death IS NOT NULL"
                          " THEN 1.0 ELSE 0 END) FILTER (WHERE age < 65) FROM patients")[0]
    assert old > 10 * young
    for table, col in (("apc_spells", "admission_date"), ("apc_spells", "discharge_date"),
                       ("ae_attendances", "arrival_date"),
                       ("op_attendances", "appointment_date"),
                       ("social_care_packages", "start_date"),
                       ("social_care_packages", "end_date")):
        after = one(wh, f"SELECT count(*) FROM {table} a JOIN patients p USING (patient_id) "
                    f"WHERE a.{col} > p.date_of_death")
        assert after == 0, (table, col)
    # conditions are not recorded after death
    assert one(wh, "SELECT count(*) FROM patient_conditions c JOIN patients p "
               "USING (patient_id) WHERE c.recorded_date > p.registered_to") == 0


def test_leavers_and_joiners(economy) -> None:
    _, wh = economy
    n = one(wh, "SELECT count(*) FROM patients")
    left = one(wh, "SELECT count(*) FROM patients WHERE registered_to IS NOT NULL "
               "AND date_of_death IS NULL")
    joined = one(wh, "SELECT count(*) FROM patients WHERE registered_from >= DATE '2025-04-01'")
    assert 0.035 <= left / n <= 0.075        # about 6% a year move away
    assert 0.045 <= joined / n <= 0.09       # 6% join, plus the 2% who change practice
    # a leaver's activity stops when they leave; a joiner's starts when they join
    assert one(wh, "SELECT count(*) FROM apc_spells a JOIN patients p USING (patient_id) "
               "WHERE a.admission_date > p.registered_to") == 0
    assert one(wh, "SELECT count(*) FROM ae_attendances a JOIN patients p USING (patient_id) "
               "WHERE a.arrival_date < p.registered_from "
               "AND a.practice_code = p.practice_code") == 0


def test_new_diagnoses_during_the_data(economy) -> None:
    _, wh = economy
    dated, new, undated = wh.query(
        "SELECT count(recorded_date), count(*) FILTER (WHERE recorded_date >= "
        "DATE '2025-04-01'), count(*) FILTER (WHERE recorded_date IS NULL) "
        "FROM patient_conditions")[0]
    assert 0.05 <= new / dated <= 0.15           # ≈1/10 of a register diagnosed each year
    assert 0.015 <= undated / (dated + undated) <= 0.045   # a few records carry no date


@pytest.mark.slow
def test_ageing_and_onset_change_the_latent_risk(tmp_path: Path) -> None:
    generate(SynthConfig(practices=4, groups=2, local_authorities=1, seed=4, years=2,
                         start_year=2024), tmp_path / "e")
    con = duckdb.connect()
    truth = tmp_path / "e" / "truth" / "patient_risk.parquet"
    # aged 85 in the last year, 84 the year before: the 85+ rate (420 per 1,000) replaces
    # the 75-84 rate (250): the latent risk rises on turning 85
    ratio = con.execute(f"SELECT avg(latent_risk_2025 / latent_risk_2024) FROM '{truth}' "
                        "WHERE age = 85").fetchall()[0][0]
    assert ratio > 1.3
    # a condition diagnosed in the second year raises only the second year's risk
    cond = con.execute(f"""SELECT avg(latent_risk_2025 / latent_risk_2024) FROM '{truth}' t
        JOIN (SELECT DISTINCT patient_id FROM '{tmp_path}/e/patient_conditions.parquet'
              WHERE recorded_date BETWEEN '2025-04-01' AND '2025-09-30') c USING (patient_id)
        WHERE t.age NOT IN (5, 15, 45, 65, 75, 85)""").fetchall()[0][0]
    assert cond > 1.1
