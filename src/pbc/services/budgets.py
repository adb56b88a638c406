"""Budget setting as a use case: policy + warehouse -> indicative budgets, stored and explained.

Reads the registered population, conditions and prior-year priced spend of **one
commissioner** (the policy's ``commissioner_code``, or the warehouse's only commissioner)
from the warehouse, calls the pure core (:mod:`pbc.budgets`), then in one go:

* writes ``indicative_budgets`` (practice x service line, money as DECIMAL(18,2) pounds),
  ``indicative_budgets_monthly`` (phased by the prior year's seasonal profile),
  ``group_budgets``, ``budget_commissioner_lines`` (top-slices, unattributed activity,
  opt-outs) and ``budget_explanations`` to the warehouse (one transaction), financial
  years spelt ``2025-26``;
* records the budgets as a new version in the decision store (draft until agreed; a
  restatement of an agreed year needs a reason), with an audit row;
* writes statements where asked (``statements``, ``pbc budgets set --out``): a CSV of all
  budgets, a CSV of the money the commissioner holds, and a workbook per practice and per
  group (:mod:`pbc.reports.budget_statement`, docs/workbooks.md), the year and version in
  every file name; a statement already there stops the setting before anything is stored.

Prior-year spend (historic budgets, the envelope, the money held for unattributed activity,
patient costs for cost weights and the person-based model, and the seasonal profile used for
phasing) is the **tariff value before the emergency marginal rate**
(:data:`pbc.pricing.schema.TARIFF_VALUE_SQL`): the marginal rate falls on the spells
discharged after the contract's threshold is crossed, so it depends on discharge order, not
on what a practice's patients needed (DH, Payment by Results guidance 2010-11, and HFMA,
3 March 2010: emergency admissions above each contract's baseline value are paid at 30% of
tariff).
Prescribing is in ``priced_activity`` as its own lines (actual cost).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd

from pbc.budgets import (
    FairShareInputs,
    budgets_in_pounds,
    derive_cost_weights,
    group_budgets,
    packaged_nhse_file,
    phase_budgets,
    read_nhse_file,
    read_policy,
    seasonal_profile,
    set_budgets,
)
from pbc.budgets.groups import membership_by_month
from pbc.budgets.indicative import MONEY_COLUMNS, BudgetResult
from pbc.budgets.money import pence_to_pounds
from pbc.budgets.register import band_costs_expr, need_index_expr
from pbc.calendar import (
    format_financial_year,
    normalise_financial_year,
    parse_financial_year,
    year_bounds,
)
from pbc.decisions import DecisionStore, Line
from pbc.pricing.schema import tariff_value
from pbc.reports.budget_statement import (
    LastYear,
    StatementContext,
    group_statement,
    practice_statement,
    statement_paths,
)
from pbc.services.names import organisation_names
from pbc.services.principal import AccessDenied, Principal
from pbc.warehouse import Warehouse, WarehouseError
from pbc.warehouse.export import spreadsheet_safe
from pbc.warehouse.spark import check_engine

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
    #: the statements written (CSV files and workbooks)
    files: list[Path] = field(default_factory=list)


def _prior_year(financial_year: str) -> str:
    return format_financial_year(parse_financial_year(financial_year) - 1)


def _commissioner(practices: Any, wanted: str | None) -> str:
    """The commissioner whose budgets are set: the policy's, checked against ``practices``
    (an Ibis table), or the only one there is."""
    found = practices.filter(practices.commissioner_code.notnull()).select(
        "commissioner_code").distinct().to_pyarrow()
    codes = sorted(str(c) for c in found.column("commissioner_code").to_pylist())
    if wanted is not None:
        if wanted not in codes:
            raise WarehouseError(f"the policy's commissioner_code {wanted!r} has no practices "
                                 f"in the warehouse (it has {', '.join(codes) or 'none'})")
        return wanted
    if len(codes) != 1:
        raise WarehouseError(f"the warehouse holds {len(codes)} commissioners "
                             f"({', '.join(codes) or 'none'}): give commissioner_code in the "
                             "budget policy")
    return codes[0]


def registered_on(con: Any, day: dt.date) -> str:
    """SQL condition: the patient was on the practice's list on ``day`` (registered by then,
    not left, not dead), from whichever of ``registered_from``, ``registered_to`` and
    ``date_of_death`` the register has. Budgets use the list on the last day of the prior
    year, as NHS capitation uses the registered list at a date (NHS England, *Technical
    guide to allocation formulae*: GP registered populations), not everyone ever listed."""
    cols = {r[0] for r in con.execute("DESCRIBE patients").fetchall()}
    d = f"DATE '{day.isoformat()}'"
    parts = ["TRUE"]
    if "registered_from" in cols:
        parts.append(f"(registered_from IS NULL OR registered_from <= {d})")
    if "registered_to" in cols:
        parts.append(f"(registered_to IS NULL OR registered_to >= {d})")
    if "date_of_death" in cols:
        parts.append(f"(date_of_death IS NULL OR date_of_death > {d})")
    return "(" + " AND ".join(parts) + ")"


def list_sizes(patients: Any) -> pd.DataFrame:
    """Registered patients (an Ibis table, already the list on the day that counts: see
    :func:`registered_on`) to list sizes by practice, sex and five-year age band, counted by
    the engine: the weighted-capitation input (``practice_code``, ``sex``, ``age_band``,
    ``patients``). Every patient given counts one."""
    from pbc.indicators.compute import population

    dates = [c for c in ("registered_from", "registered_to", "date_of_death")
             if c in patients.columns]
    frame = population({"patients": patients.drop(*dates) if dates else patients}).execute()
    return frame.astype({"patients": "int64"}).sort_values(
        ["practice_code", "sex", "age_band"]).reset_index(drop=True)


#: the warehouse tables the budgets read (``--engine spark`` reads these into Spark)
BUDGET_INPUTS = ("priced_activity", "practices", "patients", "patient_conditions",
                 "practice_groups")


def registered_on_expr(patients: Any, day: dt.date) -> Any:
    """:func:`registered_on` as an Ibis condition over ``patients`` (any engine)."""
    cols = set(patients.columns)
    cond = ibis.literal(True)
    if "registered_from" in cols:
        cond &= patients.registered_from.isnull() | (patients.registered_from <= day)
    if "registered_to" in cols:
        cond &= patients.registered_to.isnull() | (patients.registered_to >= day)
    if "date_of_death" in cols:
        cond &= patients.date_of_death.isnull() | (patients.date_of_death > day)
    return cond


def _frames(warehouse: Warehouse, prior: str, *, person_level: bool,
            commissioner: str | None = None, engine: str = "duckdb") -> dict[str, pd.DataFrame]:
    """The budget inputs of one commissioner from the warehouse; the patient register
    itself only when ``person_level`` (a service line uses the person-based method).

    Money is the tariff value before the marginal rate, summed exactly by the engine and
    handed over as integer pence (``spend_pence``). ``engine="spark"`` runs the same Ibis
    expressions on Spark over the warehouse's Parquet files
    (:func:`pbc.warehouse.spark.spark_tables`); what comes back (sums by practice, service
    line and month; list sizes and costs by age-sex band; need indices; for the
    person-based model the register itself) is fitted here, as on DuckDB."""
    check_engine(engine)
    if not warehouse.has_table("priced_activity"):
        raise WarehouseError("set budgets after pricing: run pbc price first")
    if engine == "spark":
        from pbc.warehouse.spark import spark_tables

        with spark_tables(warehouse, BUDGET_INPUTS, stage="budgets") as tables:
            return _budget_inputs(tables, prior, person_level, commissioner)
    backend = warehouse.ibis()
    try:
        return _budget_inputs({n: backend.table(n) for n in BUDGET_INPUTS
                               if warehouse.has_table(n)}, prior, person_level, commissioner)
    finally:
        backend.disconnect()


def _budget_inputs(tables: dict[str, Any], prior: str, person_level: bool,
                   commissioner: str | None) -> dict[str, pd.DataFrame]:
    practices_t = tables["practices"]
    code = _commissioner(practices_t, commissioner)
    # the commissioner's own practices, and its registered patients on the prior year's end
    mine_practices = practices_t.filter(practices_t.commissioner_code == code).select(
        "practice_code", "group_code")
    patients_t = tables["patients"]
    patients = patients_t.filter(
        patients_t.practice_code.isin(mine_practices.practice_code),
        registered_on_expr(patients_t, year_bounds(parse_financial_year(prior))[1]))
    priced = tables["priced_activity"]
    mine = priced.filter(priced.financial_year == prior, priced.price.notnull(),
                         priced.commissioner_code == code)
    spend = mine.group_by(practice_code=mine.practice_code.fill_null(""),
                          service_line=mine.service_line, month=mine.month).aggregate(
        spend_pence=(tariff_value(mine).sum() * 100).cast("int64"))
    spend = _pandas(spend.order_by(["practice_code", "service_line", "month"]))
    if spend.empty:
        raise WarehouseError(f"no priced activity of commissioner {code} for the prior "
                             f"year {prior}: budgets start from prior-year spend")
    frames = {
        "spend": spend,
        "practices": _pandas(mine_practices.order_by("practice_code")),
        # the register is aggregated by the engine: list sizes by age-sex band, cost by
        # band and service line, need index per practice (pbc.budgets.register)
        "list_sizes": list_sizes(patients),
    }
    conditions = tables.get("patient_conditions")
    frames["need_index"] = need_index_expr(patients, conditions).execute()
    with_patient = mine.filter(mine.patient_id.notnull())
    patient_costs = with_patient.group_by(["patient_id", "service_line"]).aggregate(
        cost=tariff_value(with_patient).sum())
    frames["band_costs"] = band_costs_expr(patients, patient_costs).execute()
    if person_level:  # the person-based model is fitted on the register itself
        frames["patients"] = _pandas(patients.select(
            "patient_id", "practice_code", "sex", "age", "imd_decile"))
        frames["conditions"] = (
            _pandas(conditions.select("patient_id", "condition")) if conditions is not None
            else pd.DataFrame(columns=["patient_id", "condition"]))
        frames["patient_costs"] = _pandas(patient_costs)
    groups = tables.get("practice_groups")
    frames["membership"] = pd.DataFrame() if groups is None else _pandas(
        groups.filter(groups.practice_code.isin(mine_practices.practice_code)).select(
            "practice_code", "group_code", valid_from=groups.valid_from.cast("string"),
            valid_to=groups.valid_to.cast("string")))
    frames["commissioner"] = pd.DataFrame({"commissioner_code": [code]})
    return frames


def _pandas(expr: Any) -> pd.DataFrame:
    """An Ibis table's rows as pandas, with NumPy types as DuckDB's ``.df()`` gives them
    (object text, int64 counts), whichever engine ran it."""
    frame: pd.DataFrame = expr.to_pyarrow().to_pandas(types_mapper=None)
    for col in frame.columns:
        if pd.api.types.is_string_dtype(frame[col]) and not pd.api.types.is_object_dtype(
                frame[col]):
            frame[col] = frame[col].astype(object)
    return frame


def _nhse(policy: Any, nhse_file: Path | None) -> pd.DataFrame | None:
    """NHS England weighted populations when a line uses them: the user's file, else the
    latest file shipped with pbc."""
    if not any(policy.fair_share[line].method == "nhse_weighted_population"
               for line in policy.scope):
        return read_nhse_file(nhse_file) if nhse_file else None
    return read_nhse_file(nhse_file or packaged_nhse_file())


def set_indicative_budgets(
    warehouse: Warehouse,
    policy_path: Path,
    who: Principal,
    *,
    reason: str = "budgets set from policy",
    nhse_file: Path | None = None,
    statements: Path | None = None,
    engine: str = "duckdb",
) -> BudgetRun:
    """Set the indicative budgets of ``policy_path``'s year as a new draft version, store
    them in the warehouse and the decision store, and write the statements.

    ``engine="spark"``: the inputs read from the warehouse (prior-year spend, list sizes,
    costs by band, need indices) are computed on Spark (:func:`_frames`); the budgets
    themselves are computed here, as on DuckDB."""
    if who.role != "commissioner":
        raise AccessDenied(f"{who} may not set budgets: only the commissioner can (pbc "
                           "budgets set --policy FILE --as commissioner:CODE)")
    policy = read_policy(policy_path)
    prior = _prior_year(policy.financial_year)
    person_level = any(policy.fair_share[line].method == "person_based"
                       for line in policy.scope)
    frames = _frames(warehouse, prior, person_level=person_level,
                     commissioner=policy.commissioner_code, engine=engine)
    code = str(frames["commissioner"].commissioner_code.iloc[0])
    if who.organisation != code:
        raise AccessDenied(f"{who} may not set the budgets of commissioner {code}")
    # the year's confirmed opt-outs recorded in the decision store join the policy's own
    from pbc.services.optouts import recorded_opt_outs, with_recorded_opt_outs

    with DecisionStore.beside(warehouse.root) as store:
        opt_outs = recorded_opt_outs(store, code, policy.financial_year)
    policy = with_recorded_opt_outs(policy, opt_outs)
    practices = frames["practices"].practice_code.tolist()
    inputs = FairShareInputs(
        list_sizes=frames["list_sizes"],
        cost_weights=derive_cost_weights(frames["band_costs"]),
        need_index=frames["need_index"],
        patients=frames.get("patients"), conditions=frames.get("conditions"),
        patient_costs=frames.get("patient_costs"),
        nhse=_nhse(policy, nhse_file), practice_codes=practices,
    )
    windows = frames["membership"] if not frames["membership"].empty else None
    spend = frames["spend"]
    result = set_budgets(policy, inputs, spend.drop(columns=["month"]),
                         practices=frames["practices"], practice_groups=windows)
    if not warehouse.has_table("patient_conditions") and any(
            policy.fair_share[line].method == "weighted_capitation" for line in policy.scope):
        result = dataclasses.replace(result, notes=(
            *result.notes, "The warehouse holds no long-term conditions (no patient "
            "conditions file was loaded), so the need index of weighted capitation uses "
            "deprivation only."))
    profile = seasonal_profile(spend)
    monthly = phase_budgets(result.frame, profile)
    groups = group_budgets(result.frame, frames["practices"], practice_groups=windows,
                           financial_year=policy.financial_year, monthly=monthly)
    from pbc.budgets.explain import explain_all

    explained = explain_all(result)
    explanations = pd.DataFrame({
        "practice_code": practices,
        "explanation": [explained[p].to_text() if p in explained else "" for p in practices],
    })
    with DecisionStore.beside(warehouse.root) as store:
        version = store.next_version(policy.financial_year)
    phasing = budget_phasing(result, monthly, frames["practices"], windows, code, profile,
                             version)
    folder = statements or warehouse.root / "statements" / policy.financial_year
    digest = hashlib.sha256(Path(policy_path).read_bytes()).hexdigest()
    # before anything is stored: a statement already there stops the setting
    check_statements(_statement_paths(result, phasing, folder, policy.financial_year,
                                      version, None).values())
    _store(warehouse, result, monthly, groups, explanations, commissioner=code,
           phasing=phasing)
    applied = (f" (opt-outs recorded in pbc applied: "
               f"{', '.join(str(r.id) for r in opt_outs)})" if opt_outs else "")
    f = result.frame
    lines = [Line(str(p), str(sl), int(b), int(fs), int(h)) for p, sl, b, fs, h in zip(
        f.practice_code, f.service_line, f.budget, f.fair_share, f.historic, strict=True)]
    with DecisionStore.beside(warehouse.root) as store:
        recorded = store.record_budgets(who, policy.financial_year, lines,
                                        reason=reason + applied,
                                        policy_sha256=digest)
        status = next(v.status for v in store.history(policy.financial_year)
                      if v.version == recorded)
    if recorded != version:  # another setting ran at the same moment
        raise WarehouseError(f"budget version {recorded} was recorded while {version} was "
                             "being written: set the budgets again")
    context = statement_context(
        warehouse, policy.financial_year, version, status, code,
        source=f"pbc warehouse version {warehouse.manifest()['version']}: priced activity "
               f"{prior} (tariff value before the emergency marginal rate); budget policy "
               f"{Path(policy_path).name} (SHA-256 {digest[:12]}){applied}")
    files = write_statements(result, monthly, phasing, folder, context, profile=profile)
    return BudgetRun(result, version, folder, monthly, groups, files)


def _pounds(frame: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Integer pence columns -> Decimal pounds (2 places), for statements."""
    out = frame.copy()
    for c in cols:
        if c in out.columns:
            out[c] = pd.Series([pence_to_pounds(int(v)) for v in out[c]], index=out.index,
                               dtype=object)
    return out


