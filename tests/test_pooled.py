"""Section 75 pooled budgets: settlements against hand-worked examples for each sharing
rule (an overspend, an underspend, a cap that binds, a partner whose side overspends), a
property that every settlement reconciles to the penny, the social care pro-rata rule,
the agreement file's errors, access, the register, and spend in scope against an
independent recomputation from the raw rows of a small economy."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from pbc.decisions import DecisionStore
from pbc.local_authorities.pooled import (
    Agreement,
    PooledError,
    Sharing,
    package_cost_by_month,
    parse_agreement,
    settle,
    settle_amounts,
    split_exactly,
)
from pbc.services import pooled as svc
from pbc.services.principal import AccessDenied, Principal
from pbc.warehouse import Warehouse

ICB, LA, OTHER_LA, GROUP = "Q99", "E06009000", "E06009001", "G01"
ROOT = Path(__file__).resolve().parents[1]


def agreement(rule: str = "proportional", *, host: str | None = None, nhs: str = "600000.00",
              council: str = "400000.00", group: str | None = None, la: str = LA,
              year: str = "2025-26", hrg: list[str] | None = None,
              **sharing: Any) -> Agreement:
    partners = [{"code": ICB, "kind": "commissioner", "contributions": {year: Decimal(nhs)}},
                {"code": la, "kind": "local_authority",
                 "contributions": {year: Decimal(council)}}]
    if group is not None:
        partners.append({"code": GROUP, "kind": "group",
                         "contributions": {year: Decimal(group)}})
    return parse_agreement({
        "reference": f"S75-{rule}", "name": "Intermediate care", "host": host or la,
        "partners": partners,
        "scope": {"service_lines": ["non_elective"], "hrg_prefixes": hrg or [],
                  "social_care_service_types": ["home_care", "reablement"]},
        "sharing": {"rule": rule, **sharing}})


def rows(s: Any) -> dict[str, tuple[int, int, int, int, int]]:
    """partner -> (contribution, share_of_variance, bears, keeps, final_position), pence."""
    return {p.partner: (p.contribution, p.share_of_variance, p.bears, p.keeps,
                        p.final_position) for p in s.partners}


# --------------------------------------------------------------------------- settlement
def test_proportional_overspend_where_one_partners_side_overspends() -> None:
    # The commissioner's side (NHS activity) spent £700,000.00 against its £600,000.00, the
    # council's side (social care) £340,000.00 against £400,000.00: the pool spent
    # £1,040,000.00 of £1,000,000.00, an overspend of £40,000.00, which the partners bear
    # 60:40 by their contributions: £24,000.00 and £16,000.00. The commissioner does not
    # bear its own side's £100,000.00 overspend: the council's underspend offsets it.
    s = settle(agreement(), "2025-26", 104_000_000)
    assert s.variance == 4_000_000
    assert rows(s) == {ICB: (60_000_000, 2_400_000, 2_400_000, 0, 62_400_000),
                       LA: (40_000_000, 1_600_000, 1_600_000, 0, 41_600_000)}


def test_proportional_odd_pence_go_by_largest_remainder() -> None:
    # £200.00 and £100.00; overspend £1.00: exact shares 66.67p and 33.33p -> 67p and 33p
    s = settle(agreement(nhs="200.00", council="100.00"), "2025-26", 30_100)
    assert [p.share_of_variance for p in s.partners] == [67, 33]
    # equal contributions and one odd penny: the tie goes to the partner listed first,
    # for an overspend (it bears it) and an underspend (it keeps it) alike
    a = agreement(nhs="100.00", council="100.00", group="100.00")
    assert [p.share_of_variance for p in settle(a, "2025-26", 30_001).partners] == [1, 0, 0]
    assert [p.share_of_variance for p in settle(a, "2025-26", 29_999).partners] == [-1, 0, 0]
    assert [p.share_of_variance for p in settle(a, "2025-26", 30_002).partners] == [1, 1, 0]


def test_fixed_split_underspend() -> None:
    # £1,000,000.00 contributed, £950,000.00 spent: the partners keep the £50,000.00
    # underspend 70:30 by the agreed split (not 60:40 by contribution)
    a = agreement("fixed", split={ICB: Decimal("0.7"), LA: Decimal("0.3")})
    s = settle(a, "2025-26", 95_000_000)
    assert s.variance == -5_000_000
    assert rows(s) == {ICB: (60_000_000, -3_500_000, 0, 3_500_000, 56_500_000),
                       LA: (40_000_000, -1_500_000, 0, 1_500_000, 38_500_000)}


def test_fixed_split_overspend_with_a_group() -> None:
    # £10,000.01 over, split 0.55 / 0.35 / 0.10: exact shares 550,000.55p, 350,000.35p and
    # 100,000.10p; the one penny left goes to the largest remainder, the commissioner's
    a = agreement("fixed", group="50000.00", split={ICB: Decimal("0.55"), LA: Decimal("0.35"),
                                                   GROUP: Decimal("0.10")})
    s = settle(a, "2025-26", 105_000_000 + 1_000_001)
    assert [p.share_of_variance for p in s.partners] == [550_001, 350_000, 100_000]


def test_host_cap_binds_on_an_overspend() -> None:
    # the council hosts with a £20,000.00 cap; overspend £50,000.00: the council bears
    # £20,000.00, and the £30,000.00 beyond the cap is shared 60:40 by contributions
    # (£18,000.00 and £12,000.00), so the council bears £32,000.00 in all
    s = settle(agreement("host_cap", host_cap=Decimal("20000.00")), "2025-26", 105_000_000)
    assert s.cap_binds and s.host_part == 2_000_000
    assert rows(s) == {ICB: (60_000_000, 1_800_000, 1_800_000, 0, 61_800_000),
                       LA: (40_000_000, 3_200_000, 3_200_000, 0, 43_200_000)}


def test_host_cap_that_does_not_bind_and_an_underspend_beyond_it() -> None:
    a = agreement("host_cap", host=ICB, host_cap=Decimal("20000.00"))
    # £15,000.00 over, within the commissioner's (the host's) cap: it bears it all
    s = settle(a, "2025-26", 101_500_000)
    assert not s.cap_binds
    assert rows(s) == {ICB: (60_000_000, 1_500_000, 1_500_000, 0, 61_500_000),
                       LA: (40_000_000, 0, 0, 0, 40_000_000)}
    # £50,000.00 under: the host keeps £20,000.00 + 60% of £30,000.00 = £38,000.00, the
    # council keeps 40% of £30,000.00 = £12,000.00
    s = settle(a, "2025-26", 95_000_000)
    assert s.cap_binds
    assert rows(s) == {ICB: (60_000_000, -3_800_000, 0, 3_800_000, 56_200_000),
                       LA: (40_000_000, -1_200_000, 0, 1_200_000, 38_800_000)}


def test_a_year_the_agreement_does_not_name_is_refused() -> None:
    with pytest.raises(PooledError, match="no contributions for 2026-27"):
        settle(agreement(), "2026-27", 1)
    with pytest.raises(PooledError, match="nobody contributed"):
        settle(agreement(nhs="0.00", council="0.00"), "2025-26", 100)


@st.composite
def settlements(draw: st.DrawFn) -> tuple[list[int], int, Sharing]:
    n = draw(st.integers(2, 4))
    contributions = draw(st.lists(st.integers(0, 10**11), min_size=n, max_size=n))
    if sum(contributions) == 0:
        contributions[0] = 1
    spend = draw(st.integers(0, 3 * 10**11))
    rule = draw(st.sampled_from(["proportional", "fixed", "host_cap"]))
    if rule == "fixed":
        parts = draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n).filter(
            lambda p: sum(p) > 0))
        scale = sum(parts)
        shares = [Decimal(p * 1000 // scale) / 1000 for p in parts]
        shares[-1] += 1 - sum(shares)  # exactly 1
        return contributions, spend, Sharing(rule="fixed", split={
            f"P{i}": s for i, s in enumerate(shares)})
    if rule == "host_cap":
        cap = Decimal(draw(st.integers(0, 10**11))) / 100
        return contributions, spend, Sharing(rule="host_cap", host_cap=cap)
    return contributions, spend, Sharing(rule="proportional")


@settings(max_examples=300, deadline=None)
@given(settlements())
def test_every_settlement_reconciles_to_the_penny(case: tuple[list[int], int, Sharing]
                                                  ) -> None:
    contributions, spend, sharing = case
    codes = [f"P{i}" for i in range(len(contributions))]
    s = settle_amounts("S75", "2025-26", codes, ["commissioner"] * len(codes), contributions,
                       spend, sharing, "P0")
    assert sum(contributions) + sum(p.share_of_variance for p in s.partners) == spend
    assert sum(p.final_position for p in s.partners) == spend
    variance = spend - sum(contributions)
    for p, c in zip(s.partners, contributions, strict=True):
        assert p.bears >= 0 and p.keeps >= 0 and p.bears - p.keeps == p.share_of_variance
        assert p.bears == 0 or p.keeps == 0
        assert p.final_position == c + p.share_of_variance
        # nobody bears part of an underspend or keeps part of an overspend
        assert p.share_of_variance * variance >= 0
    if sharing.rule == "proportional":  # each within a penny of its exact share
        for p, c in zip(s.partners, contributions, strict=True):
            assert abs(Fraction(variance * c, sum(contributions)) - p.share_of_variance) < 1


@settings(max_examples=200, deadline=None)
@given(st.integers(-10**12, 10**12), st.lists(st.integers(0, 10**9), min_size=1,
                                              max_size=6).filter(lambda w: sum(w) > 0))
def test_split_exactly_adds_up_and_is_within_a_penny(total: int, weights: list[int]) -> None:
    parts = split_exactly(total, weights)
    assert sum(parts) == total
    for part, w in zip(parts, weights, strict=True):
        assert abs(Fraction(total * w, sum(weights)) - part) < 1


# --------------------------------------------------------------------------- social care
def test_a_package_starting_mid_year_open_ended() -> None:
    # £434.00 a week (£62.00 a day) from 15 October 2025, no end date: 17 days of October
    # (£1,054.00), then whole months to 31 March: 168 days, £10,416.00 in the year
    months = package_cost_by_month(43_400, dt.date(2025, 10, 15), None, "2025-26")
    assert months == [0] * 6 + [105_400, 186_000, 192_200, 192_200, 173_600, 192_200]
    assert sum(months) == 1_041_600


def test_an_open_ended_package_from_an_earlier_year() -> None:
    # £100.00 a week from 1 June 2024, still open: all 365 days of 2025-26,
    # 100 x 365 / 7 = £5,214.2857... -> £5,214.29. April: 30 days, 428.571 -> £428.57;
    # to the end of May: 61 days, 871.43, so May is £442.86 (not a rounded 31 days, 442.857)
    months = package_cost_by_month(10_000, dt.date(2024, 6, 1), None, "2025-26")
    assert sum(months) == 521_429
    assert months[:2] == [42_857, 44_286]
    # and the year before: 1 June 2024 to 31 March 2025, 304 days: £4,342.857 -> £4,342.86
    assert sum(package_cost_by_month(10_000, dt.date(2024, 6, 1), None, "2024-25")) == 434_286


def test_a_package_ending_mid_year_counts_its_end_date() -> None:
    # £70.00 a week (£10.00 a day) from 10 May to 20 August 2025 inclusive: 22 + 30 + 31 + 20
    months = package_cost_by_month(7_000, dt.date(2025, 5, 10), dt.date(2025, 8, 20),
                                   "2025-26")
    assert months == [0, 22_000, 30_000, 31_000, 20_000] + [0] * 7
    assert package_cost_by_month(7_000, dt.date(2025, 5, 10), dt.date(2025, 5, 10),
                                 "2025-26")[1] == 1_000  # one day
    assert sum(package_cost_by_month(7_000, dt.date(2024, 5, 1), dt.date(2025, 3, 31),
                                     "2025-26")) == 0
    assert sum(package_cost_by_month(7_000, dt.date(2026, 4, 1), None, "2025-26")) == 0


# --------------------------------------------------------------------------- the file
def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pool.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_file_is_valid_and_exact(tmp_path: Path) -> None:
    a, _ = svc.read_agreement(ROOT / "examples" / "pooled_budget.toml")
    assert a.host == LA and a.group is not None and a.sharing.rule == "host_cap"
    # pounds are read exactly, to the largest amount allowed (14 digits)
    text = (ROOT / "examples" / "pooled_budget.toml").read_text()
    big, _ = svc.read_agreement(write(tmp_path, text.replace("2500000.00",
                                                             "999999999999.99")))
    assert big.contributions("2025-26")[0] == 99_999_999_999_999
    with pytest.raises(PooledError,
                       match=r"partners\.0\.contributions\.2025-26: .*12 digits before"):
        svc.read_agreement(write(tmp_path, text.replace("2500000.00", "1000000000000.00")))


@pytest.mark.parametrize("change, message", [
    (('rule = "host_cap"', 'rule = "fixed"\nsplit = { Q99 = 0.5, E06009000 = 0.4, G01 = 0.2 }'),
     r"sharing: .*add up to 1\.1, not exactly 1"),
    (('service_lines = ["non_elective"]', 'service_lines = ["prescribing"]'),
     r"scope\.service_lines: .*prescribing cannot be pooled"),
    (('"home_care", "reablement"', '"home_help"'),
     r"scope\.social_care_service_types: unknown social care service type\(s\) home_help"),
    (('host = "E06009000"', 'host = "G01"'), r"host of a Section 75 pooled fund"),
    (('host = "E06009000"', 'host = "E06000099"'), r"host 'E06000099' is not one of"),
    (('"2025-26" = 250000.00', '"2025-26" = 250000.001'),
     r"partners\.2\.contributions\.2025-26: .*2 decimal places"),
    (('"2025-26" = 250000.00', '"2026-27" = 250000.00'),
     r"G01 contributes for 2026-27 but Q99 for 2025-26"),
    (('kind = "group"', 'kind = "commissioner"'), r"exactly one commissioner partner, not 2"),
])
def test_a_bad_agreement_is_refused_naming_the_file_and_key(
        tmp_path: Path, change: tuple[str, str], message: str) -> None:
    text = (ROOT / "examples" / "pooled_budget.toml").read_text()
    assert change[0] in text
    path = write(tmp_path, text.replace(change[0], change[1], 1))
    with pytest.raises(PooledError, match=message) as e:
        svc.read_agreement(path)
    assert str(path) in str(e.value)


# --------------------------------------------------------------------------- the economy
@pytest.fixture(scope="module")
def economy(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    """Three practices, two councils, 2024-25 and 2025-26, priced (no budgets needed)."""
    from pbc.services.pricing import run_pricing
    from pbc.synth import SynthConfig, generate
    from pbc.warehouse.load import load

    base = tmp_path_factory.mktemp("pooled")
    generate(SynthConfig(practices=3, groups=2, local_authorities=2, seed=5, years=2,
                         start_year=2024), base / "in")
    wh = Warehouse(base / "wh")
    load(base / "in", wh)
    run_pricing(wh)
    return wh


def frame(wh: Warehouse, sql: str) -> list[dict[str, Any]]:
    con = wh.connect()
    try:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()


_RAW: dict[str, Any] = {}
_DONE: dict[tuple[Any, ...], tuple[list[int], list[int]]] = {}


def independent_spend(wh: Warehouse, a: Agreement, fy: str) -> tuple[list[int], list[int]]:
    """NHS and social care spend in scope by month (pence), from the raw rows in Python:
    rows filtered one by one, tariff values summed as Decimals, packages costed day by day
    as fractions of a penny."""
    key = (str(wh.root), a.commissioner.code, a.local_authority.code,
           a.group.code if a.group else None, tuple(a.scope.service_lines),
           tuple(a.scope.social_care_service_types), tuple(a.scope.hrg_prefixes), fy)
    if key in _DONE:
        return _DONE[key]
    if _RAW.get("root") != str(wh.root):
        _RAW.clear()
        _RAW.update(root=str(wh.root), activity=frame(
            wh, "SELECT financial_year, price, marginal_rate_adjustment, commissioner_code, "
                "group_code, service_line, hrg_code, patient_id, month FROM priced_activity"),
            neighbourhoods=frame(wh, "SELECT * FROM neighbourhoods"),
            patients=frame(wh, "SELECT patient_id, neighbourhood_code FROM patients"),
            packages=frame(wh, "SELECT * FROM social_care_packages"))
    residence = {r["neighbourhood_code"]: r["local_authority_code"]
                 for r in _RAW["neighbourhoods"]}
    lives = {r["patient_id"]: residence.get(r["neighbourhood_code"])
             for r in _RAW["patients"]}
    nhs = [Decimal(0)] * 12
    for r in _RAW["activity"]:
        if (r["financial_year"] == fy and r["price"] is not None
                and r["commissioner_code"] == a.commissioner.code
                and (a.group is None or r["group_code"] == a.group.code)
                and r["service_line"] in a.scope.service_lines
                and (not a.scope.hrg_prefixes or any(
                    (r["hrg_code"] or "").startswith(h) for h in a.scope.hrg_prefixes))
                and lives.get(r["patient_id"]) == a.local_authority.code):
            nhs[r["month"] - 1] += r["price"] - r["marginal_rate_adjustment"]
    start = int(fy[:4])
    first, last = dt.date(start, 4, 1), dt.date(start + 1, 3, 31)
    care = [0] * 12
    for r in _RAW["packages"]:
        if (r["local_authority_code"] != a.local_authority.code
                or r["service_type"] not in a.scope.social_care_service_types):
            continue
        daily = Fraction(int(r["weekly_cost"] * 100), 7)
        cumulative, before = Fraction(0), 0
        day = first
        for m in range(12):
            while day <= last and (day.month - 4) % 12 == m:
                if r["start_date"] <= day and (r["end_date"] is None or day <= r["end_date"]):
                    cumulative += daily
                day += dt.timedelta(days=1)
            to_date = int(cumulative + Fraction(1, 2))  # half up, non-negative
            care[m] += to_date - before
            before = to_date
    _DONE[key] = ([int(x * 100) for x in nhs], care)
    return _DONE[key]


@pytest.mark.parametrize("group, hrg", [(None, None), ("G01", None), (None, ["EB", "FD"])])
def test_spend_in_scope_matches_an_independent_recomputation(
        economy: Warehouse, group: str | None, hrg: list[str] | None) -> None:
    a = agreement(group=None if group is None else "1000.00", hrg=hrg)
    spend = svc.spend_in_scope(economy, a, "2025-26")
    nhs, care = independent_spend(economy, a, "2025-26")
    assert sum(nhs) > 0 and sum(care) > 0
    if hrg:  # fewer than all the non-elective spells
        assert sum(nhs) < sum(independent_spend(economy, agreement(), "2025-26")[0])
    assert spend.nhs.tolist() == nhs
    assert spend.social_care.tolist() == care
    # the other council's residents and packages are another pool's
    other = svc.spend_in_scope(economy, agreement(la=OTHER_LA), "2025-26")
    assert other.nhs.tolist() == independent_spend(economy, agreement(la=OTHER_LA),
                                                   "2025-26")[0]
    assert other.nhs.sum() != spend.nhs.sum()


def test_year_end_position_and_settlement(economy: Warehouse) -> None:
    a = agreement("host_cap", host_cap=Decimal("1000.00"), nhs="10000.00", council="5000.00")
    pos = svc.pooled_position(economy, Principal("x", "local_authority", LA), a, "2025-26")
    nhs, care = independent_spend(economy, a, "2025-26")
    s = pos.settlement
    assert s is not None and s.spend == sum(nhs) + sum(care)
    assert s.contributions + sum(p.share_of_variance for p in s.partners) == s.spend
    pool = pos.frame.set_index("stream")
    assert pool.loc["nhs", "spend_to_date"] == sum(nhs)
    assert pool.loc["social_care", "spend_to_date"] == sum(care)
    assert pool.loc["pool", "contribution"] == 1_500_000


def test_monthly_position_and_forecast_settlement(economy: Warehouse) -> None:
    a = agreement(nhs="10000.00", council="5000.00")
    who = Principal("x", "commissioner", ICB)
    pos = svc.pooled_position(economy, who, a, "2025-26", month=6, method="run_rate")
    nhs, care = independent_spend(economy, a, "2025-26")
    rows_ = pos.frame.set_index("stream")
    assert rows_.loc["nhs", "spend_to_date"] == sum(nhs[:6])
    assert rows_.loc["social_care", "spend_to_date"] == sum(care[:6])
    assert rows_.loc["nhs", "contribution_to_date"] == 500_000  # half of £10,000.00
    at_5 = svc.pooled_position(economy, who, a, "2025-26", month=5, method="run_rate")
    # £5,000.00 x 5 / 12 = £2,083.333... -> £2,083.33
    assert at_5.frame.set_index("stream").loc["social_care", "contribution_to_date"] == 208_333
    # £10,000.00 x 5 / 12 = £4,166.6666... -> £4,166.67
    assert at_5.frame.set_index("stream").loc["nhs", "contribution_to_date"] == 416_667
    # run rate: spend to date x 12 / 6, each stream rounded half up
    assert rows_.loc["nhs", "forecast_outturn"] == 2 * sum(nhs[:6])
    assert rows_.loc["social_care", "forecast_outturn"] == 2 * sum(care[:6])
    assert pos.settlement is not None
    assert pos.settlement.spend == 2 * sum(nhs[:6]) + 2 * sum(care[:6])
    # the seasonal forecast of the NHS side follows last year's profile
    seasonal = svc.pooled_position(economy, who, a, "2025-26", month=6)
    last_nhs, _ = independent_spend(economy, a, "2024-25")
    expected = round(Fraction(sum(nhs[:6]) * sum(last_nhs), sum(last_nhs[:6])))
    assert abs(seasonal.frame.set_index("stream").loc["nhs", "forecast_outturn"]
               - expected) <= 1


def test_a_year_or_month_the_data_do_not_reach_is_refused(economy: Warehouse) -> None:
    who = Principal("x", "commissioner", ICB)
    a = agreement(year="2026-27")
    with pytest.raises(PooledError, match="not complete in the warehouse"):
        svc.pooled_position(economy, who, a, "2026-27")
    reached = economy.query("SELECT max(month) FROM priced_activity "
                            "WHERE financial_year = '2026-27'")[0][0] or 0
    assert reached < 12
    with pytest.raises(PooledError, match=f"runs to month {reached}, not month {reached + 1}"):
        svc.pooled_position(economy, who, a, "2026-27", month=reached + 1)
    with pytest.raises(PooledError, match="partner E06000099 is not in the warehouse"):
        svc.pooled_position(economy, Principal("x", "commissioner", ICB),
                            agreement(la="E06000099"), "2025-26")


# --------------------------------------------------------------------------- access
@pytest.mark.parametrize("who", [
    Principal("x", "local_authority", OTHER_LA),  # another council
    Principal("x", "commissioner", "Q98"),  # another commissioner
    Principal("x", "practice", "A81000"),
    Principal("x", "group", GROUP),  # a group that is not a partner
    Principal("x", "commissioner_data", ICB),
    Principal("x", "public", "-"),
    Principal("x", "local_authority", ICB),  # a council role claiming the ICB's code
])
def test_only_partners_see_a_pool(economy: Warehouse, who: Principal) -> None:
    with pytest.raises(AccessDenied, match=r"may not see a pooled budget \(S75-proportional\)"
                       r": only commissioner:Q99 or commissioner_approver:Q99 or "
                       r"local_authority:E06009000 may"):
        svc.pooled_position(economy, who, agreement(), "2025-26")


def test_partners_see_a_pool(economy: Warehouse) -> None:
    a = agreement(group="100.00")
    for who in (Principal("x", "local_authority", LA), Principal("x", "group", GROUP),
                Principal("x", "commissioner_approver", ICB)):
        assert svc.pooled_position(economy, who, a, "2025-26").settlement is not None


@pytest.fixture
def store(decision_url: str) -> Iterator[DecisionStore]:
    with DecisionStore(decision_url) as s:
        yield s


def test_the_register_is_audited_and_shows_each_partner_its_own(store: DecisionStore) -> None:
    from pbc.services.cases import audit_log, verify_audit

    council, other = Principal("la", "local_authority", LA), Principal(
        "la2", "local_authority", OTHER_LA)
    icb = Principal("fin", "commissioner", ICB)
    mine, theirs = agreement(), agreement("fixed", la=OTHER_LA, host=OTHER_LA, split={
        ICB: Decimal("0.5"), OTHER_LA: Decimal("0.5")})
    theirs = theirs.model_copy(update={"reference": "S75-other"})
    assert svc.record_agreement(store, council, mine, "v1") == (1, True)
    assert svc.record_agreement(store, council, mine, "v1") == (1, False)  # the same file
    with pytest.raises(AccessDenied, match="may not record a pooled budget agreement"):
        svc.record_agreement(store, council, theirs, "x")  # not its council's
    assert svc.record_agreement(store, other, theirs, "x") == (1, True)
    bigger = mine.model_copy(update={"name": "Intermediate care, extended"})
    assert svc.record_agreement(store, icb, bigger, "v2") == (2, True)

    assert [(r.reference, r.version, r.contributions) for r in svc.register(store, council)] \
        == [("S75-proportional", 2, 100_000_000)]
    assert [r.reference for r in svc.register(store, other)] == ["S75-other"]
    assert [r.reference for r in svc.register(store, icb)] == ["S75-other", "S75-proportional"]
    assert svc.register(store, Principal("x", "local_authority", "E06000077")) == []
    with pytest.raises(AccessDenied, match="may not see a pooled budget"):
        svc.register(store, Principal("x", "practice", "A81000"))
    with pytest.raises(AccessDenied):
        svc.stored_agreement(store, other, "S75-proportional")
    assert svc.stored_agreement(store, council, "S75-proportional").name.endswith("extended")

    events = [e for e in audit_log(store, icb) if e.entity == "pooled_agreement"]
    assert [(e.action, e.entity_id, e.actor) for e in events] == [
        ("record_pooled_agreement", "S75-proportional", "la"),
        ("record_pooled_agreement", "S75-other", "la2"),
        ("record_pooled_agreement", "S75-proportional", "fin")]
    assert '"version": 1' in (events[2].before_state or "")
    assert '"version": 2' in (events[2].after_state or "")
    assert verify_audit(store, icb).ok


# --------------------------------------------------------------------------- CLI, demo
def test_cli_pooled_and_register(economy: Warehouse, tmp_path: Path) -> None:
    from pbc.cli import app

    runner = CliRunner()
    out = tmp_path / "settlement.csv"
    example = str(ROOT / "examples" / "pooled_budget.toml")
    wh = str(economy.root)
    result = runner.invoke(app, ["la", "pooled", "--agreement", example, "--warehouse", wh,
                                 "--year", "2025-26", "--csv", str(out), "--xlsx",
                                 str(tmp_path / "pool.xlsx"), "--as", f"local_authority:{LA}"])
    assert result.exit_code == 0, result.output
    with out.open() as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == list(svc.SETTLEMENT_COLUMNS)
    assert [r["partner"] for r in got] == [ICB, LA, GROUP]
    a, _ = svc.read_agreement(Path(example))
    nhs, care = independent_spend(economy, a, "2025-26")
    total = sum(Decimal(r["final_position"]) for r in got)
    assert total * 100 == sum(nhs) + sum(care)
    assert (tmp_path / "pool.xlsx").stat().st_size > 0

    refused = runner.invoke(app, ["la", "pooled", "--agreement", example, "--warehouse", wh,
                                  "--year", "2025-26", "--as", f"local_authority:{OTHER_LA}"])
    assert refused.exit_code != 0
    assert "only commissioner:Q99" in refused.output and "local_authority:E06009000" in \
        refused.output
    month = runner.invoke(app, ["la", "pooled", "--agreement", example, "--warehouse", wh,
                                "--year", "2025-26", "--month", "2025-04", "--as",
                                f"group:{GROUP}"])
    assert month.exit_code == 0 and "forecast settlement" in month.output, month.output
    wrong = runner.invoke(app, ["la", "pooled", "--agreement", example, "--warehouse", wh,
                                "--year", "2025-26", "--month", "2024-09"])
    assert wrong.exit_code == 2 and "is in 2024-25" in wrong.output

    added = runner.invoke(app, ["la", "register", "--warehouse", wh, "--add", example,
                                "--as", f"local_authority:{LA}", "--csv",
                                str(tmp_path / "register.csv")])
    assert added.exit_code == 0, added.output
    assert "recorded S75-2025-01 version 1" in added.output
    listed = runner.invoke(app, ["la", "register", "--warehouse", wh, "--as",
                                 f"local_authority:{OTHER_LA}"])
    assert listed.exit_code == 0 and "S75-2025-01" not in listed.output


def test_demo_pooled(economy: Warehouse, tmp_path: Path) -> None:
    console = Console(record=True, width=140)
    pos = svc.demo_pooled(economy, tmp_path / "demo", console)
    text = console.export_text()
    assert pos.settlement is not None and pos.settlement.cap_binds
    assert pos.settlement.variance > 0
    assert "the host's cap binds" in text and "S75-DEMO-1" in text
    for name in ("pooled_budget.toml", "pooled_settlement.csv", "pooled_budget.xlsx"):
        assert (tmp_path / "demo" / name).exists()
