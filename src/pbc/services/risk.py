"""Case finding services: train, score, report, practice lists and suppressed aggregates.

Every call takes a :class:`~pbc.services.principal.Principal` and checks it here, the one
place patient-level risk rows leave the warehouse (docs/security.md):

- training, scoring and the validation report run over the whole registered population and
  are the commissioner's job: role ``commissioner`` only (and, when the warehouse knows its
  commissioners, the principal's organisation must be one of them);
- patient-level rows (:func:`case_finding_list`, :func:`export_case_finding`) go only to a
  ``practice`` user of the patients' own practice; every other role gets ``AccessDenied``;
- aggregates (:func:`segment_counts`) go to groups, commissioners and local authorities for
  their own patients (a group's practices, a commissioner's practices, a local authority's
  residents), with counts 1-7 suppressed (:mod:`pbc.services.suppression`); a practice may
  see its own counts unsuppressed; the public gets nothing.

The model is kept in the warehouse beside the tables (``reference/risk/model.json``, plus the
exact model used by the latest scoring run), so ``pbc risk train``, ``pbc risk score`` and
``pbc risk report`` need no file arguments. Results are plain dataclasses and lists of dicts.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd

from pbc.risk.casefinding import (
    LEVEL_KEYS,
    LEVELS,
    case_finding_frame,
    score_frame,
    scores_with_organisations,
    segment_count_expr,
)
from pbc.risk.features import (
    FEATURE_WINDOWS,
    NAIVE_FEATURE,
    add_months,
    build_features,
    covered_features,
    outcome_cohort,
)
from pbc.risk.model import RiskModel, fit, load_spec
from pbc.risk.segments import SEGMENT_NAMES
from pbc.risk.validation import ValidationReport, validate
from pbc.services.principal import AccessDenied, Principal
from pbc.services.suppression import DEFAULT_THRESHOLD, MARKER, suppress_levels
from pbc.warehouse import Warehouse, WarehouseError
from pbc.warehouse.export import spreadsheet_safe
from pbc.warehouse.spark import check_engine
from pbc.warehouse.store import FILE_MODE

MODEL_FILE = "risk/model.json"  # under the warehouse version's reference/ folder
SCORING_MODEL_FILE = "risk/scoring-model.json"
SCORES_TABLE = "risk_scores"
FEATURE_INPUTS = ("patients", "patient_conditions", "apc_spells", "ae_attendances",
                  "op_attendances", "priced_activity")
ACTIVITY_DATES = {"apc_spells": "admission_date", "ae_attendances": "arrival_date",
                  "op_attendances": "appointment_date"}
HOLDOUT_FRACTION = 0.3


# ------------------------------------------------------------------ access
def _require_commissioner(warehouse: Warehouse, principal: Principal, what: str) -> None:
    if principal.role != "commissioner":
        raise AccessDenied(f"{principal}: only a commissioner may {what} (give --as "
                           "commissioner:CODE)")
    if warehouse.has_table("practices"):
        codes = {r[0] for r in warehouse.query(
            "SELECT DISTINCT commissioner_code FROM practices")}
        if codes and principal.organisation not in codes:
            raise AccessDenied(
                f"{principal}: {principal.organisation} is not a commissioner of this "
                f"warehouse ({', '.join(sorted(c for c in codes if c))})")


def _require_own_practice(principal: Principal, practice_code: str) -> None:
    if principal.role != "practice":
        raise AccessDenied(
            f"{principal}: patient-level risk lists are only for the patients' own practice "
            f"(pbc risk list {practice_code} --as practice:{practice_code}); for counts by "
            "risk segment use pbc risk segments")
    if principal.organisation != practice_code:
        raise AccessDenied(f"{principal}: may see only the patients of practice "
                           f"{principal.organisation}, not {practice_code} (pbc risk list "
                           f"{principal.organisation} --as practice:{principal.organisation})")


# ------------------------------------------------------------------ data windows
@dataclass(frozen=True)
class Windows:
    """Reference dates for training and validation (features before, outcome after)."""

    first_activity: dt.date
    last_activity: dt.date
    train_date: dt.date
    validation_date: dt.date
    method: str  # "temporal" or "held_out"
    score_date: dt.date


def _month_start(d: dt.date) -> dt.date:
    return d.replace(day=1)


def data_span(warehouse: Warehouse) -> tuple[dt.date, dt.date]:
    """First and last activity dates in the warehouse (admissions, A&E, outpatients)."""
    parts = [f"SELECT min({col}) AS lo, max({col}) AS hi FROM {t}"
             for t, col in ACTIVITY_DATES.items() if warehouse.has_table(t)]
    if not parts:
        raise WarehouseError(f"{warehouse.root}: no activity loaded (apc_spells needed)")
    lo, hi = warehouse.query(f"SELECT min(lo), max(hi) FROM ({' UNION ALL '.join(parts)})")[0]
    if lo is None:
        raise WarehouseError(f"{warehouse.root}: the activity tables are empty")
    return lo, hi


def plan_windows(first: dt.date, last: dt.date) -> Windows:
    """Choose the training and validation reference dates for activity from first to last.

    The validation date V is the latest first-of-month with 12 months of history before it
    and a complete 12-month outcome after it. When there are 12 more months of history, the
    model is trained at V - 12 months and validated at V on later data (temporal
    validation); otherwise it is trained at V and validated on a held-out 30% of patients
    (split by a hash of the patient id). Scoring is at the first day after the data."""
    end = last + dt.timedelta(days=1)
    start = first if first.day == 1 else add_months(_month_start(first), 1)
    v = add_months(_month_start(end), -12)
    if add_months(v, -12) < start:
        raise WarehouseError(
            f"case finding needs 24 months of activity (12 of history, 12 of outcome); the "
            f"warehouse has {first} to {last}")
    t = add_months(v, -12)
    temporal = add_months(t, -12) >= start
    score_date = end if end.day == 1 else add_months(_month_start(end), 1)
    return Windows(first, last, t if temporal else v, v,
                   "temporal" if temporal else "held_out", score_date)


def _tables(con: Any, names: list[str]) -> dict[str, Any]:
    backend = ibis.duckdb.from_connection(con)
    return {n: backend.table(n) for n in FEATURE_INPUTS if n in names}


def _features(warehouse: Warehouse, ref: dt.date, with_outcome: bool,
              acsc_codelist: str = "acsc_chronic", engine: str = "duckdb") -> pd.DataFrame:
    """Features at ``ref``, one row per patient in ``patient_id`` order (so a fit does not
    depend on the engine's row order); a condition with no recorded date is known only
    from the day after the data (it cannot have been known before the extract), so never
    at a training or validation date.

    ``engine="spark"`` builds the same expression on Spark over the warehouse's Parquet
    files (:func:`pbc.warehouse.spark.spark_tables`); the rows come back here for the
    model, as from DuckDB."""
    from pbc.reference.codelists import codelist

    check_engine(engine)
    if not warehouse.has_table("patients"):
        raise WarehouseError(f"{warehouse.root}: case finding needs the patients table")
    known_from = data_span(warehouse)[1] + dt.timedelta(days=1)

    def run(tables: dict[str, Any]) -> pd.DataFrame:
        expr = build_features(tables, ref, with_outcome=with_outcome,
                              acsc_codes=codelist(acsc_codelist), undated_known_from=known_from)
        frame: pd.DataFrame = expr.to_pandas()
        return frame.sort_values("patient_id", kind="stable").reset_index(drop=True)

    if engine == "spark":
        from pbc.warehouse.spark import spark_tables

        with spark_tables(warehouse, FEATURE_INPUTS, stage="risk features") as tables:
            return run(tables)
    con = warehouse.connect()
    try:
        return run(_tables(con, warehouse.table_names()))
    finally:
        con.close()


def _holdout(ids: pd.Series, fraction: float = HOLDOUT_FRACTION) -> np.ndarray:
    """Deterministic patient split: True for the held-out patients (hash of the id)."""
    h = pd.util.hash_pandas_object(ids.astype(str), index=False).to_numpy()
    return np.asarray((h % np.uint64(1000)) < round(fraction * 1000), dtype=bool)


# ------------------------------------------------------------------ train
@dataclass
class TrainResult:
    """``model`` is the deployed model, refit on the latest complete window with the
    validated fit's terms; ``validated_model`` is the fit the validation figures belong to."""

    model: RiskModel
    validation: ValidationReport
    windows: Windows
    stored: bool
    validated_model: RiskModel | None = None

    @property
    def card(self) -> dict[str, Any]:
        return self.model.card


def _window_card(ref: dt.date, months: int = 24) -> dict[str, str]:
    """The dates of a window: features over the ``months`` before ``ref`` (the longest
    look-back the model uses), outcome over the 12 months from it."""
    return {"reference_date": ref.isoformat(),
            "features_from": add_months(ref, -months).isoformat(),
            "features_to": (ref - dt.timedelta(days=1)).isoformat(),
            "outcome_from": ref.isoformat(),
            "outcome_to": (add_months(ref, 12) - dt.timedelta(days=1)).isoformat()}


def _store_model(warehouse: Warehouse, model: RiskModel, relative: str, stage: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = model.save(Path(d) / "model.json")
        with warehouse.begin(stage) as tx:
            tx.put_file(path, f"reference/{relative}")


def train(
    warehouse: Warehouse,
    principal: Principal,
    *,
    train_date: dt.date | None = None,
    validation_date: dt.date | None = None,
    spec_path: Path | None = None,
    store: bool = True,
    engine: str = "duckdb",
) -> TrainResult:
    """Train the emergency-admission model on the commissioner's own history.

    Features at the training reference date, outcome = any emergency admission in the next
    12 months (Wennberg et al., Combined Predictive Model, final report, King's Fund, 2006).
    Dates default to :func:`plan_windows`; giving ``validation_date`` equal to
    ``train_date`` asks for a held-out split. With ``store``
    the model and its card are saved in the warehouse (``reference/risk/model.json``).
    ``engine="spark"`` computes the features on Spark; the fit is the same."""
    _require_commissioner(warehouse, principal, "train the risk model")
    check_engine(engine)
    first, last = data_span(warehouse)
    if train_date is not None or validation_date is not None:
        t = train_date or validation_date or first
        v = validation_date or t
        w = Windows(first, last, t, v, "temporal" if v > t else "held_out",
                    last + dt.timedelta(days=1))
        for ref in (t, v):
            if add_months(ref, 12) > last + dt.timedelta(days=1) or ref <= first:
                raise WarehouseError(
                    f"reference date {ref} needs activity before it and 12 months after it; "
                    f"the warehouse has {first} to {last}")
    else:
        w = plan_windows(first, last)
    spec = load_spec(spec_path)
    covered = set(covered_features(first, w.train_date))
    use_terms = [t.term for t in spec.terms if t.feature in covered]
    not_covered = [t.term for t in spec.terms if t.feature not in covered]
    train_all = _features(warehouse, w.train_date, True, spec.acsc_codelist, engine)
    train_f = outcome_cohort(train_all)
    if w.method == "temporal":
        latest_all = _features(warehouse, w.validation_date, True, spec.acsc_codelist,
                               engine)
        valid_f = latest = outcome_cohort(latest_all)
        validation_note = (f"temporal validation: trained at {w.train_date}, validated on "
                           f"all patients registered at {w.validation_date} and followed "
                           "for the whole outcome year")
    else:
        latest_all, latest = train_all, train_f
        hold = _holdout(train_f["patient_id"])
        valid_f, train_f = train_f[hold], train_f[~hold]
        validation_note = (f"held-out validation (too little history for a temporal one): "
                           f"{int(HOLDOUT_FRACTION * 100)}% of patients at {w.train_date}, "
                           "chosen by a hash of the patient id, not used in training")
    if train_f["outcome_emergency"].nunique() < 2:
        raise WarehouseError(f"cannot train at {w.train_date}: every patient has the same "
                             "outcome (no emergency admissions, or all admitted)")
    population = ("patients registered and alive at the reference date and followed for "
                  "the whole outcome year; those who left the list or died in it are "
                  "excluded (not counted as without the outcome)")
    limitations = [
        "trained on local history; recalibrate when the population or coding changes",
        "age is the recorded age at 1 April of the data year",
        "prior cost is used only when priced_activity exists",
        "conditions with no recorded date are known only from the day after the data, so "
        "they are in the scores but not in training",
    ]
    if not_covered:
        limitations.append(
            f"not used: {', '.join(not_covered)} (their look-back is longer than the data "
            f"before {w.train_date}, so they would be truncated in training)")

    def window_months(m: RiskModel) -> int:
        return max((FEATURE_WINDOWS.get(t.feature, 0) for t in m.terms), default=0)

    validated = fit(train_f, spec=spec, terms=use_terms, card={
        "training": {"reference_date": w.train_date.isoformat(), "n": len(train_f),
                     "events": int(train_f["outcome_emergency"].sum())}})
    report_ = _validate(valid_f, validated, title=f"Validation of {validated.version}",
                        notes=[validation_note], card={})
    # deploy the same terms refit on the latest complete window (every patient in it)
    model = fit(latest, spec=spec, terms=list(validated.coefficients), card={
        "training": {**_window_card(w.validation_date, 0), "n": len(latest),
                     "events": int(latest["outcome_emergency"].sum()),
                     "registered": len(latest_all),
                     "excluded_left_or_died": len(latest_all) - len(latest),
                     "population": population, "refit": True},
        "data": {"first_activity": w.first_activity.isoformat(),
                 "last_activity": w.last_activity.isoformat()},
        "intended_use": "rank a commissioner's registered patients by risk of emergency "
                        "admission in the next 12 months for case finding by their practice",
        "limitations": limitations,
    })
    model.card["training"]["features_from"] = add_months(
        w.validation_date, -window_months(model)).isoformat()
    a, c = report_.auc, report_.calibration
    model.card["validation"] = {
        "method": w.method, "note": validation_note,
        "validated_model": validated.version,
        "validated_fit": {**_window_card(w.train_date, window_months(validated)),
                          "n": len(train_f),
                          "events": int(train_f["outcome_emergency"].sum()),
                          # kept so that the report can reproduce the out-of-sample figures
                          "intercept": validated.intercept,
                          "coefficients": validated.coefficients,
                          "means": validated.means},
        "deployed": f"refit with the same terms on every patient at {w.validation_date} "
                    "(the latest window with a complete outcome year); the figures below "
                    "are those of the validated fit",
        **_window_card(w.validation_date, window_months(validated)),
        "n": report_.n, "events": report_.events,
        "auc": a.auc, "auc_95ci": [a.lower, a.upper], "auc_method": a.method,
        "calibration_intercept": c.intercept, "calibration_slope": c.slope,
        "prior_emergency_admissions_auc": report_.naive_auc,
        "model_minus_prior_emergency_auc": (report_.compared_with_naive.difference
                                            if report_.compared_with_naive else None),
        "segments": [{"segment": s.name, "flagged": s.flagged, "ppv": s.ppv,
                      "sensitivity": s.sensitivity} for s in report_.segments],
    }
    report_.card = dict(model.card)
    if store:
        _store_model(warehouse, model, MODEL_FILE, "risk-train")
    return TrainResult(model, report_, w, store, validated)


#: the age bands the validation report breaks performance down by
REPORT_AGE_BANDS = ((0, "0-17"), (18, "18-44"), (45, "45-64"), (65, "65-74"), (75, "75-84"),
                    (85, "85+"))


def subgroups_of(f: pd.DataFrame) -> dict[str, Any]:
    """Each patient's age band, sex and deprivation quintile (1 = most deprived; from the
    IMD decile, missing where it is), for performance by subgroup."""
    age = f["age"].to_numpy(dtype=float)
    lowers = np.array([lo for lo, _ in REPORT_AGE_BANDS], dtype=float)
    names = np.array([n for _, n in REPORT_AGE_BANDS], dtype=object)
    band = names[np.clip(np.searchsorted(lowers, age, side="right") - 1, 0, len(names) - 1)]
    sex = np.where(f["female"].to_numpy() == 1, "women", "men").astype(object)
    decile = pd.to_numeric(f["imd_decile"], errors="coerce")
    quintile = ((decile + 1) // 2).map(lambda q: None if pd.isna(q) else str(int(q)))
    return {"age band": band, "sex": sex, "deprivation quintile": quintile.to_numpy()}


def _validate(f: pd.DataFrame, model: RiskModel, *, title: str, notes: list[str],
              card: dict[str, Any]) -> ValidationReport:
    """The validation report of ``model`` on cohort ``f``: with the LACE-form and
    PARR-30-form scores on the same patients, performance by subgroup and the card."""
    from pbc.risk.comparators import comparator_scores

    return validate(f["outcome_emergency"].to_numpy(), model.predict(f),
                    f[NAIVE_FEATURE].to_numpy(), title=title, notes=notes,
                    comparators=comparator_scores(f), subgroups=subgroups_of(f), card=card)


def load_model(warehouse: Warehouse, model: RiskModel | Path | str | None = None) -> RiskModel:
    """The given model, a model file, or the one stored in the warehouse by :func:`train`."""
    if isinstance(model, RiskModel):
        return model
    if model is not None:
        return RiskModel.load(model)
    path = warehouse.reference_file(MODEL_FILE)
    if path is None:
        raise WarehouseError(f"{warehouse.root}: no risk model yet (run pbc risk train)")
    return RiskModel.load(path)


# ------------------------------------------------------------------ score
@dataclass
class ScoreSummary:
    rows: int
    reference_date: dt.date
    model_version: str
    segments: dict[str, int]


def score(
    warehouse: Warehouse,
    principal: Principal,
    model: RiskModel | Path | str | None = None,
    *,
    reference_date: dt.date | None = None,
    engine: str = "duckdb",
) -> ScoreSummary:
    """Score every registered patient at ``reference_date`` (default: the day after the
    data) and replace the ``risk_scores`` table (features, risk, rank, segment, model).
    ``engine="spark"`` computes the features on Spark; scoring and writing are the same."""
    _require_commissioner(warehouse, principal, "score the registered population")
    check_engine(engine)
    m = load_model(warehouse, model)
    ref = reference_date or plan_windows(*data_span(warehouse)).score_date
    scored = score_frame(m, _features(warehouse, ref, False, m.spec.acsc_codelist, engine))
    with tempfile.TemporaryDirectory() as d, warehouse.begin("risk") as tx:
        con = tx.connect()
        con.register("scores_df", scored)
        tx.write(con, SCORES_TABLE,
                 "SELECT * REPLACE (CAST(reference_date AS DATE) AS reference_date) "
                 "FROM scores_df ORDER BY rank", file_prefix="risk", replace=True,
                 meta={"kind": "output"})
        tx.put_file(m.save(Path(d) / "model.json"), f"reference/{SCORING_MODEL_FILE}")
        con.close()
    counts = scored["segment"].value_counts()
    return ScoreSummary(len(scored), ref, m.version,
                        {s: int(counts.get(s, 0)) for s in SEGMENT_NAMES})


def _scoring_model(warehouse: Warehouse) -> RiskModel:
    path = warehouse.reference_file(SCORING_MODEL_FILE)
    if path is None:
        raise WarehouseError(f"{warehouse.root}: no risk scores yet (run pbc risk score)")
    return RiskModel.load(path)


# ------------------------------------------------------------------ report
def report(
    warehouse: Warehouse,
    principal: Principal,
    model: RiskModel | Path | str | None = None,
    *,
    reference_date: dt.date | None = None,
) -> ValidationReport:
    """Validate a model on the latest window with a complete 12-month outcome (or at
    ``reference_date``), on patients followed for the whole outcome year. The deployed model
    is a refit on that window, so there the report gives the validated fit's out-of-sample
    figures (kept in the card: held-out patients, or the later window of a temporal
    validation) and says so; at a later window it validates the deployed model itself."""
    _require_commissioner(warehouse, principal, "see the risk model's validation")
    m = load_model(warehouse, model)
    card = dict(m.card)
    ref = reference_date or plan_windows(*data_span(warehouse)).validation_date
    f = outcome_cohort(_features(warehouse, ref, True, m.spec.acsc_codelist))
    notes = [f"model {m.version}; reference date {ref}; outcome: {m.spec.outcome}; patients "
             "followed for the whole outcome year"]
    training = m.card.get("training") or {}
    v = m.card.get("validation") or {}
    fitted = v.get("validated_fit") or {}
    if training.get("reference_date") == ref.isoformat() and training.get("refit"):
        if "coefficients" in fitted and ref.isoformat() == v.get("reference_date"):
            # the deployed model is a refit on every patient here: report the validated
            # fit, out of sample, as at training time
            m = RiskModel(m.spec, float(fitted["intercept"]),
                          {k: float(c) for k, c in fitted["coefficients"].items()},
                          {k: float(c) for k, c in fitted["means"].items()},
                          {"version": v.get("validated_model")})
            if v.get("method") == "held_out":
                f = f[_holdout(f["patient_id"])]
            notes.append(
                f"the validated fit {v.get('validated_model')} (trained at "
                f"{fitted.get('reference_date')}) on "
                + ("the held-out patients" if v.get("method") == "held_out"
                   else "every patient here") + "; the deployed model is its refit on every "
                "patient at this window, so its own figures here would be in-sample")
        else:
            notes.append("same window as training: in-sample (optimistic); the deployed "
                         "model was refit on every patient here after validation")
    elif training.get("reference_date") == ref.isoformat():
        if (m.card.get("validation") or {}).get("method") == "held_out":
            f = f[_holdout(f["patient_id"])]
            notes.append("same window as training: held-out patients only")
        else:
            notes.append("same window as training: in-sample (optimistic)")
    return _validate(f, m, title=f"Validation of {m.version}", notes=notes, card=card)


# ------------------------------------------------------------------ practice lists
def case_finding_list(
    warehouse: Warehouse, principal: Principal, practice_code: str, top_n: int | None = 50,
) -> list[dict[str, Any]]:
    """The practice's patients ranked by risk (highest first), with segment and top factors
    in plain words. Only for a ``practice`` user of that practice (else ``AccessDenied``)."""
    _require_own_practice(principal, practice_code)
    if top_n is not None and top_n < 1:
        raise ValueError(f"top_n {top_n}: give a number of patients, 1 or more")
    if not warehouse.has_table(SCORES_TABLE):
        raise WarehouseError(f"{warehouse.root}: no risk scores yet (run pbc risk score)")
    con = warehouse.connect()
    try:
        limit = "" if top_n is None else f" LIMIT {int(top_n)}"
        frame = con.execute(
            f"SELECT * FROM {SCORES_TABLE} WHERE practice_code = ? "
            f"ORDER BY risk DESC, patient_id{limit}", [practice_code]).df()
    finally:
        con.close()
    out = case_finding_frame(frame, _scoring_model(warehouse))
    out["reference_date"] = pd.to_datetime(out["reference_date"]).dt.date
    records: list[dict[str, Any]] = [
        {str(k): v for k, v in r.items()} for r in out.to_dict(orient="records")]
    return records


def export_case_finding(
    warehouse: Warehouse, principal: Principal, practice_code: str, path: Path | str,
    top_n: int | None = None,
) -> Path:
    """Write the practice's list to CSV or XLSX (by extension) for that practice's user."""
    p = Path(path)
    warehouse.refuse_inside(p)
    rows = case_finding_list(warehouse, principal, practice_code, top_n)
    frame = pd.DataFrame(rows)
    if p.suffix.lower() == ".xlsx":
        from pbc.reports.case_finding import case_finding_workbook
        from pbc.services.names import organisation_names

        name = organisation_names(warehouse)["practices"].get(practice_code, "")
        case_finding_workbook(
            p, frame, practice=f"{practice_code} {name}".strip(), mode=FILE_MODE,
            source=f"pbc risk scores, warehouse {warehouse.root.name} version "
                   f"{warehouse.manifest().get('version')}")
    elif p.suffix.lower() == ".csv":
        spreadsheet_safe(frame).to_csv(p, index=False)
    else:
        raise ValueError(f"{p}: export to .csv or .xlsx")
    os.chmod(p, FILE_MODE)  # patients' rows: owner and group only
    return p


# ------------------------------------------------------------------ aggregates
@dataclass
class SegmentCounts:
    """Patients by segment at one level; ``None`` cells are suppressed (shown as ``*``)."""

    level: str
    rows: list[dict[str, Any]]
    suppressed: bool
    threshold: int = DEFAULT_THRESHOLD
    marker: str = MARKER
    columns: list[str] = field(default_factory=lambda: ["code", *SEGMENT_NAMES, "total"])

    def to_markdown(self) -> str:
        head = "| " + " | ".join(self.columns) + " |"
        sep = "|" + "|".join("---" for _ in self.columns) + "|"
        body = ["| " + " | ".join(self.marker if r[c] is None else str(r[c])
                                  for c in self.columns) + " |" for r in self.rows]
        note = (f"\nCounts from 1 to {self.threshold} are suppressed ({self.marker}), with "
                "complementary suppression so they cannot be recovered from totals or from "
                "another level's table.\n"
                if self.suppressed else "")
        return "\n".join([head, sep, *body]) + "\n" + note


def segment_counts(
    warehouse: Warehouse, principal: Principal, level: str = "practice",
    threshold: int = DEFAULT_THRESHOLD,
) -> SegmentCounts:
    """Counts of registered patients by NHS risk segment at ``level`` (practice, group,
    neighbourhood, local_authority, commissioner), limited to the principal's own patients:
    a practice's (unsuppressed), a group's or commissioner's practices', a local authority's
    residents'. Counts 1..``threshold`` are suppressed outside a practice."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}: use one of {', '.join(LEVELS)}")
    if principal.role == "public":
        raise AccessDenied(f"{principal}: risk stratification counts are not public")
    if not warehouse.has_table(SCORES_TABLE):
        raise WarehouseError(f"{warehouse.root}: no risk scores yet (run pbc risk score)")
    con = warehouse.connect()
    try:
        backend = ibis.duckdb.from_connection(con)
        names = warehouse.table_names()
        t = scores_with_organisations(
            backend.table(SCORES_TABLE),
            backend.table("practices") if "practices" in names else None,
            backend.table("neighbourhoods") if "neighbourhoods" in names else None,
        )
        org = principal.organisation
        if principal.role == "practice":
            if level != "practice":
                raise AccessDenied(f"{principal}: a practice sees its own counts only "
                                   "(pbc risk segments --level practice)")
            t = t.filter(t.practice_code == org)
        elif principal.role == "group":
            t = t.filter(t.group_code == org)
        elif principal.role == "commissioner":
            t = t.filter(t.commissioner_code == org)
        elif principal.role == "local_authority":
            t = t.filter(t.local_authority_code == org)
        else:  # pragma: no cover - Role is a closed set
            raise AccessDenied(f"{principal}: unknown role")
        if principal.role == "practice":
            frame = segment_count_expr(t, level).to_pandas()
        else:
            keys = [LEVEL_KEYS[lv] for lv in LEVELS]
            base = t.group_by([*keys, "segment"]).aggregate(n=t.count()).to_pandas()
    finally:
        con.close()
    rows: list[dict[str, Any]] = []
    if principal.role == "practice":  # its own patients: nothing to hide from itself
        counts = frame[list(SEGMENT_NAMES)].fillna(0).astype(int).to_numpy().tolist()
        for code, c in zip(frame["code"].tolist(), counts, strict=True):
            rows.append({"code": code, **dict(zip(SEGMENT_NAMES, c, strict=True)),
                         "total": sum(c)})
        return SegmentCounts(level, rows, False, threshold)
    # every level this principal can ask for is suppressed together, so no table can be
    # subtracted from another to recover a hidden count (pbc.services.suppression)
    base = base.rename(columns={LEVEL_KEYS[lv]: lv for lv in LEVELS}
                       ).rename(columns={"segment": "column"})
    tables = suppress_levels(base, LEVELS, SEGMENT_NAMES, threshold)
    for r in tables[level]:
        rows.append({"code": r.code, **dict(zip(SEGMENT_NAMES, r.cells, strict=True)),
                     "total": r.total})
    return SegmentCounts(level, rows, True, threshold)
