"""Risk reference data files (``pbc/reference/risk/``): published score tables and model specs.

The coefficients and point tables of the published scores are kept as data (the hccpy habit
of explainable scores), so a corrected coefficient is a data change, not a code change.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "reference" / "risk"


class RiskReferenceError(ValueError):
    """A risk reference file that is missing a key or malformed; the message names both."""


@cache
def _documents(name: str) -> tuple[dict[str, Any], ...]:
    path = REFERENCE_DIR / name
    with open(path, encoding="utf-8") as f:
        docs = tuple(d for d in yaml.safe_load_all(f) if d)
    for d in docs:
        if not isinstance(d, dict) or "id" not in d:
            raise RiskReferenceError(f"{path}: every document needs an 'id'")
    return docs


def load_reference(
    name: str, doc_id: str | None = None, path: Path | None = None
) -> dict[str, Any]:
    """The YAML document ``doc_id`` (or the first) of ``reference/risk/<name>`` or ``path``."""
    if path is not None:
        with open(path, encoding="utf-8") as f:
            docs: tuple[dict[str, Any], ...] = tuple(d for d in yaml.safe_load_all(f) if d)
    else:
        docs = _documents(name)
    for d in docs:
        if doc_id is None or d.get("id") == doc_id:
            return d
    raise RiskReferenceError(f"{path or REFERENCE_DIR / name}: no document with id {doc_id!r}")


def bands(doc: dict[str, Any], key: str) -> list[tuple[float, Any]]:
    """The ``[[lower, value], ...]`` band table under ``doc[key]['bands']``, sorted by lower."""
    try:
        raw = doc[key]["bands"]
        out = sorted((float(lo), val) for lo, val in raw)
    except (KeyError, TypeError, ValueError) as e:
        raise RiskReferenceError(
            f"risk reference {doc.get('id')!r}: {key}.bands must be [[lower, value], ...]"
        ) from e
    return out
