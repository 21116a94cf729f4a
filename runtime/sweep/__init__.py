"""Sweeps: `loft sweep RUN_DIR` runs every trial of plan.sweep in one process (runner.py).

`space` is pure (the compiler imports it); the other modules import Optuna, torch and transformers.
"""
