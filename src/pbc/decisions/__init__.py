"""Decision store: agreed budgets (and later business cases, pooled budgets), with audit."""

from pbc.decisions.store import DecisionError, DecisionStore, Line, migrate

__all__ = ["DecisionError", "DecisionStore", "Line", "migrate"]
