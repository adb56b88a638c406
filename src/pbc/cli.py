"""The ``pbc`` command line: thin commands over the services; no business logic here."""

from __future__ import annotations

import errno
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable

from pbc.warehouse import Warehouse, WarehouseError

app = typer.Typer(
    help="pbc: practice-based commissioning for the English NHS. On the command line "
         "identity (--as) is self-declared and not checked (the web app, pbc serve, checks "
         "a password): anyone who can read the warehouse folder can claim any role "
         "(docs/security.md).",
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
    err.print("[bold red]error:[/] ", end="")
    err.print(message, markup=False, highlight=False)  # a "[" in a path or value stays
    raise typer.Exit(2)


def _say(text: str, out: Console | None = None) -> None:
    """A line that names a file or folder, printed without Rich's wrapping: a long path is
    never cut mid-name (the terminal folds the line if it must, and it copies whole)."""
    (out or console).print(text, soft_wrap=True, markup=False, highlight=False)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn known user errors into one clear line and exit code 2 (no stack trace).

    A full disk (or quota) is one line too: a change is one warehouse transaction, so the
    warehouse is as it was before the command."""
    from pbc.decisions.store import DecisionError
    from pbc.warehouse.load import LoadError

    try:
        yield
    except (UserError, LoadError, WarehouseError, FileNotFoundError, ValueError,
            PermissionError, KeyError, DecisionError) as e:
        _fail(str(e))
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" writing {e.filename}" if e.filename else ""
        _fail(f"no space left on the device{where} ({e.strerror or e}); the warehouse is "
              "unchanged: free some space and run the command again")


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
        Path | None, typer.Option(help="NHS England practice weighted-population file "
                                       "(your own; see --england for the packaged one).")
    ] = None,
    england: Annotated[bool, typer.Option(
        "--england", help="England's real practices from the NHS England weighted-population "
                          "file shipped with pbc (the latest year).")] = False,
    icb: Annotated[
        str | None, typer.Option(help="With --nhse-file or --england: one ICB (ICS22 code).")
    ] = None,
    scale: Annotated[
        float | None,
        typer.Option(help="Share of England's practices (e.g. 0.01); sets --practices."),
    ] = None,
    list_scale: Annotated[float, typer.Option(
        help="Multiply every practice's list size (e.g. 0.1 with --nhse-file: all of "
             "England's practices at a tenth of the patients).")] = 1.0,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    deliveries: Annotated[str, typer.Option(
        help="none: one file per table; monthly: delivery folders OUT/deliveries/YYYY-MM "
             "as a provider sends them (rows 1-3 months late, a few revised; "
             "docs/deliveries.md).")] = "none",
    workers: Annotated[int | None, typer.Option(
        help="Worker processes generating parts in parallel (default: one per core). "
             "Changes the time taken, never the files.")] = None,
    chunk_patients: Annotated[int, typer.Option(
        help="Patients generated at once (bounds memory). Changes the time taken, never "
             "the files.")] = 2_000_000,
    invoice: Annotated[bool, typer.Option(
        "--invoice", help="Also price the economy in a scratch warehouse and write its main "
        "provider's invoice for April of the latest full year, with 3 planted errors of "
        "each class, to OUT/invoices/ (invoice, planted truth, contract; "
        "docs/decisions.md).")] = False,
) -> None:
    """Generate a synthetic health economy: every input table of the data contract."""
    from pbc.synth import SynthConfig, generate

    with user_errors():
        if england:
            if nhse_file is not None:
                raise UserError("give --england or --nhse-file, not both")
            from pbc.budgets.needs import packaged_nhse_file

            nhse_file = packaged_nhse_file()
        if scale is not None:
            practices = max(1, round(6553 * scale))
        config = SynthConfig(
            practices=practices, groups=groups, local_authorities=local_authorities, seed=seed,
            years=years, start_year=start_year, fault_rate=fault_rate,
            nhse_file=nhse_file, icb=icb, format=fmt, list_scale=list_scale,
            deliveries=deliveries, workers=workers, chunk_patients=chunk_patients,
        )
        t0 = time.perf_counter()
        if invoice and deliveries != "none":
            raise UserError("--invoice needs --deliveries none (the invoice is priced from "
                            "the one set of files)")
        with progress_bar("synth") as cb:
            summary = generate(config, out, progress=cb)
        _print_synth(summary, out, time.perf_counter() - t0)
        if invoice:
            from pbc.services.invoices import synth_invoice

            inv, files = synth_invoice(out, seed=seed)
            _say(f"invoice of {inv.provider} to {inv.commissioner} for month {inv.month} of "
                 f"{inv.financial_year}: {len(inv.lines):,} lines, {len(inv.planted)} planted "
                 f"errors; written: {', '.join(str(f) for f in files)}")


def _print_synth(summary: Any, out: Path, seconds: float) -> None:
    _say(f"Synthetic health economy in {out}")
    table = RichTable(title="Input files written")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in summary.rows.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    console.print(
        f"{summary.practices:,} practices, {summary.patients:,} patients; {seconds:.1f} s"
    )
    if summary.faults:
        faults = ", ".join(f"{kind} {n:,}" for kind, n in sorted(summary.faults.items()))
        console.print(f"deliberate faults (the loader should quarantine them): {faults}")
    if summary.unattributed:
        un = ", ".join(f"{t} {n:,}" for t, n in sorted(summary.unattributed.items()))
        console.print(f"activity with a blank or unknown practice (valid, unattributed): {un}")
    if summary.deliveries:
        console.print(
            f"{len(summary.deliveries)} monthly deliveries in {out / 'deliveries'} "
            f"({summary.deliveries[0]} to {summary.deliveries[-1]}; {summary.revisions:,} rows "
            "revised in a later delivery's revisions/ folder): load them in order, e.g. "
            f"for d in {out / 'deliveries'}/*/; do pbc load \"$d\"; done")


# ---------------------------------------------------------------------- load
@app.command()
def load(
    folder: Annotated[Path, typer.Argument(help="Folder of input files (CSV or Parquet).")],
    warehouse: WarehouseOpt = Path("warehouse"),
    allow_shrink: Annotated[bool, typer.Option(
        "--allow-shrink", help="Let a reference file replace a table with far fewer rows "
        "(none, or under half); refused otherwise.")] = False,
) -> None:
    """Validate input files and load them into the warehouse (atomic, idempotent)."""
    from pbc.warehouse.load import load as load_folder

    with user_errors():
        with progress_bar("load") as cb:
            report = load_folder(folder, Warehouse(warehouse), progress=cb,
                                 allow_shrink=allow_shrink)
        _say(f"Load into {report.warehouse}")
        table = RichTable(title="Rows by table")
        for col in ("table", "status", "rows in", "accepted", "quarantined"):
            table.add_column(col, justify="left" if col in ("table", "status") else "right")
        for t in report.tables:
            table.add_row(t.table, t.status, f"{t.rows_in:,}", f"{t.rows_accepted:,}",
                          f"{t.rows_quarantined:,}")
        table.add_section()
        table.add_row("all tables", "", *(f"{sum(getattr(t, a) for t in report.tables):,}"
                                          for a in ("rows_in", "rows_accepted",
                                                    "rows_quarantined")), style="bold")
        console.print(table)
        if report.ignored:
            console.print(f"ignored (not contract tables): {', '.join(report.ignored)}")
        for t in report.tables:
            if t.money_unknown_rows:
                console.print(
                    f"{t.table}: {t.money_unknown_rows:,} quarantined rows have no readable "
                    "amount, so their money is not in money_in (see the quarantine)")
        if not report.changed:
            console.print("nothing new: the warehouse is unchanged")
        else:
            console.print(
                f"warehouse version {report.version}; {report.rows_quarantined:,} rows "
                f"quarantined (see: pbc export quarantine --out quarantine.csv "
                "--as commissioner_data:CODE)"
            )


# ---------------------------------------------------------------------- price
@app.command()
def price(
    warehouse: WarehouseOpt = Path("warehouse"),
    engine: Annotated[str, typer.Option(help="duckdb (default) or spark (pbc[spark]).")] =
    "duckdb",
    settings: Annotated[Path | None, typer.Option(
        help="Tariff settings TOML (default: the one loaded with the data).")] = None,
    tariff_workbook: Annotated[Path | None, typer.Option(
        help="Price from an Annex A style workbook instead of the loaded tariff.")] = None,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Show Spark's own log (--engine spark); errors always show.")
    ] = False,
    full: Annotated[bool, typer.Option(
        "--full", help="Price every partition again, not only those whose inputs changed.")
    ] = False,
) -> None:
    """Price loaded activity at the national tariff and attribute it to practices.

    Only the partitions (financial year and month) whose inputs changed since they were
    priced are priced again; the others are kept as they are (--full prices all)."""
    from pbc.services.pricing import run_pricing

    if verbose:
        os.environ["PBC_SPARK_VERBOSE"] = "1"

    with user_errors():
        with progress_bar("price") as cb:
            cb("pricing and attribution", 0, 1)
            report = run_pricing(Warehouse(warehouse), settings_file=settings,
                                 tariff_workbook=tariff_workbook, engine=engine,
                                 full=full)
            cb("pricing and attribution", 1, 1)
        console.print(("Partitions: " if report.changed else
                       "Nothing changed since the last pricing run (warehouse unchanged). "
                       "Partitions: ") + report.partitions_text())
        table = RichTable(title=f"Priced activity (warehouse version {report.version})")
        for col in ("service line", "rows", "money"):
            table.add_column(col, justify="left" if col == "service line" else "right")
        for line, rows, money in report.by_service_line:
            table.add_row(str(line), f"{rows:,}", f"£{Decimal(str(money)):,.2f}")
        table.add_section()
        table.add_row("all", f"{sum(int(r) for _, r, _ in report.by_service_line):,}",
                      f"£{sum(Decimal(str(m)) for _, _, m in report.by_service_line):,.2f}",
                      style="bold")
        console.print(table)
        top = RichTable(title="Money by practice (top 10)")
        for col in ("practice", "rows", "money"):
            top.add_column(col, justify="left" if col == "practice" else "right")
        for code, rows, money in report.by_practice[:10]:
            top.add_row(str(code), f"{rows:,}", f"£{float(money):,.2f}")
        console.print(top)
        for r in report.reconciliation:
            console.print(
                f"{r['source_table']}: {r['rows_in']:,} rows, {r['rows_unpriced']:,} unpriced "
                f"(with a reason); money priced £{float(r['money_priced']):,.2f} = attributed "
                f"£{float(r['money_attributed']):,.2f} + unattributed "
                f"£{float(r['money_unattributed']):,.2f}")


# ---------------------------------------------------------------------- principals
SELF_DECLARED_NOTE = ("Identity is self-declared and not checked (no accounts yet): "
                      "see docs/security.md.")
AsOpt = Annotated[
    str | None,
    typer.Option("--as", help="Act as ROLE:ORGANISATION, e.g. practice:A81001, "
                 "commissioner:QHM or commissioner_data:QHM (default: the warehouse's "
                 "commissioner). " + SELF_DECLARED_NOTE),
]


def _user() -> str:
    return os.environ.get("USER", "cli")


def _principal(warehouse: Path, acting_as: str | None) -> Any:
    """The principal of a command: ``--as`` (parsed by the one parser), else the
    warehouse's only commissioner. Self-declared either way (docs/security.md)."""
    from pbc.services.principal import parse_principal

    if acting_as:
        return parse_principal(acting_as, user=_user())
    rows = Warehouse(warehouse).query("SELECT DISTINCT commissioner_code FROM practices")
    if len(rows) != 1:
        raise UserError("the warehouse has several commissioners: say which with "
                        "--as commissioner:CODE")
    return parse_principal(f"commissioner:{rows[0][0]}", user=_user(),
                           source="default: the warehouse's commissioner (self-declared)")


# ---------------------------------------------------------------------- export
@app.command(help="Write a warehouse table to CSV, Parquet or XLSX (by the file's "
             "extension). Patient-level tables (patients, conditions, activity, priced "
             "activity, risk scores, quarantine) need --as: practice:CODE gets its own "
             "patients, commissioner_data:CODE gets all (recorded in the audit log). "
             + SELF_DECLARED_NOTE)
def export(
    table: Annotated[str, typer.Argument(help="Warehouse table, e.g. reconciliation.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="File: .csv, .parquet or .xlsx.")],
    warehouse: WarehouseOpt = Path("warehouse"),
    acting_as: Annotated[str | None, typer.Option(
        "--as", help="ROLE:ORGANISATION, needed for patient-level tables (no default). "
        + SELF_DECLARED_NOTE)] = None,
) -> None:
    from pbc.services.export import export_table
    from pbc.services.principal import parse_principal

    with user_errors():
        who = parse_principal(acting_as, user=_user()) if acting_as else None
        rows = export_table(Warehouse(warehouse), table, out, who)
        _say(f"wrote {rows:,} rows of {table} to {out}")


# ---------------------------------------------------------------------- risk
risk_app = typer.Typer(help="Case finding: risk of emergency admission.", no_args_is_help=True)
app.add_typer(risk_app, name="risk")


def _access_errors() -> Any:
    from pbc.services.principal import AccessDenied

    return AccessDenied


#: ``--engine`` of the analytic stages (issue 17): the same Ibis expressions on either engine
EngineOpt = Annotated[str, typer.Option(
    help="duckdb (default) or spark (pbc[spark]): where the stage's expressions run.")]


@risk_app.command("train")
def risk_train(warehouse: WarehouseOpt = Path("warehouse"), acting_as: AsOpt = None,
               engine: EngineOpt = "duckdb") -> None:
    """Train the emergency-admission model on the warehouse's history (with a model card)."""
    from pbc.services import risk

    with user_errors():
        result = risk.train(Warehouse(warehouse), _principal(warehouse, acting_as),
                            engine=engine)
        v = result.validation
        console.print(f"model {result.model.version} stored in the warehouse "
                      f"({result.windows.method.replace('_', '-')} validation: AUC "
                      f"{v.auc.auc:.3f}, 95% CI {v.auc.lower:.3f} to {v.auc.upper:.3f}, "
                      f"{v.n:,} patients)", highlight=False)
        console.print("the full report (summary, model card, performance by group, LACE "
                      "and PARR-30 comparison): pbc risk report", highlight=False)


@risk_app.command("score")
def risk_score(warehouse: WarehouseOpt = Path("warehouse"), acting_as: AsOpt = None,
               engine: EngineOpt = "duckdb") -> None:
    """Score every registered patient; writes the risk_scores table."""
    from pbc.services import risk

    with user_errors():
        s = risk.score(Warehouse(warehouse), _principal(warehouse, acting_as), engine=engine)
        console.print(f"scored {s.rows:,} patients at {s.reference_date} with model "
                      f"{s.model_version}: " + ", ".join(f"{k} {v:,}" for k, v in
                                                         s.segments.items()))


@risk_app.command("report")
def risk_report(
    warehouse: WarehouseOpt = Path("warehouse"),
    acting_as: AsOpt = None,
    out: Annotated[Path | None, typer.Option(help="Write the report (Markdown).")] = None,
    chart: Annotated[Path | None, typer.Option(
        help="Write the calibration plot (.svg, .png, .html or .json).")] = None,
) -> None:
    """Validation report: AUC, calibration, PPV and sensitivity by segment, naive rule."""
    from pbc.services import risk

    with user_errors():
        validation = risk.report(Warehouse(warehouse), _principal(warehouse, acting_as))
        text = validation.to_markdown()
        if chart:
            from pbc.indicators.charts import save_chart
            from pbc.risk.charts import calibration_chart

            try:
                _say(f"wrote {save_chart(calibration_chart(validation), chart)}")
            except ValueError as e:
                raise UserError(str(e)) from e
        if out:
            out.write_text(text, encoding="utf-8")
            _say(f"wrote {out}")
        else:
            print_report(text)


def print_report(markdown: str, out: Console | None = None) -> None:
    """A Markdown report rendered for the terminal by Rich (headings, tables that wrap to
    the terminal's width), once."""
    from rich.markdown import Markdown

    (out or console).print(Markdown(markdown))


@risk_app.command("list")
def risk_list(
    practice: Annotated[str, typer.Argument(help="Practice code.")],
    warehouse: WarehouseOpt = Path("warehouse"),
    acting_as: AsOpt = None,
    top: Annotated[int, typer.Option(help="How many patients.")] = 20,
    out: Annotated[Path | None, typer.Option(help="Export to .csv or .xlsx.")] = None,
) -> None:
    """A practice's own case-finding list (only for a user of that practice: --as practice:CODE)."""
    from pbc.services import risk

    with user_errors():
        if top < 1:
            raise UserError(f"--top {top}: give a number of patients, 1 or more")
        who = _principal(warehouse, acting_as)
        try:
            if out:
                path = risk.export_case_finding(Warehouse(warehouse), who, practice, out,
                                                top_n=top)
                _say(f"wrote {path}")
                return
            rows = risk.case_finding_list(Warehouse(warehouse), who, practice, top)
        except _access_errors() as e:
            raise UserError(str(e)) from e
        print_case_finding(rows, practice)


def print_case_finding(rows: list[dict[str, Any]], practice: str,
                       out: Console | None = None) -> None:
    """A practice's case-finding list in 80 columns: the reasons wrap at word boundaries,
    every other column stays on one line."""
    labels = _segment_labels()
    table = RichTable(title=f"Patients at highest risk of emergency admission, {practice}",
                      box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                      show_edge=False)
    for col in ("rank", "patient", "age", "sex", "risk", "segment", "reasons"):
        table.add_column(col, justify="right" if col in ("rank", "age", "risk") else "left",
                         no_wrap=col != "reasons", overflow="fold")
    for r in rows:
        table.add_row(str(r["practice_rank"]), str(r["patient_id"]), str(r["age"]),
                      str(r["sex"]), f"{float(r['risk_percent']):.1f}%",
                      labels.get(str(r["segment"]), str(r["segment"])),
                      str(r["top_factors"]) or "-")
    (out or console).print(table)


@risk_app.command("segments")
def risk_segments(
    warehouse: WarehouseOpt = Path("warehouse"),
    acting_as: AsOpt = None,
    level: Annotated[str, typer.Option(help="practice, group, neighbourhood, "
                                       "local_authority or commissioner.")] = "group",
) -> None:
    """Counts of patients by risk segment (small numbers suppressed outside a practice)."""
    from pbc.services import risk

    with user_errors():
        try:
            counts = risk.segment_counts(Warehouse(warehouse), _principal(warehouse, acting_as),
                                         level=level)
        except _access_errors() as e:
            raise UserError(str(e)) from e
        print_segment_counts(counts)


def _segment_labels() -> dict[str, str]:
    from pbc.risk.segments import nhs_segments

    return {s.name: s.label for s in nhs_segments()}


def print_segment_counts(counts: Any, out: Console | None = None) -> None:
    """Patients by risk segment as a Rich table: segments named in words, counts with
    thousands separators, suppressed cells as the marker, the suppression rule below."""
    con = out or console
    labels = {**_segment_labels(), "code": counts.level.replace("_", " "), "total": "total"}
    table = RichTable(title=f"Registered patients by risk segment, by "
                            f"{counts.level.replace('_', ' ')}", box=box.SIMPLE_HEAD,
                      pad_edge=False, collapse_padding=True, show_edge=False)
    for c in counts.columns:
        table.add_column(labels.get(c, c), justify="left" if c == "code" else "right",
                         no_wrap=True)
    for r in counts.rows:
        table.add_row(*(counts.marker if r[c] is None else
                        (f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]))
                        for c in counts.columns))
    con.print(table)
    if counts.suppressed:
        con.print(f"Counts from 1 to {counts.threshold} are suppressed ({counts.marker}), "
                  "with complementary suppression so they cannot be recovered from totals "
                  "or from another level's table.", highlight=False, markup=False)


# ---------------------------------------------------------------------- benchmark
@app.command()
def benchmark(
    indicator: Annotated[str | None, typer.Option(help="Indicator id (see --list).")] = None,
    level: Annotated[str, typer.Option(help="practice, group or commissioner.")] = "practice",
    warehouse: WarehouseOpt = Path("warehouse"),
    groups: Annotated[Path | None, typer.Option(
        help="CSV of practice_code,group_code: benchmark your own grouping.")] = None,
    year: Annotated[str | None, typer.Option(
        help="Financial year, e.g. 2025/26 (default: every year in the warehouse).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Write .csv (plus NAME_monthly.csv) or .xlsx (benchmark, monthly, indicator "
             "sheets).")] = None,
    monthly: Annotated[bool, typer.Option(
        help="Print the monthly SPC series instead of the annual table.")] = False,
    charts: Annotated[Path | None, typer.Option(
        help="Write funnel, caterpillar, deciles and SPC charts to this folder.")] = None,
    chart_format: Annotated[str, typer.Option(help="svg, png, html or json (Vega-Lite).")] =
    "svg",
    highlight: Annotated[str | None, typer.Option(
        help="Unit to mark on the charts (and whose SPC chart to draw).")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the indicators.")] = False,
    engine: EngineOpt = "duckdb",
) -> None:
    """Benchmark practices, groups or the commissioner on an indicator, with sound statistics."""
    from pbc.services.benchmarking import (
        benchmark_indicator,
        list_indicators,
        write_charts,
        write_result,
    )

    with user_errors():
        if list_ or indicator is None:
            table = RichTable(title="Indicators")
            table.add_column("id")
            table.add_column("title")
            for ind in list_indicators():
                table.add_row(ind.id, ind.title)
            console.print(table)
            return
        if level not in ("practice", "group", "commissioner"):
            raise UserError(f"--level {level!r}: use practice, group or commissioner")
        result = benchmark_indicator(
            Warehouse(warehouse), indicator, level=level,  # type: ignore[arg-type]
            grouping_file=groups, financial_year=year,
            monthly=monthly or out is not None or charts is not None, engine=engine)
        if out:
            for path in write_result(result, out):
                _say(f"wrote {path}")
        if charts:
            for path in write_charts(result, charts, highlight=highlight, fmt=chart_format):
                _say(f"wrote {path}")
        _print_benchmark(result, monthly, written=out is not None)


VARIATION_WORDS = {
    "common_cause": "common cause", "special_cause_improvement": "improvement",
    "special_cause_concern": "concern", "special_cause_neutral_high": "unusually high",
    "special_cause_neutral_low": "unusually low",
}


def _number(v: Any, places: int = 1) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "-"
    return "-" if f != f else f"{f:,.{places}f}"


def _print_benchmark(result: Any, monthly: bool, out: Console | None = None, *,
                     written: bool = False) -> None:
    """The benchmark as a Rich table that fits an 80-column terminal (Rich wraps the cells):
    the period and source in the title, the judgement in words, a totals row, and notes on
    England's comparator and overdispersion. ``monthly``: every row of the monthly series,
    or, when ``written`` (the series went to a file), where it is."""
    from pbc.indicators import wording
    from pbc.indicators.benchmark import judged_measure

    con = out or console
    ind, frame = result.indicator, result.table
    key = frame.columns[1]
    level = key if key != "grouping" else "group"
    fy = str(frame["financial_year"].iloc[0]) if "financial_year" in frame.columns \
        and len(frame) else None
    if monthly and result.series is not None:
        series = result.series
        span = wording.months(sorted(series.period.astype(str).unique()))
        last = series[series.period == series.period.max()]
        counts = last.point_type.map(VARIATION_WORDS).value_counts()
        if written:
            con.print(f"{ind.title}: monthly series of {series[key].nunique():,} {level}s, "
                      f"{span} ({len(series):,} rows), written to the file above; values "
                      f"{wording.monthly_unit(ind)}.")
        else:
            table = RichTable(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                              show_edge=False)
            for col in (level, "month", "events", "denominator", "value", "variation"):
                table.add_column(col, justify="left" if col in (level, "month", "variation")
                                 else "right")
            for r in series.itertuples(index=False):
                rec = r._asdict()
                table.add_row(str(rec[key]), str(rec["period"]), _number(rec["numerator"], 0),
                              _number(rec["denominator"], 0), _number(rec["value"], 2),
                              VARIATION_WORDS.get(str(rec["point_type"]), "-"))
            con.print(f"{ind.title}, by month, {span}", style="bold", highlight=False)
            con.print(table)
            con.print(f"Value: {wording.monthly_unit(ind)}; variation by Making Data Count "
                      f"(XmR) rules. Source: {wording.source(ind)}.", highlight=False)
        con.print(f"latest month {last.period.max()}: " + ", ".join(
            f"{n} {word}" for word, n in counts.items()))
        return
    col = judged_measure(ind, frame)
    saving = "saving_at_p10" if frame.get("saving_at_p10") is not None \
        and frame["saving_at_p10"].notna().any() else None
    dp = 2 if ind.kind == "cost_per_head" else 1
    funnel = ind.kind != "cost_per_head"  # money is not a count: no interval, no funnel
    key_text = [f"Value: {ind.unit}" if col == "value" else
                f"Value: crude rate per {ind.multiplier:,.0f} patients"]
    title = f"{ind.title}, by {level}, {wording.period(fy)}"
    table = RichTable(caption_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                      collapse_padding=True, show_edge=False)
    heads = [level.capitalize(), "Value"]
    if funnel:
        heads.append("95% CI")
        key_text.append("95% CI: confidence interval")
    if col != "value":
        heads.append(col.upper())
        key_text.append("ISR: indirectly standardised ratio, commissioner = 100"
                        if col == "isr" else f"DSR: directly standardised rate, {ind.unit}")
    if funnel:
        heads.append("Compared")
        key_text.append("Compared: with the commissioner, at 95% and 99.8% limits")
    heads.append("Decile")
    if saving:
        heads.append("Saving")
        key_text.append(f"Saving: {wording.saving_unit(ind)} at the peers' 10th percentile")
    for h in heads:
        table.add_column(h, justify="left" if h in (heads[0], "Compared") else "right",
                         overflow="fold", no_wrap=h != heads[0],
                         min_width=max([len(h), *(len(str(u)) for u in frame[key])])
                         if h == heads[0] else None)
    places = 0 if saving and wording.saving_unit(ind).startswith("£") else 1
    for r in frame.to_dict("records"):
        row = [str(r[key]), _number(r["value"], dp)]
        if funnel:
            row.append(f"{_number(r['lower_95'], dp)}-{_number(r['upper_95'], dp)}"
                       if r["lower_95"] == r["lower_95"] else "-")
        if col != "value":
            row.append(_number(r[col], 1))
        if funnel:
            row.append(str(r["compared"]))
        row.append(_number(r["decile"], 0))
        if saving:
            row.append(_number(r[saving], places))
        table.add_row(*row)
    n = frame.denominator.where(frame.denominator > 0)
    average = float(frame.numerator[n.notna()].sum()) / float(n.sum()) * ind.multiplier \
        if n.notna().any() else float("nan")
    total = ["All", _number(average, dp)] + [""] * (len(heads) - 2 - bool(saving))
    if col == "isr":
        total[heads.index("ISR")] = "100.0"
    if saving:
        total.append(_number(frame[saving].sum(), places))
    table.add_section()
    table.add_row(*total, style="bold")
    con.print(title, style="bold", highlight=False)
    con.print(table)
    con.print("; ".join(key_text) + f". Source: {wording.source(ind)}.", highlight=False)
    notes = []
    if "judged_on" in frame.columns and len(frame):
        notes.append(f"Judged on: {frame.judged_on.iloc[0]}; limits: {frame.limits.iloc[0]}.")
    nat = wording.national(ind, fy)
    if nat:
        notes.append(nat + ".")
    if "significance_unadjusted" in frame.columns:
        outside = int(frame.significance_unadjusted.astype(str).str.endswith("(0.001)").sum())
        od = wording.overdispersion(str(frame.limits.iloc[0]), outside,
                                    int(frame["value"].notna().sum()), level)
        if od:
            notes.append(od + ".")
    if saving:
        notes.append(f"Saving: what each {level} would save a year if it were at its peers' "
                     f"10th percentile of the judged measure ({wording.saving_unit(ind)}); "
                     "the 25th percentile is in the table --out writes.")
    for note in notes:
        con.print(note, highlight=False)


# ---------------------------------------------------------------------- budgets
budgets_app = typer.Typer(help="Indicative budgets: set, explain, agree; need indices.",
                          no_args_is_help=True)
app.add_typer(budgets_app, name="budgets")


@budgets_app.command("set")
def budgets_set(
    policy: Annotated[Path, typer.Option(help="Budget policy (TOML).")],
    warehouse: WarehouseOpt = Path("warehouse"),
    acting_as: AsOpt = None,
    reason: Annotated[str, typer.Option(help="Why this version (kept in history).")] =
    "budgets set from policy",
    nhse_file: Annotated[Path | None, typer.Option(
        help="NHS England weighted-population file for nhse_weighted_population lines "
             "(default: the latest one shipped with pbc).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Folder for the statements (default: statements/YEAR in the "
        "warehouse folder); each file is named with the year and version and never "
        "overwritten.")] = None,
    engine: EngineOpt = "duckdb",
) -> None:
    """Set indicative budgets by a policy; stores them, a new version, and statements."""
    from pbc.services import budgets

    with user_errors():
        run = budgets.set_indicative_budgets(
            Warehouse(warehouse), policy, _principal(warehouse, acting_as), reason=reason,
            nhse_file=nhse_file, statements=out, engine=engine)
        print_budget_summary(run)
        _say(f"statements ({len(run.files)} files): {run.statements}")


def print_budget_summary(run: Any, out: Console | None = None) -> None:
    """The budgets just set, by service line with a total row, in an 80-column table (to
    the penny); the envelope's parts below it in a sentence per line."""
    from pbc.budgets.explain import line_name, method_name
    from pbc.budgets.money import format_pounds

    con = out or console
    s = run.result.summary
    con.print(f"Indicative budgets {run.result.policy.financial_year} (version "
              f"{run.version}, draft until agreed)", style="bold", highlight=False)
    table = RichTable(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                      show_edge=False)
    for col in ("service line", "historic", "fair share", "budget"):
        table.add_column(col, justify="left" if col == "service line" else "right",
                         no_wrap=col != "service line")
    for r in s.itertuples():
        table.add_row(line_name(str(r.service_line)), *(format_pounds(int(str(v))) for v in (
            r.historic, r.fair_share, r.budget)))
    table.add_section()
    table.add_row("All", *(format_pounds(int(s[c].astype("int64").sum()))
                           for c in ("historic", "fair_share", "budget")), style="bold")
    con.print(table)
    total = {c: int(s[c].astype("int64").sum()) for c in
             ("envelope", "top_slices", "unattributed_held", "budget")}
    opted = total["envelope"] - total["top_slices"] - total["unattributed_held"] \
        - total["budget"]
    con.print(f"Envelope {format_pounds(total['envelope'])} = budgets "
              f"{format_pounds(total['budget'])} + top-slices "
              f"{format_pounds(total['top_slices'])} + held for activity with no known "
              f"practice {format_pounds(total['unattributed_held'])}"
              + (f" + opted out (held by the commissioner) {format_pounds(opted)}"
                 if opted else "") + ".", highlight=False)
    f = run.result.frame.drop_duplicates("service_line")
    for m, lines in f.groupby("method", sort=False)["service_line"]:
        con.print(f"Fair shares of {', '.join(line_name(x, in_sentence=True) for x in lines)}: "
                  f"{method_name(str(m))}.", highlight=False)


@budgets_app.command("explain")
def budgets_explain(
    practice: Annotated[str, typer.Argument(help="Practice code.")],
    warehouse: WarehouseOpt = Path("warehouse"),
) -> None:
    """How a practice's budget was built, step by step (a figure you can check by hand)."""
    from pbc.services import budgets

    with user_errors():
        console.print(budgets.explanation(Warehouse(warehouse), practice), highlight=False,
                      markup=False)


@budgets_app.command("agree")
def budgets_agree(
    year: Annotated[str, typer.Option(help="Financial year, e.g. 2026-27 (or 2026/27).")],
    version: Annotated[int, typer.Option(help="Version to agree (freeze).")],
    warehouse: WarehouseOpt = Path("warehouse"),
    acting_as: AsOpt = None,
) -> None:
    """Agree (freeze) a draft version of a year's budgets."""
    from pbc.services import budgets

    with user_errors():
        budgets.agree(Warehouse(warehouse), _principal(warehouse, acting_as), year, version)
        console.print(f"{year} version {version} agreed")


@budgets_app.command("needs")
def budgets_needs(
    group: Annotated[Path, typer.Option(help="CSV with a practice_code column.")],
    nhse_file: Annotated[Path | None, typer.Option(
        help="NHS England weighted-population file (default: the latest one shipped with "
             "pbc).")] = None,
    csv: Annotated[Path | None, typer.Option(help="Write the indices to this CSV.")] = None,
) -> None:
    """Relative need indices of a group of practices, as NHS England's allocation tool."""
    from pbc.services import budgets

    with user_errors():
        frame = budgets.needs_for_group(nhse_file, group, csv)
        from pbc.budgets.explain import COMPONENT_NAMES

        table = RichTable(title="Relative need (1 = average)")
        for col in ("allocation component", "group vs its ICB", "ICB vs England"):
            table.add_column(col, justify="left" if col.startswith("allocation") else "right")
        for r in frame.itertuples():
            name = COMPONENT_NAMES.get(str(r.component), str(r.component))
            table.add_row(name[0].upper() + name[1:], f"{r.group_index:.4f}",
                          f"{r.icb_index:.4f}")
        console.print(table)
        if csv:
            _say(f"wrote {csv}")


# ---------------------------------------------------------------------- monitoring
monitor_app = typer.Typer(
    help="Monthly position against budget; freeze a month; restatements of frozen months.")
app.add_typer(monitor_app, name="monitor")


def _money(v: Any) -> str:
    return "-" if v is None else f"£{v:,.2f}"


@monitor_app.callback(invoke_without_command=True)
def monitor(
    ctx: typer.Context,
    month: Annotated[str | None, typer.Option(help="Calendar month, e.g. 2025-09 (position "
                                                    "at its end).")] = None,
    warehouse: WarehouseOpt = Path("warehouse"),
    level: Annotated[str, typer.Option(help="practice, group or commissioner.")] = "practice",
    method: Annotated[str, typer.Option(
        help="Forecast method: run_rate, seasonal_run_rate (last year's monthly profile) or "
             "ratio_model (with an 80% interval).")] = "seasonal_run_rate",
    version: Annotated[int | None, typer.Option(
        help="Budget version (default: the agreed one, else the latest draft).")] = None,
    csv: Annotated[Path | None, typer.Option(help="Write the position as CSV (pounds).")] =
    None,
    xlsx: Annotated[Path | None, typer.Option(
        help="Write the monitoring pack (Excel, with its cumulative spend chart beside it): "
             "a .xlsx file for one holder (your own practice or group, or --level "
             "commissioner), else a folder with one pack per holder.")] = None,
    acting_as: AsOpt = None,
    engine: EngineOpt = "duckdb",
) -> None:
    """Spend to date against the phased budget, variance and forecast outturn (and the
    restatements of earlier frozen months). Subcommands: freeze, restatements."""
    if ctx.invoked_subcommand is not None:
        return
    from pbc.monitoring.forecast import METHODS
    from pbc.monitoring.position import LEVELS, TOTAL, in_pounds
    from pbc.services.monitoring import monthly_position

    with user_errors():
        if month is None:
            raise UserError("pbc monitor needs --month YYYY-MM (or a subcommand: freeze, "
                            "restatements)")
        if level not in LEVELS:
            raise UserError(f"--level must be one of {', '.join(LEVELS)}, not {level!r}")
        if method not in METHODS:
            raise UserError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
        if engine == "spark" and xlsx is not None:
            raise UserError("--xlsx builds the monitoring pack on DuckDB (its drivers and "
                            "charts are not Ibis expressions yet): leave out --engine spark "
                            "to write the pack, or --xlsx to compute the position on Spark")
        who = _principal(warehouse, acting_as)
        pos = monthly_position(Warehouse(warehouse), who, month,
                               level=level, method=method, version=version, engine=engine)
        frame = in_pounds(pos.frame)
        if csv is not None:
            frame.to_csv(csv, index=False)
        status = "agreed" if pos.budget_status == "agreed" else "DRAFT, not yet agreed"
        table = RichTable(title=f"Position at the end of {pos.period} (month {pos.month} of "
                          f"{pos.financial_year}); budget version {pos.budget_version} "
                          f"({status}); forecast: {method.replace('_', ' ')}")
        for col in (level, "budget to date", "spend to date", "variance", "forecast outturn",
                    "annual budget"):
            table.add_column(col, justify="left" if col == level else "right")
        totals = frame[frame.service_line == TOTAL]
        for r in totals.to_dict("records"):
            table.add_row(str(r["code"]), _money(r["budget_to_date"]),
                          _money(r["spend_to_date"]), _money(r["variance"]),
                          _money(r["forecast_outturn"]), _money(r["annual_budget"]))
        console.print(table)
        notes = sorted({n for n in pos.frame.forecast_note if n})
        for n in notes:
            console.print(f"[yellow]no forecast where[/] {n}")
        if csv is not None:
            console.print(f"wrote {csv} ({len(frame):,} rows: every holder and service line, "
                          "'all' is the total)")
        _print_restatements(Warehouse(warehouse), who, month, level=level, limit=10,
                            quiet_when_none=True)
        if xlsx is not None:
            from pbc.reports.monitoring_pack import write_packs
            from pbc.services.monitoring_pack import build_packs

            wh = Warehouse(warehouse)
            packs = build_packs(wh, who, month, level=level, method=method,
                                version=version, restatements=_pack_restatements(wh, who, month))
            written = write_packs(packs, xlsx, source=f"pbc warehouse {wh.root}")
            console.print(f"wrote {len(packs.packs):,} monitoring pack(s) "
                          f"({len(written):,} files) to {xlsx}")


def _pack_restatements(wh: Warehouse, who: Any, month: str) -> Any:
    """The restatements of the frozen months up to ``month``, as the pack's table (the
    frozen month as its period, e.g. 2025-08)."""
    from pbc.services.freeze import restatements

    frame = restatements(wh, who, month).frame
    return frame.assign(month=frame["period"].astype(str)) if len(frame) else None


def _print_restatements(wh: Warehouse, who: Any, month: str, *, level: str | None,
                        limit: int | None, quiet_when_none: bool) -> Any:
    """Show the restatements of the frozen months up to ``month`` (totals at ``level``,
    or every row when ``level`` is None); returns the report."""
    from pbc.monitoring.position import TOTAL, in_pounds
    from pbc.monitoring.restatement import MONEY_COLUMNS
    from pbc.services.freeze import restatements

    report = restatements(wh, who, month)
    if not report.frozen:
        if not quiet_when_none:
            console.print(f"no month of {report.financial_year} up to {month} is frozen "
                          "(pbc monitor freeze --month YYYY-MM)")
        return report
    frame = in_pounds(report.frame, MONEY_COLUMNS)
    frozen = ", ".join(f.period for f in report.frozen)
    if frame.empty:
        console.print(f"frozen months {frozen}: current data restate nothing")
        return report
    shown = frame if level is None else frame[(frame.level == level)
                                              & (frame.service_line == TOTAL)]
    table = RichTable(title=f"Restatements of frozen months ({frozen}) on warehouse version "
                      f"{report.warehouse_version}: spend to date as frozen and now")
    for col in ("month", "level", "code", "service line", "frozen", "now", "difference",
                "why"):
        table.add_column(col, justify="right" if col in ("frozen", "now", "difference")
                         else "left")
    rows = shown.to_dict("records")
    for r in rows[:limit] if limit else rows:
        table.add_row(str(r["period"]), str(r["level"]), str(r["code"]),
                      str(r["service_line"]), _money(r["old"]), _money(r["new"]),
                      _money(r["difference"]), str(r["why"]))
    console.print(table)
    if limit and len(rows) > limit:
        console.print(f"... {len(rows) - limit:,} more at this level")
    console.print(f"{len(frame):,} restated rows in all (every level and service line): pbc "
                  f"monitor restatements --month {month} --csv FILE")
    return report


@monitor_app.command("freeze")
def monitor_freeze(
    month: Annotated[str, typer.Option(help="Calendar month to freeze, e.g. 2025-09.")],
    warehouse: WarehouseOpt = Path("warehouse"),
    method: Annotated[str, typer.Option(
        help="Forecast method frozen with the position.")] = "seasonal_run_rate",
    acting_as: AsOpt = None,
) -> None:
    """Publish a month's position (every level, by service line, with its forecast and
    budget version) in the decision store: kept as shown, never changed. Commissioner
    only; a month is frozen once."""
    from pbc.monitoring.forecast import METHODS
    from pbc.services.freeze import freeze_month

    with user_errors():
        if method not in METHODS:
            raise UserError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
        result = freeze_month(Warehouse(warehouse), _principal(warehouse, acting_as), month,
                              method=method)
        f = result.freeze
        console.print(f"froze {f.period} (month {f.month} of {f.financial_year}) for "
                      f"{f.commissioner_code}: {result.rows:,} rows (practice, group and "
                      f"commissioner, by service line), budget version {f.budget_version}, "
                      f"forecast {f.forecast_method}, warehouse version "
                      f"{f.warehouse_version}, by {f.frozen_by} ({f.frozen_role})")


@monitor_app.command("restatements")
def monitor_restatements(
    month: Annotated[str, typer.Option(help="Calendar month: the frozen months of its year "
                                            "up to it are compared.")],
    warehouse: WarehouseOpt = Path("warehouse"),
    csv: Annotated[Path | None, typer.Option(help="Write every restated row as CSV "
                                                  "(pounds).")] = None,
    acting_as: AsOpt = None,
) -> None:
    """What current data change in each frozen month: old, new, difference and why (late
    rows, revised rows)."""
    from pbc.monitoring.position import in_pounds
    from pbc.monitoring.restatement import COLUMNS, MONEY_COLUMNS

    with user_errors():
        report = _print_restatements(Warehouse(warehouse), _principal(warehouse, acting_as),
                                     month, level=None, limit=40, quiet_when_none=False)
        if csv is not None:
            in_pounds(report.frame, MONEY_COLUMNS)[COLUMNS].to_csv(csv, index=False)
            console.print(f"wrote {csv} ({len(report.frame):,} rows)")


@app.command("freed-resources")
def freed_resources_cmd(
    year: Annotated[str, typer.Option(help="Financial year, e.g. 2025-26.")],
    warehouse: WarehouseOpt = Path("warehouse"),
    plans: Annotated[Path | None, typer.Option(
        help="Approved reinvestment plans: CSV code, financial_year, plan, amount (pounds), "
             "approved.")] = None,
    policy: Annotated[Path | None, typer.Option(
        help="Budget policy whose [reinvestment] section sets the share (default 70%, one "
             "year to draw it, per practice).")] = None,
    method: Annotated[str, typer.Option(
        help="Forecast method for a year still in progress.")] = "seasonal_run_rate",
    csv: Annotated[Path | None, typer.Option(help="Write the table as CSV (pounds).")] = None,
    acting_as: AsOpt = None,
) -> None:
    """Freed resources (budget - outturn), the reinvestable share and the ledger of plans."""
    from pbc.budgets.money import format_pounds
    from pbc.budgets.policy import read_policy
    from pbc.monitoring.forecast import METHODS
    from pbc.monitoring.freed import ReinvestmentRule
    from pbc.monitoring.position import in_pounds
    from pbc.services.monitoring import FREED_COLUMNS, freed_resources_report, read_plans

    with user_errors():
        if method not in METHODS:
            raise UserError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
        level = "practice"
        rule, source = ReinvestmentRule(), "default: 70%, drawn within one year, per practice"
        if policy is not None:
            terms = read_policy(policy).reinvestment
            rule = ReinvestmentRule(terms.share, terms.carry_years, terms.guidance)
            level, source = terms.level, f"{policy} [reinvestment]"
        report = freed_resources_report(
            Warehouse(warehouse), _principal(warehouse, acting_as), year,
            plans=read_plans(plans) if plans else None, rule=rule, rule_source=source,
            level=level, method=method)  # type: ignore[arg-type]
        money = ["budget", "outturn", "freed", "reinvestable", "opening", "drawn", "lapsed",
                 "closing"]
        if csv is not None:
            in_pounds(report.frame, money)[FREED_COLUMNS].to_csv(csv, index=False)
        table = RichTable(title=f"Freed resources {report.financial_year}: reinvestable "
                          f"share {report.rule.share:.0%} ({report.rule_source})")
        for col in ("code", "budget", "outturn", "freed", "reinvestable", "drawn", "closing"):
            table.add_column(col, justify="left" if col == "code" else "right")
        for rec in report.frame.to_dict("records"):
            table.add_row(str(rec["code"]), *(format_pounds(int(rec[c])) for c in (
                "budget", "outturn", "freed", "reinvestable", "drawn", "closing")))
        console.print(table)
        bases = sorted(set(report.frame.outturn_basis))
        console.print("outturn: " + "; ".join(bases))
        if csv is not None:
            console.print(f"wrote {csv}")


@app.command()
def settle(
    policy: Annotated[Path, typer.Option(
        help="Budget policy whose [risk_sharing] section says who bears overspends.")],
    year: Annotated[str | None, typer.Option(
        help="Financial year, e.g. 2025-26 (default: the policy's).")] = None,
    warehouse: WarehouseOpt = Path("warehouse"),
    method: Annotated[str, typer.Option(
        help="Forecast method for a year still in progress.")] = "seasonal_run_rate",
    csv: Annotated[Path | None, typer.Option(help="Write the table as CSV (pounds).")] = None,
    acting_as: AsOpt = None,
) -> None:
    """Year-end settlement: overspends carried forward or written off, group risk pools and
    real budgets, as the policy says (a forecast settlement while the year is open)."""
    from pbc.budgets.money import format_pounds
    from pbc.monitoring.forecast import METHODS
    from pbc.monitoring.position import in_pounds
    from pbc.services.settlement import COLUMNS
    from pbc.services.settlement import settle as settle_year

    with user_errors():
        if method not in METHODS:
            raise UserError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
        result = settle_year(Warehouse(warehouse), _principal(warehouse, acting_as), policy,
                             financial_year=year, method=method)
        money = ["budget", "outturn", "variance", "holder", "pool", "commissioner",
                 "carried_forward"]
        if csv is not None:
            in_pounds(result.frame, money)[list(COLUMNS)].to_csv(csv, index=False)
        kind = "forecast settlement" if result.forecast else "settlement"
        table = RichTable(title=f"Year-end {kind} {result.financial_year}", box=box.SIMPLE_HEAD)
        for col in ("holder", "arrangement", "variance", "holder bears", "pool",
                    "commissioner"):
            table.add_column(col, justify="left" if col in ("holder", "arrangement")
                             else "right", no_wrap=True)
        f = result.frame
        for rec in f.to_dict("records"):
            table.add_row(str(rec["code"]), str(rec["arrangement"]),
                          *(format_pounds(int(rec[c])) for c in (
                              "variance", "holder", "pool", "commissioner")))
        table.add_section()
        table.add_row("All", "", *(format_pounds(int(f[c].sum()))
                                   for c in ("variance", "holder", "pool", "commissioner")),
                      style="bold")
        console.print(table)
        console.print("Positive: bears an overspend; negative: keeps a saving. Outturn: "
                      + "; ".join(sorted(set(f.outturn_basis))) + ".", highlight=False)
        if csv is not None:
            _say(f"wrote {csv}")


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
    from pbc.services.demo import DemoNotClean, nothing_ignored, run_demo

    no_serve = no_serve or os.environ.get("PBC_DEMO_NO_SERVE", "") not in ("", "0")
    try:
        with user_errors(), nothing_ignored():
            run_demo(out, practices=practices, seed=seed, console=console,
                     progress=progress_bar)
    except DemoNotClean as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    except Warning as w:  # nothing_ignored() makes every warning an error
        err.print(f"[red]error:[/] the demo stopped on a warning: {type(w).__name__}: {w}")
        raise typer.Exit(1) from None
    if not no_serve:
        from pbc.services.demo import serve_demo

        with user_errors():
            serve_demo(out, console)


# ---------------------------------------------------------------------- users, cases, audit
DecisionAsOpt = Annotated[
    str | None,
    typer.Option("--as", help="Act as ROLE:ORGANISATION[:USER], e.g. practice:A81001, "
                 "commissioner_approver:QHM:j.smith (with :USER the role is checked "
                 "against the decision store's users; default: the warehouse's "
                 "commissioner). " + SELF_DECLARED_NOTE),
]
users_app = typer.Typer(help="People and their roles in the decision store.",
                        no_args_is_help=True)
app.add_typer(users_app, name="users")
case_app = typer.Typer(help="Business cases: propose, submit, consult, decide, implement "
                       "(docs/decisions.md).", no_args_is_help=True)
app.add_typer(case_app, name="case")
audit_app = typer.Typer(help="The tamper-evident audit log of the decision store.",
                        no_args_is_help=True)
app.add_typer(audit_app, name="audit")
#: exit code of an action that lost a race (someone else changed the case first)
CONFLICT_EXIT = 3


def _store(warehouse: Path) -> Any:
    from pbc.decisions import DecisionStore

    return DecisionStore.beside(warehouse)


def _decision_principal(warehouse: Path, acting_as: str | None) -> Any:
    """``--as`` (parsed by the one parser), else the warehouse's commissioner."""
    if acting_as:
        from pbc.services.principal import parse_principal

        return parse_principal(acting_as, user=_user())
    if not (warehouse / "current").exists() or not Warehouse(warehouse).has_table("practices"):
        raise UserError(f"{warehouse}: no warehouse with practices to take the commissioner "
                        "from: say who you are with --as ROLE:ORGANISATION[:USER]")
    return _principal(warehouse, None)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="The user's name (unique).")],
    role: Annotated[str, typer.Option(help="commissioner (finance), commissioner_approver, "
                                           "commissioner_data, group, practice, "
                                           "local_authority or administrator.")],
    org: Annotated[str, typer.Option(help="Organisation code the role is for.")],
    warehouse: WarehouseOpt = Path("warehouse"),
    acting_as: DecisionAsOpt = None,
) -> None:
    """Add a user with a role for an organisation (or another role to a user).
    Administrators only; the store's first administrator may be added by anyone."""
    from pbc.services.cases import add_user

    with user_errors(), _store(warehouse) as store:
        new = add_user(store, _decision_principal(warehouse, acting_as), name, role, org)
        console.print(f"{'added user' if new else 'added a role to'} {name}: {role}:{org}")


