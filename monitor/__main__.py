"""``python -m monitor`` runs the CLI (the same as the ``tgmonitor`` command)."""

from monitor.cli import main

main()
