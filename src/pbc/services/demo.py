"""``pbc demo``: a default synthetic economy taken through every stage that exists."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from rich.console import Console
from rich.table import Table as RichTable

from pbc.warehouse import Warehouse

ProgressFactory = Callable[[str], AbstractContextManager[Callable[[str, int, int], None]]]

#: the demo economy: about 50 practices in 4 groups across 2 local authorities (~400,000 patients)
DEMO_GROUPS = 4
DEMO_LOCAL_AUTHORITIES = 2


def run_demo(
    out: Path,
    *,
    practices: int,
    seed: int,
    console: Console,
    progress: ProgressFactory,
) -> None:
    from pbc.synth import SynthConfig, generate
    from pbc.warehouse.load import load

    out = out.resolve()
    inputs, wdir = out / "input", out / "warehouse"
    timings: list[tuple[str, float]] = []

    t0 = time.perf_counter()
    config = SynthConfig(
        practices=practices, groups=DEMO_GROUPS, local_authorities=DEMO_LOCAL_AUTHORITIES,
        seed=seed,
    )
    with progress("1. synthesise a health economy") as cb:
        summary = generate(config, inputs, progress=cb)
    timings.append(("synthesise", time.perf_counter() - t0))
    console.print(
        f"  {summary.practices:,} practices, {summary.patients:,} patients, "
        f"{sum(summary.rows.values()):,} rows in {inputs}"
    )

    t0 = time.perf_counter()
    warehouse = Warehouse(wdir)
    with progress("2. validate and load") as cb:
        report = load(inputs, warehouse, progress=cb)
    timings.append(("load", time.perf_counter() - t0))
    console.print(
        f"  {report.rows_in:,} rows in, {report.rows_quarantined:,} quarantined "
        f"(warehouse version {report.version}{'' if report.changed else ', unchanged'})"
    )
    _print_reconciliation(warehouse, console)

    console.print()
    console.print("[bold]Outputs[/]")
    console.print(f"  input files:     {inputs}")
    catalogue = wdir / "current" / "catalogue.duckdb"
    console.print(f"  warehouse:       {wdir} (DuckDB catalogue: {catalogue})")
    console.print(
        f"  explore:         .venv/bin/pbc export reconciliation --warehouse {wdir} "
        f"--out {out / 'reconciliation.xlsx'}"
    )
    console.print("  timings:         " + ", ".join(f"{n} {s:.1f} s" for n, s in timings))


def _print_reconciliation(warehouse: Warehouse, console: Console) -> None:
    rows = warehouse.query(
        "SELECT source_table, sum(rows_in), sum(rows_accepted), sum(rows_quarantined) "
        "FROM reconciliation WHERE stage = 'load' GROUP BY 1 ORDER BY 1"
    )
    table = RichTable(title="Reconciliation (load): rows in = accepted + quarantined")
    for col in ("table", "rows in", "accepted", "quarantined"):
        table.add_column(col, justify="left" if col == "table" else "right")
    for name, rin, acc, qua in rows:
        table.add_row(name, f"{rin:,}", f"{acc:,}", f"{qua:,}")
    console.print(table)
