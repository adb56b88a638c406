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
#: the input tables of pbc's data contract: organisations, population, activity, social
#: care and the tariff (docs/architecture.md); each must have a contract of its own
INPUT_TABLES = {
    "commissioners", "groups", "practices", "providers", "local_authorities",
    "neighbourhoods", "patients", "list_sizes", "patient_conditions", "apc_spells",
    "op_attendances", "ae_attendances", "prescribing", "social_care_packages", "tariff_apc",
    "tariff_op", "tariff_ae",
}


def test_docs_are_generated_from_the_contracts() -> None:
    committed = (ROOT / "docs" / "data-contracts.md").read_text(encoding="utf-8")
    assert committed == render(), "docs/data-contracts.md is stale: run `make docs`"


def test_every_column_has_an_example_and_description() -> None:
    for table in TABLES.values():
        for col in table.columns:
            assert col.description, (table.name, col.name)
            assert col.example or col.nullable, (table.name, col.name)


def test_every_input_table_has_a_contract_and_is_documented() -> None:
    assert set(TABLES) >= INPUT_TABLES, INPUT_TABLES - set(TABLES)
    documented = set(re.findall(r"^### `([a-z_]+)`", render(), re.M))
    assert documented >= INPUT_TABLES, INPUT_TABLES - documented


def test_examples_load_without_quarantine(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    for table in TABLES.values():
        write_table(folder, table.name, [{c.name: c.example for c in table.columns}])
    wh = Warehouse(tmp_path / "w")
    report = load(folder, wh)
    assert report.rows_quarantined == 0, wh.query("SELECT * FROM quarantine")
    assert {t.table for t in report.tables} == set(TABLES)
