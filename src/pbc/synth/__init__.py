"""Synthetic health economy generator (any scale, seeded): every input table of the contract."""

from pbc.synth.generator import SynthConfig, SynthSummary, generate

__all__ = ["SynthConfig", "SynthSummary", "generate"]
