"""``tgmonitor web``: the dashboard over the configured database (the app lives in monitor/dashboard)."""

from __future__ import annotations

import click

from monitor.cli.app import EXIT_FAILURE, EXIT_USAGE, CliState, fail, main, pass_state, run


@main.command("web")
@click.option("--listen", metavar="HOST:PORT", default=None,
              help="Address to serve on (default: [web] listen, else 127.0.0.1:8080). Any address other than "
                   "the loopback needs [web] token or TGMONITOR_WEB_TOKEN.")
@pass_state
def web_cmd(state: CliState, listen: str | None) -> None:
    """Serve the web dashboard: channel health, mentions, search, entities, channels, alerts, exports.

    Reads the same database as the service (it may run beside it); the only action is retrying alerts.
    Open the printed address in a browser; with a token, log in with it (scripts send
    "Authorization: Bearer TOKEN"). Stop with Ctrl+C.

    \b
    Examples:
      tgmonitor web
      tgmonitor --config /etc/tgmonitor/tgmonitor.toml web --listen 127.0.0.1:8080
      TGMONITOR_WEB_TOKEN=$(openssl rand -hex 24) tgmonitor web --listen 0.0.0.0:8080
      tgmonitor demo --keep ./demo && tgmonitor --config ./demo/tgmonitor.toml web
    """
    s = state.settings()
    from monitor.dashboard.server import DashboardError, DashboardServer

    try:
        server = DashboardServer(s, listen=listen)
    except DashboardError as exc:  # a bad or unsafe address: bad usage, nothing started
        fail(f"error: {exc}", EXIT_USAGE)
    click.echo(f"dashboard: {server.url}  (Ctrl+C to stop)", err=True)
    try:
        run(server.serve())
    except DashboardError as exc:
        fail(f"error: {exc}", EXIT_FAILURE)
    except KeyboardInterrupt:
        pass
