"""``pbc la shared-clients``: people known to both the NHS and a council's social care.

Reads the council's social care packages active in a financial year, links them to the NHS
register by the pseudonymous ``patient_id``, adds each person's priced hospital activity
(tariff value), emergency admissions and risk segment, and publishes **aggregates only**
(:mod:`pbc.local_authorities.shared_clients` states every rule):

* people, NHS cost and social care cost by neighbourhood and care type, by risk segment and
  care type (when the warehouse holds risk scores; otherwise the output says so), and for
  the council as a whole; counts of people from 1 to 7 are suppressed, with secondary
  suppression across the three tables together
  (:func:`pbc.services.suppression.suppress_levels`, with its linear-programming audit),
  and a cell's costs are hidden wherever its count is;
* the joint-commissioning opportunities, the largest combined cost first, each hidden
  whole when it counts 1 to 7 people (its emergency admissions too when they are 1 to 7).

Who may see what (the rule is here, in the service layer): a council officer
(``local_authority:CODE``) its own council only; commissioner roles (``commissioner``,
``commissioner_approver``, ``commissioner_data``) of a commissioner of this warehouse any
council of it; nobody a patient-level row (the person-level frame never leaves this module).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from pbc.calendar import (
    financial_year,
    normalise_financial_year,
    parse_financial_year,
    year_bounds,
)
from pbc.contracts.tables import EMERGENCY_ADMISSION_METHODS, SOCIAL_CARE_SERVICES
from pbc.local_authorities.shared_clients import (
    NOT_SCORED,
    Linkage,
    OpportunityTotals,
    opportunities,
    shared_clients,
)
from pbc.pricing.schema import TARIFF_VALUE_SQL
from pbc.risk.segments import SEGMENT_NAMES
from pbc.services.coterminosity import COMMISSIONER_ROLES
from pbc.services.principal import AccessDenied, Principal
from pbc.services.suppression import DEFAULT_THRESHOLD, suppress_levels
from pbc.warehouse import Warehouse, WarehouseError
from pbc.warehouse.export import spreadsheet_safe
from pbc.warehouse.validate import lit

#: the CSV's columns: one row per table, code and care type ("all": the row's total), then
#: one row per opportunity (table "opportunity", care type empty)
COLUMNS = ("la_code", "financial_year", "table", "code", "care_type", "people", "nhs_cost",
           "social_care_cost", "emergency_admissions", "suppressed")
WHO_MAY = ("the council's own officer (local_authority:CODE) or a commissioner role of the "
           "warehouse's commissioner (commissioner:CODE, commissioner_approver:CODE, "
           "commissioner_data:CODE)")
NO_SCORES = ("risk segments not available: the warehouse has no risk scores (run pbc risk "
             "train and pbc risk score); the opportunities that need them are not shown")


@dataclass
class SharedClients:
    """Aggregates of one council's shared clients in one year (nothing patient-level)."""

    la_code: str
    financial_year: str
    rows: pd.DataFrame  # COLUMNS
    linkage: Linkage
    scored: bool
    opportunities: list[OpportunityTotals]
    threshold: int = DEFAULT_THRESHOLD
    notes: list[str] = field(default_factory=list)

    def table(self, name: str) -> pd.DataFrame:
        return self.rows[self.rows["table"] == name].reset_index(drop=True)


def authorise(warehouse: Warehouse, principal: Principal, la_code: str) -> None:
    """Refuse (:class:`AccessDenied`) unless ``principal`` may see ``la_code``'s clients."""
    councils = ({str(r[0]) for r in warehouse.query(
        "SELECT local_authority_code FROM local_authorities")}
        if warehouse.has_table("local_authorities") else set())
    if principal.role == "local_authority":
        if principal.organisation != la_code:
            raise AccessDenied(f"{principal} may not see the shared clients of {la_code}: "
                               f"only {WHO_MAY.replace('CODE', la_code, 1)} may")
    elif principal.role in COMMISSIONER_ROLES:
        mine = {str(r[0]) for r in warehouse.query(
            "SELECT DISTINCT commissioner_code FROM practices") if r[0] is not None}
        if principal.organisation not in mine:
            raise AccessDenied(f"{principal}: {principal.organisation} is not a commissioner "
                               f"of this warehouse; only {WHO_MAY} may see shared clients")
    else:
        raise AccessDenied(f"{principal} may not see shared clients: only {WHO_MAY} may "
                           "(and nobody sees a patient-level row)")
    if la_code not in councils:
        raise WarehouseError(f"{la_code} is not a council of this warehouse "
                             f"(local_authorities: {', '.join(sorted(councils)) or 'none'})")


