"""``pbc run``: the whole pipeline as one resumable command.

Load -> price -> budgets -> monitoring -> indicators -> risk scores, over the services each
stage's own command uses (:func:`pbc.warehouse.load.load`,
:func:`pbc.services.pricing.run_pricing`, :func:`pbc.services.budgets.set_indicative_budgets`,
:func:`pbc.services.monitoring.monthly_position`, :func:`pbc.services.benchmarking.benchmark_all`,
:func:`pbc.services.risk.train` and :func:`~pbc.services.risk.score`).

Each stage has an **input fingerprint**: the SHA-256 of what it reads, taken from the
warehouse manifest's content hashes of the tables it reads (the manifest lists every file's
SHA-256), plus the budget policy file's hash, the budget version it monitors, its options
and pbc's version. A stage that completed with the same fingerprint, and whose outputs are
still there, is not run again. The run folder's state file (``state.json``, replaced
atomically after every stage) records each completed stage; a stage's record is removed
before it starts, so a run killed mid-stage leaves that stage (and those after it)
incomplete, and the next run starts there. The warehouse itself stays on its previous
version when a stage is killed (architecture guarantee 4: every change is one transaction).

A stage whose prerequisites are missing (no ``--policy``: no budgets, so no monitoring; less
than 24 months of activity: no case finding) is skipped, and the run says so and why.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pbc import __version__
from pbc.services.principal import Principal
from pbc.warehouse import Warehouse, WarehouseError
from pbc.warehouse.store import KILL_ENV, kill_point

Callback = Callable[[str, int, int], None]
ProgressFactory = Callable[[str], AbstractContextManager[Callback]]

STAGES = ("load", "price", "budgets", "monitoring", "indicators", "risk")
STATE_FILE = "state.json"
SUMMARY_FILE = "summary.json"
STATE_FORMAT = 1
#: tables that only the later stages write: never an input of pricing or the indicators
_DOWNSTREAM_OUTPUTS = ("priced_activity", "quarantine", "reconciliation")
#: what the budgets read from the warehouse (pbc.services.budgets._frames)
BUDGET_INPUTS = ("priced_activity", "practices", "patients", "patient_conditions",
                 "practice_groups")
MONITORING_INPUTS = ("priced_activity", "budget_phasing")
MONITORING_LEVELS = ("practice", "group", "commissioner")


class RunError(WarehouseError):
    """``pbc run`` cannot do what was asked (shown as one line, nothing changed)."""


@dataclass
class StageResult:
    """What one stage did: ``ran``, ``unchanged`` (not recomputed: same fingerprint),
    ``skipped`` (a prerequisite is missing; ``reason`` says which) or ``failed``."""

    stage: str
    status: str
    reason: str = ""
    seconds: float = 0.0
    rows: int = 0
    peak_rss_bytes: int | None = None
    fingerprint: str | None = None
    outputs: list[str] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float | None:
        return self.rows / self.seconds if self.status == "ran" and self.seconds > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_per_second": self.rows_per_second}


@dataclass
class RunReport:
    folder: Path
    stages: list[StageResult]
    warehouse_version: int
    peak_rss_bytes: int

    @property
    def state_file(self) -> Path:
        return self.folder / STATE_FILE

    @property
    def summary_file(self) -> Path:
        return self.folder / SUMMARY_FILE

    @property
    def nothing_changed(self) -> bool:
        return all(s.status in ("unchanged", "skipped") for s in self.stages) and any(
            s.status == "unchanged" for s in self.stages)


# ---------------------------------------------------------------------- state file
def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` so that a reader (or a rerun after a kill) sees
    the old file or the new one, never a half-written one: a new file, flushed to disk,
    renamed over the old name, and the folder synced."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RunState:
    """The run folder's record of completed stages (``state.json``)."""

    def __init__(self, path: Path, warehouse: Path) -> None:
        self.path = path
        self.warehouse = str(warehouse)
        self.stages: dict[str, dict[str, Any]] = {}
        self.note = ""
        if path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise RunError(f"{path}: cannot read the run state ({e}); remove it to start "
                               "the run afresh") from e
            # a record is kept whatever warehouse it was made with: a stage is skipped
            # only if its inputs' content hashes match and its outputs are in the warehouse
            # and run folder given now
            if data.get("format") != STATE_FORMAT:
                self.note = f"{path}: a state file of another format; every stage runs"
            else:
                self.stages = dict(data.get("stages") or {})

    def completed(self, stage: str) -> dict[str, Any] | None:
        return self.stages.get(stage)

    def forget(self, stage: str) -> None:
        if self.stages.pop(stage, None) is not None:
            self.save()

    def record(self, stage: str, entry: dict[str, Any]) -> None:
        self.stages[stage] = entry
        self.save()

    def save(self) -> None:
        write_json_atomic(self.path, {"format": STATE_FORMAT, "warehouse": self.warehouse,
                                      "pbc_version": __version__, "stages": self.stages})


