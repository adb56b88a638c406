"""Business case pages: the case, its savings and history; the new-case form; submission,
consultation and the commissioner's decision.

Every page calls the same services as ``pbc case ...`` (:mod:`pbc.services.cases`), with the
signed-in principal, so the one permission table (:mod:`pbc.services.permissions`) decides:

* ``GET /cases/{id}`` is ``pbc case show``: the case, pbc's projection of its savings with
  the interval and every assumption, the audit history, the latest evaluation for those
  who may see it, and a form for each step of the lifecycle the principal may take now;
* ``POST /cases/{id}/{action}`` is ``pbc case submit|consult|approve|reject|return|
  implement ID --expect-version N``: every form carries the session's CSRF token and the
  version the page showed; a case changed since (``ConflictError``) gives a 409 page that
  says who changed it, and nothing is done;
* ``GET``/``POST /cases/new`` is ``pbc case new``: a practice or group proposes a case by
  a form with the case file's fields, or by uploading its case file (TOML). Errors are shown
  next to their fields (the NHS.UK error summary pattern) and nothing is stored; a case made
  by the form is stored with its case file written out as TOML (the text the CLI would
  have been given), which reads back to the same case.

* ``GET``/``POST /cases/{id}/revise`` is ``pbc case submit ID --file F --expect-version
  N``: the proposer of a draft or returned case uploads a revised case file, or edits the
  case's fields (filled in from its case file), and resubmits it; the service recomputes
  the savings and the history shows the revision and the resubmission. Errors as on the
  new-case form; nothing is stored.

A step the principal may not take is refused by the service: a 403 page, and the attempt is
written to the audit log (:func:`pbc.web.auth.deny`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from pbc.budgets.money import format_pounds
from pbc.decisions.cases import (
    CATEGORIES,
    TRANSITIONS,
    CaseError,
    CaseFile,
    ConflictError,
    parse_case,
)
from pbc.pricing.schema import SERVICE_LINES
from pbc.reference.codelists import CONDITION_CODELISTS
from pbc.services.principal import AccessDenied
from pbc.warehouse import WarehouseError
from pbc.web import auth
from pbc.web.auth import Viewer
from pbc.web.pages import _posted, render, warehouse_of

router = APIRouter()

#: the steps a page offers, in the order of the lifecycle, with the button's words and the
#: text field each needs (None: none; "note" is optional for approve)
ACTIONS: dict[str, tuple[str, str | None]] = {
    "submit": ("Submit the case", None),
    "consult": ("Record the council's response", "response"),
    "approve": ("Approve", "note"),
    "reject": ("Reject", "note"),
    "return": ("Return for changes", "note"),
    "implement": ("Record as implemented", None),
}
PROPOSERS = ("practice", "group")
#: investment rows on the form
INVESTMENT_ROWS = 3
WHO_MAY_SEE = "the proposer, its commissioner and a council the case was sent to"


# ------------------------------------------------------------------ the case page
def _parties(c: Any) -> Any:
    from pbc.services.permissions import CaseParties

    sent = bool(c.touches_social_care) and c.status != "draft"
    return CaseParties(c.proposer_code, c.commissioner_code, c.local_authority_code, sent,
                       c.id, c.proposer_kind)


def available_actions(v: Viewer, case: Any) -> list[str]:
    """The steps ``v`` may take on ``case`` now: its status allows them and the permission
    table lets the principal take them."""
    from pbc.services.permissions import allowed

    return [a for a in ACTIONS if case.status in TRANSITIONS[a][0]
            and allowed(v.principal, f"{a}_case", _parties(case))]


def savings_shown(sv: dict[str, Any]) -> dict[str, Any]:
    """The projection as ``pbc case show`` prints it (pounds from pence)."""
    iv = sv["interval"]
    return {"net": format_pounds(sv["net_pence"]), "gross": format_pounds(sv["gross_pence"]),
            "investment": format_pounds(sv["investment_pence"]),
            "level": f"{iv['level']:.0%}", "lower": format_pounds(iv["lower_pence"]),
            "upper": format_pounds(iv["upper_pence"]), "draws": iv.get("draws"),
            "seed": iv.get("seed"), "baseline": sv.get("baseline", {}),
            "baseline_spend": format_pounds(sv.get("baseline", {}).get("spend_pence", 0)),
            "years": [{"financial_year": y["financial_year"],
                       "gross": format_pounds(y["gross_pence"]),
                       "investment": format_pounds(y["investment_pence"]),
                       "net": format_pounds(y["net_pence"])} for y in sv["years"]],
            "assumptions": [str(a) for a in sv["assumptions"]]}


def _show(request: Request, v: Viewer, case_id: int) -> Any:
    from pbc.services.cases import show

    try:
        return show(auth.store_of(request), v.principal, case_id)
    except AccessDenied as e:
        raise auth.deny(request, v, str(e), WHO_MAY_SEE) from e


def _case_page(request: Request, v: Viewer, case_id: int, status_code: int = 200,
               error: tuple[str, str] | None = None, values: dict[str, str] | None = None
               ) -> HTMLResponse:
    from pbc.services.evaluation import describe, show_evaluation

    try:
        case = _show(request, v, case_id)
    except CaseError as e:
        return render(request, "case_problem.html", v, status_code=404,
                      heading="There is no such business case", message=str(e))
    evaluation: list[str] = []
    hidden = ""
    if case.status == "evaluated":
        try:
            evaluation = describe(show_evaluation(auth.store_of(request), v.principal,
                                                  case_id))
        except AccessDenied as e:  # a council sees the case, not its evaluation
            hidden = str(e)
    return render(request, "case_show.html", v, status_code=status_code, case=case,
                  title=f"Business case {case.id}: {case.title}",
                  savings=savings_shown(case.savings), evaluation=evaluation,
                  evaluation_hidden=hidden, actions=available_actions(v, case),
                  labels=ACTIONS, error=error, values=values or {})


@router.get("/cases/new", response_class=HTMLResponse)
def new_case_form(request: Request) -> HTMLResponse:
    v = auth.viewer(request)
    _may_propose(request, v)
    return _form(request, v)


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(request: Request, case_id: int) -> HTMLResponse:
    v = auth.viewer(request)
    return _case_page(request, v, case_id)


@router.get("/cases/{case_id}/revise", response_class=HTMLResponse)
def revise_form(request: Request, case_id: int) -> HTMLResponse:
    """The case's fields, filled in from its case file, to revise and resubmit it."""
    v = auth.viewer(request)
    case, problem = _revisable(request, v, case_id)
    if problem is not None:
        return problem
    return _form(request, v, values=case_values(case.case_file), revising=case)


