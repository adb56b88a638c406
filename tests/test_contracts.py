"""The contracts: complete, documented, and their own examples pass validation."""

from __future__ import annotations

import re
from pathlib import Path

from delivery import write_table
from pbc.contracts import TABLES
from pbc.contracts.docs import render
from pbc.warehouse import Warehouse
from pbc.warehouse.load import load

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS_MD = ROOT.parent / "shared" / "CONTRACTS.md"


def test_docs_are_generated_from_the_contracts() -> None:
    committed = (ROOT / "docs" / "data-contracts.md").read_text(encoding="utf-8")
    assert committed == render(), "docs/data-contracts.md is stale: run `make docs`"


def test_every_column_has_an_example_and_description() -> None:
    for table in TABLES.values():
        for col in table.columns:
            assert col.description, (table.name, col.name)
            assert col.example or col.nullable, (table.name, col.name)


def test_every_input_table_of_the_shared_contract_is_covered() -> None:
    if not CONTRACTS_MD.exists():
        return
    text = CONTRACTS_MD.read_text(encoding="utf-8")
    # the input sections name tables in the first column of their tables
    section = text.split("## Key outputs")[0]
    named = set(re.findall(r"^\| ([a-z_]+)(?: \(alternative to patients\))? \|", section, re.M))
    named -= {"table"}
    assert named <= set(TABLES), named - set(TABLES)


def test_examples_load_without_quarantine(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    for table in TABLES.values():
        write_table(folder, table.name, [{c.name: c.example for c in table.columns}])
    wh = Warehouse(tmp_path / "w")
    report = load(folder, wh)
    assert report.rows_quarantined == 0, wh.query("SELECT * FROM quarantine")
    assert {t.table for t in report.tables} == set(TABLES)
