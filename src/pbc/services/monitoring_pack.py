"""Monitoring packs as a use case: everything a practice, group or commissioner reads each
month, gathered from the warehouse (the workbook and chart are written by
:mod:`pbc.reports.monitoring_pack`).

For month ``M`` and each budget holder the principal may see (the access rules of
:func:`pbc.services.monitoring.monthly_position`):

* the position by service line and in total (:mod:`pbc.monitoring.position`);
* the months Apr..Mar: phased budget, spend, and their running totals, with the forecast
  path of cumulative spend to March and the ratio model's 80% fan around it;
* variance drivers by service line, HRG chapter, provider and risk segment
  (:mod:`pbc.monitoring.drivers`; risk segments only where ``pbc risk score`` has run);
* freed resources forecast and the reinvestment ledger (:mod:`pbc.monitoring.freed`);
* the forecast back-test: each method's outturn forecast at every month of last year,
  made from what was known then (the year before as the profile), against last year's
  real outturn, over every holder at the level, with this holder's own error;
* restatements, when given (``month, level, code, service_line, old, new, difference,
  why``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import ibis
import numpy as np
import pandas as pd

from pbc.calendar import format_financial_year, parse_financial_year
from pbc.decisions import DecisionStore
from pbc.monitoring.drivers import DIMENSIONS, Dimension, drivers, segment_label
from pbc.monitoring.forecast import (
    INTERVAL,
    METHODS,
    Forecast,
    Method,
    forecast,
    ratio_model,
    seasonal_run_rate,
)
from pbc.monitoring.freed import (
    FreedResources,
    ReinvestmentRule,
    freed_resources,
    reinvestment_ledger,
)
from pbc.monitoring.position import TOTAL, Level
from pbc.pricing.schema import TARIFF_VALUE_SQL
from pbc.services.monitoring import (
    POSITION_INPUTS,
    MonthlyPosition,
    _allowed,
    _budget,
    _frame,
    _opted_out,
    _spend,
    members_in,
    monthly_position,
    parse_period,
    position_outturns,
    year_outturns,
)
from pbc.services.principal import Principal
from pbc.warehouse import Warehouse, WarehouseError
from pbc.warehouse.validate import lit

#: columns of a restatements table given to the pack
RESTATEMENT_COLUMNS = ["month", "level", "code", "service_line", "old", "new", "difference",
                       "why"]
#: columns of the pack's months table (money in pence)
MONTH_COLUMNS = ["month", "budget", "spend", "variance", "cumulative_budget",
                 "cumulative_spend", "forecast_cumulative", "fan_lower", "fan_upper"]
BACKTEST_COLUMNS = ["month", "method", "holders", "mean_absolute_percentage_error",
                    "median_absolute_percentage_error", "interval_coverage",
                    "holder_absolute_percentage_error"]
LEDGER_COLUMNS = ["code", "name", "financial_year", "budget", "outturn", "outturn_basis",
                  "freed", "reinvestable", "opening", "drawn", "lapsed", "closing"]


@dataclass(frozen=True)
class HolderPack:
    """One holder's pack (money in integer pence)."""

    level: Level
    code: str
    name: str
    position: pd.DataFrame  # the holder's rows of the position (lines and 'all')
    months: pd.DataFrame  # MONTH_COLUMNS
    drivers: dict[str, pd.DataFrame]  # dimension -> drivers.COLUMNS (with 'label')
    ledger: pd.DataFrame  # LEDGER_COLUMNS
    backtest: pd.DataFrame  # BACKTEST_COLUMNS
    interval: tuple[int, int, int] | None  # ratio model: outturn, lower, upper
    restatements: pd.DataFrame


@dataclass(frozen=True)
class PackSet:
    """Every pack of one position, and what they share."""

    position: MonthlyPosition
    packs: list[HolderPack]
    backtest_note: str
    drivers_notes: list[str]
    rule: ReinvestmentRule
    #: the commissioner summary's holders (one row per holder, totals; pence)
    holders: pd.DataFrame = field(default_factory=pd.DataFrame)


