"""Shared by the coterminosity and shared-clients tests: one small synthetic economy
(4 practices, 2 groups, 2 councils, 2025-26), synthesised, loaded and priced once per test
run, and a copy of it with made-up risk scores."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

_BUILT: dict[str, object] = {}


def small_la_economy(factory: pytest.TempPathFactory) -> object:
    """The Warehouse of the small economy (built on first use, then shared)."""
    if "plain" not in _BUILT:
        from pbc.services.pricing import run_pricing
        from pbc.synth import SynthConfig, generate
        from pbc.warehouse import Warehouse
        from pbc.warehouse.load import load

        base = factory.mktemp("la_economy")
        generate(SynthConfig(practices=4, groups=2, local_authorities=2, seed=5, years=1,
                             start_year=2025, list_scale=0.35), base / "in")
        wh = Warehouse(base / "wh")
        load(base / "in", wh)
        run_pricing(wh)
        _BUILT["plain"] = wh
    return _BUILT["plain"]


def small_la_economy_scored(factory: pytest.TempPathFactory) -> object:
    """A copy of :func:`small_la_economy` with made-up risk scores (the segment from a hash
    of the patient id: about 10% very high, 30% high, 20% moderate, 40% low)."""
    if "scored" not in _BUILT:
        from pbc.warehouse import Warehouse

        plain = small_la_economy(factory)
        root = factory.mktemp("la_scored") / "wh"
        shutil.copytree(Path(plain.root), root, symlinks=True)  # type: ignore[attr-defined]
        wh = Warehouse(root)
        with wh.begin("risk") as tx:
            con = tx.connect()
            tx.write(con, "risk_scores", """
                SELECT patient_id, practice_code, neighbourhood_code,
                       CASE WHEN hash(patient_id) % 10 = 0 THEN 'very_high'
                            WHEN hash(patient_id) % 10 < 4 THEN 'high'
                            WHEN hash(patient_id) % 10 < 6 THEN 'moderate' ELSE 'low' END
                         AS segment
                FROM patients""", file_prefix="risk", replace=True, meta={"kind": "output"})
            con.close()
        _BUILT["scored"] = wh
    return _BUILT["scored"]
