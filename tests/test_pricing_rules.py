"""Pricing rules: golden tests from the published worked examples (docs/sources.md §1) and
a table test per rule edge."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pbc.pricing import PRICED_SCHEMA, PricingError, price_activity, settings_from_dict
from pbc.pricing.money import fraction_text
from pricing_fixtures import ae, economy, op, price_rows, spell

D = Decimal


def mret(baseline: str | None = "0", rate: float = 0.30, provider: str = "RXX",
         year: str = "2025/26"):
    """Settings for tariff year ``year`` with one contract baseline (QHM/``provider``)."""
    data: dict = {"financial_year": year, "emergency_marginal_rate": {"rate": rate}}
    if baseline is not None:
        data["emergency_marginal_rate"]["baseline"] = [
            {"commissioner_code": "QHM", "provider_code": provider, "baseline": float(baseline)}]
    return settings_from_dict(data)


# ------------------------------------------------------------------------------ golden tests

def test_ssem_and_marginal_rate_pay_21_percent_of_tariff() -> None:
    """docs/sources.md §1.3 (HFMA 3 Mar 2010): 70% short stay x 30% marginal rate = 21%."""
    rows = price_rows(economy(apc=[spell("S1", los=1)]), mret("0"))
    r = rows["S1"]
    tariff = D("1000.00")  # DZ65K non-elective price; its SSEM price is 700.00 (70%)
    assert r["price"] == tariff * D("0.21") == D("210.00")
    assert r["base_price"] == tariff
    assert r["short_stay_adjustment"] == D("-300.00")
    assert r["marginal_rate_adjustment"] == D("-490.00")
    assert "reduced short stay emergency" in r["pricing_rule"]
    assert "marginal rate 30%" in r["pricing_rule"]


def test_first_attendance_times_mff() -> None:
    """docs/sources.md §1.5 (Model Hospital): £168 x MFF 1.0461 = £175.74."""
    r = price_rows(economy(ops=[op("O1")]))["O1"]
    assert r["price"] == D("175.74")
    assert r["base_price"] == D("168.00")
    assert r["mff_adjustment"] == D("7.74")
    assert r["price_exact"] == D("175.7448")
    assert r["service_line"] == "outpatient_first"
    assert r["pricing_rule"] == "OP first attendance TFC 110: first attendance price; MFF 1.0461"


# ------------------------------------------------------------------------------- APC edges

@pytest.mark.parametrize(
    ("los", "excess_days", "price"),
    [(10, 0, "1000.00"), (11, 1, "1250.00"), (12, 2, "1500.00")],
)
def test_long_stay_at_and_beyond_trim(los: int, excess_days: int, price: str) -> None:
    """§1.3: base + (los - trim) x per day payment when los > trim (non-elective trim 10)."""
    r = price_rows(economy(apc=[spell("S", los=los)]))["S"]
    assert r["los_days"] == los
    assert r["long_stay_adjustment"] == D(250) * excess_days
    assert r["price"] == D(price)
    if excess_days:
        assert f"base + {excess_days} excess bed days" in r["pricing_rule"]


@pytest.mark.parametrize(("los", "ssem"), [(0, True), (1, True), (2, False)])
def test_short_stay_emergency_by_length_of_stay(los: int, ssem: bool) -> None:
    r = price_rows(economy(apc=[spell("S", los=los)]))["S"]
    assert r["price"] == (D("700.00") if ssem else D("1000.00"))
    assert r["short_stay_adjustment"] == (D("-300.00") if ssem else 0)


@pytest.mark.parametrize(("age", "ssem"), [(18, False), (19, True), (90, True)])
def test_short_stay_emergency_by_age(age: int, ssem: bool) -> None:
    r = price_rows(economy(apc=[spell("S", los=1, age_on_admission=age)]))["S"]
    assert r["price"] == (D("700.00") if ssem else D("1000.00"))


def test_short_stay_emergency_settings() -> None:
    s = settings_from_dict({"short_stay_emergency": {"min_age": 65, "max_length_of_stay": 0}})
    rows = price_rows(economy(apc=[spell("A", los=0), spell("B", los=1),
                                   spell("C", los=0, age_on_admission=64)]), s)
    assert [rows[k]["price"] for k in "ABC"] == [D("700.00"), D("1000.00"), D("1000.00")]


@pytest.mark.parametrize("method", ["11", "31", "81"])
def test_short_stay_emergency_only_for_emergencies(method: str) -> None:
    r = price_rows(economy(apc=[spell("S", los=0, admission_method=method)]))["S"]
    assert r["short_stay_adjustment"] == 0


def test_short_stay_not_applicable_flag() -> None:
    r = price_rows(economy(apc=[spell("S", los=0, hrg_code="HB12C")]))["S"]
    assert r["price"] == D("3000.00")


@pytest.mark.parametrize(
    ("classpat", "hrg", "price", "service_line", "label"),
    [
        ("2", "DZ65K", "600.00", "day_case", "day case price"),
        ("1", "DZ65K", "1500.00", "elective_inpatient", "ordinary elective price"),
        ("2", "HB12C", "2000.00", "day_case", "combined elective price (no day case price)"),
        ("1", "HB12C", "2000.00", "elective_inpatient",
         "combined elective price (no ordinary elective price)"),
        ("3", "DZ65K", "600.00", "day_case", "day case price"),
        ("4", "DZ65K", "600.00", "day_case", "day case price"),
        ("5", "DZ65K", "1500.00", "elective_inpatient", "ordinary elective price"),
    ],
)
def test_elective_base_price(classpat: str, hrg: str, price: str, service_line: str,
                             label: str) -> None:
    r = price_rows(economy(apc=[spell("S", los=0, admission_method="12",
                                      patient_classification=classpat, hrg_code=hrg)]))["S"]
    assert r["price"] == D(price)
    assert r["service_line"] == service_line
    assert label in r["pricing_rule"]


def test_regular_attender_choices() -> None:
    rows = [spell("S", los=0, admission_method="11", patient_classification="3")]
    ordinary = price_rows(economy(apc=rows), settings_from_dict(
        {"apc": {"regular_attender": "ordinary"}}))["S"]
    assert ordinary["price"] == D("1500.00")
    local = price_rows(economy(apc=rows), settings_from_dict(
        {"apc": {"regular_attender": "unpriced"}}))["S"]
    assert local["price"] is None and "regular" in local["unpriced_reason"]


def test_elective_uses_elective_trim() -> None:
    # DZ65K elective trim 5: 7 days ordinary elective = 1500 + 2 x 250
    r = price_rows(economy(apc=[spell("S", los=7, admission_method="11")]))["S"]
    assert r["price"] == D("2000.00")


def test_missing_day_case_and_combined_price_is_unpriced() -> None:
    tariff = [{"hrg_code": "ZZ01A", "elective_trim_days": 2, "non_elective_price": "10.00",
               "non_elective_trim_days": 2, "excess_bed_day_price": "1.00", "sse_applies": "N"}]
    r = price_rows(economy(apc=[spell("S", los=0, admission_method="11",
                                      patient_classification="2", hrg_code="ZZ01A")],
                           tariff_apc=tariff))["S"]
    assert r["price"] is None
    assert r["unpriced_reason"] == "no day case or combined elective price for HRG ZZ01A"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (spell("S", hrg_code="XX99Z"), "HRG XX99Z not in tariff_apc"),
        (spell("S", provider_code="NOPE"), "provider NOPE not in providers (no MFF payment index)"),
    ],
)
def test_unpriceable_spell_has_reason_not_zero(row: dict, reason: str) -> None:
    r = price_rows(economy(apc=[row]))["S"]
    assert r["price"] is None and r["base_price"] is None
    assert r["unpriced_reason"] == reason
    assert r["pricing_rule"].endswith("unpriced")


@pytest.mark.parametrize(
    ("category", "fraction"),
    [("children", "0.60"), ("orthopaedic", "0.24"), ("spinal", "0.32"),
     ("neurosciences", "0.28"), (None, "0")],
)
def test_specialised_top_up(category: str | None, fraction: str) -> None:
    """§1.4 (2011/12): top-up = fraction x tariff price including long/short stay."""
    r = price_rows(economy(apc=[spell("S", los=11, top_up_category=category)]))["S"]
    pre = D("1250.00")  # 1000 + 1 excess bed day
    assert r["top_up_adjustment"] == pre * D(fraction)
    assert r["price"] == pre * (1 + D(fraction))
    if category:
        assert f"top-up {category} {fraction_text(D(fraction))}" in r["pricing_rule"]


def test_mff_multiplies_tariff_including_adjustments() -> None:
    """§1.5: (base + long stay) x (1 + top-up) x MFF."""
    r = price_rows(economy(apc=[spell("S", los=11, top_up_category="children",
                                      provider_code="RTR")]))["S"]
    exact = D("1250.00") * D("1.60") * D("1.0461")
    assert r["price_exact"] == exact
    assert r["price"] == exact.quantize(D("0.01"))
    total = sum(r[k] for k in ("base_price", "long_stay_adjustment", "short_stay_adjustment",
                               "top_up_adjustment", "mff_adjustment",
                               "marginal_rate_adjustment"))
    assert total == r["price"]


# ------------------------------------------------------------------------------ MRET edges

def test_marginal_rate_split_across_baseline() -> None:
    """§1.6: per contract, value to the baseline in full, above it at 30%; the straddling
    spell split pro rata. Spells of 1000 each in discharge order; baseline 2500."""
    spells = [spell(f"S{i}", admission_date=f"2025-05-0{i}", los=3) for i in (1, 2, 3, 4)]
    rows = price_rows(economy(apc=spells), mret("2500"))
    prices = [rows[f"S{i}"]["price"] for i in (1, 2, 3, 4)]
    assert prices == [D("1000.00"), D("1000.00"), D("650.00"), D("300.00")]
    assert sum(prices) == D(2500) + D("0.30") * (D(4000) - D(2500))
    assert rows["S3"]["marginal_rate_adjustment"] == D("-350.00")
    assert "marginal rate" not in rows["S1"]["pricing_rule"]


def test_marginal_rate_orders_by_discharge_then_id() -> None:
    same_day = [spell(i, los=3) for i in ("B", "A")]
    rows = price_rows(economy(apc=same_day), mret("1000"))
    assert rows["A"]["price"] == D("1000.00")
    assert rows["B"]["price"] == D("300.00")


def test_marginal_rate_per_contract_and_only_emergency() -> None:
    spells = [spell("E1", los=3), spell("E2", los=3, provider_code="RTR"),
              spell("M1", los=3, admission_method="31"),
              spell("L1", los=3, admission_method="11")]
    rows = price_rows(economy(apc=spells, ops=[op("O1")], aes=[ae("A1")]), mret("0"))
    assert rows["E1"]["price"] == D("300.00")  # contract QHM/RXX has a baseline of 0
    assert rows["E2"]["marginal_rate_adjustment"] == 0  # QHM/RTR has no baseline
    assert rows["M1"]["marginal_rate_adjustment"] == 0  # maternity is not emergency
    assert rows["L1"]["marginal_rate_adjustment"] == 0
    assert rows["O1"]["marginal_rate_adjustment"] == 0  # never outpatients (§1.6)
    assert rows["A1"]["marginal_rate_adjustment"] == 0  # never A&E (§1.3)


def test_marginal_rate_restarts_each_financial_year() -> None:
    """A baseline per contract and year: each year's running total starts again."""
    spells = [spell(i, los=3) for i in ("Y1", "Y1b")] + [
        spell(i, admission_date="2026-05-01", los=3) for i in ("Y2", "Y2b")]
    settings = settings_from_dict({"emergency_marginal_rate": {"baseline": [
        {"commissioner_code": "QHM", "provider_code": "RXX", "baseline": 1000.0,
         "financial_year": fy} for fy in ("2025/26", "2026-27")]}})
    rows = price_rows(economy(apc=spells), settings)
    assert rows["Y1"]["price"] == rows["Y2"]["price"] == D("1000.00")
    assert rows["Y1b"]["price"] == rows["Y2b"]["price"] == D("300.00")