@users_app.command("list")
def users_list(warehouse: WarehouseOpt = Path("warehouse"),
               acting_as: DecisionAsOpt = None) -> None:
    """Every user and role (administrators only)."""
    from pbc.services.cases import users

    with user_errors(), _store(warehouse) as store:
        table = RichTable("user", "role", "organisation")
        for row in users(store, _decision_principal(warehouse, acting_as)):
            table.add_row(*row)
        console.print(table)


def _print_case(view: Any) -> None:
    from pbc.budgets.money import format_pounds

    sv = view.savings
    from rich.markup import escape

    console.print(f"[bold]case {view.id}[/] (version {view.version}): {escape(view.title)}",
                  highlight=False)
    console.print(f"  status {view.status}; proposed by {view.proposer_kind} "
                  f"{view.proposer_code} to {view.commissioner_code}; category "
                  f"{view.category}", highlight=False)
    if view.touches_social_care:
        said = (f"responded ({view.consulted_by}): {view.consultation_response}"
                if view.consultation_response else "no response yet")
        console.print(f"  social care: local authority {view.local_authority_code}, {said}",
                      highlight=False)
    if view.provider_is_proposer:
        console.print("  make or buy: the proposer would provide the service itself "
                      "(conflict-of-interest declaration required before approval)")
    if view.decision_note:
        console.print(f"  decision note ({view.decided_by}): {view.decision_note}",
                      highlight=False)
    iv = sv["interval"]
    console.print(f"  projected net saving {format_pounds(sv['net_pence'])} "
                  f"({iv['level']:.0%} interval {format_pounds(iv['lower_pence'])} to "
                  f"{format_pounds(iv['upper_pence'])}): gross "
                  f"{format_pounds(sv['gross_pence'])} less investment "
                  f"{format_pounds(sv['investment_pence'])}", highlight=False)
    for y in sv["years"]:
        console.print(f"    {y['financial_year']}: gross {format_pounds(y['gross_pence'])}, "
                      f"investment {format_pounds(y['investment_pence'])}, net "
                      f"{format_pounds(y['net_pence'])}", highlight=False)
    console.print("  assumptions:")
    for a in sv["assumptions"]:
        console.print(f"    - {a}", highlight=False)
    if view.history:
        console.print("  history:")
        for h in view.history:
            console.print(f"    {h['at']} {h['action']} by {h['actor']} ({h['role']}) "
                          f"[audit row {h['audit_id']}]", highlight=False)


