"""``python -m medrefine`` runs the command-line interface."""

from medrefine.cli import main

main()
