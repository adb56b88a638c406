"""Business case pages: the case, its savings and history; the new-case form; submission,
consultation and the commissioner's decision.
"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
