"""The board runner: every (benchmark, model) row of a board file swept and finalised."""
