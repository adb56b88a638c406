"""Budget setting as a use case: policy + warehouse -> indicative budgets, stored and explained.

Reads the registered population, conditions and prior-year priced spend from the
warehouse, calls the pure core (:mod:`pbc.budgets`), then in one go:

* writes ``indicative_budgets`` (practice x service line, pounds), ``indicative_budgets_monthly``
  (phased by the prior year's seasonal profile), ``group_budgets`` and
  ``budget_explanations`` to the warehouse (one transaction);
* records the budgets as a new version in the decision store (draft until agreed; a
  restatement of an agreed year needs a reason), with an audit row;
* writes statements: a CSV of all budgets, and an Excel workbook per practice and per
  group (summary, monthly phasing, explanation).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ibis
import pandas as pd

from pbc.budgets import (
    FairShareInputs,
    budgets_in_pounds,
    derive_cost_weights,
    group_budgets,
    phase_budgets,
    read_nhse_file,
    read_policy,
    seasonal_profile,
    set_budgets,
)
from pbc.budgets.indicative import BudgetResult
from pbc.budgets.register import band_costs_expr, need_index_expr
from pbc.calendar import parse_financial_year
from pbc.decisions import DecisionStore, Line
from pbc.services.principal import AccessDenied, Principal
from pbc.warehouse import Warehouse, WarehouseError

#: ``priced_activity.service_line`` values and the two lines priced outside it
PRICED_LINES = ("elective_inpatient", "day_case", "non_elective", "outpatient_first",
                "outpatient_follow_up", "outpatient_procedure", "ae")
PRACTICE_STATEMENT_LIMIT = 250  # above this, practice workbooks are written on request


@dataclass
class BudgetRun:
    result: BudgetResult
    version: int
    statements: Path
    monthly: pd.DataFrame
    groups: pd.DataFrame


def _prior_year(financial_year: str) -> str:
    start = parse_financial_year(financial_year) - 1
    return f"{start}-{(start + 1) % 100:02d}"


def list_sizes(patients: Any) -> pd.DataFrame:
    """Registered patients (an Ibis table) to list sizes by practice, sex and five-year
    age band, counted by the engine: the weighted-capitation input (``practice_code``,
    ``sex``, ``age_band``, ``patients``)."""
    from pbc.indicators.compute import population

    frame = population({"patients": patients}).execute()
    return frame.astype({"patients": "int64"}).sort_values(
        ["practice_code", "sex", "age_band"]).reset_index(drop=True)


def _frames(warehouse: Warehouse, prior: str, *, person_level: bool
            ) -> dict[str, pd.DataFrame]:
    """The budget inputs from the warehouse; the patient register itself only when
    ``person_level`` (a service line uses the person-based method)."""
    if not warehouse.has_table("priced_activity"):
        raise WarehouseError("set budgets after pricing: run pbc price first")
    con = warehouse.connect()
    try:
        q = lambda sql: con.execute(sql).df()  # noqa: E731
        spend = q(f"""
            SELECT coalesce(practice_code, '') AS practice_code, service_line, month,
                   sum(price) AS price
            FROM priced_activity WHERE financial_year = '{prior}' AND price IS NOT NULL
            GROUP BY ALL
            UNION ALL
            SELECT coalesce(practice_code, ''), 'prescribing', month, sum(actual_cost)
            FROM prescribing WHERE financial_year = '{prior}' GROUP BY ALL""")
        if spend.empty:
            raise WarehouseError(f"no priced activity for the prior year {prior}: budgets "
                                 "start from prior-year spend")
        backend = ibis.duckdb.from_connection(con)
        frames = {
            "spend": spend,
            "practices": q("SELECT practice_code, group_code FROM practices ORDER BY 1"),
            # the register is aggregated by the engine: list sizes by age-sex band, cost by
            # band and service line, need index per practice (pbc.budgets.register)
            "list_sizes": list_sizes(backend.table("patients")),
        }
        conditions = (backend.table("patient_conditions")
                      if warehouse.has_table("patient_conditions") else None)
        frames["need_index"] = need_index_expr(backend.table("patients"), conditions).execute()
        costs_sql = f"""
            SELECT patient_id, service_line, sum(price) AS cost FROM priced_activity
            WHERE financial_year = '{prior}' AND price IS NOT NULL
              AND patient_id IS NOT NULL GROUP BY ALL"""
        # read once: kept when the person-based model needs it too, else streamed
        kind = "TABLE" if person_level else "VIEW"
        con.execute(f"CREATE TEMP {kind} patient_costs AS {costs_sql}")
        frames["band_costs"] = band_costs_expr(backend.table("patients"),
                                               backend.table("patient_costs")).execute()
        if person_level:  # the person-based model is fitted on the register itself
            frames["patients"] = q("SELECT patient_id, practice_code, sex, age, imd_decile "
                                   "FROM patients")
            frames["conditions"] = (
                q("SELECT patient_id, condition FROM patient_conditions")
                if conditions is not None else pd.DataFrame(columns=["patient_id", "condition"]))
            frames["patient_costs"] = q("SELECT * FROM patient_costs")
        frames["membership"] = (
            q("SELECT practice_code, group_code, CAST(valid_from AS VARCHAR) AS valid_from, "
              "CAST(valid_to AS VARCHAR) AS valid_to FROM practice_groups")
            if warehouse.has_table("practice_groups") else pd.DataFrame())
        return frames
    finally:
        con.close()


def _membership(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """practices.group_code, overridden by practice_groups where a practice has rows there."""
    moves = frames["membership"]
    base = frames["practices"].assign(valid_from=None, valid_to=None)
    if moves.empty:
        return base
    return pd.concat([base[~base.practice_code.isin(moves.practice_code)], moves],
                     ignore_index=True)


def set_indicative_budgets(
    warehouse: Warehouse,
    policy_path: Path,
    who: Principal,
    *,
    reason: str = "budgets set from policy",
    nhse_file: Path | None = None,
    statements: Path | None = None,
) -> BudgetRun:
    if who.role != "commissioner":
        raise AccessDenied(f"{who} may not set budgets: only the commissioner can")
    policy = read_policy(policy_path)
    prior = _prior_year(policy.financial_year)
    person_level = any(policy.fair_share[line].method == "person_based"
                       for line in policy.scope)
    frames = _frames(warehouse, prior, person_level=person_level)
    practices = frames["practices"].practice_code.tolist()
    inputs = FairShareInputs(
        list_sizes=frames["list_sizes"],
        cost_weights=derive_cost_weights(frames["band_costs"]),
        need_index=frames["need_index"],
        patients=frames.get("patients"), conditions=frames.get("conditions"),
        patient_costs=frames.get("patient_costs"),
        nhse=read_nhse_file(nhse_file) if nhse_file else None, practice_codes=practices,
    )
    membership = _membership(frames)
    spend = frames["spend"]
    result = set_budgets(policy, inputs, spend.drop(columns=["month"]),
                         practice_groups=membership)
    profile = seasonal_profile(spend)
    monthly = phase_budgets(result.frame, profile)
    groups = group_budgets(result.frame, membership, financial_year=policy.financial_year,
                           monthly=monthly)
    explanations = pd.DataFrame({
        "practice_code": practices,
        "explanation": [result.explain(p).to_text() if p in set(result.frame.practice_code)
                        else "" for p in practices],
    })
    _store(warehouse, result, monthly, groups, explanations)
    digest = hashlib.sha256(Path(policy_path).read_bytes()).hexdigest()
    f = result.frame
    lines = [Line(str(p), str(sl), int(b), int(fs), int(h)) for p, sl, b, fs, h in zip(
        f.practice_code, f.service_line, f.budget, f.fair_share, f.historic, strict=True)]
    version = DecisionStore.beside(warehouse.root).record_budgets(
        who, policy.financial_year, lines, reason=reason, policy_sha256=digest)
    folder = statements or warehouse.root / "statements" / policy.financial_year.replace("/", "-")
    write_statements(result, monthly, groups, folder)
    return BudgetRun(result, version, folder, monthly, groups)


def _pounds(frame: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    out = frame.copy()
    for c in cols:
        if c in out.columns:
            out[c] = out[c].astype("int64") / 100
    return out


def _store(warehouse: Warehouse, result: BudgetResult, monthly: pd.DataFrame,
           groups: pd.DataFrame, explanations: pd.DataFrame) -> None:
    frame = budgets_in_pounds(result.frame)
    for col in frame.columns:
        if frame[col].dtype == object and frame[col].map(
                lambda v: v.__class__.__name__ == "Decimal").any():
            frame[col] = frame[col].astype(str).replace("None", None)
    with warehouse.begin("budgets") as tx:
        con = tx.connect()
        for name, df in (("indicative_budgets", frame),
                         ("indicative_budgets_monthly", _pounds(monthly, ["budget"])),
                         ("group_budgets", _pounds(groups, [c for c in groups.columns
                                                            if c in ("budget",)])),
                         ("budget_explanations", explanations)):
            con.register(f"{name}_df", df)
            tx.write(con, name, f"SELECT * FROM {name}_df", file_prefix=name, replace=True,
                     meta={"kind": "output"})
        con.close()


def write_statements(result: BudgetResult, monthly: pd.DataFrame, groups: pd.DataFrame,
                     folder: Path, practices: list[str] | None = None) -> Path:
    """CSV of all budgets; an Excel workbook per practice (and per group)."""
    folder.mkdir(parents=True, exist_ok=True)
    pounds = budgets_in_pounds(result.frame)
    pounds.to_csv(folder / "indicative_budgets.csv", index=False)
    codes = practices if practices is not None else sorted(result.frame.practice_code.unique())
    if practices is None and len(codes) > PRACTICE_STATEMENT_LIMIT:
        codes = []
    for code in codes:
        _practice_workbook(result, pounds, monthly, code, folder / f"practice_{code}.xlsx")
    if not groups.empty and "group_code" in groups.columns:
        for code, g in groups.groupby("group_code"):
            path = str(folder / f"group_{code!s}.xlsx")
            with pd.ExcelWriter(path, engine="xlsxwriter", engine_kwargs={
                    "options": {"strings_to_formulas": False}}) as xw:
                _pounds(g, ["budget"]).to_excel(xw, sheet_name="budget", index=False)
    return folder


def _practice_workbook(result: BudgetResult, pounds: pd.DataFrame, monthly: pd.DataFrame,
                       code: str, path: Path) -> None:
    mine = pounds[pounds.practice_code == code]
    months = _pounds(monthly[monthly.practice_code == code], ["budget"])
    phased = months.pivot_table(index="service_line", columns="month", values="budget",
                                aggfunc="sum")
    text = result.explain(code).to_text().splitlines()
    with pd.ExcelWriter(path, engine="xlsxwriter", engine_kwargs={
            "options": {"strings_to_formulas": False}}) as xw:
        summary = mine[["service_line", "fair_share", "historic", "budget",
                        "distance_from_target"]].copy()
        for c in ("fair_share", "historic", "budget"):
            summary[c] = summary[c].astype(float)
        summary.to_excel(xw, sheet_name="summary", index=False)
        phased.to_excel(xw, sheet_name="monthly phasing")
        pd.DataFrame({"how this budget was built": text}).to_excel(
            xw, sheet_name="explanation", index=False)


def explanation(warehouse: Warehouse, practice_code: str) -> str:
    """The stored explanation of a practice's current budget."""
    if not warehouse.has_table("budget_explanations"):
        raise WarehouseError("no budgets set yet: run pbc budgets set --policy FILE")
    rows = warehouse.query("SELECT explanation FROM budget_explanations WHERE practice_code = ?",
                           [practice_code])
    if not rows or not rows[0][0]:
        raise WarehouseError(f"practice {practice_code!r} has no budget")
    return str(rows[0][0])


def agree(warehouse: Warehouse, who: Principal, financial_year: str, version: int) -> None:
    DecisionStore.beside(warehouse.root).agree(who, financial_year, version)


def needs_for_group(nhse_file: Path, group_file: Path, out: Path | None = None) -> Any:
    from pbc.budgets import needs_indices, read_group_file

    frame = needs_indices(read_nhse_file(nhse_file), read_group_file(group_file))
    if out is not None:
        frame[["component", "group_index", "icb_index"]].to_csv(out, index=False)
    return frame
