"""``search``, ``stats``, ``export``, ``rematch`` and ``reindex``: the archive from the command line.

Thin: the queries live in monitor/archive.py, rematch in monitor/rematch.py, the index in
monitor/fulltext.py, the chart in monitor/plots.py. Output is written in batches through a worker thread
so a big listing never blocks the event loop on a slow pipe.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from monitor.cli.app import EXIT_FAILURE, EXIT_USAGE, CliState, fail, main, pass_state, run

if TYPE_CHECKING:
    from monitor import archive

# The archive, SQLAlchemy and the runtime are imported inside the commands: listing commands, --help and
# a bad option stay fast.
PERIODS = ("day", "week", "month")  # monitor.archive.PERIODS (tests/test_cli.py checks they agree)

F = TypeVar("F", bound=Callable[..., Any])


# ------------------------------------------------------------------------------------------ helpers


class WhenParam(click.ParamType):
    """A date option: 2025-03-01, 2025-03, 2025-03-01T10:30[+03:00] or relative 30d/12h/8w/6m."""

    name = "DATE"

    def __init__(self, *, end: bool = False) -> None:
        self.end = end

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        from monitor.archive import ArchiveError, parse_when

        try:
            return parse_when(str(value), end=self.end)
        except ArchiveError as exc:
            self.fail(str(exc), param, ctx)


def filter_options(f: F) -> F:
    """--entity, --channel, --since and --until, shared by every archive command."""
    f = click.option("--until", type=WhenParam(end=True), default=None,
                     help="Up to this date, inclusive for a bare date (2025-03-31 includes the 31st).")(f)
    f = click.option("--since", type=WhenParam(), default=None,
                     help="From this date (2025-03-01, 2025-03, 2025-03-01T10:30, or 30d / 12h ago).")(f)
    f = click.option("--channel", "channels", multiple=True, metavar="CHANNEL",
                     help="Only this channel (@name, t.me link, title or id); repeatable.")(f)
    f = click.option("--entity", "entities", multiple=True, metavar="NAME",
                     help="Only this entity (its name, an alias or its id, any letter case); repeatable.")(f)
    return f


class Output:
    """Lines buffered and written to stdout in batches from a worker thread."""

    def __init__(self, batch: int = 500) -> None:
        self.lines: list[str] = []
        self.batch = batch

    async def line(self, text: str) -> None:
        self.lines.append(text)
        if len(self.lines) >= self.batch:
            await self.flush()

    async def flush(self) -> None:
        if self.lines:
            chunk, self.lines = "\n".join(self.lines) + "\n", []
            await asyncio.to_thread(click.echo, chunk, nl=False)


def csv_line(cells: Iterable[object]) -> str:
    """``monitor.archive.csv_line`` (spreadsheet-safe CSV cells), kept here for callers of the CLI module."""
    from monitor.archive import csv_line as line

    return line(cells)


def plural(n: int, word: str) -> str:
    """``1 week``, ``2 weeks``, ``0 days``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def one_line(text: str) -> str:
    """Line breaks as spaces, so a table row stays one line."""
    return " ".join(text.splitlines())


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


async def write_records(records: Any, fmt: str, *, fields: Sequence[str], table: Callable[[Any], str],
                        header: str | None = None) -> int:
    """Write ``as_dict()`` records (an async iterator) as table/json/jsonl/csv; returns how many."""
    out = Output()
    n = 0
    if fmt == "json":
        await out.line("[")
    elif fmt == "csv":
        await out.line(csv_line(fields))
    async for rec in records:
        if fmt == "table" and header and n == 0:  # only above rows: an empty listing says so on stderr
            await out.line(header)
        if fmt == "jsonl":
            await out.line(json.dumps(rec.as_dict(), ensure_ascii=False))
        elif fmt == "json":
            await out.line(("  " if n == 0 else ", ") + json.dumps(rec.as_dict(), ensure_ascii=False))
        elif fmt == "csv":
            d = rec.as_dict()
            await out.line(csv_line(d.get(k, "") for k in fields))
        else:
            await out.line(table(rec))
        n += 1
    if fmt == "json":
        await out.line("]")
    await out.flush()
    return n


def run_archive(coro: Any) -> Any:
    """Run an archive coroutine: a bad filter or query exits 2 with its message, a database error 1."""
    from monitor.archive import ArchiveError

    try:
        return run(coro)
    except ArchiveError as exc:
        fail(f"error: {exc}", EXIT_USAGE)
    except (OSError, RuntimeError) as exc:
        fail(f"error: {exc}", EXIT_FAILURE)
    except Exception as exc:  # SQLAlchemy/driver errors: one line, never a traceback
        if type(exc).__module__.startswith(("sqlalchemy", "asyncpg", "sqlite3", "aiosqlite")):
            fail(f"database error: {str(exc).splitlines()[0]}", EXIT_FAILURE)
        raise


