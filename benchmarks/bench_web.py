"""The web app under load: N concurrent signed-in users against ``pbc serve`` on 127.0.0.1.

The app runs as ``pbc serve`` in its own process (uvicorn, ``--workers``, the background
warm-up on) over a warehouse with budgets and risk scores. By default (and in ``make
bench``) that is the target's **10%-national warehouse** (``--list-scale 0.1``): every
English practice (6,553) with a tenth of its list, 2024-25 and 2025-26 loaded and priced,
2025-26 budgets under one national commissioner, as ``bench_monitoring.py`` prepares it
(its folder ``WORKDIR/monitoring-0.1`` is reused when present, else prepared first; it
takes about 15 minutes), copied to ``WORKDIR/web-0.1`` (Parquet files hard-linked) and the
risk model trained and scored on the copy (about 6 minutes). ``--practices 8`` builds a
small economy instead (8 practices, two years, the demo's budget policy), and
``--warehouse W`` uses an existing one (e.g. ``demo/warehouse`` after ``make demo``). The
run waits for the app's warm-up (``/healthz`` says ``ready``) and reports how long it took.
Users
are added to its decision store with passwords: one commissioner per four users and
practice managers for the rest (each of its own practice). Each user signs in through the
login form (CSRF token and all), then requests its role's main pages ``--rounds`` times:

* commissioner: ``/overview``, ``/cases``;
* practice: ``/practices/CODE``, ``/practices/CODE/budget``, ``/practices/CODE/case-finding``,
  ``/cases``.

The first round of each user (the first request of each page by each user, after the
warm-up) is reported apart from the later rounds.

Baseline in the same run, at the same concurrency: ``GET /healthz`` (no login, no data)
and a vendored static file; the ratio is the pages' p95 over the baseline's. Any answer
other than 200 is an error. Target (issue 18): p95 under 300 ms with no errors, for 20
users on a 10%-national-scale warehouse.

    python benchmarks/bench_web.py [--users 20] [--rounds 5] [--workers 2]
                                   [--list-scale 0.1 | --practices 8 | --warehouse W]
                                   [--workdir bench-out]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import report

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench password 1234"
COMMISSIONER = "Q99"
STATIC = "/static/vendor/htmx.org/htmx.min.js"


def build(workdir: Path, practices: int) -> Path:
    """A small economy with budgets and risk scores (kept in ``workdir``, reused)."""
    from pbc.services import risk
    from pbc.services.budgets import set_indicative_budgets
    from pbc.services.pricing import run_pricing
    from pbc.services.principal import Principal
    from pbc.synth import SynthConfig, generate
    from pbc.warehouse import Warehouse
    from pbc.warehouse.load import load

    wh_dir = workdir / "wh"
    if (wh_dir / "current").exists():
        return wh_dir
    generate(SynthConfig(practices=practices, groups=2, local_authorities=2, seed=18,
                         years=2, start_year=2024), workdir / "in")
    wh = Warehouse(wh_dir)
    load(workdir / "in", wh)
    run_pricing(wh)
    policy = workdir / "policy.toml"
    demo_policy = ROOT / "src" / "pbc" / "reference" / "budgets" / "demo_policy.toml"
    policy.write_text(demo_policy.read_text(encoding="utf-8").replace(
        'financial_year = "2026-27"', 'financial_year = "2025-26"'), encoding="utf-8")
    who = Principal("analyst", "commissioner", COMMISSIONER)
    set_indicative_budgets(wh, policy, who, statements=workdir / "statements")
    risk.train(wh, who)
    risk.score(wh, who)
    return wh_dir


def build_national(workdir: Path, list_scale: float) -> Path:
    """The ``list_scale`` national warehouse with risk scores, in ``workdir/web-SCALE``: a
    copy of ``bench_monitoring.py``'s (prepared first if missing; left unchanged)."""
    import shutil

    from bench_monitoring import COMMISSIONER as NATIONAL
    from bench_monitoring import prepare
    from pbc.services import risk
    from pbc.services.principal import Principal
    from pbc.warehouse import Warehouse

    source = workdir / f"monitoring-{list_scale:g}"
    wh_dir = workdir / f"web-{list_scale:g}" / "wh"
    if not (wh_dir / "current").exists():
        if not (source / "wh" / "current").exists():
            prepare(str(source), list_scale)
        wh_dir.mkdir(parents=True)
        # Parquet files are never written twice (a new version writes new files): link them;
        # the decision store, manifests and catalogues are copied
        shutil.copytree(source / "wh" / "versions", wh_dir / "versions",
                        copy_function=os.link)
        for f in (wh_dir / "versions").glob("*/*"):
            if f.is_file():
                data = f.read_bytes()
                f.unlink()
                f.write_bytes(data)
        shutil.copy2(source / "wh" / "decisions.sqlite", wh_dir / "decisions.sqlite")
        (wh_dir / "current").symlink_to(os.readlink(source / "wh" / "current"))
    wh = Warehouse(wh_dir)
    if not wh.has_table("risk_scores"):
        who = Principal("analyst", "commissioner", NATIONAL)
        risk.train(wh, who)
        risk.score(wh, who)
    return wh_dir


