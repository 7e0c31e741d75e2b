"""Sweeps: Optuna studies over a model's search space, resumable and shared between
workers, with finals on fresh seeds.

:mod:`.sweep` holds the entry points (``sweep``, ``join_study``, ``finalise``); a trial is
:mod:`.objective`, the loop that runs trials until the budget is used :mod:`.optimize`, the
study's storage, pruners and trial counts :mod:`.storage`, and :mod:`.spec` what defines a
study and the trial attributes it keeps.
"""
