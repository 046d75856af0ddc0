"""Import a Telegram Desktop export: link each chat to a channel, store its posts through the Ingestor.

The export is parsed in a worker thread, one batch at a time (a bounded hop: the parser holds one batch,
never the file), while the event loop matches and stores the previous batch. Every batch is one store
transaction, and the store is idempotent, so re-importing a file changes nothing and importing a newer
export of the same channel adds only what is new. An export names its chat by title and numeric id; the id
links it to a configured or polled channel with that id, ``as_username`` to one known only by username,
so importing and then polling a channel never duplicates posts. Without either, a stored channel with no id
and exactly the export's title (a web channel: the preview shows a title, never the id) is the one; any
other export becomes a separate channel and the report says how to link it. ``--as`` must name a known
channel; when it and the export's id name two stored channels, the id's channel is folded into the named
one only if it is an import-only copy whose posts the named channel all has, else the import is refused.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select, update

from monitor import models as m
from monitor.config import Settings, parse_channel_ref
from monitor.ingest import AlertRule, Arrival, Prepared
from monitor.jobs.redate import redate_posts
from monitor.logs import event
from monitor.posts import Post
from monitor.sources.export import (
    ExportChat,
    ExportError,
    ExportItem,
    ExportStats,
    chat_notes,
    chat_selector,
    nothing_selected,
    read_export,
    skipped_chats,
)

if TYPE_CHECKING:
    from monitor.ingest import Ingestor
    from monitor.runtime import Runtime

log = logging.getLogger(__name__)

BATCH = 2000
#: an export at least this big starts the matching worker processes at once (see monitor/ingest.py)
EAGER_WORKERS_BYTES = 2 * 2**20


@dataclass(slots=True)
class ChatReport:
    """What an import did to one chat of the export."""

    chat: ExportChat
    channel_id: int
    channel: str
    posts: int = 0
    new: int = 0
    edited: int = 0
    matches: int = 0
    alerts: int = 0
    note: str | None = None  # how the chat was linked, when that was not by id or --as
    redated: int = 0  # stored posts whose dates an earlier import of an old export read in another zone


class LinkError(ExportError):
    """The export cannot be linked as asked (an unknown ``--as`` name, two stored channels): exit 2."""


@dataclass(slots=True)
class ImportReport:
    """The whole import: per-chat reports and, when the file broke off, the reason."""

    chats: list[ChatReport] = field(default_factory=list)
    error: str | None = None  # a truncated file: everything before the break is stored

    @property
    def posts(self) -> int:
        return sum(c.posts for c in self.chats)

    @property
    def new(self) -> int:
        return sum(c.new for c in self.chats)

    @property
    def alerts(self) -> int:
        return sum(c.alerts for c in self.chats)


#: progress(bytes_read) — how far through the file the parser is
ByteProgress = Callable[[int], None]
#: after_batch(report) — called (and awaited when it returns a coroutine) after each stored batch
AfterBatch = Callable[[ChatReport], object]


class ImportJob:
    """One import of one export file into one runtime (see :func:`import_export`)."""

    def __init__(
        self,
        rt: Runtime,
        path: Path,
        *,
        channel: str | None = None,
        as_username: str | None = None,
        alert: bool = False,
        local_tz: tzinfo = UTC,
        batch: int = BATCH,
    ) -> None:
        self.rt = rt
        self.path = path
        self.select = chat_selector(channel)
        self.channel = channel
        self.as_username: str | None = None
        if as_username is not None:
            username, _ = parse_channel_ref(as_username)
            if username is None:
                raise ValueError(f"--as needs a channel username, not {as_username!r}")
            self.as_username = username
        self.rule = AlertRule(force=alert)
        self.local_tz = local_tz
        self.batch = batch
        self.stats = ExportStats()  # what the reader passed over (chats not selected, malformed messages)

    async def run(self, *, on_bytes: ByteProgress | None = None,
                  after_batch: AfterBatch | None = None) -> ImportReport:
        """Read, match and store the whole file; raises ExportError for a file that is not an export."""
        report = ImportReport()
        started = datetime.now(UTC)
        await self._check_as_known()
        fh = await asyncio.to_thread(self.path.open, "rb")
        pipeline: _Pipeline | None = None
        try:
            # a single-chat export of a group or a personal chat is read only when --channel names it
            reader = _BatchReader(read_export(fh, select=self.select, local_tz=self.local_tz, on_read=on_bytes,
                                              single_chat_any_type=False, stats=self.stats),
                                  self.batch)
            current: ChatReport | None = None
            row: m.Channel | None = None
            if (await asyncio.to_thread(os.fstat, fh.fileno())).st_size >= EAGER_WORKERS_BYTES:
                self.rt.ingestor.start_workers()  # they load the watchlist while the first batch is parsed
            pipeline = _Pipeline(reader, self.rt.ingestor)
            while True:
                got = await pipeline.next()
                if got is None:
                    break
                (chat, posts, skipped, err), prepared = got
                if current is None or current.chat is not chat:
                    if current is not None and row is not None:
                        await self._finish(row, current, started)
                    if as_error := self._check_as(report, chat):
                        raise ExportError(as_error)
                    row, note = await self._link(chat)
                    current = ChatReport(chat, row.id, _label(row), note=note)
                    report.chats.append(current)
                assert row is not None
                if posts:
                    res = await self.rt.ingestor.ingest(row, posts, rule=self.rule, seen=len(posts) + skipped,
                                                        prepared=await prepared, arrival=Arrival("import"))
                    current.posts += len(posts)
                    current.new += res.new
                    current.edited += res.edited
                    current.matches += res.matches
                    current.alerts += res.alerts
                    current.redated += await redate_posts(self.rt.store, row.id, posts)
                    if after_batch is not None:
                        maybe = after_batch(current)
                        if asyncio.iscoroutine(maybe):
                            await maybe
                if err is not None:
                    report.error = err
                    break
            if current is not None and row is not None:
                await self._finish(row, current, started, error=report.error)
        finally:
            if pipeline is not None:
                await pipeline.aclose()  # never close the file under the worker thread still parsing it
            await asyncio.to_thread(fh.close)
        if not report.chats and report.error is None:
            raise ExportError(nothing_selected(self.stats, self.channel))
        return report

    def _check_as(self, report: ImportReport, chat: ExportChat) -> str | None:
        if self.as_username and report.chats:
            return ("--as names one channel, but the export holds several chats; "
                    "pick one with --channel NAME")
        return None

    async def _check_as_known(self) -> None:
        """``--as`` must name a configured or a stored channel: a typo would otherwise rename or create one."""
        if self.as_username is None:
            return
        known = {c.username for c in self.rt.settings.channels if c.username}
        known |= {c.username for c in await self.rt.store.channels() if c.username}
        if self.as_username in known:
            return
        msg = f"--as {self.as_username}: no configured or stored channel has this username"
        close = difflib.get_close_matches(self.as_username, sorted(known), n=1)
        if close:
            msg += f"; did you mean --as {close[0]}?"
        msg += (f" (known: {', '.join(sorted(known))})" if known else
                " (none are known: add it under [[channels]] in the config first)")
        raise LinkError(msg)

    async def _link(self, chat: ExportChat) -> tuple[m.Channel, str | None]:
        """The stored channel for an exported chat and, when it is worth saying, how it was linked: by
        ``--as`` username, else by id (configured channels with that id lend their username), else by its
        exact title to the one stored channel of that title that has no id, else a new channel."""
        store = self.rt.store
        configured = next((c for c in self.rt.settings.channels if chat.id is not None and c.id == chat.id), None)
        username = self.as_username or (configured.username if configured else None)
        note: str | None = None
        if self.as_username is not None and chat.id is not None:
            named = await store.find_channel(username=self.as_username)
            holder = await store.find_channel(tg_id=chat.id)
            if named is not None and holder is not None and named.id != holder.id:
                note = await self._fold(named, holder, chat)
        existing = await store.find_channel(username=username, tg_id=chat.id)
        if existing is None and username is None and chat.name:
            # No id match and no name: a stored channel that has no id yet (a web channel) and exactly
            # this title is the same channel, if it is the only one.
            titled = [c for c in await store.channels() if c.title == chat.name]
            if chat.id is None and titled:
                return titled[0], None  # an export without an id: its title is all there is
            same = [c for c in titled if c.tg_id is None]
            if len(same) == 1:
                await store.update_channel(same[0].id, tg_id=chat.id)
                row = await store.get_channel(same[0].id)
                return row, f"linked to {_label(row)} by its title"
        source = None if existing is not None else (configured.source if configured else "telethon")
        if existing is not None and existing.tg_id is not None and chat.id is not None and existing.tg_id != chat.id:
            raise LinkError(f"@{username} is stored as channel id {existing.tg_id}, but this export is of "
                            f"channel id {chat.id}; check --as")
        try:
            row = await store.upsert_channel(username=username, tg_id=chat.id,
                                             title=chat.name if existing is None or not existing.title else None,
                                             source=source)
        except ValueError as exc:
            raise LinkError(str(exc)) from None
        if existing is None and username is None and chat.id is not None:
            note = (f"stored as a separate channel «{chat.name or chat.id}» (id {chat.id}); if this is one of "
                    f"your configured channels, import again with --as USERNAME")
        return row, note

    async def _fold(self, named: m.Channel, holder: m.Channel, chat: ExportChat) -> str:
        """``--as`` names stored channel ``named`` while the export's id belongs to stored channel ``holder``
        (an earlier import without --as). Fold ``holder`` into ``named`` when that loses nothing: ``holder``
        is an import-only copy (no username, not configured, never polled) and ``named`` has every one of
        its posts. Its alerts move to the same posts of ``named``; then it is dropped and ``named`` takes its
        id, in one transaction. Anything else is refused (LinkError, exit 2) rather than renamed silently."""
        configured_ids = {c.id for c in self.rt.settings.channels if c.id is not None}
        both = (f"@{named.username} (stored channel {named.id}) and «{holder.title or holder.tg_id}» "
                f"(stored channel {holder.id}, id {holder.tg_id}"
                + (f", @{holder.username}" if holder.username else "") + ")")
        refuse = (f"--as {self.as_username}: this export's channel id {chat.id} already belongs to another "
                  f"stored channel: {both} would then be one channel twice.")
        if named.tg_id is not None:
            raise LinkError(f"{refuse} @{named.username} is channel id {named.tg_id}, not {chat.id}; check --as")
        if holder.username is not None or holder.tg_id in configured_ids or holder.polls:
            raise LinkError(f"{refuse} «{holder.title or holder.tg_id}» is a configured or polled channel; "
                            f"import without --as to add to it")
        sessions = self.rt.store.sessions
        async with sessions.begin() as s:
            mine = {mid: pid for pid, mid in await s.execute(
                select(m.Post.id, m.Post.message_id).where(m.Post.channel_id == named.id))}
            theirs = list(await s.execute(select(m.Post.id, m.Post.message_id, m.Post.search_lemmas)
                                          .where(m.Post.channel_id == holder.id)))
            missing = [mid for _, mid, _ in theirs if mid not in mine]
            if missing:
                raise LinkError(f"{refuse} «{holder.title or holder.tg_id}» holds {len(missing)} posts that "
                                f"@{named.username} does not (e.g. message {missing[0]}), so they cannot be "
                                f"merged automatically; keep importing this export without --as")
            for pid, mid, _ in theirs:
                await s.execute(update(m.Alert).where(m.Alert.post_id == pid).values(post_id=mine[mid]))
            # what was alerted for the copy counts as alerted for the channel: never alert twice
            done = {(d, mid, e) for d, mid, e in await s.execute(
                select(m.AlertEntity.destination, m.AlertEntity.message_id, m.AlertEntity.entity_id)
                .where(m.AlertEntity.channel_id == named.id))}
            for ae in (await s.execute(select(m.AlertEntity).where(m.AlertEntity.channel_id == holder.id))).scalars():
                if (ae.destination, ae.message_id, ae.entity_id) in done:
                    await s.delete(ae)
                else:
                    ae.channel_id = named.id
            if s.get_bind().dialect.name == "sqlite":
                from monitor import fulltext

                await fulltext.sync_index(s, removed=[(pid, lem) for pid, _, lem in theirs if lem is not None])
            await s.flush()
            # posts (with matches, versions), mention counts and runs go with the row (ON DELETE CASCADE)
            await s.execute(delete(m.Post).where(m.Post.channel_id == holder.id))
            await s.execute(delete(m.MentionDay).where(m.MentionDay.channel_id == holder.id))
            await s.execute(delete(m.FetchRun).where(m.FetchRun.channel_id == holder.id))
            await s.execute(delete(m.Channel).where(m.Channel.id == holder.id))
            await s.flush()
            await s.execute(update(m.Channel).where(m.Channel.id == named.id).values(tg_id=chat.id))
            left = (await s.execute(select(func.count()).select_from(m.Post)
                                    .where(m.Post.channel_id == named.id))).scalar_one()
        return (f"merged the separate channel «{holder.title or holder.tg_id}» (id {chat.id}, {len(theirs)} "
                f"duplicate posts) into @{named.username}, which now has {left} posts")

    async def _finish(self, row: m.Channel, rep: ChatReport, started: datetime, error: str | None = None) -> None:
        await self.rt.store.record_run(row.id, "import", started, posts=rep.posts, error=error)
        event(log, logging.INFO, "import", channel=rep.channel, posts=rep.posts, new=rep.new,
              matches=rep.matches, alerts=rep.alerts)


def _label(row: m.Channel) -> str:
    if row.username:
        return f"@{row.username}"
    return row.title or str(row.tg_id)


class _BatchReader:
    """Pulls batches of posts of one chat from the (blocking) export iterator; run in a worker thread."""

    def __init__(self, items: Iterator[ExportItem], size: int) -> None:
        self.items = items
        self.size = size
        self.chat: ExportChat | None = None
        self.held: ExportItem | None = None
        self.finished = False

    def next(self) -> tuple[ExportChat, list[Post], int, str | None] | None:
        """The next batch: (chat, posts, skipped, error) or None at the end of the file.

        A batch never spans two chats; a chat with no posts still yields one (empty) batch so that it is
        linked and reported."""
        if self.finished:
            return None
        posts: list[Post] = []
        skipped = 0
        chat = self.chat
        if self.held is not None:
            item, self.held = self.held, None
            chat = self.chat = item.chat
            if item.post is not None:
                posts.append(item.post)
                skipped += item.skipped
        try:
            for item in self.items:
                if item.post is None or item.chat is not chat:
                    if chat is not None and (posts or item.post is None):
                        self.held = item
                        return chat, posts, skipped, None
                    chat = self.chat = item.chat
                    if item.post is None:
                        continue
                posts.append(item.post)
                skipped += item.skipped
                if len(posts) >= self.size:
                    return chat, posts, skipped, None
        except ExportError as exc:
            self.finished = True
            if not exc.truncated or chat is None:
                raise
            return chat, posts, skipped, str(exc)
        self.finished = True
        if chat is None:
            return None
        return chat, posts, skipped, None


_Batch = tuple[ExportChat, list[Post], int, str | None]


class _Pipeline:
    """Parses batches in a worker thread and starts matching each as soon as it is parsed (in the
    ingestor's worker processes), up to ``depth`` batches ahead of the one being stored: parsing, matching
    and writing overlap instead of taking turns. Batches come out in file order; a parse error comes out
    where it happened, after the batches before it."""

    def __init__(self, reader: _BatchReader, ingestor: Ingestor, depth: int = 2) -> None:
        self.reader = reader
        self.ingestor = ingestor
        self.queue: asyncio.Queue[tuple[_Batch, asyncio.Future[list[Prepared]]] | BaseException | None] = (
            asyncio.Queue(depth))
        self.parsing: asyncio.Future[_Batch | None] | None = None
        self.preparing: list[asyncio.Future[list[Prepared]]] = []
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            while True:
                self.parsing = asyncio.ensure_future(asyncio.to_thread(self.reader.next))
                # shielded: cancelling the pipeline must not abandon a parse still running in its thread
                chunk = await asyncio.shield(self.parsing)
                if chunk is None:
                    break
                prep = asyncio.ensure_future(self.ingestor.prepare(chunk[1]))
                self.preparing = [f for f in self.preparing if not f.done()] + [prep]
                await self.queue.put((chunk, prep))
                if chunk[3] is not None:  # the file broke off there: nothing follows
                    break
        except Exception as exc:
            await self.queue.put(exc)
            return
        await self.queue.put(None)

    async def next(self) -> tuple[_Batch, asyncio.Future[list[Prepared]]] | None:
        """The next batch and its matching in progress; None after the last one."""
        got = await self.queue.get()
        if isinstance(got, BaseException):
            raise got
        return got

    async def aclose(self) -> None:
        """Stop reading ahead: wait for a parse in progress, drop prepared batches nobody will store."""
        self.task.cancel()
        await asyncio.wait([self.task])
        if self.parsing is not None:
            await asyncio.wait([self.parsing])
            if not self.parsing.cancelled():
                self.parsing.exception()  # retrieved: the body's own error is the one to report
        for prep in self.preparing:
            prep.cancel()
        if self.preparing:
            await asyncio.wait(self.preparing)
        for prep in self.preparing:
            if not prep.cancelled():
                prep.exception()


async def import_export(rt: Runtime, path: Path, **kwargs: object) -> ImportReport:
    """Import ``path`` into the runtime's database (see :class:`ImportJob` for the options)."""
    on_bytes = kwargs.pop("on_bytes", None)
    after_batch = kwargs.pop("after_batch", None)
    job = ImportJob(rt, path, **kwargs)  # type: ignore[arg-type]
    return await job.run(on_bytes=on_bytes, after_batch=after_batch)  # type: ignore[arg-type]


async def import_file(
    settings: Settings,
    path: Path,
    *,
    channel: str | None = None,
    as_username: str | None = None,
    alert: bool = False,
    local_tz: tzinfo = UTC,
    progress: bool = True,
) -> tuple[int, str]:
    """The ``import`` command's work: open the runtime, import with a progress bar (bytes, posts, ETA),
    make one delivery attempt for the alerts created when ``alert``; returns (exit code, message)."""
    from tqdm import tqdm

    from monitor.alerts.deliver import deliver_due
    from monitor.runtime import open_runtime

    try:
        size = (await asyncio.to_thread(path.stat)).st_size
    except OSError as exc:
        return 2, f"{path}: cannot be read: {exc.strerror}"
    bar = tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc="import", disable=not progress,
               leave=False, dynamic_ncols=True)

    def after(rep: ChatReport) -> None:
        bar.set_postfix_str(f"{rep.channel}: {rep.posts} posts, {rep.matches} mentions", refresh=False)

    delivered = 0
    try:
        async with open_runtime(settings) as rt:
            try:
                job = ImportJob(rt, path, channel=channel, as_username=as_username, alert=alert, local_tz=local_tz)
            except ValueError as exc:
                return 2, str(exc)
            try:
                report = await job.run(on_bytes=bar.update, after_batch=after)
            except LinkError as exc:
                return 2, str(exc)
            except ExportError as exc:
                return 2, f"{path}: {exc}"
            except OSError as exc:
                return 2, f"{path}: cannot be read: {exc.strerror or exc}"
            if alert and report.alerts:
                delivered = await deliver_due(rt)
    finally:
        bar.close()
    lines = []
    for c in report.chats:
        lines.append(f"{c.channel}: {c.posts} posts read, {c.new} new, {c.edited} changed, {c.matches} mentions"
                     + (f", {c.alerts} alerts" if alert else "") + (f" ({c.note})" if c.note else ""))
        lines += [f"  {note}" for note in chat_notes(c.chat, job.stats.of(c.chat), local_tz, redated=c.redated)]
    if channel is None:
        lines += skipped_chats(job.stats)
    if alert and not settings.alerts:
        lines.append("alerts: none raised, no [[alerts]] destinations are configured "
                     '(for example: [[alerts]] name = "me" url = "tgram://BOT_TOKEN/CHAT_ID")')
    elif alert:
        lines.append(f"alerts: {report.alerts} queued, {delivered} delivered now"
                     + (" (the rest stay queued for the service)" if delivered < report.alerts else ""))
    if report.error:
        lines.append(f"{path}: {report.error}; the {report.posts} posts before the break are stored, "
                     f"import a complete export to add the rest")
        return 2, "\n".join(lines)
    return 0, "\n".join(lines)
