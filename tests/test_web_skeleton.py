"""The web app's frame: health check without login, vendored assets served locally."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from pbc.web.app import STATIC, create_app
from pbc.web.settings import WebSettings


def test_healthz_answers_without_login_and_vendored_assets_are_served(tmp_path: Path) -> None:
    client = TestClient(create_app(WebSettings(tmp_path)))
    health = client.get("/healthz")  # no warm-up asked for: it says so
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "warm_up": "off"}
    for path in ("/static/vendor/nhsuk-frontend/nhsuk-frontend.min.css",
                 "/static/vendor/htmx.org/htmx.min.js", "/static/vendor/vega/vega.min.js",
                 "/static/vendor/vega-lite/vega-lite.min.js",
                 "/static/vendor/vega-embed/vega-embed.min.js",
                 "/static/vendor/axe-core/axe.min.js", "/assets/images/nhsuk-icon-cross.svg"):
        assert client.get(path).status_code == 200, path


def test_the_stylesheet_loads_nothing_from_the_internet() -> None:
    """The app must work with no internet: the vendored stylesheet's urls are all local
    (the NHS web font's @font-face rules, which name assets.nhs.uk, are removed), and each
    local url is a file that is served."""
    css = (STATIC / "vendor" / "nhsuk-frontend" / "nhsuk-frontend.min.css").read_text()
    urls = set(re.findall(r"url\(([^)]*)\)", css))
    assert urls
    remote = {u for u in urls if "//" in u}
    assert remote == set()
    images = STATIC / "vendor" / "nhsuk-frontend" / "images"
    for url in urls:
        if url.startswith("/assets/images/"):
            assert (images / url.removeprefix("/assets/images/")).exists(), url
    for package in ("nhsuk-frontend", "htmx.org", "vega", "vega-lite", "vega-embed",
                    "axe-core"):
        assert (STATIC / "vendor" / package / "LICENSE").stat().st_size > 500, package
