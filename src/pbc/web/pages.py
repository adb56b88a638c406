"""The server-rendered pages (Jinja2 templates in the NHS.UK frontend's look, htmx)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