def _pounds_sql(frame: pd.DataFrame, money: tuple[str, ...]) -> str:
    """SELECT list turning integer pence columns into exact DECIMAL(18,2) pounds."""
    cols = []
    for c in frame.columns:
        if c in money:
            cols.append(f'CAST(CAST("{c}" AS DECIMAL(18, 0)) * 0.01 AS DECIMAL(18, 2)) AS "{c}"')
        else:
            cols.append(f'"{c}"')
    return ", ".join(cols)


def commissioner_lines(result: BudgetResult, commissioner: str | None = None) -> pd.DataFrame:
    """The money the commissioner holds, one row per line: ``financial_year``,
    ``commissioner_code``, ``service_line``, ``kind`` (``top_slice``, ``unattributed``,
    ``opt_out``), ``name``, ``practice_code``, ``amount`` (int pence)."""
    ret = result.commissioner_retained.copy()
    ret.insert(0, "commissioner_code", commissioner or result.policy.commissioner_code)
    ret.insert(0, "financial_year", result.policy.financial_year)
    return ret


#: columns of ``budget_phasing``: every budget version's monthly budgets, kept for
#: monitoring (the other budget tables hold the latest setting only)
PHASING_COLUMNS = ["financial_year", "version", "kind", "commissioner_code", "practice_code",
                   "group_code", "service_line", "month", "budget"]


