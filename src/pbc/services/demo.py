"""``pbc demo``: a default synthetic economy taken through every stage that exists.

The economy has about 50 practices in 4 groups across 2 local authorities (about 450,000
patients) and two financial years (2024/25 and 2025/26): case finding needs a year of
history and a year of outcome, and budgets for 2026/27 start from 2025/26 spend.

The economy arrives as monthly deliveries (``pbc synth --deliveries monthly``): the first
brings the reference tables and 2024/25; budgets for 2025/26 are set from it; then six
months of 2025/26 are played as they happen (load the delivery, price, show the position,
freeze it), so later deliveries restate the frozen months (late and revised rows), and the
freed-resources forecast is shown; the rest of the year is then loaded for the stages after.
"""

from __future__ import annotations

import gc
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table as RichTable

from pbc.services.decisions_demo import DemoDecisions
from pbc.services.principal import Principal
from pbc.warehouse import Warehouse

ProgressFactory = Callable[[str], AbstractContextManager[Callable[[str, int, int], None]]]

DEMO_GROUPS = 4
DEMO_LOCAL_AUTHORITIES = 2
DEMO_YEARS = 2
DEMO_START_YEAR = 2024
DEMO_COMMISSIONER = "Q99"
DEMO_INDICATORS = ("emergency_admissions", "chronic_acsc_admissions", "day_case_rate",
                   "outpatient_follow_up_ratio", "ae_attendances",
                   "prescribing_cost_per_weighted_patient")
POLICY = Path(__file__).resolve().parents[1] / "reference" / "budgets" / "demo_policy.toml"
PLAYED_YEAR = "2025-26"
#: months of the played year whose deliveries are loaded, priced, shown and frozen one by one
DEMO_MONTHS = 6


#: warnings known to come from pinned dependencies, each with why it is harmless (the test
#: suite's filterwarnings in pyproject.toml lists the same ones)
EXPECTED_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    # Ibis 12.0 calls DuckDB 2.0's fetch_arrow_table(), renamed to_arrow_table(); the old
    # name still works in DuckDB 2.0
    (r"fetch_arrow_table\(\) is deprecated", DeprecationWarning),
    # Ibis 12.0 reads pandas' future.infer_string option, which pandas 3 deprecates (its
    # behaviour is now the default)
    (r"The 'future.infer_string' option is deprecated", DeprecationWarning),
)


class DemoNotClean(RuntimeError):
    """The demo ran but something warned or failed quietly on the way (the message lists it)."""


@contextmanager
def nothing_ignored() -> Iterator[None]:
    """Run a block in which any warning is an error and any exception Python would only
    print as "Exception ignored" (for example in a finaliser) is collected; at the end such
    exceptions raise :class:`DemoNotClean`. The demo is what a newcomer sees first: it must
    run without a traceback or a warning, and a quiet failure must not pass as a success."""
    ignored: list[str] = []

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        name = unraisable.exc_type.__name__ if unraisable.exc_type else "exception"
        ignored.append(f"{name}: {unraisable.exc_value} (in {unraisable.object!r})")

    previous = sys.unraisablehook
    sys.unraisablehook = hook
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for message, category in EXPECTED_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category)
            yield
            gc.collect()
    finally:
        sys.unraisablehook = previous
    if ignored:
        raise DemoNotClean("the demo finished, but these errors were ignored on the way: "
                           + "; ".join(ignored))


