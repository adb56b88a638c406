"""Partitions of a derived table and the fingerprints of their inputs (incremental runs).

A table such as ``priced_activity`` is partitioned by financial year and month
(:data:`pbc.warehouse.store.PARTITION_COLUMNS`), as are the activity tables it is made from:
a row of activity month *m* gives a priced row of month *m*. A partition's output depends
on the activity files of the same partition and on inputs that every partition reads
(tariff settings, tariff and organisation tables, pbc's version). So, per partition, the
**fingerprint** is the SHA-256 of:

* the *global* fingerprint (the inputs every partition reads, by their content hashes), and
* the activity files of that partition (relative name and SHA-256, from the manifest).

A partition whose fingerprint is the one recorded when it was last made is made again
from the same inputs, so it is kept as it is; any other is made again. Every function here
is pure (manifest dictionaries in, plans out): :mod:`pbc.services.pricing` applies them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: a partition's key: its folder under the table, e.g. ``financial_year=2025-26/month=1``
PartitionKey = str


def partition_key(financial_year: str, month: int) -> PartitionKey:
    return f"financial_year={financial_year}/month={int(month)}"


def parse_partition(key: PartitionKey) -> tuple[str, int]:
    """``financial_year=2025-26/month=1`` -> ``("2025-26", 1)``."""
    parts = dict(p.split("=", 1) for p in key.split("/"))
    return parts["financial_year"], int(parts["month"])


def partition_label(keys: Iterable[PartitionKey]) -> str:
    """Partitions in words, by year: ``2025-26 months 1-3, 5; 2026-27 month 1``."""
    by_year: dict[str, list[int]] = {}
    for key in keys:
        year, month = parse_partition(key)
        by_year.setdefault(year, []).append(month)
    if not by_year:
        return "none"
    out = []
    for year in sorted(by_year):
        months = sorted(set(by_year[year]))
        runs: list[str] = []
        start = prev = months[0]
        for m in [*months[1:], None]:
            if m is not None and m == prev + 1:
                prev = m
                continue
            runs.append(str(start) if start == prev else f"{start}-{prev}")
            if m is not None:
                start = prev = m
        word = "month" if len(months) == 1 else "months"
        out.append(f"{year} {word} {', '.join(runs)}")
    return "; ".join(out)


def table_partitions(checksums: Mapping[str, str], table: str
                     ) -> tuple[dict[PartitionKey, dict[str, str]], dict[str, str]]:
    """The Parquet files of ``table`` in a manifest's ``checksums``, by partition: for each
    partition folder, its files (relative path -> SHA-256); and, apart, the files at the
    table's top (not in any partition: an empty table's one file)."""
    prefix = f"tables/{table}/"
    parts: dict[PartitionKey, dict[str, str]] = {}
    top: dict[str, str] = {}
    for rel, digest in checksums.items():
        if not rel.startswith(prefix) or not rel.endswith(".parquet"):
            continue
        inner = rel[len(prefix):]
        folder, _, _name = inner.rpartition("/")
        if folder.startswith("financial_year=") and "/month=" in folder:
            parts.setdefault(folder, {})[rel] = digest
        else:
            top[rel] = digest
    return parts, top


def digest(value: Any) -> str:
    """SHA-256 of a JSON-able value (keys sorted): a fingerprint."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Plan:
    """What an incremental run makes again: ``dirty`` partitions (made again), ``kept``
    (left as they are), ``removed`` (made before, no input any more); ``full`` and
    ``reason`` when everything is made again, and why."""

    fingerprints: dict[PartitionKey, str]
    dirty: list[PartitionKey]
    kept: list[PartitionKey]
    removed: list[PartitionKey]
    full: bool
    reason: str = ""
    new: list[PartitionKey] = field(default_factory=list)


def earlier_in_year(key: PartitionKey, keys: Iterable[PartitionKey]) -> list[PartitionKey]:
    """The partitions among ``keys`` of the same financial year as ``key`` and an earlier
    month (financial months run April = 1 to March = 12)."""
    year, month = parse_partition(key)
    return sorted(k for k in keys if parse_partition(k)[0] == year
                  and parse_partition(k)[1] < month)


def partition_fingerprints(
    global_inputs: Mapping[str, Any],
    activity: Mapping[str, Mapping[PartitionKey, Mapping[str, str]]],
    running: Mapping[str, Iterable[str]] | None = None,
) -> dict[PartitionKey, str]:
    """The fingerprint of every partition that some activity table has.

    ``activity``: per activity table, its partitions' files (:func:`table_partitions`).
    ``running``: per activity table, the financial years in which a row's output depends on
    the rows before it in the year (the marginal rate's running total per contract and
    year, in order of discharge date, :mod:`pbc.pricing.mret`; APC is partitioned by
    discharge month): a partition of such a year that has rows of that table takes in its
    files of every earlier month of the year too."""
    running = {t: set(y) for t, y in (running or {}).items()}
    glob = digest(dict(global_inputs))
    keys = sorted({k for parts in activity.values() for k in parts})
    out: dict[PartitionKey, str] = {}
    for key in keys:
        year, _ = parse_partition(key)
        inputs: dict[str, Any] = {}
        for table in sorted(activity):
            parts = activity[table]
            files = dict(parts.get(key, {}))
            if files and year in running.get(table, set()):  # this month's rows of it
                for k in earlier_in_year(key, parts):
                    files.update(parts[k])
            if files:
                inputs[table] = sorted(files.items())
        out[key] = digest({"global": glob, "activity": inputs})
    return out


def plan(
    fingerprints: Mapping[PartitionKey, str],
    global_inputs: Mapping[str, Any],
    recorded: Mapping[str, Any] | None,
    *,
    full: bool = False,
) -> Plan:
    """Which partitions to make again, from the fingerprints now and the ``recorded`` ones
    (``{"global": {...}, "partitions": {key: fingerprint}}``, as :func:`record` gives;
    None: nothing recorded). A changed global input, no record, or ``full`` make every
    partition again; the reason says which."""
    keys = sorted(fingerprints)
    reason = ""
    if full:
        reason = "--full asked for every partition"
    elif not recorded or "partitions" not in recorded:
        reason = "no record of the inputs of the priced partitions (first run, or priced " \
                 "by an older pbc)"
    else:
        old_global = recorded.get("global") or {}
        changed = sorted(k for k in set(old_global) | set(global_inputs)
                         if old_global.get(k) != global_inputs.get(k))
        if changed:
            reason = "inputs of every partition changed: " + ", ".join(changed)
    old: Mapping[str, str] = (recorded or {}).get("partitions") or {}
    removed = sorted(k for k in old if k not in fingerprints)
    if reason:
        return Plan(dict(fingerprints), keys, [], removed, True, reason,
                    [k for k in keys if k not in old])
    dirty = [k for k in keys if old.get(k) != fingerprints[k]]
    kept = [k for k in keys if old.get(k) == fingerprints[k]]
    return Plan(dict(fingerprints), dirty, kept, removed, False, "",
                [k for k in keys if k not in old])


def record(global_inputs: Mapping[str, Any], fingerprints: Mapping[PartitionKey, str]
           ) -> dict[str, Any]:
    """What to keep with the output (in its manifest entry) for the next :func:`plan`."""
    return {"global": dict(sorted(global_inputs.items())),
            "partitions": dict(sorted(fingerprints.items()))}