def _names(con: object, level: Level) -> dict[str, str]:
    table, code, name = {"practice": ("practices", "practice_code", "practice_name"),
                         "group": ("groups", "group_code", "group_name"),
                         "commissioner": ("commissioners", "commissioner_code",
                                          "commissioner_name")}[level]
    try:
        rows = con.execute(f"SELECT {code}, {name} FROM {table}").fetchall()  # type: ignore
    except Exception:
        return {}
    return {str(c): str(n or "") for c, n in rows}


def _provider_names(con: object) -> dict[str, str]:
    with contextlib.suppress(Exception):
        rows = con.execute("SELECT provider_code, provider_name FROM providers"  # type: ignore
                           ).fetchall()
        return {str(c): str(n or "") for c, n in rows}
    return {}


def _dimension_spend(con: object, fy: str, level: Level, commissioner: str,
                     dimension: Dimension, has_scores: bool) -> pd.DataFrame:
    """``code, service_line, segment, month, spend, activity`` of one year."""
    code = {"practice": "practice_code", "group": "group_code",
            "commissioner": "commissioner_code"}[level]
    where = [f"financial_year = {lit(fy)}", "price IS NOT NULL",
             f"commissioner_code = {lit(commissioner)}"]
    if level != "commissioner":
        where += ["attributed", f"{code} IS NOT NULL"]
    join = ""
    if dimension == "risk_segment":
        # the segment of the latest scoring (pbc risk score); prescribing has no patient
        seg = ("CASE WHEN patient_id IS NULL THEN '(no patient: prescribing)' "
               "ELSE coalesce(rs_segment, '(not scored)') END")
        if has_scores:
            join = ("LEFT JOIN (SELECT patient_id AS rs_patient, any_value(segment) AS "
                    "rs_segment FROM risk_scores GROUP BY ALL) ON rs_patient = patient_id")
        else:
            seg = "'(not scored)'"
    elif dimension == "hrg_chapter":  # as pbc.monitoring.drivers.hrg_chapter
        seg = "coalesce(upper(left(nullif(trim(hrg_code), ''), 1)), '(no HRG)')"
    elif dimension == "provider":
        seg = "coalesce(provider_code, '(no provider)')"
    else:
        seg = "service_line"
    sql = f"""
        SELECT {code} AS code, service_line, {seg} AS segment, month,
               CAST(sum({TARIFF_VALUE_SQL}) * 100 AS BIGINT) AS spend,
               count(*) AS activity
        FROM priced_activity {join}
        WHERE {' AND '.join(where)}
        GROUP BY ALL ORDER BY ALL"""
    frame: pd.DataFrame = con.execute(sql).df()  # type: ignore[attr-defined]
    return frame


def _by_code(frame: pd.DataFrame) -> Callable[[str], pd.DataFrame]:
    """``frame``'s rows of one holder (``code``), in their order, index from 0: as
    ``frame[frame.code == code].reset_index(drop=True)``, with the frame split only once."""
    positions: dict[str, list[int]] = {}
    for n, c in enumerate(frame["code"].astype(str)):
        positions.setdefault(c, []).append(n)

    def rows(code: str) -> pd.DataFrame:
        return frame.iloc[positions.get(str(code), [])].reset_index(drop=True)

    return rows


def _panel(frame: pd.DataFrame, codes: Sequence[str], value: str) -> np.ndarray:
    """Totals (all service lines) by holder and month: ``len(codes) x 12`` pence."""
    out = np.zeros((len(codes), 12), dtype=np.int64)
    if frame.empty:
        return out
    index = {c: i for i, c in enumerate(codes)}
    rows = frame["code"].astype(str).map(index)
    ok = rows.notna().to_numpy() & frame["month"].between(1, 12).to_numpy()
    np.add.at(out, (rows[ok].astype(int).to_numpy(), frame["month"].to_numpy()[ok] - 1),
              frame[value].to_numpy(dtype=np.int64)[ok])
    return out


