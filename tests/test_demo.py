"""``pbc demo`` as a newcomer runs it: every stage, no traceback, no warning, nothing ignored."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from pbc.services.demo import DemoNotClean, nothing_ignored

NOISE = ("Traceback", "Exception ignored", "Warning:", "DROP TABLE")


@pytest.mark.slow
def test_demo_runs_clean(tmp_path: Path) -> None:
    env = {**os.environ, "PBC_DEMO_NO_SERVE": "1", "COLUMNS": "100"}
    out = subprocess.run(
        [sys.executable, "-m", "pbc.cli", "demo", "--practices", "12", "--out",
         str(tmp_path / "demo")],
        capture_output=True, text=True, env=env, timeout=900, check=False)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    for noise in NOISE:
        assert noise not in text, f"{noise!r} in the demo's output:\n{text[-3000:]}"
    assert "Outputs" in out.stdout


def test_an_ignored_exception_fails_the_run() -> None:
    class Finaliser:
        def __del__(self) -> None:
            raise RuntimeError("cannot drop cached table")

    with pytest.raises(DemoNotClean, match="cannot drop cached table"), nothing_ignored():
        Finaliser()


def test_a_warning_fails_the_run() -> None:
    with pytest.raises(UserWarning, match="careful"), nothing_ignored():
        warnings.warn("careful", UserWarning, stacklevel=1)
