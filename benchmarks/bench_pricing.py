"""Pricing and attribution: pbc vs hand-written DuckDB SQL vs pandas, on the same warehouse.

A synthetic economy (``--scale`` of England: 0.1 is 655 practices, about 16 million
activity rows) is generated and loaded once (``prepare``; kept in ``--workdir`` and reused
by later runs of the same scale unless ``--fresh``). Then, in the same run, each of the
three does the **same work** on the loaded warehouse, in a fresh process, timed end to end
(imports included):

Inputs
    ``apc_spells``, ``op_attendances``, ``ae_attendances`` and ``prescribing`` (all the
    activity pbc prices), the tariff tables, ``providers`` (MFF), ``practices``,
    ``practice_groups``, ``commissioners`` and the tariff settings file (marginal rate
    baselines per contract, top-up, telephone and A&E department fractions, SSEM rule).
Rules
    the Payment by Results rules of :mod:`pbc.pricing`: base price by admission method and
    patient classification, long stay beyond the trim point, reduced short stay emergency
    tariff, specialised top-ups, MFF, the emergency marginal rate per contract and
    financial year (running total of the rounded values in discharge order, the straddling
    spell split, the amount paid above the baseline rounded at each spell so that a
    contract's prices add up exactly), outpatients (DNA, procedure price, first/follow-up,
    telephone fractions), A&E (department type fractions), prescribing at actual cost;
    unpriced rows kept with a reason; exact decimal money rounded half up once.
Attribution
    practice known or not, commissioner (practice's, else the activity's own, else the only
    one), group as at the activity date (``practice_groups`` windows, latest start wins).
Output
    every row of ``priced_activity`` with all 24 columns of the contract (base price, the
    five adjustments each in its own column, price, ``pricing_rule`` text, unpriced
    reason, group, commissioner, attributed), written as Parquet partitioned by financial
    year and month; then the reconciliation totals per activity type (rows in / priced /
    unpriced, money priced / attributed / unattributed) and the totals by service line and
    by practice, read back from the written files.

The three:

* **pbc**: ``pbc price`` (:func:`pbc.services.pricing.run_pricing`): the Ibis expressions
  (:mod:`pbc.pricing`, :mod:`pbc.attribution`) built and compiled for DuckDB (this is part
  of the time, about 1 s), its rows streamed from DuckDB to pyarrow's partitioned Parquet
  writer, in a warehouse transaction (a new version, swapped in atomically),
  reconciliation rows written to the warehouse.
* **hand-written SQL**: the same rules as one DuckDB query written by hand (settings
  pasted in as literals), written to partitioned Parquet, and one aggregate query over
  the written files for all the totals. It runs twice: ``COPY`` (DuckDB's own
  partitioned writer, tuned with ``partitioned_write_flush_threshold``; the SQL a person
  would write) and streamed into the same writer as pbc (``hand_sql_same_writer_s``: the
  ratio to it isolates what the Ibis expressions cost). It is written to be fast, not slowed:
  rule-text pieces made once per tariff or provider row, ``concat_ws``, the running
  totals of the marginal rate sorted for the spells it applies to only. Money is DuckDB's
  own exact DECIMAL arithmetic at the types DuckDB derives: 64-bit, at most 18 digits
  (with this economy's 1- and 2-place fractions a spell may reach £99,999,999.99; with
  6-place fractions a 14-place product overflows, with an error, above £9,999.99; pbc's
  64-bit arithmetic holds up to £10^10 whatever the settings). Its output is checked
  against pbc's, every row and column (``rows_differing_pbc_vs_sql``).
* **pandas**: a straightforward pandas implementation (merges, vectorised columns,
  ``groupby().cumsum()`` for the marginal rate, string columns for the rule text), money in
  float64 rounded at the end (so a half-penny tie can round the wrong way: its totals
  differ by pennies), written with ``to_parquet(partition_cols=...)`` and read back for the
  totals. It holds everything in memory (about 2.7 GB at 1% scale), so it runs with an
  allocation limit (``--pandas-memory-gb``) and is reported as not finished if it hits it
  rather than pushing a shared machine into the OOM killer.

Prints seconds, rows/s, peak RSS, the ratios (targets: pbc within 1.3x of the SQL and at
least 20x faster than pandas), the totals of each, and pbc extrapolated to the national
year (about 170 million rows).

    python benchmarks/bench_pricing.py [--scale 0.1] [--workdir bench-out] [--fresh]
        [--skip-pandas] [--pandas-memory-gb 12]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import NATIONAL_ACTIVITY_ROWS_PER_YEAR, NATIONAL_PRACTICES, measure, report

ELECTIVE = ("11", "12", "13")
EMERGENCY = ("21", "22", "23", "24", "25", "2A", "2B", "2C", "2D", "28")
NON_ELECTIVE = (*EMERGENCY, "31", "32", "81", "82", "83")
ATTRIBUTED_COLUMNS = (
    "activity_type", "activity_id", "patient_id", "practice_code", "group_code",
    "commissioner_code", "provider_code", "activity_date", "financial_year", "month",
    "service_line", "hrg_code", "treatment_function_code", "los_days", "base_price",
    "long_stay_adjustment", "short_stay_adjustment", "top_up_adjustment", "mff_adjustment",
    "marginal_rate_adjustment", "price", "pricing_rule", "unpriced_reason", "attributed",
)
SUMMARY_SQL = """
    CREATE TEMP TABLE summary AS
    SELECT activity_type, service_line, practice_code, attributed, count(*) AS n,
           count(price) AS n_priced, coalesce(sum(price), 0) AS money
    FROM read_parquet('{glob}') GROUP BY ALL"""


def prepare(scale: float, base: str) -> int:
    from pbc.synth import SynthConfig, generate
    from pbc.warehouse import Warehouse
    from pbc.warehouse.load import load

    practices = max(10, round(NATIONAL_PRACTICES * scale))
    generate(SynthConfig(practices=practices, groups=max(4, practices // 40),
                         local_authorities=max(2, practices // 200)), Path(base) / "in")
    return load(Path(base) / "in", Warehouse(Path(base) / "wh")).rows_in


# ------------------------------------------------------------------------------------- pbc

def run_pbc(base: str) -> int:
    from pbc.services.pricing import run_pricing
    from pbc.warehouse import Warehouse

    r = run_pricing(Warehouse(Path(base) / "wh"))
    return sum(int(x["rows_in"]) for x in r.reconciliation)


# ------------------------------------------------------------------------ hand-written SQL

def _settings(base: str) -> dict[str, Any]:
    with open(Path(base) / "in" / "tariff_settings.toml", "rb") as f:
        return tomllib.load(f)


def _dec(x: Any) -> Decimal:
    return Decimal(repr(x)) if isinstance(x, float) else Decimal(x)


def _pct(x: Decimal) -> str:
    return f"{(x * 100).normalize():f}%"


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _in(codes: tuple[str, ...]) -> str:
    return "(" + ", ".join(_q(c) for c in codes) + ")"


def _year(baseline: dict[str, Any], settings: dict[str, Any]) -> str:
    """A baseline's financial year as stored (``2025-26``): its own, else the settings'."""
    from pbc.pricing.settings import canonical_year

    return canonical_year(baseline.get("financial_year") or settings["financial_year"])


def hand_sql_query(base: str) -> str:
    """The whole pricing and attribution as one SELECT, settings pasted in."""
    s = _settings(base)
    mret = s.get("emergency_marginal_rate", {})
    rate = _dec(mret.get("rate", 0.30))
    baselines = [(b["commissioner_code"], b["provider_code"], _year(b, s),
                  _dec(b["baseline"])) for b in mret.get("baseline", [])]
    sse = s.get("short_stay_emergency", {})
    min_age, max_los = sse.get("min_age", 19), sse.get("max_length_of_stay", 1)
    top = {k: _dec(v) for k, v in s.get("top_up", {"children": 0.60, "orthopaedic": 0.24,
                                                    "spinal": 0.32,
                                                    "neurosciences": 0.28}).items()}
    opt = s.get("outpatients", {})
    f1 = _dec(opt.get("telephone_first_fraction", 1))
    f2 = _dec(opt.get("telephone_follow_up_fraction", 1))
    dept = {k: _dec(v) for k, v in sorted(s.get("ae", {}).get(
        "department_type_fraction", {"1": 1, "2": 1, "3": 1, "4": 1}).items())}
    regular = s.get("apc", {}).get("regular_attender", "day_case")
    baseline_rows = ", ".join(f"({_q(c)}, {_q(p)}, {_q(y)}, {b}::DECIMAL(18,2))"
                              for c, p, y, b in baselines) or "(NULL, NULL, NULL, NULL)"
    top_factor = " ".join(f"WHEN {_q(k)} THEN {v}" for k, v in top.items())
    top_text = " ".join(f"WHEN {_q(k)} THEN {_q(f'; top-up {k} {_pct(v)}')}"
                        for k, v in top.items() if v != 0)
    dept_fraction = " ".join(f"WHEN {_q(k)} THEN {v}" for k, v in dept.items())
    dept_text = " ".join(f"WHEN {_q(k)} THEN {_q(f'price x {_pct(v)}')}"
                         for k, v in dept.items() if v != 1)

    def text(c: str) -> str:  # a code for rule text
        return f"CASE WHEN {c} IS NULL OR trim({c}) = '' THEN '(blank)' ELSE {c} END"

    return f"""
