"""The FastAPI application: pages at ``/``, the REST API at ``/api/v1``, static files.

Static files are vendored (src/pbc/web/static/vendor, written by ``make vendor``): the app
loads nothing from the internet. NHS.UK frontend's stylesheet names its icons as
``/assets/images/...``; they are served from that path.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from pbc.web.settings import WebSettings

STATIC = Path(__file__).resolve().parent / "static"
TEMPLATES = Path(__file__).resolve().parent / "templates"


def create_app(settings: WebSettings) -> FastAPI:
    """The whole web app for one warehouse."""
    from pbc.web import api, case_pages, indicator_pages, la_pages, pages, panel_pages, pdf

    app = FastAPI(title="pbc", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/assets/images", StaticFiles(directory=STATIC / "vendor" / "nhsuk-frontend"
                                            / "images"), name="nhsuk-images")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        """Alive, without login (for a load balancer or a monitor)."""
        return {"status": "ok"}

    app.mount("/api/v1", api.create_api(settings))
    app.include_router(pages.router)
    for module in (case_pages, indicator_pages, la_pages, panel_pages, pdf):
        app.include_router(module.router)
    pages.install(app)
    return app
