"""``tgmonitor mentions``: stored matches, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import click

from monitor.cli.app import CliState, main, pass_state
from monitor.cli.archive import clip, filter_options, one_line, run_archive, write_records

if TYPE_CHECKING:
    from monitor import archive

MENTION_FIELDS = ("channel", "message_id", "date", "entity", "surface", "link", "snippet")


TABLE_HEADER = f"{'DATE':16}  {'CHANNEL':20}  {'ENTITY':20}  {'CONTEXT':90}  LINK"


def _table_line(mt: archive.Mention) -> str:
    from monitor import fulltext

    context = fulltext.mark_spans(mt.text, [(mt.start, mt.end)], width=80)
    return (f"{mt.date:%Y-%m-%d %H:%M}  {clip(mt.channel, 20):20}  {clip(mt.entity, 20):20}  "
            f"{clip(one_line(context), 90):90}  {mt.link}")


@main.command("mentions")
@filter_options
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N mentions (default: all).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "jsonl", "csv"]), default="table",
              show_default=True)
@pass_state
def mentions_cmd(state: CliState, entities: tuple[str, ...], channels: tuple[str, ...], since: datetime | None,
                 until: datetime | None, limit: int | None, fmt: str) -> None:
    """List stored mentions, newest first: date, channel, entity, the words in context, link.

    jsonl/json/csv records: channel, message_id, date, entity, surface, link, snippet (matched words
    marked **like this**).

    \b
    Examples:
      tgmonitor mentions --format jsonl > mentions.jsonl
      tgmonitor mentions --entity Росатом --since 2025-01-01 --until 2025-01-31
      tgmonitor mentions --channel @delovoy --since 7d --limit 20
    """
    from monitor import archive
    from monitor.runtime import entity_refs, open_reader

    s = state.settings()
    entities = entity_refs(s, entities)

    async def go() -> None:
        async with open_reader(s) as engine:
            records = archive.iter_mentions(engine, entities=entities, channels=channels, since=since,
                                            until=until, limit=limit)
            n = await write_records(records, fmt, fields=MENTION_FIELDS, table=_table_line, header=TABLE_HEADER)
            if fmt == "table" and n == 0:
                click.echo("no mentions found", err=True)

    run_archive(go())
