"""``pbc run``: the whole pipeline as one command, resumable and skipping what has not changed.

One small economy (4 practices at a fifth of their patients, two years) is run once through
every stage; the other tests work on copies of it (``cp -a`` keeps the warehouse's hard
links). The kill test runs ``pbc`` as a separate process and ends it during pricing: by
SIGKILL once the load is recorded, and at a named point (``PBC_TEST_KILL_AT=price:adopted``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console

from pbc.budgets.policy import PolicyError
from pbc.services.principal import Principal
from pbc.services.run import STAGES, RunError, RunReport, run_pipeline
from pbc.warehouse import Warehouse, WarehouseError
from pbc.warehouse.load import LoadError

SRC = Path(__file__).resolve().parents[1] / "src"
DEMO_POLICY = SRC / "pbc" / "reference" / "budgets" / "demo_policy.toml"
INDICATORS = ["emergency_admissions"]  # one indicator keeps the tests fast
pytestmark = pytest.mark.slow


@contextlib.contextmanager
def _no_bar(title: str) -> Iterator[Callable[[str, int, int], None]]:
    yield lambda step, done, total: None


def _run(wh: Path, out: Path, said: list[str], **kw: object) -> RunReport:
    kw.setdefault("indicators", INDICATORS)
    return run_pipeline(Warehouse(wh), out, principal=lambda _: Principal(
        "analyst", "commissioner", "Q99"), progress=_no_bar, say=said.append, **kw)  # type: ignore[arg-type]


def _status(report: RunReport) -> dict[str, str]:
    return {s.stage: s.status for s in report.stages}


def _budget_versions(wh: Path) -> list[int]:
    from pbc.decisions import DecisionStore

    with DecisionStore.beside(wh) as store:
        return [v.version for v in store.history("2025-26")]


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Inputs, a policy for 2025-26 (set from 2024-25 spend), and a warehouse and run folder
    after one complete run (``first.json``: that run's report)."""
    from pbc.synth import SynthConfig, generate

    d = tmp_path_factory.mktemp("run")
    generate(SynthConfig(practices=4, groups=2, local_authorities=2, seed=3, years=2,
                         start_year=2024, list_scale=0.2), d / "in")
    (d / "policy.toml").write_text(DEMO_POLICY.read_text(encoding="utf-8").replace(
        'financial_year = "2026-27"', 'financial_year = "2025-26"'), encoding="utf-8")
    said: list[str] = []
    report = _run(d / "wh", d / "out", said, input_dir=d / "in", policy=d / "policy.toml")
    (d / "first.json").write_text(json.dumps({"status": _status(report), "said": said}))
    return d


def _copy(done: Path, tmp_path: Path) -> tuple[Path, Path]:
    for name in ("wh", "out"):
        subprocess.run(["cp", "-a", str(done / name), str(tmp_path / name)], check=True)
    return tmp_path / "wh", tmp_path / "out"


def test_first_run_runs_every_stage_and_writes_its_outputs(done: Path) -> None:
    first = json.loads((done / "first.json").read_text())
    assert first["status"] == dict.fromkeys(STAGES, "ran")
    out = done / "out"
    positions = sorted(p.name for p in (out / "monitoring").iterdir())
    assert positions == [f"position_2026-03_{lvl}.csv"
                         for lvl in ("commissioner", "group", "practice")]
    assert (out / "benchmarks" / "benchmark_emergency_admissions.xlsx").is_file()
    assert any((out / "budget-statements").iterdir())
    wh = Warehouse(done / "wh")
    assert {"priced_activity", "budget_phasing", "risk_scores"} <= set(wh.table_names())
    assert wh.verify() == []
    state = json.loads((out / "state.json").read_text())
    assert sorted(state["stages"]) == sorted(STAGES)


