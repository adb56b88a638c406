"""The demo's decision flow: users for each role, a business case that touches social care
taken through submit -> council consultation -> approve -> implement -> evaluate, a
reinvestment case drawn on freed resources, and the audit log verified at the end.

:func:`demo_decisions` is called by ``pbc demo`` once the warehouse holds two financial
years of priced activity (the first complete) and budgets; it needs a fresh decision store
(it adds the users). ``extra_steps`` are hooks for the other decision flows (opt-outs,
invoice checks): each is called with the :class:`DemoDecisions` context after the case
flow and before the audit log is verified.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from rich.console import Console

from pbc.budgets.money import format_pounds
from pbc.calendar import format_financial_year, parse_financial_year
from pbc.decisions import DecisionStore
from pbc.decisions.cases import CaseError, parse_case
from pbc.services.principal import NAMED_USER, Principal
from pbc.warehouse import Warehouse

#: the example case (examples/business_case.toml links to it), shipped with the package
EXAMPLE = Path(__file__).resolve().parents[1] / "reference" / "cases" / "business_case.toml"
COMMISSIONER = "Q99"


@dataclass
class DemoDecisions:
    """What the decision flow made: the store, who acted, the case ids, what it printed."""

    warehouse: Warehouse
    store: DecisionStore
    out: Path
    console: Console
    users: dict[str, Principal] = field(default_factory=dict)
    cases: dict[str, int] = field(default_factory=dict)
    audit_rows: int = 0


def _user(name: str, role: str, org: str) -> Principal:
    return Principal(name, role, org, source=NAMED_USER)  # type: ignore[arg-type]


def _years(warehouse: Warehouse) -> tuple[str, str]:
    """(baseline year, case year): the case year is the latest with priced activity whose
    year before is complete (twelve months)."""
    from pbc.services.evaluation import loaded_months

    months: dict[str, int] = {}
    for fy, _ in loaded_months(warehouse)[0]:  # partial months (late stragglers) left out
        months[fy] = months.get(fy, 0) + 1
    full = {fy for fy, n in months.items() if n == 12}
    for fy in sorted(months, reverse=True):
        prior = format_financial_year(parse_financial_year(fy) - 1)
        if prior in full and months[fy] >= 3:
            return prior, fy
    raise CaseError("the decision demo needs a complete financial year followed by at least "
                    "three months of another")


def _case_text(proposer: str, council: str, baseline: str, year: str, *,
               funding: str = "commissioner", investment: str = "40000.00",
               social_care: bool = True) -> str:
    """examples/business_case.toml for the demo's practice, council and years."""
    text = EXAMPLE.read_text(encoding="utf-8")
    for old in ('proposer = "A81001"', 'provider = "A81001"', 'local_authority = "E06009000"',
                '"2026-27" = 40000.00', '"2027-28" = 25000.00', '# baseline_year = "2025-26"',
                "touches_social_care = true"):
        if old not in text:
            raise ValueError(f"{EXAMPLE}: expected {old!r} to derive the demo's case")
    text = (text.replace('proposer = "A81001"', f'proposer = "{proposer}"')
            .replace('provider = "A81001"', f'provider = "{proposer}"')
            .replace('"2026-27" = 40000.00', f'"{year}" = {investment}')
            .replace('"2027-28" = 25000.00\n', "")
            .replace('# baseline_year = "2025-26"', f'baseline_year = "{baseline}"'))
    if social_care:
        text = text.replace('local_authority = "E06009000"', f'local_authority = "{council}"')
    else:
        text = (text.replace("touches_social_care = true", "touches_social_care = false")
                .replace('local_authority = "E06009000"', ""))
    if funding != "commissioner":
        text = text.replace("seed = 2026", f'funding = "{funding}"\nseed = 2026', 1)
    return text


