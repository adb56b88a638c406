"""The FastAPI application: pages at ``/``, the REST API at ``/api/v1``, static files.

Static files are vendored (src/pbc/web/static/vendor, written by ``make vendor``): the app
loads nothing from the internet. NHS.UK frontend's stylesheet names its icons as
``/assets/images/...``; they are served from that path.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from pbc.web.settings import WebSettings

#: the settings of ``pbc serve --workers N`` for each worker process (JSON)
SETTINGS_VARIABLE = "PBC_WEB_SETTINGS"
STATIC = Path(__file__).resolve().parent / "static"
TEMPLATES = Path(__file__).resolve().parent / "templates"


def create_app(settings: WebSettings) -> FastAPI:
    """The whole web app for one warehouse."""
    from pbc.web import api, case_pages, indicator_pages, la_pages, pages, panel_pages, pdf
    from pbc.web.warmup import WarmUp

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.warm_up:
            app.state.warm_up = WarmUp(app, settings.warm_every_seconds)
            app.state.warm_up.start()
        yield
        if settings.warm_up:
            app.state.warm_up.stop()

    app = FastAPI(title="pbc", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.settings = settings
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/assets/images", StaticFiles(directory=STATIC / "vendor" / "nhsuk-frontend"
                                            / "images"), name="nhsuk-images")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        """Alive, without login (for a load balancer or a monitor); with the warm-up's
        state (``off``, ``starting``, ``warming``, ``ready``: every landing page's results
        computed for the data as they are now)."""
        warm = getattr(app.state, "warm_up", None)
        return {"status": "ok", "warm_up": warm.state if warm else "off"}

    app.mount("/api/v1", api.create_api(settings))
    app.include_router(pages.router)
    for module in (case_pages, indicator_pages, la_pages, panel_pages, pdf):
        app.include_router(module.router)
    pages.install(app)
    return app


def create_app_from_environment() -> FastAPI:
    """The app of one worker of ``pbc serve --workers N`` (uvicorn's factory): the
    settings come from the environment variable ``PBC_WEB_SETTINGS``."""
    text = os.environ.get(SETTINGS_VARIABLE)
    if not text:
        raise RuntimeError(f"{SETTINGS_VARIABLE} is not set: start the app with pbc serve")
    return create_app(WebSettings.from_json(text))