WITH
single AS (SELECT CASE WHEN count(DISTINCT commissioner_code) = 1
                       THEN max(commissioner_code) END AS code FROM commissioners),
prov AS (SELECT provider_code, CAST(mff_payment_index AS DECIMAL(10,6)) AS mff,
  '; MFF ' || regexp_replace(regexp_replace(CAST(CAST(mff_payment_index AS DECIMAL(10,6))
    AS VARCHAR), '0+$', ''), '\\.$', '') AS mff_rule FROM providers),
baselines (b_commissioner, b_provider, b_year, baseline) AS (VALUES {baseline_rows}),
-- ---------------------------------------------------------------- APC spells
s0 AS (
  SELECT s.spell_id AS activity_id, s.patient_id, s.practice_code, s.commissioner_code,
    s.provider_code, s.discharge_date AS activity_date, s.financial_year, s.month,
    s.admission_method AS method, s.patient_classification AS cp, s.hrg_code AS hrg,
    s.treatment_function_code AS tfc, s.age_on_admission AS age, s.top_up_category AS cat,
    date_diff('day', s.admission_date, s.discharge_date) AS los,
    t.hrg_code AS t_hrg, t.day_case_price AS dc, t.ordinary_elective_price AS oe,
    t.combined_elective_price AS ce, t.elective_trim_days AS e_trim,
    t.non_elective_price AS ne, t.non_elective_trim_days AS ne_trim,
    t.excess_bed_day_price AS ebd, t.sse_applies, t.sse_price,
    p.provider_code IS NOT NULL AS provider_known, p.mff, p.mff_rule,
    {text('t.hrg_code')} AS t_hrg_text,
    s.admission_method IN {_in(ELECTIVE)} AS elective,
    s.admission_method IN {_in(NON_ELECTIVE)} AS non_elective,
    s.admission_method IN {_in(EMERGENCY)} AS emergency,
    s.patient_classification IN ('3', '4') AS regular
  FROM apc_spells s LEFT JOIN tariff_apc t ON t.hrg_code = s.hrg_code
  LEFT JOIN prov p ON p.provider_code = s.provider_code),
s1 AS (SELECT *, elective AND (cp = '2' OR (regular AND {regular == 'day_case'}))
                 AS day_case_like FROM s0),
s2 AS (SELECT *,
    CASE WHEN day_case_like THEN coalesce(dc, ce) WHEN elective THEN coalesce(oe, ce)
         WHEN non_elective THEN ne END AS base,
    CASE WHEN day_case_like AND dc IS NOT NULL THEN 'day case price'
         WHEN day_case_like THEN 'combined elective price (no day case price)'
         WHEN elective AND oe IS NOT NULL THEN 'ordinary elective price'
         WHEN elective THEN 'combined elective price (no ordinary elective price)'
         ELSE 'non-elective price' END AS base_label,
    CASE WHEN elective THEN e_trim ELSE ne_trim END AS trim_days,
    coalesce(upper(sse_applies) = 'Y' AND emergency AND age >= {min_age} AND los >= 0
             AND los <= {max_los}, false) AS ssem,
    {text('hrg')} AS hrg_text,
    CASE WHEN day_case_like THEN 'APC elective day case ' WHEN elective
         THEN 'APC elective ' ELSE 'APC non-elective ' END AS prefix
  FROM s1),
s3 AS (SELECT *, CASE WHEN ssem THEN 0 WHEN trim_days IS NOT NULL AND los > trim_days
                      THEN los - trim_days ELSE 0 END AS excess FROM s2),
s4 AS (SELECT *, CASE
    WHEN t_hrg IS NULL THEN 'HRG ' || hrg_text || ' not in tariff_apc'
    WHEN NOT provider_known THEN 'provider ' || {text('provider_code')}
         || ' not in providers (no MFF payment index)'
    WHEN mff IS NULL THEN 'provider ' || {text('provider_code')} || ' has no MFF payment index'
    WHEN NOT (elective OR non_elective) THEN 'admission method ' || {text('method')}
         || ' not recognised'
    WHEN los IS NULL OR los < 0 THEN 'length of stay unknown or negative'
    WHEN elective AND regular AND {regular == 'unpriced'}
         THEN 'regular day/night attender: priced locally, outside the tariff'
    WHEN base IS NULL AND day_case_like
         THEN 'no day case or combined elective price for HRG ' || hrg_text
    WHEN base IS NULL AND elective
         THEN 'no ordinary elective or combined elective price for HRG ' || hrg_text
    WHEN base IS NULL THEN 'no non-elective price for HRG ' || hrg_text
    WHEN ssem AND sse_price IS NULL THEN 'reduced short stay emergency tariff applies but HRG '
         || hrg_text || ' has no SSEM price'
    WHEN excess > 0 AND ebd IS NULL THEN 'long stay beyond trim point but HRG ' || hrg_text
         || ' has no excess bed day price'
    END AS unpriced_reason FROM s3),
