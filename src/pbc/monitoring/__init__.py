"""Monitoring: spend against budget, forecast outturn, freed resources and shared risk.

Pure functions over numbers and tables; no files, engines or web."""
