"""``tgmonitor mentions``: stored matches, newest first."""

from __future__ import annotations

import json

import click

from monitor import archive
from monitor.cli.app import CliState, main, pass_state, run
from monitor.runtime import open_runtime


@main.command("mentions")
@click.option("--entity", "entities", multiple=True, help="Only this entity (name or id); repeatable.")
@click.option("--channel", "channels", multiple=True, help="Only this channel (@name or title); repeatable.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N mentions (default: all).")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table", show_default=True)
@pass_state
def mentions_cmd(state: CliState, entities: tuple[str, ...], channels: tuple[str, ...], limit: int | None,
                 fmt: str) -> None:
    """List stored mentions, newest first.

    \b
    Examples:
      tgmonitor mentions --format jsonl > mentions.jsonl
      tgmonitor mentions --entity Росатом --limit 20
    """
    s = state.settings()

    async def go() -> None:
        async with open_runtime(s) as rt:
            async for mt in archive.iter_mentions(rt.engine, entities=entities, channels=channels, limit=limit):
                if fmt == "jsonl":
                    click.echo(json.dumps(mt.as_dict(), ensure_ascii=False))
                else:
                    click.echo(f"{mt.date:%Y-%m-%d %H:%M}  {mt.channel:20}  {mt.entity:24}  {mt.surface:24}  {mt.link}")

    run(go())
