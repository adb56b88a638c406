"""The commissioner's own predictive model of emergency admission: logistic regression.

Inputs are the terms of ``pbc/reference/risk/emergency_model.yaml`` (Combined Predictive
Model form, docs/sources.md §3.1), each a transform of one column of the features table
(:mod:`pbc.risk.features`). The fitted model is plain data: intercept, one coefficient per
term, the training means of the terms (for explanations), and a model card. It is saved as
JSON (never pickle), scored with numpy or as one SQL expression (for DuckDB/Spark at
national scale), and explained per patient as coefficient x (value - training mean) summed by
plain-words factor (the hccpy "explain" habit, the house style (explainable scores)).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pbc.risk.features import FEATURE_WINDOWS
from pbc.risk.reference import RiskReferenceError, load_reference

TRANSFORMS = ("identity", "log1p", "square")
MODEL_FORMAT = "pbc-risk-model/1"


@dataclass(frozen=True)
class Term:
    """One model term: ``transform(scale * fill_null(feature, fill))``."""

    term: str
    feature: str
    transform: str = "identity"
    scale: float = 1.0
    fill: float = 0.0
    factor: str = ""

    def apply(self, values: npt.ArrayLike) -> npt.NDArray[np.float64]:
        x = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=float)
        x = np.where(np.isnan(x), self.fill, x) * self.scale
        if self.transform == "log1p":
            return np.asarray(np.log1p(np.maximum(x, 0.0)), dtype=float)
        if self.transform == "square":
            return np.asarray(x * x, dtype=float)
        return x

    def sql(self, quote: str = '"') -> str:
        """The same term as SQL (DuckDB and Spark)."""
        col = f"{quote}{self.feature}{quote}"
        x = f"(CAST(coalesce({col}, {self.fill!r}) AS DOUBLE) * {self.scale!r})"
        if self.transform == "log1p":
            return f"ln(1 + greatest({x}, 0.0))"
        if self.transform == "square":
            return f"({x} * {x})"
        return x


EXPECTED = ("increases", "decreases", "any")


@dataclass(frozen=True)
class Factor:
    """How a factor is put in plain words (``describe`` is a str.format template).

    ``expected`` is the clinically plausible direction of the risk as the feature's value
    rises: ``increases`` (conditions, prior use), ``decreases`` (deprivation decile: 10 is
    least deprived) or ``any`` (age, whose effect is U-shaped). A factor whose fitted
    coefficients run the other way is never given as a reason.

    ``actionable``: whether a clinician can act on the factor (recent admissions, A&E use,
    conditions). Age and deprivation raise the risk but are context, not reasons on a
    case-finding list (the list shows age in its own column)."""

    name: str
    feature: str
    describe: str
    always: bool = False
    expected: str = "any"
    actionable: bool = True

    def words(self, value: float) -> str | None:
        if value is None or np.isnan(value):
            return None  # a missing value is never a reason ("decile nan")
        if not self.always and value == 0:
            return None
        v: float | int = int(value) if float(value).is_integer() else float(value)
        return self.describe.format(value=v, s="" if v == 1 else "s")


@dataclass(frozen=True)
class ModelSpec:
    """The model's inputs and words, from ``emergency_model.yaml``."""

    id: str
    outcome: str
    acsc_codelist: str
    regularisation_c: float
    terms: tuple[Term, ...]
    factors: Mapping[str, Factor]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        try:
            terms = tuple(Term(**t) for t in d["terms"])
            factors = {k: Factor(name=k, **v) for k, v in d["factors"].items()}
            for f in factors.values():
                if f.expected not in EXPECTED:
                    raise TypeError(f"factor {f.name!r}: expected must be one of "
                                    f"{', '.join(EXPECTED)}, not {f.expected!r}")
            spec = cls(str(d["id"]), str(d["outcome"]), str(d.get("acsc_codelist",
                       "acsc_chronic")), float(d.get("regularisation_c", 1.0)), terms, factors)
        except (KeyError, TypeError) as e:
            raise RiskReferenceError(f"risk model spec {d.get('id')!r}: {e}") from e
        for t in terms:
            if t.transform not in TRANSFORMS:
                raise RiskReferenceError(
                    f"risk model spec {spec.id!r}, term {t.term!r}: transform "
                    f"{t.transform!r} is not one of {', '.join(TRANSFORMS)}")
            if t.factor and t.factor not in factors:
                raise RiskReferenceError(
                    f"risk model spec {spec.id!r}, term {t.term!r}: factor {t.factor!r} "
                    "has no entry under 'factors'")
        return spec

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "outcome": self.outcome, "acsc_codelist": self.acsc_codelist,
            "regularisation_c": self.regularisation_c,
            "terms": [t.__dict__ for t in self.terms],
            "factors": {k: {"feature": f.feature, "describe": f.describe, "always": f.always,
                            "expected": f.expected, "actionable": f.actionable}
                        for k, f in self.factors.items()},
        }


