"""Freezing a month's monitoring position, and the restatements later data make to it.

``freeze_month`` publishes the position at the end of a month (every level, by service line
and in total, with its forecast and budget version) into the decision store, with the
warehouse version it was computed from and who froze it. Only the commissioner's finance
role (``commissioner``) may freeze; a month is frozen once (a second freeze is refused).

``restatements`` compares each frozen month of the year up to a month with the same position
computed on current data (same budget version and forecast method) and says, for each cell
that changed, whether late rows (loaded after the freeze) or revised rows (replaced after
it) are the reason (:mod:`pbc.monitoring.restatement`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import pandas as pd

from pbc.decisions import DecisionStore
from pbc.decisions.store import Freeze
from pbc.monitoring.forecast import Method
from pbc.monitoring.position import LEVELS, TOTAL, Level
from pbc.monitoring.restatement import COLUMNS, restate
from pbc.services.monitoring import monthly_position, parse_period
from pbc.services.principal import AccessDenied, Principal
from pbc.warehouse import Warehouse, WarehouseError
from pbc.warehouse.validate import lit

#: activity tables behind ``priced_activity``: (activity_type, table, SQL of its id)
SOURCES: tuple[tuple[str, str, str], ...] = (
    ("apc", "apc_spells", "CAST(spell_id AS VARCHAR)"),
    ("op", "op_attendances", "CAST(attendance_id AS VARCHAR)"),
    ("ae", "ae_attendances", "CAST(attendance_id AS VARCHAR)"),
    ("prescribing", "prescribing", "coalesce(CAST(practice_code AS VARCHAR), '') || '/' || "
     "CAST(year_month AS VARCHAR) || '/' || coalesce(CAST(bnf_code AS VARCHAR), '')"),
)


@dataclass(frozen=True)
class FreezeResult:
    freeze: Freeze
    rows: int
    frame: pd.DataFrame  # the frozen rows (pence), every level


def freeze_month(warehouse: Warehouse, who: Principal, period: str, *,
                 method: Method = "seasonal_run_rate") -> FreezeResult:
    """Freeze the position at the end of ``period`` (``YYYY-MM``) at every level."""
    if who.role != "commissioner":
        raise AccessDenied(f"{who} may not freeze a monitoring position: only the "
                           "commissioner's finance role (commissioner:CODE) can")
    manifest = warehouse.manifest()
    before = int(manifest["version"])
    stale = unpriced_loads(manifest)
    if stale:
        raise WarehouseError(
            f"activity was loaded after the last pricing run (warehouse version "
            f"{', '.join(map(str, stale))}), so the position would leave it out: run pbc "
            f"price, then freeze {period}")
    frames = []
    pos = None
    for level in LEVELS:
        pos = monthly_position(warehouse, who, period, level=level, method=method)
        frames.append(pos.frame)
    assert pos is not None
    if int(warehouse.manifest()["version"]) != before:
        raise WarehouseError(f"the warehouse changed (version {before} to "
                             f"{warehouse.manifest()['version']}) while {period} was being "
                             "frozen; nothing was frozen: try again")
    frame = pd.concat(frames, ignore_index=True)
    rows: list[dict[str, Any]] = []
    for r in frame.to_dict("records"):
        row = {k: r[k] for k in ("level", "code", "service_line", "forecast_note")}
        row["forecast_note"] = r["forecast_note"] or None
        for col in ("annual_budget", "budget_to_date", "spend_to_date", "variance"):
            row[col] = int(r[col])
        for col in ("forecast_outturn", "forecast_lower", "forecast_upper"):
            row[col] = None if pd.isna(r[col]) else int(r[col])
        rows.append(row)
    with DecisionStore.beside(warehouse.root) as store:
        freeze = store.freeze_position(
            who, commissioner_code=pos.commissioner_code, financial_year=pos.financial_year,
            month=pos.month, period=pos.period, budget_version=pos.budget_version,
            budget_status=pos.budget_status, forecast_method=method,
            warehouse_version=before, rows=rows)
    return FreezeResult(freeze, len(rows), frame)


def unpriced_loads(manifest: dict[str, Any]) -> list[int]:
    """The versions of loads after the last pricing run (their rows are not priced yet)."""
    history = manifest.get("history", [])
    priced = max((int(h["version"]) for h in history if h["stage"] == "price"), default=0)
    return [int(h["version"]) for h in history
            if h["stage"] == "load" and int(h["version"]) > priced]


@dataclass(frozen=True)
class Restatements:
    frame: pd.DataFrame  # COLUMNS, money in pence
    financial_year: str
    month: int
    period: str
    frozen: list[Freeze]  # the frozen months compared
    warehouse_version: int


def _allowed(who: Principal, commissioner: str) -> tuple[Level, str] | None:
    """None: every level and code; else the one (level, code) the principal may see."""
    if who.role == "commissioner":
        if who.organisation != commissioner:
            raise AccessDenied(f"{who} may not see commissioner {commissioner}'s restatements")
        return None
    if who.role in ("practice", "group"):
        return cast(Level, who.role), who.organisation
    raise AccessDenied(f"{who} may not see restatements: a practice sees its own, a group "
                       "its own, the commissioner all")


def _provenance(con: Any, warehouse: Warehouse, financial_year: str) -> None:
    """Temp table ``__provenance``: each priced row of the year with its holders, service
    line, month, the warehouse version its key was first loaded in (``first_v``) and the
    last version in which a revision replaced it (``last_revised``, 0: never)."""
    parts = []
    for kind, table, ident in SOURCES:
        if not warehouse.has_table(table):
            continue
        cols = {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
        version = "_load_version" if "_load_version" in cols else "CAST(NULL AS INTEGER)"
        parts.append(f"SELECT '{kind}' AS activity_type, {ident} AS activity_id, "
                     f"{version} AS v FROM {table}")
    if not parts:
        parts.append("SELECT NULL AS activity_type, NULL AS activity_id, "
                     "CAST(NULL AS INTEGER) AS v WHERE FALSE")
    revised = ("SELECT NULL AS activity_type, NULL AS activity_id, CAST(NULL AS INTEGER) AS v,"
               " CAST(NULL AS INTEGER) AS r WHERE FALSE")
    if warehouse.has_table("revisions"):
        kinds = " ".join(f"WHEN {lit(t)} THEN {lit(k)}" for k, t, _ in SOURCES)
        revised = (f"SELECT CASE source_table {kinds} END AS activity_type, "
                   "replace(key, chr(31), '/') AS activity_id, "
                   "min(replaced_load_version) AS v, max(load_version) AS r "
                   "FROM revisions GROUP BY ALL")
    never = 2147483647
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE __provenance AS
        WITH prov AS (SELECT activity_type, activity_id, max(v) AS v
                      FROM ({' UNION ALL '.join(parts)}) GROUP BY ALL),
        rev AS ({revised})
        SELECT p.practice_code, p.group_code, p.commissioner_code, p.attributed,
               p.service_line, p.month,
               nullif(least(coalesce(pv.v, {never}), coalesce(rv.v, {never})), {never})
                 AS first_v,
               coalesce(rv.r, 0) AS last_revised
        FROM (SELECT *, CASE WHEN activity_type = 'prescribing' THEN
                     array_to_string(string_split(activity_id, '/')[1:3], '/')
                     ELSE activity_id END AS source_key
              FROM priced_activity
              WHERE financial_year = {lit(financial_year)} AND price IS NOT NULL) p
        LEFT JOIN prov pv ON pv.activity_type = p.activity_type
          AND pv.activity_id = p.source_key
        LEFT JOIN rev rv ON rv.activity_type = p.activity_type
          AND rv.activity_id = p.source_key""")


