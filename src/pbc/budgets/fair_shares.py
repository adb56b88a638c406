"""Fair shares: each practice's weighted population per service line.

Three measures, chosen per service line by the policy:

``weighted_capitation``
    ``weighted population = sum over age-sex bands of (registered patients in band x
    age-sex cost weight of band for the service line) x practice need index``.
    Cost weights come from :func:`derive_cost_weights` (priced activity) or are supplied.
    The need index comes from :func:`need_index_from_conditions`, from
    :func:`need_index_from_nhse`, or is supplied; absent, it is 1.

``nhse_weighted_population``
    NHS England's published weighted population for one allocation component (see
    :mod:`pbc.budgets.needs`), used as it is.

``astro_pu`` (prescribing)
    The standard weighting for GP prescribing: ``weighted population = sum over age-sex
    bands of registered patients x ASTRO-PU weight`` (Roberts & Harris, BMJ
    1993;307:485; ASTRO(09)-PU, Prescribing Support Unit, now NHS Business Services
    Authority), weights from :mod:`pbc.reference.prescribing_units`. Needs no
    patient-level cost, which prescribing rows do not have (they are per practice).

``person_based`` (PBRA-style, after Dixon et al., BMJ 2011;343:d6608)
    Each registered person's predicted cost from an ordinary least-squares regression of
    prior-year cost on age-sex band and condition / prior-diagnosis flags
    (:func:`fit_person_model`); a practice's weighted population is the sum of its
    patients' predicted costs divided by the mean predicted cost per head, so it is in
    "people" like the others. Scaling to the envelope happens in
    :mod:`pbc.budgets.indicative`, as for every method.

Every function returns the *fair-share frame*: one row per practice x service line with
``practice_code``, ``service_line``, ``population`` (registered patients),
``weighted_population``, ``need_index``, ``cost_weight_index`` (the practice's mean age-sex
cost weight; NaN where the method has none), ``method`` and ``share`` (the practice's
fraction of the service line's total weighted population).

All functions are pure: frames in, frames out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from pbc.budgets.money import series_pounds_to_pence
from pbc.budgets.needs import COMPONENT_COLUMNS, ICB, POPULATION, PRACTICE
from pbc.budgets.policy import BudgetPolicy

AGE_BANDS: tuple[str, ...] = (*(f"{a}-{a + 4}" for a in range(0, 90, 5)), "90+")
SEXES: tuple[str, ...] = ("F", "M")
FAIR_SHARE_COLUMNS: tuple[str, ...] = (
    "practice_code", "service_line", "method", "population", "weighted_population",
    "need_index", "cost_weight_index", "share",
)

DEFAULT_CONDITION_WEIGHTS: dict[str, float] = {
    # Illustrative extra need per person with each condition (fraction of an average
    # person's need). No published set exists (docs/sources.md §2.5): treat as configuration.
    "AF": 0.10, "ASTHMA": 0.05, "CANCER": 0.25, "CHD": 0.15, "CKD": 0.15, "COPD": 0.20,
    "DEM": 0.30, "DM": 0.15, "EPIL": 0.10, "HF": 0.30, "HYP": 0.05, "MH": 0.20, "STIA": 0.15,
}
DEFAULT_DEPRIVATION_GRADIENT = 0.20
"""Need multiplier for IMD decile d is ``1 + gradient x (10 - d) / 9``: 1.2 in the most
deprived decile, 1.0 in the least deprived (illustrative, configurable)."""


class FairShareError(ValueError):
    """Inputs to a fair-share measure are missing or inconsistent."""


def _require(frame: pd.DataFrame | None, columns: Iterable[str], what: str) -> pd.DataFrame:
    if frame is None:
        raise FairShareError(f"{what} is needed but was not given")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise FairShareError(f"{what} is missing column(s) {missing}")
    return frame


def age_band_of(age: pd.Series) -> pd.Series:
    """Age in years -> five-year band label ``0-4`` .. ``85-89``, ``90+``."""
    a = pd.to_numeric(age, errors="raise").to_numpy()
    if (a < 0).any():
        raise FairShareError("ages must not be negative")
    idx = np.minimum(a // 5, 18).astype(int)
    return pd.Series(np.asarray(AGE_BANDS, dtype=object)[idx], index=age.index)


def list_sizes_from_patients(patients: pd.DataFrame) -> pd.DataFrame:
    """Registered patients (``patient_id``, ``practice_code``, ``sex``, ``age``) to list
    sizes (``practice_code``, ``sex``, ``age_band``, ``patients``)."""
    _require(patients, ("practice_code", "sex", "age"), "patients")
    frame = pd.DataFrame({
        "practice_code": patients["practice_code"].astype(str),
        "sex": patients["sex"].astype(str),
        "age_band": age_band_of(patients["age"]),
    })
    return (frame.groupby(["practice_code", "sex", "age_band"], sort=True).size()
            .rename("patients").reset_index())


def band_costs(patients: pd.DataFrame, patient_costs: pd.DataFrame) -> pd.DataFrame:
    """Cost by age-sex band and service line from patient-level priced cost.

    ``patients``: ``patient_id``, ``sex``, ``age`` (everyone registered: the denominators).
    ``patient_costs``: ``patient_id``, ``service_line``, ``cost`` (pounds; several rows per
    patient allowed, e.g. priced activity with ``price`` renamed to ``cost``).
    Returns ``sex``, ``age_band``, ``service_line``, ``patients``, ``cost_pence`` (int).
    """
    _require(patients, ("patient_id", "sex", "age"), "patients")
    _require(patient_costs, ("patient_id", "service_line", "cost"), "patient costs")
    people = pd.DataFrame({
        "patient_id": patients["patient_id"].astype(str),
        "sex": patients["sex"].astype(str),
        "age_band": age_band_of(patients["age"]),
    })
    denom = people.groupby(["sex", "age_band"]).size().rename("patients").reset_index()
    costs = pd.DataFrame({
        "patient_id": patient_costs["patient_id"].astype(str),
        "service_line": patient_costs["service_line"].astype(str),
        "cost_pence": series_pounds_to_pence(patient_costs["cost"]),
    }).merge(people, on="patient_id", how="inner")
    num = costs.groupby(["sex", "age_band", "service_line"])["cost_pence"].sum().reset_index()
    lines = sorted(costs["service_line"].unique())
    grid = denom.merge(pd.DataFrame({"service_line": pd.Series(lines, dtype=object)}),
                       how="cross")
    out = grid.merge(num, on=["sex", "age_band", "service_line"], how="left")
    out["cost_pence"] = out["cost_pence"].fillna(0).astype("int64")
    return out


def derive_cost_weights(band_cost: pd.DataFrame, *, window: int = 3) -> pd.DataFrame:
    """Age-sex cost weights per service line from cost by band.

    ``band_cost``: ``sex``, ``age_band``, ``service_line``, ``patients`` and ``cost_pence``
    (integer pence) or ``cost`` (pounds), as from :func:`band_costs`.

    Method (documented smoothing):

    1. Within each sex and service line, order the bands by age and pool each band with
       its neighbours: ``smoothed cost per head(b) = sum of cost over the ``window``
       bands centred on b / sum of patients over the same bands`` (at the ends the window
       is cut short). This is a population-weighted moving average: small, noisy bands
       borrow strength from their neighbours; large bands dominate their own estimate.
       ``window=1`` switches smoothing off.
    2. Normalise: ``cost_weight = smoothed cost per head / (sum over bands of patients x
       smoothed cost per head / sum of patients)``, so the population-weighted mean
       weight of the input population is exactly 1 for every service line.

    A service line with no cost at all has no weights (it is left out, so that a policy
    weighting it by its own cost is refused by :func:`weighted_capitation` rather than
    silently given list sizes). Returns ``sex``, ``age_band``, ``service_line``,
    ``cost_per_head`` (pounds, unsmoothed), ``cost_weight``.
    """
    if window < 1 or window % 2 == 0:
        raise FairShareError("the smoothing window must be an odd number of bands >= 1")
    frame = _require(band_cost, ("sex", "age_band", "service_line", "patients"), "band costs")
    frame = frame.copy()
    if "cost_pence" not in frame.columns:
        _require(frame, ("cost",), "band costs")
        frame["cost_pence"] = series_pounds_to_pence(frame["cost"])
    unknown = sorted(set(frame["age_band"]) - set(AGE_BANDS))
    if unknown:
        raise FairShareError(f"band costs: unknown age band(s) {unknown}; expected {AGE_BANDS}")
    frame["_order"] = frame["age_band"].map({b: i for i, b in enumerate(AGE_BANDS)})
    frame = frame.sort_values(["service_line", "sex", "_order"], kind="stable")
    half = window // 2
    parts = []
    for _, g in frame.groupby(["service_line", "sex"], sort=True):
        cost = g["cost_pence"].to_numpy(dtype=np.float64)
        pats = g["patients"].to_numpy(dtype=np.float64)
        kernel = np.ones(window)
        c = np.convolve(np.pad(cost, half), kernel, mode="valid")
        p = np.convolve(np.pad(pats, half), kernel, mode="valid")
        smoothed = np.divide(c, p, out=np.zeros_like(c), where=p > 0)
        parts.append(g.assign(_smoothed=smoothed))
    out = pd.concat(parts)
    costed = out.groupby("service_line")["cost_pence"].transform("sum") > 0
    out = out[costed]
    pats_s = out["patients"].astype(float)
    tot = (out.assign(_w=pats_s * out["_smoothed"]).groupby("service_line")
           .agg(_wsum=("_w", "sum"), _psum=("patients", "sum")))
    mean = (tot["_wsum"] / tot["_psum"]).rename("_mean")
    out = out.merge(mean, left_on="service_line", right_index=True)
    out["cost_weight"] = np.where(out["_mean"] > 0, out["_smoothed"] / out["_mean"].where(
        out["_mean"] > 0, 1.0), 1.0)
    npats = pats_s.to_numpy()
    out["cost_per_head"] = np.divide(out["cost_pence"].to_numpy(dtype=float), npats,
                                     out=np.zeros(len(out)), where=npats > 0) / 100
    return (out[["sex", "age_band", "service_line", "cost_per_head", "cost_weight"]]
            .sort_values(["service_line", "sex", "age_band"], key=_band_key)
            .reset_index(drop=True))


def _band_key(col: pd.Series) -> pd.Series:
    if col.name == "age_band":
        return col.map({b: i for i, b in enumerate(AGE_BANDS)})
    return col


def need_index_from_conditions(
    patients: pd.DataFrame,
    conditions: pd.DataFrame | None = None,
    *,
    condition_weights: Mapping[str, float] | None = None,
    deprivation_gradient: float = DEFAULT_DEPRIVATION_GRADIENT,
) -> pd.DataFrame:
    """A simple additional-need index per practice from conditions and deprivation.

    Model: each person's need score is
    ``(1 + sum of condition weights for their recorded conditions) x (1 + gradient x
    (10 - IMD decile) / 9)`` (a missing decile counts as 5.5, i.e. average). A practice's
    need index is its mean score divided by the mean score of everyone in ``patients``,
    so the population-weighted mean index is 1. Age and sex are *not* in this index (they
    are in the cost weights), so it does not double count them. Weights are illustrative
    (:data:`DEFAULT_CONDITION_WEIGHTS`) and should be set locally.

    ``patients``: ``patient_id``, ``practice_code``, optional ``imd_decile``.
    ``conditions``: ``patient_id``, ``condition``. Returns ``practice_code``, ``need_index``.
    """
    _require(patients, ("patient_id", "practice_code"), "patients")
    weights = dict(DEFAULT_CONDITION_WEIGHTS if condition_weights is None else condition_weights)
    pid = patients["patient_id"].astype(str)
    extra = pd.Series(0.0, index=pid.to_numpy())
    if conditions is not None and len(conditions):
        _require(conditions, ("patient_id", "condition"), "patient conditions")
        cond = conditions[["patient_id", "condition"]].astype(str).drop_duplicates()
        cond = cond.assign(w=cond["condition"].map(weights).fillna(0.0))
        per = cond.groupby("patient_id")["w"].sum()
        extra = per.reindex(pid.to_numpy()).fillna(0.0)
    if "imd_decile" in patients.columns:
        dec = (pd.to_numeric(patients["imd_decile"], errors="coerce").astype("float64")
               .fillna(5.5).to_numpy())
    else:
        dec = np.full(len(patients), 5.5)
    score = (1.0 + extra.to_numpy()) * (1.0 + deprivation_gradient * (10.0 - dec) / 9.0)
    frame = pd.DataFrame({"practice_code": patients["practice_code"].astype(str).to_numpy(),
                          "score": score})
    overall = float(score.mean()) if len(score) else 1.0
    out = frame.groupby("practice_code", sort=True)["score"].mean() / overall
    return out.rename("need_index").reset_index()


def isin(values: pd.Series, members: Iterable[str]) -> npt.NDArray[np.bool_]:
    """Fast membership test for a column of codes (hash set, no Arrow round trips)."""
    wanted = set(members)
    arr = values.to_numpy(dtype=object)
    return np.fromiter((v in wanted for v in arr), dtype=bool, count=len(arr))


def _nhse_subset(nhse: pd.DataFrame, practice_codes: Iterable[str] | None,
                 columns: Sequence[str] | None = None) -> pd.DataFrame:
    _require(nhse, (PRACTICE, POPULATION), "the NHS England weighted-population frame")
    if columns is not None:
        nhse = nhse[[PRACTICE, POPULATION, *columns]]
    if practice_codes is None:
        return nhse
    codes = list(dict.fromkeys(str(c) for c in practice_codes))
    sub = nhse[isin(nhse[PRACTICE], codes)]
    if len(sub) != len(codes):
        missing = sorted(set(codes) - set(sub[PRACTICE]))
        raise FairShareError(
            f"{len(missing)} practice(s) not in the NHS England file, e.g. {missing[:5]}"
        )
    return sub


def need_index_from_nhse(
    nhse: pd.DataFrame, component: str, practice_codes: Iterable[str] | None = None
) -> pd.DataFrame:
    """Per-practice need index from an NHS England component:
    ``(practice WP / practice population) / (sum WP / sum population over the practices)``.
    Returns ``practice_code``, ``need_index``."""
    col = COMPONENT_COLUMNS[component]
    sub = _nhse_subset(nhse, practice_codes, [col])
    ratio = float(sub[col].sum()) / float(sub[POPULATION].sum())
    pop = sub[POPULATION].to_numpy(dtype=float)
    idx = np.divide(sub[col].to_numpy(dtype=float), pop, out=np.ones(len(sub)), where=pop > 0)
    return pd.DataFrame({"practice_code": sub[PRACTICE].to_numpy(), "need_index": idx / ratio})


def _finish(frame: pd.DataFrame) -> pd.DataFrame:
    tot = frame.groupby("service_line")["weighted_population"].transform("sum")
    frame["share"] = np.where(tot > 0, frame["weighted_population"] / tot.where(tot > 0, 1), 0.0)
    return frame[list(FAIR_SHARE_COLUMNS)].reset_index(drop=True)


def weighted_capitation(
    list_sizes: pd.DataFrame,
    cost_weights: pd.DataFrame,
    service_lines: Sequence[str],
    need_index: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Weighted capitation per practice and service line (vectorised).

    ``list_sizes``: ``practice_code``, ``sex``, ``age_band``, ``patients``.
    ``cost_weights``: ``sex``, ``age_band``, ``service_line``, ``cost_weight``.
    ``need_index``: ``practice_code``, ``need_index`` and optionally ``service_line``
    (then per line); practices not listed get 1.
    """
    _require(list_sizes, ("practice_code", "sex", "age_band", "patients"), "list sizes")
    _require(cost_weights, ("sex", "age_band", "service_line", "cost_weight"), "cost weights")
    ls = list_sizes[["practice_code", "sex", "age_band", "patients"]].copy()
    ls["practice_code"] = ls["practice_code"].astype(str)
    if (pd.to_numeric(ls["patients"]) < 0).any():
        raise FairShareError("list sizes: negative number of patients")
    codes = np.sort(ls["practice_code"].unique())
    bands = [f"{s}|{b}" for s in SEXES for b in AGE_BANDS]
    key = ls["sex"].astype(str) + "|" + ls["age_band"].astype(str)
    bad = sorted(set(key) - set(bands))
    if bad:
        raise FairShareError(f"list sizes: unknown sex|age_band value(s) {bad[:5]}")
    rows = np.searchsorted(codes, ls["practice_code"].to_numpy())
    cols = pd.Index(bands).get_indexer(pd.Index(key))
    counts = np.zeros((len(codes), len(bands)))
    np.add.at(counts, (rows, cols), ls["patients"].to_numpy(dtype=float))
    population = counts.sum(axis=1)
    cw = cost_weights.assign(_k=cost_weights["sex"].astype(str) + "|"
                             + cost_weights["age_band"].astype(str))
    out = []
    for line in service_lines:
        w = cw[cw["service_line"] == line].set_index("_k")["cost_weight"]
        if w.index.duplicated().any():
            raise FairShareError(f"cost weights: duplicate bands for service line {line!r}")
        present = counts.sum(axis=0) > 0
        missing = [b for b, p in zip(bands, present, strict=True) if p and b not in w.index]
        if w.empty:
            raise FairShareError(
                f"cost weights: service line {line!r} has no patient-level cost in the prior "
                "year, so weighted capitation has no age-sex weights for it"
                + (": use method = \"astro_pu\" (ASTRO-PU weighted patients), the "
                   "standard for prescribing" if line == "prescribing" else ""))
        if missing:
            raise FairShareError(
                f"cost weights: no weight for service line {line!r}, band(s) {missing[:5]}"
            )
        wvec = w.reindex(bands).fillna(0.0).to_numpy(dtype=float)
        age_sex = counts @ wvec
        need = np.ones(len(codes))
        if need_index is not None:
            ni = need_index
            if "service_line" in ni.columns:
                ni = ni[ni["service_line"] == line]
            s = ni.set_index(ni["practice_code"].astype(str))["need_index"]
            need = s.reindex(codes).fillna(1.0).to_numpy(dtype=float)
        cwi = np.divide(age_sex, population, out=np.full(len(codes), np.nan),
                        where=population > 0)
        out.append(pd.DataFrame({
            "practice_code": codes, "service_line": line, "method": "weighted_capitation",
            "population": population, "weighted_population": age_sex * need,
            "need_index": need, "cost_weight_index": cwi,
        }))
    return _finish(pd.concat(out, ignore_index=True))