s5 AS (SELECT *,
    CASE WHEN unpriced_reason IS NULL THEN base END AS base_price,
    CASE WHEN unpriced_reason IS NULL THEN CAST(excess * coalesce(ebd, 0) AS DECIMAL(18,2))
         END AS long_stay_adjustment,
    CASE WHEN unpriced_reason IS NULL THEN CASE WHEN ssem THEN sse_price - base ELSE 0 END
         END AS short_stay_adjustment,
    1 + CASE cat {top_factor} ELSE 0 END AS top_factor
  FROM s4),
s6 AS (SELECT *, CAST(base_price + long_stay_adjustment + short_stay_adjustment
                      AS DECIMAL(18,2)) AS c2 FROM s5),
s7 AS (SELECT *, c2 * top_factor AS c3 FROM s6),
s8 AS (SELECT s7.*, c3 * mff AS c4, round(c3, 2) AS r3, round(c3 * mff, 2) AS r4,
    CASE WHEN NOT pr.practice_code IS NULL THEN pr.commissioner_code
         WHEN NOT (s7.commissioner_code IS NULL OR trim(s7.commissioner_code) = '')
         THEN s7.commissioner_code ELSE (SELECT code FROM single) END AS contract_commissioner
  FROM s7 LEFT JOIN practices pr ON pr.practice_code = s7.practice_code),
s9 AS (SELECT s8.*, b.baseline, coalesce(emergency AND c4 IS NOT NULL, false) AS eligible,
    coalesce(emergency AND c4 IS NOT NULL AND b.baseline IS NOT NULL, false) AS mret FROM s8
  LEFT JOIN baselines b ON b.b_commissioner = s8.contract_commissioner
                       AND b.b_provider = s8.provider_code
                       AND b.b_year = s8.financial_year),
s10 AS (SELECT *, sum(r4) OVER (
    PARTITION BY contract_commissioner, provider_code, financial_year
    ORDER BY activity_date, activity_id ROWS UNBOUNDED PRECEDING) AS cum FROM s9 WHERE mret
  UNION ALL SELECT *, NULL AS cum FROM s9 WHERE NOT mret),
s11 AS (SELECT *, greatest(0, cum - baseline) AS x, greatest(0, cum - r4 - baseline) AS x0
  FROM s10),
s12 AS (SELECT *, CASE WHEN mret THEN x - x0 ELSE 0 END AS above,
    CASE WHEN mret THEN round({rate} * x, 2) - round({rate} * x0, 2) - (x - x0)
         WHEN r4 IS NOT NULL THEN 0 END AS mra FROM s11),
apc AS (SELECT 'apc' AS activity_type, activity_id, patient_id, practice_code,
    contract_commissioner AS commissioner_code, provider_code, activity_date,
    financial_year, month,
    CASE WHEN day_case_like THEN 'day_case' WHEN elective THEN 'elective_inpatient'
         ELSE 'non_elective' END AS service_line,
    hrg AS hrg_code, tfc AS treatment_function_code, los AS los_days, base_price,
    long_stay_adjustment, short_stay_adjustment, r3 - c2 AS top_up_adjustment,
    r4 - r3 AS mff_adjustment,
    mra AS marginal_rate_adjustment, r4 + mra AS price,
    CASE WHEN unpriced_reason IS NULL THEN concat_ws('', prefix, t_hrg_text, ': ',
      CASE WHEN ssem THEN 'reduced short stay emergency price'
           WHEN excess > 0 THEN concat_ws('', 'base + ', excess, ' excess bed days')
           ELSE base_label END,
      CASE cat {top_text} ELSE '' END, mff_rule, CASE WHEN above > 0
           THEN '; marginal rate {_pct(rate)} above contract baseline'
           WHEN eligible AND NOT mret
           THEN '; no marginal rate: no contract baseline for ' || financial_year ELSE '' END)
    ELSE concat_ws('', prefix, hrg_text, ': unpriced') END AS pricing_rule,
    unpriced_reason
  FROM s12),
-- ---------------------------------------------------------------- outpatients
o0 AS (
  SELECT o.attendance_id AS activity_id, o.patient_id, o.practice_code, o.commissioner_code,
    o.provider_code, o.appointment_date AS activity_date, o.financial_year, o.month,
    o.treatment_function_code AS tfc, o.first_attendance AS code, o.attended,
    o.hrg_code AS proc_hrg, f.treatment_function_code AS o_tfc,
    f.first_attendance_price AS first_price, f.follow_up_price AS follow_price,
    pp.outpatient_procedure_price AS proc_price,
    p.provider_code IS NOT NULL AS provider_known, p.mff, p.mff_rule,
    f.tfc_text AS o_tfc_text, pp.hrg_text AS p_hrg_text,
    o.first_attendance IN ('1', '3') AS first,
    o.first_attendance IN ('1', '2', '3', '4') AS known_code,
    o.first_attendance IN ('3', '4') AS tele,
    coalesce(o.attended = false, false) AS dna,
    pp.outpatient_procedure_price IS NOT NULL AS procedure,
    NOT (o.hrg_code IS NULL OR trim(o.hrg_code) = '') AS has_proc_hrg,
    {text('o.treatment_function_code')} AS tfc_text
  FROM op_attendances o
  LEFT JOIN (SELECT *, {text('treatment_function_code')} AS tfc_text FROM tariff_op) f
    ON f.treatment_function_code = o.treatment_function_code
  LEFT JOIN (SELECT hrg_code, outpatient_procedure_price, {text('hrg_code')} AS hrg_text
             FROM tariff_apc WHERE outpatient_procedure_price IS NOT NULL) pp
    ON pp.hrg_code = o.hrg_code
  LEFT JOIN prov p ON p.provider_code = o.provider_code),
o1 AS (SELECT *,
    CASE WHEN procedure AND NOT dna THEN proc_price
         ELSE CASE WHEN first THEN first_price ELSE follow_price END
              * CASE WHEN tele THEN CASE WHEN first THEN {f1} ELSE {f2} END ELSE 1 END
    END AS base,
    CASE WHEN first AND tele THEN 'OP first attendance by telephone/video TFC '
         WHEN first THEN 'OP first attendance TFC '
         WHEN tele THEN 'OP follow-up by telephone/video TFC '
         ELSE 'OP follow-up TFC ' END AS prefix,
    CASE WHEN first AND tele THEN {_q(': first attendance price x ' + _pct(f1))}
         WHEN first THEN ': first attendance price'
         WHEN tele THEN {_q(': follow-up price x ' + _pct(f2))}
         ELSE ': follow-up price' END AS att_desc
  FROM o0),
o2 AS (SELECT *, CASE
    WHEN dna THEN NULL
    WHEN attended IS NULL THEN 'attended is blank'
    WHEN NOT known_code THEN 'first_attendance code ' || {text('code')} || ' not recognised'
    WHEN NOT procedure AND o_tfc IS NULL THEN 'treatment function ' || tfc_text
         || ' not in tariff_op'
    WHEN NOT provider_known THEN 'provider ' || {text('provider_code')}
         || ' not in providers (no MFF payment index)'
    WHEN mff IS NULL THEN 'provider ' || {text('provider_code')} || ' has no MFF payment index'
    WHEN base IS NULL THEN CASE WHEN first
         THEN 'no first attendance price for treatment function ' || tfc_text
         ELSE 'no follow-up price for treatment function ' || tfc_text END
    END AS unpriced_reason FROM o1),
