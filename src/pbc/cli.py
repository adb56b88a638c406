"""The ``pbc`` command line: thin commands over the services; no business logic here."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable

from pbc.warehouse import Warehouse, WarehouseError

app = typer.Typer(
    help="pbc: practice-based commissioning for the English NHS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err = Console(stderr=True, soft_wrap=True)

WarehouseOpt = Annotated[
    Path,
    typer.Option("--warehouse", "-w", help="Warehouse folder.", envvar="PBC_WAREHOUSE"),
]


class UserError(Exception):
    """An error the user can act on: shown as one message, exit code 2."""


@contextmanager
def progress_bar(title: str) -> Iterator[Callable[[str, int, int], None]]:
    """A Rich progress bar driven by ``callback(step, done, total)``."""
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/"
        "{task.total}"), TimeElapsedColumn(), console=console, transient=False,
    ) as bar:
        task = bar.add_task(title, total=1)

        def update(step: str, done: int, total: int) -> None:
            bar.update(task, description=f"{title}: {step}", completed=done, total=max(total, 1))

        yield update
        bar.update(task, description=title, completed=bar.tasks[0].total)


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn known user errors into one clear line and exit code 2 (no stack trace)."""
    from pbc.warehouse.load import LoadError

    try:
        yield
    except (UserError, LoadError, WarehouseError, FileNotFoundError, ValueError) as e:
        _fail(str(e))


# ---------------------------------------------------------------------- synth
@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the input files to.")],
    practices: Annotated[int, typer.Option(help="Number of practices (synthetic).")] = 50,
    groups: Annotated[int, typer.Option(help="Number of practice groups.")] = 4,
    local_authorities: Annotated[int, typer.Option(help="Number of local authorities.")] = 2,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same files.")] = 1,
    years: Annotated[int, typer.Option(help="Financial years of activity.")] = 1,
    start_year: Annotated[int, typer.Option(help="First financial year (2025 = 2025/26).")] = 2025,
    fault_rate: Annotated[
        float, typer.Option(help="Share of rows with deliberate faults.")
    ] = 0.001,
    nhse_file: Annotated[
        Path | None, typer.Option(help="NHS England practice weighted-population file.")
    ] = None,
    icb: Annotated[
        str | None, typer.Option(help="With --nhse-file: one ICB (ICS22 code).")
    ] = None,
    scale: Annotated[
        float | None,
        typer.Option(help="Share of England's practices (e.g. 0.01); sets --practices."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
) -> None:
    """Generate a synthetic health economy: every input table of the data contract."""
    from pbc.synth import SynthConfig, generate

    with user_errors():
        if scale is not None:
            practices = max(1, round(6553 * scale))
        config = SynthConfig(
            practices=practices, groups=groups, local_authorities=local_authorities, seed=seed,
            years=years, start_year=start_year, fault_rate=fault_rate,
            nhse_file=nhse_file, icb=icb, format=fmt,
        )
        t0 = time.perf_counter()
        with progress_bar("synth") as cb:
            summary = generate(config, out, progress=cb)
        _print_synth(summary, out, time.perf_counter() - t0)


def _print_synth(summary: Any, out: Path, seconds: float) -> None:
    table = RichTable(title=f"Synthetic health economy in {out}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in summary.rows.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    console.print(
        f"{summary.practices:,} practices, {summary.patients:,} patients; {seconds:.1f} s"
    )


# ---------------------------------------------------------------------- load
@app.command()
def load(
    folder: Annotated[Path, typer.Argument(help="Folder of input files (CSV or Parquet).")],
    warehouse: WarehouseOpt = Path("warehouse"),
) -> None:
    """Validate input files and load them into the warehouse (atomic, idempotent)."""
    from pbc.warehouse.load import load as load_folder

    with user_errors():
        with progress_bar("load") as cb:
            report = load_folder(folder, Warehouse(warehouse), progress=cb)
        table = RichTable(title=f"Load into {report.warehouse}")
        for col in ("table", "status", "rows in", "accepted", "quarantined"):
            table.add_column(col, justify="left" if col in ("table", "status") else "right")
        for t in report.tables:
            table.add_row(t.table, t.status, f"{t.rows_in:,}", f"{t.rows_accepted:,}",
                          f"{t.rows_quarantined:,}")
        console.print(table)
        if report.ignored:
            console.print(f"ignored (not contract tables): {', '.join(report.ignored)}")
        if not report.changed:
            console.print("nothing new: the warehouse is unchanged")
        else:
            console.print(
                f"warehouse version {report.version}; {report.rows_quarantined:,} rows "
                f"quarantined (see: pbc export quarantine --out quarantine.csv)"
            )


# ---------------------------------------------------------------------- export
@app.command()
def export(
    table: Annotated[str, typer.Argument(help="Warehouse table, e.g. reconciliation.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="File: .csv, .parquet or .xlsx.")],
    warehouse: WarehouseOpt = Path("warehouse"),
) -> None:
    """Write a warehouse table to CSV, Parquet or XLSX (by the file's extension)."""
    from pbc.warehouse.export import export_table

    with user_errors():
        rows = export_table(Warehouse(warehouse), table, out)
        console.print(f"wrote {rows:,} rows of {table} to {out}")


# ---------------------------------------------------------------------- demo
@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's files.")] = Path("demo"),
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="Stop after the pipeline (no web app).")
    ] = False,
    practices: Annotated[int, typer.Option(help="Practices in the demo economy.")] = 50,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
) -> None:
    """Synthesise a health economy, load it, run every stage, and show the results."""
    from pbc.services.demo import run_demo

    no_serve = no_serve or os.environ.get("PBC_DEMO_NO_SERVE", "") not in ("", "0")
    with user_errors():
        run_demo(out, practices=practices, seed=seed, console=console, progress=progress_bar)
    if not no_serve:
        console.print("The web app is not built yet (a later issue); nothing to serve.")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