def budget_phasing(result: BudgetResult, monthly: pd.DataFrame, practices: pd.DataFrame,
                   windows: pd.DataFrame | None, commissioner: str, profile: pd.DataFrame,
                   version: int) -> pd.DataFrame:
    """One version's monthly budgets (int pence): each practice's phased budget with its
    group in that month (kind ``practice``), and the money the commissioner holds
    (``unattributed``, ``top_slice``, ``opt_out``) phased by the same prior-year profile,
    so that the commissioner's monthly budget is the whole envelope. Opted-out lines keep
    their practice (and its group in the month): kind ``opt_out`` with a practice code says
    that the commissioner holds that practice's line in this version."""
    fy = result.policy.financial_year
    known = practices[["practice_code", "group_code"]]
    months = membership_by_month(known, fy, windows)
    mine = monthly[["practice_code", "service_line", "month", "budget"]].merge(
        months, on=["practice_code", "month"], how="left")
    mine = mine.assign(kind="practice")
    held = result.commissioner_retained
    parts = [mine]
    pooled = held[held["kind"] != "opt_out"]
    if not pooled.empty:
        sums = pooled.groupby(["kind", "service_line"])["amount"].sum().reset_index()
        lines = pd.DataFrame({"practice_code": sums["kind"],  # phase_budgets keys on it
                              "service_line": sums["service_line"],
                              "budget": sums["amount"].astype("int64")})
        phased = phase_budgets(lines[["practice_code", "service_line", "budget"]], profile)
        phased = phased.rename(columns={"practice_code": "kind"}).assign(
            practice_code=None, group_code=None)
        parts.append(phased)
    opted = held[held["kind"] == "opt_out"]
    if not opted.empty:
        # one row per opted-out practice and line (with its group in each month), so that
        # monitoring knows which lines of which practice the commissioner holds
        lines = pd.DataFrame({"practice_code": opted["practice_code"].astype(str),
                              "service_line": opted["service_line"],
                              "budget": opted["amount"].astype("int64")})
        phased = phase_budgets(lines, profile).merge(months, on=["practice_code", "month"],
                                                     how="left")
        parts.append(phased.assign(kind="opt_out"))
    out = pd.concat(parts, ignore_index=True)
    out = out.assign(financial_year=fy, version=int(version), commissioner_code=commissioner)
    out["budget"] = out["budget"].astype("int64")
    return out[PHASING_COLUMNS]