def test_year_without_a_baseline_is_not_cut() -> None:
    """The settings' baselines are for 2025-26: a 2024-25 emergency spell of the same
    contract is paid in full (it was cut with 2025-26's baseline before), and its rule
    text says why."""
    spells = [spell("OLD", admission_date="2024-05-01", los=3), spell("NEW", los=3)]
    rows = price_rows(economy(apc=spells), mret("0"))
    old, new = rows["OLD"], rows["NEW"]
    assert old["financial_year"] == "2024-25"
    assert old["price"] == D("1000.00") and old["marginal_rate_adjustment"] == 0
    assert old["pricing_rule"].endswith("; no marginal rate: no contract baseline for 2024-25")
    assert new["price"] == D("300.00") and new["marginal_rate_adjustment"] == D("-700.00")
    assert "no marginal rate" not in new["pricing_rule"]
    # a contract without a baseline in a year that has others is not cut either
    other = price_rows(economy(apc=[spell("RTR1", los=3, provider_code="RTR")]), mret("0"))
    assert other["RTR1"]["marginal_rate_adjustment"] == 0
    assert "no marginal rate: no contract baseline for 2025-26" in other["RTR1"]["pricing_rule"]


# three non-elective HRGs for the hand-worked marginal rate example (no long stay, no SSEM)
_MRET_TARIFF = [
    {"hrg_code": code, "hrg_name": code, "non_elective_price": price,
     "non_elective_trim_days": 10, "elective_trim_days": 5, "excess_bed_day_price": "250.00",
     "sse_applies": "N"}
    for code, price in (("H1", "101.01"), ("H2", "202.02"), ("H3", "303.03"))]


