"""``pbc la profile``: a council's neighbourhood profiles for the JSNA, with suppression.

Who may see a profile (checked here, the one place the profile is made):

- ``local_authority:CODE`` sees its own council's profile only; another council's is refused;
- a commissioner role (``commissioner``, ``commissioner_data``, ``commissioner_approver``)
  sees any council of its economy (a council where its practices' patients live, or where
  its practices are);
- nobody else. The profile holds aggregates only (counts 1-7 and whatever would reveal them
  suppressed, :mod:`pbc.local_authorities.profiles`); no patient-level row ever leaves
  through it, and a local authority cannot export a patient-level table either
  (:mod:`pbc.services.export`).

**Residents.** A patient lives in the neighbourhood of the patients table's
``neighbourhood_code`` (the neighbourhoods table gives its council). The population of a
financial year is the residents registered with a practice on 30 September, mid-year
(``registered_from`` on or before it, ``registered_to`` blank or on or after it, not dead
by then); ages and sexes are the patients table's. Admissions and A&E attendances are
these residents' in the year (admission or arrival from 1 April to 31 March); a condition
counts if recorded by 31 March (or undated). Social care packages are the council's
packages active on some day of the year, placed in the neighbourhood of the linked
person; the rest (no linked person, or a person living in another council) are shown as
``not placed``. The commissioner comparator is the same measures over the patients
registered with the commissioner's practices on 30 September.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import tempfile
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from pbc.calendar import format_financial_year, normalise_financial_year, parse_financial_year
from pbc.contracts.tables import CONDITIONS, EMERGENCY_ADMISSION_METHODS, SOCIAL_CARE_SERVICES
from pbc.local_authorities.profiles import (
    ALL,
    COMPARISON_COLUMNS,
    CSV_COLUMNS,
    MEASURES,
    NOT_SCORED,
    WHOLE_COUNCIL,
    Breakdowns,
    Profile,
    ProfileInputs,
    build_profile,
)
from pbc.services.principal import AccessDenied, Principal
from pbc.services.suppression import DEFAULT_THRESHOLD, MARKER
from pbc.warehouse import Warehouse, WarehouseError
from pbc.warehouse.validate import lit

COMMISSIONER_ROLES = ("commissioner", "commissioner_data", "commissioner_approver")
SCORES_TABLE = "risk_scores"
NEEDED = ("patients", "neighbourhoods", "local_authorities", "practices")


# ------------------------------------------------------------------ access
def _commissioners_of(warehouse: Warehouse, la_code: str) -> list[str]:
    rows = warehouse.query(f"""
        SELECT DISTINCT pr.commissioner_code FROM practices pr
        WHERE pr.local_authority_code = {lit(la_code)} OR pr.practice_code IN (
          SELECT p.practice_code FROM patients p JOIN neighbourhoods n
            ON p.neighbourhood_code = n.neighbourhood_code
          WHERE n.local_authority_code = {lit(la_code)})""")
    return sorted(str(r[0]) for r in rows if r[0] is not None)


def who_may_see(warehouse: Warehouse, la_code: str) -> str:
    """Who may see ``la_code``'s profile, for messages."""
    comms = _commissioners_of(warehouse, la_code)
    return " or ".join([f"local_authority:{la_code}",
                        *(f"{r}:{c}" for c in comms for r in COMMISSIONER_ROLES)])


def authorise_profile(warehouse: Warehouse, principal: Principal, la_code: str) -> None:
    """Refuse (:class:`AccessDenied`, saying who may) unless ``principal`` may see the
    profile of council ``la_code``."""
    if principal.role == "local_authority" and principal.organisation == la_code:
        return
    if principal.role in COMMISSIONER_ROLES and \
            principal.organisation in _commissioners_of(warehouse, la_code):
        return
    raise AccessDenied(f"{principal} may not see the neighbourhood profile of {la_code}: "
                       f"only {who_may_see(warehouse, la_code)} may")


# ------------------------------------------------------------------ reading the warehouse
def latest_complete_year(warehouse: Warehouse) -> str:
    """The latest financial year whose 31 March is on or before the last admission."""
    last = warehouse.query("SELECT max(admission_date) FROM apc_spells")[0][0] \
        if warehouse.has_table("apc_spells") else None
    if last is None:
        raise WarehouseError(f"{warehouse.root}: no admissions loaded, so no year to profile "
                             "(give --year)")
    start = last.year if last.month >= 4 else last.year - 1
    if last < dt.date(start + 1, 3, 31):
        start -= 1
    return format_financial_year(start)


