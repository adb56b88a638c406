"""Fault injection: load, price and risk training killed at many points.

Each change runs as a separate ``pbc`` process that is killed, either at a named point of
the warehouse transaction (``PBC_TEST_KILL_AT``: the process calls ``os._exit`` there, as
a kill would: nothing cleaned up, nothing flushed) or by SIGKILL after a delay. After every
kill, every committed version's files must still have the SHA-256 its manifest lists
(reference files and the risk model included), no version may have changed, and the same
command run again must succeed and leave every version intact.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pbc.warehouse import Warehouse

SRC = Path(__file__).resolve().parents[1] / "src"
pytestmark = pytest.mark.slow


def _pbc(*args: str, kill_at: str | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "PBC_DEMO_NO_SERVE": "1"}
    env.pop("PBC_TEST_KILL_AT", None)
    if kill_at:
        env["PBC_TEST_KILL_AT"] = kill_at
    return subprocess.Popen([sys.executable, "-m", "pbc.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _run(*args: str, kill_at: str | None = None) -> int:
    p = _pbc(*args, kill_at=kill_at)
    _, stderr = p.communicate(timeout=300)
    if p.returncode not in (0, 137):
        raise AssertionError(f"pbc {' '.join(args)} failed: {stderr.decode()[-2000:]}")
    return p.returncode


def _versions(root: Path) -> dict[str, dict[str, str]]:
    """Each committed version's manifest checksums."""
    out = {}
    for d in sorted((root / "versions").iterdir()):
        if not d.name.startswith(".") and (d / "manifest.json").exists():
            out[d.name] = json.loads((d / "manifest.json").read_text())["checksums"]
    return out


def _assert_intact(root: Path, before: dict[str, dict[str, str]], current: str) -> None:
    wh = Warehouse(root)
    after = _versions(root)
    for name, sums in before.items():
        if name in after:  # a version may be pruned by a later commit, never changed
            assert after[name] == sums, f"version {name}: manifest changed"
    for name in after:
        assert wh.verify(root / "versions" / name) == [], f"version {name}"
    cur = wh.current
    assert cur is not None and cur.name in (current, *(n for n in after if n > current))
    assert wh.query("SELECT count(*) FROM practices")[0][0] > 0


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse after load, price and risk train (three versions), plus a new delivery
    (changed tariff settings, a changed groups file) to load into it."""
    d = tmp_path_factory.mktemp("faults")
    assert _run("synth", "--out", str(d / "in"), "--practices", "4", "--groups", "2",
                "--years", "2", "--seed", "3") == 0
    wh = str(d / "wh")
    for args in (("load", str(d / "in"), "-w", wh), ("price", "-w", wh),
                 ("risk", "train", "-w", wh)):
        assert _run(*args) == 0
    new = d / "in2"
    subprocess.run(["cp", "-a", str(d / "in"), str(new)], check=True)
    with open(new / "tariff_settings.toml", "a", encoding="utf-8") as f:
        f.write("\n# revised\n")
    groups = pq.read_table(new / "groups.parquet")
    pq.write_table(groups.take(list(range(groups.num_rows))[::-1]), new / "groups.parquet")
    return d


def _copy(base: Path, tmp_path: Path) -> Path:
    """A copy of the base warehouse that keeps its hard links (``cp -a``)."""
    subprocess.run(["cp", "-a", str(base / "wh"), str(tmp_path / "wh")], check=True)
    return tmp_path / "wh"


COMMANDS = {
    "load": lambda base, wh: ("load", str(base / "in2"), "-w", str(wh)),
    "price": lambda base, wh: ("price", "-w", str(wh), "--full"),  # already priced
    "train": lambda base, wh: ("risk", "train", "-w", str(wh)),
}
POINTS = {
    "load": ("linked", "put_file", "adopted", "hashed", "renamed", "swapped"),
    "price": ("linked", "adopted", "before_rename", "catalogued"),
    "train": ("put_file", "hashed", "renamed", "cataloguing", "swapped", "pruning"),
}
#: kills after which the same change is run again to the end (each rerun costs a process)
RERUN = {("load", "put_file"), ("load", "swapped"), ("price", "catalogued"),
         ("train", "put_file"), ("train", "renamed"),
         ("train", "cataloguing")}


@pytest.mark.parametrize(("command", "point"),
                         [(c, p) for c, points in POINTS.items() for p in points])
def test_killed_at_a_named_point(base: Path, tmp_path: Path, command: str, point: str) -> None:
    wh = _copy(base, tmp_path)
    before = _versions(wh)
    current = Warehouse(wh).current.name  # type: ignore[union-attr]
    assert _run(*COMMANDS[command](base, wh), kill_at=point) == 137, "kill point not reached"
    _assert_intact(wh, before, current)
    if (command, point) not in RERUN:
        return
    # the same change again, to the end: it commits, and no older version changes
    assert _run(*COMMANDS[command](base, wh)) == 0
    _assert_intact(wh, before, current)
    assert Warehouse(wh).current.name > current  # type: ignore[union-attr]


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("delay", [1.5, 3.0])
def test_sigkill_after_a_delay(base: Path, tmp_path: Path, command: str, delay: float) -> None:
    wh = _copy(base, tmp_path)
    before = _versions(wh)
    current = Warehouse(wh).current.name  # type: ignore[union-attr]
    p = _pbc(*COMMANDS[command](base, wh))
    time.sleep(delay)
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)  # reaps it and closes its pipe
    _assert_intact(wh, before, current)
    assert _run(*COMMANDS[command](base, wh)) == 0
    _assert_intact(wh, before, current)
