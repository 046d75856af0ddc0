"""The ``tgmonitor`` command: a thin layer over functions that tests call directly."""

from monitor.cli import core, mentions  # noqa: F401  (each module registers its commands)
from monitor.cli.app import main

for _optional in ("match", "importer", "demo", "backfill", "alerts", "login", "status", "archive"):
    # command modules land issue by issue; each registers itself on import
    try:
        __import__(f"monitor.cli.{_optional}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"monitor.cli.{_optional}":
            raise

__all__ = ["main"]
