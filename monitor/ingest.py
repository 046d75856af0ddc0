"""Posts from any source → matches → one store transaction (with outbox rows when they may alert).

Every source (Telethon, export, web) hands its pages of ``Post`` values to :class:`Ingestor`, so
storage, matching and alerting are shared, never copied.

The CPU work of a page (matching, the repost hash, SQLite's search lemmas) is done before the store's
transaction opens and never on the event loop: a small page in a worker thread, a big one (an import
batch, a 300 KB post) in a worker process, so a post with thousands of mentions stalls neither polling,
delivery nor SIGTERM, and matching the next import batch overlaps storing this one on the other core.
Each worker process unpickles the compiled watchlist once, when it starts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import traceback
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import IO, Any

from monitor import fulltext
from monitor import models as m
from monitor.matching import Match, Watchlist
from monitor.posts import Post
from monitor.store import Arrival, BatchItem, BatchResult, OutboxPlanner, Store, TextFacts, text_hash

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


@dataclass(frozen=True, slots=True)
class Prepared:
    """What one post's text yields before storing: its matches and the facts the store derives."""

    matches: list[Match]
    preview_matches: list[Match] = field(default_factory=list)
    facts: TextFacts | None = None


# One post's analysis as it crosses the process boundary: plain tuples pickle several times faster than
# dataclasses (matches and preview matches as tuples of Match's fields, repost hash, search lemmas).
_Wire = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], str | None, str | None]
_MATCH_FIELDS = tuple(f.name for f in fields(Match))


def _wire(watchlist: Watchlist, text: str, preview: str | None, lemmas: bool) -> _Wire:
    found = watchlist.find(text) if text else []
    in_preview = watchlist.find(preview) if preview else []
    return ([tuple(getattr(mt, f) for f in _MATCH_FIELDS) for mt in found],
            [tuple(getattr(mt, f) for f in _MATCH_FIELDS) for mt in in_preview],
            text_hash(text), fulltext.lemmatize(text) if lemmas else None)


def _unwire(w: _Wire) -> Prepared:
    found, in_preview, hash_, lemmas = w
    return Prepared([Match(*t) for t in found], [Match(*t) for t in in_preview], TextFacts(hash_, lemmas))


def analyse(watchlist: Watchlist, texts: Sequence[tuple[str, str | None]], lemmas: bool) -> list[Prepared]:
    """Match and derive the text facts of (text, link preview or None) pairs; pure CPU work, no I/O."""
    return [_unwire(_wire(watchlist, t, pv, lemmas)) for t, pv in texts]


# ----------------------------------------------------------------------------- worker processes
#
# Not multiprocessing: its "spawn" start re-runs the parent's main script in every worker (a script
# without a ``__main__`` guard then hangs the parent for good), and "fork" would copy the threads this
# process runs (aiosqlite, the export parser) mid-lock. A worker here is ``python -c`` importing this
# module, talking length-prefixed pickles over its stdin/stdout: the watchlist once, then batches. It
# exits when its stdin closes, so it never outlives its parent (not even a SIGKILLed one).

_BOOT = "import sys; sys.path[:0] = {path!r}; from monitor.ingest import _worker_main; _worker_main()"


class WorkerDied(RuntimeError):
    """A worker process exited (killed, out of memory) before answering."""


def _send(fh: IO[bytes], obj: object) -> None:
    data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    fh.write(len(data).to_bytes(8, "little"))
    fh.write(data)
    fh.flush()


def _recv(fh: IO[bytes]) -> Any:
    head = fh.read(8)
    if len(head) < 8:
        raise EOFError
    size = int.from_bytes(head, "little")
    data = fh.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


def _worker_main() -> None:
    """The worker process: load the watchlist (and pymorphy3's dictionaries) once, then analyse batches."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which stops its workers
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print() from any library must not corrupt the protocol on stdout
    inp = sys.stdin.buffer
    try:
        blob, lemmas = _recv(inp)
    except EOFError:
        return
    watchlist: Watchlist = pickle.loads(blob)
    if lemmas:
        fulltext.lemmatize("прогрев словарей")  # load the dictionaries before the first real batch
    _send(out, ("ready", os.getpid()))
    while True:
        try:
            texts, lemmas = _recv(inp)
        except EOFError:
            return
        try:
            reply: tuple[str, object] = ("ok", [_wire(watchlist, t, pv, lemmas) for t, pv in texts])
        except Exception:  # the parent raises it where a thread would have
            reply = ("error", traceback.format_exc())
        _send(out, reply)


class _Worker:
    """One worker process. ``call`` blocks (it runs in a thread); one request at a time."""

    def __init__(self, blob: bytes, lemmas: bool) -> None:
        path = [os.path.abspath(x) if x else os.getcwd() for x in sys.path]
        self.proc = subprocess.Popen([sys.executable, "-c", _BOOT.format(path=path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        self.lock = threading.Lock()
        try:
            self._exchange((blob, lemmas))  # answered once the watchlist and dictionaries are loaded
        except BaseException:
            self.kill()
            raise

    def _exchange(self, msg: object) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with self.lock:
            try:
                _send(self.proc.stdin, msg)
                status, value = _recv(self.proc.stdout)
            except (EOFError, OSError, ValueError) as exc:  # ValueError: its pipe closed by kill()
                raise WorkerDied(f"matching worker process {self.proc.pid} exited "
                                 f"(code {self.proc.poll()})") from exc
        if status == "error":
            raise RuntimeError(f"matching worker process failed:\n{value}")
        return value

    def analyse(self, texts: list[tuple[str, str | None]], lemmas: bool) -> list[_Wire]:
        return self._exchange((texts, lemmas))  # type: ignore[no-any-return]

    def kill(self) -> None:
        """Stop the process now (work in progress is abandoned; Popen never signals a reaped pid)."""
        self.proc.kill()
        for fh in (self.proc.stdin, self.proc.stdout):
            if fh is not None:
                try:
                    fh.close()
                except OSError:
                    pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass


class _Pool:
    """The worker processes of one ingestor (one watchlist); started in a thread, off the event loop."""

    def __init__(self, watchlist: Watchlist, workers: int, lemmas: bool) -> None:
        self.workers: list[_Worker] = []
        self.size = workers
        self.closed = False
        self.next = 0
        blob = pickle.dumps(watchlist, pickle.HIGHEST_PROTOCOL)
        self.starting = asyncio.ensure_future(asyncio.to_thread(self._start, blob, lemmas))

    def _start(self, blob: bytes, lemmas: bool) -> None:
        for _ in range(self.size):
            if self.closed:
                return
            self.workers.append(_Worker(blob, lemmas))
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
        """Match ``posts`` and derive their text facts, off the event loop (see the module docstring)."""
        if not posts:
            return []
        previews = self.match_link_previews
        texts = [(p.text or "", p.link_preview if previews and p.link_preview else None) for p in posts]
        lemmas = self.store.keeps_lemmas
        big = len(texts) >= self.pool_min_posts or sum(len(t) + len(v or "") for t, v in texts) >= self.pool_min_chars
        if big and self.workers > 0:
            self.start_workers()
            pool = self._pool
            if pool is not None and pool.starting.done() and not pool.ready:
                self.close()  # the workers could not start (logged below); try again with the next batch
                if not pool.starting.cancelled() and (exc := pool.starting.exception()) is not None:
                    log.warning("ingest: matching worker processes did not start (%s); matching in a thread", exc)
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
        return [BatchItem(p, pr.matches, rule.allows(channel, p), pr.preview_matches, pr.facts)
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
