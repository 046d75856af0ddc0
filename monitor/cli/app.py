"""The ``tgmonitor`` click group: global options and the helpers every command uses."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from monitor import __version__
from monitor.config import ConfigError, Settings, load_settings
from monitor.logs import register_secret, setup_logging

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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
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
