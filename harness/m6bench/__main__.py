"""``python -m m6bench``: the command line."""

from m6bench.cli import main

main()