def forecast_path(method: Method, actual: np.ndarray, month: int,
                  prior: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None,
                                                     np.ndarray | None]:
    """Cumulative spend forecast at the end of every month (units x 12, pence): the actual
    running total to ``month``, then the method's forecast of the running total at each
    later month, with the ratio model's 80% interval where ``method`` is the ratio model.

    A later month ``k`` is forecast as the outturn of a year that ends at ``k``: last
    year's months after ``k`` set to zero, so the seasonal methods scale by last year's
    running total to ``k`` and the ratio model adds ``beta* x`` last year's months
    ``month+1..k`` with its interval over those months (the model's estimates use months
    1..``month`` only, so they are the same at every ``k``)."""
    n = actual.shape[0]
    cum = np.cumsum(actual[:, :month], axis=1)
    path = np.zeros((n, 12), dtype=np.int64)
    lower = upper = None
    path[:, :month] = cum
    if method == "ratio_model":
        lower = np.zeros((n, 12), dtype=np.int64)
        upper = np.zeros((n, 12), dtype=np.int64)
        lower[:, :month] = cum
        upper[:, :month] = cum
    for k in range(month + 1, 13):
        if method == "run_rate":
            ytd = actual[:, :month].sum(axis=1).astype(np.float64)
            x = ytd * k / month
            path[:, k - 1] = (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)
            continue
        assert prior is not None
        cut = prior.copy()
        cut[:, k:] = 0
        f: Forecast = (ratio_model(actual, cut, month) if method == "ratio_model"
                       else seasonal_run_rate(actual, cut, month))
        path[:, k - 1] = f.outturn
        if lower is not None and upper is not None and f.lower is not None \
                and f.upper is not None:
            lower[:, k - 1] = f.lower
            upper[:, k - 1] = f.upper
    return path, lower, upper


def _backtest(year: np.ndarray, before: np.ndarray | None
              ) -> tuple[pd.DataFrame, dict[tuple[int, str], np.ndarray]]:
    """Each method's outturn forecast at months 1-11 of a completed year against its real
    outturn, over every holder with one (the figures of
    :func:`pbc.monitoring.forecast.backtest`), and every holder's own absolute percentage
    error by (month, method) (NaN where there is none)."""
    truth = year.sum(axis=1).astype(np.float64)
    rows = []
    per_unit: dict[tuple[int, str], np.ndarray] = {}
    methods: tuple[Method, ...] = METHODS if before is not None else ("run_rate",)
    for m in range(1, 12):
        for method in methods:
            f = forecast(method, year, m, before)
            keep = f.available & (truth > 0)
            if not keep.any():
                continue
            ape = np.full(len(truth), np.nan)
            ape[keep] = np.abs(f.outturn[keep] - truth[keep]) / truth[keep] * 100
            cover = None
            if f.lower is not None and f.upper is not None:
                inside = (f.lower[keep] <= truth[keep]) & (truth[keep] <= f.upper[keep])
                cover = float(inside.mean())
            per_unit[(m, method)] = ape
            rows.append({"month": m, "method": method, "holders": int(keep.sum()),
                         "mean_absolute_percentage_error": float(ape[keep].mean()),
                         "median_absolute_percentage_error": float(np.median(ape[keep])),
                         "interval_coverage": cover,
                         "holder_absolute_percentage_error": None})
    return pd.DataFrame(rows, columns=BACKTEST_COLUMNS), per_unit


def _own_backtest(frame: pd.DataFrame, per_unit: dict[tuple[int, str], np.ndarray],
                  index: int | None) -> pd.DataFrame:
    own = []
    for m, method in zip(frame["month"], frame["method"], strict=True):
        v = per_unit[(int(m), str(method))][index] if index is not None else np.nan
        own.append(None if np.isnan(v) else float(v))
    return frame.assign(holder_absolute_percentage_error=pd.Series(own, dtype=object))