def test_marginal_rate_after_mff_hand_worked() -> None:
    """MFF 1.05, baseline £150.00, rate 30%, three emergency spells of one contract in
    discharge order (values after the MFF, each rounded half up to the penny once):

      S1 H1 101.01 x 1.05 = 106.0605 -> 106.06   running 106.06   above baseline X1 = 0
      S2 H2 202.02 x 1.05 = 212.121  -> 212.12   running 318.18   X2 = 168.18
      S3 H3 303.03 x 1.05 = 318.1815 -> 318.18   running 636.36   X3 = 486.36

    paid above the baseline so far, rounded once: 0.30 x X = 0, 50.454 -> 50.45,
    145.908 -> 145.91. Each spell pays its value less its part above the baseline plus its
    step of that rounded running amount:

      S1 = 106.06                                      = 106.06
      S2 = 212.12 - (168.18 - 0)      + (50.45 - 0)     =  94.39  (adjustment -117.73)
      S3 = 318.18 - (486.36 - 168.18) + (145.91 - 50.45) =  95.46  (adjustment -222.72)

    contract total 295.91 = round(150.00 + 0.30 x (636.36 - 150.00)) = round(295.908).
    (Rounding each spell's own share alone gave 94.39 + 95.45: a total a penny short.)
    """
    providers = [{"provider_code": "R05", "provider_name": "Five", "provider_type": "acute",
                  "mff_payment_index": 1.05}]
    spells = [spell(f"S{i}", hrg_code=f"H{i}", provider_code="R05",
                    admission_date=f"2025-06-0{i}", los=3) for i in (1, 2, 3)]
    rows = price_rows(economy(apc=spells, tariff_apc=_MRET_TARIFF, providers=providers),
                      mret("150", provider="R05"))
    assert [rows[f"S{i}"]["price"] for i in (1, 2, 3)] == [D("106.06"), D("94.39"),
                                                         D("95.46")]
    assert [rows[f"S{i}"]["marginal_rate_adjustment"] for i in (1, 2, 3)] == [
        D("0.00"), D("-117.73"), D("-222.72")]
    assert [rows[f"S{i}"]["mff_adjustment"] for i in (1, 2, 3)] == [
        D("5.05"), D("10.10"), D("15.15")]
    assert sum(rows[f"S{i}"]["price"] for i in (1, 2, 3)) == D("295.91")


