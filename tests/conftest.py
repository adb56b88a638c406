"""Shared fixtures: a small synthetic economy, a loaded warehouse, the shared real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
NHSE_DIR = SHARED_DATA / "nhse-practice-weighted-populations"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, what: str) -> None:
    """Skip when something a test needs is missing; in CI (CI=true) fail instead."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI needs {what}, but it is missing", pytrace=False)
    pytest.skip(f"needs {what}")


@pytest.fixture(scope="session")
def nhse_file() -> Path:
    path = NHSE_DIR / "2024_2025.csv"
    require(path.exists(), f"the NHS England weighted-population file at {path}")
    return path
