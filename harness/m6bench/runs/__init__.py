"""Runs: resolving a request into a plan, loading and preparing its benchmark, executing
it into a ledger record, and reproducing a record."""
