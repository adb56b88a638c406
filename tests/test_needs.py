"""Relative need indices from NHS England's practice weighted-population file.

Golden tests on the real files, as shipped in the package (src/pbc/reference/nhse/, NHS
England, Open Government Licence v3.0): published index values were computed by hand from
the CSV rows (Python's csv module and Decimal sums, outside pbc) and pasted here as
literals; group indices are also recomputed independently with plain pandas groupby sums
over NHS England's own column names, written out literally below.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pbc.budgets.needs import (
    COMPONENT_COLUMNS,
    COMPONENTS,
    NHSEFileError,
    PracticeGroupError,
    icb_indices,
    needs_indices,
    read_group_file,
    read_nhse_file,
)

PACKAGED = Path(__file__).resolve().parents[1] / "src" / "pbc" / "reference" / "nhse"
YEARS = ["2023_2024", "2024_2025"]

#: NHS England's column for each pbc component, as printed in the published files' header
#: (written out here, not taken from pbc's map, so that a swapped or misspelt mapping fails)
NHSE_COLUMNS = {
    "general_and_acute": "G&A WP",
    "community": "CS WP",
    "mental_health": "MH WP",
    "maternity": "Mat WP",
    "prescribing": "Prescr WP",
    "health_inequalities": "Health Ineq WP",
    "overall_core": "Final WP",
    "primary_medical_care_need": "Primary Medical Care WP",
    "primary_medical_care": "Final PMC WP",
}
HEADER = (
    "Practice_Code,GP_Practice_Name,Practice_Postcode,Latitude,Longitude,CCG21,Former CCG,"
    "PCN_Code,PCN_Name,LOC22,LOC22name,ICS22,ICS22name,R22,Region22,LAD21,LTLA21,LA21,UTLA21,"
    "Patients,pop 2022/23,G&A WP,CS WP,MH WP,Mat WP,Health Ineq WP,Prescr WP,Final WP,"
    "Primary Medical Care WP,Final PMC WP"
)

#: hand-computed from the CSV rows (sum of the WP column / sum of `pop 2022/23`, ratio of
#: ratios), to 10 places: the ICB QHM against England, and the three practices A81001,
#: A81002, A81004 against QHM
PUBLISHED = {
    "2023_2024": {
        "overall_core": (1.1169752733, 1.0720151304),
        "primary_medical_care_need": (1.0220772965, 1.0452078825),
        "primary_medical_care": (1.0671753536, 1.0931363596),
        "general_and_acute": (1.1256332667, 1.0533195210),
    },
    "2024_2025": {
        "overall_core": (1.1171762026, 1.0722716611),
        "primary_medical_care_need": (1.0226403478, 1.0454295312),
        "primary_medical_care": (1.0676595294, 1.0934083068),
        "general_and_acute": (1.1256297261, 1.0535945126),
    },
}


@pytest.fixture(scope="module", params=YEARS)
def nhse(request: pytest.FixtureRequest) -> pd.DataFrame:
    frame = read_nhse_file(PACKAGED / f"{request.param}.csv.gz")
    frame.attrs["year"] = request.param
    return frame


def _raw(nhse: pd.DataFrame) -> pd.DataFrame:
    """The same file read independently with plain pandas."""
    return pd.read_csv(nhse.attrs["source"])


def test_nhse_column_names_are_nhs_englands() -> None:
    with gzip.open(PACKAGED / "2024_2025.csv.gz", "rt", encoding="utf-8-sig") as f:
        assert f.readline().rstrip("\r\n") == HEADER
    assert COMPONENT_COLUMNS == NHSE_COLUMNS
    assert COMPONENT_COLUMNS["primary_medical_care_need"] == "Primary Medical Care WP"
    assert COMPONENT_COLUMNS["primary_medical_care"] == "Final PMC WP"


def test_published_index_values(nhse: pd.DataFrame) -> None:
    expected = PUBLISHED[nhse.attrs["year"]]
    out = needs_indices(nhse, ["A81001", "A81002", "A81004"],
                        components=list(expected)).set_index("component")
    for comp, (icb_index, group_index) in expected.items():
        assert out.loc[comp, "icb_code"] == "QHM"
        assert out.loc[comp, "icb_index"] == pytest.approx(icb_index, abs=5e-11), comp
        assert out.loc[comp, "group_index"] == pytest.approx(group_index, abs=5e-11), comp


def test_packaged_latest_file() -> None:
    from pbc.budgets.needs import packaged_nhse_file

    assert packaged_nhse_file() == PACKAGED / "2024_2025.csv.gz"
    frame = read_nhse_file(packaged_nhse_file())
    a = frame.set_index("Practice_Code").loc["A81001"]
    assert a["population"] == pytest.approx(4068.906409)
    assert a["Final PMC WP"] == pytest.approx(5280.328726)


def test_reader_types_and_header(nhse: pd.DataFrame) -> None:
    assert len(nhse) == 6553
    assert nhse.attrs["population_column"] == "pop 2022/23"
    assert nhse["Practice_Code"].is_unique
    assert nhse["ICS22"].nunique() == 42
    for col in NHSE_COLUMNS.values():
        assert nhse[col].dtype == np.float64
    assert (nhse["LOC22"] == "").all()  # blank in both published files: tests use LAD21


def test_whole_icb_is_one_for_every_component(nhse: pd.DataFrame) -> None:
    for icb in ["QHM", nhse["ICS22"].iloc[-1]]:
        codes = nhse.loc[nhse["ICS22"] == icb, "Practice_Code"]
        out = needs_indices(nhse, codes)
        assert list(out["component"]) == list(COMPONENTS)
        np.testing.assert_allclose(out["group_index"], 1.0, rtol=0, atol=1e-12)


def _expected(raw: pd.DataFrame, members: pd.Series, icb: str) -> pd.DataFrame:
    rows = []
    for comp, col in NHSE_COLUMNS.items():
        sums = raw.assign(member=members).groupby(["ICS22", "member"])[
            ["pop 2022/23", col]].sum()
        by_icb = raw.groupby("ICS22")[["pop 2022/23", col]].sum()
        g = sums.loc[(icb, True)]
        i = by_icb.loc[icb]
        e = raw[["pop 2022/23", col]].sum()
        rows.append({
            "component": comp,
            "group_index": (g[col] / g["pop 2022/23"]) / (i[col] / i["pop 2022/23"]),
            "icb_index": (i[col] / i["pop 2022/23"]) / (e[col] / e["pop 2022/23"]),
        })
    return pd.DataFrame(rows)


def test_local_authority_within_icb_matches_groupby(nhse: pd.DataFrame) -> None:
    raw = _raw(nhse)
    # LOC22 is blank in the files, so use a local authority (LAD21) within an ICB; pick
    # one that is split between ICBs to show only the ICB's part counts.
    split = raw.groupby("LAD21")["ICS22"].nunique()
    lad = split[split > 1].index[0]
    icb = raw.loc[raw["LAD21"] == lad, "ICS22"].value_counts().index[0]
    members = (raw["LAD21"] == lad) & (raw["ICS22"] == icb)
    got = needs_indices(nhse, raw.loc[members, "Practice_Code"])
    exp = _expected(raw, members, icb)
    pd.testing.assert_frame_equal(got[["component", "group_index", "icb_index"]], exp,
                                  rtol=1e-12)


def test_arbitrary_practices_match_groupby(nhse: pd.DataFrame) -> None:
    raw = _raw(nhse)
    icb = "QHM"
    in_icb = raw.index[raw["ICS22"] == icb]
    rng = np.random.default_rng(20240)
    picked = rng.choice(in_icb, size=17, replace=False)
    members = pd.Series(False, index=raw.index)
    members[picked] = True
    got = needs_indices(nhse, raw.loc[members, "Practice_Code"][::-1])  # order irrelevant
    exp = _expected(raw, members, icb)
    pd.testing.assert_frame_equal(got[["component", "group_index", "icb_index"]], exp,
                                  rtol=1e-12)
    assert (got["group_index"] != 1.0).all()


def test_england_consistency(nhse: pd.DataFrame) -> None:
    icbs = icb_indices(nhse)
    for comp, col in NHSE_COLUMNS.items():
        part = icbs[icbs["component"] == comp]
        # population-weighted mean of ICB indices is 1; the WP sums add up to England's
        np.testing.assert_allclose(
            (part["icb_index"] * part["population"]).sum(), nhse["population"].sum(),
            rtol=1e-12)
        np.testing.assert_allclose(part["weighted_population"].sum(), nhse[col].sum(),
                                   rtol=1e-12)
    # icb_index from needs_indices agrees with the national table
    codes = nhse.loc[nhse["ICS22"] == "QHM", "Practice_Code"].iloc[:3]
    one = needs_indices(nhse, codes).set_index("component")["icb_index"]
    table = icbs[icbs["icb_code"] == "QHM"].set_index("component")["icb_index"]
    pd.testing.assert_series_equal(one, table.loc[one.index], check_names=False, rtol=1e-12)
    # the overall core WP is normalised to England's population in the published file
    np.testing.assert_allclose(nhse["Final WP"].sum(), nhse["population"].sum(), rtol=1e-9)


def test_group_errors(nhse: pd.DataFrame) -> None:
    with pytest.raises(PracticeGroupError, match=r"not in the NHS England file: ZZZ999"):
        needs_indices(nhse, ["A81001", "ZZZ999"])
    a = nhse.loc[nhse["ICS22"] == "QHM", "Practice_Code"].iloc[0]
    b = nhse.loc[nhse["ICS22"] != "QHM", "Practice_Code"].iloc[0]
    with pytest.raises(PracticeGroupError, match=r"in 2 ICBs .*QHM"):
        needs_indices(nhse, [a, b])
    with pytest.raises(PracticeGroupError, match="no practices"):
        needs_indices(nhse, [])
    with pytest.raises(ValueError, match="unknown need component"):
        needs_indices(nhse, [a], components=["dental"])


def _write(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "wp.csv"
    frame.to_csv(path, index=False)
    return path


def _tiny() -> pd.DataFrame:
    base = {"Practice_Code": ["P1", "P2"], "LOC22": "", "LOC22name": "", "ICS22": "I1",
            "ICS22name": "ICB one", "LAD21": "E1", "LA21": "E1", "pop 2023/24": [100, 300]}
    base.update({col: [110.0, 290.0] for col in NHSE_COLUMNS.values()})
    return pd.DataFrame(base)


def test_reader_errors_name_file_and_column(tmp_path: Path) -> None:
    frame = _tiny()
    ok = read_nhse_file(_write(tmp_path, frame))  # another year's population header
    assert ok.attrs["population_column"] == "pop 2023/24"
    out = needs_indices(ok, ["P1"])
    np.testing.assert_allclose(out["group_index"], (110 / 100) / (400 / 400))
    path = _write(tmp_path, frame.drop(columns=["Mat WP"]))
    with pytest.raises(NHSEFileError, match=r"wp\.csv: missing column 'Mat WP'"):
        read_nhse_file(path)
    path = _write(tmp_path, frame.drop(columns=["pop 2023/24"]))
    with pytest.raises(NHSEFileError, match=r"wp\.csv: missing column 'pop YYYY/YY'"):
        read_nhse_file(path)
    bad = frame.astype({"CS WP": object})
    bad.loc[1, "CS WP"] = "n/a"
    with pytest.raises(NHSEFileError, match=r"column 'CS WP', row 3 .*'P2'.*'n/a'"):
        read_nhse_file(_write(tmp_path, bad))
    with pytest.raises(NHSEFileError, match="file not found"):
        read_nhse_file(tmp_path / "nope.csv")


def test_read_group_file(tmp_path: Path) -> None:
    p = tmp_path / "g.csv"
    p.write_text("practice_code,name\nA81001,x\nA81002,y\n")
    assert read_group_file(p) == ["A81001", "A81002"]
    p.write_text("A81001\n\nA81002\n")
    assert read_group_file(p) == ["A81001", "A81002"]


def test_cli_needs_uses_the_packaged_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pbc.cli import app

    group = tmp_path / "g.csv"
    group.write_text("practice_code\nA81001\nA81002\nA81004\n")
    out = tmp_path / "idx.csv"
    res = CliRunner().invoke(app, ["budgets", "needs", "--group", str(group), "--csv", str(out)])
    assert res.exit_code == 0, res.output
    idx = pd.read_csv(out).set_index("component")
    assert idx.loc["primary_medical_care", "group_index"] == pytest.approx(1.0934083068,
                                                                           abs=5e-11)
    # the printed table names the components in words, not as code
    assert "Primary medical care" in res.output and "General and acute" in res.output
    assert "primary_medical_care" not in res.output and "group vs its ICB" in res.output


def test_cli_synth_england_uses_the_packaged_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pbc.cli import app

    res = CliRunner().invoke(app, ["synth", "--england", "--icb", "QHM", "--list-scale", "0.01",
                                   "--format", "csv", "--out", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    practices = pd.read_csv(tmp_path / "e" / "practices.csv", dtype=str)
    assert len(practices) == 360  # QHM's practices in NHS England's 2024-25 file
    assert practices.loc[practices.practice_code == "A81001", "practice_name"].item() == \
        "The Densham Surgery"
    both = CliRunner().invoke(app, ["synth", "--england", "--nhse-file", "x.csv",
                                    "--out", str(tmp_path / "x")])
    assert both.exit_code != 0 and "not both" in both.output
