"""The ingest path on both databases: bulk writes store exactly what the ORM would, concurrent writers of
one channel never collide, matching runs off the event loop (threads, worker processes) and a dead worker
costs nothing but a warning."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select, text

from monitor import models as m
from monitor.config import to_async_url
from monitor.db import create_engine
from monitor.fulltext import lemmatize, text_hash
from monitor.ingest import AlertRule, Ingestor, analyse
from monitor.matching import Match, Watchlist
from monitor.posts import ForwardOrigin, Post
from monitor.store import Store, _post_values

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

# Columns whose values the two ways of writing may legitimately differ in (row ids, the owning channel).
_SKIP = {"id", "channel_id"}


def varied_posts() -> list[Post]:
    """Posts exercising every column type: dates, JSON lists and dicts, booleans, NULLs, long text."""
    return [
        Post(message_id=1, date=T0, text="Росатом строит АЭС в Казахстане, сообщил источник в отрасли"),
        Post(message_id=2, date=T0 + timedelta(minutes=1), text="", raw={"media_type": "photo", "n": [1, 2]}),
        Post(message_id=3, date=T0 + timedelta(minutes=2), text="Фото", album_id=77, member_ids=(3, 4, 5),
             edit_date=T0 + timedelta(hours=3, microseconds=123456), views=1500, forwards=7,
             forward=ForwardOrigin(channel_id=1001, message_id=9, name="Источник", username="source_ch")),
        Post(message_id=6, date=datetime(2025, 3, 1, 12, 0, tzinfo=UTC).astimezone(
            __import__("zoneinfo").ZoneInfo("Asia/Almaty")), text="Ёлки «Росатома» и\nновая строка " * 40,
             link_preview="Росатом: превью ссылки", incomplete=True),
        Post(message_id=8, date=T0 + timedelta(days=400), text="deleted", deleted=True),
    ]


async def raw_rows(engine, channel_id: int) -> list[tuple[object, ...]]:
    """Every stored column of a channel's posts as the driver returns it (no type processing)."""
    async with engine.connect() as conn:
        res = await conn.execute(text("SELECT * FROM posts WHERE channel_id = :c ORDER BY message_id"),
                                 {"c": channel_id})
        keep = [i for i, k in enumerate(res.keys()) if k not in _SKIP and k != "search_tsv"]
        return [tuple(r[i] for i in keep) for r in res.all()]


async def test_bulk_rows_equal_the_orm_insert(runtime) -> None:
    """The driver path (executemany / COPY) writes byte-identical rows to SQLAlchemy's own insert."""
    rt = runtime
    bulk = await rt.store.upsert_channel(username="bulk_ch", source="web")
    ref = await rt.store.upsert_channel(username="ref_ch", source="web")
    posts = varied_posts()
    res = await rt.ingestor.ingest(bulk, posts, rule=AlertRule(force=False))
    assert res.new == len(posts)
    async with rt.store.sessions() as s:
        stored_at, seen_at = (await s.execute(select(m.Post.stored_at, m.Post.seen_at)
                                              .where(m.Post.channel_id == bulk.id).limit(1))).one()
    lemmas = rt.store.keeps_lemmas
    async with rt.store.sessions.begin() as s:
        for p in posts:
            values = _post_values(ref.id, p, text_hash(p.text), stored_at, lemmatize(p.text) if lemmas else None)
            values.update(arrival=None, seen_at=seen_at, push_missed=False)
            await s.execute(insert(m.Post.__table__).values(**values))
    got, want = await raw_rows(rt.engine, bulk.id), await raw_rows(rt.engine, ref.id)
    assert got == want
    # and the ORM reads them back as it wrote them
    async with rt.store.sessions() as s:
        back = (await s.execute(select(m.Post).where(m.Post.channel_id == bulk.id).order_by(m.Post.message_id)))
        rows = list(back.scalars())
    assert rows[2].member_ids == [3, 4, 5] and rows[1].raw == {"media_type": "photo", "n": [1, 2]}
    assert rows[0].raw is None and rows[2].edit_date == T0 + timedelta(hours=3, microseconds=123456)
    assert rows[3].date == datetime(2025, 3, 1, 12, 0, tzinfo=UTC) and rows[3].incomplete and rows[4].deleted