def demo_decisions(warehouse: Warehouse, out: Path, console: Console, *,
                   extra_steps: Sequence[Callable[[DemoDecisions], None]] = ()
                   ) -> DemoDecisions:
    """Run the decision flow on the demo's warehouse (see the module docstring); returns
    what it made. Writes the case files it proposes to ``out / "cases"``."""
    from pbc.services import cases as svc
    from pbc.services.evaluation import describe, evaluate_case
    from pbc.services.monitoring import freed_resources_report

    store = DecisionStore.beside(warehouse.root)
    ctx = DemoDecisions(warehouse, store, out, console)
    baseline, year = _years(warehouse)
    practice, council = (str(x) for x in warehouse.query(
        "SELECT practice_code, local_authority_code FROM practices WHERE commissioner_code = ?"
        " AND local_authority_code IS NOT NULL ORDER BY practice_code LIMIT 1",
        [COMMISSIONER])[0])
    group = str(warehouse.query("SELECT group_code FROM practices WHERE practice_code = ?",
                                [practice])[0][0])
    people = [("admin", "administrator", COMMISSIONER),
              ("j.smith", "commissioner_approver", COMMISSIONER),
              ("f.jones", "commissioner", COMMISSIONER),
              ("dr.patel", "practice", practice), ("g.lead", "group", group),
              ("c.officer", "local_authority", council)]
    # the store's first administrator (self-declared: nobody holds the role yet), who adds
    # the others; then everyone acts as a user of the store (--as ROLE:ORG:USER)
    svc.add_user(store, Principal("admin", "administrator", COMMISSIONER), *people[0])
    ctx.users["administrator"] = _user(*people[0])
    for name, role, org in people[1:]:
        svc.add_user(store, ctx.users["administrator"], name, role, org)
        ctx.users[role] = _user(name, role, org)
    console.print(f"  users: {', '.join(f'{n} ({r}:{o})' for n, r, o in people)}")

    folder = out / "cases"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "respiratory_team.toml"
    path.write_text(_case_text(practice, council, baseline, year), encoding="utf-8")
    case, text = svc.case_file_path(path)
    base, commissioner = svc.read_baseline(warehouse, case)
    u = ctx.users
    view = svc.create_case(store, u["practice"], case, text, base, commissioner)
    ctx.cases["respiratory"] = view.id
    sv = view.savings
    console.print(f"  case {view.id} ({path.name}) by {practice}: projected net saving "
                  f"{format_pounds(sv['net_pence'])} ({sv['interval']['level']:.0%} interval "
                  f"{format_pounds(sv['interval']['lower_pence'])} to "
                  f"{format_pounds(sv['interval']['upper_pence'])}) from a {baseline} "
                  f"baseline of {format_pounds(sv['baseline']['spend_pence'])}")
    steps = [("submit", u["practice"], {}),
             ("consult", u["local_authority"], {"response": "The council supports the team "
                                                 "and will align its reablement service."}),
             ("approve", u["commissioner_approver"], {"note": "Approved by the committee"}),
             ("implement", u["practice"], {})]
    for action, who, kwargs in steps:
        view = svc.act(store, who, view.id, action, **kwargs)  # type: ignore[arg-type]
        console.print(f"    {action} by {who.user} ({who.role}:{who.organisation}) -> "
                      f"{view.status}")
    evaluation = evaluate_case(store, warehouse, u["commissioner"], view.id)
    for line in describe(evaluation):
        console.print("    " + line, soft_wrap=True, markup=False, highlight=False)
    console.print("    (the synthetic economy has no effect planted: the interval should "
                  "hold zero)")

    _reinvestment(ctx, freed_resources_report, year)
    for step in extra_steps:  # hooks: opt-outs, invoice checks (added by the lead)
        step(ctx)
    result = svc.verify_audit(store, u["commissioner"])
    if not result.ok:
        raise CaseError(f"the demo's audit log does not verify: {result.problem}")
    ctx.audit_rows = result.rows
    console.print(f"  audit log intact: {result.rows:,} rows, head row {result.last_id} "
                  f"({result.last_hash[:16]}...)")
    return ctx


def _reinvestment(ctx: DemoDecisions, report: Callable[..., object], year: str) -> None:
    """A practice that freed resources in ``year`` proposes a case for the year after,
    funded from them: approved within what is reinvestable, refused beyond it."""
    from pbc.services import cases as svc

    u, console = ctx.users, ctx.console
    if not any(str(v.financial_year) == year for v in ctx.store.all_versions()):
        console.print(f"  (no budgets for {year}: no freed resources to reinvest)")
        return
    frame = report(ctx.warehouse, u["commissioner"], year).frame  # type: ignore[attr-defined]
    freeing = frame[frame.reinvestable > 0].sort_values("code")
    if freeing.empty:
        console.print(f"  no practice freed resources in {year}: nothing to reinvest")
        return
    row = freeing.iloc[0]
    code, reinvestable = str(row.code), int(row.reinvestable)
    nxt = format_financial_year(parse_financial_year(year) + 1)
    user = _user("dr.reinvest", "practice", code)
    svc.add_user(ctx.store, u["administrator"], user.user or "", "practice", code)
    half = Decimal(reinvestable // 2) / 100
    for label, amount in (("within", half), ("beyond", Decimal(reinvestable) / 100)):
        path = ctx.out / "cases" / f"reinvestment_{label}.toml"
        path.write_text(_case_text(code, "", year, nxt, funding="freed_resources",
                                   investment=f"{amount:.2f}", social_care=False),
                        encoding="utf-8")
        case = parse_case({**_load(path)}, str(path))
        base, commissioner = svc.read_baseline(ctx.warehouse, case)
        view = svc.create_case(ctx.store, user, case, path.read_text(encoding="utf-8"), base,
                               commissioner)
        svc.act(ctx.store, user, view.id, "submit")
        try:
            svc.act(ctx.store, u["commissioner_approver"], view.id, "approve",
                    freed_from=ctx.warehouse)
            console.print(f"  case {view.id}: {code} reinvests {format_pounds(int(amount * 100))}"
                          f" in {nxt} of the {format_pounds(reinvestable)} it may from {year}: "
                          "approved, drawn on its ledger (pbc freed-resources --year "
                          f"{nxt} shows it)")
        except CaseError as e:
            console.print(f"  case {view.id}: asks for a further "
                          f"{format_pounds(int(amount * 100))}: refused: "
                          f"{str(e).split(' (', 1)[0]}", soft_wrap=True, markup=False,
                          highlight=False)
        ctx.cases[f"reinvestment_{label}"] = view.id


def _load(path: Path) -> dict[str, object]:
    import tomllib

    return tomllib.loads(path.read_text(encoding="utf-8"))
