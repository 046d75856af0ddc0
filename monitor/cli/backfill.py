"""``tgmonitor backfill``: walk a configured channel's history back through its source, with progress."""

from __future__ import annotations

from datetime import datetime

import click

from monitor.cli.app import EXIT_USAGE, CliState, fail, main, pass_state, run


def _parse_since(value: str | None) -> datetime | None:
    """``--since`` as aware UTC, in every form ``mentions --since`` takes (``2025-01-31``, ``2025-01``,
    ``2025-01-31T12:00+03:00``, ``30d`` / ``12h`` / ``8w`` / ``6m`` ago)."""
    if value is None:
        return None
    from monitor.archive import ArchiveError, parse_when

    try:
        return parse_when(value)
    except ArchiveError:
        fail(f"--since: {value!r} is not a date (for example: 2025-01-31, 2025-01-31T12:00+03:00 or 30d)",
             EXIT_USAGE)


@main.command("backfill")
@click.argument("channel")
@click.option("--since", default=None, metavar="DATE", help="Stop at posts older than DATE (2025-01-31, 2025-01, "
              "2025-01-31T12:00+03:00 — UTC unless it has an offset — or 30d / 12h / 8w / 6m ago).")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N", help="Store at most N posts.")
@click.option("--alert", is_flag=True, help="Alert on the backfilled posts that mention a watched entity (by "
              "default history is stored and matched silently) and try to deliver them now.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@pass_state
def backfill_cmd(state: CliState, channel: str, since: str | None, limit: int | None, alert: bool,
                 no_progress: bool) -> None:
    """Store a configured channel's history (resumable: run it again to continue).

    CHANNEL is the channel as configured: @name, name, a t.me link or its numeric id. The channel's
    configured source (telethon or web) reads the history.

    \b
    Examples:
      tgmonitor backfill @rian_ru
      tgmonitor backfill rian_ru --since 2025-01-01 --limit 5000
      tgmonitor backfill @rian_ru --since 30d
      tgmonitor backfill https://t.me/rian_ru --alert
    """
    from monitor.jobs.backfill import BackfillError, backfill_or_queue

    when = _parse_since(since)
    s = state.settings()
    try:
        # While the service holds the session lock, the backfill is queued for it and watched from here.
        code, message = run(backfill_or_queue(s, channel, since=when, limit=limit, alert=alert,
                                              progress=not no_progress))
    except BackfillError as exc:
        fail(str(exc), exc.code)
    if code:
        fail(message, code)
    click.echo(message)
