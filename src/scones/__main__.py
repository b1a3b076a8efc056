"""`python -m scones` is the `scones` command."""

from scones.cli import main

main()