def load_spec(path: Path | None = None) -> ModelSpec:
    """The model spec shipped in ``pbc/reference/risk/emergency_model.yaml`` (or ``path``)."""
    return ModelSpec.from_dict(load_reference("emergency_model.yaml", path=path))


@dataclass
class RiskModel:
    """A fitted logistic model: P(outcome) = 1 / (1 + exp(-(intercept + sum coef_t * term_t)))."""

    spec: ModelSpec
    intercept: float
    coefficients: dict[str, float]
    means: dict[str, float]
    card: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ identity
    @property
    def terms(self) -> tuple[Term, ...]:
        return tuple(t for t in self.spec.terms if t.term in self.coefficients)

    @property
    def version(self) -> str:
        return str(self.card.get("version") or self.fingerprint())

    @property
    def features(self) -> list[str]:
        return sorted({t.feature for t in self.terms})

    def fingerprint(self) -> str:
        """A content hash of the coefficients and spec: same fit, same version."""
        body = json.dumps({"spec": self.spec.to_dict(), "intercept": round(self.intercept, 12),
                           "coefficients": {k: round(v, 12) for k, v in
                                            sorted(self.coefficients.items())}},
                          sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:12]

    # ------------------------------------------------------------------ scoring
    def design(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Matrix of transformed terms (rows = patients, columns = :attr:`terms`)."""
        missing = sorted({t.feature for t in self.terms} - set(frame.columns))
        if missing:
            raise KeyError(f"risk model {self.version}: features missing: {', '.join(missing)}")
        cols = [t.apply(frame[t.feature].to_numpy()) for t in self.terms]
        return np.column_stack(cols) if cols else np.zeros((len(frame), 0))

    def linear_predictor(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        beta = np.array([self.coefficients[t.term] for t in self.terms])
        return np.asarray(self.intercept + self.design(frame) @ beta, dtype=float)

    def predict(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Probability of the outcome for each row of a features frame."""
        return np.asarray(1.0 / (1.0 + np.exp(-self.linear_predictor(frame))), dtype=float)

    def sql(self, quote: str = '"') -> str:
        """The probability as one SQL expression over the features columns (DuckDB, Spark)."""
        parts = [f"{self.intercept!r}"] + [
            f"({self.coefficients[t.term]!r}) * {t.sql(quote)}" for t in self.terms]
        return f"(1.0 / (1.0 + exp(-({' + '.join(parts)}))))"

    # ------------------------------------------------------------------ explaining
    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-patient contribution of each factor to the log-odds, relative to the average
        training patient: sum over the factor's terms of coefficient x (term - training mean)."""
        X = self.design(frame)
        out: dict[str, npt.NDArray[np.float64]] = {}
        for j, t in enumerate(self.terms):
            c = self.coefficients[t.term] * (X[:, j] - self.means.get(t.term, 0.0))
            key = t.factor or t.term
            out[key] = out[key] + c if key in out else c
        return pd.DataFrame(out, index=frame.index)

    def plausible_factors(self) -> set[str]:
        """Factors that may be given as reasons: those whose fitted coefficients (summed over
        the factor's terms) run in the factor's ``expected`` direction."""
        total: dict[str, float] = {}
        for t in self.terms:
            key = t.factor or t.term
            total[key] = total.get(key, 0.0) + self.coefficients[t.term]
        out = set()
        for name, coef in total.items():
            f = self.spec.factors.get(name)
            if f is None:
                continue
            if (f.expected == "increases" and coef <= 0) or (
                    f.expected == "decreases" and coef >= 0):
                continue
            out.add(name)
        return out

    def explain(self, frame: pd.DataFrame, top: int = 3) -> list[str]:
        """For each row, up to ``top`` factors that raise the risk most, in plain words,
        e.g. ``"3 emergency admissions in 12 months; COPD; heart failure"``.

        Terms that measure the same thing share one factor (the 12- and 24-month counts,
        the 30-day flag and the ACSC count are all "emergency admissions"), so each reason
        appears once; a factor whose coefficients have an implausible sign
        (:meth:`plausible_factors`), whose value is missing or that a clinician cannot act
        on (``actionable: false``: age, deprivation) is never a reason."""
        contrib = self.contributions(frame)
        names = list(contrib.columns)
        values = contrib.to_numpy()
        plausible = self.plausible_factors()
        texts = []
        for i in range(len(frame)):
            order = np.argsort(-values[i], kind="stable")
            words: list[str] = []
            for j in order:
                if values[i, j] <= 0 or len(words) >= top:
                    break
                f = self.spec.factors.get(names[j])
                if f is None or f.name not in plausible or not f.actionable:
                    continue
                w = f.words(float(frame[f.feature].iloc[i])
                            if pd.notna(frame[f.feature].iloc[i]) else float("nan"))
                if w:
                    words.append(w)
            texts.append("; ".join(words))
        return texts

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT, "version": self.version, "card": self.card,
            "spec": self.spec.to_dict(), "intercept": self.intercept,
            "coefficients": self.coefficients, "means": self.means,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RiskModel:
        if d.get("format") != MODEL_FORMAT:
            raise RiskReferenceError(
                f"not a pbc risk model (format {d.get('format')!r}, expected {MODEL_FORMAT!r})")
        return cls(ModelSpec.from_dict(d["spec"]), float(d["intercept"]),
                   {k: float(v) for k, v in d["coefficients"].items()},
                   {k: float(v) for k, v in d["means"].items()}, dict(d.get("card") or {}))

    def save(self, path: Path | str) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str) + "\n",
                     encoding="utf-8")
        return p

    @classmethod
    def load(cls, path: Path | str) -> RiskModel:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as e:
            raise RiskReferenceError(f"{path}: cannot read a risk model ({e})") from e