def played_policy(out: Path) -> Path:
    """The policy of the year the demo plays month by month: the demo policy's terms for
    2025-26 (set from 2024-25 spend), written beside the demo's files."""
    text = POLICY.read_text(encoding="utf-8")
    year = 'financial_year = "2026-27"'
    if year not in text:
        raise ValueError(f"{POLICY}: expected {year} to derive the played year's policy")
    path = out / f"demo_policy_{PLAYED_YEAR.replace('-', '_')}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.replace(year, f'financial_year = "{PLAYED_YEAR}"'), encoding="utf-8")
    return path


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
    inputs, wdir, reports = out / "input", out / "warehouse", out / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    timings: list[tuple[str, float]] = []
    who = Principal("demo", "commissioner", DEMO_COMMISSIONER)

    @contextmanager
    def timed(name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        timings.append((name, time.perf_counter() - t0))

    with timed("synthesise"), progress("1. synthesise a health economy") as cb:
        summary = generate(SynthConfig(
            practices=practices, groups=DEMO_GROUPS, local_authorities=DEMO_LOCAL_AUTHORITIES,
            seed=seed, years=DEMO_YEARS, start_year=DEMO_START_YEAR,
            deliveries="monthly"), inputs, progress=cb)
    deliveries = [inputs / "deliveries" / name for name in summary.deliveries]
    console.print(f"  {summary.practices:,} practices, {summary.patients:,} patients, "
                  f"{sum(summary.rows.values()):,} rows in {len(deliveries)} monthly "
                  f"deliveries ({deliveries[0].name} to {deliveries[-1].name}; "
                  f"{summary.revisions:,} rows revised on the way) in {inputs / 'deliveries'}")

    warehouse = Warehouse(wdir)
    with timed("load"), progress(f"2. validate and load the first delivery "
                                 f"({deliveries[0].name})") as cb:
        report = load(deliveries[0], warehouse, progress=cb)
    console.print(f"  {report.rows_in:,} rows in, {report.rows_quarantined:,} quarantined "
                  f"(warehouse version {report.version}{'' if report.changed else ', unchanged'})")

    from pbc.services.pricing import run_pricing

    with timed("price"), progress("3. price at the national tariff and attribute") as cb:
        cb("price", 0, 1)
        run_pricing(warehouse)
        cb("price", 1, 1)

    from pbc.services.budgets import set_indicative_budgets

    with timed("play"):
        played = set_indicative_budgets(warehouse, played_policy(out), who,
                                        reason="demo: the year played month by month")
        console.print(f"  budgets for {PLAYED_YEAR} set from 2024-25 spend (version "
                      f"{played.version}); now the year as it happens:")
        _play_months(warehouse, who, deliveries[1:1 + DEMO_MONTHS], console, progress)

    with timed("load rest"), progress("the rest of the year's deliveries") as cb:
        rest = deliveries[1 + DEMO_MONTHS:]
        for i, folder in enumerate(rest):
            cb(folder.name, i, len(rest))
            load(folder, warehouse)
        cb("done", len(rest), len(rest))
    _print_reconciliation(warehouse, console, "load")
    with timed("price year"), progress("price the whole year") as cb:
        cb("price", 0, 1)
        priced = run_pricing(warehouse)
        cb("price", 1, 1)
    _print_pricing(priced, console)

    from pbc.budgets.policy import read_policy
    from pbc.services.optouts import demo_optout

    decisions = reports / "decisions"
    demo_optout(warehouse, decisions, console,
                financial_year=read_policy(POLICY).financial_year)
    with timed("budgets"), progress("4. set indicative budgets") as cb:
        cb("budgets", 0, 1)
        run = set_indicative_budgets(warehouse, POLICY, who, reason="demo: first setting",
                                     statements=reports / "budget-statements")
        cb("budgets", 1, 1)
    total = int(run.result.frame.budget.sum()) / 100
    console.print(f"  {run.result.policy.financial_year}: £{total:,.0f} across "
                  f"{run.result.frame.practice_code.nunique()} practices (version "
                  f"{run.version}); statements in {run.statements}")

    from pbc.services.benchmarking import benchmark_all, write_charts, write_result

    charts = reports / "charts"
    with timed("benchmark"), progress("5. benchmark practices") as cb:
        cb("indicators", 0, len(DEMO_INDICATORS) + 1)
        results = benchmark_all(warehouse, list(DEMO_INDICATORS), level="practice")
        for i, result in enumerate(results, start=1):
            cb(result.indicator.id, i, len(DEMO_INDICATORS) + 1)
            write_result(result, reports / f"benchmark_{result.indicator.id}.xlsx")
            write_charts(result, charts)
        cb("done", len(DEMO_INDICATORS) + 1, len(DEMO_INDICATORS) + 1)
    console.print(f"  {len(DEMO_INDICATORS)} indicators benchmarked (annual table, monthly SPC "
                  f"series, indicator sheet): {reports}/benchmark_*.xlsx; funnel, caterpillar, "
                  f"deciles and SPC charts: {charts}/*.svg")

    from pbc.services import risk

    with timed("risk"), progress("6. case finding: train, validate, score") as cb:
        cb("train", 0, 3)
        trained = risk.train(warehouse, who)
        cb("score", 1, 3)
        scored = risk.score(warehouse, who)
        cb("report", 2, 3)
        validation = risk.report(warehouse, who)
        (reports / "risk_model_report.md").write_text(validation.to_markdown(),
                                                      encoding="utf-8")
        from pbc.indicators.charts import save_chart
        from pbc.risk.charts import calibration_chart

        save_chart(calibration_chart(validation), charts / "risk_calibration.svg")
        cb("done", 3, 3)
    v = trained.validation.to_dict()
    console.print(f"  model {trained.model.version}: AUC {_auc(v)}; scored "
                  f"{scored.rows:,} patients; report {reports / 'risk_model_report.md'}, "
                  f"calibration plot {charts / 'risk_calibration.svg'}")

    from pbc.services.decisions_demo import demo_decisions

    with timed("decisions"):
        console.print("[bold]7. commissioning decisions[/]")
        demo_decisions(warehouse, decisions, console, extra_steps=(_invoice_check,))

    from pbc.services.pooled import demo_pooled
    from pbc.services.profiles import demo_profiles
    from pbc.services.shared_clients import demo_local_authority

    councils = reports / "local-authorities"
    with timed("local authorities"):
        console.print("[bold]8. working with local authorities[/]")
        demo_pooled(warehouse, councils, console)
        demo_profiles(warehouse, councils, console)
        demo_local_authority(warehouse, councils, console)

    console.print()
    console.print("[bold]Outputs[/]")
    console.print(f"  input files:  {inputs}")
    console.print(f"  warehouse:    {wdir}")
    console.print(f"  catalogue:    {wdir / 'current' / 'catalogue.duckdb'} (open with DuckDB)")
    console.print(f"  reports:      {reports}")
    console.print("  try:          .venv/bin/pbc budgets explain "
                  f"{run.result.frame.practice_code.iloc[0]} --warehouse {wdir}")
    first = run.result.frame.practice_code.iloc[0]
    console.print(f"                .venv/bin/pbc risk list {first} --as practice:{first} "
                  f"--warehouse {wdir}")
    console.print(f"                .venv/bin/pbc export quarantine --warehouse {wdir} "
                  f"--out {out / 'quarantine.csv'} --as commissioner_data:{DEMO_COMMISSIONER}")
    console.print("  timings:      " + ", ".join(f"{n} {s:.1f} s" for n, s in timings))


def _invoice_check(ctx: DemoDecisions) -> None:
    """The decision demo's last step: a contract with the main provider and its invoice
    checked (pbc.services.invoices), by the commissioner's finance user."""
    from pbc.services.invoices import demo_invoice_check

    demo_invoice_check(ctx.warehouse, ctx.out, ctx.console, who=ctx.users.get("commissioner"))


def _play_months(warehouse: Warehouse, who: Principal, deliveries: list[Path],
                 console: Console, progress: ProgressFactory) -> None:
    """Load each delivery, price, show the commissioner's position at the end of the month
    the delivery reports on, and freeze it; then show what the later deliveries restated
    and the freed-resources forecast."""
    from pbc.services.freeze import freeze_month, restatements
    from pbc.services.monitoring import freed_resources_report, monthly_position
    from pbc.services.pricing import run_pricing
    from pbc.warehouse.load import load

    table = RichTable(title=f"{PLAYED_YEAR} as it happens: each delivery loaded, priced, the "
                      "position shown and frozen (commissioner, all lines)")
    for col in ("delivery", "rows", "revised", "position at", "spend to date",
                "budget to date", "variance", "forecast outturn"):
        table.add_column(col, justify="left" if col in ("delivery", "position at")
                         else "right")
    period = ""
    with progress(f"play {PLAYED_YEAR} month by month") as cb:
        for i, folder in enumerate(deliveries):
            cb(folder.name, i, len(deliveries))
            report = load(folder, warehouse)
            run_pricing(warehouse)
            year, month = int(folder.name[:4]), int(folder.name[5:])
            period = f"{year - (month == 1)}-{(month - 2) % 12 + 1:02d}"  # the month before
            pos = monthly_position(warehouse, who, period, level="commissioner").frame
            total = pos[pos.service_line == "all"].iloc[0]
            freeze_month(warehouse, who, period)
            table.add_row(folder.name, f"{report.rows_in:,}", f"{report.rows_replaced:,}",
                          period, _pounds(total.spend_to_date), _pounds(total.budget_to_date),
                          _pounds(total.variance), _pounds(total.forecast_outturn))
        cb("done", len(deliveries), len(deliveries))
    console.print(table)
    restated = restatements(warehouse, who, period).frame
    shown = restated[(restated.level == "commissioner") & (restated.service_line == "all")]
    rtable = RichTable(title=f"Restatements of the frozen months at {period}: spend to date "
                       "as frozen and now (commissioner, all lines); every level and line: "
                       f"pbc monitor restatements --month {period}")
    for col in ("frozen month", "frozen", "now", "difference", "why"):
        rtable.add_column(col, justify="left" if col in ("frozen month", "why") else "right")
    for r in shown.itertuples():
        rtable.add_row(str(r.period), _pounds(r.old), _pounds(r.new), _pounds(r.difference),
                       str(r.why))
    console.print(rtable)
    console.print(f"  {len(restated):,} restated rows in all (practice, group and "
                  "commissioner, by service line); no frozen figure was changed")
    freed = freed_resources_report(warehouse, who, PLAYED_YEAR).frame
    console.print(f"  freed resources forecast for {PLAYED_YEAR} ({freed.outturn_basis.iloc[0]}"
                  f"): {int((freed.freed > 0).sum())} of {len(freed)} practices free "
                  f"{_pounds(freed.freed.sum())}, of which {_pounds(freed.reinvestable.sum())} "
                  "is reinvestable (70%)")


def _pounds(pence: object) -> str:
    if pence is None or pence is pd.NA:
        return "-"
    return f"£{int(pence) / 100:,.0f}"  # type: ignore[call-overload]


def _auc(v: dict) -> str:
    auc = v.get("auc") or {}
    try:
        return f"{auc['auc']:.3f} (95% CI {auc['lower']:.3f} to {auc['upper']:.3f})"
    except (KeyError, TypeError):
        return "see report"


def _print_pricing(report: object, console: Console) -> None:
    table = RichTable(title="Priced activity by service line")
    for col in ("service line", "rows", "money"):
        table.add_column(col, justify="left" if col == "service line" else "right")
    for line, rows, money in report.by_service_line:  # type: ignore[attr-defined]
        table.add_row(str(line), f"{rows:,}", f"£{float(money):,.0f}")
    console.print(table)
    for r in report.reconciliation:  # type: ignore[attr-defined]
        console.print(f"  {r['source_table']}: money priced £{float(r['money_priced']):,.2f} = "
                      f"attributed £{float(r['money_attributed']):,.2f} + unattributed "
                      f"£{float(r['money_unattributed']):,.2f}")


def _print_reconciliation(warehouse: Warehouse, console: Console, stage: str) -> None:
    rows = warehouse.query(
        "SELECT source_table, sum(rows_in), sum(rows_accepted), sum(rows_quarantined) "
        f"FROM reconciliation WHERE stage = '{stage}' GROUP BY 1 ORDER BY 1"
    )
    table = RichTable(title="Reconciliation (load): rows in = accepted + quarantined")
    for col in ("table", "rows in", "accepted", "quarantined"):
        table.add_column(col, justify="left" if col == "table" else "right")
    for name, rin, acc, qua in rows:
        table.add_row(name, f"{rin:,}", f"{acc:,}", f"{qua:,}")
    console.print(table)


# ---------------------------------------------------------------------- serving the app
#: what each role sees in the web app (docs/web.md), for the demo's list of logins
ROLE_SEES = {
    "administrator": "users and roles; the business cases",
    "commissioner": "the commissioner overview: every practice and group, the decision "
                    "queue, the data loads",
    "commissioner_approver": "the business cases, to approve or reject",
    "commissioner_data": "the business cases",
    "practice": "its practice's dashboard, budget explained, case-finding list, monthly "
                "pack (PDF, Excel)",
    "group": "its group's dashboard and practices",
    "local_authority": "its council's pooled budgets and the cases it is consulted on",
}
DEMO_HOST = "127.0.0.1"
DEMO_PORT = 8000


@dataclass(frozen=True)
class DemoLogin:
    """One demo user's sign-in: user name, password, role, organisation, what they see."""

    user: str
    password: str
    role: str
    organisation: str
    sees: str


def demo_logins(warehouse: Path, *, make_password: Callable[[], str] | None = None
                ) -> list[DemoLogin]:
    """Set a fresh password for one demo user of each role (the first by name), as the
    demo's administrator; their sign-ins. The passwords are new on every run (never
    stored but as Argon2 hashes)."""
    import secrets

    from pbc.decisions import DecisionStore
    from pbc.services.accounts import set_password
    from pbc.services.cases import users

    make = make_password or (lambda: secrets.token_urlsafe(12))
    admin = Principal("admin", "administrator", DEMO_COMMISSIONER)
    logins: list[DemoLogin] = []
    with DecisionStore.beside(warehouse) as store:
        seen: set[str] = set()
        for name, role, org in users(store, admin):
            if role in seen:
                continue
            seen.add(role)
            password = make()
            set_password(store, admin, name, password)
            logins.append(DemoLogin(name, password, role, org, ROLE_SEES.get(role, "")))
    if not logins:
        raise RuntimeError(f"{warehouse}: the demo made no users to sign in as")
    order = list(ROLE_SEES)
    return sorted(logins, key=lambda x: (order.index(x.role) if x.role in order else 99))


ServerRunner = Callable[[object, str, int], None]


def _uvicorn(app: object, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning")  # type: ignore[arg-type]


def serve_demo(out: Path, console: Console, *, host: str = DEMO_HOST, port: int = DEMO_PORT,
               runner: ServerRunner | None = None,
               make_password: Callable[[], str] | None = None) -> list[DemoLogin]:
    """After the pipeline: a password for each demo role, the logins printed, then the web
    app over the demo warehouse on http://HOST:PORT/ until Ctrl-C (``runner`` serves it;
    uvicorn by default). Cookies are sent over plain HTTP: the demo listens on loopback."""
    from pbc.web.app import create_app
    from pbc.web.settings import WebSettings

    warehouse = Path(out).resolve() / "warehouse"
    logins = demo_logins(warehouse, make_password=make_password)
    table = RichTable(title=f"Sign in at http://{host}:{port}/ (one user per role)")
    for col in ("User name", "Password", "Role", "Organisation", "Sees"):
        table.add_column(col, overflow="fold")
    for x in logins:
        table.add_row(x.user, x.password, x.role, x.organisation, x.sees)
    console.print(table)
    console.print(f"Serving the demo warehouse {warehouse} on http://{host}:{port}/ "
                  "(Ctrl-C to stop)")
    app = create_app(WebSettings(warehouse, secure_cookies=False))
    (runner or _uvicorn)(app, host, port)
    return logins
