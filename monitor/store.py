"""The one writer of posts, versions, matches, channels and cursors.

A batch of posts, their matches, their outbox rows (through an ``OutboxPlanner`` handed in by the
caller), their search-index rows and the channel's new cursor are written in ONE transaction: a crash at
any point leaves either all of it or none of it, so a restart repeats nothing and loses nothing.

New posts and their matches go to the database in bulk, through the driver under the session's own
transaction: one ``executemany`` per table on SQLite, ``COPY`` into a temporary table plus one
``INSERT … SELECT … ON CONFLICT`` on PostgreSQL. The values pass through SQLAlchemy's own bind
processors for the columns' types, so a row stored in bulk is byte for byte the row the ORM would have
stored. Everything CPU-bound about a post (matching, its repost hash, its search lemmas) is computed
before the transaction opens (``monitor/ingest.py``), so the write lock is held for writing only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import CursorResult, Table, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from monitor import fulltext, rollup
from monitor import models as m
from monitor.db import bind_rows, driver_connection, sessionmaker, sqlite_insert
from monitor.fulltext import text_hash
from monitor.matching import EntitySpec, Match
from monitor.models import now
from monitor.posts import Post


@dataclass(slots=True)
class SavedPost:
    """What a batch did to one post; handed to the outbox planner inside the transaction."""

    post_id: int
    post: Post
    matches: list[Match]
    new_entity_ids: list[str]  # entities not present in the previous version (all of them for a new post)
    is_new: bool
    alertable: bool
    text_hash: str | None


@dataclass(slots=True)
class BatchResult:
    new: int = 0
    edited: int = 0
    unchanged: int = 0
    matches: int = 0
    alerts: int = 0
    saved: list[SavedPost] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Rematch:
    """New matches for the current ``version`` of a stored post (see ``Store.replace_matches``)."""

    post_id: int
    version: int
    matches: list[Match]
    preview_matches: list[Match] = field(default_factory=list)


class OutboxPlanner(Protocol):
    """Adds outbox rows for freshly saved posts, inside the store's transaction (alerts/outbox.py)."""

    async def plan(self, session: AsyncSession, channel: m.Channel, saved: Sequence[SavedPost]) -> int: ...


@dataclass(slots=True)
class TextFacts:
    """What the store derives from a post's text, computed before the transaction (off the event loop):
    the repost hash (:func:`text_hash`) and, for SQLite's search index, the lemmatised shadow text
    (``None`` when not computed: PostgreSQL indexes the text itself)."""

    text_hash: str | None
    search_lemmas: str | None = None


@dataclass(frozen=True, slots=True)
class Arrival:
    """How and when the new posts of a batch first reached us (issue 12), recorded on new posts only:
    ``how`` is push | poll | backfill | import | web; ``seen_at`` defaults to the time of storing;
    ``push_missed`` names the message ids a reconciling poll caught because push updates missed them."""

    how: str
    seen_at: datetime | None = None
    push_missed: frozenset[int] = frozenset()


@dataclass(slots=True)  # not frozen: built once per post, and a frozen __init__ costs three times as much
class BatchItem:
    post: Post
    matches: list[Match]
    alertable: bool = False
    preview_matches: list[Match] = field(default_factory=list)  # found in the link preview text
    facts: TextFacts | None = None  # None: the store derives them itself (inside the transaction)
    row: tuple[object, ...] | None = None  # Store.own_rows, built before the transaction (None: built inside)

    @property
    def entity_ids(self) -> set[str]:
        return {mt.entity_id for mt in self.matches} | {mt.entity_id for mt in self.preview_matches}

    def match_rows(self, post_id: int, version: int) -> list[tuple[object, ...]]:
        """Rows for ``matches`` in :data:`MATCH_COLUMNS` order."""
        return [_match_row(post_id, mt, version, False) for mt in self.matches] + [
            _match_row(post_id, mt, version, True) for mt in self.preview_matches]

    def hash_of_text(self) -> str | None:
        return self.facts.text_hash if self.facts is not None else text_hash(self.post.text)

    def lemmas_of_text(self) -> str:
        if self.facts is not None and self.facts.search_lemmas is not None:
            return self.facts.search_lemmas
        return fulltext.lemmatize(self.post.text)


