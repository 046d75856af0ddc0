"""``config check``, ``db upgrade|current|downgrade`` and ``run``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from monitor.cli.app import EXIT_USAGE, CliState, fail, main, pass_state, run

if TYPE_CHECKING:
    from monitor.config import Settings


@main.group("config")
def config_group() -> None:
    """Inspect the configuration.

    \b
    Example:
      tgmonitor --config /etc/tgmonitor/tgmonitor.toml config check
    """


@config_group.command("check")
@pass_state
def config_check(state: CliState) -> None:
    """Validate the configuration and print a summary; exit 2 naming every problem.

    \b
    Example:
      tgmonitor --config /etc/tgmonitor/tgmonitor.toml config check
    """
    s = state.settings()
    problems = alert_url_problems(s)
    if problems:
        fail("\n".join(problems), EXIT_USAGE)
    by_source: dict[str, int] = {}
    for c in s.channels:
        if c.enabled:
            by_source[c.source] = by_source.get(c.source, 0) + 1
    click.echo(f"config: {s.path} is valid")
    click.echo(f"database: {_safe_db(s.database.url)}")
    click.echo(f"data dir: {s.data_dir}")
    sources = ", ".join(f"{n} {k}" for k, n in sorted(by_source.items())) or "none"
    click.echo(f"channels: {sum(by_source.values())} enabled ({sources}), {len(s.channels)} configured")
    active = [e for e in s.entities if e.enabled]
    click.echo(f"entities: {len(active)} enabled, {len(s.entities)} configured")
    from monitor.config.entities import entity_warnings

    for line in entity_warnings(s.entities, str(s.path)):
        click.echo(f"warning: {line}", err=True)
    click.echo(f"alert destinations: {', '.join(a.name for a in s.alerts) or 'none'}")
    if s.telegram.accounts:
        from monitor.config import session_env

        def where(a: Any) -> str:
            return session_env(a.name) if a.session else str(a.session_file)

        click.echo("telegram accounts: " + ", ".join(f"{a.name} ({where(a)})" for a in s.telegram.accounts))
    tg_needed = by_source.get("telethon", 0) > 0
    creds = bool(s.telegram.api_id and s.telegram.api_hash) or bool(s.telegram.client_factory)
    if tg_needed and not creds:
        click.echo("warning: Telethon channels are configured but TG_API_ID / TG_API_HASH are not set "
                   "(put them in .env beside the config)", err=True)


def alert_url_problems(settings: Settings) -> list[str]:
    """One line per ``[[alerts]] url`` Apprise cannot use: an unknown scheme (with the nearest known one) or
    a known scheme whose URL it refuses. Checked here rather than at every load: Apprise's plugin list takes
    most of a second to build. The URL itself is never printed (it holds tokens)."""
    if all(dest.url.strip() == "console://" for dest in settings.alerts):
        return []  # nothing for Apprise to check (and no second spent loading its plugins)
    import difflib

    import apprise
    from apprise.manager_plugins import NotificationManager

    source = str(settings.path or "configuration")
    schemes = {str(x).lower() for x in NotificationManager().schemas()}
    out = []
    for i, dest in enumerate(settings.alerts):
        url = dest.url.strip()
        if url == "console://":  # ours (monitor.alerts.deliver.CONSOLE), not Apprise's
            continue
        key = f"alerts[{i}].url"
        scheme = url.split("://", 1)[0].lower()
        if scheme not in schemes:
            near = difflib.get_close_matches(scheme, sorted(schemes), n=1, cutoff=0.6)
            hint = f"; did you mean '{near[0]}://'?" if near else ""
            out.append(f"{source}: {key}: unknown Apprise scheme '{scheme}://'{hint} (for example: url = "
                       f"\"tgram://BOT_TOKEN/CHAT_ID\"; every scheme: https://github.com/caronc/apprise/wiki)")
        elif not _apprise_accepts(apprise, url):
            out.append(f"{source}: {key}: Apprise cannot use this {scheme}:// URL (a part is missing or malformed; "
                       f"for example: see https://github.com/caronc/apprise/wiki for the {scheme}:// form)")
    return out


def _apprise_accepts(apprise: Any, url: str) -> bool:
    """Whether Apprise can build a notifier from ``url``, without its own error line (it would print the
    URL's shape; our line says which key)."""
    import logging

    logger = logging.getLogger("apprise")
    saved = logger.disabled
    logger.disabled = True
    try:
        return apprise.Apprise.instantiate(url, suppress_exceptions=True) is not None
    finally:
        logger.disabled = saved


def _safe_db(url: str) -> str:
    from monitor.runtime import display_url

    return display_url(url)


@main.group("db")
def db_group() -> None:
    """Database schema: migrations (the service also upgrades on start).

    \b
    Examples:
      tgmonitor db upgrade
      tgmonitor db current
    """


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@pass_state
def db_upgrade(state: CliState, revision: str) -> None:
    """Create or upgrade the schema.

    \b
    Examples:
      tgmonitor db upgrade
      TGMONITOR_DATABASE_URL=postgresql://postgres@127.0.0.1/tgmonitor tgmonitor db upgrade
    """
    from monitor import migrate
    from monitor.db import create_engine

    s = state.settings(require_file=state.config_path is not None)

    async def go() -> tuple[str | None, str]:
        engine = create_engine(s.database.url)
        try:
            await migrate.upgrade(engine, revision)
            return await migrate.current(engine)
        finally:
            await engine.dispose()

    cur, _head = run(go(), prefix="db upgrade failed: ")  # unreachable: one line, not a traceback
    click.echo(f"database {_safe_db(s.database.url)} is at revision {cur}")


@db_group.command("current")
@pass_state
def db_current(state: CliState) -> None:
    """Print the database's revision and the newest one this version ships.

    \b
    Example:
      tgmonitor db current
    """
    from monitor import migrate
    from monitor.db import DatabaseMissing, create_engine

    s = state.settings(require_file=state.config_path is not None)

    async def go() -> tuple[str | None, str]:
        try:
            engine = create_engine(s.database.url, readonly=True)  # looking creates nothing
        except DatabaseMissing:
            from monitor.runtime import head_revision

            return None, head_revision()
        try:
            return await migrate.current(engine)
        finally:
            await engine.dispose()

    cur, head = run(go(), prefix="db current: ")
    click.echo(f"current: {cur or 'empty (run tgmonitor db upgrade)'}")
    click.echo(f"head: {head}{' (up to date)' if cur == head else ''}")


@db_group.command("downgrade")
@click.argument("revision")
@pass_state
def db_downgrade(state: CliState, revision: str) -> None:
    """Take the schema back to REVISION ("base" drops every table: data is lost).

    \b
    Example:
      tgmonitor db downgrade base
    """
    from monitor import migrate
    from monitor.db import create_engine

    s = state.settings(require_file=state.config_path is not None)

    async def go() -> None:
        engine = create_engine(s.database.url)
        try:
            await migrate.downgrade(engine, revision)
        finally:
            await engine.dispose()

    run(go(), prefix="db downgrade failed: ")
    click.echo(f"database downgraded to {revision}")


@main.command("run")
@click.option("--once", is_flag=True, help="One cycle: poll every enabled channel once, one delivery "
              "attempt per due alert, then exit.")
@pass_state
def run_cmd(state: CliState, once: bool) -> None:
    """Run the service (polls on a schedule, delivers alerts) until SIGTERM/SIGINT.

    \b
    Examples:
      tgmonitor run
      tgmonitor --config /etc/tgmonitor/tgmonitor.toml run --once
    """
    from monitor import service

    s = state.settings()
    code = run(service.run_once(s)) if once else service.main(s, state.config_path)
    raise SystemExit(code)