def nhse_weighted_population(
    nhse: pd.DataFrame,
    component: str,
    service_lines: Sequence[str],
    practice_codes: Iterable[str] | None = None,
) -> pd.DataFrame:
    """NHS England weighted population (one component) as the fair-share measure.

    ``nhse``: a frame from :func:`pbc.budgets.needs.read_nhse_file`. ``need_index`` is the
    practice's WP per head relative to the practices given (so it explains the weighting);
    there is no separate age-sex cost weight (NHS England's WP already includes age).
    """
    if component not in COMPONENT_COLUMNS:
        raise FairShareError(f"unknown NHS England component {component!r}")
    col = COMPONENT_COLUMNS[component]
    sub = _nhse_subset(nhse, practice_codes, [col]).sort_values(PRACTICE)
    need = need_index_from_nhse(sub, component)["need_index"].to_numpy()
    codes = sub[PRACTICE].to_numpy(dtype=object)
    out = [pd.DataFrame({
        "practice_code": codes, "service_line": line,
        "method": f"nhse_weighted_population:{component}",
        "population": sub[POPULATION].to_numpy(dtype=float),
        "weighted_population": sub[COMPONENT_COLUMNS[component]].to_numpy(dtype=float),
        "need_index": need, "cost_weight_index": np.nan,
    }) for line in service_lines]
    return _finish(pd.concat(out, ignore_index=True))