def _restatements_for(frame: pd.DataFrame | None, level: Level, code: str) -> pd.DataFrame:
    if frame is None or frame.empty:
        return pd.DataFrame(columns=RESTATEMENT_COLUMNS)
    missing = [c for c in RESTATEMENT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"restatements: missing column(s) {', '.join(missing)} (needs "
                         f"{', '.join(RESTATEMENT_COLUMNS)})")
    keep = (frame["level"].astype(str) == level) & (frame["code"].astype(str) == code)
    if level == "commissioner":  # the commissioner sees every restatement
        keep = pd.Series(True, index=frame.index)
    return frame.loc[keep, RESTATEMENT_COLUMNS].reset_index(drop=True)


def _ledger(warehouse: Warehouse, who: Principal, pos: MonthlyPosition, level: Level,
            method: Method, rule: ReinvestmentRule, names: dict[str, str]) -> pd.DataFrame:
    """The reinvestment ledger to this year: earlier budget years at their actual outturn
    (or latest forecast), this year at the position's forecast (no plans drawn here)."""
    fy = pos.financial_year
    with DecisionStore.beside(warehouse.root) as store:
        years = sorted({str(v.financial_year) for v in store.all_versions()
                        if parse_financial_year(str(v.financial_year))
                        < parse_financial_year(fy)})
    freed: list[FreedResources] = []
    basis: dict[tuple[str, str], str] = {}
    earlier = [(year, year_outturns(warehouse, who, year, level=level, method=method))
               for year in years]
    for year, outturns in [*earlier, (fy, position_outturns(pos, actual=pos.month == 12,
                                                            skip_missing=True))]:
        for o in outturns:
            freed.append(freed_resources(o.code, year, o.budget, o.outturn, rule))
            basis[(o.code, year)] = o.basis
    ledger = reinvestment_ledger(freed, [], rule)
    by_key = {(f.code, f.financial_year): f for f in freed}
    rows = []
    for row in ledger.rows:
        if row.financial_year != fy:
            continue
        f = by_key.get((row.code, fy))
        rows.append({"code": row.code, "name": names.get(row.code, ""), "financial_year": fy,
                     "budget": f.budget if f else 0, "outturn": f.outturn if f else 0,
                     "outturn_basis": basis.get((row.code, fy), "no forecast"),
                     "freed": f.freed if f else 0,
                     "reinvestable": f.reinvestable if f else 0, "opening": row.opening,
                     "drawn": row.drawn, "lapsed": row.lapsed, "closing": row.closing})
    return pd.DataFrame(rows, columns=LEDGER_COLUMNS)


