"""Attribution: priced activity -> practice -> group -> commissioner, and reconciliation.

Public API: :func:`attribute`, :func:`reconcile`, :func:`check_reconciliation`,
:func:`resolve_commissioner`, :func:`group_as_at`, :func:`summarise`,
:func:`reconcile_summary`, :func:`reconcile_partitions`, :func:`duplicate_ids`.
"""

from pbc.attribution.attribute import ATTRIBUTED_SCHEMA, attribute, prescribing_lines
from pbc.attribution.organisations import group_as_at, resolve_commissioner
from pbc.attribution.reconcile import (
    ReconciliationError,
    check_reconciliation,
    duplicate_ids,
    reconcile,
    reconcile_partitions,
    reconcile_summary,
    summarise,
)

__all__ = [
    "ATTRIBUTED_SCHEMA",
    "ReconciliationError",
    "attribute",
    "check_reconciliation",
    "duplicate_ids",
    "group_as_at",
    "prescribing_lines",
    "reconcile",
    "reconcile_partitions",
    "reconcile_summary",
    "resolve_commissioner",
    "summarise",
]