o3 AS (SELECT *, CASE WHEN dna THEN 0 WHEN unpriced_reason IS NULL THEN base END AS pre,
                 CASE WHEN dna THEN 1 ELSE mff END AS factor FROM o2),
o4 AS (SELECT *, round(pre, 2) AS base_price, round(pre * factor, 2) AS price FROM o3),
op AS (SELECT 'op' AS activity_type, activity_id, patient_id, practice_code,
    commissioner_code, provider_code, activity_date, financial_year, month,
    CASE WHEN procedure AND NOT dna THEN 'outpatient_procedure'
         WHEN first THEN 'outpatient_first' ELSE 'outpatient_follow_up' END AS service_line,
    proc_hrg AS hrg_code, tfc AS treatment_function_code, NULL::BIGINT AS los_days,
    base_price, CASE WHEN price IS NOT NULL THEN 0 END AS long_stay_adjustment,
    CASE WHEN price IS NOT NULL THEN 0 END AS short_stay_adjustment,
    CASE WHEN price IS NOT NULL THEN 0 END AS top_up_adjustment,
    price - base_price AS mff_adjustment,
    CASE WHEN price IS NOT NULL THEN 0 END AS marginal_rate_adjustment, price,
    CASE WHEN dna THEN 'DNA: not paid'
         WHEN unpriced_reason IS NULL AND procedure THEN concat_ws('', 'OP procedure HRG ',
           p_hrg_text, ': outpatient procedure price', mff_rule)
         WHEN unpriced_reason IS NULL AND has_proc_hrg THEN concat_ws('', prefix, o_tfc_text,
           att_desc, ' (HRG ', proc_hrg, ' has no outpatient procedure price)', mff_rule)
         WHEN unpriced_reason IS NULL THEN concat_ws('', prefix, o_tfc_text, att_desc,
           mff_rule)
         ELSE concat_ws('', prefix, tfc_text, ': unpriced') END AS pricing_rule,
    unpriced_reason
  FROM o4),
-- ---------------------------------------------------------------- A&E
e0 AS (
  SELECT e.attendance_id AS activity_id, e.patient_id, e.practice_code, e.commissioner_code,
    e.provider_code, e.arrival_date AS activity_date, e.financial_year, e.month,
    e.hrg_code AS hrg, t.hrg_code AS t_hrg, p.provider_code IS NOT NULL AS provider_known,
    p.mff, p.mff_rule, CASE e.department_type {dept_fraction} END AS fraction,
    t.price * CASE e.department_type {dept_fraction} END AS base, e.department_type AS dept,
    CASE e.department_type {dept_text} ELSE 'price' END AS desc_text, t.t_hrg_text,
    {text('e.hrg_code')} AS hrg_text, {text('e.department_type')} AS dept_text
  FROM ae_attendances e
  LEFT JOIN (SELECT *, {text('hrg_code')} AS t_hrg_text FROM tariff_ae) t
    ON t.hrg_code = e.hrg_code
  LEFT JOIN prov p ON p.provider_code = e.provider_code),
e1 AS (SELECT *, CASE
    WHEN t_hrg IS NULL THEN 'HRG ' || hrg_text || ' not in tariff_ae'
    WHEN fraction IS NULL THEN 'department type ' || dept_text || ' not recognised'
    WHEN NOT provider_known THEN 'provider ' || {text('provider_code')}
         || ' not in providers (no MFF payment index)'
    WHEN mff IS NULL THEN 'provider ' || {text('provider_code')} || ' has no MFF payment index'
    WHEN base IS NULL THEN 'no A&E price for HRG ' || hrg_text
    END AS unpriced_reason FROM e0),
e2 AS (SELECT *, CASE WHEN unpriced_reason IS NULL THEN base END AS pre FROM e1),
e3 AS (SELECT *, round(pre, 2) AS base_price, round(pre * mff, 2) AS price FROM e2),
ae AS (SELECT 'ae' AS activity_type, activity_id, patient_id, practice_code,
    commissioner_code, provider_code, activity_date, financial_year, month,
    'ae' AS service_line, hrg AS hrg_code, NULL::VARCHAR AS treatment_function_code,
    NULL::BIGINT AS los_days, base_price,
    CASE WHEN price IS NOT NULL THEN 0 END AS long_stay_adjustment,
    CASE WHEN price IS NOT NULL THEN 0 END AS short_stay_adjustment,
    CASE WHEN price IS NOT NULL THEN 0 END AS top_up_adjustment,
    price - base_price AS mff_adjustment,
    CASE WHEN price IS NOT NULL THEN 0 END AS marginal_rate_adjustment, price,
    CASE WHEN unpriced_reason IS NULL THEN concat_ws('', 'A&E type ', dept, ' ', t_hrg_text,
           ': ', desc_text, mff_rule)
         ELSE concat_ws('', 'A&E type ', dept_text, ' ', hrg_text, ': unpriced') END
      AS pricing_rule, unpriced_reason
  FROM e3),
-- ---------------------------------------------------------------- prescribing
rx AS (SELECT 'prescribing' AS activity_type,
    coalesce(practice_code, '') || '/' || year_month || '/' || coalesce(bnf_code, '')
      AS activity_id, NULL::VARCHAR AS patient_id, practice_code,
    NULL::VARCHAR AS commissioner_code, NULL::VARCHAR AS provider_code,
    CAST(year_month || '-01' AS DATE) AS activity_date, financial_year, month,
    'prescribing' AS service_line, NULL::VARCHAR AS hrg_code,
    NULL::VARCHAR AS treatment_function_code, NULL::BIGINT AS los_days,
    actual_cost AS base_price, CASE WHEN actual_cost IS NOT NULL THEN 0 END
      AS long_stay_adjustment, CASE WHEN actual_cost IS NOT NULL THEN 0 END
      AS short_stay_adjustment, CASE WHEN actual_cost IS NOT NULL THEN 0 END
      AS top_up_adjustment, CASE WHEN actual_cost IS NOT NULL THEN 0 END AS mff_adjustment,
    CASE WHEN actual_cost IS NOT NULL THEN 0 END AS marginal_rate_adjustment,
    actual_cost AS price, 'Prescribing: actual cost' AS pricing_rule,
    CASE WHEN actual_cost IS NULL THEN 'actual_cost is blank' END AS unpriced_reason
  FROM prescribing),
-- ---------------------------------------------------------------- attribution
allrows AS (SELECT * FROM apc UNION ALL SELECT * FROM op UNION ALL SELECT * FROM ae
            UNION ALL SELECT * FROM rx),
pg AS (SELECT * FROM practice_groups WHERE valid_from IS NOT NULL),
cuts AS (SELECT practice_code, valid_from AS cut FROM pg UNION
         SELECT practice_code, CAST(valid_to + 1 AS DATE) FROM pg WHERE valid_to IS NOT NULL),