def build_packs(warehouse: Warehouse, who: Principal, period: str, *,
                level: Level = "practice", method: Method = "seasonal_run_rate",
                version: int | None = None, restatements: pd.DataFrame | None = None,
                rule: ReinvestmentRule | None = None) -> PackSet:
    """The packs of every holder at ``level`` that ``who`` may see, at ``period``."""
    rule = rule or ReinvestmentRule()
    pos = monthly_position(warehouse, who, period, level=level, method=method, version=version)
    fy, month = pos.financial_year, pos.month
    start = parse_financial_year(fy)
    prior_fy = format_financial_year(start - 1)
    before_fy = format_financial_year(start - 2)
    has_scores = warehouse.has_table("risk_scores")
    con = warehouse.connect()
    try:
        names = _names(con, level)
        providers = _provider_names(con)
        # the position's own sums (opted-out lines left to the commissioner, as there)
        backend = ibis.duckdb.from_connection(con)
        priced, phasing = (backend.table(n) for n in POSITION_INPUTS)
        opted = _opted_out(phasing, fy, pos.budget_version)
        spend, prior, before = (_frame(_spend(priced, year, level, pos.commissioner_code,
                                              opted)) for year in (fy, prior_fy, before_fy))
        budget = _frame(_budget(phasing, fy, pos.budget_version, level))
        visible = sorted(set(pos.frame.code.astype(str)))
        by_dim: dict[str, pd.DataFrame] = {}
        for dim in DIMENSIONS:
            this = _dimension_spend(con, fy, level, pos.commissioner_code, dim, has_scores)
            last = _dimension_spend(con, prior_fy, level, pos.commissioner_code, dim,
                                    has_scores)
            by_dim[dim] = drivers(this, budget, last, month=month, dimension=dim,
                                  codes=visible)
    finally:
        con.close()
    codes = sorted(set(spend.code.astype(str)) | set(budget.code.astype(str)))
    actual = _panel(spend, codes, "spend")
    actual[:, month:] = 0
    last_year = _panel(prior, codes, "spend") if not prior.empty else None
    phased = _panel(budget, codes, "budget")
    path, _, _ = forecast_path(method, actual, month, last_year)
    fan_lower = fan_upper = None
    ratio = None
    if last_year is not None and month >= 2:
        _, fan_lower, fan_upper = forecast_path("ratio_model", actual, month, last_year)
        ratio = ratio_model(actual, last_year, month, INTERVAL)
    # the back-test: last year (complete) forecast from its own months and the year before
    prior_months = int(prior.month.max()) if not prior.empty else 0
    truth = _panel(prior, codes, "spend") if prior_months == 12 else None
    profile = _panel(before, codes, "spend") if not before.empty else None
    if truth is None:
        backtest_note = (f"no back-test: {prior_fy} is not complete in the warehouse "
                         f"({prior_months} months)")
    elif profile is None:
        backtest_note = (f"{prior_fy} back-tested by the run rate only: the seasonal methods "
                         f"need {before_fy}, which the warehouse does not hold")
    else:
        backtest_note = (f"each method's outturn forecast at every month of {prior_fy}, from "
                         f"the months known then and {before_fy} as last year, against "
                         f"{prior_fy}'s real outturn")
    backtest, per_unit = (_backtest(truth, profile) if truth is not None
                          else (pd.DataFrame(columns=BACKTEST_COLUMNS), {}))
    drivers_notes = []
    if not has_scores:
        drivers_notes.append("risk segments need pbc risk score: every patient is "
                             "'(not scored)' until then")
    packs = []
    # each holder's rows, split once (a filter per holder is quadratic: hours for 6,553)
    index = {c: i for i, c in enumerate(codes)}
    pos_rows = _by_code(pos.frame)
    dim_rows = {dname: _by_code(frame) for dname, frame in by_dim.items()}
    for code in visible:
        i = index.get(code)
        rows = pos_rows(code)
        months = pd.DataFrame({"month": range(1, 13)})
        if i is not None:
            b, s = phased[i], actual[i]
            months["budget"] = b
            months["spend"] = np.where(months.month <= month, s, 0)
            months["variance"] = months.spend - months.budget
            months["cumulative_budget"] = np.cumsum(b)
            months["cumulative_spend"] = np.where(months.month <= month, np.cumsum(s), 0)
            months["forecast_cumulative"] = path[i]
            months["fan_lower"] = fan_lower[i] if fan_lower is not None else 0
            months["fan_upper"] = fan_upper[i] if fan_upper is not None else 0
        months = months.reindex(columns=MONTH_COLUMNS, fill_value=0)
        for col in ("spend", "variance", "cumulative_spend"):
            months[col] = months[col].astype(object).where(months.month <= month, None)
        for col in ("forecast_cumulative", "fan_lower", "fan_upper"):
            months[col] = months[col].astype(object).where(months.month >= month, None)
        if fan_lower is None:
            months["fan_lower"] = None
            months["fan_upper"] = None
        interval = None
        if ratio is not None and i is not None and ratio.available[i] and \
                ratio.lower is not None and ratio.upper is not None:
            interval = (int(ratio.outturn[i]), int(ratio.lower[i]), int(ratio.upper[i]))
        dims: dict[str, pd.DataFrame] = {}
        for dname in by_dim:
            d = dim_rows[dname](code)
            label_names = providers if dname == "provider" else {}
            d["label"] = [segment_label(dname, str(s), label_names) for s in d.segment]
            dims[dname] = d
        bt = _own_backtest(backtest, per_unit, i)
        packs.append(HolderPack(level, code, names.get(code, ""), rows, months, dims,
                                pd.DataFrame(columns=LEDGER_COLUMNS), bt, interval,
                                _restatements_for(restatements, level, code)))
    # the freed-resources ledger: the holder's own (practice and group packs); the
    # commissioner's pack lists every practice
    holders = pd.DataFrame()
    if level == "commissioner":
        practice_pos = monthly_position(warehouse, who, period, level="practice",
                                        method=method, version=version)
        con = warehouse.connect()
        try:
            practice_names = _names(con, "practice")
        finally:
            con.close()
        ledger = _ledger(warehouse, who, practice_pos, "practice", method, rule,
                         practice_names)
        totals = practice_pos.frame[practice_pos.frame.service_line == TOTAL].copy()
        totals.insert(2, "name", [practice_names.get(str(c), "") for c in totals.code])
        holders = totals.reset_index(drop=True)
    else:
        ledger = _ledger(warehouse, who, pos, level, method, rule, names)
    own_ledger = _by_code(ledger) if level != "commissioner" else None
    packs = [HolderPack(p.level, p.code, p.name, p.position, p.months, p.drivers,
                        ledger if own_ledger is None else own_ledger(p.code),
                        p.backtest, p.interval, p.restatements) for p in packs]
    return PackSet(pos, packs, backtest_note, drivers_notes, rule, holders)


