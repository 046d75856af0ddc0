"""Posts from any source → matches → one store transaction (with outbox rows when they may alert).

Every source (Telethon, export, web) hands its pages of ``Post`` values to :class:`Ingestor`, so
storage, matching and alerting are shared, never copied.

The CPU work of a page (matching, the repost hash, SQLite's search lemmas) is done before the store's
transaction opens and never on the event loop: a small page in a worker thread, a big one (an import
batch, a 300 KB post) in a worker process, so a post with thousands of mentions stalls neither polling,
delivery nor SIGTERM, and matching the next import batch overlaps storing this one on the other core.
Each worker process unpickles the compiled watchlist once, when it starts (``monitor/ingest_worker.py``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

from monitor import models as m
from monitor.ingest_worker import Analysis, Worker, WorkerDied, analyse_many
from monitor.matching import Match, Watchlist
from monitor.posts import Post
from monitor.store import Arrival, BatchItem, BatchResult, OutboxPlanner, Store, TextFacts

log = logging.getLogger(__name__)

#: A page at least this long (posts), or holding at least this much text (characters), is prepared in a
#: worker process; smaller ones in a thread (a process round trip costs about a millisecond).
POOL_MIN_POSTS = 256
POOL_MIN_CHARS = 100_000


@dataclass(frozen=True, slots=True)
class AlertRule:
    """Which posts of a batch may alert.

    ``None`` (polls): ids above the channel's baseline, or all when the channel has ``alert_history``;
    and a post at or below the baseline whose edit was made after the baseline was set (an edit made after
    we started watching is news; the outbox alerts only for the entities the edit added). The web preview
    gives no edit time, so there such edits stay silent.
    ``True``/``False`` (backfill, import): every post, or none."""

    force: bool | None = None
    alert_history: bool = False

    def allows(self, channel: m.Channel, post: Post) -> bool:
        if self.force is not None:
            return self.force
        if self.alert_history:
            return True
        if channel.baseline_id is None:
            return False
        if post.message_id > channel.baseline_id:
            return True
        return (post.edit_date is not None and channel.baseline_at is not None
                and post.edit_date > channel.baseline_at)


@dataclass(slots=True)
class Prepared:
    """What one post's text yields before storing: its matches and the facts the store derives."""

    matches: list[Match]
    preview_matches: list[Match] = field(default_factory=list)
    facts: TextFacts | None = None
    row: tuple[object, ...] | None = None  # Store.own_rows: the post's columns, ready for the driver


def _unwire(w: Analysis) -> Prepared:
    found, in_preview, hash_, lemmas = w
    # (most posts mention nothing: no comprehension for them)
    return Prepared([Match(*t) for t in found] if found else [],
                    [Match(*t) for t in in_preview] if in_preview else [], TextFacts(hash_, lemmas))


def analyse(watchlist: Watchlist, texts: Sequence[tuple[str, str | None]], lemmas: bool) -> list[Prepared]:
    """Match and derive the text facts of (text, link preview or None) pairs; pure CPU work, no I/O."""
    return [_unwire(w) for w in analyse_many(watchlist, texts, lemmas)]


class _Pool:
    """The worker processes of one ingestor (one watchlist); started in a thread, off the event loop."""

    def __init__(self, watchlist: Watchlist, workers: int, lemmas: bool) -> None:
        self.workers: list[Worker] = []
        self.size = workers
        self.closed = False
        self.starting = asyncio.ensure_future(asyncio.to_thread(self._start, watchlist, lemmas))

    def _start(self, watchlist: Watchlist, lemmas: bool) -> None:
        blob = pickle.dumps(watchlist, pickle.HIGHEST_PROTOCOL)  # (10,000 entities: tens of MB, not on the loop)
        for _ in range(self.size):
            if self.closed:
                return
            self.workers.append(Worker(blob, lemmas))
        if self.closed:
            self.close()

    @property
    def ready(self) -> bool:
        return self.starting.done() and not self.starting.cancelled() and self.starting.exception() is None \
            and bool(self.workers) and not self.closed

    def close(self) -> None:
        self.closed = True
        for w in self.workers:
            w.kill()