@case_app.command("new")
def case_new(
    file: Annotated[Path, typer.Option("--file", help="The case file (TOML; see "
                                                      "examples/business_case.toml).")],
    warehouse: WarehouseOpt = Path("warehouse"),
    acting_as: DecisionAsOpt = None,
) -> None:
    """Propose a business case (a draft): pbc computes its savings from the proposer's
    priced baseline. Prints the new case's id."""
    from pbc.decisions.cases import read_case_file
    from pbc.services.cases import create_case, read_baseline

    with user_errors(), _store(warehouse) as store:
        who = _decision_principal(warehouse, acting_as)
        case, text = read_case_file(file)
        baseline, commissioner = read_baseline(Warehouse(warehouse), case)
        view = create_case(store, who, case, text, baseline, commissioner)
        console.print(f"case {view.id}")
        _print_case(view)


def _act(warehouse: Path, acting_as: str | None, case_id: int, action: str,
         **kwargs: Any) -> None:
    from pbc.decisions.cases import ConflictError
    from pbc.services.cases import act

    with user_errors(), _store(warehouse) as store:
        try:
            view = act(store, _decision_principal(warehouse, acting_as), case_id, action,
                       **kwargs)
        except ConflictError as e:  # lost a race: its own exit code
            err.print(f"[bold red]error:[/] {e}")
            raise typer.Exit(CONFLICT_EXIT) from None
        console.print(f"case {view.id} is now {view.status} (version {view.version})")