def shared_packs(warehouse: Warehouse, period: str, *, level: Level = "practice",
                 method: Method = "seasonal_run_rate") -> PackSet:
    """Every holder's pack at ``level``, as the budget's commissioner sees them: the set
    each principal's packs are cut from (:func:`packs_for`), for a caller (the web app)
    that serves many holders. One holder's pack costs as much as all of them, because it
    is computed from every holder's figures (the drivers' plan falls back on the
    commissioner's mix, the forecast interval and the back-test pool every holder), so one
    computation serves every practice (or group) instead of one each."""
    fy, _ = parse_period(period)
    with DecisionStore.beside(warehouse.root) as store:
        chosen = store.current(fy, with_lines=False)
    if chosen is None:
        raise WarehouseError(f"no budgets are set for {fy}: run pbc budgets set first")
    rows = warehouse.query("SELECT DISTINCT commissioner_code FROM budget_phasing WHERE "
                           "financial_year = ? AND version = ?", [fy, int(chosen.version)])
    if len(rows) != 1:
        raise WarehouseError(f"budget version {chosen.version} of {fy} has no monthly "
                             "phasing of one commissioner: set the budgets again")
    who = Principal("pbc", "commissioner", str(rows[0][0]))
    return build_packs(warehouse, who, period, level=level, method=method)


def packs_for(full: PackSet, who: Principal, warehouse: Warehouse) -> PackSet:
    """The part of :func:`shared_packs`' ``full`` that ``who`` may see, under the same rule
    as :func:`build_packs` (:class:`AccessDenied` otherwise): the commissioner all of it, a
    practice (group) its own pack at practice (group) level, a group's lead its member
    practices' packs at practice level. The figures are those :func:`build_packs` gives
    ``who`` (each pack is computed from every holder's figures either way)."""
    pos = full.position
    level = full.packs[0].level if full.packs else "practice"
    only = _allowed(who, level, pos.commissioner_code,
                    members_in(warehouse, pos.financial_year, pos.budget_version))
    if only is None:
        return full
    frame = pos.frame[pos.frame.code.astype(str).isin(only)].reset_index(drop=True)
    if frame.empty:
        what = f"{level} {next(iter(only))} has" if len(only) == 1 else \
            f"group {who.organisation}'s member practices have"
        raise WarehouseError(f"{what} no budget or spend in {pos.financial_year}")
    return PackSet(replace(pos, frame=frame), [p for p in full.packs if p.code in only],
                   full.backtest_note, full.drivers_notes, full.rule)
