"""``python -m m6bench.cli``: the command line."""

from m6bench.cli import main

main()
