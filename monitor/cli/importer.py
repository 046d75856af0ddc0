"""``tgmonitor import``: a Telegram Desktop JSON export into the archive (optionally alerting)."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from sqlalchemy.exc import SQLAlchemyError

from monitor.cli.app import EXIT_FAILURE, EXIT_USAGE, CliState, fail, main, pass_state, run


@main.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--channel", "channel", default=None, metavar="NAME",
              help="Import the chat with this title or numeric id (default: every channel of the export). A chat "
                   "that is not a channel (a group, a personal chat) is imported only when named here.")
@click.option("--as", "as_username", default=None, metavar="USERNAME",
              help="Link the export to this configured or stored channel username (a channel polled by username, "
                   "e.g. via the web source); an unknown name exits 2.")
@click.option("--alert", is_flag=True,
              help="Alert on the imported posts that mention a watched entity, and try to deliver them now "
                   "(failures stay queued for the service). Without it imported posts are stored and matched only.")
@click.option("--timezone", "tz_name", default="UTC", show_default=True, metavar="ZONE",
              help="The exporting computer's time zone; used only for old exports without date_unixtime. Importing "
                   "such an export again with another zone corrects the dates stored before.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@pass_state
def import_cmd(state: CliState, path: Path, channel: str | None, as_username: str | None, alert: bool,
               tz_name: str, no_progress: bool) -> None:
    """Import a Telegram Desktop export (result.json, "Machine-readable JSON").

    Re-importing the same file changes nothing; importing a newer export adds only what is new. The report
    names the chats that were skipped (not channels) and the messages that could not be read. The export's
    numeric channel id links it to a configured or polled channel with that id; else a stored channel with no
    id and exactly the export's title (a web channel); --as links it to a channel known only by username, so
    importing and then polling never duplicates posts. An export stored as a separate channel is folded into
    the --as channel by a later --as import when that channel already has all its posts.

    \b
    Examples:
      tgmonitor import ~/Downloads/Telegram\\ Desktop/ChatExport_2025-01-01/result.json
      tgmonitor import result.json --as rian_ru --alert
      tgmonitor import full_export/result.json --channel "РИА Новости"
    """
    from monitor.jobs.importer import import_file

    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        fail(f"--timezone: {tz_name!r} is not a known time zone (for example: Europe/Moscow)", EXIT_USAGE)
    s = state.settings()
    try:
        code, message = run(import_file(s, path, channel=channel, as_username=as_username, alert=alert,
                                        local_tz=tz, progress=not no_progress))
    except (SQLAlchemyError, OSError) as exc:  # e.g. the database cannot be reached: one line, no traceback
        fail(f"import failed: {type(exc).__name__}: {exc}".splitlines()[0], EXIT_FAILURE)
    if code:
        fail(message, code)
    click.echo(message)
