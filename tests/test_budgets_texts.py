"""Budgets in plain English: prescribing fair shares by ASTRO-PU weighted patients (worked by
hand), no silent fallback to list size, and an explanation that starts with a summary a
practice manager can read, with no code words."""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from pbc.budgets import (
    FairShareError,
    FairShareInputs,
    astro_pu_weights,
    derive_cost_weights,
    fit_person_model,
    parse_policy,
    person_based,
    set_budgets,
)


def _policy(**over: Any) -> Any:
    d: dict[str, Any] = {
        "financial_year": "2025/26", "scope": ["prescribing"],
        "envelope": {"prescribing": {"pounds": "1938.00"}},
        "fair_share": {"prescribing": {"method": "astro_pu"}},
        "pace_of_change": {"pace": 1},
    }
    d.update(over)
    return parse_policy(d)


def _render(text: str) -> str:
    buf = io.StringIO()
    Console(file=buf, width=80, color_system=None).print(text, highlight=False)
    return buf.getvalue()


# Two practices worked by hand with the ASTRO(09)-PU weights shipped with pbc
# (src/pbc/reference/prescribing_units.csv):
#   A: 100 boys 0-4 x 1.0 + 50 women 75-79 x 9.9 + 10 men 90+ x 11.3 = 100 + 495 + 113 = 708
#   B: 200 women 25-29 x 1.8 + 100 men 65-69 x 8.7                    = 360 + 870       = 1230
# 1,938 prescribing units in all; £1,938.00 to share, so £1 a unit: £708.00 and £1,230.00.
LIST = pd.DataFrame(
    [("A", "M", "0-4", 100), ("A", "F", "75-79", 50), ("A", "M", "90+", 10),
     ("B", "F", "25-29", 200), ("B", "M", "65-69", 100)],
    columns=["practice_code", "sex", "age_band", "patients"])
SPEND = pd.DataFrame({"practice_code": ["A", "B"], "service_line": "prescribing",
                      "spend": [900.0, 1000.0]})


def test_astro_pu_weights_follow_the_published_bands() -> None:
    w = astro_pu_weights().set_index(["sex", "age_band"])["astro_pu"]
    assert w["M", "0-4"] == 1.0 and w["M", "10-14"] == 0.9 and w["F", "20-24"] == 1.4
    assert w["F", "75-79"] == w["F", "90+"] == 9.9 and w["M", "70-74"] == 8.7
    assert len(w) == 38


def test_prescribing_budget_by_astro_pu_worked_by_hand() -> None:
    res = set_budgets(_policy(), FairShareInputs(list_sizes=LIST), SPEND)
    f = res.frame.set_index("practice_code")
    assert list(f["method"]) == ["astro_pu", "astro_pu"]
    assert list(f["weighted_population"]) == [708.0, 1230.0]
    assert list(f["fair_share"]) == [70800, 123000]
    assert list(f["budget"]) == [70800, 123000]  # pace 1: the fair share
    text = res.explain("A").to_text()
    steps = {s.key: s for s in res.explain("A").line("prescribing").steps}
    assert steps["weighted_population"].label == "Prescribing units (ASTRO-PU)"
    assert steps["weighted_population"].value == "708.0"
    assert steps["cost_weight_index"].value == "4.425"  # 708 / 160 patients
    assert steps["weighted_population"].formula == "160 x 4.425"
    assert "ASTRO-PU weighted patients" in steps["method"].formula
    assert "Prescribing: ASTRO-PU weighted patients" in text


def test_prescribing_without_patient_costs_is_refused_not_given_list_sizes() -> None:
    """Prescribing rows are per practice: a person-based model or cost weights fitted on
    patient-level cost have nothing to go on. Before, the person-based model silently
    weighted every practice by its list size and the explanation spoke of predicted cost."""
    pats = pd.DataFrame({"patient_id": ["1", "2", "3"], "practice_code": ["A", "A", "B"],
                         "sex": ["F", "M", "F"], "age": [30, 80, 50]})
    no_cost = pd.DataFrame({"patient_id": pd.Series([], dtype=str),
                            "service_line": pd.Series([], dtype=str),
                            "cost": pd.Series([], dtype=float)})
    model = fit_person_model(pats, None, no_cost, ["prescribing"])
    with pytest.raises(FairShareError, match=r"'prescribing' has no predicted cost.*astro_pu"):
        person_based(pats, None, model)
    # cost weights from band costs with no prescribing cost: no weights, not weight 1
    bands = pd.DataFrame({"sex": ["F", "F"], "age_band": ["30-34", "30-34"],
                          "service_line": ["ae", "prescribing"], "patients": [10, 10],
                          "cost_pence": [500, 0]})
    cw = derive_cost_weights(bands)
    assert set(cw["service_line"]) == {"ae"}
    pol = _policy(fair_share={"prescribing": {"method": "weighted_capitation"}})
    ls = LIST.assign(age_band="30-34", sex="F")
    with pytest.raises(FairShareError, match=r"'prescribing' has no patient-level cost.*astro_pu"):
        set_budgets(pol, FairShareInputs(list_sizes=ls, cost_weights=cw), SPEND)


CODE_WORD = re.compile(r"\b[a-z]+_[a-z_]+\b")


def _summary_lines(text: str) -> list[str]:
    """The summary's sentences (the paragraph after the title, wrapped at 80 columns)."""
    body = text.split("\n\n")[1].replace("\n", " ")
    return [s if s.endswith(".") else s + "." for s in body.split(". ")]