segs AS (SELECT practice_code, cut AS s_from,
    coalesce(CAST(lead(cut) OVER (PARTITION BY practice_code ORDER BY cut) - 1 AS DATE),
             DATE '9999-12-31') AS s_to FROM cuts),
seg AS (SELECT s.practice_code, s.s_from, s.s_to, pg.group_code FROM segs s
  JOIN pg ON pg.practice_code = s.practice_code AND pg.valid_from <= s.s_from
         AND (pg.valid_to IS NULL OR s.s_from <= pg.valid_to)
  QUALIFY row_number() OVER (PARTITION BY s.practice_code, s.s_from
                             ORDER BY pg.valid_from DESC, pg.group_code) = 1)
SELECT r.activity_type, r.activity_id, r.patient_id, r.practice_code,
  CASE WHEN pr.practice_code IS NOT NULL THEN coalesce(seg.group_code, pr.group_code) END
    AS group_code,
  CASE WHEN pr.practice_code IS NOT NULL THEN pr.commissioner_code
       WHEN r.activity_type = 'apc' THEN r.commissioner_code
       WHEN NOT (r.commissioner_code IS NULL OR trim(r.commissioner_code) = '')
       THEN r.commissioner_code ELSE (SELECT code FROM single) END AS commissioner_code,
  r.provider_code, r.activity_date, r.financial_year, CAST(r.month AS BIGINT) AS month,
  r.service_line, r.hrg_code, r.treatment_function_code, r.los_days,
  CAST(r.base_price AS DECIMAL(18,2)) AS base_price,
  CAST(r.long_stay_adjustment AS DECIMAL(18,2)) AS long_stay_adjustment,
  CAST(r.short_stay_adjustment AS DECIMAL(18,2)) AS short_stay_adjustment,
  CAST(r.top_up_adjustment AS DECIMAL(18,2)) AS top_up_adjustment,
  CAST(r.mff_adjustment AS DECIMAL(18,2)) AS mff_adjustment,
  CAST(r.marginal_rate_adjustment AS DECIMAL(18,2)) AS marginal_rate_adjustment,
  CAST(r.price AS DECIMAL(18,2)) AS price, r.pricing_rule, r.unpriced_reason,
  pr.practice_code IS NOT NULL AS attributed
FROM allrows r LEFT JOIN practices pr ON pr.practice_code = r.practice_code
LEFT JOIN seg ON seg.practice_code = r.practice_code AND seg.s_from <= r.activity_date
             AND r.activity_date <= seg.s_to