def _store(warehouse: Warehouse, result: BudgetResult, monthly: pd.DataFrame,
           groups: pd.DataFrame, explanations: pd.DataFrame, *,
           commissioner: str | None = None, phasing: pd.DataFrame | None = None) -> None:
    """Write the budget tables in one transaction; money as DECIMAL(18,2) pounds.

    ``phasing`` (one version's monthly budgets) is added to ``budget_phasing`` beside the
    earlier versions' (a version written again replaces its own files only)."""
    held = commissioner_lines(result, commissioner)
    groups = groups.assign(financial_year=result.policy.financial_year)
    with warehouse.begin("budgets") as tx:
        con = tx.connect()
        if phasing is not None and not phasing.empty:
            fy = str(phasing.financial_year.iloc[0])
            prefix = f"budget_phasing-{fy}-v{int(phasing.version.iloc[0]):04d}"
            if tx.has_table("budget_phasing"):
                tx.drop_files("budget_phasing", prefix)
            con.register("budget_phasing_df", phasing)
            tx.write(con, "budget_phasing",
                     f"SELECT {_pounds_sql(phasing, ('budget',))} FROM budget_phasing_df",
                     file_prefix=prefix, meta={"kind": "output"})
        for name, df, money in (
                ("indicative_budgets", result.frame, MONEY_COLUMNS),
                ("indicative_budgets_monthly", monthly, ("budget",)),
                ("group_budgets", groups, ("budget",)),
                ("budget_commissioner_lines", held, ("amount",)),
                ("budget_explanations", explanations, ())):
            con.register(f"{name}_df", df)
            tx.write(con, name, f"SELECT {_pounds_sql(df, money)} FROM {name}_df",
                     file_prefix=name, replace=True, meta={"kind": "output"})
        con.close()