class Store:
    """Writes through an engine; every public coroutine is one transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine)

    @property
    def keeps_lemmas(self) -> bool:
        """Whether posts need a lemmatised shadow text (SQLite's search index; PostgreSQL stems by itself)."""
        return self.engine.dialect.name == "sqlite"

    def own_rows(self, posts: Sequence[Post], facts: Sequence[TextFacts | None]) -> list[tuple[object, ...]]:
        """The driver-ready values (:data:`POST_OWN_COLUMNS`) of posts that may be new. Pure CPU work, done
        before the transaction (``Ingestor.prepare``), so that it overlaps the previous batch's writing
        instead of adding to the time a batch holds the write lock."""
        lemmas = self.keeps_lemmas
        table: Table = m.Post.__table__  # type: ignore[assignment]
        return bind_rows(self.engine.dialect, table, POST_OWN_COLUMNS, (
            _post_own(p, f.text_hash if f is not None else text_hash(p.text),
                      (f.search_lemmas if f is not None and f.search_lemmas is not None
                       else fulltext.lemmatize(p.text)) if lemmas else None)
            for p, f in zip(posts, facts, strict=True)))

    # ------------------------------------------------------------------ channels

    async def find_channel(self, *, username: str | None = None, tg_id: int | None = None) -> m.Channel | None:
        """A stored channel by Telegram id first (ids survive renames), else by username."""
        async with self.sessions() as s:
            return await _find_channel(s, username, tg_id)

    async def upsert_channel(
        self,
        *,
        username: str | None = None,
        tg_id: int | None = None,
        title: str | None = None,
        access_hash: int | None = None,
        source: str | None = None,
    ) -> m.Channel:
        """Create or update a channel. Found by id under a new username, it is the same channel renamed."""
        username = username.lower().lstrip("@") if username else None
        async with self.sessions.begin() as s:
            ch = await _find_channel(s, username, tg_id)
            if ch is None:
                ch = m.Channel(username=username, tg_id=tg_id, title=title, access_hash=access_hash,
                               source=source or "telethon", cursor=0, seen_count=0, polls=0,
                               status="active", backfill_done=False)
                s.add(ch)
                await s.flush()
                return ch
            if tg_id is not None and ch.tg_id is None:
                # An export or a username-only channel learns its id: merge a row that has the id already.
                other = (await s.execute(select(m.Channel).where(m.Channel.tg_id == tg_id))).scalar_one_or_none()
                if other is not None and other.id != ch.id:
                    raise ValueError(f"channel id {tg_id} already belongs to another stored channel")
                ch.tg_id = tg_id
            if username is not None and ch.username != username:
                clash = (await s.execute(select(m.Channel).where(m.Channel.username == username))).scalar_one_or_none()
                if clash is not None and clash.id != ch.id:
                    clash.username = None  # the old holder of the name was renamed away
                    await s.flush()
                ch.username = username
            if title is not None:
                ch.title = title
            if access_hash is not None:
                ch.access_hash = access_hash
            if source is not None:
                ch.source = source
            await s.flush()
            return ch

    async def update_channel(self, channel_id: int, **values: object) -> None:
        """Set columns of one channel (status, errors, counts, not_before, ...)."""
        async with self.sessions.begin() as s:
            await s.execute(update(m.Channel).where(m.Channel.id == channel_id).values(**values))

    async def set_baseline(self, channel_id: int, baseline_id: int) -> bool:
        """Set the baseline once (the first successful poll); False if it was already set."""
        async with self.sessions.begin() as s:
            res = await s.execute(update(m.Channel).where(m.Channel.id == channel_id, m.Channel.baseline_id.is_(None))
                                  .values(baseline_id=baseline_id, baseline_at=m.now()))
            return bool(cast("CursorResult[Any]", res).rowcount)

    async def get_channel(self, channel_id: int) -> m.Channel:
        async with self.sessions() as s:
            ch = await s.get(m.Channel, channel_id)
            if ch is None:
                raise KeyError(channel_id)
            return ch

    async def channels(self) -> list[m.Channel]:
        async with self.sessions() as s:
            return list((await s.execute(select(m.Channel).order_by(m.Channel.id))).scalars())

    # ------------------------------------------------------------------ entities

    async def sync_entities(self, specs: Iterable[EntitySpec]) -> None:
        """Keep the entities table in step with the watchlist (names change, ids stay)."""
        specs = list(specs)
        async with self.sessions.begin() as s:
            existing = {e.id: e for e in (await s.execute(select(m.Entity))).scalars()}
            for spec in specs:
                row = existing.get(spec.id)
                if row is None:
                    s.add(m.Entity(id=spec.id, name=spec.name, silent=spec.silent, updated_at=now()))
                elif row.name != spec.name or row.silent != spec.silent:
                    row.name, row.silent, row.updated_at = spec.name, spec.silent, now()

    # ------------------------------------------------------------------ posts

    async def save_batch(
        self,
        channel_id: int,
        items: Sequence[BatchItem],
        *,
        cursor: int | None = None,
        seen: int = 0,
        backfill_low: int | None = None,
        planner: OutboxPlanner | None = None,
        arrival: Arrival | None = None,
        advance_cursor: bool = True,
    ) -> BatchResult:
        """Store posts with their matches, outbox rows, search-index rows and the channel's cursor in one
        transaction. ``advance_cursor=False`` (a pushed post above a gap) leaves the cursor where it is:
        it only ever moves over ids that are all stored.

        Saving the same batch twice changes nothing. A changed text is a new version: the old text goes to
        ``post_versions`` and only entities absent from the previous version count as new."""
        result = BatchResult()
        # Albums: one post per group, keyed by its lowest id; later members may arrive in a later page.
        by_id: dict[int, BatchItem] = {}
        for it in items:
            by_id[it.post.message_id] = it
        ids = list(by_id)
        async with self.sessions.begin() as s:
            sqlite = _is_sqlite(s)
            # The first statement writes: it takes SQLite's write lock (on PostgreSQL the channel row's lock,
            # which serialises batches of one channel), so nothing stores a post of this batch between the
            # existence check below and the inserts.
            res = await s.execute(update(m.Channel).where(m.Channel.id == channel_id)
                                  .values(seen_count=func.coalesce(m.Channel.seen_count, 0) + seen)
                                  .execution_options(synchronize_session=False))
            if not cast("CursorResult[Any]", res).rowcount:
                raise KeyError(channel_id)
            channel = await s.get(m.Channel, channel_id)
            assert channel is not None
            existing: dict[int, m.Post] = {}
            # Which posts are stored already: one cheap query (most batches of an import or a backfill
            # find none); only those are loaded as ORM rows, to be compared and maybe edited.
            stored_ids = await _stored_message_ids(s, channel_id, ids)
            for chunk in _chunks(sorted(stored_ids), 500):
                rows = await s.execute(select(m.Post).where(m.Post.channel_id == channel_id,
                                                            m.Post.message_id.in_(chunk)))
                existing.update({p.message_id: p for p in rows.scalars()})
            old_entities: dict[int, set[str]] = {}
            if existing:
                rows2 = await s.execute(select(m.Match.post_id, m.Match.entity_id)
                                        .where(m.Match.post_id.in_([p.id for p in existing.values()])))
                for pid, eid in rows2:
                    old_entities.setdefault(pid, set()).add(eid)

            new_items: list[BatchItem] = []
            match_rows: list[tuple[object, ...]] = []
            # SQLite search index (PostgreSQL indexes posts.text itself): lemmatised shadow texts
            index_fts = sqlite
            fts_removed: list[tuple[int, str]] = []
            fts_added: list[tuple[int, str]] = []
            mention_days: dict[rollup.Key, int] = {}  # the stats rollup, kept in step with the matches
            edited_ids: list[int] = []
            for mid in ids:
                it = by_id[mid]
                p = it.post
                row = existing.get(mid)
                if row is None:
                    new_items.append(it)
                    continue
                changed = _merge_existing(s, row, it)
                if changed == "edited":
                    if index_fts:
                        if row.search_lemmas is not None:
                            fts_removed.append((row.id, row.search_lemmas))
                        row.search_lemmas = it.lemmas_of_text()
                        fts_added.append((row.id, row.search_lemmas))
                    edited_ids.append(row.id)
                    match_rows.extend(it.match_rows(row.id, row.version))
                    rollup.count_change(mention_days, channel_id, row.date, old_entities.get(row.id, ()),
                                        it.entity_ids)
                    new_ids = sorted(it.entity_ids - old_entities.get(row.id, set()))
                    result.edited += 1
                    result.saved.append(SavedPost(row.id, p, it.matches, new_ids, False, it.alertable,
                                                  row.text_hash))
                else:
                    result.unchanged += 1
            for chunk in _chunks(edited_ids, 500):
                await s.execute(delete(m.Match).where(m.Match.post_id.in_(chunk)))

            if new_items:
                need = [it for it in new_items if it.row is None]
                if need:
                    for it, own in zip(need, self.own_rows([it.post for it in need], [it.facts for it in need]),
                                       strict=True):
                        it.row = own
                # The batch's own columns: how and when its new posts first reached us (issue 12).
                stored_at = now()
                head = (channel_id, stored_at, arrival.how if arrival else None,
                        (arrival.seen_at if arrival and arrival.seen_at else None) or stored_at)
                id_of = await _insert_posts(s, head, arrival.push_missed if arrival else frozenset(), new_items)
                for it in new_items:
                    new_id = id_of.get(it.post.message_id)
                    if new_id is None:  # stored by another writer meanwhile (PostgreSQL's ON CONFLICT)
                        result.unchanged += 1
                        continue
                    if index_fts:
                        fts_added.append((new_id, it.lemmas_of_text()))
                    entity_ids: list[str] = []
                    if it.matches or it.preview_matches:  # (most posts mention nothing: skip the sets)
                        match_rows.extend(it.match_rows(new_id, 1))
                        found = it.entity_ids
                        rollup.count_change(mention_days, channel_id, it.post.date, (), found)
                        entity_ids = sorted(found)
                    result.new += 1
                    result.saved.append(SavedPost(new_id, it.post, it.matches, entity_ids, True, it.alertable,
                                                  it.hash_of_text()))
            if match_rows:
                await _insert_matches(s, match_rows)
            result.matches = len(match_rows)
            if fts_removed or fts_added:
                await fulltext.sync_index(s, removed=fts_removed, added=fts_added)
            await rollup.apply(s, mention_days)

            if planner is not None and result.saved:
                result.alerts = await planner.plan(s, channel, result.saved)

            top = max([cursor or 0, *(max(it.post.ids) for it in items)] if items else [cursor or 0])
            if advance_cursor and top > (channel.cursor or 0):
                channel.cursor = top
            if backfill_low is not None and (channel.backfill_low is None or backfill_low < channel.backfill_low):
                channel.backfill_low = backfill_low
            if result.new:
                newest = max(it.post.date for it in new_items)
                if channel.last_post_at is None or newest > channel.last_post_at:
                    channel.last_post_at = newest
        return result

    async def replace_matches(self, changes: Sequence[Rematch]) -> int:
        """Replace the stored matches of posts with freshly computed ones (``tgmonitor rematch`` after a
        watchlist change), in one transaction, without outbox rows: a rematch never alerts.

        A post whose version moved on since it was read (edited meanwhile) is skipped: the edit was
        matched when it was stored. Returns the number of posts updated."""
        if not changes:
            return 0
        async with self.sessions.begin() as s:
            current: dict[int, tuple[int, int, datetime]] = {}
            before: dict[int, set[str]] = {}
            for chunk in _chunks([c.post_id for c in changes], 500):
                for pid, ver, ch_id, when in await s.execute(
                        select(m.Post.id, m.Post.version, m.Post.channel_id, m.Post.date).where(m.Post.id.in_(chunk))):
                    current[pid] = (ver, ch_id, when)
                for pid, eid in await s.execute(select(m.Match.post_id, m.Match.entity_id)
                                                .where(m.Match.post_id.in_(chunk))):
                    before.setdefault(pid, set()).add(eid)
            todo = [c for c in changes if c.post_id in current and current[c.post_id][0] == c.version]
            mention_days: dict[rollup.Key, int] = {}
            for c in todo:
                _ver, ch_id, when = current[c.post_id]
                rollup.count_change(mention_days, ch_id, when, before.get(c.post_id, ()),
                                    {mt.entity_id for mt in (*c.matches, *c.preview_matches)})
            rows: list[dict[str, object]] = []
            for c in todo:
                rows += [_match_values(c.post_id, mt, c.version, False) for mt in c.matches]
                rows += [_match_values(c.post_id, mt, c.version, True) for mt in c.preview_matches]
            for chunk in _chunks([c.post_id for c in todo], 500):
                await s.execute(delete(m.Match).where(m.Match.post_id.in_(chunk)))
            for chunk in _chunks(rows, 1000):
                await s.execute(insert(m.Match), chunk)
            await rollup.apply(s, mention_days)
            return len(todo)

    async def mark_deleted(self, channel_id: int, message_ids: Iterable[int]) -> int:
        """Mark posts deleted on Telegram; they stay in the archive."""
        ids = list(message_ids)
        if not ids:
            return 0
        async with self.sessions.begin() as s:
            res = await s.execute(update(m.Post).where(m.Post.channel_id == channel_id, m.Post.message_id.in_(ids),
                                                       m.Post.deleted.is_(False)).values(deleted=True))
            return int(cast("CursorResult[Any]", res).rowcount or 0)

    # ------------------------------------------------------------------ runs

    async def record_run(
        self,
        channel_id: int | None,
        kind: str,
        started_at: datetime,
        *,
        posts: int = 0,
        requests: int = 0,
        error: str | None = None,
    ) -> None:
        """One row in ``fetch_runs`` for a finished poll, re-read, backfill step or import."""
        async with self.sessions.begin() as s:
            s.add(m.FetchRun(channel_id=channel_id, kind=kind, started_at=started_at, finished_at=now(),
                             posts=posts, requests=requests, error=error))

    async def prune_runs(self, older_than: datetime) -> int:
        async with self.sessions.begin() as s:
            res = await s.execute(delete(m.FetchRun).where(m.FetchRun.started_at < older_than))
            return int(cast("CursorResult[Any]", res).rowcount or 0)

    async def count_posts(self, channel_id: int | None = None) -> int:
        async with self.sessions() as s:
            q = select(func.count()).select_from(m.Post)
            if channel_id is not None:
                q = q.where(m.Post.channel_id == channel_id)
            return int((await s.execute(q)).scalar_one())


async def _find_channel(s: AsyncSession, username: str | None, tg_id: int | None) -> m.Channel | None:
    """By Telegram id first (ids survive renames), else by username."""
    if tg_id is not None:
        row = (await s.execute(select(m.Channel).where(m.Channel.tg_id == tg_id))).scalar_one_or_none()
        if row is not None:
            return row
    if not username:
        return None
    name = username.lower().lstrip("@")
    return (await s.execute(select(m.Channel).where(m.Channel.username == name))).scalar_one_or_none()


def _is_sqlite(s: AsyncSession) -> bool:
    return s.get_bind().dialect.name == "sqlite"


def _chunks(seq: Sequence[Any], n: int) -> list[Sequence[Any]]:
    return [seq[i : i + n] for i in range(0, len(seq), n)]


#: A new post's own columns (the batch adds the rest: :data:`POST_BATCH_COLUMNS`), in ``_post_own`` order.
POST_OWN_COLUMNS = ("message_id", "date", "text", "edit_date", "views", "forwards", "fwd_channel_id",
                    "fwd_message_id", "fwd_name", "fwd_username", "album_id", "member_ids", "link_preview",
                    "incomplete", "deleted", "version", "text_hash", "raw", "search_lemmas")
#: The columns every new post of one batch shares (push_missed: whether its id is in Arrival.push_missed).
POST_BATCH_COLUMNS = ("channel_id", "stored_at", "arrival", "seen_at", "push_missed")


def _post_own(p: Post, hash_: str | None, search_lemmas: str | None) -> tuple[object, ...]:
    """The one place that maps a ``Post`` to its ``posts`` columns (:data:`POST_OWN_COLUMNS`)."""
    f = p.forward
    return (p.message_id, p.date, p.text, p.edit_date, p.views, p.forwards, f.channel_id if f else None,
            f.message_id if f else None, f.name if f else None, f.username if f else None, p.album_id,
            list(p.member_ids) if p.member_ids else None, p.link_preview, p.incomplete, p.deleted, 1, hash_,
            p.raw, search_lemmas)


def _post_values(channel_id: int, p: Post, hash_: str | None, stored_at: datetime,
                 search_lemmas: str | None) -> dict[str, object]:
    """A new post's row as a dict (the ORM's way, for reference: the store writes ``_post_own`` tuples)."""
    return {"channel_id": channel_id, **dict(zip(POST_OWN_COLUMNS, _post_own(p, hash_, search_lemmas), strict=True)),
            "stored_at": stored_at}


def _match_values(post_id: int, mt: Match, version: int, in_preview: bool) -> dict[str, object]:
    return {"post_id": post_id, "entity_id": mt.entity_id, "start": mt.start, "end": mt.end,
            "surface": mt.surface[:512], "version": version, "in_preview": in_preview}


MATCH_COLUMNS = ("post_id", "entity_id", "start", "end", "surface", "version", "in_preview")


def _match_row(post_id: int, mt: Match, version: int, in_preview: bool) -> tuple[object, ...]:
    return (post_id, mt.entity_id, mt.start, mt.end, mt.surface[:512], version, in_preview)


# ------------------------------------------------------------------ bulk writes through the driver

def _quote(names: Iterable[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


async def _stored_message_ids(s: AsyncSession, channel_id: int, ids: Sequence[int]) -> set[int]:
    """The message ids among ``ids`` that the channel has stored (through the driver: no ORM rows)."""
    if not ids:
        return set()
    drv = await driver_connection(s)
    sqlite = s.get_bind().dialect.name == "sqlite"
    lo, hi = min(ids), max(ids)
    if hi - lo < 4 * len(ids) + 100:
        # A page of an import, a backfill or a poll is a run of ids: one range scan of the unique index
        # (channel_id, message_id) instead of thousands of lookups.
        if sqlite:
            async with drv.execute("SELECT message_id FROM posts WHERE channel_id = ? AND message_id BETWEEN ? AND ?",
                                   (channel_id, lo, hi)) as cur:
                got = [r[0] for r in await cur.fetchall()]
        else:
            got = [r[0] for r in await drv.fetch("SELECT message_id FROM posts WHERE channel_id = $1 "
                                                 "AND message_id BETWEEN $2 AND $3", channel_id, lo, hi)]
        wanted = set(ids)
        return {mid for mid in got if mid in wanted}
    if not sqlite:
        rows = await drv.fetch("SELECT message_id FROM posts WHERE channel_id = $1 "
                               "AND message_id = ANY($2::bigint[])", channel_id, list(ids))
        return {r[0] for r in rows}
    found: set[int] = set()
    for chunk in _chunks(ids, 5000):  # (SQLite accepts 32,766 parameters a statement)
        sql = f"SELECT message_id FROM posts WHERE channel_id = ? AND message_id IN ({', '.join('?' * len(chunk))})"
        async with drv.execute(sql, (channel_id, *chunk)) as cur:
            found.update(r[0] for r in await cur.fetchall())
    return found


async def _insert_posts(s: AsyncSession, head: tuple[object, ...], missed: frozenset[int],
                        items: Sequence[BatchItem]) -> dict[int, int]:
    """Insert new posts in bulk: ``head`` (the batch's values of :data:`POST_BATCH_COLUMNS` but the last)
    and push_missed (the post's id in ``missed``), then each item's ``row`` (:data:`POST_OWN_COLUMNS`,
    driver-ready). Returns message id → posts.id of the rows inserted."""
    table: Table = m.Post.__table__  # type: ignore[assignment]
    dialect = s.get_bind().dialect
    columns = [*POST_BATCH_COLUMNS, *POST_OWN_COLUMNS]
    # Two possible heads for the whole batch, converted once.
    plain, pushed = bind_rows(dialect, table, POST_BATCH_COLUMNS, [(*head, False), (*head, True)])
    drv = await driver_connection(s)
    if dialect.name == "sqlite":
        # This transaction holds SQLite's write lock (save_batch writes first), so no one else can take
        # these ids: name them ourselves (max + 1 is what SQLite itself would pick) and skip RETURNING.
        top = (await s.execute(text("SELECT coalesce(max(id), 0) FROM posts"))).scalar_one()
        await sqlite_insert(drv, f"INSERT INTO posts (id, {_quote(columns)})", [
            (top + i, *(pushed if it.post.message_id in missed else plain), *it.row)  # type: ignore[misc]
            for i, it in enumerate(items, 1)])
        return {it.post.message_id: top + i for i, it in enumerate(items, 1)}
    values = [(*(pushed if it.post.message_id in missed else plain), *it.row)  # type: ignore[misc]
              for it in items]
    assert drv.is_in_transaction(), "bulk insert outside the session's transaction"
    # COPY into a temporary table (ON COMMIT DELETE ROWS: empty again after every batch), then one
    # INSERT … SELECT: COPY is the fastest way in, and ON CONFLICT keeps a post another writer stored
    # meanwhile instead of failing the batch. Named after its columns, so a schema change gets a new one.
    tmp = "tgm_new_posts_" + hashlib.sha1(",".join(columns).encode()).hexdigest()[:8]
    cols = _quote(columns)
    await drv.execute(f"CREATE TEMP TABLE IF NOT EXISTS {tmp} ON COMMIT DELETE ROWS AS "
                      f"SELECT {cols} FROM posts WITH NO DATA")
    await drv.copy_records_to_table(tmp, records=values, columns=columns)
    # (one call per transaction: the commit empties the table again)
    got = await drv.fetch(f"INSERT INTO posts ({cols}) SELECT {cols} FROM {tmp} "
                          "ON CONFLICT (channel_id, message_id) DO NOTHING RETURNING id, message_id")
    return {int(mid): int(pid) for pid, mid in got}


async def _insert_matches(s: AsyncSession, rows: list[tuple[object, ...]]) -> None:
    """Insert match rows (:data:`MATCH_COLUMNS` order) in bulk."""
    table: Table = m.Match.__table__  # type: ignore[assignment]
    dialect = s.get_bind().dialect
    values = bind_rows(dialect, table, MATCH_COLUMNS, rows)
    drv = await driver_connection(s)
    if dialect.name == "sqlite":
        await sqlite_insert(drv, f"INSERT INTO matches ({_quote(MATCH_COLUMNS)})", values)
        return
    assert drv.is_in_transaction(), "bulk insert outside the session's transaction"
    await drv.copy_records_to_table("matches", records=values, columns=list(MATCH_COLUMNS))


def _merge_existing(s: AsyncSession, row: m.Post, it: BatchItem) -> str:
    """Fold a re-read of a stored post into its row: 'edited' when the text changed, else 'same'."""
    p = it.post
    if p.views is not None:
        row.views = p.views
    if p.forwards is not None:
        row.forwards = p.forwards
    if p.deleted and not row.deleted:
        row.deleted = True
        return "same"
    if p.member_ids and set(p.member_ids) - set(row.member_ids or []):
        row.member_ids = sorted(set(p.member_ids) | set(row.member_ids or []))
    if p.link_preview and p.link_preview != row.link_preview:
        row.link_preview = p.link_preview
    if p.text == row.text or (p.incomplete and not p.text):
        return "same"
    s.add(m.PostVersion(post_id=row.id, version=row.version, text=row.text, edit_date=row.edit_date))
    row.version += 1
    row.text = p.text
    row.edit_date = p.edit_date or now()
    row.text_hash = it.hash_of_text()
    row.incomplete = p.incomplete
    return "edited"