def _registered_on(cols: set[str], day: dt.date) -> str:
    d = lit(day.isoformat())
    parts = ["TRUE"]
    if "registered_from" in cols:
        parts.append(f"(p.registered_from IS NULL OR p.registered_from <= {d}::DATE)")
    if "registered_to" in cols:
        parts.append(f"(p.registered_to IS NULL OR p.registered_to >= {d}::DATE)")
    if "date_of_death" in cols:
        parts.append(f"(p.date_of_death IS NULL OR p.date_of_death > {d}::DATE)")
    return " AND ".join(parts)


def _acsc_regex() -> str:
    from pbc.reference.codelists import codelist

    codes = sorted({*codelist("acsc_chronic"), *codelist("acsc_acute")})
    return "^(" + "|".join(codes) + ")"


def _inputs(con: Any, warehouse: Warehouse, people_sql: str, packages_sql: str,
            year: str) -> ProfileInputs:
    """The counts of :class:`ProfileInputs` for the people of ``people_sql`` (columns
    patient_id, sex, age, imd_decile, unit) and the packages of ``packages_sql`` (unit,
    service_type, weekly_cost, start_date, end_date)."""
    start = parse_financial_year(year)
    s, e = lit(f"{start}-04-01"), lit(f"{start + 1}-03-31")
    names = set(warehouse.table_names())
    con.execute(f"CREATE OR REPLACE TEMP TABLE __people AS {people_sql}")

    def df(sql: str) -> pd.DataFrame:
        return con.execute(sql).df()

    population = df("SELECT unit, sex, age, count(*) AS n FROM __people GROUP BY ALL")
    deprivation = df("SELECT unit, imd_decile AS decile, count(*) AS n FROM __people "
                     "GROUP BY ALL")
    deprivation["decile"] = deprivation["decile"].astype(object).where(
        deprivation["decile"].notna(), None)
    if "patient_conditions" in names:
        conditions = df(f"""SELECT unit, condition, count(DISTINCT patient_id) AS n
            FROM __people JOIN patient_conditions USING (patient_id)
            WHERE recorded_date IS NULL OR recorded_date <= {e}::DATE GROUP BY ALL""")
    else:
        conditions = pd.DataFrame({"unit": [], "condition": [], "n": []})
    methods = ", ".join(lit(m) for m in EMERGENCY_ADMISSION_METHODS)
    admissions = df(f"""
        WITH em AS (SELECT p.unit, p.age, s.primary_diagnosis FROM apc_spells s
                    JOIN __people p USING (patient_id)
                    WHERE s.admission_method IN ({methods})
                      AND s.admission_date BETWEEN {s}::DATE AND {e}::DATE)
        SELECT 'emergency_admissions' AS measure, unit, age, count(*) AS n FROM em GROUP BY ALL
        UNION ALL
        SELECT 'acsc_admissions', unit, age, count(*) FROM em
        WHERE regexp_matches(coalesce(primary_diagnosis, ''), {lit(_acsc_regex())})
        GROUP BY ALL""")
    if "ae_attendances" in names:
        ae = df(f"""SELECT unit, count(*) AS n FROM ae_attendances JOIN __people
            USING (patient_id) WHERE arrival_date BETWEEN {s}::DATE AND {e}::DATE
            GROUP BY ALL""")
    else:
        ae = pd.DataFrame({"unit": [], "n": []})
    if "social_care_packages" in names:
        social_care = df(f"""
            WITH k AS ({packages_sql})
            SELECT unit, service_type, count(*) AS packages,
                   sum(round(weekly_cost * (least(coalesce(end_date, {e}::DATE),
                       {e}::DATE) - greatest(start_date, {s}::DATE) + 1) / 7, 2))::DECIMAL(18, 2)
                     AS cost
            FROM k WHERE start_date <= {e}::DATE
              AND (end_date IS NULL OR end_date >= {s}::DATE)
            GROUP BY ALL""")
        social_care["cost"] = pd.Series([Decimal(str(c)) for c in social_care["cost"]],
                                        index=social_care.index, dtype=object)
    else:
        social_care = pd.DataFrame({"unit": [], "service_type": [], "packages": [],
                                    "cost": []})
    segments = None
    if SCORES_TABLE in names:
        segments = df(f"""SELECT p.unit, coalesce(r.segment, {lit(NOT_SCORED)}) AS segment,
            count(*) AS n FROM __people p
            LEFT JOIN (SELECT patient_id, any_value(segment) AS segment FROM {SCORES_TABLE}
                       GROUP BY patient_id) r USING (patient_id) GROUP BY ALL""")
    con.execute("DROP TABLE __people")
    return ProfileInputs(population, deprivation, conditions, admissions, ae, social_care,
                         segments)


