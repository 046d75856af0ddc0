"""Import a Telegram Desktop export: link each chat to a channel, store its posts through the Ingestor.

The export is parsed in a worker thread, one batch at a time (a bounded hop: the parser holds one batch,
never the file), while the event loop matches and stores the previous batch. Every batch is one store
transaction, and the store is idempotent, so re-importing a file changes nothing and importing a newer
export of the same channel adds only what is new. An export names its chat by title and numeric id; the id
links it to a configured or polled channel with that id, ``as_username`` to one known only by username,
so importing and then polling a channel never duplicates posts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

from monitor import models as m
from monitor.config import Settings, parse_channel_ref
from monitor.ingest import AlertRule
from monitor.logs import event
from monitor.posts import Post
from monitor.sources.export import ExportChat, ExportError, ExportItem, chat_selector, read_export

if TYPE_CHECKING:
    from monitor.runtime import Runtime

log = logging.getLogger(__name__)

BATCH = 2000


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

    async def run(self, *, on_bytes: ByteProgress | None = None,
                  after_batch: AfterBatch | None = None) -> ImportReport:
        """Read, match and store the whole file; raises ExportError for a file that is not an export."""
        report = ImportReport()
        started = datetime.now(UTC)
        fh = await asyncio.to_thread(self.path.open, "rb")
        pending: asyncio.Future[object] | None = None
        try:
            reader = _BatchReader(read_export(fh, select=self.select, local_tz=self.local_tz, on_read=on_bytes),
                                  self.batch)
            current: ChatReport | None = None
            row: m.Channel | None = None
            pending = asyncio.ensure_future(asyncio.to_thread(reader.next))
            while True:
                chunk = await pending
                if chunk is None:
                    break
                chat, posts, skipped, err = chunk
                # Parse the next batch in the worker while this one is matched and stored.
                pending = asyncio.ensure_future(asyncio.to_thread(reader.next)) if err is None else _done()
                if current is None or current.chat is not chat:
                    if current is not None and row is not None:
                        await self._finish(row, current, started)
                    if as_error := self._check_as(report, chat):
                        raise ExportError(as_error)
                    row = await self._link(chat)
                    current = ChatReport(chat, row.id, _label(row))
                    report.chats.append(current)
                assert row is not None
                if posts:
                    res = await self.rt.ingestor.ingest(row, posts, rule=self.rule, seen=len(posts) + skipped)
                    current.posts += len(posts)
                    current.new += res.new
                    current.edited += res.edited
                    current.matches += res.matches
                    current.alerts += res.alerts
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
            if pending is not None and not pending.done():
                # never close the file under the worker thread still parsing it
                await asyncio.wait([pending])
                if not pending.cancelled():
                    pending.exception()  # retrieved: the body's own error is the one to report
            await asyncio.to_thread(fh.close)
        if not report.chats and report.error is None:
            what = f"no chat named or numbered {self.channel!r}" if self.channel else "no channel"
            raise ExportError(f"{what} in this export; list its chats with: "
                              f"grep -o '\"name\": \"[^\"]*\"' {self.path} | head")
        return report

    def _check_as(self, report: ImportReport, chat: ExportChat) -> str | None:
        if self.as_username and report.chats:
            return ("--as names one channel, but the export holds several chats; "
                    "pick one with --channel NAME")
        return None

    async def _link(self, chat: ExportChat) -> m.Channel:
        """The stored channel for an exported chat: by ``--as`` username, else by id (configured channels
        with that id lend their username), else a new channel known by id and title."""
        store = self.rt.store
        configured = next((c for c in self.rt.settings.channels if chat.id is not None and c.id == chat.id), None)
        username = self.as_username or (configured.username if configured else None)
        existing = await store.find_channel(username=username, tg_id=chat.id)
        if existing is None and chat.id is None and username is None:
            # No id and no name: the export's title is all there is; reuse a channel of that title.
            existing = next((c for c in await store.channels() if c.title == chat.name and chat.name), None)
            if existing is not None:
                return existing
        source = None if existing is not None else (configured.source if configured else "telethon")
        if existing is not None and existing.tg_id is not None and chat.id is not None and existing.tg_id != chat.id:
            raise ExportError(f"@{username} is stored as channel id {existing.tg_id}, but this export is of "
                              f"channel id {chat.id}; check --as")
        try:
            return await store.upsert_channel(username=username, tg_id=chat.id,
                                              title=chat.name if existing is None or not existing.title else None,
                                              source=source)
        except ValueError as exc:
            raise ExportError(str(exc)) from None

    async def _finish(self, row: m.Channel, rep: ChatReport, started: datetime, error: str | None = None) -> None:
        await self.rt.store.record_run(row.id, "import", started, posts=rep.posts, error=error)
        event(log, logging.INFO, "import", channel=rep.channel, posts=rep.posts, new=rep.new,
              matches=rep.matches, alerts=rep.alerts)


async def _none() -> None:
    return None


def _done() -> asyncio.Future[None]:
    return asyncio.ensure_future(_none())


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

    from monitor.runtime import open_runtime
    from monitor.service import deliver_due

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
            except ExportError as exc:
                return 2, f"{path}: {exc}"
            except OSError as exc:
                return 2, f"{path}: cannot be read: {exc.strerror or exc}"
            if alert and report.alerts:
                delivered = await deliver_due(rt)
    finally:
        bar.close()
    lines = [f"{c.channel}: {c.posts} posts read, {c.new} new, {c.edited} changed, {c.matches} mentions"
             + (f", {c.alerts} alerts" if alert else "") for c in report.chats]
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
