"""Monitoring packs read back as another program would (openpyxl), on a small synthetic
economy of three years (2025-26 monitored, 2024-25 back-tested against 2023-24)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from pbc.monitoring.forecast import backtest, ratio_model, seasonal_run_rate
from pbc.services.principal import AccessDenied, Principal
from pbc.warehouse import Warehouse

COMMISSIONER = Principal("analyst", "commissioner", "Q99")
PRACTICE = Principal("pm", "practice", "A81001")
PERIOD = "2025-09"
MONEY_FORMAT = "£#,##0.00;[Red]-£#,##0.00"


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    from conftest import budgeted_economy

    return budgeted_economy(tmp_path_factory.mktemp("packs"), practices=6, seed=21, years=3,
                            start_year=2023)  # type: ignore[return-value]


def _pence(value: object) -> int:
    return int((Decimal(str(value)) * 100).quantize(Decimal(1)))


def _table(ws: object) -> tuple[int, list[str], list[tuple[object, ...]]]:
    """The header row number, its labels and the rows under it (to the first empty one)."""
    rows = list(ws.iter_rows(values_only=True))  # type: ignore[attr-defined]
    header = next(i for i, r in enumerate(rows) if i > 0 and r[0] is not None
                  and r[1] is not None and i > 5 and all(isinstance(v, str) for v in r
                                                         if v is not None))
    body = []
    for r in rows[header + 1:]:
        if r[0] is None and all(v is None for v in r):
            break
        body.append(r)
    return header + 1, [str(v) for v in rows[header] if v is not None], body


def test_a_practice_pack_reads_back_to_the_penny(wh: Warehouse, tmp_path: Path) -> None:
    from pbc.reports.monitoring_pack import write_packs
    from pbc.services.monitoring import monthly_position
    from pbc.services.monitoring_pack import build_packs

    packs = build_packs(wh, PRACTICE, PERIOD)
    assert [p.code for p in packs.packs] == ["A81001"]
    out = tmp_path / "a81001.xlsx"
    written = write_packs(packs, out, source="pbc warehouse (test)")
    assert out in written and out.with_name("a81001-cumulative.svg").exists()
    book = openpyxl.load_workbook(out, data_only=True)
    assert book.sheetnames == [
        "Summary", "Position", "Months", "Drivers - service line", "Drivers - HRG chapter",
        "Drivers - provider", "Drivers - risk segment", "Restatements", "Freed resources",
        "Back-test"]
    position = monthly_position(wh, PRACTICE, PERIOD).frame
    total = position[position.service_line == "all"].iloc[0]
    name = wh.query("SELECT practice_name FROM practices WHERE practice_code = 'A81001'")[0][0]
    for ws in book.worksheets:  # the title block on every sheet, names beside codes
        assert ws["A1"].value.startswith("Monthly monitoring pack")
        assert ws["B2"].value == f"A81001 {name} (practice)"
        assert ws["B4"].value.startswith("Budget version 1 (DRAFT")
    summary = {r[0]: r[1] for r in book["Summary"].iter_rows(values_only=True) if r[0]}
    assert _pence(summary["Spend to date"]) == int(total.spend_to_date)
    assert _pence(summary["Variance to date (spend - budget)"]) == int(total.variance)
    assert _pence(summary["Forecast outturn"]) == int(total.forecast_outturn)
    assert "ratio model" in summary["80% interval of the outturn"]
    # position: one row per line, the totals row is the position's total to the penny
    ws = book["Position"]
    first, labels, body = _table(ws)
    assert labels[:5] == ["Service line", "Annual budget", "Budget to date", "Spend to date",
                          "Variance (spend - budget)"]
    assert ws.freeze_panes == f"A{first + 1}"
    assert ws.cell(first + 1, 2).number_format == MONEY_FORMAT
    totals = body[-1]
    assert totals[0] == "Total"
    for col, key in zip(range(1, 5), ("annual_budget", "budget_to_date", "spend_to_date",
                                      "variance"), strict=True):
        assert _pence(totals[col]) == int(total[key]), key
    assert len(body) - 1 == (position.service_line != "all").sum()
    # drivers: every dimension's totals are the variance, split into volume and price
    for sheet in ("Drivers - service line", "Drivers - HRG chapter", "Drivers - provider",
                  "Drivers - risk segment"):
        _, labels, body = _table(book[sheet])
        t = body[-1]
        assert t[0] == "Total", sheet
        assert _pence(t[3]) == int(total.variance), sheet
        assert _pence(t[4]) + _pence(t[5]) == int(total.variance), sheet
        assert _pence(t[1]) == int(total.budget_to_date), sheet
    # months: Apr..Mar, spend to date, and the fan ends at the interval in the summary
    _, labels, body = _table(book["Months"])
    assert [r[0] for r in body[:12]] == ["Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                         "Nov", "Dec", "Jan", "Feb", "Mar"]
    assert _pence(body[12][2]) == int(total.spend_to_date)
    assert body[6][2] is None  # October's spend is not to date
    assert _pence(body[11][6]) == int(total.forecast_outturn)
    assert (f"£{Decimal(_pence(body[11][7])) / 100:,.2f} to "
            f"£{Decimal(_pence(body[11][8])) / 100:,.2f}") in summary[
        "80% interval of the outturn"]
    # restatements: none given, the sheet says so
    assert "no restatements" in book["Restatements"]["B8"].value


def test_the_back_test_is_the_forecast_cores(wh: Warehouse) -> None:
    from pbc.services.monitoring import _frame, _opted_out, _spend
    from pbc.services.monitoring_pack import _panel, build_packs

    packs = build_packs(wh, COMMISSIONER, PERIOD, level="practice")
    bt = packs.packs[0].backtest
    assert set(bt.method) == {"run_rate", "seasonal_run_rate", "ratio_model"}
    # the holders' own spend: the lines they opted out of are the commissioner's
    backend = wh.ibis()
    priced = backend.table("priced_activity")
    opted = _opted_out(backend.table("budget_phasing"), packs.position.financial_year,
                       packs.position.budget_version)
    year, before = (_frame(_spend(priced, fy, "practice", "Q99", opted))
                    for fy in ("2024-25", "2023-24"))
    backend.disconnect()
    codes = sorted(set(year.code) | set(before.code))
    rows = backtest(_panel(year, codes, "spend"), _panel(before, codes, "spend"))
    want = {(r.month, r.method): r for r in rows}
    assert len(want) == len(bt)
    for r in bt.itertuples():
        w = want[(r.month, r.method)]
        assert r.holders == w.units
        assert r.mean_absolute_percentage_error == pytest.approx(
            w.mean_absolute_percentage_error)
        if w.interval_coverage is None:
            assert pd.isna(r.interval_coverage)
        else:
            assert r.interval_coverage == pytest.approx(w.interval_coverage)
    assert all(len(p.backtest) == len(bt) for p in packs.packs)
    own = {p.code: p.backtest.holder_absolute_percentage_error.tolist() for p in packs.packs}
    assert len({tuple(v) for v in own.values()}) == len(own)  # each practice its own error


def test_forecast_path_ends_at_the_forecast() -> None:
    from pbc.services.monitoring_pack import forecast_path

    rng = np.random.default_rng(3)
    prior = rng.integers(50_000, 150_000, size=(5, 12))
    actual = (prior * rng.uniform(0.9, 1.2, size=(5, 1))).astype(np.int64)
    path, lower, upper = forecast_path("ratio_model", actual, 4, prior)
    f = ratio_model(actual, prior, 4)
    assert (path[:, 11] == f.outturn).all()
    assert lower is not None and upper is not None
    assert (lower[:, 11] == f.lower).all() and (upper[:, 11] == f.upper).all()
    assert (np.diff(upper[:, 3:], axis=1) >= 0).all()
    assert (path[:, :4] == np.cumsum(actual[:, :4], axis=1)).all()
    s, _, _ = forecast_path("seasonal_run_rate", actual, 4, prior)
    assert (s[:, 11] == seasonal_run_rate(actual, prior, 4).outturn).all()


def test_the_commissioner_summary_lists_every_practice(wh: Warehouse, tmp_path: Path) -> None:
    from pbc.reports.monitoring_pack import write_packs
    from pbc.services.monitoring import monthly_position
    from pbc.services.monitoring_pack import RESTATEMENT_COLUMNS, build_packs

    restated = pd.DataFrame([[5, "practice", "A81001", "ae", 100_00, 120_00, 20_00,
                              "late rows"]], columns=RESTATEMENT_COLUMNS)
    packs = build_packs(wh, COMMISSIONER, PERIOD, level="commissioner",
                        restatements=restated)
    out = tmp_path / "q99.xlsx"
    write_packs(packs, out, source="test")
    book = openpyxl.load_workbook(out, data_only=True)
    assert book.sheetnames[0] == "Summary" and book.sheetnames[-1] == "Practices"
    practices = monthly_position(wh, COMMISSIONER, PERIOD, level="practice").frame
    totals = practices[practices.service_line == "all"]
    _, labels, body = _table(book["Practices"])
    assert labels[:2] == ["Practice", "Name"]
    assert len(body) - 1 == len(totals)
    assert _pence(body[-1][5]) == int(totals.variance.sum())
    assert all(r[1] for r in body[:-1])  # every practice has its name
    _, labels, body = _table(book["Restatements"])
    assert body[0][2] == "A81001" and _pence(body[0][6]) == 2_000
    chart = json.loads(out.with_name("q99-cumulative.json").read_text(encoding="utf-8"))
    marks = [layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"]
             for layer in chart["layer"]]
    assert "area" in marks  # the 80% fan
    fan = next(layer for layer in chart["layer"] if "area" in json.dumps(layer["mark"]))
    assert fan["encoding"]["y"]["field"] == "lower" and fan["encoding"]["y2"]["field"] == "upper"
    assert "2025-26, April to September" in chart["title"]["text"]
    assert "Source: test" in chart["title"]["subtitle"][0]


def test_access_is_the_positions(wh: Warehouse, tmp_path: Path) -> None:
    from pbc.reports.monitoring_pack import write_packs
    from pbc.services.monitoring_pack import build_packs

    with pytest.raises(AccessDenied):
        build_packs(wh, PRACTICE, PERIOD, level="group")
    with pytest.raises(AccessDenied):
        build_packs(wh, PRACTICE, PERIOD, level="commissioner")
    packs = build_packs(wh, COMMISSIONER, PERIOD, level="group")
    assert len(packs.packs) == 2
    with pytest.raises(ValueError, match="give a folder"):
        write_packs(packs, tmp_path / "groups.xlsx", source="test", charts=False)
    written = write_packs(packs, tmp_path / "groups", source="test", charts=False)
    assert sorted(p.name for p in written) == [f"group-{p.code}.xlsx" for p in packs.packs]


def test_monitor_writes_the_pack_from_the_command_line(wh: Warehouse, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pbc.cli import app

    out = tmp_path / "pack.xlsx"
    result = CliRunner().invoke(app, ["monitor", "--month", PERIOD, "--warehouse",
                                      str(wh.root), "--as", "practice:A81001",
                                      "--xlsx", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists() and out.with_name("pack-cumulative.json").exists()


def test_screenshots_of_a_pack_and_its_chart(wh: Warehouse, tmp_path: Path) -> None:
    """PNGs of a practice's pack (summary, position, months) and of its cumulative spend
    chart with the forecast fan, beside the other screenshots (build/screenshots)."""
    from conftest import require
    from pbc.indicators.charts import save_chart
    from pbc.reports.monitoring_pack import cumulative_chart, write_packs
    from pbc.services.monitoring_pack import build_packs
    from workbooks import SCREENSHOTS, chromium_ready, png_size, screenshot_sheets

    require(chromium_ready(), "Debian's chromium (/usr/bin/chromium) and playwright")
    packs = build_packs(wh, PRACTICE, PERIOD, level="practice")
    out = tmp_path / "pack.xlsx"
    write_packs(packs, out, source="synthetic economy (test)", charts=False)
    written = screenshot_sheets([(out, s, f"monitoring-pack-{i}-{s.lower()}")
                                 for i, s in enumerate(("Summary", "Position", "Months"),
                                                       start=1)])
    chart = save_chart(cumulative_chart(packs, packs.packs[0],
                                        source="synthetic economy (test)"),
                       SCREENSHOTS / "chart-cumulative-spend.png")
    for png in [*written, chart]:
        width, height = png_size(png)
        assert width >= 400 and height >= 100, png


def test_each_packs_months_add_up_to_its_position_opted_out_lines_included(
        wh: Warehouse) -> None:
    """A pack's month-by-month spend and budget add up to its holder's position to date, for
    every holder, including the practice whose prescribing the commissioner holds (the demo
    policy's opt-out): the months chart and the summary table say the same thing."""
    from pbc.monitoring.position import TOTAL
    from pbc.services.monitoring_pack import build_packs

    packs = build_packs(wh, COMMISSIONER, PERIOD, level="practice")
    month = packs.position.month
    opted = {str(c) for c, in wh.query(
        "SELECT DISTINCT practice_code FROM budget_phasing WHERE kind = 'opt_out' AND "
        "practice_code IS NOT NULL")}
    assert opted & {p.code for p in packs.packs}, "the economy exercises an opt-out"
    for pack in packs.packs:
        total = pack.position[pack.position.service_line == TOTAL].iloc[0]
        to_date = pack.months[pack.months.month <= month]
        assert int(to_date.spend.sum()) == int(total.spend_to_date), pack.code
        assert int(to_date.budget.sum()) == int(total.budget_to_date), pack.code


def test_a_holders_cut_of_the_shared_packs_is_its_own_pack(wh: Warehouse) -> None:
    """The web app computes every practice's (group's) pack once (shared_packs) and cuts
    each principal's part from it (packs_for): that part must be exactly what build_packs
    gives the principal, and the same access rule must refuse the others."""
    from pbc.services.monitoring_pack import build_packs, packs_for, shared_packs

    lead = Principal("lead", "group", "G01")
    for level, who in (("practice", PRACTICE), ("group", lead), ("practice", lead)):
        full = shared_packs(wh, PERIOD, level=level)  # type: ignore[arg-type]
        assert len(full.packs) > 1
        own, cut = build_packs(wh, who, PERIOD, level=level), packs_for(full, who, wh)  # type: ignore[arg-type]
        codes = [p.code for p in own.packs]
        assert [p.code for p in cut.packs] == codes
        # a practice or group its own pack; a group's lead at practice level its members'
        assert codes == [who.organisation] if who.role == level else \
            0 < len(codes) < len(full.packs)
        pd.testing.assert_frame_equal(cut.position.frame, own.position.frame)
        assert (cut.position.period, cut.position.budget_version, cut.backtest_note) == (
            own.position.period, own.position.budget_version, own.backtest_note)
        for a, b in zip(cut.packs, own.packs, strict=True):
            for frame_a, frame_b in ((a.position, b.position), (a.months, b.months),
                                     (a.ledger, b.ledger), (a.backtest, b.backtest),
                                     *zip(a.drivers.values(), b.drivers.values(),
                                          strict=True)):
                pd.testing.assert_frame_equal(frame_a, frame_b)
            assert (a.name, a.interval, list(a.drivers)) == (b.name, b.interval,
                                                              list(b.drivers))
    full = shared_packs(wh, PERIOD, level="practice")
    assert packs_for(full, COMMISSIONER, wh) is full
    for other in (Principal("pm", "practice", "A81002"),):
        assert [p.code for p in packs_for(full, other, wh).packs] == ["A81002"]
    for refused in (Principal("x", "commissioner", "Q98"),
                    Principal("x", "local_authority", "E09000001")):
        with pytest.raises(AccessDenied):
            packs_for(full, refused, wh)