@router.post("/cases/{case_id}/revise", response_class=HTMLResponse)
async def revise(request: Request, case_id: int) -> Response:
    """``pbc case submit ID --file F --expect-version N``: a revised case file (uploaded,
    or made from the form's fields) replaces the case's, pbc's projection of its savings is
    recomputed, and the case is resubmitted; nothing is stored if anything is wrong."""
    v = auth.viewer(request)
    form = await _posted(request, v)
    try:
        return await _revise(request, v, case_id, form)
    finally:
        await form.close()


@router.post("/cases/{case_id}/{action}", response_class=HTMLResponse)
async def case_action(request: Request, case_id: int, action: str) -> Response:
    """One step of the lifecycle (``pbc case ACTION ID --expect-version N``)."""
    from pbc.services.cases import act

    v = auth.viewer(request)
    form = await _posted(request, v)
    if action not in ACTIONS:
        return render(request, "case_problem.html", v, status_code=404,
                      heading="There is no such step",
                      message=f"There is no step {action!r}: the steps of a business case "
                      f"are {', '.join(ACTIONS)}.")
    text_field = ACTIONS[action][1]
    text = str(form.get(text_field, "")).strip() if text_field else ""
    values = {f"{action}-{text_field}": text} if text_field else {}
    try:
        version = int(str(form.get("version", "")))
    except ValueError:
        return _case_page(request, v, case_id, 400, (
            f"{action}-submit", "The form did not say which version of the case you read: "
            "reload the page and try again."), values)
    try:
        act(auth.store_of(request), v.principal, case_id, action,
            note=(text or None) if text_field == "note" else None,
            response=text if text_field == "response" else None,
            expected_version=version,
            freed_from=warehouse_of(request) if action == "approve" else None)
    except AccessDenied as e:
        raise auth.deny(request, v, str(e), f"who may {action} a case: see the permission "
                        "table (docs/security.md)") from e
    except ConflictError as e:
        return render(request, "case_problem.html", v, status_code=409,
                      heading="Someone else changed this case", message=str(e),
                      case_id=case_id)
    except CaseError as e:
        if "no business case" in str(e):
            return render(request, "case_problem.html", v, status_code=404,
                          heading="There is no such business case", message=str(e))
        target = f"{action}-{text_field}" if text_field else f"{action}-submit"
        return _case_page(request, v, case_id, 400, (target, str(e)), values)
    return RedirectResponse(f"/cases/{case_id}", status_code=303)