CaseId = Annotated[int, typer.Argument(help="Case id (pbc case new prints it).")]
ExpectOpt = Annotated[int | None, typer.Option(
    "--expect-version", help="The version you read (pbc case show): if the case has changed "
    "since, nothing is done and the command says who changed it (exit code 3).")]


@case_app.command("submit")
def case_submit(case_id: CaseId, warehouse: WarehouseOpt = Path("warehouse"),
                file: Annotated[Path | None, typer.Option(
                    "--file", help="A revised case file (a draft or returned case).")] = None,
                expect_version: ExpectOpt = None, acting_as: DecisionAsOpt = None) -> None:
    """Submit a draft (or returned) case; one that touches social care goes to its local
    authority for consultation first."""
    revised = None
    if file is not None:
        from pbc.decisions.cases import read_case_file
        from pbc.services.cases import read_baseline

        with user_errors():
            case, text = read_case_file(file)
            revised = (case, text, read_baseline(Warehouse(warehouse), case)[0])
    _act(warehouse, acting_as, case_id, "submit", revised=revised,
         expected_version=expect_version)


@case_app.command("consult")
def case_consult(case_id: CaseId,
                 response: Annotated[str, typer.Option(help="The council's response.")],
                 warehouse: WarehouseOpt = Path("warehouse"),
                 expect_version: ExpectOpt = None, acting_as: DecisionAsOpt = None) -> None:
    """Record the local authority's response to a case sent to it."""
    _act(warehouse, acting_as, case_id, "consult", response=response,
         expected_version=expect_version)