async def _note_unindexed(engine: Any) -> None:
    """Search only reads: posts stored before the search index existed (SQLite) are named on stderr,
    with the command that indexes them, instead of being indexed here."""
    from monitor import fulltext

    if await fulltext.pending(engine):
        click.echo("note: some posts stored before the search index existed are not searched yet; "
                   "run `tgmonitor reindex` once", err=True)


# ------------------------------------------------------------------------------------------- search


@main.command("search", context_settings={"ignore_unknown_options": True})
@click.argument("query_words", nargs=-1, required=True, metavar="QUERY")
@filter_options
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N posts (default: all).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "jsonl", "csv"]), default="table",
              show_default=True)
@pass_state
def search_cmd(state: CliState, query_words: tuple[str, ...], entities: tuple[str, ...], channels: tuple[str, ...],
               since: datetime | None, until: datetime | None, limit: int | None, fmt: str) -> None:
    """Full-text search of stored posts in any word form, best matches first.

    QUERY: words (all required, any form: «кислота» finds «кислоты»), "a phrase" in double quotes
    (quote it for the shell too: '"серная кислота"'), -word or -"a phrase" to exclude. Hits are
    marked **like this** in the snippet.

    \b
    Examples:
      tgmonitor search кислота --limit 20
      tgmonitor search кислота -уран
      tgmonitor search '"серная кислота" -уран' --since 2025-01 --format jsonl
      tgmonitor search Казатомпром --channel @delovoy --format csv > hits.csv
    """
    from monitor import archive
    from monitor.archive import Filters
    from monitor.runtime import entity_refs, open_reader

    s = state.settings()
    query = " ".join(query_words)
    entities = entity_refs(s, entities)

    async def go() -> None:
        async with open_reader(s) as engine:
            await _note_unindexed(engine)
            hits = archive.iter_search(engine, query, filters=Filters(entities, channels, since, until),
                                       limit=limit)
            n = await write_records(
                hits, fmt, fields=("channel", "message_id", "date", "rank", "snippet", "link"),
                table=lambda h: f"{h.date:%Y-%m-%d %H:%M}  {clip(h.channel, 20):20}  "
                                f"{clip(one_line(h.snippet), 110):110}  {h.link}",
                header=f"{'DATE':16}  {'CHANNEL':20}  {'SNIPPET':110}  LINK")
            if fmt == "table" and n == 0:
                click.echo("no posts found", err=True)

    run_archive(go())


# -------------------------------------------------------------------------------------------- stats


def stats_table(st: archive.Stats) -> str:
    """The human summary: one line per entity with a sparkline, then its top channels."""
    from monitor.archive import sparkline

    if not st.entities:
        return "no mentions in this range"
    first, last = st.periods[0], st.periods[-1]
    width = max(8, min(30, max(len(e.entity) for e in st.entities)))
    lines = [f"Posts mentioning each entity per {st.by}, {first} … {last} ({plural(len(st.periods), st.by)})", "",
             f"{'entity':{width}}  {'total':>6}  {'peak':>5}  {'peak ' + st.by:10}  trend"]
    for e in st.entities:
        when, peak = e.peak(st.periods)
        lines.append(f"{clip(e.entity, width):{width}}  {e.total:>6}  {peak:>5}  {when or '-'!s:10}  "
                     f"{sparkline(e.series)}")
    lines += ["", "Top channels"]
    for e in st.entities:
        tops = ", ".join(f"{c} {n}" for c, n in e.channels) or "-"
        lines.append(f"{clip(e.entity, width):{width}}  {tops}")
    return "\n".join(lines)


@main.command("stats")
@filter_options
@click.option("--by", type=click.Choice(list(PERIODS)), default="day", show_default=True,
              help="Period to count per (weeks start on Monday, UTC).")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True, help="Top channels per entity.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
              help="Also draw a line chart to this PNG file (needs matplotlib: the 'plot' extra).")