def _band_ages(label: str) -> tuple[int, int | None]:
    """``'5-9'`` -> ``(5, 9)``; ``'90+'`` -> ``(90, None)``."""
    if label.endswith("+"):
        return int(label[:-1]), None
    lo, hi = label.split("-")
    return int(lo), int(hi)


def astro_pu_weights() -> pd.DataFrame:
    """The ASTRO-PU weight of each of pbc's five-year age bands by sex: ``sex``,
    ``age_band``, ``astro_pu`` (float). Every five-year band lies inside one ASTRO-PU band
    (0-4, 5-14, 15-24, ..., 75+); a weights file whose bands do not fall on five-year
    boundaries is refused rather than approximated."""
    from pbc.reference.prescribing_units import astro_pu_bands

    bands = astro_pu_bands()
    rows = []
    for sex in SEXES:
        for label in AGE_BANDS:
            lo, hi = _band_ages(label)
            own = [b for b in bands if b.holds(sex, lo)]
            if len(own) != 1 or not (
                    (hi is None and own[0].age_to is None)
                    or (hi is not None and own[0].holds(sex, hi))):
                raise FairShareError(f"ASTRO-PU weights: age band {label} ({sex}) does not lie "
                                     "inside one band of the weights file")
            rows.append((sex, label, float(own[0].weight)))
    return pd.DataFrame(rows, columns=["sex", "age_band", "astro_pu"])