# ------------------------------------------------------------------ the new-case form
def _may_propose(request: Request, v: Viewer) -> None:
    if v.principal.role not in PROPOSERS:
        raise auth.deny(request, v, f"{v.principal} may not propose a business case",
                        "a practice (practice:CODE) or a group (group:CODE), for itself")


@dataclass
class FormErrors:
    """Errors by form field (the field's id), in the order they were found."""

    by_field: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, message: str) -> None:
        self.by_field.setdefault(name, []).append(message)

    def __bool__(self) -> bool:
        return bool(self.by_field)


#: a CaseFile field (its location) -> the form field showing its error
FIELD_OF = {
    ("title",): "title", ("category",): "category", ("summary",): "summary",
    ("scope", "service_lines"): "service_lines", ("scope", "hrg_prefixes"): "hrg_prefixes",
    ("scope", "condition_codelist"): "condition_codelist", ("baseline_year",): "baseline_year",
    ("investment",): "investment", ("expected_change", "description"): "change_description",
    ("expected_change", "reduction"): "reduction",
    ("expected_change", "reduction_sd"): "reduction_sd",
    ("social_care", "touches_social_care"): "touches_social_care",
    ("social_care",): "local_authority", ("social_care", "local_authority"): "local_authority",
    ("make_or_buy", "provider_is_proposer"): "provider_is_proposer",
    ("make_or_buy", "provider"): "provider", ("make_or_buy",): "alternatives",
    ("make_or_buy", "alternatives_considered"): "alternatives",
    ("make_or_buy", "conflict_of_interest"): "conflict_of_interest", ("funding",): "funding",
}
LABELS = {"title": "a title", "change_description": "what will change",
          "provider": "who would provide the service"}


def _field_for(loc: tuple[Any, ...]) -> str:
    for n in range(len(loc), 0, -1):
        if tuple(loc[:n]) in FIELD_OF:
            return FIELD_OF[tuple(loc[:n])]
    return "title"


def _message(err: Any, name: str) -> str:
    if err["type"] == "string_too_short" and name in LABELS:
        return f"Enter {LABELS[name]}"
    if err["type"] == "missing":
        return "Choose one"
    return str(err["msg"]).removeprefix("Value error, ")


def _lines(text: str) -> list[str]:
    return [s.strip() for s in text.splitlines() if s.strip()]


def case_data(form: Any, v: Viewer, errors: FormErrors) -> dict[str, Any]:
    """The case file's fields from the form (the proposer is the principal itself)."""
    def get(name: str) -> str:
        return str(form.get(name, "")).strip()

    investment: dict[str, str] = {}
    for i in range(1, INVESTMENT_ROWS + 1):
        year, amount = get(f"investment_year_{i}"), get(f"investment_amount_{i}")
        if year and amount:
            investment[year] = amount.replace(",", "").removeprefix("£")
        elif year or amount:
            errors.add("investment", f"Row {i}: give both the financial year and the amount")

    def yes_no(name: str) -> bool | None:
        return {"yes": True, "no": False}.get(get(name))

    data: dict[str, Any] = {
        "title": get("title"), "proposer": v.principal.organisation,
        "proposer_kind": v.principal.role, "category": get("category"),
        "summary": get("summary"),
        "scope": {"service_lines": [str(s) for s in form.getlist("service_lines")],
                  "hrg_prefixes": [h.strip() for h in get("hrg_prefixes").split(",")
                                   if h.strip()],
                  "condition_codelist": get("condition_codelist") or None},
        "investment": investment,
        "expected_change": {"description": get("change_description"),
                            "reduction": get("reduction"),
                            "reduction_sd": get("reduction_sd")},
        "social_care": {"touches_social_care": yes_no("touches_social_care"),
                        "local_authority": get("local_authority") or None},
        "make_or_buy": {"provider_is_proposer": yes_no("provider_is_proposer"),
                        "provider": get("provider"),
                        "alternatives_considered": _lines(get("alternatives")),
                        "conflict_of_interest": get("conflict_of_interest") or None},
        "funding": get("funding") or "commissioner",
    }
    if get("baseline_year"):
        data["baseline_year"] = get("baseline_year")
    for section in ("social_care", "make_or_buy"):
        data[section] = {k: val for k, val in data[section].items() if val is not None}
    return data


def validate(data: dict[str, Any], errors: FormErrors) -> CaseFile | None:
    """The validated case file, or None with each problem added to ``errors``."""
    try:
        return CaseFile.model_validate(data)
    except ValidationError as e:
        for err in e.errors():
            name = _field_for(tuple(err["loc"]))
            errors.add(name, _message(err, name))
    except ValueError as e:  # a financial year that is not one
        errors.add("investment", str(e))
    return None


