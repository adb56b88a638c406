"""The analytic warehouse: Parquet tables plus a DuckDB catalogue, versioned.

Layout::

    WDIR/
      current -> versions/000007          (a symlink, swapped atomically)
      versions/000007/
        manifest.json                     (tables, their sources and content hashes)
        catalogue.duckdb                  (views over every table, for any DuckDB client)
        tables/<table>/financial_year=2025-26/month=1/src-<id>-0.parquet
      .lock

Every change (a load, a pricing run) is a :class:`Transaction`: it builds a new
version beside the current one (unchanged files are hard-linked, not copied), and only
when everything is written does it rename the version into place and swap ``current``.
A failed or killed change leaves the previous version untouched and readable (the same
pattern as OpenPrescribing's built-aside DuckDB files).

A linked file is shared by two versions, so no file is ever written in place: a writer
makes a new file and renames it over the old name (:meth:`Transaction.put_file`,
:meth:`Transaction.adopt`), which breaks the link. The manifest lists every file of its
version with its SHA-256 (``checksums``); readers read exactly those files, never
whatever lies in a folder, and :meth:`Warehouse.verify` checks them. Versions are
readable by their owner and group only (``docs/security.md``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

KEEP_VERSIONS = 2
PARTITION_COLUMNS = ("financial_year", "month")
#: rows per Parquet row group (DuckDB's default, so every writer makes the same files)
ROW_GROUP_ROWS = 122_880
#: codec of the Parquet files pyarrow writes (read by DuckDB, Spark 3.4+, polars, R arrow)
PARQUET_COMPRESSION = "lz4"
#: prefix of the copies of partition columns that name hive directories while writing
KEY_PREFIX = "__key_"
#: files of a version that the manifest does not list: itself, and the DuckDB catalogue
#: (written after the version is renamed into place, from the manifest's file list)
UNLISTED = ("manifest.json", "catalogue.duckdb")
#: modes of the warehouse's files and folders: owner and group, never everyone
FILE_MODE = 0o640
DIR_MODE = 0o750
#: test hook: ``PBC_TEST_KILL_AT=<point>`` ends the process (``os._exit``) at that point
KILL_ENV = "PBC_TEST_KILL_AT"


class WarehouseError(Exception):
    """A problem with the warehouse a user can act on (no stack trace shown)."""


def _empty_manifest() -> dict[str, Any]:
    return {"version": 0, "created_at": None, "tables": {}, "history": []}


class Warehouse:
    """A warehouse directory. Reading never changes it; writing goes through :meth:`begin`."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    # ---------------------------------------------------------------- reading
    @property
    def current(self) -> Path | None:
        link = self.root / "current"
        if not link.is_symlink() and not link.exists():
            return None
        return link.resolve()

    def exists(self) -> bool:
        return self.current is not None

    def manifest(self) -> dict[str, Any]:
        cur = self.current
        if cur is None:
            return _empty_manifest()
        with open(cur / "manifest.json", encoding="utf-8") as f:
            data: dict[str, Any] = json.load(f)
        return data

    def table_names(self) -> list[str]:
        return sorted(self.manifest()["tables"])

    def has_table(self, name: str) -> bool:
        return name in self.manifest()["tables"]

    def table_dir(self, name: str) -> Path:
        cur = self.current
        if cur is None or not self.has_table(name):
            raise WarehouseError(
                f"table {name!r} is not in the warehouse {self.root} "
                f"(tables: {', '.join(self.table_names()) or 'none'})"
            )
        return cur / "tables" / name

    def table_files(self, name: str) -> list[Path]:
        """The Parquet files of ``name`` that the manifest lists (and only those: a file
        dropped into the table's folder by anything else is not part of the table)."""
        folder = self.table_dir(name)
        return _listed_files(self._checksums(), folder.parent.parent, name)

    def _checksums(self) -> dict[str, str]:
        return _require_checksums(self.root, self.manifest())

    def verify(self, version: Path | None = None) -> list[str]:
        """Problems with a version's files (default: the current one), one line each:
        a listed file missing or with other content than its manifest hash, or a file
        under ``tables/`` or ``reference/`` that the manifest does not list."""
        folder = version or self.current
        if folder is None:
            return []
        with open(folder / "manifest.json", encoding="utf-8") as f:
            sums: dict[str, str] = json.load(f).get("checksums") or {}
        problems = []
        for rel, digest in sorted(sums.items()):
            path = folder / rel
            if not path.is_file():
                problems.append(f"{rel}: listed in the manifest but missing")
            elif file_sha256(path) != digest:
                problems.append(f"{rel}: content differs from the manifest")
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder).as_posix()
            if path.is_file() and rel not in sums and rel not in UNLISTED:
                problems.append(f"{rel}: not listed in the manifest")
        return problems

    def refuse_inside(self, path: Path) -> None:
        """Raise if ``path`` lies inside the warehouse folder (an export written there
        would sit among the warehouse's own files)."""
        target = Path(path).resolve()
        if target == self.root or self.root in target.parents:
            raise WarehouseError(f"{path}: is inside the warehouse {self.root}; write "
                                 "exports somewhere else")

    def reference_file(self, name: str) -> Path | None:
        """A reference file kept by a load (e.g. ``tariff_settings.toml``), if the manifest
        lists one."""
        cur = self.current
        if cur is None or f"reference/{name}" not in self._checksums():
            return None
        return cur / "reference" / name

    def parquet_glob(self, name: str) -> str:
        """A glob of the table's folder (benchmarks only: readers use :meth:`table_files`)."""
        return str(self.table_dir(name) / "**" / "*.parquet")

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with a view for every warehouse table, over
        exactly the files its manifest lists."""
        con = quiet_connection()
        cur = self.current
        if cur is None:
            return con
        with open(cur / "manifest.json", encoding="utf-8") as f:  # one version throughout
            manifest = json.load(f)
        sums = _require_checksums(self.root, manifest)
        for name in sorted(manifest["tables"]):
            con.execute(f'CREATE VIEW "{name}" AS '
                        f"{scan_sql(_listed_files(sums, cur, name))}")
        return con

    def ibis(self) -> Any:
        """An Ibis DuckDB backend with every warehouse table registered (pipeline stages)."""
        import ibis

        return ibis.duckdb.from_connection(self.connect())

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        con = self.connect()
        try:
            return con.execute(sql, params or []).fetchall()
        finally:
            con.close()

    # ---------------------------------------------------------------- writing
    @contextlib.contextmanager
    def begin(self, stage: str) -> Iterator[Transaction]:
        """Build a new version aside; commit on success, discard on any error."""
        self.root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        if self.root.stat().st_uid == os.getuid():  # also spill files, decisions, lock
            os.chmod(self.root, DIR_MODE)
        (self.root / "versions").mkdir(mode=DIR_MODE, exist_ok=True)
        os.chmod(self.root / "versions", DIR_MODE)  # also a folder made by an older pbc
        lock = open(self.root / ".lock", "w")  # noqa: SIM115 - held for the transaction
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as e:
                raise WarehouseError(
                    f"another pbc process is writing to {self.root}; try again when it ends"
                ) from e
            self._clean_stale_staging()
            tx = Transaction(self, stage)
            try:
                yield tx
                tx.commit()
            except BaseException:
                tx.rollback()
                raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()

    def _clean_stale_staging(self) -> None:
        for p in (self.root / "versions").glob(".staging-*"):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:  # a catalogue (and its write-ahead log) of a killed commit
                p.unlink(missing_ok=True)


def quiet_connection() -> duckdb.DuckDBPyConnection:
    """An in-memory connection that prints no progress bar (the CLI draws its own)."""
    from pbc.config import memory_limit

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET memory_limit = '{memory_limit()}'")
    return con


def scan_sql(files: str | list[Path]) -> str:
    """SQL that reads a table's Parquet files: a glob, or a list of files (partition
    columns are stored in the files)."""
    if isinstance(files, str):
        source = "'" + files.replace("'", "''") + "'"
    else:
        source = "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"
    return (f"SELECT * FROM read_parquet({source}, hive_partitioning = false, "
            "union_by_name = true)")


def _require_checksums(root: Path, manifest: dict[str, Any]) -> dict[str, str]:
    sums = manifest.get("checksums")
    if sums is None:
        raise WarehouseError(
            f"{root}: version {manifest['version']} has no list of its files (written by an "
            "older pbc); run pbc load once to upgrade it")
    return dict(sums)


def file_sha256(path: Path) -> str:
    """SHA-256 of one file's content (hex)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _listed_files(sums: dict[str, str], version: Path, table: str) -> list[Path]:
    prefix = f"tables/{table}/"
    return [version / rel for rel in sorted(sums)
            if rel.startswith(prefix) and rel.endswith(".parquet")]


