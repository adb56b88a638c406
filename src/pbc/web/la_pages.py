"""The local authority's view and the group dashboard: pooled budgets, neighbourhood profiles
(suppressed), shared clients, cases awaiting the council's response.
"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