def write_statements(result: BudgetResult, monthly: pd.DataFrame, phasing: pd.DataFrame,
                     folder: Path, context: StatementContext, *,
                     profile: pd.DataFrame | None = None,
                     practices: list[str] | None = None) -> list[Path]:
    """The setting's statements in ``folder``, each name holding the year and version: a
    CSV of all budgets, a CSV of the money the commissioner holds, a workbook per practice
    (all when at most :data:`PRACTICE_STATEMENT_LIMIT`, else those asked for) and per group
    (:mod:`pbc.reports.budget_statement`). An existing file is never overwritten: the
    statements of a version are written once (:func:`check_statements` first)."""
    paths = _statement_paths(result, phasing, folder, context.financial_year,
                             context.version, practices)
    check_statements(paths.values())
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    pounds = budgets_in_pounds(result.frame)
    _write_csv(pounds, paths.pop("budgets"), written)
    _write_csv(_pounds(commissioner_lines(result, context.commissioner_code), ["amount"]),
               paths.pop("held"), written)
    first_month = phasing[(phasing["kind"] == "practice") & (phasing["month"] == 1)]
    group_on_1_april = dict(zip(first_month["practice_code"].astype(str),
                                first_month["group_code"], strict=True))
    frame = result.frame
    mine = phasing[phasing["kind"] == "practice"]
    # each group's rows split out once (at national scale, 309 groups x 630,000 phased
    # rows: looking every group up in the whole frame took most of the statements' time);
    # a group statement given its own rows writes what it writes given all of them
    by_group = {str(g): rows for g, rows in mine.groupby(
        mine["group_code"].astype(str).to_numpy(), sort=False)}
    practice_rows = pd.Series(np.arange(len(frame))).groupby(
        frame["practice_code"].astype(str).to_numpy(), sort=False).apply(list).to_dict()
    for key, path in paths.items():
        kind, code = key.split(":", 1)
        if kind == "practice":
            g = group_on_1_april.get(code)
            written.append(practice_statement(
                path, result.explain(code), frame[frame.practice_code == code],
                monthly[monthly.practice_code == code], context,
                group=None if g is None or pd.isna(g) else str(g)))
        else:
            members = by_group[code]
            at = sorted(i for c in members["practice_code"].astype(str).unique()
                        for i in practice_rows.get(c, ()))
            written.append(group_statement(path, code, frame.iloc[at], members, profile,
                                           context))
    return written


