"""The web dashboard: a read-mostly view over the archive and the service's state, for analysts.

``create_app(settings, engine, token=...)`` builds the ASGI app (:mod:`monitor.dashboard.app`);
:class:`monitor.dashboard.server.DashboardServer` serves it with uvicorn, standalone (``tgmonitor web``) or
inside ``tgmonitor run`` (``[web] listen``). Nothing here imports the CLI.
"""

from __future__ import annotations

from monitor.dashboard.app import create_app
from monitor.dashboard.server import DashboardError, DashboardServer, check_listen

__all__ = ["DashboardError", "DashboardServer", "check_listen", "create_app"]
