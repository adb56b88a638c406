"""The README's tour, run verbatim as a newcomer would, in a fresh folder.

Every command of the tour's code block is run in order in a temporary folder (with the
repository's ``examples/`` beside it), through bash, with this environment's ``pbc`` first on
the PATH; each must exit 0 and print no traceback or warning."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def tour_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## A short tour", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the tour has no bash block"
    commands: list[str] = []
    pending = ""
    for line in block.group(1).splitlines():
        code = line.split("  #", 1)[0].rstrip()
        if not code.strip() or code.lstrip().startswith("#"):
            continue
        if code.endswith("\\"):
            pending += code[:-1] + " "
            continue
        commands.append((pending + code).strip())
        pending = ""
    return commands


def test_the_tour_is_what_the_test_runs() -> None:
    commands = tour_commands()
    assert commands[0].startswith("pbc synth") and len(commands) >= 15
    assert all(c.startswith("pbc ") for c in commands)


def test_readme_tour_runs_verbatim(tmp_path: Path) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "COLUMNS": "100"}
    for command in tour_commands():
        run = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=900, check=False)
        out = run.stdout + run.stderr
        assert run.returncode == 0, f"{command}\n{out[-3000:]}"
        for noise in ("Traceback", "Exception ignored", "Warning:"):
            assert noise not in out, f"{command}: {noise!r}\n{out[-3000:]}"
    assert (tmp_path / "position.csv").exists() and (tmp_path / "quarantine.csv").exists()
    # the statements where the tour asked (--out), the year and version in their names
    assert (tmp_path / "statements" / "practice_A81000_2025-26_v1.xlsx").exists()
