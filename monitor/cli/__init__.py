"""The ``tgmonitor`` command: a thin layer over functions that tests call directly."""

# Each module registers its commands on the ``main`` group when imported.
from monitor.cli import (  # noqa: F401
    alerts,
    archive,
    backfill,
    core,
    dashboard,
    demo,
    importer,
    login,
    match,
    mentions,
    status,
)
from monitor.cli.app import main

__all__ = ["main"]