def neighbourhood_profile(warehouse: Warehouse, la_code: str, principal: Principal, *,
                          financial_year: str | None = None,
                          threshold: int = DEFAULT_THRESHOLD) -> Profile:
    """The profile of council ``la_code`` for ``principal`` (refused unless it may see it;
    :func:`authorise_profile`), for ``financial_year`` (default: the latest complete one)."""
    if not warehouse.exists():
        raise WarehouseError(f"{warehouse.root}: no warehouse here yet (run pbc load first)")
    missing = [t for t in NEEDED if not warehouse.has_table(t)]
    if missing:
        raise WarehouseError(f"{warehouse.root}: a neighbourhood profile needs the "
                             f"{', '.join(missing)} table(s)")
    las = dict(warehouse.query("SELECT local_authority_code, local_authority_name "
                               "FROM local_authorities"))
    if la_code not in las:
        raise WarehouseError(f"{warehouse.root}: no local authority {la_code} (known: "
                             f"{', '.join(sorted(las)) or 'none'})")
    authorise_profile(warehouse, principal, la_code)
    year = normalise_financial_year(financial_year) if financial_year \
        else latest_complete_year(warehouse)
    mid = dt.date(parse_financial_year(year), 9, 30)
    hoods = [str(r[0]) for r in warehouse.query(
        "SELECT neighbourhood_code FROM neighbourhoods WHERE local_authority_code = "
        f"{lit(la_code)} ORDER BY 1")]
    if not hoods:
        raise WarehouseError(f"{warehouse.root}: local authority {la_code} has no "
                             "neighbourhoods in the neighbourhoods table")
    comms = _commissioners_of(warehouse, la_code)
    con = warehouse.connect()
    try:
        cols = {r[0] for r in con.execute("DESCRIBE patients").fetchall()}
        registered = _registered_on(cols, mid)
        imd = "p.imd_decile" if "imd_decile" in cols else "NULL::INTEGER"
        base = f"SELECT p.patient_id, p.sex, p.age, {imd} AS imd_decile"
        local_people = (f"{base}, p.neighbourhood_code AS unit FROM patients p "
                        "JOIN neighbourhoods n ON p.neighbourhood_code = n.neighbourhood_code "
                        f"WHERE n.local_authority_code = {lit(la_code)} AND {registered}")
        local_packages = (
            "SELECT CASE WHEN n.neighbourhood_code IS NULL THEN 'not placed' "
            "ELSE n.neighbourhood_code END AS unit, k.service_type, k.weekly_cost, "
            "k.start_date, k.end_date FROM social_care_packages k "
            "LEFT JOIN patients p ON k.patient_id = p.patient_id "
            "LEFT JOIN neighbourhoods n ON p.neighbourhood_code = n.neighbourhood_code "
            f"AND n.local_authority_code = {lit(la_code)} "
            f"WHERE k.local_authority_code = {lit(la_code)}")
        local = _inputs(con, warehouse, local_people, local_packages, year)
        comm_code = _main_commissioner(con, local_people, comms)
        commissioner = None
        if comm_code is not None:
            unit = lit(comm_code)
            comm_people = (f"{base}, {unit} AS unit FROM patients p JOIN practices pr "
                           "ON p.practice_code = pr.practice_code WHERE "
                           f"pr.commissioner_code = {unit} AND {registered}")
            comm_packages = (f"SELECT {unit} AS unit, k.service_type, k.weekly_cost, "
                             "k.start_date, k.end_date FROM social_care_packages k "
                             "JOIN patients p ON k.patient_id = p.patient_id "
                             "JOIN practices pr ON p.practice_code = pr.practice_code "
                             f"WHERE pr.commissioner_code = {unit}")
            commissioner = _inputs(con, warehouse, comm_people, comm_packages, year)
    finally:
        con.close()
    from pbc.risk.segments import SEGMENT_NAMES

    breakdowns = Breakdowns(CONDITIONS, SOCIAL_CARE_SERVICES, SEGMENT_NAMES)
    profile = build_profile(la_code, str(las[la_code]), hoods, local, breakdowns, year,
                            commissioner_code=comm_code, commissioner=commissioner,
                            threshold=threshold)
    profile.notes.insert(0, (
        f"Residents: patients whose patients.neighbourhood_code is a neighbourhood of "
        f"{la_code}, registered with a practice on {mid:%d %B %Y} (mid-year of {year}); "
        "activity is theirs in the year."))
    if comm_code is not None and len(comms) > 1:
        profile.notes.append(f"The commissioner compared with is {comm_code}, the one "
                             "with most of the council's residents (of "
                             f"{', '.join(comms)}).")
    profile.notes.append(
        f"Counts from 1 to {threshold} are suppressed ({MARKER} in the workbook, empty count "
        "in the CSV), with further cells wherever a total would reveal one; rates built on "
        "a suppressed count are suppressed too.")
    return profile