def kill_point(name: str) -> None:
    """Test hook: end the process here, as a kill would, when ``PBC_TEST_KILL_AT`` names
    this point (fault-injection tests; nothing is cleaned up, nothing flushed)."""
    if os.environ.get(KILL_ENV) == name:
        os._exit(137)


class Transaction:
    """A new warehouse version under construction."""

    def __init__(self, warehouse: Warehouse, stage: str) -> None:
        self.warehouse = warehouse
        self.stage = stage
        old = warehouse.manifest()
        self.manifest: dict[str, Any] = json.loads(json.dumps(old))
        self.base_version: int = old["version"]
        self.staging = warehouse.root / "versions" / f".staging-{uuid.uuid4().hex[:12]}"
        (self.staging / "tables").mkdir(parents=True)
        self.changed = False
        self.staging.chmod(DIR_MODE)
        cur = warehouse.current
        #: the previous version's files (relative path -> SHA-256), linked into this one
        self._old_sums: dict[str, str] = {}
        self._old_dir = cur
        if cur is not None:
            sums = old.get("checksums")
            if sums is None:  # written by an older pbc: adopt its files, list them now
                sums = {p.relative_to(cur).as_posix(): "" for p in cur.rglob("*")
                        if p.is_file() and p.relative_to(cur).parts[0] in ("tables",
                                                                            "reference")}
                self.changed = True
            self._old_sums = dict(sums)
            for rel in sums:
                _link_file(cur / rel, self.staging / rel)
        kill_point("linked")

    def table_dir(self, name: str) -> Path:
        return self.staging / "tables" / name

    def has_table(self, name: str) -> bool:
        return name in self.manifest["tables"]

    def glob(self, name: str) -> str:
        return str(self.table_dir(name) / "**" / "*.parquet")

    def drop_table(self, name: str) -> None:
        shutil.rmtree(self.table_dir(name), ignore_errors=True)
        self.manifest["tables"].pop(name, None)
        self.changed = True

    def drop_partition(self, name: str, partition: str) -> None:
        """Remove one partition folder of ``name`` (e.g. ``financial_year=2025-26/month=1``)
        and its files; the other partitions' files are left as they are."""
        folder = self.table_dir(name) / partition
        if folder.is_dir():
            shutil.rmtree(folder)
            self.changed = True

    def drop_files(self, name: str, prefix: str) -> None:
        """Remove the Parquet files of ``name`` whose file name starts with ``prefix``."""
        for p in self.table_dir(name).rglob(f"{prefix}*.parquet"):
            p.unlink()
        self.changed = True

    def write(
        self,
        con: duckdb.DuckDBPyConnection,
        name: str,
        select_sql: str,
        *,
        file_prefix: str,
        partition_by: tuple[str, ...] = (),
        replace: bool = False,
        meta: dict[str, Any] | None = None,
    ) -> int:
        """Write the rows of ``select_sql`` (run on ``con``) into table ``name``.

        Files are named ``<file_prefix>-<n>.parquet`` so that one source's rows can be
        found (and replaced) later. Returns the number of rows written. A table always
        has at least one file, so an empty table still has its columns.
        """
        if replace:
            shutil.rmtree(self.table_dir(name), ignore_errors=True)
        tmp = self.scratch()
        # the query runs once: written, then counted from the files' metadata
        if partition_by:
            parts = ", ".join(partition_by)
            con.execute(
                f"COPY ({select_sql}) TO '{tmp}' (FORMAT parquet, PARTITION_BY ({parts}), "
                f"WRITE_PARTITION_COLUMNS true, FILENAME_PATTERN '{file_prefix}-{{i}}')"
            )
        if not any(tmp.rglob("*.parquet")):  # unpartitioned, or no rows: one (empty) file
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            con.execute(
                f"COPY ({select_sql}) TO '{tmp / (file_prefix + '-0.parquet')}' (FORMAT parquet)"
            )
        return self.adopt(name, tmp, meta=meta)

    def write_batches(
        self,
        name: str,
        batches: pa.RecordBatchReader,
        *,
        file_prefix: str,
        partition_by: tuple[str, ...],
        replace: bool = False,
        meta: dict[str, Any] | None = None,
        unique_columns: tuple[str, ...] = (),
    ) -> int:
        """Write a stream of Arrow record batches into table ``name``, partitioned.

        The same files as :meth:`write` (hive directories, partition columns kept in the
        files, ``<file_prefix>-<n>.parquet``), written by pyarrow's dataset writer. For a
        wide output it is faster than DuckDB's partitioned ``COPY``: pricing at 10% of
        national scale writes ``priced_activity`` in 8.3 s rather than 11.5 s
        (docs/benchmarks.md). Batches are streamed; a partition buffers at most one row
        group before it is written. ``unique_columns`` (identifiers, nearly one value per
        row) are written without trying a dictionary first.
        """
        tmp = self.scratch()
        write_partitioned(batches, tmp, file_prefix=file_prefix, partition_by=partition_by,
                          unique_columns=unique_columns)
        return self.adopt(name, tmp, replace=replace, meta=meta)

    def scratch(self) -> Path:
        """A new directory path (not yet made) inside this version, for a writer's files."""
        return self.staging / f".tmp-{uuid.uuid4().hex[:8]}"

    def adopt(
        self, name: str, tmp: Path, *, replace: bool = False, meta: dict[str, Any] | None = None
    ) -> int:
        """Move the Parquet files written under ``tmp`` into table ``name``; their row count.

        ``tmp`` (from :meth:`scratch`) holds the table's layout: hive directories with the
        partition columns in the files, files named by the writer's prefix.
        """
        if replace:
            shutil.rmtree(self.table_dir(name), ignore_errors=True)
        rows = 0
        dest = self.table_dir(name)
        for f in tmp.rglob("*.parquet"):
            rows += pq.ParquetFile(f).metadata.num_rows
            target = dest / f.relative_to(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, target)  # a new name or a new inode: never a linked file's content
        shutil.rmtree(tmp, ignore_errors=True)
        kill_point("adopted")
        entry = self.manifest["tables"].setdefault(name, {"sources": {}})
        if meta is not None:
            entry.update(meta)
        self.changed = True
        return rows

    def put_file(self, source: Path, relative: str) -> None:
        """Copy a (small) reference file into the new version, e.g. tariff settings.

        The copy is written under a new name and renamed over ``relative``: the file there
        may be a hard link shared with the current version, whose content must not change.
        """
        target = self.staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
        shutil.copyfile(source, tmp)
        kill_point("put_file")
        os.replace(tmp, target)
        self.changed = True

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A connection with views over the tables as they stand in this transaction."""
        con = quiet_connection()
        for name in self.manifest["tables"]:
            if any(self.table_dir(name).rglob("*.parquet")):
                con.execute(f'CREATE OR REPLACE VIEW "{name}" AS {scan_sql(self.glob(name))}')
        return con

    def commit(self) -> None:
        if not self.changed:
            self.rollback()
            return
        root = self.warehouse.root
        version = self.base_version + 1
        self.manifest["version"] = version
        self.manifest["created_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.manifest["history"].append(
            {"version": version, "stage": self.stage, "at": self.manifest["created_at"]}
        )
        final = root / "versions" / f"{version:06d}"
        if final.exists():  # left by a load killed between rename and swap
            shutil.rmtree(final)
        self.manifest["checksums"] = self._checksums()
        kill_point("hashed")
        with open(self.staging / "manifest.json", "w", encoding="utf-8") as f:
            json.dump(self.manifest, f, indent=2, sort_keys=True)
        os.chmod(self.staging / "manifest.json", FILE_MODE)
        kill_point("before_rename")
        os.rename(self.staging, final)
        kill_point("renamed")
        self._write_catalogue(final)  # views bind to files, so write it in the final place
        kill_point("catalogued")
        tmp_link = root / f".current-{uuid.uuid4().hex[:8]}"
        os.symlink(Path("versions") / final.name, tmp_link)
        os.replace(tmp_link, root / "current")  # the atomic swap
        _fsync_dir(root)
        kill_point("swapped")
        self._prune(keep={final.name})

    def _checksums(self) -> dict[str, str]:
        """SHA-256 of every file of the new version; also makes them owner/group only.

        A file still hard-linked to the previous version's (same inode) keeps the hash
        listed there; only new files are read."""
        sums: dict[str, str] = {}
        new: list[tuple[str, Path]] = []
        for path in sorted(self.staging.rglob("*")):
            rel = path.relative_to(self.staging).as_posix()
            if path.is_dir():
                path.chmod(DIR_MODE)
                continue
            if rel in UNLISTED:
                continue
            if rel.split("/", 1)[0] not in ("tables", "reference"):
                raise WarehouseError(f"{self.staging}: unexpected file {rel} in a new version")
            old = self._old_sums.get(rel)
            if old and self._old_dir is not None and _same_file(path, self._old_dir / rel):
                sums[rel] = old
            else:
                new.append((rel, path))
            path.chmod(FILE_MODE)
        # hashlib releases the GIL while hashing, so new files are hashed on every core
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for (rel, _), digest in zip(new, pool.map(file_sha256, [p for _, p in new]),
                                        strict=True):
                sums[rel] = digest
        return dict(sorted(sums.items()))

    def _write_catalogue(self, final: Path) -> None:
        """A DuckDB file with a view per table over the manifest's files in their final
        place.

        It is built beside the versions, under a staging name, and renamed into the
        version only once closed: a process killed while DuckDB writes it leaves no
        half-written catalogue or write-ahead log inside a version."""
        sums: dict[str, str] = self.manifest["checksums"]
        tmp = final.parent / f".staging-catalogue-{uuid.uuid4().hex[:8]}.duckdb"
        con = duckdb.connect(str(tmp))
        try:
            for name in sorted(self.manifest["tables"]):
                con.execute(f'CREATE VIEW "{name}" AS '
                            f"{scan_sql(_listed_files(sums, final, name))}")
                kill_point("cataloguing")
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.chmod(tmp, FILE_MODE)
        os.rename(tmp, final / "catalogue.duckdb")

    def _prune(self, keep: set[str]) -> None:
        """Remove all but the newest versions. Each is first renamed out of the versions'
        names (to a staging name, cleaned by the next writer if this one is killed), so a
        process killed while deleting never leaves a half-deleted folder that looks like a
        version."""
        versions = sorted(
            p for p in (self.warehouse.root / "versions").iterdir() if not p.name.startswith(".")
        )
        for p in versions[:-KEEP_VERSIONS]:
            if p.name not in keep:
                doomed = p.with_name(f".staging-pruned-{p.name}-{uuid.uuid4().hex[:8]}")
                os.rename(p, doomed)
                kill_point("pruning")
                shutil.rmtree(doomed, ignore_errors=True)

    def rollback(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def write_partitioned(
    batches: pa.RecordBatchReader,
    directory: Path,
    *,
    file_prefix: str,
    partition_by: tuple[str, ...],
    unique_columns: tuple[str, ...] = (),
) -> None:
    """Stream record batches into hive-partitioned Parquet under ``directory`` (pyarrow).

    See :meth:`Transaction.write_batches`; at least one file is written, empty if no rows.
    """
    import pyarrow.dataset as ds

    schema = batches.schema
    keys = [KEY_PREFIX + c for c in partition_by]
    keyed = pa.schema([*schema, *(schema.field(c).with_name(k)
                                  for c, k in zip(partition_by, keys, strict=True))])

    def with_keys() -> Iterator[pa.RecordBatch]:
        for b in batches:
            yield pa.RecordBatch.from_arrays(
                [*b.columns, *(b.column(c) for c in partition_by)], schema=keyed)

    options = ds.ParquetFileFormat().make_write_options(
        compression=PARQUET_COMPRESSION, store_decimal_as_integer=True,
        use_dictionary=[c for c in keyed.names if c not in unique_columns])
    ds.write_dataset(
        pa.RecordBatchReader.from_batches(keyed, with_keys()), str(directory),
        format="parquet", partitioning=keys, partitioning_flavor="hive",
        file_options=options, basename_template=f"{file_prefix}-{{i}}.parquet",
        min_rows_per_group=ROW_GROUP_ROWS, max_rows_per_group=ROW_GROUP_ROWS)
    hive_from_keys(directory)
    if not any(directory.rglob("*.parquet")):  # no rows: one empty file keeps the columns
        directory.mkdir(parents=True, exist_ok=True)
        pq.write_table(schema.empty_table(), directory / f"{file_prefix}-0.parquet")


def hive_from_keys(directory: Path) -> None:
    """Rename ``__key_<column>=<value>`` directories under ``directory`` to ``<column>=<value>``.

    Hive writers (pyarrow's, Spark's) leave the partition columns out of the files. pbc keeps
    them in (tables are read with ``hive_partitioning = false``), so a writer partitions by
    copies of the columns, named with :data:`KEY_PREFIX`, and the directories are renamed
    here: the copies vanish, the columns stay.
    """
    for d in sorted(directory.rglob(KEY_PREFIX + "*"), key=lambda p: -len(p.parts)):
        if d.is_dir():
            d.rename(d.with_name(d.name[len(KEY_PREFIX):]))


def _link_file(src: Path, dst: Path) -> None:
    """Hard-link ``src`` as ``dst`` (or copy it where links are not possible). Nothing
    writes into a linked file: writers rename new files over it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _same_file(a: Path, b: Path) -> bool:
    try:
        sa, sb = a.stat(), b.stat()
    except OSError:
        return False
    return (sa.st_ino, sa.st_dev, sa.st_size, sa.st_mtime_ns) == \
        (sb.st_ino, sb.st_dev, sb.st_size, sb.st_mtime_ns)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
