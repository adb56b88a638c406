"""The REST API under ``/api/v1`` (OpenAPI at ``/api/v1/openapi.json``): the same services
and the same access rules as the pages, for a bearer token (``pbc users token``)."""

from __future__ import annotations

from fastapi import FastAPI

from pbc.web.settings import WebSettings


def create_api(settings: WebSettings) -> FastAPI:
    """The API as its own application, mounted at ``/api/v1``."""
    api = FastAPI(title="pbc API", version="1", openapi_url="/openapi.json", docs_url=None,
                  redoc_url=None)
    api.state.settings = settings
    return api
