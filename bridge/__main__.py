"""`python -m bridge` runs the dotbridge command."""

from bridge.cli import main

main()