def _statement_paths(result: BudgetResult, phasing: pd.DataFrame, folder: Path,
                     financial_year: str, version: int, practices: list[str] | None
                     ) -> dict[str, Path]:
    codes = practices if practices is not None else sorted(
        str(c) for c in result.frame.practice_code.unique())
    if practices is None and len(codes) > PRACTICE_STATEMENT_LIMIT:
        codes = []
    groups = sorted(str(g) for g in phasing.loc[phasing["kind"] == "practice", "group_code"]
                    .dropna().unique())
    return statement_paths(folder, financial_year, version, codes, groups)


def check_statements(paths: Any) -> None:
    """Refuse (naming the file) when a statement would overwrite a file already there: an
    agreed version's statement is a record, and a version's statements are written once."""
    there = [p for p in paths if Path(p).exists()]
    if there:
        raise WarehouseError(
            f"{there[0]}: a statement of this year and version is already there"
            f"{f' (and {len(there) - 1} more)' if len(there) > 1 else ''}; pbc never "
            "overwrites a statement: write them elsewhere (--out) or move the old ones")


def _write_csv(frame: pd.DataFrame, path: Path, written: list[Path]) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    try:
        spreadsheet_safe(frame).to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    written.append(path)


def statement_context(warehouse: Warehouse, financial_year: str, version: int, status: str,
                      commissioner: str, source: str) -> StatementContext:
    """Names beside codes (from the warehouse's practices, groups and commissioners
    tables, where they have names) and last year's budgets (the decision store's agreed
    version of the year before, else its latest draft; ``None`` when there is none)."""
    names = organisation_names(warehouse)
    prior = _prior_year(financial_year)
    last = None
    with DecisionStore.beside(warehouse.root) as store:
        v = store.current(prior)
        if v is not None:
            lines = store.lines(prior, v.version)
            last_version, last_status = v.version, v.status
    if v is not None:
        practices = pd.DataFrame([(x.practice_code, x.service_line, x.budget_pence)
                                  for x in lines],
                                 columns=["practice_code", "service_line", "budget"])
        groups = None
        if warehouse.has_table("budget_phasing"):
            rows = warehouse.query(
                "SELECT group_code, service_line, CAST(sum(budget) * 100 AS BIGINT) "
                "FROM budget_phasing WHERE financial_year = ? AND version = ? AND "
                "kind = 'practice' AND group_code IS NOT NULL GROUP BY ALL",
                [prior, int(last_version)])
            if rows:
                groups = pd.DataFrame(rows, columns=["group_code", "service_line", "budget"])
        last = LastYear(prior, int(last_version), last_status, practices, groups)
    return StatementContext(
        financial_year=financial_year, version=int(version), status=status,
        commissioner_code=commissioner, source=source,
        commissioner_name=names["commissioners"].get(commissioner, ""),
        practice_names=names["practices"], group_names=names["groups"], last_year=last)


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
    """Agree a draft version; ``2026/27`` and ``2026-27`` name the same year."""
    with DecisionStore.beside(warehouse.root) as store:
        store.agree(who, normalise_financial_year(financial_year), version)


def needs_for_group(nhse_file: Path | None, group_file: Path, out: Path | None = None) -> Any:
    """Need indices of the practices in ``group_file``; ``nhse_file`` defaults to the latest
    NHS England file shipped with pbc."""
    from pbc.budgets import needs_indices, packaged_nhse_file, read_group_file

    frame = needs_indices(read_nhse_file(nhse_file or packaged_nhse_file()),
                          read_group_file(group_file))
    if out is not None:
        frame[["component", "group_index", "icb_index"]].to_csv(out, index=False)
    return frame