def default_year(warehouse: Warehouse) -> str:
    """The financial year of the last day of the warehouse's activity."""
    from pbc.services.coterminosity import default_day

    return financial_year(default_day(warehouse))


def person_frame(warehouse: Warehouse, la_code: str, year: str
                 ) -> tuple[pd.DataFrame, Linkage, bool]:
    """Shared clients of ``la_code`` in ``year``, one row each (stays in this module)."""
    if not warehouse.has_table("social_care_packages"):
        raise WarehouseError(f"{warehouse.root}: no social_care_packages table (run pbc load)")
    if not warehouse.has_table("priced_activity"):
        raise WarehouseError(f"{warehouse.root}: no priced activity (run pbc price first)")
    first, last = year_bounds(parse_financial_year(year))
    f, t = f"DATE '{first}'", f"DATE '{last}'"
    emergency = ", ".join(lit(m) for m in EMERGENCY_ADMISSION_METHODS)
    scored = warehouse.has_table("risk_scores")
    con = warehouse.connect()
    try:
        con.execute(f"""CREATE TEMP TABLE council_packages AS
            SELECT package_id, patient_id, service_type, start_date, end_date, weekly_cost
            FROM social_care_packages
            WHERE local_authority_code = {lit(la_code)} AND start_date <= {t}
              AND (end_date IS NULL OR end_date >= {f})""")
        packages = con.execute("SELECT * FROM council_packages ORDER BY package_id").df()
        ids = "(SELECT DISTINCT patient_id FROM council_packages WHERE patient_id IS NOT NULL)"
        register = con.execute(f"SELECT patient_id, neighbourhood_code FROM patients "
                               f"WHERE patient_id IN {ids}").df()
        nhs = con.execute(f"""
            SELECT patient_id,
                   CAST(sum({TARIFF_VALUE_SQL}) * 100 AS BIGINT) AS nhs_pence
            FROM priced_activity
            WHERE financial_year = {lit(year)} AND price IS NOT NULL AND patient_id IN {ids}
            GROUP BY patient_id""").df()
        admissions = con.execute(f"""
            SELECT patient_id, count(*) AS emergency_admissions FROM apc_spells
            WHERE admission_method IN ({emergency})
              AND discharge_date BETWEEN {f} AND {t} AND patient_id IN {ids}
            GROUP BY patient_id""").df() if warehouse.has_table("apc_spells") else \
            pd.DataFrame({"patient_id": [], "emergency_admissions": []})
        segments = con.execute(f"SELECT patient_id, segment FROM risk_scores "
                               f"WHERE patient_id IN {ids}").df() if scored else None
        hoods = {str(r[0]) for r in con.execute(
            "SELECT neighbourhood_code FROM neighbourhoods WHERE local_authority_code = ?",
            [la_code]).fetchall()} if warehouse.has_table("neighbourhoods") else set()
    finally:
        con.close()
    for col in ("start_date", "end_date"):
        packages[col] = [None if pd.isna(v) else pd.Timestamp(v).date()
                         for v in packages[col]]
    activity = nhs.merge(admissions, on="patient_id", how="outer")
    activity["nhs_pence"] = activity["nhs_pence"].fillna(0).astype("int64")
    activity["emergency_admissions"] = activity["emergency_admissions"].fillna(0).astype(
        "int64")
    people, linkage = shared_clients(packages, register, activity, first, last,
                                     council_neighbourhoods=hoods, segments=segments)
    return people, linkage, scored


def shared_clients_report(warehouse: Warehouse, principal: Principal, la_code: str, *,
                          year: str | None = None,
                          threshold: int = DEFAULT_THRESHOLD) -> SharedClients:
    """The council's shared clients in ``year`` (default: the year of the last activity),
    aggregated and suppressed, for a principal allowed to see them."""
    authorise(warehouse, principal, la_code)
    fy = normalise_financial_year(year) if year else default_year(warehouse)
    people, linkage, scored = person_frame(warehouse, la_code, fy)
    rows = aggregate(people, la_code, fy, scored, threshold)
    opps = opportunities(people, scored=scored)
    rows = pd.concat([rows, opportunity_rows(opps, la_code, fy, threshold)],
                     ignore_index=True)
    notes = [] if scored else [NO_SCORES]
    return SharedClients(la_code, fy, rows, linkage, scored, opps, threshold, notes)