NoteOpt = Annotated[str | None, typer.Option(help="Why (needed to reject or return).")]


@case_app.command("approve")
def case_approve(case_id: CaseId, warehouse: WarehouseOpt = Path("warehouse"),
                 note: NoteOpt = None, expect_version: ExpectOpt = None,
                 acting_as: DecisionAsOpt = None) -> None:
    """Approve a submitted case (the commissioner's approver). A case funded from freed
    resources draws its investment on the proposer's reinvestment ledger, and is refused
    when that is more than is reinvestable."""
    _act(warehouse, acting_as, case_id, "approve", note=note, expected_version=expect_version,
         freed_from=Warehouse(warehouse))


@case_app.command("reject")
def case_reject(case_id: CaseId, warehouse: WarehouseOpt = Path("warehouse"),
                note: NoteOpt = None, expect_version: ExpectOpt = None,
                acting_as: DecisionAsOpt = None) -> None:
    """Reject a case (the commissioner's approver), saying why."""
    _act(warehouse, acting_as, case_id, "reject", note=note, expected_version=expect_version)


@case_app.command("return")
def case_return(case_id: CaseId, warehouse: WarehouseOpt = Path("warehouse"),
                note: NoteOpt = None, expect_version: ExpectOpt = None,
                acting_as: DecisionAsOpt = None) -> None:
    """Return a case to its proposer for changes, saying what to change."""
    _act(warehouse, acting_as, case_id, "return", note=note, expected_version=expect_version)


@case_app.command("implement")
def case_implement(case_id: CaseId, warehouse: WarehouseOpt = Path("warehouse"),
                   expect_version: ExpectOpt = None, acting_as: DecisionAsOpt = None) -> None:
    """Record an approved case as implemented."""
    _act(warehouse, acting_as, case_id, "implement", expected_version=expect_version)


@case_app.command("show")
def case_show(case_id: CaseId, warehouse: WarehouseOpt = Path("warehouse"),
              as_json: Annotated[bool, typer.Option("--json", help="As JSON.")] = False,
              acting_as: DecisionAsOpt = None) -> None:
    """A case, its projected savings with every assumption, and its history; once
    evaluated, its latest evaluation (for those who may see it)."""
    import json

    from pbc.services.cases import show
    from pbc.services.evaluation import describe, show_evaluation
    from pbc.services.principal import AccessDenied

    with user_errors(), _store(warehouse) as store:
        who = _decision_principal(warehouse, acting_as)
        view = show(store, who, case_id)
        evaluation, hidden = None, ""
        if view.status == "evaluated":
            try:
                evaluation = show_evaluation(store, who, case_id)
            except AccessDenied as e:  # a council sees the case, not its evaluation
                hidden = str(e)
        if as_json:
            shown = view.as_dict()
            if view.status == "evaluated":
                shown["evaluation"] = evaluation.as_dict() if evaluation else hidden
            print(json.dumps(shown, indent=2, default=str))
            return
        _print_case(view)
        if evaluation is not None:
            for line in describe(evaluation):
                _say(line)
        elif hidden:
            _say(f"evaluation not shown: {hidden}")


@case_app.command("list")
def case_list(warehouse: WarehouseOpt = Path("warehouse"),
              acting_as: DecisionAsOpt = None) -> None:
    """The cases you may see (a council only those sent to it)."""
    from pbc.budgets.money import format_pounds
    from pbc.services.cases import visible_cases

    with user_errors(), _store(warehouse) as store:
        table = RichTable("id", "status", "proposer", "title", "net saving")
        for v in visible_cases(store, _decision_principal(warehouse, acting_as)):
            table.add_row(str(v.id), v.status, v.proposer_code, v.title,
                          format_pounds(v.savings["net_pence"]))
        console.print(table)


@audit_app.command("verify")
def audit_verify(warehouse: WarehouseOpt = Path("warehouse"),
                 acting_as: DecisionAsOpt = None) -> None:
    """Check the hash chain of the audit log; names the first bad row and exits 1."""
    from pbc.services.cases import verify_audit

    with user_errors(), _store(warehouse) as store:
        result = verify_audit(store, _decision_principal(warehouse, acting_as))
    if not result.ok:
        err.print(f"[bold red]audit log NOT intact:[/] {result.problem}")
        raise typer.Exit(1)
    console.print(f"audit log intact: {result.rows:,} rows; head: row {result.last_id}, "
                  f"hash {result.last_hash} (keep it where the database's administrators "
                  "cannot write, and compare)", highlight=False)


@audit_app.command("log")
def audit_log_cmd(warehouse: WarehouseOpt = Path("warehouse"),
                  entity: Annotated[str | None, typer.Option(
                      help="Only this entity, e.g. business_case, budget_version, user.")] = None,
                  entity_id: Annotated[str | None, typer.Option(
                      "--id", help="Only this entity id, e.g. a case id.")] = None,
                  acting_as: DecisionAsOpt = None) -> None:
    """The audit log: who, role, when, action, entity, before and after."""
    from pbc.services.cases import audit_log

    with user_errors(), _store(warehouse) as store:
        events = audit_log(store, _decision_principal(warehouse, acting_as), entity=entity,
                           entity_id=entity_id)
        for e in events:  # one line each, so it can be searched and diffed
            change = (f" before {e.before_state} after {e.after_state}"
                      if e.before_state or e.after_state else "")
            console.print(f"{e.id} {e.at:%Y-%m-%d %H:%M:%S} {e.actor} ({e.actor_role}) "
                          f"{e.action} {e.entity} {e.entity_id}{change} {e.detail}",
                          highlight=False, markup=False, soft_wrap=True)
        if not events:
            console.print("no audit rows" + (f" for {entity}" if entity else "")
                          + (f" {entity_id}" if entity_id else ""))


# ------------------------------------------------------- opt-outs and group agreements
# (issue 15: pbc optout, pbc group ...)
optouts_app = typer.Typer(help="Opt-outs: list, confirm and withdraw them (record one with "
                          "pbc optout; docs/decisions.md).", no_args_is_help=True)
app.add_typer(optouts_app, name="optouts")
group_app = typer.Typer(help="Group agreements and membership: agree, join, leave, show, and "
                        "load the memberships into the warehouse's practice_groups "
                        "(docs/decisions.md).", no_args_is_help=True)
app.add_typer(group_app, name="group")


def _print_opt_out(view: Any) -> None:
    console.print(f"opt-out {view.id} ({view.status}): {view.holder_kind} {view.holder_code}, "
                  f"{view.service_line}, {view.financial_year}", highlight=False, markup=False)
    console.print(f"  {view.description}", highlight=False, markup=False)
    if view.withdrawal_reason:
        console.print(f"  withdrawn by {view.withdrawn_by}: {view.withdrawal_reason}",
                      highlight=False, markup=False)