@pass_state
def stats_cmd(state: CliState, entities: tuple[str, ...], channels: tuple[str, ...], since: datetime | None,
              until: datetime | None, by: str, top: int, fmt: str, plot_path: Path | None) -> None:
    """How many posts mention each entity, per day/week/month and per channel.

    A post that names an entity several times counts once. The table shows a sparkline per entity;
    csv has one row per (period, entity, channel); json has the zero-filled series and top channels.

    \b
    Examples:
      tgmonitor stats --by week --since 2025-01-01
      tgmonitor stats --entity Росатом --entity Казатомпром --by month --plot mentions.png
      tgmonitor stats --format csv > stats.csv
    """
    from monitor import archive
    from monitor.archive import Filters
    from monitor.runtime import entity_refs, open_reader

    s = state.settings()
    entities = entity_refs(s, entities)

    async def go() -> archive.Stats:
        async with open_reader(s) as engine:
            return await archive.stats(engine, filters=Filters(entities, channels, since, until),
                                       by=by, top_channels=top, with_rows=fmt == "csv")  # type: ignore[arg-type]

    st: archive.Stats = run_archive(go())
    if fmt == "json":
        click.echo(json.dumps(st.as_dict(), ensure_ascii=False, indent=2))
    elif fmt == "csv":
        click.echo(csv_line(("period", "entity", "entity_id", "channel", "mentions")))
        for row in st.rows:
            click.echo(csv_line((row.period.isoformat(), row.entity, row.entity_id, row.channel, row.mentions)))
    else:
        click.echo(stats_table(st))
    if plot_path is not None:
        from monitor.plots import PlotUnavailable, plot_stats

        try:
            plot_stats(st, plot_path)
        except PlotUnavailable as exc:
            fail(f"error: {exc}", EXIT_FAILURE)
        except OSError as exc:
            fail(f"error: cannot write {plot_path}: {exc.strerror or exc}", EXIT_FAILURE)
        click.echo(f"chart written to {plot_path}", err=True)


# ------------------------------------------------------------------------------------------- export


@main.command("export")
@filter_options
@click.option("--matched", is_flag=True, help="Only posts with at least one match (implied by --entity).")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@pass_state
def export_cmd(state: CliState, entities: tuple[str, ...], channels: tuple[str, ...], since: datetime | None,
               until: datetime | None, matched: bool, fmt: str) -> None:
    """Write stored posts with their matches, oldest first, for a spreadsheet or another tool.

    jsonl: one post per line with its text and a "matches" list (entity, start, end, surface);
    csv: one row per post, entities and matched words joined with "; ".

    \b
    Examples:
      tgmonitor export --format csv > posts.csv
      tgmonitor export --entity Росатом --since 2025-01 --format jsonl > rosatom.jsonl
    """
    from monitor import archive
    from monitor.archive import Filters
    from monitor.runtime import entity_refs, open_reader

    s = state.settings()
    entities = entity_refs(s, entities)

    async def go() -> None:
        async with open_reader(s) as engine:
            rows = archive.iter_export(engine, filters=Filters(entities, channels, since, until),
                                       matched_only=matched)
            out = Output()
            async for line in archive.export_lines(rows, fmt):  # the same lines as the dashboard's export
                await out.line(line)
            await out.flush()

    run_archive(go())


# ------------------------------------------------------------------------------------------ rematch


@main.command("rematch")
@click.option("--since", type=WhenParam(), default=None, help="Only posts from this date (default: all).")
@click.option("--until", type=WhenParam(end=True), default=None, help="Only posts up to this date.")
@click.option("--channel", "channels", multiple=True, metavar="CHANNEL", help="Only this channel; repeatable.")
@pass_state
def rematch_cmd(state: CliState, since: datetime | None, until: datetime | None, channels: tuple[str, ...]) -> None:
    """Match stored posts again with the current watchlist (after adding or changing entities).

    Nothing is fetched and nothing alerts: only the archive's matches change, so mentions, stats,
    search --entity and export answer for the new watchlist.

    \b
    Examples:
      tgmonitor rematch
      tgmonitor rematch --since 2025-01-01 --channel @delovoy
    """
    from monitor.rematch import rematch
    from monitor.runtime import open_runtime

    s = state.settings()

    async def go() -> Any:
        async with open_runtime(s) as rt:
            return await rematch(rt, since=since, until=until, channels=channels)

    rep = run_archive(go())
    click.echo(f"rematched {rep.posts} posts: {rep.changed} changed, {rep.added} matches added, "
               f"{rep.removed} removed")
    for name, n in sorted(rep.by_entity.items(), key=lambda kv: (-abs(kv[1]), kv[0])):
        if n:
            click.echo(f"  {name}: {n:+d}")


# ------------------------------------------------------------------------------------------ reindex


@main.command("reindex")
@click.option("--all", "rebuild", is_flag=True, help="Rebuild the whole index, not only missing posts.")
@pass_state
def reindex_cmd(state: CliState, rebuild: bool) -> None:
    """Build the full-text search index for stored posts (SQLite; PostgreSQL indexes by itself).

    New posts are indexed as they are stored; this fills in posts stored before the index existed
    (search does that on its own too) or, with --all, redoes every post.

    \b
    Examples:
      tgmonitor reindex
      tgmonitor reindex --all
    """
    from monitor import fulltext
    from monitor.runtime import open_runtime

    s = state.settings()

    async def go() -> tuple[str, int]:
        async with open_runtime(s) as rt:
            return rt.engine.dialect.name, await fulltext.build_index(rt.engine, rebuild=rebuild)

    dialect, n = run_archive(go())
    if dialect == "sqlite":
        click.echo(f"indexed {n} posts")
    else:
        click.echo(f"{dialect} keeps its search index up to date by itself; nothing to do")