# ------------------------------------------------------------------ TOML
def _toml_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(x) for x in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def case_toml(case: CaseFile) -> str:
    """The case file as TOML (as ``pbc case new --file`` reads it): reads back to ``case``."""
    lines = ["# A business case proposed in the web app (pbc case new --file reads this)."]
    tables: list[tuple[str, dict[str, Any]]] = []
    for key, value in case.model_dump().items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif value is not None:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables:
        lines += ["", f"[{name}]"]
        lines += [f"{_toml_string(str(k))} = {_toml_value(val)}"
                  for k, val in table.items() if val is not None]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ the form's pages
def _councils(request: Request) -> list[tuple[str, str]]:
    wh = warehouse_of(request)
    if not wh.has_table("local_authorities"):
        return []
    return [(str(c), str(n or "")) for c, n in wh.query(
        "SELECT local_authority_code, local_authority_name FROM local_authorities "
        "ORDER BY 1")]


def _form(request: Request, v: Viewer, status_code: int = 200,
          errors: FormErrors | None = None, values: dict[str, Any] | None = None,
          revising: Any = None) -> HTMLResponse:
    """The new-case form, or (``revising``: the case) the form to revise and resubmit it."""
    title = ("Propose a business case" if revising is None else
             f"Revise and resubmit business case {revising.id}")
    return render(request, "case_new.html", v, status_code=status_code, title=title,
                  revising=revising, errors=(errors or FormErrors()).by_field,
                  form_action=("/cases/new" if revising is None
                               else f"/cases/{revising.id}/revise"),
                  values=values or {"funding": "commissioner", "reduction_sd": "0"},
                  categories=CATEGORIES, service_lines=SERVICE_LINES,
                  codelists=CONDITION_CODELISTS, councils=_councils(request),
                  investment_rows=range(1, INVESTMENT_ROWS + 1))


def _values(form: Any) -> dict[str, Any]:
    values: dict[str, Any] = {k: str(val) for k, val in form.items()
                              if isinstance(val, str) and k != "csrf_token"}
    values["service_lines"] = [str(s) for s in form.getlist("service_lines")]
    return values


@router.post("/cases/new", response_class=HTMLResponse)
async def new_case(request: Request) -> Response:
    """``pbc case new``: a form's fields, or an uploaded case file; the case page after."""
    v = auth.viewer(request)
    form = await _posted(request, v)
    try:
        return await _propose(request, v, form)
    finally:
        await form.close()  # an uploaded file's temporary file


async def _case_from(form: Any, v: Viewer, errors: FormErrors
                     ) -> tuple[CaseFile | None, str, bool]:
    """The case file from an uploaded file (kept as written) or from the form's fields
    (written out as TOML), its text, and whether it was uploaded; problems in ``errors``."""
    upload = form.get("case_file")
    raw = await upload.read() if upload is not None and not isinstance(upload, str) else b""
    case: CaseFile | None = None
    text = ""
    if raw:
        where = getattr(upload, "filename", None) or "the uploaded case file"
        try:
            text = raw.decode("utf-8")
            case = parse_case(tomllib.loads(text), where)
        except UnicodeDecodeError:
            errors.add("case_file", f"{where}: not UTF-8 text (a case file is TOML)")
        except tomllib.TOMLDecodeError as e:
            errors.add("case_file", f"{where}: not valid TOML: {e}")
        except CaseError as e:
            errors.add("case_file", str(e))
    else:
        case = validate(case_data(form, v, errors), errors)
        if case is not None and not errors:
            text = case_toml(case)
            case = parse_case(tomllib.loads(text), "the form's case file")
    return case, text, bool(raw)


def _error_field(message: str, uploaded: bool) -> str:
    """The form field a service's refusal of the case belongs beside."""
    return "case_file" if uploaded else (
        "local_authority" if "local authority" in message else
        "baseline_year" if "baseline" in message else "title")


async def _propose(request: Request, v: Viewer, form: Any) -> Response:
    from pbc.services.cases import create_case, read_baseline

    _may_propose(request, v)
    errors = FormErrors()
    case, text, uploaded = await _case_from(form, v, errors)
    if errors or case is None:
        return _form(request, v, 400, errors, _values(form))
    try:
        baseline, commissioner = read_baseline(warehouse_of(request), case)
        view = create_case(auth.store_of(request), v.principal, case, text, baseline,
                           commissioner)
    except AccessDenied as e:
        raise auth.deny(request, v, str(e), "a practice or a group, for itself") from e
    except (CaseError, WarehouseError) as e:
        errors.add(_error_field(str(e), uploaded), str(e))
        return _form(request, v, 400, errors, _values(form))
    return RedirectResponse(f"/cases/{view.id}", status_code=303)

