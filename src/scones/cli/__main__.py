"""`python -m scones.cli` is the `scones` command."""

from scones.cli import main

main()
