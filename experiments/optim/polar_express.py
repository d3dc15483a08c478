"""Polar Express coefficients for Muon's Newton-Schulz iteration.

The derivation is NumPy and lives in theory.polar_express (figure 10 applies the same schedule to
the theory-side Muon, and theory/ may not import experiments/); this module keeps the optimizer
side's import path.
"""
from theory.polar_express import greedy_schedule, polar_express_coefficients

__all__ = ["greedy_schedule", "polar_express_coefficients"]
