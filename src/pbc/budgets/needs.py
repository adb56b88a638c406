"""NHS England practice weighted populations and relative need indices.

The file is the practice-level weighted-population table NHS England publishes with
the ICB Place Based Allocation Tool (``nhsx/AIF_Allocation_Tool``, ``data/2023_2024.csv``
and ``data/2024_2025.csv``): one row per GP practice with its registered population and
one weighted population (WP) per allocation component. Both files ship with pbc, gzipped,
in ``pbc/reference/nhse/`` (Open Government Licence v3.0; see the README there):
:func:`packaged_nhse_file` gives the latest.

Component names used by pbc and the column each reads:

============================  ===========================  ==============================
pbc component                 NHS England column            meaning
============================  ===========================  ==============================
general_and_acute             ``G&A WP``                    general and acute (hospital)
community                     ``CS WP``                     community services
mental_health                 ``MH WP``                     mental health
maternity                     ``Mat WP``                    maternity
prescribing                   ``Prescr WP``                 prescribing
health_inequalities           ``Health Ineq WP``            health inequalities adjustment
overall_core                  ``Final WP``                  overall core ICB allocation
primary_medical_care_need     ``Primary Medical Care WP``   weighted primary medical care
                                                            need
primary_medical_care          ``Final PMC WP``              final weighted primary medical
                                                            care population
============================  ===========================  ==============================

The registered population is the column named ``pop YYYY/YY`` (``pop 2022/23`` in both
published years; a later file with another year in that name is accepted too).

Relative need index, as the allocation tool computes it, for a group G of practices in
ICB I and component c::

    ratio(S)     = sum over S of (c WP) / sum over S of (registered population)
    group_index  = ratio(G) / ratio(I)
    icb_index    = ratio(I) / ratio(England)     (England = every practice in the file)

:func:`read_nhse_file` is the only function here that touches a file; the rest are pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

COMPONENT_COLUMNS: dict[str, str] = {
    "general_and_acute": "G&A WP",
    "community": "CS WP",
    "mental_health": "MH WP",
    "maternity": "Mat WP",
    "prescribing": "Prescr WP",
    "health_inequalities": "Health Ineq WP",
    "overall_core": "Final WP",
    # NHS England's labels: "Primary Medical Care WP" is the weighted primary medical care
    # *need*; "Final PMC WP" the final weighted primary medical care population
    "primary_medical_care_need": "Primary Medical Care WP",
    "primary_medical_care": "Final PMC WP",
}
COMPONENTS: tuple[str, ...] = tuple(COMPONENT_COLUMNS)

PRACTICE = "Practice_Code"
ICB = "ICS22"
ICB_NAME = "ICS22name"
POPULATION = "population"
"""Name :func:`read_nhse_file` gives the registered-population column (``pop YYYY/YY``)."""

CODE_COLUMNS: tuple[str, ...] = ("Practice_Code", "LOC22", "LOC22name", "ICS22", "ICS22name",
                                 "LAD21", "LA21")
_POP_RE = re.compile(r"^pop \d{4}/\d{2}$")

#: where the packaged NHS England files live (``YYYY_YYYY.csv.gz``)
PACKAGED_DIR = Path(__file__).resolve().parents[1] / "reference" / "nhse"


class NHSEFileError(ValueError):
    """The NHS England weighted-population file (or a frame read from it) is unusable."""


class PracticeGroupError(ValueError):
    """A group of practices cannot be indexed (unknown codes, more than one ICB, empty)."""


def _population_column(columns: Iterable[str], source: str) -> str:
    pops = sorted(c for c in columns if _POP_RE.match(str(c)))
    if not pops:
        raise NHSEFileError(
            f"{source}: missing column 'pop YYYY/YY' (registered population, e.g. "
            "'pop 2022/23')"
        )
    return pops[-1]  # the latest year if several are present


def packaged_nhse_files() -> list[Path]:
    """The NHS England weighted-population files shipped with pbc, oldest year first."""
    files = sorted(PACKAGED_DIR.glob("[0-9][0-9][0-9][0-9]_[0-9][0-9][0-9][0-9].csv.gz"))
    if not files:
        raise NHSEFileError(f"{PACKAGED_DIR}: no packaged NHS England file (the installation "
                            "is incomplete); give a file with --nhse-file")
    return files


def packaged_nhse_file() -> Path:
    """The latest NHS England weighted-population file shipped with pbc (2024_2025)."""
    return packaged_nhse_files()[-1]


def read_nhse_file(path: str | Path) -> pd.DataFrame:
    """Read an NHS England practice weighted-population CSV file (plain or gzipped).

    Returns one row per practice with the code columns as strings (blank -> ``""``),
    the registered population renamed to ``population`` (the original header is kept in
    ``frame.attrs["population_column"]``) and every ``... WP`` column as float64.
    Other columns are kept as read. Raises :class:`NHSEFileError` naming the file and
    the column (and row, for bad values) when something required is missing or wrong.
    """
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise NHSEFileError(f"{source}: file not found")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                          compression="gzip" if path.suffix == ".gz" else None)
    except (UnicodeDecodeError, pd.errors.ParserError, OSError, EOFError) as exc:
        raise NHSEFileError(f"{source}: not a readable CSV file ({exc})") from exc
    return validate_nhse_frame(raw, source=source)


def validate_nhse_frame(raw: pd.DataFrame, *, source: str = "NHS England file") -> pd.DataFrame:
    """Check and type a frame with the NHS England layout (see :func:`read_nhse_file`)."""
    columns = [str(c).strip() for c in raw.columns]
    raw = raw.set_axis(columns, axis=1)
    pop_col = POPULATION if POPULATION in columns else _population_column(columns, source)
    needed = [*CODE_COLUMNS, *COMPONENT_COLUMNS.values()]
    for col in needed:
        if col not in columns:
            raise NHSEFileError(f"{source}: missing column '{col}'")
    out = raw.copy()
    for col in CODE_COLUMNS:
        out[col] = out[col].fillna("").astype(str).str.strip()
    for col in [pop_col, *COMPONENT_COLUMNS.values()]:
        text = out[col]
        values = pd.to_numeric(text, errors="coerce")
        bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise NHSEFileError(
                f"{source}: column '{col}', row {i + 2} (practice "
                f"{out[PRACTICE].iloc[i]!r}): expected a number, found {text.iloc[i]!r}"
            )
        if (values < 0).any():
            i = int(np.flatnonzero((values < 0).to_numpy())[0])
            raise NHSEFileError(
                f"{source}: column '{col}', row {i + 2}: negative value {text.iloc[i]!r}"
            )
        out[col] = values.astype("float64")
    blank = out[PRACTICE] == ""
    if blank.any():
        i = int(np.flatnonzero(blank.to_numpy())[0])
        raise NHSEFileError(f"{source}: column '{PRACTICE}', row {i + 2}: blank practice code")
    dup = out[PRACTICE].duplicated()
    if dup.any():
        raise NHSEFileError(
            f"{source}: column '{PRACTICE}': practice code "
            f"{out.loc[dup, PRACTICE].iloc[0]!r} appears more than once"
        )
    if (out[ICB] == "").any():
        code = out.loc[out[ICB] == "", PRACTICE].iloc[0]
        raise NHSEFileError(f"{source}: column '{ICB}': blank ICB code for practice {code!r}")
    if pop_col != POPULATION:
        out = out.rename(columns={pop_col: POPULATION})
    out.attrs["population_column"] = pop_col
    out.attrs["source"] = source
    return out


def read_group_file(path: str | Path) -> list[str]:
    """Read a group of practice codes: a CSV with a ``practice_code`` (or ``Practice_Code``)
    column, or a plain list with one code per line. Blank lines are ignored."""
    path = Path(path)
    if not path.exists():
        raise PracticeGroupError(f"{path}: file not found")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise PracticeGroupError(f"{path}: no practice codes")
    header = [h.strip() for h in lines[0].split(",")]
    for name in ("practice_code", "Practice_Code"):
        if name in header:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
            frame.columns = [str(c).strip() for c in frame.columns]
            return [c.strip() for c in frame[name] if c.strip()]
    if len(header) > 1:
        raise PracticeGroupError(
            f"{path}: expected a column 'practice_code' or one practice code per line"
        )
    return lines


def _component_list(components: Sequence[str] | None) -> list[str]:
    if components is None:
        return list(COMPONENTS)
    unknown = [c for c in components if c not in COMPONENT_COLUMNS]
    if unknown:
        raise ValueError(
            f"unknown need component(s) {unknown}; expected one of {list(COMPONENTS)}"
        )
    return list(components)


def needs_indices(
    nhse: pd.DataFrame,
    practice_codes: Iterable[str],
    components: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Relative need indices of a group of practices, per allocation component.

    ``nhse`` is a frame from :func:`read_nhse_file` (columns ``Practice_Code``, ``ICS22``,
    ``population`` and the ``... WP`` columns). ``practice_codes`` are the group's
    members, all in one ICB.

    Returns one row per component with columns ``component``, ``group_index``,
    ``icb_index`` and, to show the working, ``icb_code``, ``group_population``,
    ``group_weighted_population``, ``icb_population``, ``icb_weighted_population``,
    ``england_population``, ``england_weighted_population``.
    """
    comps = _component_list(components)
    if POPULATION not in nhse.columns:
        nhse = validate_nhse_frame(nhse)
    codes = list(dict.fromkeys(str(c).strip() for c in practice_codes))
    if not codes:
        raise PracticeGroupError("the group has no practices")
    known = pd.Index(nhse[PRACTICE])
    missing = [c for c in codes if c not in known]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10
                                             else "")
        raise PracticeGroupError(
            f"{len(missing)} practice code(s) not in the NHS England file: {shown}"
        )
    group = nhse[nhse[PRACTICE].isin(codes)]
    icbs = group.groupby(ICB, sort=True)[PRACTICE].agg(["count", "first"])
    if len(icbs) > 1:
        detail = "; ".join(f"{icb}: {row['count']} practice(s), e.g. {row['first']}"
                           for icb, row in icbs.iterrows())
        raise PracticeGroupError(
            f"the group's practices are in {len(icbs)} ICBs ({detail}); a group must lie "
            "within one ICB"
        )
    icb_code = str(icbs.index[0])
    icb = nhse[nhse[ICB] == icb_code]
    wp_cols = [COMPONENT_COLUMNS[c] for c in comps]

    def sums(frame: pd.DataFrame) -> tuple[float, np.ndarray]:
        return float(frame[POPULATION].sum()), frame[wp_cols].sum().to_numpy(dtype=float)

    g_pop, g_wp = sums(group)
    i_pop, i_wp = sums(icb)
    e_pop, e_wp = sums(nhse)
    if g_pop <= 0:
        raise PracticeGroupError("the group's registered population is zero")
    g_ratio, i_ratio, e_ratio = g_wp / g_pop, i_wp / i_pop, e_wp / e_pop
    return pd.DataFrame(
        {
            "component": comps,
            "group_index": g_ratio / i_ratio,
            "icb_index": i_ratio / e_ratio,
            "icb_code": icb_code,
            "group_population": g_pop,
            "group_weighted_population": g_wp,
            "icb_population": i_pop,
            "icb_weighted_population": i_wp,
            "england_population": e_pop,
            "england_weighted_population": e_wp,
        }
    )


def icb_indices(nhse: pd.DataFrame, components: Sequence[str] | None = None) -> pd.DataFrame:
    """Every ICB's need index against England: columns ``icb_code``, ``component``,
    ``population``, ``weighted_population``, ``icb_index`` (vectorised groupby)."""
    comps = _component_list(components)
    wp_cols = [COMPONENT_COLUMNS[c] for c in comps]
    by_icb = nhse.groupby(ICB, sort=True)[[POPULATION, *wp_cols]].sum()
    e_pop = float(nhse[POPULATION].sum())
    rows = []
    for comp, col in zip(comps, wp_cols, strict=True):
        e_ratio = float(nhse[col].sum()) / e_pop
        rows.append(pd.DataFrame({
            "icb_code": by_icb.index.astype(str),
            "component": comp,
            "population": by_icb[POPULATION].to_numpy(),
            "weighted_population": by_icb[col].to_numpy(),
            "icb_index": (by_icb[col] / by_icb[POPULATION]).to_numpy() / e_ratio,
        }))
    return pd.concat(rows, ignore_index=True)
