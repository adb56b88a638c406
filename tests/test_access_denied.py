"""One writer of refusals to the audit log (pbc.services.accounts.record_access_denied):
the pages' rows (entity ``web_page``) and the API's (entity ``request``) differ only in the
entity and what was asked for; a long request is cut to the column and kept whole."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from pbc.decisions import DecisionStore
from pbc.decisions.audit import verify
from pbc.decisions.models import AuditEvent
from pbc.services.accounts import ENTITY_ID_LENGTH, record_access_denied
from pbc.services.principal import Principal

PM = Principal("pm", "practice", "A81001", authenticated=True, source="web session")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DecisionStore]:
    with DecisionStore(f"sqlite:///{tmp_path / 'd.sqlite'}") as s:
        yield s


def _rows(store: DecisionStore) -> list[AuditEvent]:
    with store._session() as s:
        return list(s.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def test_pages_and_api_write_the_same_row_but_the_entity(store: DecisionStore) -> None:
    record_access_denied(store, PM, "web_page", "/practices/A81002/case-finding", "not yours")
    record_access_denied(store, PM, "request", "GET /practices/A81002/case-finding",
                         "not yours", query="top=5")
    page, api = _rows(store)
    assert (page.action, page.entity, page.entity_id) == (
        "access_denied", "web_page", "/practices/A81002/case-finding")
    assert (api.action, api.entity, api.entity_id) == (
        "access_denied", "request", "GET /practices/A81002/case-finding")
    assert json.loads(page.detail) == {"reason": "not yours", "source": "web session"}
    assert json.loads(api.detail) == {"reason": "not yours", "source": "web session",
                                      "query": "top=5"}
    assert page.actor == api.actor == "pm" and page.actor_role == "practice:A81001"
    with store._session() as s:
        assert verify(s).ok


def test_a_long_request_fits_the_column_and_is_kept_whole(store: DecisionStore) -> None:
    path = "/groups/G01/download/group-members.xlsx?month=2025-09&table=group-members"
    assert len(path) > ENTITY_ID_LENGTH
    record_access_denied(store, PM, "web_page", path, "not yours")
    (row,) = _rows(store)
    assert row.entity_id == path[:ENTITY_ID_LENGTH]
    assert json.loads(row.detail)["what"] == path