@app.command("optout")
def optout(
    code: Annotated[str, typer.Argument(help="The practice or group that opts out.")],
    service_line: Annotated[str, typer.Option("--service-line", help="The service line "
                                              "handed back to the commissioner.")],
    year: Annotated[str, typer.Option("--year", help="Financial year, e.g. 2026-27.")],
    reason: Annotated[str, typer.Option("--reason", help="Why the line is handed back.")],
    warehouse: WarehouseOpt = Path("warehouse"),
    acting_as: DecisionAsOpt = None,
) -> None:
    """Hand a service line back to the commissioner for a year (a practice for itself, a
    group's lead for its group); the commissioner's approver confirms it (pbc optouts
    confirm), and the next pbc budgets set for the year applies it."""
    from pbc.services.optouts import propose

    with user_errors(), _store(warehouse) as store:
        view = propose(store, Warehouse(warehouse), _decision_principal(warehouse, acting_as),
                       code, service_line=service_line, financial_year=year, reason=reason)
        _print_opt_out(view)
        console.print(f"next: pbc optouts confirm {view.id} --as commissioner_approver:"
                      f"{view.commissioner_code}[:USER]", highlight=False, markup=False)


@optouts_app.command("list")
def optouts_list(
    year: Annotated[str | None, typer.Option("--year", help="Only this financial year.")]
    = None,
    warehouse: WarehouseOpt = Path("warehouse"),
    acting_as: DecisionAsOpt = None,
) -> None:
    """The opt-outs you may see (a practice or group its own, the commissioner all)."""
    from pbc.services.optouts import list_opt_outs

    with user_errors(), _store(warehouse) as store:
        views = list_opt_outs(store, _decision_principal(warehouse, acting_as), year)
        for v in views:
            _print_opt_out(v)
        if not views:
            console.print("no opt-outs" + (f" for {year}" if year else ""))


@optouts_app.command("show")
def optouts_show(
    opt_out_id: Annotated[int, typer.Argument(help="The opt-out's id.")],
    warehouse: WarehouseOpt = Path("warehouse"),
    acting_as: DecisionAsOpt = None,
) -> None:
    """One opt-out (its holder, or the commissioner)."""
    from pbc.services.optouts import show

    with user_errors(), _store(warehouse) as store:
        _print_opt_out(show(store, _decision_principal(warehouse, acting_as), opt_out_id))


@optouts_app.command("confirm")
def optouts_confirm(
    opt_out_id: Annotated[int, typer.Argument(help="The opt-out's id.")],
    warehouse: WarehouseOpt = Path("warehouse"),
    acting_as: DecisionAsOpt = None,
) -> None:
    """Confirm a proposed opt-out (the commissioner's approver)."""
    from pbc.services.optouts import confirm

    with user_errors(), _store(warehouse) as store:
        _print_opt_out(confirm(store, _decision_principal(warehouse, acting_as), opt_out_id))


@optouts_app.command("withdraw")
def optouts_withdraw(
    opt_out_id: Annotated[int, typer.Argument(help="The opt-out's id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why it is withdrawn.")],
    warehouse: WarehouseOpt = Path("warehouse"),
    acting_as: DecisionAsOpt = None,
) -> None:
    """Withdraw an opt-out while the year's budget is not agreed (the holder, or the
    commissioner's approver)."""
    from pbc.services.optouts import withdraw

    with user_errors(), _store(warehouse) as store:
        _print_opt_out(withdraw(store, _decision_principal(warehouse, acting_as), opt_out_id,
                                reason))


@group_app.command("agree")
def group_agree(
    group: Annotated[str, typer.Argument(help="The group's code.")],
    start: Annotated[str, typer.Option("--start", help="First day of the agreement.")],
    review: Annotated[str, typer.Option("--review", help="Day it is to be reviewed.")],
    signatory: Annotated[list[str], typer.Option(
        "--signatory", help="NAME;ROLE;YYYY-MM-DD, once for each signatory.")],
    terms: Annotated[str | None, typer.Option("--terms", help="The terms, as text.")] = None,
    terms_file: Annotated[Path | None, typer.Option("--terms-file", help="The terms, from a "
                                                    "text file.")] = None,
    warehouse: WarehouseOpt = Path("warehouse"),
    acting_as: DecisionAsOpt = None,
) -> None:
    """Record the agreement between the commissioner and a group (the commissioner's
    approver)."""
    from pbc.services.groups import Signatory, agree

    with user_errors(), _store(warehouse) as store:
        if (terms is None) == (terms_file is None):
            raise UserError("give the terms once: --terms TEXT or --terms-file FILE")
        text = terms if terms is not None else Path(str(terms_file)).read_text(encoding="utf-8")
        a = agree(store, Warehouse(warehouse), _decision_principal(warehouse, acting_as),
                  group, terms=text, starts_on=start, review_on=review,
                  signatories=[Signatory.parse(x) for x in signatory])
        console.print(f"agreement {a.id}: group {a.group_code} and commissioner "
                      f"{a.commissioner_code}, from {a.starts_on}, review {a.review_on}, "
                      f"{len(a.signatories)} signator{'y' if len(a.signatories) == 1 else 'ies'}",
                      highlight=False, markup=False)


@group_app.command("join")
def group_join(
    practice: Annotated[str, typer.Argument(help="The practice's code.")],
    group: Annotated[str, typer.Option("--group", help="The group it joins.")],
    valid_from: Annotated[str, typer.Option("--from", help="First day of membership.")],
    reason: Annotated[str, typer.Option("--reason", help="Why.")],
    warehouse: WarehouseOpt = Path("warehouse"),
    acting_as: DecisionAsOpt = None,
) -> None:
    """Record a practice joining a group from a date (the group's lead or the
    commissioner); pbc group load puts it into the warehouse."""
    from pbc.services.groups import join

    with user_errors(), _store(warehouse) as store:
        w = join(store, Warehouse(warehouse), _decision_principal(warehouse, acting_as),
                 practice, group, valid_from, reason)
        console.print(f"recorded: {w.describe()}; next: pbc group load, then pbc price",
                      highlight=False, markup=False)


@group_app.command("leave")
def group_leave(
    practice: Annotated[str, typer.Argument(help="The practice's code.")],
    group: Annotated[str, typer.Option("--group", help="The group it leaves.")],
    last_day: Annotated[str, typer.Option("--last-day", help="Last day of membership.")],
    reason: Annotated[str, typer.Option("--reason", help="Why.")],
    warehouse: WarehouseOpt = Path("warehouse"),
    acting_as: DecisionAsOpt = None,
) -> None:
    """Record a practice leaving a group after a date (the group's lead or the
    commissioner); pbc group load puts it into the warehouse."""
    from pbc.services.groups import leave

    with user_errors(), _store(warehouse) as store:
        w = leave(store, Warehouse(warehouse), _decision_principal(warehouse, acting_as),
                  practice, group, last_day, reason)
        console.print(f"recorded: {w.describe()}; next: pbc group load, then pbc price",
                      highlight=False, markup=False)


@group_app.command("show")
def group_show(
    group: Annotated[str, typer.Argument(help="The group's code.")],
    warehouse: WarehouseOpt = Path("warehouse"),
    acting_as: DecisionAsOpt = None,
) -> None:
    """A group's agreements and memberships."""
    from pbc.services.groups import show

    with user_errors(), _store(warehouse) as store:
        v = show(store, Warehouse(warehouse), _decision_principal(warehouse, acting_as), group)
        console.print(f"group {v.group_code} (commissioner {v.commissioner_code})",
                      style="bold", highlight=False, markup=False)
        for a in v.agreements:
            console.print(f"  agreement {a.id}: from {a.starts_on}, review {a.review_on}, "
                          f"recorded by {a.recorded_by}", highlight=False, markup=False)
            console.print(f"    terms: {a.terms}", highlight=False, markup=False)
            for x in a.signatories:
                console.print(f"    signed by {x.name} ({x.role}) on {x.signed_on}",
                              highlight=False, markup=False)
        if not v.agreements:
            console.print("  no agreement recorded")
        console.print(f"  default members (practices.group_code): "
                      f"{', '.join(v.default_members) or 'none'}", highlight=False,
                      markup=False)
        for w in v.windows:
            where = "recorded in pbc" if w.origin == "decision" else "delivered"
            console.print(f"  membership: {w.describe()} ({where})", highlight=False,
                          markup=False)


@group_app.command("load")
def group_load(
    warehouse: WarehouseOpt = Path("warehouse"),
    acting_as: DecisionAsOpt = None,
) -> None:
    """Load the memberships into the warehouse's practice_groups (delivered rows with the
    recorded memberships over them) through the normal loader, as a new version; then run
    pbc price so attribution follows."""
    from pbc.services.groups import load_memberships

    with user_errors(), _store(warehouse) as store:
        r = load_memberships(store, Warehouse(warehouse),
                             _decision_principal(warehouse, acting_as))
        state = f"warehouse version {r.version}" if r.changed else "unchanged (already loaded)"
        console.print(f"practice_groups: {r.rows} rows, {r.recorded} recorded in pbc; "
                      f"{state}; next: pbc price so attribution follows", highlight=False,
                      markup=False)


# ------------------------------------------------------------- contracts and invoices
# (issue 15: pbc contract ..., pbc invoice check)
contract_app = typer.Typer(help="Provider contracts: an activity and money plan by service "
                           "line and month, tracked against actual (docs/decisions.md).",
                           no_args_is_help=True)
app.add_typer(contract_app, name="contract")
invoice_app = typer.Typer(help="Check a provider's invoice against pbc's pricing "
                          "(docs/decisions.md).", no_args_is_help=True)
app.add_typer(invoice_app, name="invoice")
YearOpt = Annotated[str, typer.Option("--year", help="Financial year, e.g. 2025-26.")]


@contract_app.command("add")
def contract_add(
    file: Annotated[Path, typer.Argument(help="The contract (TOML; examples/"
                                              "provider_contract.toml).")],
    warehouse: WarehouseOpt = Path("warehouse"),
    acting_as: DecisionAsOpt = None,
) -> None:
    """Record a provider contract (commissioner finance only; once per commissioner,
    provider and year)."""
    from pbc.budgets.money import format_pounds
    from pbc.services.invoices import add_contract

    with user_errors(), _store(warehouse) as store:
        view = add_contract(store, Warehouse(warehouse),
                            _decision_principal(warehouse, acting_as), file)
    c = view.contract
    console.print(f"contract {view.id}: {c.commissioner} with {c.provider} for "
                  f"{c.financial_year}, {len(c.plan)} service lines, plan "
                  f"{format_pounds(view.plan_pence)}", highlight=False)


@contract_app.command("show")
def contract_show(
    provider: Annotated[str, typer.Argument(help="Provider code.")],
    year: YearOpt,
    warehouse: WarehouseOpt = Path("warehouse"),
    acting_as: DecisionAsOpt = None,
) -> None:
    """A contract's plan by service line and month (your organisation's contract)."""
    from pbc.budgets.money import format_pounds
    from pbc.decisions.provider_contracts import MONTHS
    from pbc.services.invoices import show_contract

    with user_errors(), _store(warehouse) as store:
        view = show_contract(store, _decision_principal(warehouse, acting_as), provider, year,
                             Warehouse(warehouse))
    c = view.contract
    plans = c.month_plans()
    table = RichTable(title=f"Contract {view.id}: {c.commissioner} with {c.provider}, "
                            f"{c.financial_year}" + (f": {c.title}" if c.title else ""))
    for name, just in (("service line", "left"), ("activity", "right"), ("money", "right")):
        table.add_column(name, justify=just)  # type: ignore[arg-type]
    for sl, p in plans.items():
        table.add_row(sl, f"{sum(p.activity):,}", format_pounds(sum(p.pence)))
    table.add_row("total", f"{sum(sum(p.activity) for p in plans.values()):,}",
                  format_pounds(view.plan_pence))
    console.print(table)
    months = RichTable("month", "activity", "money", title="By month (all service lines)")
    for m, name in enumerate(MONTHS):
        months.add_row(name, f"{sum(p.activity[m] for p in plans.values()):,}",
                       format_pounds(sum(p.pence[m] for p in plans.values())))
    console.print(months)
    console.print(f"recorded by {view.created_by} on {view.created_at:%Y-%m-%d %H:%M}; "
                  "each line's months are in the contract file", highlight=False)


