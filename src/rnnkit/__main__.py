"""``python -m rnnkit`` runs the command line."""

from .cli import main

main()
