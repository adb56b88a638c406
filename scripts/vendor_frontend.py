"""Vendor the web app's frontend assets into src/pbc/web/static/vendor (run by `make vendor`).

The app must work with no internet, so nothing is loaded from a CDN: each package is
fetched from the npm registry with `npm pack` at the pinned version below, and only the
built files the app serves are kept, with the package's licence. NHS.UK frontend's
stylesheet names the NHS's Frutiger web font on assets.nhs.uk; that font is licensed to
NHS services only and is not redistributable, so its @font-face rules are removed and the
stylesheet's own fallback (Arial, sans-serif) is used. Its icons are referenced as
/assets/images/...; pbc serves them from the same path.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "src" / "pbc" / "web" / "static" / "vendor"

#: package, version, {file in the package: name in vendor/PACKAGE/}
PACKAGES: list[tuple[str, str, dict[str, str]]] = [
    ("nhsuk-frontend", "10.6.1", {
        "dist/nhsuk/nhsuk-frontend.min.css": "nhsuk-frontend.min.css",
        "dist/nhsuk/nhsuk-frontend.min.js": "nhsuk-frontend.min.js",
        "dist/nhsuk/assets/images": "images",
        "LICENSE": "LICENSE",
    }),
    ("htmx.org", "2.0.11", {"dist/htmx.min.js": "htmx.min.js", "LICENSE": "LICENSE"}),
    ("vega", "6.4.0", {"build/vega.min.js": "vega.min.js", "LICENSE": "LICENSE"}),
    ("vega-lite", "6.5.0", {"build/vega-lite.min.js": "vega-lite.min.js", "LICENSE": "LICENSE"}),
    ("vega-embed", "7.3.0", {"build/vega-embed.min.js": "vega-embed.min.js",
                             "LICENSE": "LICENSE"}),
    ("axe-core", "4.14.1", {"axe.min.js": "axe.min.js", "LICENSE": "LICENSE"}),
]

_FONT_FACE = re.compile(r"@font-face\{[^}]*assets\.nhs\.uk[^}]*\}")


def _strip_remote_fonts(css: Path) -> None:
    text = css.read_text(encoding="utf-8")
    stripped, n = _FONT_FACE.subn("", text)
    if n == 0 or "assets.nhs.uk" in stripped:
        raise SystemExit(f"{css}: expected @font-face rules naming assets.nhs.uk")
    css.write_text(stripped, encoding="utf-8")


_MIT = """Permission is hereby granted, free of charge, to any person obtaining a copy of this
software and associated documentation files (the "Software"), to deal in the Software
without restriction, including without limitation the rights to use, copy, modify, merge,
publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons
to whom the Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED,
INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR
PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE
FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR
OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
DEALINGS IN THE SOFTWARE.
"""


def _write_licence(package: Path, target: Path) -> None:
    """Copy the package's licence file; a package that ships none (nhsuk-frontend) gets
    its declared licence: package.json's ``license`` (MIT) and its README's Licence
    section, with the MIT licence's text."""
    for name in ("LICENSE", "LICENSE.md", "LICENSE.txt", "license"):
        if (package / name).exists():
            shutil.copy2(package / name, target)
            return
    meta = json.loads((package / "package.json").read_text(encoding="utf-8"))
    readme = (package / "README.md").read_text(encoding="utf-8")
    section = re.search(r"## Licence\n(.*?)(\n## |\Z)", readme, re.S)
    if meta.get("license") != "MIT" or section is None:
        raise SystemExit(f"{package}: no licence file and no MIT licence declared")
    target.write_text(
        f"{meta['name']} {meta['version']} ships no licence file in its npm package; its\n"
        f"package.json declares the licence \"MIT\", and its README says:\n\n"
        f"{section.group(1).strip()}\n\nThe MIT licence:\n\n{_MIT}", encoding="utf-8")


def main() -> int:
    if VENDOR.exists():
        shutil.rmtree(VENDOR)
    VENDOR.mkdir(parents=True)
    lines = ["# Vendored frontend packages", "",
             "Written by `make vendor` (scripts/vendor_frontend.py); do not edit by hand.", "",
             "| package | version | file | sha256 |", "| --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        for name, version, files in PACKAGES:
            out = subprocess.run(["npm", "pack", "-q", f"{name}@{version}"], cwd=tmp,
                                 check=True, capture_output=True, text=True)
            tgz = Path(tmp) / out.stdout.strip().splitlines()[-1]
            unpacked = Path(tmp) / name
            with tarfile.open(tgz) as tar:
                tar.extractall(unpacked, filter="data")
            package = unpacked / "package"
            target = VENDOR / name
            target.mkdir()
            for source, dest in files.items():
                if source == "LICENSE":
                    _write_licence(package, target / dest)
                    continue
                src = package / source
                if src.is_dir():
                    shutil.copytree(src, target / dest)
                else:
                    shutil.copy2(src, target / dest)
            if name == "nhsuk-frontend":
                _strip_remote_fonts(target / "nhsuk-frontend.min.css")
            for f in sorted(p for p in target.rglob("*") if p.is_file()):
                digest = hashlib.sha256(f.read_bytes()).hexdigest()
                lines.append(f"| {name} | {version} | {f.relative_to(target)} | {digest} |")
    (VENDOR / "VENDORED.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"vendored {len(PACKAGES)} packages into {VENDOR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