def _reasons(con: Any, month: int, commissioner: str, since: int) -> pd.DataFrame:
    """Per (level, code, service_line) cell of months 1..``month`` (from
    ``__provenance``): whether it holds rows first loaded after warehouse version ``since``
    (late) and rows loaded by then that a revision after it replaced (revised)."""
    late = f"(first_v IS NOT NULL AND first_v > {int(since)})"
    sql = f"""
        WITH flagged AS (
          SELECT *, {late} AS late, NOT {late} AND last_revised > {int(since)} AS revised
          FROM __provenance
          WHERE month <= {int(month)} AND commissioner_code = {lit(commissioner)})
        SELECT 'practice' AS level, practice_code AS code, service_line,
               bool_or(late) AS late, bool_or(revised) AS revised
        FROM flagged WHERE attributed AND practice_code IS NOT NULL
        GROUP BY GROUPING SETS ((practice_code, service_line), (practice_code))
        UNION ALL
        SELECT 'group', group_code, service_line, bool_or(late), bool_or(revised)
        FROM flagged WHERE attributed AND group_code IS NOT NULL
        GROUP BY GROUPING SETS ((group_code, service_line), (group_code))
        UNION ALL
        SELECT 'commissioner', commissioner_code, service_line, bool_or(late),
               bool_or(revised)
        FROM flagged GROUP BY GROUPING SETS ((commissioner_code, service_line),
                                             (commissioner_code))"""
    frame: pd.DataFrame = con.execute(sql).df()
    frame["service_line"] = frame["service_line"].fillna(TOTAL)
    return frame


def restatements(warehouse: Warehouse, who: Principal, period: str) -> Restatements:
    """Every restatement of the frozen months of ``period``'s year up to ``period``."""
    fy, month = parse_period(period)
    with DecisionStore.beside(warehouse.root) as store:
        frozen = [f for f in store.freezes(fy) if f.month <= month
                  and (who.role != "commissioner" or f.commissioner_code == who.organisation)]
        stored = {f.id: store.frozen_rows(f.id) for f in frozen}
    version = int(warehouse.manifest()["version"])
    out = []
    con = warehouse.connect() if frozen else None
    try:
        if con is not None:
            _provenance(con, warehouse, fy)
        for f in frozen:
            only = _allowed(who, f.commissioner_code)
            old = pd.DataFrame(stored[f.id])
            levels = LEVELS if only is None else (only[0],)
            current = []
            for level in levels:
                pos = monthly_position(warehouse, who, f.period, level=level,
                                       method=cast(Method, f.forecast_method),
                                       version=f.budget_version)
                current.append(pos.frame)
            new = pd.concat(current, ignore_index=True)
            if only is not None:
                old = old[(old.level == only[0]) & (old.code == only[1])]
            reasons = _reasons(con, f.month, f.commissioner_code, f.warehouse_version)
            changed = restate(old, new, reasons)
            changed.insert(0, "period", f.period)
            changed.insert(0, "frozen_month", f.month)
            changed.insert(0, "financial_year", fy)
            changed["frozen_warehouse_version"] = f.warehouse_version
            changed["budget_version"] = f.budget_version
            out.append(changed[COLUMNS])
    finally:
        if con is not None:
            con.close()
    frame = (pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=COLUMNS))
    return Restatements(frame, fy, month, period, frozen, version)