def test_unknown_practice_uses_activity_commissioner_for_contract() -> None:
    spells = [spell("S", los=3, practice_code="", commissioner_code="QHM")]
    rows = price_rows(economy(apc=spells), mret("0"))
    assert rows["S"]["commissioner_code"] == "QHM"
    assert rows["S"]["price"] == D("300.00")


# ------------------------------------------------------------------------- outpatient edges

def test_dna_is_a_rule_not_a_silent_zero() -> None:
    r = price_rows(economy(ops=[op("O", attended=False, treatment_function_code="999")]))["O"]
    assert r["price"] == 0 and r["unpriced_reason"] is None
    assert r["pricing_rule"] == "DNA: not paid"


@pytest.mark.parametrize(
    ("code", "fraction", "base", "line"),
    [("1", None, "200.00", "outpatient_first"), ("2", None, "100.00", "outpatient_follow_up"),
     ("3", "telephone_first_fraction", "100.00", "outpatient_first"),
     ("4", "telephone_follow_up_fraction", "25.00", "outpatient_follow_up")],
)
def test_first_follow_up_and_telephone(code: str, fraction: str | None, base: str,
                                       line: str) -> None:
    s = settings_from_dict({"outpatients": {"telephone_first_fraction": 0.5,
                                            "telephone_follow_up_fraction": 0.25}})
    r = price_rows(economy(ops=[op("O", first_attendance=code, treatment_function_code="300",
                                   provider_code="RXX")]), s)["O"]
    assert r["base_price"] == D(base) and r["price"] == D(base)
    assert r["service_line"] == line
    if fraction:
        assert "by telephone/video" in r["pricing_rule"]


