"""The check that a key was not loaded before, through per-file key summaries (issue 17,
item 2): a monthly delivery scans only the stored files whose summary has one of its keys'
hashes; the check stays exact (a key stored before is always quarantined as already
loaded)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delivery import VALID, write_delivery
from pbc.warehouse import Warehouse
from pbc.warehouse import load as load_module
from pbc.warehouse.load import KEY_SUMMARY_SUFFIX, load

REFERENCE_TABLES = ["commissioners", "groups", "local_authorities", "neighbourhoods",
                    "practices", "providers", "patients"]


@pytest.fixture(scope="module")
def reference_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ref")
    load(write_delivery(root / "in", tables=REFERENCE_TABLES), Warehouse(root / "w"))
    return root / "w"


def _delivery(folder: Path, ids: list[int], month: int = 4) -> Path:
    """A delivery folder with ``op_attendances.csv`` of attendances ``O<i>`` in ``month``
    of 2025."""
    folder.mkdir(parents=True)
    template = dict(VALID["op_attendances"][0])
    template["appointment_date"] = f"2025-{month:02d}-15"
    header = list(template)
    lines = [",".join(header)] + [
        ",".join(f"O{i}" if h == "attendance_id" else template[h] for h in header)
        for i in ids]
    (folder / "op_attendances.csv").write_text("\n".join(lines) + "\n")
    return folder


def _already_loaded(wh: Warehouse, delivery: Path) -> set[str]:
    return {r[0] for r in wh.query(
        "SELECT value FROM quarantine WHERE source_file LIKE ? AND reason LIKE "
        "'attendance_id already loaded%'", [f"{delivery}%"])}


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[list[Path]]:
    """Record the stored files each key check scans."""
    calls: list[list[Path]] = []
    real = load_module._files_to_check

    def spy(*args: object) -> list[Path]:
        out = real(*args)  # type: ignore[arg-type]
        calls.append(out)
        return out

    monkeypatch.setattr(load_module, "_files_to_check", spy)
    return calls


def test_a_delivery_of_new_keys_scans_no_stored_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference_warehouse: Path
) -> None:
    shutil.copytree(reference_warehouse, tmp_path / "w", symlinks=True)
    wh = Warehouse(tmp_path / "w")
    load(_delivery(tmp_path / "m1", list(range(0, 50)), month=4), wh)
    load(_delivery(tmp_path / "m2", list(range(50, 100)), month=5), wh)
    stored = sorted(wh.table_dir("op_attendances").rglob("*.parquet"))
    assert len(stored) == 2
    assert all(f.with_name(f.name + KEY_SUMMARY_SUFFIX).is_file() for f in stored)

    calls = _spy(monkeypatch)
    new = _delivery(tmp_path / "m3", list(range(100, 150)), month=6)
    load(new, wh)
    assert calls == [[]]  # no stored file could hold one of its keys: none read
    assert not _already_loaded(wh, new)

    calls.clear()
    again = _delivery(tmp_path / "m4", [7, 200], month=6)
    load(again, wh)
    (scanned,) = calls
    assert [f.parent.name for f in scanned] == ["month=1"]  # only April's file holds O7
    assert _already_loaded(wh, again) == {"O7"}


def test_summaries_of_another_hash_function_are_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference_warehouse: Path
) -> None:
    """Summaries hashed otherwise (a DuckDB whose ``hash`` changed) are ignored: every
    stored file is scanned, and a key stored before is still found."""
    shutil.copytree(reference_warehouse, tmp_path / "w", symlinks=True)
    wh = Warehouse(tmp_path / "w")
    load(_delivery(tmp_path / "m1", list(range(0, 20)), month=4), wh)
    load(_delivery(tmp_path / "m2", list(range(20, 40)), month=5), wh)
    calls = _spy(monkeypatch)
    monkeypatch.setattr(load_module, "_HASH_PROBE", "another hash function")
    again = _delivery(tmp_path / "m3", [3, 33, 99], month=6)
    load(again, wh)
    (scanned,) = calls
    assert len(scanned) == 2
    assert _already_loaded(wh, again) == {"O3", "O33"}


@settings(max_examples=5, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    months=st.lists(st.sets(st.integers(0, 40), min_size=1, max_size=8), min_size=1,
                    max_size=2),
    new=st.lists(st.integers(0, 60), min_size=1, max_size=12, unique=True),
    summarised=st.lists(st.booleans(), min_size=2, max_size=2),
)
def test_every_key_stored_before_is_found_whatever_the_summaries(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
    reference_warehouse: Path, months: list[set[int]], new: list[int],
    summarised: list[bool],
) -> None:
    """Earlier deliveries (some written with key summaries, some without, as by an older
    pbc), then a delivery of ``new`` ids: exactly the ids stored before are quarantined
    as already loaded, the others accepted. Fails if a summary lets a duplicate through."""
    tmp = tmp_path_factory.mktemp("ks")
    shutil.copytree(reference_warehouse, tmp / "w", symlinks=True)
    wh = Warehouse(tmp / "w")
    stored: set[int] = set()
    write = load_module.write_key_summaries
    for m, ids in enumerate(months):
        ids -= stored  # an earlier month's id would be quarantined, not stored
        if not ids:
            continue
        with monkeypatch.context() as mp:
            if not summarised[m]:
                mp.setattr(load_module, "write_key_summaries", lambda *a: None)
            load(_delivery(tmp / f"m{m}", sorted(ids), month=4 + m), wh)
        assert load_module.write_key_summaries is write
        stored |= ids
    delivery = _delivery(tmp / "new", new, month=9)
    report = load(delivery, wh)
    (op,) = [t for t in report.tables if t.table == "op_attendances"]
    assert op.rows_in == len(new) == op.rows_accepted + op.rows_quarantined
    assert _already_loaded(wh, delivery) == {f"O{i}" for i in set(new) & stored}
    accepted = {r[0] for r in wh.query(
        "SELECT attendance_id FROM op_attendances WHERE _delivery = 'new'")}
    assert accepted == {f"O{i}" for i in set(new) - stored}