# ------------------------------------------------------------------ revise and resubmit
def _revisable(request: Request, v: Viewer, case_id: int) -> tuple[Any, HTMLResponse | None]:
    """The case, if ``v`` may revise and resubmit it now (its proposer, while it is a draft
    or returned); else the page that says why (403 audited, 404, or 409 for its status)."""
    from pbc.services.permissions import allowed

    try:
        case = _show(request, v, case_id)
    except CaseError as e:
        return None, render(request, "case_problem.html", v, status_code=404,
                            heading="There is no such business case", message=str(e))
    if not allowed(v.principal, "submit_case", _parties(case)):
        raise auth.deny(request, v, f"{v.principal} may not revise or resubmit business case "
                        f"{case_id} (proposed by {case.proposer_code})",
                        f"its proposer ({case.proposer_kind}:{case.proposer_code})")
    if case.status not in TRANSITIONS["submit"][0]:
        return case, render(request, "case_problem.html", v, status_code=409,
                            heading="This case cannot be revised now",
                            message=f"Case {case_id} is {case.status}: only a draft or a "
                            "returned case is revised and resubmitted.", case_id=case_id)
    return case, None


def case_values(text: str) -> dict[str, Any]:
    """The form's fields filled in from a case file (the inverse of :func:`case_data`);
    empty if the stored text is not a case file."""
    try:
        case = parse_case(tomllib.loads(text), "the stored case file")
    except (tomllib.TOMLDecodeError, CaseError):
        return {"funding": "commissioner", "reduction_sd": "0"}
    values: dict[str, Any] = {
        "title": case.title, "category": case.category, "summary": case.summary,
        "service_lines": list(case.scope.service_lines),
        "hrg_prefixes": ", ".join(case.scope.hrg_prefixes),
        "condition_codelist": case.scope.condition_codelist or "",
        "baseline_year": case.baseline_year or "",
        "change_description": case.expected_change.description,
        "reduction": format(case.expected_change.reduction, "f"),
        "reduction_sd": format(case.expected_change.reduction_sd, "f"),
        "touches_social_care": "yes" if case.social_care.touches_social_care else "no",
        "local_authority": case.social_care.local_authority or "",
        "provider_is_proposer": "yes" if case.make_or_buy.provider_is_proposer else "no",
        "provider": case.make_or_buy.provider,
        "alternatives": "\n".join(case.make_or_buy.alternatives_considered),
        "conflict_of_interest": case.make_or_buy.conflict_of_interest or "",
        "funding": case.funding}
    for i, (year, amount) in enumerate(case.investment.items(), start=1):
        if i <= INVESTMENT_ROWS:
            values[f"investment_year_{i}"] = year
            values[f"investment_amount_{i}"] = format(amount, "f")
    return values


async def _revise(request: Request, v: Viewer, case_id: int, form: Any) -> Response:
    from pbc.services.cases import act, read_baseline

    case_view, problem = _revisable(request, v, case_id)
    if problem is not None:
        return problem
    errors = FormErrors()
    try:
        version = int(str(form.get("version", "")))
    except ValueError:
        errors.add("case_file", "The form did not say which version of the case you read: "
                   "reload the page and try again.")
        return _form(request, v, 400, errors, _values(form), revising=case_view)
    case, text, uploaded = await _case_from(form, v, errors)
    if errors or case is None:
        return _form(request, v, 400, errors, _values(form), revising=case_view)
    try:
        baseline, _ = read_baseline(warehouse_of(request), case)
        act(auth.store_of(request), v.principal, case_id, "submit",
            expected_version=version, revised=(case, text, baseline))
    except AccessDenied as e:
        raise auth.deny(request, v, str(e), f"its proposer ({case_view.proposer_kind}:"
                        f"{case_view.proposer_code})") from e
    except ConflictError as e:
        return render(request, "case_problem.html", v, status_code=409,
                      heading="Someone else changed this case", message=str(e),
                      case_id=case_id)
    except (CaseError, WarehouseError) as e:
        errors.add(_error_field(str(e), uploaded), str(e))
        return _form(request, v, 400, errors, _values(form), revising=case_view)
    return RedirectResponse(f"/cases/{case_id}", status_code=303)
