"""Serving the dashboard with uvicorn: standalone (``tgmonitor web``) or as a part of ``tgmonitor run``.

The listening socket is bound here, before uvicorn starts, so that "address in use" or "permission
denied" is one clear :class:`DashboardError` instead of uvicorn's ``sys.exit``. Inside the service the
server leaves signals alone (the service owns SIGTERM/SIGHUP) and stops when told to.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine

from monitor.config import Settings
from monitor.config.values import is_loopback, parse_listen
from monitor.logs import event

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:8080"


class DashboardError(Exception):
    """The dashboard cannot start: one line saying why and what to do."""


def check_listen(listen: str, token: str | None) -> tuple[str, int]:
    """``(host, port)`` of a listen address; an address other machines can reach needs a token."""
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise DashboardError(f"cannot listen on {listen!r}: {exc} (for example: --listen 127.0.0.1:8080)") from None
    if token is None and not is_loopback(host):
        raise DashboardError(
            f"refusing to listen on {listen} without a token: anyone who reaches it could read the archive; "
            "set [web] token or TGMONITOR_WEB_TOKEN, or listen on 127.0.0.1")
    return host, port


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that does not take over SIGINT/SIGTERM: inside ``tgmonitor run`` the service owns
    the signals and stops the dashboard itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class DashboardServer:
    """The dashboard on ``listen`` (default ``[web] listen``, else 127.0.0.1:8080) over ``engine`` (or an
    engine of its own on ``[database] url``, disposed of when it stops)."""

    def __init__(self, settings: Settings, *, listen: str | None = None, engine: AsyncEngine | None = None,
                 embedded: bool = False) -> None:
        self.settings = settings
        self.listen = listen or settings.dashboard.listen or DEFAULT_LISTEN
        self.token = settings.dashboard.token
        self.host, self.port = check_listen(self.listen, self.token)
        self.engine = engine
        self.embedded = embedded
        self._server: uvicorn.Server | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def started(self) -> bool:
        return bool(self._server and self._server.started)

    def bind(self) -> socket.socket:
        """The listening socket, or DashboardError naming the address and the reason."""
        try:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
            # without it every response on a kept-alive connection waited ~40 ms for a delayed ACK
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError as exc:
            raise DashboardError(f"cannot listen on {self.listen}: {exc.strerror or exc}") from None
        return sock

    async def check_schema(self, engine: AsyncEngine) -> None:
        """The database must be migrated (the dashboard never migrates: it reads what the service wrote)."""
        from monitor import migrate

        current, head = await migrate.current(engine)
        if current != head:
            raise DashboardError(f"the database is at revision {current or 'none (empty)'}, this version reads "
                                 f"{head}: run `tgmonitor db upgrade` (or start `tgmonitor run`, which upgrades)")

    async def serve(self, sock: socket.socket | None = None) -> None:
        """Serve until :meth:`stop` (or, standalone, SIGINT/SIGTERM); ``sock``: already bound by :meth:`bind`."""
        from monitor.dashboard.app import create_app
        from monitor.db import create_engine

        own = self.engine is None
        engine = self.engine or create_engine(self.settings.database.url)
        try:
            if not self.embedded:
                await self.check_schema(engine)
            sock = sock or self.bind()
            app = create_app(self.settings, engine, token=self.token)
            # proxy_headers: behind a TLS proxy on this machine, X-Forwarded-Proto makes the cookies Secure
            config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", proxy_headers=True,
                                    server_header=False, timeout_graceful_shutdown=5)
            self._server = (_EmbeddedServer if self.embedded else uvicorn.Server)(config)
            log.info("dashboard: serving on %s", self.url)
            try:
                await self._server.serve(sockets=[sock])
            finally:
                sock.close()
        finally:
            if own:
                await engine.dispose()

    def use_settings(self, settings: Settings) -> None:
        """After a configuration reload (SIGHUP in ``tgmonitor run``): entities, channels and alert destinations
        shown from now on are the new ones. The address and the token stay those the server started with."""
        self.settings = settings
        if self._server is not None:
            app: Any = self._server.config.app
            app.state.dashboard.settings = settings
            app.state.dashboard.forms.clear()

    def stop(self) -> None:
        """Ask the server to finish its requests and stop (serve() then returns)."""
        if self._server is not None:
            self._server.should_exit = True


def start_in_service(settings: Settings, engine: AsyncEngine,
                     spawn: Callable[[Awaitable[None], str], None]) -> DashboardServer | None:
    """``[web] listen`` in ``tgmonitor run``: serve the dashboard over the service's engine as a background task
    (``spawn``). Like the metrics endpoint, an address that cannot be bound is logged, not fatal: alerts go on.
    The caller stops it with :meth:`DashboardServer.stop` when the service stops."""
    if not settings.dashboard.listen:
        return None
    try:
        server = DashboardServer(settings, engine=engine, embedded=True)
        sock = server.bind()
    except DashboardError as exc:
        event(log, logging.ERROR, "dashboard not started", error=str(exc))
        return None
    spawn(server.serve(sock), "dashboard")
    event(log, logging.INFO, "dashboard", url=server.url)
    return server