def aggregate(people: pd.DataFrame, la_code: str, year: str, scored: bool,
              threshold: int = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """People and costs by neighbourhood, risk segment (when ``scored``) and the council,
    each by care type and in total, suppressed together (:data:`COLUMNS`)."""
    care = list(SOCIAL_CARE_SERVICES)
    levels = ["neighbourhood", "segment", "local_authority"] if scored else \
        ["neighbourhood", "local_authority"]
    if people.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    base = (people.groupby(["neighbourhood_code", "segment", "care_type"])
            .agg(n=("patient_id", "size"), nhs=("nhs_pence", "sum"),
                 sc=("social_care_pence", "sum"))
            .reset_index()
            .rename(columns={"neighbourhood_code": "neighbourhood", "care_type": "column"}))
    base["local_authority"] = la_code
    tables = suppress_levels(base[[*levels, "column", "n"]], levels, care, threshold)
    names = {"neighbourhood": "neighbourhood", "segment": "risk_segment",
             "local_authority": "council"}
    out: list[dict[str, Any]] = []
    order = {name: i for i, name in enumerate((*SEGMENT_NAMES, NOT_SCORED))}
    for level in levels:
        units = tables[level]
        if level == "segment":  # highest risk first, not alphabetical
            units = sorted(units, key=lambda r: order.get(str(r.code), len(order)))
        for r in units:
            unit = base if level == "local_authority" else base[base[level] == r.code]
            for c, cell in [*zip(care, r.cells, strict=True), ("all", r.total)]:
                part = unit if c == "all" else unit[unit["column"] == c]
                hidden = cell is None
                out.append({
                    "la_code": la_code, "financial_year": year, "table": names[level],
                    "code": str(r.code), "care_type": c, "people": cell,
                    "nhs_cost": None if hidden else _pounds(int(part["nhs"].sum())),
                    "social_care_cost": None if hidden else _pounds(int(part["sc"].sum())),
                    "emergency_admissions": None, "suppressed": hidden})
    return pd.DataFrame(out, columns=list(COLUMNS)).astype({"people": "Int64"})


def opportunity_rows(opps: list[OpportunityTotals], la_code: str, year: str,
                     threshold: int = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """One row per available opportunity: hidden whole when it counts 1..threshold people;
    its emergency admissions hidden too when they are 1..threshold."""
    out = []
    for o in opps:
        if not o.available:
            continue
        hidden = 1 <= o.people <= threshold
        admissions_hidden = hidden or 1 <= o.emergency_admissions <= threshold
        out.append({"la_code": la_code, "financial_year": year, "table": "opportunity",
                    "code": o.name, "care_type": "", "people": None if hidden else o.people,
                    "nhs_cost": None if hidden else _pounds(o.nhs_pence),
                    "social_care_cost": None if hidden else _pounds(o.social_care_pence),
                    "emergency_admissions": None if admissions_hidden
                    else o.emergency_admissions,
                    "suppressed": hidden})
    return pd.DataFrame(out, columns=list(COLUMNS)).astype(
        {"people": "Int64", "emergency_admissions": "Int64"})


def _pounds(pence: int) -> Decimal:
    return (Decimal(pence) / 100).quantize(Decimal("0.01"))


# ------------------------------------------------------------------ files
def write_csv(report: SharedClients, path: Path | str, warehouse: Warehouse) -> Path:
    """The aggregates as CSV (suppressed counts and costs empty), written whole or not."""
    p = Path(path)
    warehouse.refuse_inside(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    spreadsheet_safe(report.rows).to_csv(tmp, index=False)
    os.replace(tmp, p)
    return p


def write_workbook(report: SharedClients, path: Path | str, warehouse: Warehouse) -> Path:
    """The aggregates as a house-style workbook (docs/workbooks.md)."""
    from pbc.reports.shared_clients import shared_clients_workbook

    p = Path(path)
    warehouse.refuse_inside(p)
    return shared_clients_workbook(
        p, report, source=f"pbc la shared-clients, warehouse {warehouse.root.name} version "
                          f"{warehouse.manifest().get('version')}")


def summary_lines(report: SharedClients) -> list[str]:
    """The report in a few sentences."""
    k = report.linkage
    council = report.table("council")
    total = council[council["care_type"] == "all"]
    people = total["people"].iloc[0] if len(total) else 0
    shown = "suppressed" if pd.isna(people) else f"{int(people):,}"
    lines = [
        f"{report.la_code}, {report.financial_year}: {k.packages:,} care packages active in "
        f"the year; {k.linked_packages:,} link to a registered NHS patient, "
        f"{k.no_patient_id:,} carry no patient id and {k.not_in_register:,} one the "
        "register does not hold.",
        f"Shared clients (people known to both): {shown}."]
    if len(total) and not pd.isna(people):
        lines.append(f"Their NHS hospital cost (tariff value) £{total['nhs_cost'].iloc[0]:,}"
                     f"; their social care cost £{total['social_care_cost'].iloc[0]:,}.")
    lines += report.notes
    lines.append(f"Counts of people from 1 to {report.threshold} are suppressed, with "
                 "secondary suppression so none can be worked out from the totals; a hidden "
                 "count hides its costs too.")
    return lines



# ------------------------------------------------------------------ terminal
def print_report(report: SharedClients, console: Any) -> None:
    """The report for an 80-column terminal: sentences, people and costs by neighbourhood
    and by risk segment (all care types), and the opportunities; ``*`` where suppressed."""
    from rich import box
    from rich.table import Table as RichTable

    def money(v: Any) -> str:
        return "*" if v is None or pd.isna(v) else f"£{v:,.0f}"

    def count(v: Any) -> str:
        return "*" if v is None or pd.isna(v) else f"{int(v):,}"

    for line in summary_lines(report):
        console.print(line, highlight=False, markup=False)
    for table, title in (("neighbourhood", "neighbourhood"), ("risk_segment", "risk segment"),
                         ("council", "council")):
        rows = report.table(table)
        rows = rows[rows["care_type"] == "all"]
        if rows.empty:
            continue
        t = RichTable(title=f"Shared clients by {title}, all care types",
                      box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for c, j in ((title, "left"), ("people", "right"), ("NHS cost", "right"),
                     ("social care cost", "right")):
            t.add_column(c, justify=j, no_wrap=True)  # type: ignore[arg-type]
        for r in rows.itertuples():
            t.add_row(str(r.code), count(r.people), money(r.nhs_cost),
                      money(r.social_care_cost))
        console.print(t)
    opps = report.table("opportunity")
    if not opps.empty:
        said = {o.name: o.description for o in report.opportunities}
        t = RichTable(title="Opportunities for joint commissioning", box=box.SIMPLE_HEAD,
                      pad_edge=False, collapse_padding=True)
        for c, j in (("who", "left"), ("people", "right"), ("emergency admissions", "right"),
                     ("NHS cost", "right"), ("social care cost", "right")):
            t.add_column(c, justify=j, no_wrap=c != "who")  # type: ignore[arg-type]
        for r in opps.itertuples():
            t.add_row(said.get(str(r.code), str(r.code)), count(r.people),
                      count(r.emergency_admissions), money(r.nhs_cost),
                      money(r.social_care_cost))
        console.print(t)


# ------------------------------------------------------------------ demo
def demo_local_authority(warehouse: Warehouse, out: Path, console: Any) -> dict[str, Path]:
    """The demo's coterminosity and shared clients: coterminosity as the warehouse's
    commissioner (CSV and workbook), then each council's shared clients as that council's
    own officer (CSV and workbook), printed and written to ``out``. Needs a loaded and
    priced warehouse with one commissioner (risk scores optional); no users need exist
    (these read the warehouse only). Returns the files written, by name."""
    from pbc.services import coterminosity as cot

    out.mkdir(parents=True, exist_ok=True)
    codes = sorted({str(r[0]) for r in warehouse.query(
        "SELECT DISTINCT commissioner_code FROM practices") if r[0] is not None})
    if len(codes) != 1:
        raise WarehouseError(f"the demo needs one commissioner, not {len(codes)}")
    who = Principal("demo", "commissioner", codes[0])
    written: dict[str, Path] = {}
    report = cot.coterminosity(warehouse, who)
    cot.print_report(report, console)
    written["coterminosity.csv"] = cot.write_csv(report, out / "coterminosity.csv", warehouse)
    written["coterminosity.xlsx"] = cot.write_workbook(report, out / "coterminosity.xlsx",
                                                       warehouse)
    councils = sorted(str(r[0]) for r in warehouse.query(
        "SELECT local_authority_code FROM local_authorities"))
    for la in councils:
        officer = Principal("demo", "local_authority", la)
        shared = shared_clients_report(warehouse, officer, la)
        print_report(shared, console)
        name = f"shared_clients_{la}"
        written[f"{name}.csv"] = write_csv(shared, out / f"{name}.csv", warehouse)
        written[f"{name}.xlsx"] = write_workbook(shared, out / f"{name}.xlsx", warehouse)
    return written