def prescribing_units(list_sizes: pd.DataFrame, service_lines: Sequence[str]) -> pd.DataFrame:
    """ASTRO-PU weighted patients as the fair-share measure (the standard for prescribing).

    ``weighted population = sum over sex x age band of patients x ASTRO-PU weight``
    (:func:`astro_pu_weights`); ``cost_weight_index`` is ASTRO-PUs per patient; the need
    index is 1 (ASTRO-PUs weight age and sex only). ``list_sizes``: ``practice_code``,
    ``sex``, ``age_band``, ``patients``.
    """
    w = astro_pu_weights().rename(columns={"astro_pu": "cost_weight"})
    frames = [w.assign(service_line=line) for line in service_lines]
    out = weighted_capitation(list_sizes, pd.concat(frames, ignore_index=True), service_lines)
    out["method"] = "astro_pu"
    return out


@dataclass(frozen=True)
class PersonModel:
    """A fitted person-based cost model: one coefficient column per service line."""

    features: tuple[str, ...]
    service_lines: tuple[str, ...]
    coefficients: npt.NDArray[np.float64]  # len(features) x len(service_lines), pounds
    r_squared: tuple[float, ...]


def _design(patients: pd.DataFrame, conditions: pd.DataFrame | None,
            flags: Sequence[str] | None) -> tuple[npt.NDArray[np.float64], list[str]]:
    bands = [f"{s}|{b}" for s in SEXES for b in AGE_BANDS]
    key = patients["sex"].astype(str) + "|" + age_band_of(patients["age"]).astype(str)
    col = pd.Index(bands).get_indexer(pd.Index(key))
    if (col < 0).any():
        raise FairShareError("patients: sex must be M or F")
    pid = patients["patient_id"].astype(str)
    if flags is None:
        flags = sorted(conditions["condition"].astype(str).unique()) if conditions is not None \
            else []
    x = np.zeros((len(patients), len(bands) + len(flags)))
    x[np.arange(len(patients)), col] = 1.0
    if conditions is not None and len(flags):
        pos = pd.Series(np.arange(len(patients)), index=pid.to_numpy())
        c = conditions[["patient_id", "condition"]].astype(str).drop_duplicates()
        c = c[c["condition"].isin(flags) & c["patient_id"].isin(pos.index)]
        fpos = pd.Index(flags).get_indexer(pd.Index(c["condition"]))
        x[pos.loc[c["patient_id"]].to_numpy(), len(bands) + fpos] = 1.0
    return x, [*bands, *flags]