@contract_app.command("position")
def contract_position_cmd(
    provider: Annotated[str, typer.Argument(help="Provider code.")],
    year: YearOpt,
    month: Annotated[int, typer.Option(help="Month of the year: 1 = April ... 12 = March.")],
    warehouse: WarehouseOpt = Path("warehouse"),
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write every service line "
                                                 "and month to this CSV.")] = None,
    xlsx_out: Annotated[Path | None, typer.Option("--xlsx", help="Write a workbook.")] = None,
    acting_as: DecisionAsOpt = None,
) -> None:
    """Plan against actual (tariff value of priced activity) by service line, April to
    MONTH: the month, the variance and the year to date."""
    from pbc.budgets.money import format_pounds
    from pbc.decisions.provider_contracts import MONTHS
    from pbc.services.invoices import position, write_position

    with user_errors(), _store(warehouse) as store:
        if not 1 <= month <= 12:
            raise UserError(f"--month {month}: expected 1 (April) to 12 (March)")
        view, pos = position(store, Warehouse(warehouse),
                             _decision_principal(warehouse, acting_as), provider, year, month)
        written = write_position(view, pos, csv_out=csv_out, xlsx_out=xlsx_out)
    from pbc.budgets.explain import SERVICE_LINE_NAMES

    c = view.contract
    name = MONTHS[month - 1]

    def label(service_line: str) -> str:
        return ("Total" if service_line == "total"
                else SERVICE_LINE_NAMES.get(service_line, service_line))

    tables = (("Money", ("variance in " + name, "plan to date", "actual to date",
                         "variance to date"),
               lambda r: [format_pounds(x) for x in (r.variance_pence, r.ytd_plan_pence,
                                                     r.ytd_actual_pence,
                                                     r.ytd_variance_pence)]),
              ("Activity", (f"plan in {name}", f"actual in {name}", "plan to date",
                            "actual to date", "variance to date"),
               lambda r: [f"{x:,}" for x in (r.plan_activity, r.actual_activity,
                                             r.ytd_plan_activity, r.ytd_actual_activity,
                                             r.ytd_variance_activity)]))
    for what, heads, cells in tables:
        table = RichTable(title=f"{what}: {c.commissioner} with {c.provider}, "
                                f"{c.financial_year}, {name} and April to {name}",
                          box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        table.add_column("service line", min_width=12)
        for head in heads:
            table.add_column(head, justify="right")
        for r in pos.year_to_date:
            table.add_row(label(r.service_line), *cells(r))
        console.print(table)
    console.print(f"money: tariff value (before the emergency marginal rate); the "
                  f"contract's marginal-rate adjustment to date is "
                  f"{format_pounds(pos.marginal_rate_pence)}", highlight=False)
    for path in written:
        _say(f"written: {path}")


@invoice_app.command("plant")
def invoice_plant(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the invoice, the "
                                      "planted truth and the contract to.")],
    warehouse: WarehouseOpt = Path("warehouse"),
    provider: Annotated[str | None, typer.Option(
        help="Provider (default: the commissioner's with most tariff value).")] = None,
    year: Annotated[str | None, typer.Option(
        "--year", help="Financial year (default: the latest with twelve months).")] = None,
    month: Annotated[int, typer.Option(help="Month invoiced: 1 = April.")] = 1,
    errors: Annotated[int, typer.Option(help="Planted errors of each class.")] = 3,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same invoice.")] = 1,
    acting_as: DecisionAsOpt = None,
) -> None:
    """Write a provider's invoice from a priced (synthetic) warehouse with a known number
    of planted errors of each class, its truth and a contract, for training and tests
    (pbc synth --invoice does the same for the economy it writes)."""
    from pbc.services.invoices import plant_invoice

    with user_errors(), _store(warehouse) as store:
        inv, files = plant_invoice(store, Warehouse(warehouse),
                                   _decision_principal(warehouse, acting_as), out, seed=seed,
                                   per_class=errors, provider=provider, year=year, month=month)
    _say(f"invoice of {inv.provider} to {inv.commissioner} for month {inv.month} of "
         f"{inv.financial_year}: {len(inv.lines):,} lines, {len(inv.planted)} planted errors")
    for path in files:
        _say(f"written: {path}")


@invoice_app.command("check")
def invoice_check(
    invoice: Annotated[Path, typer.Argument(help="The provider's invoice (CSV: activity_id, "
                                                 "dataset, practice_code, activity_date, "
                                                 "amount[, service_line, hrg_code]).")],
    provider: Annotated[str, typer.Option(help="The provider that sent it.")],
    csv_out: Annotated[Path, typer.Option("--csv", help="Write every line with its class "
                                          "here, and the challenge list beside it "
                                          "(OUT_challenges.csv).")],
    warehouse: WarehouseOpt = Path("warehouse"),
    xlsx_out: Annotated[Path | None, typer.Option("--xlsx", help="Also a workbook: "
                                                  "summary, challenges, lines.")] = None,
    record: Annotated[bool, typer.Option(
        "--record/--no-record", help="Record the check in the decision store (the activity "
        "it bills; a later invoice billing it again is a duplicate).")] = True,
    acting_as: DecisionAsOpt = None,
) -> None:
    """Classify every line of a provider's invoice: matched, not ours, duplicate, not in
    contract, wrong price or wrong practice, with the money at stake and a challenge list
    (commissioner finance only)."""
    from pbc.services.invoices import check_invoice_file, print_check, write_check

    with user_errors(), _store(warehouse) as store:
        outcome = check_invoice_file(store, Warehouse(warehouse),
                                     _decision_principal(warehouse, acting_as), invoice,
                                     provider, record=record)
        written = write_check(outcome, csv_out=csv_out, xlsx_out=xlsx_out)
    print_check(outcome, console)
    console.print(f"{len(outcome.check.challenges):,} lines to challenge; "
                  + (f"recorded as invoice check {outcome.check_id}" if outcome.check_id
                     else "not recorded (--no-record)"), highlight=False)
    for path in written:
        _say(f"written: {path}")


# ------------------------------------------------------------- evaluation of cases
@case_app.command("evaluate")
def case_evaluate(
    case_id: CaseId,
    warehouse: WarehouseOpt = Path("warehouse"),
    started: Annotated[str | None, typer.Option(
        "--from", help="The month the service started, e.g. 2025-10 (default: April of the "
        "case's first year).")] = None,
    comparators: Annotated[int, typer.Option(
        help="How many similar practices to compare with (at least 5).")] = 10,
    show_only: Annotated[bool, typer.Option(
        "--show", help="Show the latest evaluation instead of evaluating (the proposer may "
        "too).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="As JSON.")] = False,
    expect_version: ExpectOpt = None,
    acting_as: DecisionAsOpt = None,
) -> None:
    """Evaluate an implemented case: its in-scope activity and spend before and after,
    against similar practices (difference in differences, 95% interval); the case becomes
    evaluated (again when more months are loaded). The commissioner's side evaluates."""
    import json

    from pbc.decisions.cases import ConflictError
    from pbc.services.evaluation import describe, evaluate_case, show_evaluation

    with user_errors(), _store(warehouse) as store:
        who = _decision_principal(warehouse, acting_as)
        try:
            view = (show_evaluation(store, who, case_id) if show_only else
                    evaluate_case(store, Warehouse(warehouse), who, case_id, started=started,
                                  comparators=comparators, expected_version=expect_version))
        except ConflictError as e:
            err.print(f"[bold red]error:[/] {e}")
            raise typer.Exit(CONFLICT_EXIT) from None
        if as_json:
            print(json.dumps(view.as_dict(), indent=2, default=str))
        else:
            for line in describe(view):
                _say(line)


# -------------------------------------------------------------------- local authorities
la_app = typer.Typer(help="Working with local authorities: Section 75 pooled budgets, "
                     "neighbourhood profiles for the JSNA, coterminosity and shared clients "
                     "(docs/local-authorities.md).", no_args_is_help=True)
app.add_typer(la_app, name="la")

# ------------------------------------------------------ local authorities: pooled budgets
# (issue 16: pbc la pooled, pbc la register)
@la_app.command("pooled")
def la_pooled(
    agreement: Annotated[Path, typer.Option(
        help="The Section 75 agreement file (TOML; examples/pooled_budget.toml).")],
    year: Annotated[str, typer.Option(help="Financial year, e.g. 2025-26.")],
    warehouse: WarehouseOpt = Path("warehouse"),
    month: Annotated[str | None, typer.Option(
        help="Calendar month, e.g. 2025-09: the position at its end and the settlement on "
             "the forecast outturn (default: the year-end settlement on actual spend).")] =
    None,
    method: Annotated[str, typer.Option(
        help="Forecast method with --month: run_rate, seasonal_run_rate or ratio_model.")] =
    "seasonal_run_rate",
    csv: Annotated[Path | None, typer.Option(
        help="Write the settlement as CSV (pounds): partner, contribution, "
             "share_of_variance, bears, keeps, final_position.")] = None,
    xlsx: Annotated[Path | None, typer.Option(
        help="Write the position and settlement as an Excel workbook.")] = None,
    acting_as: DecisionAsOpt = None,
) -> None:
    """A pooled budget's position and settlement: contributions, spend in scope (NHS
    activity of the council's residents, social care packages), and each partner's share of
    the overspend or underspend by the agreement's rule. Only its partners may see it."""
    from pbc.calendar import normalise_financial_year
    from pbc.services.monitoring import parse_period
    from pbc.services.pooled import (
        pooled_position,
        print_settlement,
        read_agreement,
        write_settlement_csv,
        write_workbook,
    )

    with user_errors():
        fy = normalise_financial_year(year)
        at = None
        if month is not None:
            month_fy, at = parse_period(month)
            if month_fy != fy:
                raise UserError(f"--month {month} is in {month_fy}, not --year {fy}")
        wh = Warehouse(warehouse)
        found, _ = read_agreement(agreement)
        who = _decision_principal(warehouse, acting_as)
        with _store(warehouse) as store:
            pos = pooled_position(wh, who, found, fy, month=at, method=method,  # type: ignore[arg-type]
                                  store=store)
        print_settlement(pos, console, RichTable)
        if csv is not None:
            n = write_settlement_csv(pos, csv)
            _say(f"wrote {csv} ({n} partners)")
        if xlsx is not None:
            write_workbook(pos, xlsx, f"pbc warehouse {wh.root}")
            _say(f"wrote {xlsx}")


@la_app.command("register")
def la_register(
    warehouse: WarehouseOpt = Path("warehouse"),
    add: Annotated[Path | None, typer.Option(
        help="Record this agreement file in the register first (a partner may; a changed "
             "file under the same reference is a new version; audited).")] = None,
    csv: Annotated[Path | None, typer.Option(help="Write the register as CSV.")] = None,
    acting_as: DecisionAsOpt = None,
) -> None:
    """The register of pooled budget agreements you are a partner of, with each year's
    contributions."""
    from pbc.services.pooled import read_agreement, record_agreement, register

    with user_errors(), _store(warehouse) as store:
        who = _decision_principal(warehouse, acting_as)
        if add is not None:
            found, text = read_agreement(add)
            version, changed = record_agreement(store, who, found, text)
            _say(f"recorded {found.reference} version {version}" if changed else
                 f"{found.reference} version {version} is already this file: nothing changed")
        rows = register(store, who)
        table = RichTable(title=f"Pooled budget agreements {who} is a partner of")
        for col in ("reference", "name", "version", "host", "partners", "rule", "year",
                    "contributions"):
            table.add_column(col, justify="right" if col in ("version", "contributions")
                             else "left")
        for r in rows:
            table.add_row(r.reference, r.name, str(r.version), r.host, r.partners, r.rule,
                          r.financial_year, _money(r.as_dict()["contributions"]))
        console.print(table)
        if not rows:
            console.print("no agreements (record one: pbc la register --add FILE)")
        if csv is not None:
            import pandas as pd

            pd.DataFrame([r.as_dict() for r in rows]).to_csv(csv, index=False)
            _say(f"wrote {csv} ({len(rows)} rows)")


# -------------------------------------------------- local authorities: neighbourhood profiles
# (issue 16: pbc la profile)


@la_app.command("profile")
def la_profile(
    la_code: Annotated[str, typer.Argument(help="Local authority (ONS code).")],
    warehouse: WarehouseOpt = Path("warehouse"),
    acting_as: Annotated[str, typer.Option(
        "--as", help="Act as ROLE:ORGANISATION: local_authority:LA_CODE for the council's "
        "own profile, or a commissioner role of its economy. " + SELF_DECLARED_NOTE)] = "",
    year: Annotated[str | None, typer.Option(
        help="Financial year, e.g. 2025-26 (default: the latest complete one).")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write the rows as CSV.")] = None,
    xlsx: Annotated[Path | None, typer.Option("--xlsx", help="Write the workbook.")] = None,
    chart: Annotated[Path | None, typer.Option(
        help="Write the neighbourhood comparison chart (.vl.json, .json, .html, .svg, "
        ".png).")] = None,
) -> None:
    """Neighbourhood profiles for the JSNA: population, deprivation, prevalence, admissions
    (directly standardised), A&E, social care and risk segments, with small numbers
    suppressed (docs/local-authorities.md)."""
    from rich.table import Table as RichTable

    from pbc.services import profiles

    with user_errors():
        if not acting_as:
            raise UserError(f"say who you are with --as (local_authority:{la_code} for the "
                            "council's own profile)")
        who = _principal(warehouse, acting_as)
        profile = profiles.neighbourhood_profile(Warehouse(warehouse), la_code, who,
                                                 financial_year=year)
        table = RichTable(title=f"{profile.la_name} ({la_code}), {profile.financial_year}: "
                          "rates per neighbourhood (* suppressed)")
        for col in ("Measure", *profile.neighbourhoods, "ALL"):
            table.add_column(col, justify="left" if col == "Measure" else "right")
        frame = profile.frame()
        for m in profiles.CHART_MEASURES:
            part = frame[(frame["measure"] == m) & (frame["breakdown"] == "all")]
            shown = {str(code): ("*" if hid else "-" if value is None or value != value
                                 else f"{float(value):,.1f}")
                     for code, hid, value in zip(part["neighbourhood_code"],
                                                 part["suppressed"], part["value"],
                                                 strict=True)}
            table.add_row(m, *(shown.get(n, "") for n in [*profile.neighbourhoods, "ALL"]))
        console.print(table)
        for note in profile.notes:
            _say(note)
        if csv_out:
            _say(f"wrote {profiles.write_csv(profile, csv_out)}")
        if xlsx:
            _say(f"wrote {profiles.write_workbook(profile, xlsx)}")
        if chart:
            from pbc.indicators.charts import save_chart

            _say(f"wrote {save_chart(profiles.comparison_chart(profile), chart)}")

# ----------------------------------------- local authorities: coterminosity, shared clients
# (issue 16: pbc la coterminosity, pbc la shared-clients)


@la_app.command("coterminosity")
def la_coterminosity(
    warehouse: WarehouseOpt = Path("warehouse"),
    acting_as: AsOpt = None,
    on: Annotated[str | None, typer.Option(
        help="The registered list on this day, YYYY-MM-DD (default: the last day of the "
             "activity).")] = None,
    min_list: Annotated[int, typer.Option(
        help="Smallest suggested cluster, in registered patients.")] = 30_000,
    csv: Annotated[Path | None, typer.Option("--csv", help="Write the table as CSV.")] = None,
    xlsx: Annotated[Path | None, typer.Option("--xlsx", help="Write a workbook.")] = None,
) -> None:
    """How practice groups follow councils and neighbourhoods; a suggested regrouping.

    Commissioner roles see every group's scores and the suggested clusters; a council
    officer (--as local_authority:CODE) sees its own residents by neighbourhood and group,
    counts 1-7 suppressed."""
    import datetime as dt

    from pbc.services import coterminosity as svc

    with user_errors():
        day = dt.date.fromisoformat(on) if on else None
        wh = Warehouse(warehouse)
        report = svc.coterminosity(wh, _principal(warehouse, acting_as), on=day,
                                   min_list=min_list)
        svc.print_report(report, console)
        if csv:
            _say(f"wrote {svc.write_csv(report, csv, wh)}")
        if xlsx:
            _say(f"wrote {svc.write_workbook(report, xlsx, wh)}")


@la_app.command("shared-clients")
def la_shared_clients(
    la_code: Annotated[str, typer.Argument(help="The council's ONS code, e.g. E06000004.")],
    warehouse: WarehouseOpt = Path("warehouse"),
    acting_as: AsOpt = None,
    year: Annotated[str | None, typer.Option(
        help="Financial year, e.g. 2025-26 (default: the year of the last activity).")] = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="Write the table as CSV.")] = None,
    xlsx: Annotated[Path | None, typer.Option("--xlsx", help="Write a workbook.")] = None,
) -> None:
    """People known to both the NHS and the council's social care: counts and costs by
    neighbourhood, risk segment and care type, and opportunities for joint commissioning
    (aggregates only, counts 1-7 suppressed). The council's own officer
    (--as local_authority:CODE) or the commissioner."""
    from pbc.services import shared_clients as svc

    with user_errors():
        wh = Warehouse(warehouse)
        report = svc.shared_clients_report(wh, _principal(warehouse, acting_as), la_code,
                                           year=year)
        svc.print_report(report, console)
        if csv:
            _say(f"wrote {svc.write_csv(report, csv, wh)}")
        if xlsx:
            _say(f"wrote {svc.write_workbook(report, xlsx, wh)}")


# ---------------------------------------------------------------------- run (helper: run)
@app.command("run")
def run_cmd(
    input_dir: Annotated[Path | None, typer.Option(
        "--input", "-i", help="Folder of input files (as pbc load), or of monthly delivery "
        "folders (deliveries/YYYY-MM), loaded in order. Without it the warehouse is used as "
        "it is.")] = None,
    warehouse: WarehouseOpt = Path("warehouse"),
    policy: Annotated[Path | None, typer.Option(
        help="Budget policy (TOML). Without it no budgets are set, so nothing is "
             "monitored (both stages say so).")] = None,
    year: Annotated[str | None, typer.Option(
        help="Financial year of the benchmarks, e.g. 2025-26 (default: every year).")] = None,
    month: Annotated[str | None, typer.Option(
        help="Month of the monitoring position, e.g. 2025-09 (default: the last month of "
             "the budget year with priced activity).")] = None,
    indicator: Annotated[list[str] | None, typer.Option(
        metavar="ID", help="An indicator to benchmark (repeat it; default: every indicator; "
        "see pbc benchmark --list).")] = None,
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Run folder: state file, summary, monitoring position CSVs, "
        "benchmark workbooks, budget statements.")] = Path("run"),
    until: Annotated[str | None, typer.Option(
        help="Last stage to run: load, price, budgets, monitoring, indicators or risk "
             "(the stages after it are skipped, and said).")] = None,
    acting_as: AsOpt = None,
) -> None:
    """The whole pipeline: load, price, budgets, monitoring, indicators, risk scores.

    A stage whose inputs (by content hash) have not changed since it last completed is not
    run again; a killed run resumes at the first incomplete stage (docs/performance.md)."""
    from pbc.services.run import run_pipeline

    with user_errors():
        report = run_pipeline(
            Warehouse(warehouse), out, input_dir=input_dir, policy=policy, year=year,
            month=month, indicators=indicator or None, until=until,
            principal=lambda wh: _principal(wh.root, acting_as),
            progress=progress_bar, say=_say)
        print_run_summary(report)