async def test_matches_index_and_rollup_written_in_bulk(runtime) -> None:
    rt = runtime
    ch = await rt.store.upsert_channel(username="bulk_matches", source="web")
    posts = [Post(message_id=i, date=T0 + timedelta(hours=i), text=f"Новость {i}: Росатом и снова Росатома")
             for i in range(1, 301)]
    res = await rt.ingestor.ingest(ch, posts, cursor=305)
    assert (res.new, res.matches) == (300, 600)
    async with rt.store.sessions() as s:
        n_matches = (await s.execute(select(func.count()).select_from(m.Match))).scalar_one()
        days = dict((await s.execute(select(m.MentionDay.day, m.MentionDay.posts))).all())
        cursor = (await s.execute(select(m.Channel.cursor).where(m.Channel.id == ch.id))).scalar_one()
    assert n_matches == 600 and sum(days.values()) == 300 and cursor == 305
    if rt.store.keeps_lemmas:  # SQLite: the FTS5 index finds an inflected form
        async with rt.engine.connect() as conn:
            hits = (await conn.execute(text("SELECT count(*) FROM posts_fts WHERE posts_fts MATCH 'росатом'"))).scalar()
        assert hits == 300
    # the same batch again changes nothing
    again = await rt.ingestor.ingest(ch, posts, cursor=305)
    assert (again.new, again.unchanged, again.matches) == (0, 300, 0)


async def test_two_writers_of_one_channel_do_not_collide(runtime, db_url: str) -> None:
    """Two processes storing the same page at once (an import beside the service): one stores it, the
    other finds it stored. The batch's first statement takes the write lock, so neither fails."""
    rt = runtime
    ch = await rt.store.upsert_channel(username="race_ch", source="web")
    other_engine = create_engine(to_async_url(db_url))  # a second process's engine on the same database
    try:
        other = Ingestor(Store(other_engine), rt.watchlist, workers=0)
        posts = [Post(message_id=i, date=T0 + timedelta(minutes=i), text=f"Пост {i} про Росатом")
                 for i in range(1, 201)]
        a, b = await asyncio.gather(rt.ingestor.ingest(ch, posts, seen=200), other.ingest(ch, posts, seen=200))
    finally:
        await other_engine.dispose()
    assert sorted([a.new, b.new]) == [0, 200] and a.matches + b.matches == 200
    async with rt.store.sessions() as s:
        n = (await s.execute(select(func.count()).select_from(m.Post))).scalar_one()
        seen = (await s.execute(select(m.Channel.seen_count).where(m.Channel.id == ch.id))).scalar_one()
    assert n == 200 and seen == 400


def corpus(n: int) -> list[Post]:
    words = "Сегодня в регионе прошло совещание Росатома по развитию транспорта и атомной энергетики".split()
    return [Post(message_id=i, date=T0 + timedelta(minutes=i),
                 text=" ".join(words[(i + k) % len(words)] for k in range(12 + i % 7)),
                 link_preview="Росатом в превью" if i % 5 == 0 else None)
            for i in range(1, n + 1)]


async def test_worker_processes_match_like_the_thread_and_survive_a_dead_worker(
        runtime, caplog: pytest.LogCaptureFixture) -> None:
    rt = runtime
    ing = Ingestor(rt.store, rt.watchlist, workers=2, match_link_previews=True)
    ing.pool_min_posts = 1  # every page goes to the worker processes
    try:
        ing.start_workers()
        assert ing._pool is not None
        await ing._pool.starting
        pids = [w.pid for w in ing._pool.workers]
        assert len(pids) == 2 and os.getpid() not in pids
        posts = corpus(500)
        prepared = await ing.prepare(posts)
        lemmas = rt.store.keeps_lemmas
        texts = [(p.text, p.link_preview) for p in posts]
        # the same answer as in-process (and the rows for the driver built from it)
        assert [(p.matches, p.preview_matches, p.facts) for p in prepared] == [
            (p.matches, p.preview_matches, p.facts) for p in analyse(rt.watchlist, texts, lemmas)]
        assert all(p.row is not None for p in prepared)
        assert sum(len(p.matches) + len(p.preview_matches) for p in prepared) > 100
        ch = await rt.store.upsert_channel(username="workers_ch", source="web")
        res = await ing.ingest(ch, posts[:250], prepared=prepared[:250])
        assert res.new == 250

        # A worker killed from outside (OOM killer, an operator): the page is matched in a thread instead
        # and the next big page starts fresh workers.
        os.kill(pids[0], signal.SIGKILL)
        with caplog.at_level(logging.WARNING, logger="monitor.ingest"):
            res2 = await ing.ingest(ch, posts[250:])
        assert res2.new == 250 and res2.matches == sum(len(p.matches) + len(p.preview_matches)
                                                       for p in prepared[250:])
        assert "worker process" in caplog.text and "exited" in caplog.text
        assert ing._pool is None  # the survivor was stopped too
        ing.start_workers()
        await ing._pool.starting  # type: ignore[union-attr]
        assert not set(w.pid for w in ing._pool.workers) & set(pids)  # type: ignore[union-attr]
        assert [p.matches for p in await ing.prepare(posts[:10])] == [p.matches for p in prepared[:10]]
        new_pids = [w.pid for w in ing._pool.workers]  # type: ignore[union-attr]
    finally:
        ing.close()
    for pid in new_pids:
        assert not _alive(pid)