def default_workers() -> int:
    """Worker processes for big batches: one per core beyond the one running the event loop, at least one."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


class Ingestor:
    """Matches and stores pages of posts for one process (one watchlist, one outbox planner)."""

    def __init__(
        self,
        store: Store,
        watchlist: Watchlist,
        *,
        planner: OutboxPlanner | None = None,
        match_link_previews: bool = False,
        workers: int | None = None,
    ) -> None:
        self.store = store
        self.watchlist = watchlist
        self.planner = planner
        self.match_link_previews = match_link_previews
        self.workers = default_workers() if workers is None else workers
        self.pool_min_posts = POOL_MIN_POSTS
        self.pool_min_chars = POOL_MIN_CHARS
        self._pool: _Pool | None = None
        self._finalizer: weakref.finalize[..., Ingestor] | None = None

    # ---- preparing (CPU work, off the event loop) -------------------------------------------------

    def start_workers(self) -> None:
        """Start the worker processes now, in the background (an import calls this first, so they load
        while it parses); batches prepared before they are ready go to a thread. No-op with ``workers=0``."""
        if self._pool is not None or self.workers <= 0:
            return
        self._pool = _Pool(self.watchlist, self.workers, self.store.keeps_lemmas)
        # Stopped when this ingestor is dropped (a config reload builds a new one) or at exit.
        self._finalizer = weakref.finalize(self, self._pool.close)

    def close(self) -> None:
        """Stop the worker processes, if any (they are started again when needed)."""
        if self._finalizer is not None:
            self._finalizer()
        self._pool = self._finalizer = None

    async def prepare(self, posts: Sequence[Post]) -> list[Prepared]:
        """Match ``posts`` and derive their text facts off the event loop (see the module docstring), and
        build their rows for the driver: all the per-post work, before the store's transaction."""
        if not posts:
            return []
        prepared = await self._analyse(posts)
        for pr, row in zip(prepared, self.store.own_rows(posts, [pr.facts for pr in prepared]), strict=True):
            pr.row = row
        return prepared

    async def _analyse(self, posts: Sequence[Post]) -> list[Prepared]:
        previews = self.match_link_previews
        texts = [(p.text or "", p.link_preview if previews and p.link_preview else None) for p in posts]
        lemmas = self.store.keeps_lemmas
        big = len(texts) >= self.pool_min_posts or sum(len(t) + len(v or "") for t, v in texts) >= self.pool_min_chars
        if big and self.workers > 0:
            self.start_workers()
            pool = self._pool
            if pool is not None and pool.starting.done() and not pool.ready:
                self.close()
                if not pool.starting.cancelled() and (exc := pool.starting.exception()) is not None:
                    # (no Python to start, no memory): said once; this ingestor matches in threads from now on
                    self.workers = 0
                    log.warning("ingest: matching worker processes did not start (%s); matching in threads",
                                exc)
            elif pool is not None and pool.ready:
                try:
                    return await self._in_pool(pool, texts, lemmas)
                except WorkerDied as exc:
                    # This batch goes to a thread; the next big one starts fresh workers.
                    log.warning("ingest: %s; matching in a thread, starting new workers", exc)
                    self.close()
        return await asyncio.to_thread(analyse, self.watchlist, texts, lemmas)

    async def _in_pool(self, pool: _Pool, texts: list[tuple[str, str | None]], lemmas: bool) -> list[Prepared]:
        # Split across the workers so that one batch uses them all (gather keeps the order).
        n = min(len(pool.workers), max(1, len(texts) // 64))
        size = -(-len(texts) // n)
        calls = [asyncio.ensure_future(asyncio.to_thread(w.analyse, texts[i * size:(i + 1) * size], lemmas))
                 for i, w in enumerate(pool.workers[:n])]
        try:
            parts = await asyncio.gather(*calls)
        except asyncio.CancelledError:
            # Abandoned (shutdown, SIGTERM): a thread blocked on a busy worker would hold up the exit
            # until the worker finished, so stop the workers; the next batch starts new ones.
            self.close()
            raise
        return [_unwire(w) for part in parts for w in part]

    def items(self, channel: m.Channel, posts: Sequence[Post], rule: AlertRule,
              prepared: Sequence[Prepared] | None = None) -> list[BatchItem]:
        """The store's items for ``posts``; matched here, on the calling thread, unless ``prepared``."""
        if prepared is None:
            previews = self.match_link_previews
            prepared = analyse(self.watchlist, [(p.text or "", p.link_preview if previews else None)
                                                for p in posts], self.store.keeps_lemmas)
        if len(prepared) != len(posts):
            raise ValueError(f"{len(prepared)} prepared results for {len(posts)} posts")
        return [BatchItem(p, pr.matches, rule.allows(channel, p), pr.preview_matches, pr.facts, pr.row)
                for p, pr in zip(posts, prepared, strict=True)]

    # ---- storing ---------------------------------------------------------------------------------------

    async def ingest(
        self,
        channel: m.Channel,
        posts: Sequence[Post],
        *,
        rule: AlertRule = AlertRule(),
        cursor: int | None = None,
        seen: int = 0,
        backfill_low: int | None = None,
        prepared: Sequence[Prepared] | None = None,
        arrival: Arrival | None = None,
        advance_cursor: bool = True,
    ) -> BatchResult:
        """Match ``posts`` (unless already ``prepared`` by :meth:`prepare`), then store them with the new
        cursor in one transaction (``arrival``: how they reached us; see ``Store.save_batch``)."""
        if prepared is None:
            prepared = await self.prepare(posts)
        return await self.store.save_batch(
            channel.id, self.items(channel, posts, rule, prepared), cursor=cursor, seen=seen,
            backfill_low=backfill_low, planner=self.planner, arrival=arrival, advance_cursor=advance_cursor,
        )
