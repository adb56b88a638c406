"""Monthly deliveries: the synthetic economy as it arrives, and the loader's revisions.

* ``pbc synth --deliveries monthly`` is the ``--deliveries none`` economy split into
  delivery folders (late rows, revisions) whose union, revisions applied, is that economy;
* the loader records each row's delivery and load version, applies a ``revisions/`` folder
  (the replaced row kept in the ``revisions`` history, counted in the reconciliation), and
  loading a delivery again changes nothing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delivery import VALID, warehouse_state, write_delivery, write_table
from pbc.contracts import TABLES
from pbc.synth import SynthConfig, generate
from pbc.synth.deliveries import DELIVERED, LAG_PROFILE, split_into_deliveries
from pbc.warehouse import Warehouse
from pbc.warehouse.load import LoadError, load

ECONOMY = dict(practices=2, groups=2, local_authorities=2, seed=5, years=2, start_year=2024)
PROVENANCE = ("_source", "_delivery", "_load_version")


@pytest.fixture(scope="module")
def economies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("deliveries")
    generate(SynthConfig(**ECONOMY), base / "none")  # type: ignore[arg-type]
    generate(SynthConfig(**ECONOMY, deliveries="monthly"), base / "monthly")  # type: ignore[arg-type]
    return base / "none", base / "monthly"


def _folders(monthly: Path) -> list[Path]:
    return sorted(p for p in (monthly / "deliveries").iterdir() if p.is_dir())


def _rows(con: duckdb.DuckDBPyConnection, files: list[Path], cols: list[str]) -> str:
    listed = "[" + ", ".join(f"'{f}'" for f in files) + "]"
    return f"SELECT {', '.join(cols)} FROM read_parquet({listed}, union_by_name = true)"


def test_union_of_deliveries_with_revisions_is_the_economy(economies: tuple[Path, Path]
                                                           ) -> None:
    none, monthly = economies
    folders = _folders(monthly)
    assert folders[0].name == "2025-04" and folders[-1].name == "2026-06"
    con = duckdb.connect()
    revised_somewhere = 0
    for name in DELIVERED:
        table = TABLES[name]
        cols = [f'"{c.name}"' for c in table.columns]
        key = " || '|' || ".join(f"coalesce(CAST({c} AS VARCHAR), '')"
                                 for c in (f'"{k}"' for k in table.key_columns)) or "''"
        firsts = [f / f"{name}.parquet" for f in folders if (f / f"{name}.parquet").exists()]
        revisions = [f / "revisions" / f"{name}.parquet" for f in folders
                     if (f / "revisions" / f"{name}.parquet").exists()]
        revised_somewhere += len(revisions)
        merged = _rows(con, firsts, cols)
        if revisions:
            rev = _rows(con, revisions, cols)
            merged = (f"SELECT * FROM ({merged}) WHERE {key} NOT IN (SELECT {key} FROM "
                      f"({rev})) UNION ALL {rev}")
            # each revision differs from the first version it replaces
            changed = con.execute(
                f"SELECT count(*) FROM ({rev}) r JOIN ({_rows(con, firsts, cols)}) f "
                f"USING ({', '.join(table.key_columns)})").fetchall()[0][0]
            same = con.execute(
                f"SELECT count(*) FROM (({rev}) INTERSECT ALL ({_rows(con, firsts, cols)}))"
            ).fetchall()[0][0]
            assert changed > 0 and same < changed
        whole = _rows(con, [none / f"{name}.parquet"], cols)
        for a, b in ((merged, whole), (whole, merged)):
            assert con.execute(f"SELECT count(*) FROM (({a}) EXCEPT ALL ({b}))"
                               ).fetchall()[0][0] == 0, name
    assert revised_somewhere >= 3
    # reference tables and tariff files come whole in the first delivery
    for name in ("practices", "patients", "tariff_apc"):
        assert (folders[0] / f"{name}.parquet").read_bytes() == \
            (none / f"{name}.parquet").read_bytes()
    assert (folders[0] / "tariff_settings.toml").read_text() == \
        (none / "tariff_settings.toml").read_text()


def test_lag_profile_is_as_documented(economies: tuple[Path, Path]) -> None:
    _, monthly = economies
    con = duckdb.connect()
    lags: dict[int, int] = {}
    for folder in _folders(monthly)[1:]:
        arrived = int(folder.name[:4]) * 12 + int(folder.name[5:]) - 1
        for month, n in con.execute(
                f"SELECT year(d) * 12 + month(d) - 1, count(*) FROM (SELECT "
                f"TRY_CAST(discharge_date AS DATE) AS d FROM "
                f"read_parquet('{folder / 'apc_spells.parquet'}')) "
                "WHERE d >= DATE '2025-04-01' AND d < DATE '2026-04-01' GROUP BY 1"
        ).fetchall():
            lags[arrived - int(month)] = lags.get(arrived - int(month), 0) + int(n)
    total = sum(lags.values())
    assert set(lags) <= {1, 2, 3}
    bounds = dict(LAG_PROFILE)
    share1, share2 = lags[1] / total, lags.get(2, 0) / total
    assert abs(share1 - bounds[1]) < 0.03
    assert abs(share2 - (bounds[2] - bounds[1])) < 0.03


def test_deliveries_are_deterministic(economies: tuple[Path, Path], tmp_path: Path) -> None:
    """Splitting the same economy again gives the same bytes (and the same as
    ``generate(..., deliveries="monthly")``: the seed alone decides every draw)."""
    none, monthly = economies
    shutil.copytree(none, tmp_path / "again")
    split_into_deliveries(tmp_path / "again", seed=ECONOMY["seed"], last_start_year=2025)
    first = {p.relative_to(monthly): p.read_bytes() for p in (monthly / "deliveries").rglob("*")
             if p.is_file()}
    second = {p.relative_to(tmp_path / "again"): p.read_bytes()
              for p in (tmp_path / "again" / "deliveries").rglob("*") if p.is_file()}
    assert first == second
    manifest = json.loads((monthly / "MANIFEST.json").read_text())
    assert manifest["deliveries"]["folders"][0] == "2025-04"


def test_loading_every_delivery_gives_the_economy_loaded_at_once(
        economies: tuple[Path, Path], tmp_path: Path) -> None:
    none, monthly = economies
    at_once, in_turn = Warehouse(tmp_path / "once"), Warehouse(tmp_path / "turn")
    load(none, at_once)
    replaced = 0
    for folder in _folders(monthly):
        report = load(folder, in_turn)
        replaced += report.rows_replaced
        for t in report.tables:
            assert t.rows_in == t.rows_accepted + t.rows_quarantined
    assert replaced > 0
    con = duckdb.connect()
    for name in DELIVERED:
        cols = [f'"{c.name}"' for c in TABLES[name].columns]
        a = _rows(con, at_once.table_files(name), cols)
        b = _rows(con, in_turn.table_files(name), cols)
        for x, y in ((a, b), (b, a)):
            assert con.execute(f"SELECT count(*) FROM (({x}) EXCEPT ALL ({y}))"
                               ).fetchall()[0][0] == 0, name
    # the history holds every replaced row; the reconciliation says how many
    assert in_turn.query("SELECT count(*) FROM revisions")[0][0] == replaced
    assert in_turn.query("SELECT sum(rows_replaced) FROM reconciliation "
                         "WHERE stage = 'load'")[0][0] == replaced
    # provenance: the delivery and the load version that brought each row
    rows = in_turn.query("SELECT _delivery, min(_load_version), max(_load_version), count(*) "
                         "FROM apc_spells GROUP BY 1 ORDER BY 1")
    assert [r[0] for r in rows] == [f.name for f in _folders(monthly)]
    assert all(r[1] == r[2] for r in rows)  # one load per delivery
    assert [r[1] for r in rows] == sorted(r[1] for r in rows)


# ------------------------------------------------------------------ revisions, by hand
def _base(tmp: Path) -> tuple[Warehouse, Path]:
    wh = Warehouse(tmp / "wh")
    load(write_delivery(tmp / "d1"), wh)
    return wh, tmp


def test_a_revision_replaces_the_row_and_keeps_the_old_one(tmp_path: Path) -> None:
    wh, tmp = _base(tmp_path)
    v1 = wh.manifest()["version"]
    rows = [dict(r) for r in VALID["apc_spells"][:2]]
    rows[0]["hrg_code"] = "DZ65J"  # a corrected HRG for S1
    rows[1]["spell_id"] = "S99"  # a record never sent before: an original
    write_table(tmp / "d2" / "revisions", "apc_spells", rows)
    report = load(tmp / "d2", wh)
    apc = next(t for t in report.tables if t.table == "apc_spells")
    assert (apc.status, apc.rows_in, apc.rows_accepted, apc.rows_replaced) == \
        ("revised", 2, 2, 1)
    assert wh.query("SELECT hrg_code, _delivery, _load_version FROM apc_spells "
                    "WHERE spell_id = 'S1'") == [("DZ65J", "d2", v1 + 1)]
    assert wh.query("SELECT count(*) FROM apc_spells")[0][0] == len(VALID["apc_spells"]) + 1
    (key, source, version, old, rfile, rversion), = wh.query(
        "SELECT key, replaced_source, replaced_load_version, replaced_row, revision_file, "
        "load_version FROM revisions")
    assert (key, version, rversion) == ("S1", v1, v1 + 1)
    assert json.loads(old)["hrg_code"] == "DZ65K" and json.loads(old)["_delivery"] == "d1"
    assert source == wh.query("SELECT DISTINCT _source FROM apc_spells "
                              "WHERE spell_id = 'S2'")[0][0]
    assert rfile.endswith("revisions/apc_spells.csv")
    assert wh.query("SELECT rows_replaced FROM reconciliation WHERE source_file LIKE "
                    "'%revisions/apc_spells.csv'") == [(1,)]
    assert wh.verify() == []


def test_a_row_already_loaded_outside_revisions_is_still_quarantined(tmp_path: Path) -> None:
    wh, tmp = _base(tmp_path)
    rows = [dict(VALID["apc_spells"][0], hrg_code="DZ65J")]
    write_table(tmp / "d2", "apc_spells", rows)
    report = load(tmp / "d2", wh)
    apc = next(t for t in report.tables if t.table == "apc_spells")
    assert (apc.rows_quarantined, apc.rows_replaced) == (1, 0)
    assert wh.query("SELECT hrg_code FROM apc_spells WHERE spell_id = 'S1'") == [("DZ65K",)]


def test_a_key_twice_in_one_revision_file_is_quarantined(tmp_path: Path) -> None:
    wh, tmp = _base(tmp_path)
    rows = [dict(VALID["apc_spells"][0], hrg_code="DZ65J"),
            dict(VALID["apc_spells"][0], hrg_code="DZ65H")]
    write_table(tmp / "d2" / "revisions", "apc_spells", rows)
    report = load(tmp / "d2", wh)
    apc = next(t for t in report.tables if t.table == "apc_spells")
    assert (apc.rows_accepted, apc.rows_quarantined, apc.rows_replaced) == (1, 1, 1)
    assert wh.query("SELECT hrg_code FROM apc_spells WHERE spell_id = 'S1'") == [("DZ65J",)]


def test_a_reference_table_cannot_be_revised(tmp_path: Path) -> None:
    wh, tmp = _base(tmp_path)
    write_table(tmp / "d2" / "revisions", "practices", VALID["practices"])
    before = warehouse_state(wh)
    with pytest.raises(LoadError, match="only activity tables with a key can be revised"):
        load(tmp / "d2", wh)
    assert warehouse_state(wh) == before


def test_provenance_columns_cannot_be_delivered(tmp_path: Path) -> None:
    rows = [dict(r, _load_version="1") for r in VALID["apc_spells"]]
    folder = write_delivery(tmp_path / "d1", tables=["commissioners", "providers"])
    write_table(folder, "apc_spells", rows)
    with pytest.raises(LoadError, match="'_load_version' is reserved"):
        load(folder, Warehouse(tmp_path / "wh"))


# ------------------------------------------------------------------ idempotence, any order
def _three_deliveries(tmp: Path) -> list[Path]:
    d1 = write_delivery(tmp / "d1")
    new = [dict(VALID["apc_spells"][0], spell_id=f"N{i}") for i in range(3)]
    write_table(tmp / "d2", "apc_spells", new)
    write_table(tmp / "d3" / "revisions", "apc_spells",
                [dict(VALID["apc_spells"][1], hrg_code="DZ65J"), dict(new[0], hrg_code="DZ65H")])
    write_table(tmp / "d3", "op_attendances",
                [dict(VALID["op_attendances"][0], attendance_id="O99")])
    return [d1, tmp / "d2", tmp / "d3"]


def _content(wh: Warehouse, *, with_times: bool = False
             ) -> tuple[int, dict[str, list[tuple[object, ...]]]]:
    """The version and every table's rows, sorted (one connection); without load times
    unless asked (two warehouses loaded apart differ only in them)."""
    out = {}
    con = wh.connect()
    try:
        for name in wh.table_names():
            cols = [r[0] for r in con.execute(f'DESCRIBE "{name}"').fetchall()
                    if with_times or r[0] not in ("loaded_at", "recorded_at", "revised_at")]
            out[name] = sorted(con.execute(
                f'SELECT {", ".join(chr(34) + c + chr(34) for c in cols)} FROM "{name}"'
            ).fetchall(), key=repr)
    finally:
        con.close()
    return wh.manifest()["version"], out


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Warehouse, Path]:
    """Three small deliveries, a warehouse with each loaded once, and one with the first
    only (copied for each example)."""
    base = tmp_path_factory.mktemp("three")
    deliveries = _three_deliveries(base)
    once = Warehouse(base / "once")
    for d in deliveries:
        load(d, once)
    load(deliveries[0], Warehouse(base / "first"))
    return deliveries, once, base / "first"


@settings(max_examples=5, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(min_value=1, max_value=3), min_size=3, max_size=3))
def test_a_delivery_loaded_again_changes_nothing(
        three: tuple[list[Path], Warehouse, Path], tmp_path_factory: pytest.TempPathFactory,
        repeats: list[int]) -> None:
    deliveries, once, first = three
    again = Warehouse(tmp_path_factory.mktemp("again") / "wh")
    shutil.copytree(first, again.root, symlinks=True)
    for i, (d, times) in enumerate(zip(deliveries, repeats, strict=True)):
        if i > 0:
            assert load(d, again).changed
        state = _content(again, with_times=True)
        for _ in range(times - 1):
            report = load(d, again)
            assert not report.changed and report.rows_replaced == 0
            assert _content(again, with_times=True) == state
    assert _content(once) == _content(again)
    assert again.manifest()["version"] == 3


def test_csv_economies_split_the_same_way(tmp_path: Path) -> None:
    """CSV deliveries (read and written as text): the union, revisions applied, is the
    economy's own text, row for row."""
    none = tmp_path / "none"
    generate(SynthConfig(practices=2, groups=2, local_authorities=2, seed=8, years=1,
                         start_year=2025, format="csv"), none)
    shutil.copytree(none, tmp_path / "m")
    split = split_into_deliveries(tmp_path / "m", seed=8, last_start_year=2025)
    assert sum(sum(v.values()) for v in split.revisions.values()) > 0
    con = duckdb.connect()
    for name in ("apc_spells", "prescribing"):
        table = TABLES[name]
        spec = "{" + ", ".join(f"'{c.name}': 'VARCHAR'" for c in table.columns) + "}"

        def text(files: list[Path], spec: str = spec) -> str:
            listed = "[" + ", ".join(f"'{f}'" for f in files) + "]"
            return f"SELECT * FROM read_csv({listed}, columns = {spec}, header = true)"

        firsts = sorted((tmp_path / "m" / "deliveries").glob(f"*/{name}.csv"))
        revs = sorted((tmp_path / "m" / "deliveries").glob(f"*/revisions/{name}.csv"))
        key = " || '|' || ".join(f"coalesce({k}, '')" for k in table.key_columns)
        merged = text(firsts)
        if revs:
            merged = (f"SELECT * FROM ({merged}) WHERE {key} NOT IN (SELECT {key} FROM "
                      f"({text(revs)})) UNION ALL {text(revs)}")
        whole = text([none / f"{name}.csv"])
        for a, b in ((merged, whole), (whole, merged)):
            assert con.execute(f"SELECT count(*) FROM (({a}) EXCEPT ALL ({b}))"
                               ).fetchall()[0][0] == 0, name