def fit(
    frame: pd.DataFrame,
    outcome: str = "outcome_emergency",
    spec: ModelSpec | None = None,
    *,
    card: Mapping[str, Any] | None = None,
    terms: Sequence[str] | None = None,
) -> RiskModel:
    """Fit the logistic model on a features frame with an outcome column (0/1).

    Terms are standardised for fitting with L2 penalty ``spec.regularisation_c``
    (scikit-learn, lbfgs) and the coefficients returned on the original scale. Terms that
    do not vary in the training data (e.g. prior cost when nothing is priced) are left out
    and listed in the card under ``excluded_terms``. ``terms`` (names) limits the model to
    those terms, e.g. the ones whose look-back the data cover (the rest are listed under
    ``terms_not_used``); the card gives each input's look-back window in months."""
    from sklearn.linear_model import LogisticRegression

    spec = spec or load_spec()
    y = frame[outcome].to_numpy().astype(int)
    if y.min(initial=1) == y.max(initial=0):
        raise ValueError("cannot train: every patient has the same outcome in the window")
    wanted = [t for t in spec.terms if terms is None or t.term in set(terms)]
    full = RiskModel(spec, 0.0, {t.term: 0.0 for t in wanted}, {})
    X = full.design(frame)
    sd = X.std(axis=0)
    keep = sd > 1e-12
    kept = [t for t, k in zip(wanted, keep, strict=True) if k]
    Xk, mean, sdk = X[:, keep], X[:, keep].mean(axis=0), sd[keep]
    lr = LogisticRegression(C=spec.regularisation_c, max_iter=2000, solver="lbfgs")
    lr.fit((Xk - mean) / sdk, y)
    beta = lr.coef_[0] / sdk
    intercept = float(lr.intercept_[0] - np.sum(beta * mean))
    model = RiskModel(
        spec, intercept, {t.term: float(b) for t, b in zip(kept, beta, strict=True)},
        {t.term: float(m) for t, m in zip(kept, mean, strict=True)},
    )
    import sklearn

    model.card = {
        "model": spec.id, "outcome": spec.outcome,
        "method": "logistic regression, L2 penalty on standardised terms "
                  f"(scikit-learn {sklearn.__version__} LogisticRegression, "
                  f"C={spec.regularisation_c})",
        "inputs": [{"term": t.term, "feature": t.feature, "transform": t.transform,
                    "scale": t.scale, "fill": t.fill,
                    "window_months": FEATURE_WINDOWS.get(t.feature),
                    "coefficient": model.coefficients[t.term]} for t in kept],
        "intercept": intercept,
        "excluded_terms": [t.term for t, k in zip(wanted, keep, strict=True) if not k],
        "terms_not_used": [t.term for t in spec.terms if t not in wanted],
        "training": {"n": int(y.size), "events": int(y.sum())},
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **dict(card or {}),
    }
    model.card["version"] = f"{spec.id}-{model.fingerprint()}"
    return model
