"""Indicator pages: every practice on a funnel plot, hover to identify, click through.
"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