def test_summary_json_and_table_have_every_stage(done: Path) -> None:
    summary = json.loads((done / "out" / "summary.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == list(STAGES)
    for s in summary["stages"]:
        assert s["status"] == "ran"
        assert s["seconds"] > 0 and s["rows"] > 0
        assert s["rows_per_second"] == pytest.approx(s["rows"] / s["seconds"])
        assert s["peak_rss_bytes"] > 10 * 2**20  # a Python process with DuckDB loaded
        assert len(s["fingerprint"]) == 64
    assert summary["peak_rss_bytes"] >= max(s["peak_rss_bytes"] for s in summary["stages"])
    # the load's rows are the rows read; the price's the rows priced
    rows = {s["stage"]: s["rows"] for s in summary["stages"]}
    wh = Warehouse(done / "wh")
    assert rows["price"] == wh.query("SELECT count(*) FROM priced_activity")[0][0]
    assert rows["load"] >= rows["price"]

    from pbc.cli import print_run_summary
    from pbc.services.run import StageResult

    console = Console(record=True, width=100)
    report = RunReport(done / "out", [StageResult(**{k: v for k, v in s.items()
                                                     if k != "rows_per_second"})
                                      for s in summary["stages"]],
                       summary["warehouse_version"], summary["peak_rss_bytes"])
    print_run_summary(report, console)
    text = console.export_text()
    for stage in STAGES:
        assert f"│ {stage} " in text
    assert "rows/s" in text and "peak RSS" in text


def test_peak_memory_is_each_stage_own_and_the_run_peak_is_the_largest(
        done: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first (fake) stage holds 300 MB for a moment, the second nothing: the second's
    peak must not include the first's, and the run's peak must."""
    import pbc.services.run as run_module
    from pbc.services.run import Outcome, Stage

    def big(ctx: object, cb: object) -> Outcome:
        block = bytearray(300 * 2**20)
        block[::4096] = b"x" * len(block[::4096])  # touch every page
        del block
        return Outcome(1, [])

    def small(ctx: object, cb: object) -> Outcome:
        return Outcome(1, [])

    def stage(name: str, execute: Callable[..., Outcome]) -> Stage:
        return Stage(name, name, lambda c: None, lambda c: {"at": time.time()},
                     lambda c, r: False, execute)

    monkeypatch.setattr(run_module, "STAGE_LIST", (stage("load", big), stage("price", small)))
    report = _run(done / "wh", tmp_path / "out", [])
    first, second = (s.peak_rss_bytes or 0 for s in report.stages[:2])
    assert first - second > 250 * 2**20
    assert report.peak_rss_bytes >= first
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["peak_rss_bytes"] == report.peak_rss_bytes


def test_rerun_with_nothing_changed_recomputes_nothing(done: Path, tmp_path: Path) -> None:
    wh, out = _copy(done, tmp_path)
    version = Warehouse(wh).current.name  # type: ignore[union-attr]
    budgets = _budget_versions(wh)
    positions = {p: p.stat().st_mtime_ns for p in (out / "monitoring").iterdir()}
    said: list[str] = []
    report = _run(wh, out, said, input_dir=done / "in", policy=done / "policy.toml")
    assert _status(report) == dict.fromkeys(STAGES, "unchanged")
    assert report.nothing_changed
    assert all("not recomputed" in line for line in said)
    assert Warehouse(wh).current.name == version  # no new warehouse version
    assert _budget_versions(wh) == budgets  # no new budget version
    assert {p: p.stat().st_mtime_ns for p in (out / "monitoring").iterdir()} == positions


def test_changed_policy_reruns_budgets_and_monitoring_only(done: Path, tmp_path: Path) -> None:
    wh, out = _copy(done, tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text((done / "policy.toml").read_text(encoding="utf-8")
                      + "\n# revised\n", encoding="utf-8")
    before = _budget_versions(wh)
    said: list[str] = []
    report = _run(wh, out, said, input_dir=done / "in", policy=policy)
    assert _status(report) == {"load": "unchanged", "price": "unchanged", "budgets": "ran",
                               "monitoring": "ran", "indicators": "unchanged",
                               "risk": "unchanged"}
    assert _budget_versions(wh) == [*before, before[-1] + 1]
    state = json.loads((out / "state.json").read_text())
    assert state["stages"]["budgets"]["version"] == before[-1] + 1
    # and once more: now nothing changed
    again = _run(wh, out, [], input_dir=done / "in", policy=policy)
    assert _status(again) == dict.fromkeys(STAGES, "unchanged")


def test_changed_input_reruns_from_the_load(done: Path, tmp_path: Path) -> None:
    """A changed input file: loaded, priced and everything after it reruns (the run is cut
    at pricing here to keep the test short; the state then holds what reran)."""
    import shutil

    import pyarrow.parquet as pq

    wh, out = _copy(done, tmp_path)
    inputs = tmp_path / "in"
    shutil.copytree(done / "in", inputs)
    tariff = pq.read_table(inputs / "tariff_op.parquet")
    pq.write_table(tariff.take(list(range(tariff.num_rows))[::-1]), inputs / "tariff_op.parquet")
    report = _run(wh, out, [], input_dir=inputs, policy=done / "policy.toml", until="price")
    assert _status(report)["load"] == "ran" and _status(report)["price"] == "ran"


def test_missing_prerequisites_are_skipped_and_said(done: Path, tmp_path: Path) -> None:
    wh, out = _copy(done, tmp_path)
    said: list[str] = []
    report = _run(wh, out, said)  # no --input, no --policy
    by = {s.stage: s for s in report.stages}
    assert by["load"].status == "skipped" and "no --input" in by["load"].reason
    assert by["budgets"].status == "skipped" and "no --policy" in by["budgets"].reason
    assert by["monitoring"].status == "skipped" and "no budgets" in by["monitoring"].reason
    assert {by[s].status for s in ("price", "indicators", "risk")} == {"unchanged"}
    for stage in ("load", "budgets", "monitoring"):
        assert any("skipped" in line and by[stage].reason in line for line in said), stage
    summary = json.loads((out / "summary.json").read_text())
    assert {s["stage"]: s["status"] for s in summary["stages"]} == _status(report)
    assert all(s["reason"] for s in summary["stages"] if s["status"] == "skipped")


def test_a_failed_stage_stops_the_run_and_is_in_the_summary(done: Path,
                                                             tmp_path: Path) -> None:
    """Budgets for 2024-25 start from 2023-24 spend, which the warehouse does not have."""
    wh, out = _copy(done, tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text((done / "policy.toml").read_text(encoding="utf-8").replace(
        'financial_year = "2025-26"', 'financial_year = "2024-25"'), encoding="utf-8")
    said: list[str] = []
    with pytest.raises(WarehouseError, match="prior year 2023-24"):
        _run(wh, out, said, input_dir=done / "in", policy=policy)
    summary = json.loads((out / "summary.json").read_text())
    status = {s["stage"]: (s["status"], s["reason"]) for s in summary["stages"]}
    assert status["budgets"][0] == "failed" and "2023-24" in status["budgets"][1]
    assert status["load"][0] == status["price"][0] == "unchanged"
    assert all(status[s] == ("skipped", "not reached: an earlier stage failed")
               for s in ("monitoring", "indicators", "risk"))
    assert "budgets failed" in said[-1]
    # the budgets' record was removed as they started; the others stand
    assert _stages_recorded(out) == sorted(set(STAGES) - {"budgets"})


def test_refusals(done: Path, tmp_path: Path) -> None:
    with pytest.raises(RunError, match="nothing to run"):
        _run(tmp_path / "none", tmp_path / "out", [])
    with pytest.raises(LoadError, match="no such folder"):
        _run(tmp_path / "none", tmp_path / "out", [], input_dir=tmp_path / "missing")
    with pytest.raises(PolicyError, match="not found"):
        _run(tmp_path / "none", tmp_path / "out", [], input_dir=done / "in",
             policy=tmp_path / "no_policy.toml")
    with pytest.raises(RunError, match="--until"):
        _run(tmp_path / "none", tmp_path / "out", [], input_dir=done / "in", until="pricing")
    assert not (tmp_path / "none").exists()  # nothing was written


def test_input_is_a_folder_of_files_or_of_monthly_deliveries(tmp_path: Path) -> None:
    from pbc.services.run import _input_folders

    one = tmp_path / "one"
    one.mkdir()
    (one / "practices.csv").write_text("practice_code\n", encoding="utf-8")
    assert _input_folders(one) == [one.resolve()]
    months = ["2025-05", "2025-04", "2026-01"]
    for base in (tmp_path / "synth" / "deliveries", tmp_path / "plain"):
        for m in months:
            (base / m).mkdir(parents=True)
            (base / m / "apc_spells.csv").write_text("spell_id\n", encoding="utf-8")
        (base / "notes").mkdir()  # not a month: not loaded
    for given in (tmp_path / "synth", tmp_path / "plain"):
        assert [p.name for p in _input_folders(given)] == sorted(months)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LoadError, match="no input tables found"):
        _input_folders(tmp_path / "empty")


# ---------------------------------------------------------------------- kills
def _pbc(*args: str, kill_at: str | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("PBC_TEST_KILL_AT", None)
    if kill_at:
        env["PBC_TEST_KILL_AT"] = kill_at
    return subprocess.Popen([sys.executable, "-m", "pbc.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _assert_intact(wh: Path, version: str) -> None:
    """The warehouse is on ``version`` (the load's), and every version's files have the
    SHA-256 its manifest lists."""
    w = Warehouse(wh)
    assert w.current is not None and w.current.name == version
    for v in (wh / "versions").iterdir():
        if not v.name.startswith("."):
            assert w.verify(v) == [], v.name
    assert not w.has_table("priced_activity")


def _stages_recorded(out: Path) -> list[str]:
    return sorted(json.loads((out / "state.json").read_text())["stages"])


def test_killed_mid_stage_resumes_there(done: Path, tmp_path: Path) -> None:
    """Killed twice during pricing: by SIGKILL once the load is recorded, then, on the
    rerun (which skips the load), at a named point inside the pricing transaction. Each
    time the warehouse stays on the load's version and the state holds the load only; the
    third run skips the load and completes pricing."""
    out, wh = tmp_path / "out", tmp_path / "wh"
    args = ("run", "--input", str(done / "in"), "-w", str(wh), "--out", str(out),
            "--until", "price")
    p = _pbc(*args)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and p.poll() is None:
        if (out / "state.json").exists() and _stages_recorded(out) == ["load"]:
            break
        time.sleep(0.05)
    assert p.poll() is None, "the run ended before it could be killed"
    time.sleep(0.5)  # into the pricing stage
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL
    _assert_intact(wh, "000001")
    assert _stages_recorded(out) == ["load"]

    p = _pbc(*args, kill_at="price:adopted")  # inside the pricing transaction
    _, stderr = p.communicate(timeout=300)
    assert p.returncode == 137, stderr.decode()[-2000:]
    _assert_intact(wh, "000001")
    assert _stages_recorded(out) == ["load"]

    said: list[str] = []
    report = _run(wh, out, said, input_dir=done / "in", until="price")
    assert _status(report)["load"] == "unchanged"
    assert _status(report)["price"] == "ran"
    assert _stages_recorded(out) == ["load", "price"]
    assert Warehouse(wh).verify() == []
    assert Warehouse(wh).current.name == "000002"  # type: ignore[union-attr]