def fit_person_model(
    patients: pd.DataFrame,
    conditions: pd.DataFrame | None,
    prior_costs: pd.DataFrame,
    service_lines: Sequence[str],
) -> PersonModel:
    """Fit each person's prior-year cost on age-sex band and condition flags (OLS).

    ``patients``: ``patient_id``, ``sex``, ``age``. ``conditions``: ``patient_id``,
    ``condition`` (long-term conditions; prior diagnoses, e.g. ICD-10 chapters of earlier
    admissions, may be added as further labels). ``prior_costs``: ``patient_id``,
    ``service_line``, ``cost`` (pounds; people with no row cost 0).

    The design has one indicator per sex x five-year age band (no intercept: the band
    indicators span it) and one per condition label; coefficients are found by
    ``numpy.linalg.lstsq`` (minimum-norm least squares), one fit per service line.
    Unlike PBRA proper, predictors and cost come from the same prior year; area-level
    variables are left out (Dixon et al. found they added little).
    """
    _require(prior_costs, ("patient_id", "service_line", "cost"), "prior-year patient costs")
    x, feats = _design(patients, conditions, None)
    pid = patients["patient_id"].astype(str).to_numpy()
    pc = prior_costs.assign(patient_id=prior_costs["patient_id"].astype(str),
                            _p=series_pounds_to_pence(prior_costs["cost"]))
    per = pc.groupby(["patient_id", "service_line"])["_p"].sum().unstack(fill_value=0)
    y = per.reindex(index=pid, columns=list(service_lines)).fillna(0).to_numpy(float) / 100
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    fitted = x @ coef
    ss_res = ((y - fitted) ** 2).sum(axis=0)
    ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    r2 = tuple(float(1 - r / t) if t > 0 else 0.0 for r, t in zip(ss_res, ss_tot, strict=True))
    return PersonModel(tuple(feats), tuple(service_lines), np.asarray(coef, dtype=np.float64), r2)


