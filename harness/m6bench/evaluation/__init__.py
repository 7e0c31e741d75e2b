"""Evaluation: metrics (registered like any plugin's), the batched evaluator, candidate
sets, per-user values and slices."""
