"""pbc: practice-based commissioning for the English NHS."""

__version__ = "0.1.0"