def test_outpatient_procedure_price() -> None:
    rows = price_rows(economy(ops=[op("P", hrg_code="HB12C", provider_code="RXX"),
                                   op("Q", hrg_code="DZ65K", provider_code="RXX")]))
    assert rows["P"]["price"] == D("150.00")
    assert rows["P"]["service_line"] == "outpatient_procedure"
    # DZ65K has no outpatient procedure price: priced as an attendance, and said so
    assert rows["Q"]["price"] == D("168.00")
    assert "has no outpatient procedure price" in rows["Q"]["pricing_rule"]


def test_unknown_treatment_function_is_unpriced() -> None:
    r = price_rows(economy(ops=[op("O", treatment_function_code="999")]))["O"]
    assert r["price"] is None
    assert r["unpriced_reason"] == "treatment function 999 not in tariff_op"


# ------------------------------------------------------------------------------- A&E edges

def test_ae_department_type_fraction_and_unknown_hrg() -> None:
    s = settings_from_dict({"ae": {"department_type_fraction": {"3": 0.5, "4": 0.5}}})
    rows = price_rows(economy(aes=[ae("T1"), ae("T3", department_type="3"),
                                   ae("X", hrg_code="VB99Z")]), s)
    assert rows["T1"]["price"] == D("148.00")
    assert rows["T3"]["price"] == D("74.00")
    assert "x 50%" in rows["T3"]["pricing_rule"]
    assert rows["X"]["price"] is None
    assert rows["X"]["unpriced_reason"] == "HRG VB99Z not in tariff_ae"


# ------------------------------------------------------------------------------- rounding

@pytest.mark.parametrize(("base", "expected"), [("0.10", "0.11"), ("100.01", "105.01"),
                                                ("0.30", "0.32")])
def test_round_half_up_once(base: str, expected: str) -> None:
    """Money rounding rule: exact value, half up, once. 0.10 x 1.05 = 0.105 -> 0.11."""
    tariff = [{"treatment_function_code": "110", "first_attendance_price": base,
               "follow_up_price": base}]
    providers = [{"provider_code": "R05", "provider_name": "x", "provider_type": "acute",
                  "mff_payment_index": 1.05}]
    r = price_rows(economy(ops=[op("O", provider_code="R05")], tariff_op=tariff,
                           providers=providers))["O"]
    assert r["price_exact"] == D(base) * D("1.05")
    assert r["price"] == D(expected)


def test_output_schema_and_errors() -> None:
    import ibis

    from pricing_fixtures import memtables

    expr = price_activity(memtables(economy(apc=[spell("S")])))
    assert dict(expr.schema().items()) == PRICED_SCHEMA
    with pytest.raises(PricingError, match="tariff_op"):
        price_activity(memtables(economy(ops=[op("O")], tariff_op=None)))
    with pytest.raises(PricingError, match="nothing to price"):
        price_activity({"providers": ibis.memtable({"provider_code": ["R"]})})