async def test_workers_that_cannot_start_leave_matching_to_threads(
        runtime, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    rt = runtime
    ing = Ingestor(rt.store, rt.watchlist, workers=1)
    ing.pool_min_posts = 1
    monkeypatch.setattr("sys.executable", "/nonexistent/python3")  # what a worker would be started with
    ch = await rt.store.upsert_channel(username="no_workers", source="web")
    posts = corpus(40)
    with caplog.at_level(logging.WARNING, logger="monitor.ingest"):
        ing.start_workers()
        assert ing._pool is not None
        done, _pending = await asyncio.wait([ing._pool.starting], timeout=30)  # (its failure is the case)
        assert done, "the worker pool's start neither ended nor failed within 30 s"
        res = await ing.ingest(ch, posts[:20])
        res2 = await ing.ingest(ch, posts[20:])
    assert (res.new, res2.new) == (20, 20) and res.matches + res2.matches > 0
    assert caplog.text.count("did not start") == 1 and ing.workers == 0 and ing._pool is None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return not any(line.startswith("State:") and "Z" in line for line in fh)
    except FileNotFoundError:
        return False


class SpinningWatchlist:
    """A real watchlist whose ``find`` also burns a second of CPU on a long text, as the old quadratic
    matcher did on a post with thousands of mentions: on the event loop it would stall it that long.
    Pickled by reference, so worker processes get it too."""

    calls_here = 0  # calls made in this process (a worker process counts its own)

    def __init__(self, inner: Watchlist) -> None:
        self.inner = inner

    def find(self, text: str) -> list[Match]:
        SpinningWatchlist.calls_here += 1
        if len(text) > 100_000:
            end = time.perf_counter() + 1.0
            while time.perf_counter() < end:  # pure-Python CPU work, holding the GIL as matching does
                pass
        return self.inner.find(text)


@pytest.mark.parametrize("workers", [0, 1], ids=["thread", "process"])
async def test_a_huge_post_never_stalls_the_event_loop(runtime, workers: int) -> None:
    """Issue 17 item 1: a 300 KB post with thousands of mentions is matched off the loop and before the
    write transaction; a task ticking every 50 ms meanwhile never waits half a second."""
    rt = runtime
    SpinningWatchlist.calls_here = 0
    ing = Ingestor(rt.store, SpinningWatchlist(rt.watchlist), workers=workers)  # type: ignore[arg-type]
    if workers:
        ing.start_workers()
        await ing._pool.starting  # type: ignore[union-attr]  # (until then big pages go to a thread)
    ch = await rt.store.upsert_channel(username="huge_ch", source="web")
    filler = "Сегодня в регионе прошло совещание по развитию транспорта и атомной энергетики. "
    body = (filler + "Росатом объявил о планах. ") * 2900
    assert 300_000 < len(body) < 320_000
    huge = Post(message_id=1, date=T0, text=body)
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        last = loop.time()
        while not done.is_set():
            await asyncio.sleep(0.05)  # the scenario: a 50 ms tick whose lateness measures the loop's stalls
            now = loop.time()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    started = loop.time()
    try:
        res = await ing.ingest(ch, [huge, Post(message_id=2, date=T0, text="Росатом")])
    finally:
        done.set()
        await ticker
        ing.close()
    assert loop.time() - started >= 1.0  # the spinning find ran (so the loop had something to survive)
    # with workers, this process never matched at all: the worker process did
    assert SpinningWatchlist.calls_here == (0 if workers else 2)
    assert res.new == 2 and res.matches > 1000
    assert max(gaps) < 0.5, f"the event loop stalled for {max(gaps):.2f} s"