def person_based(
    patients: pd.DataFrame, conditions: pd.DataFrame | None, model: PersonModel
) -> pd.DataFrame:
    """PBRA-style weighted population: sum of predicted cost per practice, in people.

    ``patients``: ``patient_id``, ``practice_code``, ``sex``, ``age`` (the current list).
    Predicted costs below zero (possible with least squares) are set to zero.
    """
    _require(patients, ("patient_id", "practice_code", "sex", "age"), "patients")
    flags = model.features[len(SEXES) * len(AGE_BANDS):]
    x, _ = _design(patients, conditions, flags)
    pred = np.clip(x @ model.coefficients, 0, None)
    codes, inv = np.unique(patients["practice_code"].astype(str).to_numpy(), return_inverse=True)
    population = np.bincount(inv, minlength=len(codes)).astype(float)
    out = []
    for j, line in enumerate(model.service_lines):
        per_head = pred[:, j].mean() if len(pred) else 0.0
        if not per_head > 0:
            raise FairShareError(
                f"person_based: service line {line!r} has no predicted cost (no patient-level "
                "cost in the prior year), so the model cannot weight its patients"
                + (": prescribing rows are per practice, not per patient; use method = "
                   "\"astro_pu\" (ASTRO-PU weighted patients)" if line == "prescribing"
                   else ""))
        total = np.bincount(inv, weights=pred[:, j], minlength=len(codes))
        wp = total / per_head
        out.append(pd.DataFrame({
            "practice_code": codes, "service_line": line, "method": "person_based",
            "population": population, "weighted_population": wp,
            "need_index": np.divide(wp, population, out=np.ones(len(codes)),
                                    where=population > 0),
            "cost_weight_index": np.nan,
        }))
    return _finish(pd.concat(out, ignore_index=True))