def fingerprint(stage: str, parts: dict[str, Any]) -> str:
    """SHA-256 of a stage's inputs (with the stage's name and pbc's version)."""
    text = json.dumps({"stage": stage, "pbc": __version__, **parts}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def table_hashes(warehouse: Warehouse, names: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Each named table's content hash, from the manifest's SHA-256 of its files (a
    table that is not there: ``absent``)."""
    sums: dict[str, str] = warehouse.manifest().get("checksums") or {}
    out = {}
    for name in names:
        prefix = f"tables/{name}/"
        listed = sorted((rel, digest) for rel, digest in sums.items() if rel.startswith(prefix))
        out[name] = (hashlib.sha256(json.dumps(listed).encode()).hexdigest()
                     if listed else "absent")
    return out


def input_tables(warehouse: Warehouse) -> list[str]:
    """The tables loaded from input files (every table but the stages' outputs)."""
    tables = warehouse.manifest()["tables"]
    return sorted(n for n, e in tables.items() if e.get("kind") != "output")


# ---------------------------------------------------------------------- memory
def _reset_peak_rss() -> bool:
    """Reset the kernel's peak RSS of this process (Linux: ``/proc/self/clear_refs``),
    so that the next reading is the peak of one stage."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak resident memory of this process since the last reset (:func:`_reset_peak_rss`;
    ``getrusage`` reads the same high-water mark, so it too is reset)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---------------------------------------------------------------------- the run
@dataclass
class Context:
    warehouse: Warehouse
    folder: Path
    inputs: list[Path]
    policy: Path | None
    year: str | None
    month: str | None
    indicators: list[str] | None
    principal: Callable[[Warehouse], Principal]
    results: dict[str, StageResult] = field(default_factory=dict)
    input_hashes: list[tuple[str, str, str]] | None = None
    #: the run's peak RSS so far (the kernel's high-water mark is reset before each stage)
    peak: int = 0
    _who: Principal | None = None

    @property
    def who(self) -> Principal:
        if self._who is None:
            self._who = self.principal(self.warehouse)
        return self._who

    def has(self, table: str) -> bool:
        return self.warehouse.exists() and self.warehouse.has_table(table)

    def done(self, stage: str) -> bool:
        r = self.results.get(stage)
        return r is not None and r.status in ("ran", "unchanged")


@dataclass
class Outcome:
    rows: int
    outputs: list[str]
    note: str = ""
    #: more facts kept in the stage's record (e.g. the budget version set)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Stage:
    """One stage: ``prerequisite`` (None, or why it cannot run), ``inputs`` (what its
    fingerprint is made of), ``present`` (its recorded outputs are still there) and
    ``execute``."""

    name: str
    title: str
    prerequisite: Callable[[Context], str | None]
    inputs: Callable[[Context], dict[str, Any]]
    present: Callable[[Context, dict[str, Any]], bool]
    execute: Callable[[Context, Callback], Outcome]


def run_pipeline(
    warehouse: Warehouse,
    folder: Path,
    *,
    input_dir: Path | None = None,
    policy: Path | None = None,
    year: str | None = None,
    month: str | None = None,
    indicators: list[str] | None = None,
    until: str | None = None,
    principal: Callable[[Warehouse], Principal],
    progress: ProgressFactory,
    say: Callable[[str], None],
) -> RunReport:
    """Run every stage in order, skipping those whose inputs have not changed since they
    last completed; write ``summary.json`` and return the report. A stage that fails stops
    the run (the error propagates after the summary is written)."""
    folder = Path(folder).resolve()
    warehouse.refuse_inside(folder)
    inputs = _input_folders(input_dir) if input_dir is not None else []
    if policy is not None:
        from pbc.budgets.policy import read_policy

        read_policy(policy)  # refuses a missing or invalid policy before anything runs
    if month is not None:
        from pbc.services.monitoring import parse_period

        parse_period(month)
    if until is not None and until not in STAGES:
        raise RunError(f"--until {until!r}: use one of {', '.join(STAGES)}")
    if not inputs and not warehouse.exists():
        raise RunError(f"nothing to run: no --input and no warehouse at {warehouse.root}")
    folder.mkdir(parents=True, exist_ok=True)
    lock = open(folder / ".lock", "w")  # noqa: SIM115 - held for the run
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise RunError(f"another pbc run is using {folder}; try again when it ends") from e
        return _run(Context(warehouse, folder, inputs, policy, year, month, indicators,
                            principal), progress, say, until)
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def _run(ctx: Context, progress: ProgressFactory, say: Callable[[str], None],
         until: str | None) -> RunReport:
    state = RunState(ctx.folder / STATE_FILE, ctx.warehouse.root)
    if state.note:
        say(state.note)
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    kill_spec = os.environ.get(KILL_ENV)
    failure: BaseException | None = None
    failed = ""
    last = STAGES.index(until) if until else len(STAGES) - 1
    for i, stage in enumerate(STAGE_LIST, start=1):
        if i - 1 > last:
            say(f"{i}. {stage.title}: skipped, after --until {until}")
            ctx.results[stage.name] = StageResult(stage.name, "skipped", f"after --until {until}")
            continue
        t0 = time.perf_counter()
        try:
            with _kill_points_of(stage.name, kill_spec):
                result = _stage(ctx, state, stage, f"{i}. {stage.title}", progress, say)
        except BaseException as e:  # recorded in the summary, then raised
            failure, failed = e, stage.name
            ctx.results[stage.name] = StageResult(stage.name, "failed", str(e) or repr(e),
                                                  time.perf_counter() - t0)
            break
        ctx.results[stage.name] = result
    results = [ctx.results.get(s.name) or StageResult(s.name, "skipped", "not reached: an "
                                                      "earlier stage failed")
               for s in STAGE_LIST]
    report = RunReport(ctx.folder, results,
                       ctx.warehouse.manifest()["version"] if ctx.warehouse.exists() else 0,
                       max(ctx.peak, peak_rss_bytes()))
    write_json_atomic(report.summary_file, {
        "started_at": started,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "pbc_version": __version__,
        "warehouse": str(ctx.warehouse.root),
        "warehouse_version": report.warehouse_version,
        "inputs": [str(p) for p in ctx.inputs],
        "policy": str(ctx.policy) if ctx.policy else None,
        "load_average": list(os.getloadavg()),
        "cpus": os.cpu_count(),
        "peak_rss_bytes": report.peak_rss_bytes,
        "stages": [r.to_dict() for r in results],
    })
    if failure is not None:
        say(f"the run stopped: {failed} failed (the stages before it are recorded; "
            f"summary: {report.summary_file})")
        raise failure
    return report


@contextlib.contextmanager
def _kill_points_of(stage: str, spec: str | None) -> Iterator[None]:
    """Test hook: ``PBC_TEST_KILL_AT=<stage>:<point>`` ends the process at the warehouse's
    kill point ``<point>`` (or at ``recording``, after the stage's work and before its
    record) only while ``<stage>`` runs. Any other value is left as it is."""
    if spec is None or ":" not in spec or spec.split(":", 1)[0] not in STAGES:
        yield
        return
    wanted, point = spec.split(":", 1)
    if wanted == stage:
        os.environ[KILL_ENV] = point
    else:
        os.environ.pop(KILL_ENV, None)
    try:
        yield
    finally:
        os.environ[KILL_ENV] = spec


def _stage(ctx: Context, state: RunState, stage: Stage, title: str,
           progress: ProgressFactory, say: Callable[[str], None]) -> StageResult:
    why = stage.prerequisite(ctx)
    if why is not None:
        say(f"{title}: skipped, {why}")
        return StageResult(stage.name, "skipped", why)
    print_ = fingerprint(stage.name, stage.inputs(ctx))
    record = state.completed(stage.name)
    if record is not None and record.get("fingerprint") == print_:
        if stage.present(ctx, record):
            say(f"{title}: unchanged since {record.get('completed_at')} (inputs "
                f"{print_[:12]}), not recomputed")
            return StageResult(stage.name, "unchanged", "inputs unchanged",
                               fingerprint=print_, outputs=list(record.get("outputs", [])))
        say(f"{title}: inputs unchanged but its outputs are gone: run again")
    state.forget(stage.name)  # a kill from here on leaves the stage incomplete
    ctx.peak = max(ctx.peak, peak_rss_bytes())
    exact = _reset_peak_rss()
    t0 = time.perf_counter()
    with progress(title) as cb:
        outcome = stage.execute(ctx, cb)
    seconds = time.perf_counter() - t0
    peak = peak_rss_bytes() if exact else None
    kill_point("recording")
    version = ctx.warehouse.manifest()["version"] if ctx.warehouse.exists() else 0
    state.record(stage.name, {
        "fingerprint": print_, "completed_at": dt.datetime.now(dt.UTC).isoformat(
            timespec="seconds"), "warehouse_version": version, "rows": outcome.rows,
        "seconds": round(seconds, 3), "outputs": outcome.outputs, **outcome.extra})
    if outcome.note:
        say(f"  {outcome.note}")
    return StageResult(stage.name, "ran", outcome.note, seconds, outcome.rows, peak, print_,
                       outcome.outputs)


# ---------------------------------------------------------------------- load
def _input_folders(input_dir: Path) -> list[Path]:
    """The folders to load, in order: ``input_dir`` itself when it holds contract tables,
    else its monthly deliveries (``deliveries/YYYY-MM`` as ``pbc synth --deliveries
    monthly`` writes them, or ``YYYY-MM`` folders directly inside it)."""
    from pbc.warehouse.load import LoadError, discover

    found, _ = discover(Path(input_dir))
    if found:
        return [Path(input_dir).resolve()]
    for base in (Path(input_dir) / "deliveries", Path(input_dir)):
        months = sorted(p for p in base.iterdir() if p.is_dir() and len(p.name) == 7
                        and p.name[4] == "-" and p.name[:4].isdigit()) if base.is_dir() else []
        if months:
            return [p.resolve() for p in months]
    raise LoadError(f"{input_dir}: no input tables found (expected files named after the "
                    "contract tables, e.g. apc_spells.parquet, or monthly delivery folders "
                    "deliveries/YYYY-MM)")


def _input_files(ctx: Context) -> list[tuple[str, str, str]]:
    """(folder, table, SHA-256) of every input file found (hashed once a run)."""
    from pbc.warehouse.load import content_hash, discover

    if ctx.input_hashes is None:
        out = []
        for folder in ctx.inputs:
            found, _ = discover(folder)
            out += [(str(folder), name, content_hash(path))
                    for name, path in sorted(found.items())]
        ctx.input_hashes = out
    return ctx.input_hashes


def _load_inputs(ctx: Context) -> dict[str, Any]:
    return {"files": _input_files(ctx)}


def _loaded(ctx: Context, record: dict[str, Any]) -> bool:
    """Every input file is already in the warehouse (the load's own test: a table's sources
    or a reference file's hash; :func:`pbc.warehouse.load.load`)."""
    if not ctx.warehouse.exists():
        return False
    manifest = ctx.warehouse.manifest()
    for _, name, digest in _input_files(ctx):
        table = name.removeprefix("revisions/")
        entry = manifest["tables"].get(table) or {}
        known = manifest.get("files", {}).get(table, {}).get("sha256")
        if digest not in entry.get("sources", {}) and known != digest:
            return False
    return True


def _load(ctx: Context, cb: Callback) -> Outcome:
    from pbc.warehouse.load import load

    rows = quarantined = 0
    n = len(ctx.inputs)
    for i, folder in enumerate(ctx.inputs):
        def step(s: str, done: int, total: int, i: int = i, name: str = folder.name) -> None:
            cb(f"{name}: {s}" if n > 1 else s, i * total + done, n * total)

        report = load(folder, ctx.warehouse, progress=step)
        rows += report.rows_in
        quarantined += report.rows_quarantined
    cb("done", 1, 1)
    return Outcome(rows, [], f"{rows:,} rows in, {quarantined:,} quarantined "
                   f"(warehouse version {ctx.warehouse.manifest()['version']})")


def _load_prerequisite(ctx: Context) -> str | None:
    return "no --input given: the warehouse is used as it is" if not ctx.inputs else None


# ---------------------------------------------------------------------- price
PRICING_NEEDS = ("providers", "tariff_apc", "tariff_op", "tariff_ae")


def _price_prerequisite(ctx: Context) -> str | None:
    missing = [t for t in PRICING_NEEDS if not ctx.has(t)]
    if missing:
        return f"cannot price: the warehouse has no {', '.join(missing)} (load them first)"
    return None


def _price_inputs(ctx: Context) -> dict[str, Any]:
    wh = ctx.warehouse
    settings = (wh.manifest().get("checksums") or {}).get("reference/tariff_settings.toml")
    return {"tables": table_hashes(wh, [t for t in input_tables(wh)
                                        if t not in _DOWNSTREAM_OUTPUTS]),
            "tariff_settings": settings}


def _price(ctx: Context, cb: Callback) -> Outcome:
    from pbc.services.pricing import run_pricing

    cb("pricing and attribution", 0, 1)
    report = run_pricing(ctx.warehouse)
    cb("pricing and attribution", 1, 1)
    rows = report.rows_priced  # of the partitions priced (the others are kept)
    money = sum(float(m) for _, _, m in report.by_service_line)
    return Outcome(rows, [], f"{rows:,} rows priced, £{money:,.2f} in all "
                   f"(warehouse version {report.version}); {report.partitions_text()}")


def _acting_for(ctx: Context) -> str:
    """The role and organisation a stage acts for (part of its fingerprint; not the user's
    name: another user of the same role sees the same)."""
    return f"{ctx.who.role}:{ctx.who.organisation}"


def _has_priced(ctx: Context, record: dict[str, Any] | None = None) -> bool:
    return ctx.has("priced_activity")


def _year_before(financial_year: str) -> str:
    from pbc.calendar import format_financial_year, parse_financial_year

    return format_financial_year(parse_financial_year(financial_year) - 1)


def _priced_rows(ctx: Context, years: list[str] | None = None) -> int:
    """Rows of priced activity (of ``years``, default all): the rows a stage after pricing
    works over, for its rows per second."""
    where = ""
    if years:
        where = " WHERE financial_year IN (" + ", ".join("?" for _ in years) + ")"
    return int(ctx.warehouse.query(f"SELECT count(*) FROM priced_activity{where}",
                                   list(years or []))[0][0])


# ---------------------------------------------------------------------- budgets
def _policy_year(ctx: Context) -> str:
    from pbc.budgets.policy import read_policy

    assert ctx.policy is not None
    return read_policy(ctx.policy).financial_year


def _budgets_prerequisite(ctx: Context) -> str | None:
    if ctx.policy is None:
        return "no --policy given: no budgets are set (and so no monitoring)"
    if not _has_priced(ctx):
        return "no priced activity: budgets start from prior-year spend"
    return None


def _budgets_inputs(ctx: Context) -> dict[str, Any]:
    from pbc.decisions import DecisionStore
    from pbc.services.optouts import recorded_opt_outs

    assert ctx.policy is not None
    with DecisionStore.beside(ctx.warehouse.root) as store:
        opt_outs = [(o.id, o.holder_code, o.service_line) for o in recorded_opt_outs(
            store, ctx.who.organisation, _policy_year(ctx))]
    return {"tables": table_hashes(ctx.warehouse, BUDGET_INPUTS),
            "policy": hashlib.sha256(ctx.policy.read_bytes()).hexdigest(),
            "opt_outs": opt_outs, "acting_for": _acting_for(ctx)}


def _budget_version_exists(ctx: Context, record: dict[str, Any]) -> bool:
    from pbc.decisions import DecisionStore

    if not ctx.has("budget_phasing") or ctx.policy is None:
        return False
    with DecisionStore.beside(ctx.warehouse.root) as store:
        versions = {v.version for v in store.history(_policy_year(ctx))}
    return record.get("version") in versions


def _budgets(ctx: Context, cb: Callback) -> Outcome:
    from pbc.services.budgets import set_indicative_budgets

    assert ctx.policy is not None
    cb("budgets", 0, 1)
    run = set_indicative_budgets(ctx.warehouse, ctx.policy, ctx.who,
                                 reason=f"pbc run ({ctx.policy.name})",
                                 statements=ctx.folder / "budget-statements")
    cb("budgets", 1, 1)
    total = int(run.result.frame.budget.sum()) / 100
    rows = _priced_rows(ctx, [_year_before(run.result.policy.financial_year)])
    return Outcome(rows, [str(p) for p in run.files],
                   f"{run.result.policy.financial_year}: £{total:,.2f} across "
                   f"{run.result.frame.practice_code.nunique()} practices (budget version "
                   f"{run.version}, draft); statements in {run.statements}",
                   {"version": run.version})


# ---------------------------------------------------------------------- monitoring
def _period(ctx: Context) -> str | None:
    """The month monitored: ``--month``, else the last month of the budget year with
    priced activity (None: none yet)."""
    from pbc.calendar import parse_financial_year
    from pbc.services.monitoring import latest_month

    if ctx.month is not None:
        return ctx.month
    fy = _policy_year(ctx)
    month = latest_month(ctx.warehouse, fy)
    if month == 0:
        return None
    start = parse_financial_year(fy)
    year, m = (start, month + 3) if month <= 9 else (start + 1, month - 9)
    return f"{year}-{m:02d}"


def _monitoring_prerequisite(ctx: Context) -> str | None:
    if ctx.policy is None:
        return "no --policy given, so no budgets to monitor against"
    if not ctx.done("budgets"):
        return f"no budgets ({ctx.results['budgets'].reason})"
    if _period(ctx) is None:
        return (f"no priced activity in the budget year {_policy_year(ctx)} yet: nothing to "
                "monitor (give --month, or load the year's activity)")
    return None


def _monitoring_inputs(ctx: Context) -> dict[str, Any]:
    from pbc.decisions import DecisionStore
    from pbc.services.monitoring import parse_period

    period = _period(ctx)
    assert period is not None
    fy, _ = parse_period(period)
    with DecisionStore.beside(ctx.warehouse.root) as store:
        chosen = store.current(fy, with_lines=False)
    return {"tables": table_hashes(ctx.warehouse, MONITORING_INPUTS), "period": period,
            "budget": (chosen.version, chosen.status) if chosen else None,
            "acting_for": _acting_for(ctx)}


def _files_present(ctx: Context, record: dict[str, Any]) -> bool:
    outputs = record.get("outputs") or []
    return bool(outputs) and all(Path(p).is_file() for p in outputs)


def _monitoring(ctx: Context, cb: Callback) -> Outcome:
    from pbc.monitoring.position import in_pounds
    from pbc.services.monitoring import monthly_position

    period = _period(ctx)
    assert period is not None
    out = ctx.folder / "monitoring"
    out.mkdir(parents=True, exist_ok=True)
    written, summary = [], ""
    for i, level in enumerate(MONITORING_LEVELS):
        cb(level, i, len(MONITORING_LEVELS))
        pos = monthly_position(ctx.warehouse, ctx.who, period, level=level)  # type: ignore[arg-type]
        path = out / f"position_{period}_{level}.csv"
        tmp = path.with_name(f".{path.name}.tmp")
        in_pounds(pos.frame).to_csv(tmp, index=False)
        os.replace(tmp, path)
        written.append(str(path))
        if level == "commissioner":
            total = pos.frame[pos.frame.service_line == "all"]
            if not total.empty:
                r = total.iloc[0]
                summary = (f"; commissioner: spend to date £{int(r.spend_to_date) / 100:,.2f} "
                           f"against £{int(r.budget_to_date) / 100:,.2f} (budget version "
                           f"{pos.budget_version}, {pos.budget_status})")
    cb("done", len(MONITORING_LEVELS), len(MONITORING_LEVELS))
    rows = _priced_rows(ctx, [pos.financial_year, _year_before(pos.financial_year)])
    return Outcome(rows, written, f"position at the end of {period}{summary}: {out}")


# ---------------------------------------------------------------------- indicators
def _indicators_prerequisite(ctx: Context) -> str | None:
    return None if _has_priced(ctx) else "no priced activity to benchmark"


def _indicators_inputs(ctx: Context) -> dict[str, Any]:
    wh = ctx.warehouse
    return {"tables": table_hashes(wh, [*input_tables(wh), "priced_activity"]),
            "year": ctx.year, "indicators": ctx.indicators}


def _indicators(ctx: Context, cb: Callback) -> Outcome:
    from pbc.services.benchmarking import benchmark_all, write_result

    out = ctx.folder / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    cb("indicators", 0, 1)
    results = benchmark_all(ctx.warehouse, ctx.indicators, level="practice",
                            financial_year=ctx.year)
    written: list[str] = []
    for i, result in enumerate(results, start=1):
        cb(result.indicator.id, i, len(results) + 1)
        written += [str(p) for p in write_result(
            result, out / f"benchmark_{result.indicator.id}.xlsx")]
    cb("done", 1, 1)
    rows = _priced_rows(ctx, [results[0].financial_year] if ctx.year and results and
                        results[0].financial_year else None)
    return Outcome(rows, written, f"{len(results)} indicators benchmarked (practice level): "
                   f"{out}/benchmark_*.xlsx")


# ---------------------------------------------------------------------- risk
def _risk_prerequisite(ctx: Context) -> str | None:
    from pbc.services.risk import data_span, plan_windows

    if not ctx.has("patients"):
        return "no patients table: case finding scores registered patients"
    try:
        plan_windows(*data_span(ctx.warehouse))
    except WarehouseError as e:
        return str(e).replace(f"{ctx.warehouse.root}: ", "")
    return None


def _risk_inputs(ctx: Context) -> dict[str, Any]:
    from pbc.services.risk import FEATURE_INPUTS

    return {"tables": table_hashes(ctx.warehouse, FEATURE_INPUTS), "acting_for": _acting_for(ctx)}


def _has_scores(ctx: Context, record: dict[str, Any]) -> bool:
    return ctx.has("risk_scores")


def _risk(ctx: Context, cb: Callback) -> Outcome:
    from pbc.services import risk

    cb("train", 0, 2)
    trained = risk.train(ctx.warehouse, ctx.who)
    cb("score", 1, 2)
    scored = risk.score(ctx.warehouse, ctx.who)
    cb("done", 2, 2)
    v = trained.validation
    return Outcome(scored.rows, [], f"model {trained.model.version} (AUC {v.auc.auc:.3f}); "
                   f"{scored.rows:,} patients scored at {scored.reference_date}")


STAGE_LIST: tuple[Stage, ...] = (
    Stage("load", "load the input files", _load_prerequisite, _load_inputs, _loaded, _load),
    Stage("price", "price and attribute", _price_prerequisite, _price_inputs, _has_priced,
          _price),
    Stage("budgets", "set indicative budgets", _budgets_prerequisite, _budgets_inputs,
          _budget_version_exists, _budgets),
    Stage("monitoring", "monthly position", _monitoring_prerequisite, _monitoring_inputs,
          _files_present, _monitoring),
    Stage("indicators", "benchmark the indicators", _indicators_prerequisite,
          _indicators_inputs, _files_present, _indicators),
    Stage("risk", "case finding: train and score", _risk_prerequisite, _risk_inputs,
          _has_scores, _risk),
)
assert tuple(s.name for s in STAGE_LIST) == STAGES