def _main_commissioner(con: Any, people_sql: str, comms: Sequence[str]) -> str | None:
    if not comms:
        return None
    rows = con.execute(f"""SELECT pr.commissioner_code, count(*) AS n FROM ({people_sql}) r
        JOIN patients p USING (patient_id) JOIN practices pr
        ON p.practice_code = pr.practice_code GROUP BY 1 ORDER BY n DESC, 1""").fetchall()
    return str(rows[0][0]) if rows else comms[0]


# ------------------------------------------------------------------ outputs
def _text(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.4f}".rstrip("0").rstrip(".")
    return str(v)


def write_csv(profile: Profile, out: Path) -> Path:
    """One row per neighbourhood (and the council, ``ALL``), measure and breakdown; the
    columns of :data:`CSV_COLUMNS` then the comparisons. Written whole or not at all."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            columns = [*CSV_COLUMNS, *COMPARISON_COLUMNS]
            w.writerow(columns)
            for row in profile.rows:
                w.writerow([_text(row[c]) for c in columns])
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def write_workbook(profile: Profile, out: Path) -> Path:
    """The house-style workbook: a summary, then one sheet per measure with suppressed
    counts shown as :data:`MARKER`."""
    from pbc.indicators.wording import period
    from pbc.reports.workbook import Column, Kind, TitleBlock, Workbook

    frame = profile.frame()
    title = TitleBlock(f"Neighbourhood profile, {profile.la_name}",
                       f"{profile.la_name} ({profile.la_code})", period(profile.financial_year),
                       "patients, conditions, admissions, A&E attendances, social care "
                       "packages and risk scores in the commissioner's warehouse (pbc)")
    with Workbook(Path(out), title) as wb:
        wb.summary("Summary", [
            ("Local authority", f"{profile.la_name} ({profile.la_code})"),
            ("Neighbourhoods", ", ".join(profile.neighbourhoods)),
            ("Financial year", profile.financial_year),
            ("Commissioner compared with", profile.commissioner_code or "none"),
        ], notes=profile.notes)
        for name, m in MEASURES.items():
            part = frame[frame["measure"] == name].copy()
            if part.empty:
                continue
            part["count"] = [MARKER if s else c for s, c in
                             zip(part["suppressed"], part["count"], strict=True)]
            part["value"] = [MARKER if s else v for s, v in
                             zip(part["suppressed"], part["value"], strict=True)]
            kind: Kind = "money" if name == "social_care_cost" else "number"
            cols = [Column("neighbourhood_code", "Neighbourhood"),
                    Column("breakdown", "Breakdown"),
                    Column("count", "Count", "count", total=False),
                    Column("denominator", "Residents", "count", total=False),
                    Column("value", m.value.capitalize(), kind, total=False),
                    Column("lower_95", "Lower 95% limit", "number", total=False),
                    Column("upper_95", "Upper 95% limit", "number", total=False),
                    Column("local_authority_value", "Council", kind, total=False),
                    Column("compared_with_local_authority", "Compared with the council"),
                    Column("commissioner_value", "Commissioner", kind, total=False),
                    Column("compared_with_commissioner", "Compared with the commissioner")]
            wb.table(m.title[:31], part, cols, heading=m.title, totals=None,
                     notes=[f"{MARKER}: suppressed (small numbers)",
                            f"Neighbourhood {WHOLE_COUNCIL}: the council as a whole; "
                            f"breakdown {ALL}: the neighbourhood's total"])
    return Path(out)


#: measures drawn on the comparison chart (one panel each)
CHART_MEASURES = ("emergency_admissions", "acsc_admissions", "ae_attendances")


def comparison_chart(profile: Profile) -> Any:
    """A map-free comparison: per measure, each neighbourhood's value as a dot with its 95%
    interval as a bar, and the council's value as a vertical line (docs/charts.md)."""
    import altair as alt

    from pbc.indicators.wording import period

    frame = profile.frame()
    rows = frame[frame["measure"].isin(CHART_MEASURES) & (frame["breakdown"] == ALL)]
    data = rows[rows["neighbourhood_code"] != WHOLE_COUNCIL].copy()
    data["title"] = [MEASURES[m].title for m in data["measure"]]
    data["unit"] = [MEASURES[m].value for m in data["measure"]]
    data["compared"] = data["compared_with_local_authority"].fillna("Not compared")
    data = data[["neighbourhood_code", "title", "unit", "value", "lower_95", "upper_95",
                 "local_authority_value", "compared", "suppressed"]]
    data = data.astype(object).where(data.notna(), None)
    base = alt.Chart().encode(y=alt.Y("neighbourhood_code:N", title="Neighbourhood"))
    interval = base.mark_rule().encode(x=alt.X("lower_95:Q", title="Value"), x2="upper_95:Q")
    dot = base.mark_point(filled=True, size=80).encode(
        x="value:Q", color=alt.Color("compared:N", title="Compared with the council"),
        tooltip=["neighbourhood_code:N", "value:Q", "lower_95:Q", "upper_95:Q",
                 "compared:N", "suppressed:N"])
    council = base.mark_rule(strokeDash=[4, 4], color="black").encode(
        x="local_authority_value:Q")
    records = [{str(k): v for k, v in r.items()} for r in data.to_dict(orient="records")]
    chart = alt.layer(interval, dot, council, data=alt.InlineData(values=records)).facet(
        row=alt.Row("title:N", title=None)).resolve_scale(x="independent")
    chart = chart.properties(title=alt.Title(
        f"{profile.la_name} neighbourhoods, {period(profile.financial_year)}",
        subtitle=["Dot: the neighbourhood's value; bar: its 95% interval; dashed line: the "
                  "council's value. Suppressed values are not drawn.",
                  "Source: the commissioner's warehouse (pbc)"], anchor="start"))
    return chart


