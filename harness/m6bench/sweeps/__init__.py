"""Sweeps: Optuna studies over a model's search space, resumable and shared between
workers, with finals on fresh seeds."""
