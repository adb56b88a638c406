"""``pbc demo`` as a newcomer runs it: every stage, no traceback, no warning, nothing ignored."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from pbc.services.demo import DemoNotClean, nothing_ignored

NOISE = ("Traceback", "Exception ignored", "Warning:", "DROP TABLE")


@pytest.mark.slow
def test_demo_runs_clean(tmp_path: Path) -> None:
    env = {**os.environ, "PBC_DEMO_NO_SERVE": "1", "COLUMNS": "100"}
    out = subprocess.run(
        [sys.executable, "-m", "pbc.cli", "demo", "--practices", "12", "--out",
         str(tmp_path / "demo")],
        capture_output=True, text=True, env=env, timeout=900, check=False)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    for noise in NOISE:
        assert noise not in text, f"{noise!r} in the demo's output:\n{text[-3000:]}"
    assert "Outputs" in out.stdout


def test_an_ignored_exception_fails_the_run() -> None:
    class Finaliser:
        def __del__(self) -> None:
            raise RuntimeError("cannot drop cached table")

    with pytest.raises(DemoNotClean, match="cannot drop cached table"), nothing_ignored():
        Finaliser()


def test_a_warning_fails_the_run() -> None:
    with pytest.raises(UserWarning, match="careful"), nothing_ignored():
        warnings.warn("careful", UserWarning, stacklevel=1)


def test_the_demo_serves_the_app_and_prints_a_login_for_each_role(tmp_path: Path) -> None:
    """The serve step after the pipeline (``pbc demo`` without --no-serve): a password for
    one user of each role, each printed, and the app handed to the server runner; each
    printed login signs in to that app (here a stub runner drives it in-process)."""
    import io
    import re

    from fastapi.testclient import TestClient
    from rich.console import Console

    from pbc.decisions import DecisionStore
    from pbc.services.cases import add_user
    from pbc.services.demo import ROLE_SEES, serve_demo
    from pbc.services.principal import Principal

    out = tmp_path / "demo"
    people = [("admin", "administrator", "Q99"), ("j.smith", "commissioner_approver", "Q99"),
              ("f.jones", "commissioner", "Q99"), ("dr.patel", "practice", "A81001"),
              ("dr.reinvest", "practice", "A81002"), ("g.lead", "group", "G01"),
              ("c.officer", "local_authority", "E09000001")]
    with DecisionStore.beside(out / "warehouse") as store:
        add_user(store, Principal("admin", "administrator", "Q99"), *people[0])
        for person in people[1:]:
            add_user(store, Principal("admin", "administrator", "Q99"), *person)
    served: list[tuple[str, int]] = []
    signed_in: dict[str, str] = {}

    def runner(app: object, host: str, port: int) -> None:
        served.append((host, port))
        # the logins as printed before the server starts
        logins_seen[:] = re.findall(r"(\S+)\s*│\s*(demo-password-\d\d)", buffer.getvalue())
        for login in logins_seen:
            client = TestClient(app)  # type: ignore[arg-type]
            token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
            assert token
            r = client.post("/login", data={"username": login[0], "password": login[1],
                                            "csrf_token": token.group(1)},
                            follow_redirects=False)
            signed_in[login[0]] = str(r.status_code)

    buffer = io.StringIO()
    console = Console(file=buffer, width=200)
    logins_seen: list[tuple[str, str]] = []
    passwords = iter(f"demo-password-{i:02d}" for i in range(100))

    def make() -> str:
        return next(passwords)

    logins = serve_demo(out, console, runner=runner, make_password=make)
    text = buffer.getvalue()
    assert served == [("127.0.0.1", 8000)]
    assert "http://127.0.0.1:8000/" in text and "Ctrl-C" in text
    # one user per role, every role of the demo, each printed with its password
    assert sorted(x.role for x in logins) == sorted({role for _, role, _ in people})
    for x in logins:
        assert x.user in text and x.password in text and x.sees == ROLE_SEES[x.role]
    assert {u for u, _ in logins_seen} == {x.user for x in logins}
    # each printed login signs in (303 to the user's home page)
    assert signed_in == {x.user: "303" for x in logins}
