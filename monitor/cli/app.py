"""The ``tgmonitor`` click group: global options and the helpers every command uses."""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from monitor import __version__
from monitor.logs import register_secret, setup_logging

if TYPE_CHECKING:
    from monitor.config import Settings

T = TypeVar("T")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_NO_SESSION = 0, 1, 2, 78


@dataclass
class CliState:
    config_path: Path | None
    verbose: int
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self, *, require_file: bool = True) -> Settings:
        """The validated settings, or exit 2 with one line per problem."""
        if self._settings is None:
            from monitor.config import ConfigError, load_settings

            try:
                self._settings = load_settings(self.config_path, require_file=require_file)
            except ConfigError as exc:
                fail(str(exc), EXIT_USAGE)
            s = self._settings
            global _database_url
            _database_url = s.database.url  # for run(): a database failure names its (redacted) URL
            for secret in (s.telegram.api_hash, s.telegram.session, s.telegram.proxy, s.web.proxy,
                           *(a.url for a in s.alerts)):
                register_secret(secret)
            setup_logging(s.logging.level, s.logging.format, verbose=self.verbose)
        return self._settings


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print ``message`` to stderr and exit with ``code`` (never a traceback)."""
    click.echo(message, err=True)
    sys.exit(code)


_database_url: str | None = None  # the loaded settings' database URL


def run(coro: Coroutine[Any, Any, T], *, prefix: str = "") -> T:
    """Run a coroutine to completion from a click command; a database that cannot be reached, opened or
    read is one line (its URL without the password, what went wrong, what to do) and exit 1, never a
    traceback with SQL in it. ``prefix`` starts that line (``db upgrade failed: ``)."""
    try:
        return asyncio.run(coro)
    except Exception as exc:
        from monitor.logs import redact
        from monitor.runtime import database_problem

        line = database_problem(exc, _database_url or "")
        if line is None:
            raise
        fail(redact(prefix + line), EXIT_FAILURE)


pass_state = click.make_pass_decorator(CliState)

#: Every command: its name -> (the module under monitor/cli that defines it, its help's first paragraph).
#: A command's module is imported only when that command runs (or its --help is asked for), so
#: ``tgmonitor --help`` and light commands do not pay for SQLAlchemy, Alembic, Telethon and Apprise.
#: tests/test_cli.py checks this table against the commands the modules define.
COMMANDS: dict[str, tuple[str, str]] = {
    "accounts": ("accounts", "Show each Telegram account: state, channels it reads, channels it joined, requests and "
                             "flood waits."),
    "alerts": ("alerts", "Alert destinations and the outbox."),
    "backfill": ("backfill", "Store a configured channel's history (resumable: run it again to continue)."),
    "config": ("core", "Inspect the configuration."),
    "db": ("core", "Database schema: migrations (the service also upgrades on start)."),
    "demo": ("demo", "Run the pipeline on a bundled sample channel: import, match, alert (to the console), "
                     "summarise."),
    "export": ("archive", "Write stored posts with their matches, oldest first, for a spreadsheet or another tool."),
    "import": ("importer", 'Import a Telegram Desktop export (result.json, "Machine-readable JSON").'),
    "join": ("accounts", "Join public channels with the account that has room, one every two minutes."),
    "login": ("login", "Log the Telegram account in (phone, code, two-step password) for the Telethon source."),
    "match": ("match", "Find watchlist entities in JSON Lines posts."),
    "mentions": ("mentions", "List stored mentions, newest first: date, channel, entity, the words in context, link."),
    "rematch": ("archive", "Match stored posts again with the current watchlist (after adding or changing "
                           "entities)."),
    "reindex": ("archive", "Build the full-text search index for stored posts (SQLite; PostgreSQL indexes by "
                           "itself)."),
    "run": ("core", "Run the service (polls on a schedule, delivers alerts) until SIGTERM/SIGINT."),
    "search": ("archive", "Full-text search of stored posts in any word form, best matches first."),
    "stats": ("archive", "How many posts mention each entity, per day/week/month and per channel."),
    "status": ("status", "Show each channel's last poll, posts stored, cursor, lag, alert latency, last error and "
                         "status, and the outbox."),
    "web": ("dashboard", "Serve the web dashboard: channel health, mentions, search, entities, channels, alerts, "
                         "exports."),
}


class LazyGroup(click.Group):
    """The top-level group: imports a command's module on first use (see ``COMMANDS``)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(f"monitor.cli.{COMMANDS[cmd_name][0]}")  # registers it on ``main``
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``tgmonitor --help`` from ``COMMANDS``: no command module is imported."""
        from click.utils import make_default_short_help

        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            cmd = self.commands.get(name)
            if cmd is not None and cmd.hidden:
                continue
            text = cmd.get_short_help_str(limit) if cmd is not None else make_default_short_help(  # type: ignore[operator]
                COMMANDS[name][1], limit)
            rows.append((name, text))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def load_all() -> click.Group:
    """Import every command module (for tools and tests that walk the whole command tree)."""
    for module in sorted({m for m, _ in COMMANDS.values()}):
        importlib.import_module(f"monitor.cli.{module}")
    return main


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Configuration file (default ./tgmonitor.toml).")
@click.option("-v", "--verbose", count=True, help="More log output (debug).")
@click.version_option(__version__, prog_name="tgmonitor")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, verbose: int) -> None:
    """Watch Telegram channels and alert, exactly once, when a watched entity is mentioned.

    \b
    Examples:
      tgmonitor demo                      # see it work offline, no credentials
      tgmonitor --config tgmonitor.toml config check
      tgmonitor run                       # the service
      tgmonitor mentions --entity Росатом --since 2025-01-01
    """
    ctx.obj = CliState(config_path=config_path, verbose=verbose)
    setup_logging("info", "text", verbose=verbose)