def add_users(wh_dir: Path, users: int) -> list[tuple[str, str, str]]:
    """``users`` bench users (name, role, organisation), each with the bench password."""
    from pbc.decisions import DecisionStore
    from pbc.services.accounts import principals_for, set_password
    from pbc.services.cases import add_user
    from pbc.services.principal import Principal
    from pbc.warehouse import Warehouse

    wh = Warehouse(wh_dir)
    commissioner = str(wh.query("SELECT commissioner_code FROM practices LIMIT 1")[0][0])
    codes = [str(r[0]) for r in wh.query(
        "SELECT DISTINCT practice_code FROM risk_scores ORDER BY 1")]
    people = []
    for i in range(users):
        if i % 4 == 0:
            people.append((f"bench.c{i:02d}", "commissioner", commissioner))
        else:
            people.append((f"bench.p{i:02d}", "practice", codes[i % len(codes)]))
    admin = Principal("bench.admin", "administrator", commissioner)
    with DecisionStore.beside(wh_dir) as store:
        if not principals_for(store, "bench.admin", source="bench"):
            add_user(store, admin, "bench.admin", "administrator", commissioner)
        for name, role, org in people:
            if not principals_for(store, name, source="bench"):
                add_user(store, admin, name, role, org)
            set_password(store, admin, name, PASSWORD)
    return people


def pages_of(role: str, org: str) -> list[str]:
    if role == "commissioner":
        return ["/overview", "/cases"]
    base = f"/practices/{org}"
    return [base, f"{base}/budget", f"{base}/case-finding", "/cases"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(wh_dir: Path, port: int, workers: int, warm_timeout: float
          ) -> tuple[subprocess.Popen[bytes], float]:
    """``pbc serve`` started, and the seconds until its warm-up was ready (every worker's,
    as far as /healthz shows: each answer comes from one worker)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "pbc.cli", "serve", "--warehouse",
                             str(wh_dir), "--port", str(port), "--insecure-cookies",
                             "--workers", str(workers)], env=env)
    import httpx

    t0 = time.monotonic()
    ready = 0
    while time.monotonic() < t0 + warm_timeout:
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            ready = ready + 1 if r.json().get("warm_up") in ("ready", "off") else 0
            if ready >= 4 * workers:  # several answers in a row: every worker is ready
                return proc, time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"pbc serve was not warm within {warm_timeout:.0f} s")


def sign_in(client: Any, name: str) -> None:
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    if not token:
        raise RuntimeError(f"no CSRF token on the login page ({page.status_code})")
    r = client.post("/login", data={"username": name, "password": PASSWORD,
                                    "csrf_token": token.group(1)})
    if r.status_code != 303:
        raise RuntimeError(f"{name} could not sign in: {r.status_code}")


def run(base: str, people: list[tuple[str, str, str]], rounds: int, *, baseline: bool
        ) -> tuple[list[float], list[float], list[str]]:
    """Every user in its own thread, starting together: request times (s) of the first
    round (cold: the app's cache empty) and of the later rounds, and the errors."""
    import httpx

    cold: list[float] = []
    times: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(len(people))

    def user(name: str, role: str, org: str) -> None:
        with httpx.Client(base_url=base, timeout=60, follow_redirects=False) as client:
            paths = ["/healthz", STATIC] if baseline else pages_of(role, org)
            if not baseline:
                sign_in(client, name)
            start.wait()
            for n in range(rounds):
                for path in paths:
                    t0 = time.perf_counter()
                    r = client.get(path)
                    dt = time.perf_counter() - t0
                    with lock:
                        (cold if n == 0 else times).append(dt)
                        if r.status_code != 200:
                            errors.append(f"{name} {path}: {r.status_code}")

    threads = [threading.Thread(target=user, args=p) for p in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return cold, times, errors


def percentiles(times: list[float]) -> dict[str, float]:
    q = statistics.quantiles(times, n=100, method="inclusive")
    return {"requests": len(times), "p50_ms": round(q[49] * 1000, 1),
            "p95_ms": round(q[94] * 1000, 1), "max_ms": round(max(times) * 1000, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--warehouse", type=Path, default=None)
    ap.add_argument("--list-scale", type=float, default=0.1)
    ap.add_argument("--practices", type=int, default=None,
                    help="a small economy of this many practices instead")
    ap.add_argument("--workdir", type=Path, default=Path("bench-out"))
    ap.add_argument("--warm-timeout", type=float, default=1800)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    wh_dir = (a.warehouse or (build(a.workdir / "web", a.practices) if a.practices
                              else build_national(a.workdir, a.list_scale)))
    built = time.perf_counter() - t0
    people = add_users(wh_dir, a.users)
    port = free_port()
    proc, warm_s = serve(wh_dir, port, a.workers, a.warm_timeout)
    try:
        base = f"http://127.0.0.1:{port}"
        bc, bt, be = run(base, people, a.rounds, baseline=True)
        pc, pt, pe = run(base, people, a.rounds, baseline=False)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    b, p = percentiles(bc + bt), percentiles(pt)
    print("  load average after the run:", Path("/proc/loadavg").read_text().split()[:3])
    rows = [{"what": "baseline (/healthz, a static file)", **b, "errors": len(be)},
            {"what": "pages, first round (after the warm-up)", **percentiles(pc)},
            {"what": "pages, later rounds (warm)", **p},
            {"what": "pages, errors", "errors": len(pe)},
            {"what": "ratio pages/baseline", "p50": round(p["p50_ms"] / b["p50_ms"], 1),
             "p95": round(p["p95_ms"] / b["p95_ms"], 1)},
            {"users": a.users, "rounds": a.rounds, "workers": a.workers,
             "warehouse": str(wh_dir), "setup_s": round(built, 1),
             "warm_up_s": round(warm_s, 1),
             "loadavg": Path("/proc/loadavg").read_text().split()[:3],
             "target": "p95 (warm) < 300 ms, no errors (20 users, 10% national)",
             "met": p["p95_ms"] < 300 and not pe}]
    report("Web app under load (pbc serve, uvicorn, 127.0.0.1)", rows)
    for e in (be + pe)[:10]:
        print("  error:", e)
    return 0 if not (be or pe) else 1


if __name__ == "__main__":
    sys.exit(main())