@dataclass
class FairShareInputs:
    """What the fair-share measures may need; give what the policy's methods use.

    - ``list_sizes`` (or ``patients``) and ``cost_weights`` (or ``patient_costs`` with
      ``patients``, to derive them) for ``weighted_capitation``; ``need_index`` optional
      (else from ``patients`` + ``conditions`` when both are given, else 1);
    - ``nhse`` for ``nhse_weighted_population``;
    - ``patients``, ``conditions`` and ``person_model`` (or ``patient_costs`` to fit one)
      for ``person_based``;
    - ``practice_codes``: the commissioner's practices (default: those in the population
      frames, else the ``nhse`` practices in the policy's commissioner ICB, else all).
    """

    list_sizes: pd.DataFrame | None = None
    cost_weights: pd.DataFrame | None = None
    need_index: pd.DataFrame | None = None
    nhse: pd.DataFrame | None = None
    patients: pd.DataFrame | None = None
    conditions: pd.DataFrame | None = None
    patient_costs: pd.DataFrame | None = None
    person_model: PersonModel | None = None
    practice_codes: Sequence[str] | None = None


def _practice_set(policy: BudgetPolicy, inputs: FairShareInputs) -> list[str]:
    if inputs.practice_codes is not None:
        return sorted(dict.fromkeys(str(c) for c in inputs.practice_codes))
    if inputs.list_sizes is not None:
        return sorted(inputs.list_sizes["practice_code"].astype(str).unique())
    if inputs.patients is not None:
        return sorted(inputs.patients["practice_code"].astype(str).unique())
    if inputs.nhse is not None:
        nhse = inputs.nhse
        if policy.commissioner_code and (nhse[ICB] == policy.commissioner_code).any():
            nhse = nhse[nhse[ICB] == policy.commissioner_code]
        return sorted(nhse[PRACTICE].astype(str))
    raise FairShareError("no population given (list sizes, patients or the NHS England file)")


