"""A business case's and a pooled budget's scope name only service lines, social care types
and condition code lists pbc knows; an unknown name is refused with what is expected."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pbc.decisions.cases import Scope
from pbc.local_authorities.pooled import PoolScope


@pytest.mark.parametrize("model", [Scope, PoolScope])
def test_unknown_service_line_and_codelist_are_refused_naming_what_is_expected(
        model: type) -> None:
    with pytest.raises(ValidationError, match=r"unknown service line\(s\) dentistry; "
                       r"expected some of .*outpatient_first"):
        model(service_lines=["dentistry"])
    with pytest.raises(ValidationError, match=r"condition_codelist must be one of "
                       r"acsc_acute, acsc_chronic, not 'asthma'"):
        model(service_lines=["outpatient_first"], condition_codelist="asthma")
    ok = model(service_lines=["outpatient_first"], condition_codelist="acsc_chronic")
    assert ok.service_lines == ["outpatient_first"] and ok.condition_codelist == "acsc_chronic"


def test_a_pool_may_not_hold_prescribing_but_a_case_may() -> None:
    with pytest.raises(ValidationError, match="prescribing cannot be pooled"):
        PoolScope(service_lines=["prescribing"])
    assert Scope(service_lines=["prescribing"]).service_lines == ["prescribing"]
