"""The ``tgmonitor`` command: a thin layer over functions that tests call directly.

The command modules (one per command group) register their commands on ``main`` when imported, and
``main`` imports a module only when one of its commands is used (``monitor.cli.app.COMMANDS``): the
command line starts fast. ``load_all()`` imports them all.
"""

from monitor.cli.app import load_all, main

__all__ = ["load_all", "main"]