def fair_share_populations(policy: BudgetPolicy, inputs: FairShareInputs) -> pd.DataFrame:
    """Weighted populations for every practice x service line in the policy's scope,
    each line by its policy method. Every practice must be covered by every method."""
    codes = _practice_set(policy, inputs)
    by_method: dict[tuple[str, str | None], list[str]] = {}
    for line in policy.scope:
        rule = policy.fair_share[line]
        by_method.setdefault((rule.method, rule.component), []).append(line)
    frames = []
    for (method, component), lines in by_method.items():
        if method == "nhse_weighted_population":
            assert component is not None
            if inputs.nhse is None:
                raise FairShareError(f"service line(s) {lines} use nhse_weighted_population: "
                                     "the NHS England weighted-population file is needed")
            frames.append(nhse_weighted_population(inputs.nhse, component, lines, codes))
        elif method == "weighted_capitation":
            ls = inputs.list_sizes
            if ls is None and inputs.patients is not None:
                ls = list_sizes_from_patients(inputs.patients)
            if ls is None:
                raise FairShareError(f"service line(s) {lines} use weighted_capitation: list "
                                     "sizes or patients are needed")
            cw = inputs.cost_weights
            if cw is None and inputs.patient_costs is not None and inputs.patients is not None:
                cw = derive_cost_weights(band_costs(inputs.patients, inputs.patient_costs))
            if cw is None:
                raise FairShareError(f"service line(s) {lines} use weighted_capitation: cost "
                                     "weights (or patient-level costs) are needed")
            ni = inputs.need_index
            if ni is None and inputs.patients is not None and inputs.conditions is not None:
                ni = need_index_from_conditions(inputs.patients, inputs.conditions)
            frames.append(weighted_capitation(ls[isin(ls["practice_code"].astype(str), codes)],
                                              cw, lines, ni))
        elif method == "astro_pu":
            ls = inputs.list_sizes
            if ls is None and inputs.patients is not None:
                ls = list_sizes_from_patients(inputs.patients)
            if ls is None:
                raise FairShareError(f"service line(s) {lines} use astro_pu: list sizes or "
                                     "patients are needed")
            frames.append(prescribing_units(ls[isin(ls["practice_code"].astype(str), codes)],
                                            lines))
        else:
            if inputs.patients is None:
                raise FairShareError(f"service line(s) {lines} use person_based: patients "
                                     "are needed")
            model = inputs.person_model
            if model is None or not set(lines) <= set(model.service_lines):
                if inputs.patient_costs is None:
                    raise FairShareError(f"service line(s) {lines} use person_based: a fitted "
                                         "model or prior-year patient costs are needed")
                model = fit_person_model(inputs.patients, inputs.conditions,
                                         inputs.patient_costs, lines)
            pats = inputs.patients[isin(inputs.patients["practice_code"].astype(str), codes)]
            fs = person_based(pats, inputs.conditions, model)
            frames.append(fs[fs["service_line"].isin(lines)])
    out = pd.concat(frames, ignore_index=True)
    for sline, g in out.groupby("service_line"):
        missing = sorted(set(codes) - set(g["practice_code"]))
        if missing:
            raise FairShareError(f"service line {sline!r}: no weighted population for "
                                 f"{len(missing)} practice(s), e.g. {missing[:5]}")
    return out[isin(out["practice_code"], codes)].reset_index(drop=True)