"""


def hand_sql(base: str, writer: str = "copy") -> int:
    """The same work as one hand-written DuckDB query, partitioned Parquet, totals.

    ``writer``: ``copy`` is DuckDB's own partitioned ``COPY``; ``arrow`` streams the
    query's rows into the writer pbc uses (:func:`pbc.warehouse.store.write_partitioned`),
    so that pbc / SQL compares the work before the write as well as the whole.
    """
    from pbc.warehouse import Warehouse
    from pbc.warehouse.store import PARTITION_COLUMNS, ROW_GROUP_ROWS, write_partitioned

    wh = Warehouse(Path(base) / "wh")
    con = wh.connect()  # views over the warehouse Parquet (the same as pbc reads)
    out = Path(base) / "hand"
    shutil.rmtree(out, ignore_errors=True)
    if writer == "arrow":
        with con.sql(hand_sql_query(base)).to_arrow_reader(batch_size=ROW_GROUP_ROWS) as b:
            write_partitioned(b, out, file_prefix="hand", partition_by=PARTITION_COLUMNS,
                              unique_columns=("activity_id", "patient_id"))
    else:
        # each thread hands a partition's rows to the writer a row group at a time (the
        # default is 4x that): measured 25% faster at 10% of national scale
        con.execute(f"SET partitioned_write_flush_threshold = {ROW_GROUP_ROWS}")
        con.execute(f"COPY ({hand_sql_query(base)}) TO '{out}' (FORMAT parquet, "
                    "PARTITION_BY (financial_year, month), WRITE_PARTITION_COLUMNS true, "
                    "FILENAME_PATTERN 'hand-{i}')")
    con.execute(SUMMARY_SQL.format(glob=out / "**" / "*.parquet"))
    con.execute("""SELECT activity_type, sum(n), sum(n_priced), sum(n) - sum(n_priced),
                   sum(money), sum(money) FILTER (attributed),
                   coalesce(sum(money) FILTER (NOT attributed), 0)
                   FROM summary GROUP BY 1 ORDER BY 1""").fetchall()
    con.execute("SELECT service_line, sum(n), sum(money) FROM summary GROUP BY 1 "
                "ORDER BY 3 DESC").fetchall()
    con.execute("SELECT practice_code, sum(n), sum(money) FROM summary WHERE attributed "
                "GROUP BY 1 ORDER BY 3 DESC").fetchall()
    n = con.execute("SELECT sum(n) FROM summary").fetchall()[0][0]
    con.close()
    return int(n)


# ------------------------------------------------------------------------------- pandas

def pandas_impl(base: str, memory_gb: float = 0) -> int:
    """The same work in straightforward pandas (float money, rounded at the end).

    With ``memory_gb`` the process may allocate no more than that (a pandas run that needs
    more fails with MemoryError instead of pushing a shared machine into the OOM killer).
    """
    import resource

    import numpy as np
    import pandas as pd

    if memory_gb:
        limit = int(memory_gb * 1024**3)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    from pbc.warehouse import Warehouse

    s = _settings(base)
    mret = s.get("emergency_marginal_rate", {})
    rate = float(mret.get("rate", 0.30))
    sse = s.get("short_stay_emergency", {})
    min_age, max_los = sse.get("min_age", 19), sse.get("max_length_of_stay", 1)
    top = {k: float(v) for k, v in s.get("top_up", {}).items()}
    opt = s.get("outpatients", {})
    f1 = float(opt.get("telephone_first_fraction", 1))
    f2 = float(opt.get("telephone_follow_up_fraction", 1))
    dept = {k: float(v) for k, v in s.get("ae", {}).get("department_type_fraction", {}).items()}

    def pct(x: float) -> str:
        return _pct(_dec(x))

    wh = Warehouse(Path(base) / "wh")
    con = wh.connect()  # reading Parquet into pandas frames (I/O only, no rules)
    read = lambda t: con.execute(f"SELECT * FROM {t}").df()  # noqa: E731
    num = lambda x: pd.to_numeric(x, errors="coerce").astype(float)  # noqa: E731

    def text(x: pd.Series) -> pd.Series:
        x = x.astype(object)
        return x.where(~(x.isna() | (x.fillna("").str.strip() == "")), "(blank)")

    prov = read("providers")[["provider_code", "mff_payment_index"]]
    prov["mff"] = prov.mff_payment_index.round(6)
    prov["mff_text"] = prov.mff.map(lambda v: f"{_dec(v).normalize():f}" if v == v else None)
    practices = read("practices")[["practice_code", "group_code", "commissioner_code"]]
    comms = read("commissioners").commissioner_code.dropna().unique()
    single = comms[0] if len(comms) == 1 else None
    tariff_apc = read("tariff_apc")

    # APC
    a = read("apc_spells").merge(tariff_apc, on="hrg_code", how="left", indicator="t_") \
        .merge(prov, on="provider_code", how="left", indicator="p_")
    a["los"] = (pd.to_datetime(a.discharge_date) - pd.to_datetime(a.admission_date)).dt.days
    elective = a.admission_method.isin(ELECTIVE)
    non_el = a.admission_method.isin(NON_ELECTIVE)
    emergency = a.admission_method.isin(EMERGENCY)
    regular = a.patient_classification.isin(["3", "4"])
    dcl = elective & ((a.patient_classification == "2") | regular)
    dc, oe, ce, ne = (num(a[c]) for c in ("day_case_price", "ordinary_elective_price",
                                         "combined_elective_price", "non_elective_price"))
    base_p = pd.Series(np.where(dcl, dc.fillna(ce), np.where(elective, oe.fillna(ce),
                                                             np.where(non_el, ne, np.nan))))
    label = np.select([dcl & dc.notna(), dcl, elective & oe.notna(), elective],
                      ["day case price", "combined elective price (no day case price)",
                       "ordinary elective price",
                       "combined elective price (no ordinary elective price)"],
                      "non-elective price")
    trim = pd.Series(np.where(elective, a.elective_trim_days, a.non_elective_trim_days),
                     dtype=float)
    ssem = ((a.sse_applies.str.upper() == "Y") & emergency & (a.age_on_admission >= min_age)
            & (a.los >= 0) & (a.los <= max_los)).fillna(False).astype(bool)
    excess = np.where(ssem, 0, np.where(trim.notna() & (a.los > trim), a.los - trim, 0))
    hrg_text = text(a.hrg_code)
    reason = pd.Series(np.select(
        [a.t_ == "left_only", a.p_ == "left_only", a.mff.isna(), ~(elective | non_el),
         a.los.isna() | (a.los < 0), base_p.isna() & dcl, base_p.isna() & elective,
         base_p.isna(), ssem & num(a.sse_price).isna(),
         (excess > 0) & num(a.excess_bed_day_price).isna()],
        ["HRG " + hrg_text + " not in tariff_apc",
         "provider " + text(a.provider_code) + " not in providers (no MFF payment index)",
         "provider " + text(a.provider_code) + " has no MFF payment index",
         "admission method " + text(a.admission_method) + " not recognised",
         "length of stay unknown or negative",
         "no day case or combined elective price for HRG " + hrg_text,
         "no ordinary elective or combined elective price for HRG " + hrg_text,
         "no non-elective price for HRG " + hrg_text,
         "reduced short stay emergency tariff applies but HRG " + hrg_text
         + " has no SSEM price",
         "long stay beyond trim point but HRG " + hrg_text + " has no excess bed day price"],
        None), dtype=object)
    priced = reason.isna()
    a["base_price"] = base_p.where(priced)
    a["long_stay_adjustment"] = (excess * num(a.excess_bed_day_price).fillna(0)).where(priced)
    a["short_stay_adjustment"] = pd.Series(np.where(ssem, num(a.sse_price) - base_p, 0.0)) \
        .where(priced)
    c2 = a.base_price + a.long_stay_adjustment + a.short_stay_adjustment
    c3 = c2 * (1 + a.top_up_category.map(top).fillna(0).astype(float))
    c4 = c3 * a.mff
    r3, r4 = c3.round(2), c4.round(2)
    a["top_up_adjustment"] = r3 - c2
    a["mff_adjustment"] = r4 - r3
    a = a.merge(practices.rename(columns={"commissioner_code": "p_comm", "group_code": "pg"}),
                on="practice_code", how="left", indicator="k_")
    rec = a.commissioner_code.where(~(a.commissioner_code.isna()
                                      | (a.commissioner_code.fillna("").str.strip() == "")))
    a["commissioner_code"] = np.where(a.k_ == "both", a.p_comm, rec.fillna(single)
                                      if single else rec)
    bl = pd.DataFrame([(b["commissioner_code"], b["provider_code"], _year(b, s),
                        float(b["baseline"])) for b in mret.get("baseline", [])],
                      columns=["commissioner_code", "provider_code", "financial_year",
                               "baseline"])
    a = a.merge(bl, on=["commissioner_code", "provider_code", "financial_year"], how="left")
    a["r4"] = r4.values
    eligible = emergency.values & a.r4.notna()
    a["mret"] = eligible & a.baseline.notna()
    a = a.sort_values(["discharge_date", "spell_id"])
    a["cum"] = a.r4.where(a.mret, 0.0).groupby(
        [a.commissioner_code, a.provider_code, a.financial_year, a.mret], dropna=False).cumsum()
    x = np.maximum(0, a.cum - a.baseline)
    x0 = np.maximum(0, a.cum - a.r4 - a.baseline)
    mra = np.where(a.mret, (rate * x).round(2) - (rate * x0).round(2) - (x - x0), 0.0)
    above = pd.Series(np.where(a.mret, x - x0, 0.0), index=a.index).sort_index()
    mra = pd.Series(mra, index=a.index).sort_index()
    a = a.sort_index()
    a["price"] = r4 + mra
    a["marginal_rate_adjustment"] = a.price - r4
    kind = np.select([dcl, elective], ["elective day case", "elective"], "non-elective")
    desc = np.where(ssem, "reduced short stay emergency price",
                    np.where(excess > 0, "base + " + pd.Series(excess).astype(int).astype(str)
                             + " excess bed days", label))
    head = "APC " + pd.Series(kind) + " " + hrg_text + ": "
    a["pricing_rule"] = np.where(
        priced, head + desc + a.top_up_category.map(
            {k: f"; top-up {k} {pct(v)}" for k, v in top.items() if v}).fillna("")
        + "; MFF " + a.mff_text.fillna("")
        + np.where(above > 0, f"; marginal rate {pct(rate)} above contract baseline",
                   np.where(eligible & ~a.mret.to_numpy(),
                            "; no marginal rate: no contract baseline for "
                            + a.financial_year.astype(str), "")),
        head + "unpriced")
    a["unpriced_reason"] = reason
    a["service_line"] = np.select([dcl, elective], ["day_case", "elective_inpatient"],
                                  "non_elective")
    a = a.rename(columns={"spell_id": "activity_id", "discharge_date": "activity_date",
                          "los": "los_days"})
    a["activity_type"] = "apc"

    # outpatients
    o = read("op_attendances").merge(read("tariff_op"), on="treatment_function_code",
                                     how="left", indicator="t_") \
        .merge(prov, on="provider_code", how="left", indicator="p_") \
        .merge(tariff_apc[["hrg_code", "outpatient_procedure_price"]].dropna(),
               on="hrg_code", how="left")
    first = o.first_attendance.isin(["1", "3"])
    tele = o.first_attendance.isin(["3", "4"])
    dna = (o.attended == False).fillna(False).astype(bool)  # noqa: E712
    proc = o.outpatient_procedure_price.notna()
    frac = np.where(tele, np.where(first, f1, f2), 1.0)
    att = np.where(first, num(o.first_attendance_price), num(o.follow_up_price)) * frac
    base_o = pd.Series(np.where(proc & ~dna, num(o.outpatient_procedure_price), att))
    tfc_text = text(o.treatment_function_code)
    reason = pd.Series(np.select(
        [dna, o.attended.isna(), ~o.first_attendance.isin(["1", "2", "3", "4"]),
         ~proc & (o.t_ == "left_only"), o.p_ == "left_only", o.mff.isna(), base_o.isna()],
        [None, "attended is blank",
         "first_attendance code " + text(o.first_attendance) + " not recognised",
         "treatment function " + tfc_text + " not in tariff_op",
         "provider " + text(o.provider_code) + " not in providers (no MFF payment index)",
         "provider " + text(o.provider_code) + " has no MFF payment index",
         np.where(first, "no first attendance price for treatment function ",
                  "no follow-up price for treatment function ") + tfc_text], None),
        dtype=object)
    pre = pd.Series(np.where(dna, 0.0, base_o.where(reason.isna())))
    o["base_price"] = pre.round(2)
    o["price"] = (pre * np.where(dna, 1.0, o.mff)).round(2)
    o["mff_adjustment"] = o.price - o.base_price
    kind = pd.Series(np.where(first, "first attendance", "follow-up")) \
        + np.where(tele, " by telephone/video", "")
    att_desc = pd.Series(np.where(first, "first attendance price", "follow-up price")) \
        + np.where(tele, np.where(first, f" x {pct(f1)}", f" x {pct(f2)}"), "")
    proc_text = text(o.hrg_code)
    has_hrg = ~(o.hrg_code.isna() | (o.hrg_code.fillna("").str.strip() == ""))
    desc = np.where(proc, "OP procedure HRG " + proc_text + ": outpatient procedure price",
                    np.where(has_hrg, "OP " + kind + " TFC " + tfc_text + ": " + att_desc
                             + " (HRG " + proc_text + " has no outpatient procedure price)",
                             "OP " + kind + " TFC " + tfc_text + ": " + att_desc))
    o["pricing_rule"] = np.where(dna, "DNA: not paid", np.where(
        reason.isna(), desc + "; MFF " + o.mff_text.fillna(""),
        "OP " + kind + " TFC " + tfc_text + ": unpriced"))
    o["unpriced_reason"] = reason
    o["service_line"] = np.select([proc & ~dna, first], ["outpatient_procedure",
                                                         "outpatient_first"],
                                  "outpatient_follow_up")
    o = o.rename(columns={"attendance_id": "activity_id", "appointment_date": "activity_date"})
    o["activity_type"] = "op"

    # A&E
    e = read("ae_attendances").merge(read("tariff_ae"), on="hrg_code", how="left",
                                     indicator="t_") \
        .merge(prov, on="provider_code", how="left", indicator="p_")
    frac = e.department_type.map(dept)
    base_e = num(e.price) * frac
    hrg_text = text(e.hrg_code)
    reason = pd.Series(np.select(
        [e.t_ == "left_only", frac.isna(), e.p_ == "left_only", e.mff.isna(), base_e.isna()],
        ["HRG " + hrg_text + " not in tariff_ae",
         "department type " + text(e.department_type) + " not recognised",
         "provider " + text(e.provider_code) + " not in providers (no MFF payment index)",
         "provider " + text(e.provider_code) + " has no MFF payment index",
         "no A&E price for HRG " + hrg_text], None), dtype=object)
    pre = base_e.where(reason.isna())
    e["base_price"] = pre.round(2)
    e["price"] = (pre * e.mff).round(2)
    e["mff_adjustment"] = e.price - e.base_price
    head = "A&E type " + text(e.department_type) + " " + hrg_text + ": "
    e["pricing_rule"] = np.where(reason.isna(), head + "price" + e.department_type.map(
        {k: f" x {pct(v)}" for k, v in dept.items() if v != 1}).fillna("") + "; MFF "
        + e.mff_text.fillna(""), head + "unpriced")
    e["unpriced_reason"] = reason
    e["service_line"] = "ae"
    e = e.rename(columns={"attendance_id": "activity_id", "arrival_date": "activity_date"})
    e["activity_type"] = "ae"

    # prescribing
    rx = read("prescribing")
    rx["activity_id"] = (rx.practice_code.fillna("") + "/" + rx.year_month + "/"
                         + rx.bnf_code.fillna(""))
    rx["activity_date"] = pd.to_datetime(rx.year_month + "-01")
    rx["base_price"] = rx.actual_cost.astype(float)
    rx["price"] = rx.base_price
    rx["pricing_rule"] = "Prescribing: actual cost"
    rx["unpriced_reason"] = np.where(rx.actual_cost.isna(), "actual_cost is blank", None)
    rx["service_line"] = rx["activity_type"] = "prescribing"

    # attribution
    money = ["base_price", "long_stay_adjustment", "short_stay_adjustment",
             "top_up_adjustment", "mff_adjustment", "marginal_rate_adjustment", "price"]
    frames = []
    for f in (a, o, e, rx):
        for c in money:
            if c not in f.columns:
                f[c] = np.where(f.price.notna(), 0.0, np.nan)
        for c in ("patient_id", "commissioner_code", "provider_code", "hrg_code",
                  "treatment_function_code", "los_days"):
            if c not in f.columns:
                f[c] = None
        frames.append(f[[c for c in ATTRIBUTED_COLUMNS
                         if c not in ("group_code", "attributed")]])
    allrows = pd.concat(frames, ignore_index=True)
    allrows = allrows.merge(practices.rename(columns={"commissioner_code": "p_comm",
                                                      "group_code": "p_group"}),
                            on="practice_code", how="left", indicator="k_")
    allrows["attributed"] = allrows.k_ == "both"
    pg = read("practice_groups").dropna(subset=["valid_from"])
    allrows["group_code"] = np.where(allrows.attributed, allrows.p_group, None)
    for _, w in pg.sort_values(["valid_from", "group_code"], ascending=[True, False]).iterrows():
        hit = (allrows.attributed & (allrows.practice_code == w.practice_code)
               & (allrows.activity_date >= w.valid_from)
               & ((w.valid_to is None) | (w.valid_to != w.valid_to)
                  | (allrows.activity_date <= w.valid_to)))
        allrows.loc[hit, "group_code"] = w.group_code if w.group_code is not None \
            else allrows.loc[hit, "p_group"]
    recorded = allrows.commissioner_code.where(~(allrows.commissioner_code.isna() | (
        allrows.commissioner_code.fillna("").str.strip() == "")))
    allrows["commissioner_code"] = np.where(allrows.attributed, allrows.p_comm,
                                            recorded.fillna(single) if single else recorded)
    out = allrows[list(ATTRIBUTED_COLUMNS)]
    path = Path(base) / "pandas"
    shutil.rmtree(path, ignore_errors=True)
    out.to_parquet(path, partition_cols=["financial_year", "month"])
    back = pd.read_parquet(path, columns=["activity_type", "service_line", "practice_code",
                                          "attributed", "price"])
    back.groupby("activity_type").agg(rows=("price", "size"), priced=("price", "count"),
                                      money=("price", "sum"))
    back[back.attributed].groupby("activity_type").price.sum()
    back.groupby("service_line").price.agg(["size", "sum"])
    back[back.attributed].groupby("practice_code").price.agg(["size", "sum"])
    return len(back)


# ---------------------------------------------------------------------------------- main

def _guarded(fn: Any, *args: Any) -> Any:
    """Run ``fn`` in the measured child; a failure comes back as a value (``measure`` would
    otherwise wait for a result that never comes)."""
    import traceback

    try:
        return fn(*args)
    except Exception:  # reported and re-raised in the parent
        return {"error": traceback.format_exc()}


def _measure(fn: Any, *args: Any) -> dict[str, Any]:
    out = measure(_guarded, fn, *args)
    if isinstance(out["result"], dict) and "error" in out["result"]:
        raise RuntimeError(f"{fn.__name__} failed:\n{out['result']['error']}")
    return out


def _totals(con: Any, glob: str) -> dict[str, Any]:
    rows = con.execute(f"SELECT activity_type, count(*), sum(price) FROM read_parquet("
                       f"'{glob}', hive_partitioning = false) GROUP BY 1").fetchall()
    return {k: (int(n), Decimal(str(m)) if m is not None else None) for k, n, m in rows}


def _differing(con: Any, pbc_glob: str, hand_glob: str) -> int:
    """Rows in one output and not the other (as multisets), in bounded memory.

    Each partition (financial year, month) is compared by its row count and the sum of a
    64-bit hash of every row; only a partition that differs is compared row by row
    (``EXCEPT ALL``), so identical outputs cost two scans and no large join.
    """
    cols = ", ".join(ATTRIBUTED_COLUMNS)

    def digest(glob: str) -> dict[tuple[str, int], tuple[int, int]]:
        rows = con.execute(
            f"SELECT financial_year, month, count(*), sum(hash({cols})::HUGEINT) "
            f"FROM read_parquet('{glob}', hive_partitioning = false) GROUP BY 1, 2").fetchall()
        return {(fy, m): (n, h) for fy, m, n, h in rows}

    a, b = digest(pbc_glob), digest(hand_glob)
    n = 0
    for part in sorted(set(a) | set(b), key=str):
        if a.get(part) == b.get(part):
            continue
        where = f"financial_year = '{part[0]}' AND month = {part[1]}"
        sql = (f"SELECT {cols} FROM read_parquet('{{x}}', hive_partitioning = false) "
               f"WHERE {where} EXCEPT ALL SELECT {cols} FROM read_parquet('{{y}}', "
               f"hive_partitioning = false) WHERE {where}")
        for x, y in ((pbc_glob, hand_glob), (hand_glob, pbc_glob)):
            n += con.execute(f"SELECT count(*) FROM ({sql.format(x=x, y=y)})").fetchall()[0][0]
    return int(n)


def _warm(base: Path) -> None:
    """Read every input file once, so that no contender pays for a cold page cache (the
    first to run would otherwise read from disk what the others find in memory)."""
    for f in (base / "wh" / "current").resolve().rglob("*.parquet"):
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--workdir", type=Path, default=Path("bench-out"))
    ap.add_argument("--fresh", action="store_true", help="generate and load again")
    ap.add_argument("--skip-pandas", action="store_true")
    ap.add_argument("--pandas-memory-gb", type=float, default=12.0,
                    help="memory the pandas run may allocate (0: no limit)")
    args = ap.parse_args()
    base = args.workdir / f"pricing-{args.scale:g}"
    marker = base / "prepared.txt"
    if marker.exists() and not args.fresh:
        rows = int(marker.read_text())
    else:
        shutil.rmtree(base, ignore_errors=True)
        rows = _measure(prepare, args.scale, str(base))["result"]
        marker.write_text(str(rows))
    _warm(base)
    pbc = _measure(run_pbc, str(base))
    print(f"pbc: {pbc['seconds']:.2f} s, peak {pbc['peak_rss_gb']:.2f} GB", flush=True)
    sql_arrow = _measure(hand_sql, str(base), "arrow")
    print(f"hand SQL, same writer: {sql_arrow['seconds']:.2f} s", flush=True)
    sql = _measure(hand_sql, str(base), "copy")  # last: its files are compared with pbc's
    print(f"hand SQL, COPY: {sql['seconds']:.2f} s", flush=True)
    pdx = None
    if not args.skip_pandas:
        try:
            pdx = _measure(pandas_impl, str(base), args.pandas_memory_gb)
        except RuntimeError as e:  # e.g. MemoryError beyond --pandas-memory-gb
            print(f"pandas did not finish: {str(e).strip().splitlines()[-1]}")
    from pbc.warehouse import Warehouse
    from pbc.warehouse.store import quiet_connection

    wh = Warehouse(base / "wh")
    con = quiet_connection()  # under pbc's memory limit: comparisons spill, never swamp
    pbc_glob = wh.parquet_glob("priced_activity")
    hand_glob = str(base / "hand" / "**" / "*.parquet")
    totals = {"pbc": _totals(con, pbc_glob), "sql": _totals(con, hand_glob)}
    if pdx is not None:
        totals["pandas"] = _totals(con, str(base / "pandas" / "**" / "*.parquet"))
    differing = _differing(con, pbc_glob, hand_glob)
    n = pbc["result"]
    row: dict[str, Any] = {
        "scale": args.scale, "rows_loaded": rows, "rows_priced": n,
        "pbc_s": round(pbc["seconds"], 2), "hand_sql_s": round(sql["seconds"], 2),
        "hand_sql_same_writer_s": round(sql_arrow["seconds"], 2),
        "pandas_s": round(pdx["seconds"], 1) if pdx else None,
        "ratio_pbc_to_sql": round(pbc["seconds"] / sql["seconds"], 2),
        "ratio_pbc_to_sql_same_writer": round(pbc["seconds"] / sql_arrow["seconds"], 2),
        "speedup_pbc_over_pandas": round(pdx["seconds"] / pbc["seconds"], 1) if pdx else None,
        "pbc_peak_rss_gb": round(pbc["peak_rss_gb"], 2),
        "sql_peak_rss_gb": round(sql["peak_rss_gb"], 2),
        "pandas_peak_rss_gb": round(pdx["peak_rss_gb"], 2) if pdx else None,
        "pbc_rows_per_s": round(n / pbc["seconds"]),
        "sql_rows_per_s": round(n / sql["seconds"]),
        "national_year_extrapolated_s": round(NATIONAL_ACTIVITY_ROWS_PER_YEAR /
                                              (n / pbc["seconds"])),
        "rows_differing_pbc_vs_sql": differing,
    }
    for who, t in totals.items():
        row[f"total_{who}"] = str(sum((m for _, m in t.values() if m is not None),
                                      Decimal(0)))
    report("pricing + attribution: pbc vs hand-written DuckDB SQL vs pandas", [row])
    for who, t in totals.items():
        print(f"  {who:7s} " + ", ".join(f"{k}: {c:,} rows £{m:,}" for k, (c, m)
                                         in sorted(t.items())))


if __name__ == "__main__":
    main()