def print_run_summary(report: Any, out: Console | None = None) -> None:
    """Stage timings, rows per second and peak memory of a run, as a table."""
    con = out or console
    table = RichTable(title=f"pbc run (warehouse version {report.warehouse_version})")
    for col in ("stage", "status", "seconds", "rows", "rows/s", "peak RSS"):
        table.add_column(col, justify="left" if col in ("stage", "status") else "right")
    for r in report.stages:
        rate = r.rows_per_second
        table.add_row(r.stage, r.status,
                      f"{r.seconds:.1f}" if r.status == "ran" else "-",
                      f"{r.rows:,}" if r.status == "ran" else "-",
                      f"{rate:,.0f}" if rate is not None else "-",
                      f"{r.peak_rss_bytes / 2**20:,.0f} MB" if r.peak_rss_bytes else "-")
    con.print(table)
    for r in report.stages:
        if r.status in ("skipped", "failed"):
            con.print(f"{r.stage} {r.status}: {r.reason}", highlight=False, markup=False)
    con.print(f"peak RSS of the run {report.peak_rss_bytes / 2**20:,.0f} MB", highlight=False)
    if report.nothing_changed:
        con.print("nothing changed since the last run: no stage was recomputed",
                  highlight=False)
    _say(f"summary: {report.summary_file}; state: {report.state_file}", con)


# ------------------------------------------------ webapi: API tokens (issue 18, item 4)
@users_app.command("token")
def users_token(
    name: Annotated[str, typer.Argument(help="The user the token acts for.")],
    warehouse: WarehouseOpt = Path("warehouse"),
    label: Annotated[str | None, typer.Option(
        help="A name for the token, to list and revoke it by (default: token N).")] = None,
    acting_as: DecisionAsOpt = None,
) -> None:
    """Print a new API token for an existing user, once (pbc keeps only its SHA-256): send
    it as Authorization: Bearer TOKEN to /api/v1 (docs/api.md). An administrator, or the
    user themself (--as ROLE:ORG:NAME)."""
    from pbc.services.api_tokens import issue_token

    with user_errors(), _store(warehouse) as store:
        issued = issue_token(store, _decision_principal(warehouse, acting_as), name, label)
    err.print(f"token {issued.id} ({issued.label!r}) for {issued.user_name}; shown once, "
              "keep it secret (revoke: pbc users revoke-token "
              f"{issued.user_name} --label LABEL):", markup=False, highlight=False)
    print(issued.token)


@users_app.command("tokens")
def users_tokens(
    name: Annotated[str, typer.Argument(help="The user whose tokens to list.")],
    warehouse: WarehouseOpt = Path("warehouse"),
    acting_as: DecisionAsOpt = None,
) -> None:
    """A user's API tokens: label, created, last used, revoked (never the token)."""
    from pbc.services.api_tokens import list_tokens

    with user_errors(), _store(warehouse) as store:
        rows = list_tokens(store, _decision_principal(warehouse, acting_as), name)
    table = RichTable("id", "label", "created", "last used", "revoked",
                      title=f"API tokens of {name}")
    for t in rows:
        table.add_row(str(t.id), t.label, f"{t.created_at:%Y-%m-%d %H:%M} by {t.created_by}",
                      f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never",
                      f"{t.revoked_at:%Y-%m-%d %H:%M} by {t.revoked_by}" if t.revoked_at
                      else "no")
    console.print(table)
    if not rows:
        console.print(f"{name} has no API tokens", highlight=False, markup=False)


@users_app.command("revoke-token")
def users_revoke_token(
    name: Annotated[str, typer.Argument(help="The token's user.")],
    warehouse: WarehouseOpt = Path("warehouse"),
    label: Annotated[str | None, typer.Option(help="The token's label.")] = None,
    token_id: Annotated[int | None, typer.Option("--id", help="The token's id.")] = None,
    acting_as: DecisionAsOpt = None,
) -> None:
    """Revoke one of a user's API tokens (by --label or --id): the API refuses it from
    then on (401)."""
    from pbc.services.api_tokens import revoke_token

    with user_errors(), _store(warehouse) as store:
        t = revoke_token(store, _decision_principal(warehouse, acting_as), name, label=label,
                         token_id=token_id)
    console.print(f"revoked token {t.id} ({t.label!r}) of {t.user_name}", highlight=False,
                  markup=False)


# ---------------------------------------------------------------------- webcore (issue 18)
@users_app.command("password")
def users_password(
    name: Annotated[str, typer.Argument(help="The user whose password to set.")],
    warehouse: WarehouseOpt = Path("warehouse"),
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the password from the first line of standard input "
        "(for scripts) instead of asking twice.")] = False,
    acting_as: DecisionAsOpt = None,
) -> None:
    """Set a user's password for the web app (pbc serve), stored as an Argon2id hash. Only
    an administrator, or the user themself (--as ROLE:ORG:NAME)."""
    from pbc.services.accounts import AccountError, set_password

    with user_errors(), _store(warehouse) as store:
        if password_stdin:
            secret = sys.stdin.readline().rstrip("\r\n")
        else:
            secret = typer.prompt(f"New password for {name}", hide_input=True,
                                  confirmation_prompt=True)
        try:
            set_password(store, _decision_principal(warehouse, acting_as), name, secret)
        except AccountError as e:
            raise UserError(str(e)) from e
        console.print(f"set the password of {name}")


@app.command()
def serve(
    warehouse: WarehouseOpt = Path("warehouse"),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    insecure_cookies: Annotated[bool, typer.Option(
        "--insecure-cookies", help="Send the session cookie over plain HTTP too (local "
        "development only; behind HTTPS leave it off).")] = False,
    workers: Annotated[int, typer.Option(
        min=1, help="Worker processes (each keeps its own cache of results).")] = 1,
    warm_up: Annotated[bool, typer.Option(
        help="Compute the landing pages' results in the background at start-up and when "
        "the data change (docs/web.md).")] = True,
) -> None:
    """The web app over this warehouse (docs/web.md): sign in with a user of the decision
    store whose password is set (pbc users password NAME)."""
    import os

    import uvicorn

    from pbc.web.app import SETTINGS_VARIABLE, create_app
    from pbc.web.settings import WebSettings

    with user_errors():
        if not (warehouse / "current").exists():
            raise UserError(f"{warehouse}: no warehouse here (pbc load first)")
        settings = WebSettings(warehouse.resolve(), secure_cookies=not insecure_cookies,
                               warm_up=warm_up)
        _say(f"pbc web app for {warehouse} on http://{host}:{port}/ "
             f"({workers} worker{'s' if workers > 1 else ''}; Ctrl-C to stop)")
        if workers == 1:
            uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
        else:  # each worker process builds its own app from the settings
            os.environ[SETTINGS_VARIABLE] = settings.to_json()
            uvicorn.run("pbc.web.app:create_app_from_environment", factory=True,
                        host=host, port=port, workers=workers, log_level="warning")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