# ------------------------------------------------------------------ demo
def demo_profiles(warehouse: Warehouse, out: Path, console: Any) -> list[Path]:
    """For the demo: the first council's profile as its own officer would get it, written
    as CSV, workbook and chart under ``out``; prints a line per file. Needs only a loaded
    warehouse (risk scores are used when present)."""
    from pbc.indicators.charts import save_chart

    la = str(warehouse.query("SELECT min(local_authority_code) FROM local_authorities")[0][0])
    who = Principal("demo", "local_authority", la)
    profile = neighbourhood_profile(warehouse, la, who)
    out = Path(out)
    written = [write_csv(profile, out / f"profile-{la}.csv"),
               write_workbook(profile, out / f"profile-{la}.xlsx"),
               save_chart(comparison_chart(profile), out / f"profile-{la}.vl.json")]
    hidden = sum(1 for r in profile.rows if r["suppressed"])
    console.print(f"neighbourhood profile of {profile.la_name} ({la}), "
                  f"{profile.financial_year}: {len(profile.neighbourhoods)} neighbourhoods, "
                  f"{len(profile.rows):,} rows, {hidden:,} suppressed", highlight=False)
    for p in written:
        console.print(f"wrote {p}", soft_wrap=True, markup=False, highlight=False)
    return written
