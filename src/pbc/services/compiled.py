"""The compiled SQL of the pricing and attribution expressions, kept between runs.

Building the Ibis expressions of :func:`pbc.pricing.price_activity` and
:func:`pbc.attribution.attribute` and compiling them to SQL costs seconds whatever the data
(docs/performance.md, "Monthly deliveries"): for a month's delivery it was the largest
fixed cost of ``pbc price``. The SQL depends only on what the expressions are built from:
the tariff settings and any Annex A workbook (by content hash), the columns and types of
the input tables, whether the marginal rate starts from kept running totals, the functions
that build the expressions, pbc's source (every module, by content hash) and the versions of
pbc, Ibis, sqlglot and DuckDB. Those make the **key**; the SQL text of each view
and the small in-memory tables it names (contract baselines, an Annex A tariff) are kept
under it, in ``cache/compiled/`` beside the warehouse's versions (not data: deleting it only
means the next run compiles again).

A run with the same key executes the kept SQL text; a run without one compiles, executes
the text it compiled in the same way, and keeps it. Either way DuckDB runs the same
statements, so the output is the same (tests/test_incremental.py compares a run from the
kept SQL with one that compiled). Expressions built by anything but pbc's own functions (a
test's stand-in, :func:`cacheable`) are compiled every time and never kept. Files are
written under a temporary name and renamed, so a killed run leaves the whole entry or none.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

#: entries kept (the newest by modification time); older ones are removed
KEEP = 8
#: the format of an entry (part of the key)
FORMAT = 1


def cache_dir(root: Path) -> Path:
    """Where a warehouse keeps its compiled SQL (beside ``versions``)."""
    return root / "cache" / "compiled"


def cacheable(builders: Iterable[Callable[..., Any]]) -> bool:
    """Whether SQL built by ``builders`` may be kept: each is a named function of pbc's own
    code (whose source is part of the key), not a stand-in such as a test's lambda (whose
    closure the key cannot see)."""
    return all(getattr(fn, "__module__", "").startswith("pbc.")
               and "<" not in getattr(fn, "__qualname__", "<") for fn in builders)


@functools.cache
def source_digest() -> str:
    """SHA-256 of pbc's Python source (every module): an edited pbc whose version number
    did not change still compiles its own SQL."""
    import pbc

    root = Path(pbc.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def key(inputs: Mapping[str, Any], tables: Mapping[str, Any],
        builders: Iterable[Callable[..., Any]] = (), **flags: Any) -> str:
    """The key of the compiled SQL: ``inputs`` (content hashes of the settings and
    workbook), the name, columns and types of every input table, the functions that build
    the expressions and pbc's source, ``flags`` and the versions of the libraries that
    compile and run it."""
    import duckdb
    import ibis
    import sqlglot

    from pbc import __version__

    doc = {
        "format": FORMAT,
        "versions": [__version__, ibis.__version__, sqlglot.__version__, duckdb.__version__],
        "source": source_digest(),
        "builders": [f"{fn.__module__}.{fn.__qualname__}" for fn in builders],
        "inputs": dict(inputs),
        "tables": {name: [[c, str(t)] for c, t in tables[name].schema().items()]
                   for name in sorted(tables)},
        "flags": flags,
    }
    text = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def load(root: Path, k: str) -> dict[str, Any] | None:
    """The entry kept under ``k``: ``{"views": [(name, sql)], "memtables": {name: arrow}}``;
    None when there is none (or it cannot be read: it is then compiled again)."""
    import pyarrow as pa

    path = cache_dir(root) / f"{k}.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        memtables = {name: pa.ipc.open_stream(base64.b64decode(data)).read_all()
                     for name, data in doc["memtables"].items()}
        views = [(str(n), str(s)) for n, s in doc["views"]]
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException):
        return None
    return {"views": views, "memtables": memtables}


def compile_views(backend: Any, exprs: Mapping[str, Callable[[], Any]]) -> dict[str, Any]:
    """Build and compile each view's expression in order (``exprs[name]()`` may read the
    views made before it), creating each view on ``backend``; the entry to keep.

    Compiled without Ibis's select fusing: fusing nested projections is an optimisation of
    the SQL text only (DuckDB merges them itself; the result is the same) that took a third
    of the compile time of the pricing expression."""
    import ibis
    import ibis.expr.operations as ops

    views: list[tuple[str, str]] = []
    memtables: dict[str, Any] = {}
    fuse = ibis.options.sql.fuse_selects
    ibis.options.sql.fuse_selects = False
    try:
        for name, build in exprs.items():
            expr = build()
            sql = backend.compile(expr)
            for op in expr.op().find(ops.InMemoryTable):
                memtables[op.name] = op.data.to_pyarrow(op.schema)
            entry = {"views": [(name, sql)], "memtables": memtables}
            create_views(backend.con, entry)
            views.append((name, sql))
    finally:
        ibis.options.sql.fuse_selects = fuse
    return {"views": views, "memtables": memtables}


def create_views(con: Any, entry: Mapping[str, Any]) -> None:
    """Register the entry's in-memory tables on the DuckDB connection ``con`` and create its
    views from their SQL text."""
    for name, table in entry["memtables"].items():
        con.register(name, table)
    for name, sql in entry["views"]:
        con.execute(f'CREATE OR REPLACE VIEW "{name}" AS {sql}')


def save(root: Path, k: str, entry: Mapping[str, Any]) -> None:
    """Keep ``entry`` under ``k`` (written whole, then renamed), and only the newest
    :data:`KEEP` entries."""
    import pyarrow as pa

    def ipc(table: Any) -> str:
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return base64.b64encode(sink.getvalue()).decode()

    from pbc.warehouse.store import DIR_MODE, FILE_MODE

    folder = cache_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    for d in (folder.parent, folder):  # owner and group only, like the versions
        d.chmod(DIR_MODE)
    doc = {"views": entry["views"],
           "memtables": {n: ipc(t) for n, t in entry["memtables"].items()}}
    tmp = folder / f".{k}.{uuid.uuid4().hex[:8]}"
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    tmp.chmod(FILE_MODE)
    os.replace(tmp, folder / f"{k}.json")
    entries = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP:]:
        old.unlink(missing_ok=True)
