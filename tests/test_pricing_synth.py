"""The synthetic economy's marginal rate baselines, through the whole pipeline (generate,
load, price): each is 95% of its contract's emergency value, measured as pricing measures
it (the value after the MFF, before the cut), for the settings' year only."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from pbc.pricing import load_settings
from pbc.services.pricing import run_pricing
from pbc.synth import SynthConfig, generate
from pbc.warehouse import Warehouse
from pbc.warehouse.load import load

EMERGENCY = "('21','22','23','24','25','2A','2B','2C','2D','28')"


@pytest.fixture(scope="module")
def priced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Warehouse]:
    base = tmp_path_factory.mktemp("synth_mret")
    generate(SynthConfig(practices=4, groups=2, local_authorities=1, seed=13, years=2,
                         start_year=2024), base / "in")
    wh = Warehouse(base / "wh")
    load(base / "in", wh)
    run_pricing(wh)
    return base / "in", wh


def test_synthetic_baseline_is_95_percent_of_emergency_value(priced) -> None:
    folder, wh = priced
    settings = load_settings(folder / "tariff_settings.toml")
    assert settings.financial_year == "2025-26"
    baselines = settings.emergency_marginal_rate.baseline
    assert baselines and {b.financial_year for b in baselines} == {"2025-26"}
    values = {(c, p): Decimal(v) for c, p, v in wh.query(f"""
        SELECT a.commissioner_code, a.provider_code,
               sum(a.price - a.marginal_rate_adjustment)
        FROM priced_activity a JOIN apc_spells s ON s.spell_id = a.activity_id
        WHERE a.activity_type = 'apc' AND a.financial_year = '2025-26'
          AND s.admission_method IN {EMERGENCY} AND a.price IS NOT NULL
        GROUP BY 1, 2""")}
    assert {(b.commissioner_code, b.provider_code) for b in baselines} == set(values)
    for b in baselines:
        ratio = b.baseline / values[(b.commissioner_code, b.provider_code)]
        assert Decimal("0.94") <= ratio <= Decimal("0.96"), (b, ratio)


def test_the_year_without_baselines_is_not_cut(priced) -> None:
    """2024-25 has no baselines: no spell of it is cut, every emergency spell says why."""
    _, wh = priced
    (cut, told, emergency), = wh.query(f"""
        SELECT count(*) FILTER (WHERE a.marginal_rate_adjustment <> 0),
               count(*) FILTER (WHERE a.pricing_rule LIKE
                                '%; no marginal rate: no contract baseline for 2024-25'),
               count(*)
        FROM priced_activity a JOIN apc_spells s ON s.spell_id = a.activity_id
        WHERE a.financial_year = '2024-25' AND s.admission_method IN {EMERGENCY}
          AND a.price IS NOT NULL""")
    assert emergency > 100 and cut == 0 and told == emergency
    (cut_last,), = wh.query("SELECT count(*) FROM priced_activity WHERE "
                            "financial_year = '2025-26' AND marginal_rate_adjustment < 0")
    assert cut_last > 0