def test_explanation_starts_with_a_plain_english_summary() -> None:
    # pace 0.5 from spend £900 / £1,000 towards fair shares £708 / £1,230, no caps:
    # targets 804 and 1115 add to 1919, scaled to £1,938: A £811.96, B £1,126.04
    res = set_budgets(_policy(pace_of_change={"pace": 0.5}), FairShareInputs(list_sizes=LIST),
                      SPEND)
    assert list(res.frame["budget"]) == [81196, 112604]
    text = res.explain("A").to_text()
    summary = _summary_lines(text)
    assert summary == [
        "The practice's indicative budget for 2025-26 is £811.96 for 1 service line.",
        "That is £88.04 (9.8%) less than its spend on the same services last year, £900.00.",
        "It is £103.96 (14.7%) above its fair share of £708.00, because budgets move from "
        "last year's spend towards fair shares only 50% of the way each year (the pace of "
        "change).",
    ]
    shown = _render(text)
    assert max(len(ln) for ln in text.splitlines()) <= 80  # no wrapping left to Rich
    assert not CODE_WORD.findall(shown), CODE_WORD.findall(shown)


def test_every_practice_explained_at_once_is_each_explained_alone() -> None:
    """explain_all (the frame split by practice once, for 6,553 practices) gives each
    practice exactly its own explanation."""
    from pbc.budgets.explain import explain_all

    res = set_budgets(_policy(pace_of_change={"pace": 0.5}), FairShareInputs(list_sizes=LIST),
                      SPEND)
    every = explain_all(res)
    assert sorted(every) == ["A", "B"]
    for code, explanation in every.items():
        assert explanation == res.explain(code)
        assert explanation.practice_code == code
    assert every["A"].to_text() != every["B"].to_text()


def test_relaxed_caps_are_said_in_words() -> None:
    pol = parse_policy({
        "financial_year": "2025/26", "scope": ["elective_inpatient"],
        "envelope": {"elective_inpatient": {"pounds": 100}},
        "fair_share": {"elective_inpatient": {"method": "weighted_capitation"}},
        "pace_of_change": {"pace": 0.2, "floor_percent": -5}})
    fs = pd.DataFrame({"practice_code": ["P0", "P1"], "service_line": "elective_inpatient",
                       "weighted_population": [1.0, 1.0]})
    sp = pd.DataFrame({"practice_code": ["P0", "P1"], "service_line": "elective_inpatient",
                       "spend": [100.0, 100.0]})
    res = set_budgets(pol, fs, sp)
    assert set(res.frame["cap"]) == {"floor_relaxed"}
    text = res.explain("P0").to_text()
    assert "for elective inpatients the floors could not all be met within the money " \
           "available, so every practice's floor was scaled down pro rata" in \
           " ".join(_summary_lines(text))
    steps = {s.key: s for s in res.explain("P0").line("elective_inpatient").steps}
    assert steps["cap"].value == "floor, scaled"
    shown = _render(text)
    assert not CODE_WORD.findall(shown), CODE_WORD.findall(shown)
    assert np.isfinite(res.frame["distance_from_target"]).all()


SERVICE_POLICY = """
financial_year = "2025-26"
commissioner_code = "Q1"
scope = ["non_elective", "prescribing"]
[envelope.non_elective]
uplift_percent = 0
[envelope.prescribing]
uplift_percent = 0
[fair_share.non_elective]
method = "weighted_capitation"
[fair_share.prescribing]
method = "{method}"
[pace_of_change]
pace = 1
"""


def test_service_prescribing_by_astro_pu_and_says_what_it_used(tmp_path: Any) -> None:
    """Through the service, on a warehouse as pricing leaves it: prescribing rows carry no
    patient. The person-based method is refused (before, it silently gave list sizes);
    ASTRO-PUs are used and said; the need index without conditions is said too."""
    from pbc.services.budgets import explanation, set_indicative_budgets
    from test_budgets_service import ICB, _rx, _spell, _warehouse

    rx = [_rx("A", 1, "30.00"), _rx("B", 1, "70.00")]
    for r in rx:
        r["patient_id"] = None
    wh = _warehouse(tmp_path / "wh", [_spell("A", 1, "100.00"), _spell("B", 1, "300.00"),
                                      *rx])
    policy = tmp_path / "policy.toml"
    policy.write_text(SERVICE_POLICY.format(method="person_based"))
    with pytest.raises(FairShareError, match=r"'prescribing' has no predicted cost.*astro_pu"):
        set_indicative_budgets(wh, policy, ICB, statements=tmp_path / "s1")
    policy.write_text(SERVICE_POLICY.format(method="astro_pu"))
    run = set_indicative_budgets(wh, policy, ICB, statements=tmp_path / "s2")
    # each practice lists a woman of 40 (ASTRO-PU 2.6) and a man of 70 (8.7): equal units,
    # so at pace 1 the £100.00 of prescribing splits £50.00 / £50.00
    rx_rows = run.result.frame[run.result.frame.service_line == "prescribing"]
    assert list(rx_rows.weighted_population) == pytest.approx([11.3, 11.3])
    assert list(rx_rows.budget) == [5000, 5000]
    text = explanation(wh, "A")
    assert "Prescribing units (ASTRO-PU)" in text and "ASTRO-PU weighted patients" in text
    assert "need index of weighted capitation uses deprivation only" in text
