"""Archive query speed on a big archive: 1,000,000 posts over 12 months in 20 channels, SQLite and PostgreSQL.

Fills a fresh database (schema by the real migrations; rows bulk-loaded, the SQLite search index built
from the same lemmatiser the store uses), then times through monitor.archive — the code the commands run:

* mentions: one entity's mentions over one month (all of them, newest first);
* search:   a word in any form, ranked, first 20 hits with snippets (and the number of hits);
* stats:    posts per entity per day over the 12 months (every entity, zero-filled series);
* pages:    the web dashboard's pages, as HTTP requests to a running ``tgmonitor web`` (a subprocess
            over the same database): overview, mentions (first page, one entity's month, a page deep in the
            archive by keyset), search, entities, an entity, a channel (first and a deep page), alerts.

Each query runs once cold and then 5 times; the median is reported. Target: < 200 ms a query, < 300 ms a page.

    uv run python benchmarks/archive.py                      # both databases, 1,000,000 posts
    uv run python benchmarks/archive.py --posts 200000 --db sqlite
    TGMONITOR_TEST_PG_URL=postgresql://postgres@127.0.0.1:5432/test uv run python benchmarks/archive.py
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _pg import PG_ADMIN_URL, admin

from monitor import archive, fulltext, migrate
from monitor.archive import Filters
from monitor.db import create_engine

START = datetime(2024, 1, 1, tzinfo=UTC)
DAYS = 366
CHANNELS = 20
ENTITIES = ["Газпром", "Роснефть", "Сбербанк", "Росатом", "Казатомпром", "Лукойл", "Норникель", "Яндекс",
            "Аэрофлот", "Ростех"]
# share of posts naming each entity (Газпром in 4 % of posts ... Ростех in 0.5 %)
ENTITY_SHARE = [0.04, 0.03, 0.03, 0.02, 0.015, 0.015, 0.01, 0.01, 0.005, 0.005]
SENTENCES = [
    "Сегодня в регионе прошло совещание по развитию транспорта",
    "Эксперты ожидают роста цен на продовольствие и топливо",
    "В министерстве рассказали о планах на следующий год",
    "Жители жалуются на ремонт дорог и задержки автобусов",
    "Курс рубля почти не изменился за неделю",
    "Правительство обсудило меры поддержки малого бизнеса",
    "Аналитики снизили прогноз добычи нефти на ближайший квартал",
    "Центральный банк сохранил ключевую ставку без изменений",
    "Экспорт зерна вырос по сравнению с прошлым годом",
    "В столице открылся новый научный центр",
    "Строительство моста через реку завершат к осени",
    "Губернатор подписал указ о праздничных выходных",
    "Компании сообщили о росте выручки во втором полугодии",
    "Инвесторы ждут решения регулятора по дивидендам",
    "На бирже выросли акции металлургических компаний",
    "Синоптики обещают сильные морозы на выходных",
]
RARE = "Производство серной кислоты на комбинате остановили из-за аварии"  # ~0.5 % of posts: the search word


def generate(n: int, seed: int = 7) -> Iterator[tuple[int, int, datetime, str, list[tuple[int, int, int, str]]]]:
    """(channel index, message id, date, text, [(entity index, start, end, surface)]) in date order."""
    rng = random.Random(seed)
    per_channel = [0] * CHANNELS
    step = DAYS * 86400 / n
    cum = [sum(ENTITY_SHARE[: i + 1]) for i in range(len(ENTITY_SHARE))]
    forms = ["{}", "{}а", "{}у", "{}ом", "{}е"]
    for i in range(n):
        ch = rng.randrange(CHANNELS)
        per_channel[ch] += 1
        when = START + timedelta(seconds=i * step)
        parts = rng.sample(SENTENCES, rng.randint(2, 4))
        if rng.random() < 0.005:
            parts.insert(rng.randrange(len(parts) + 1), RARE)
        text = ". ".join(parts) + "."
        found: list[tuple[int, int, int, str]] = []
        r = rng.random()
        for e, c in enumerate(cum):
            if r < c:
                surface = rng.choice(forms).format(ENTITIES[e])
                text = f"{surface} сообщает: {text}"
                found.append((e, 0, len(surface), surface))
                break
        yield ch, per_channel[ch], when, text, found


# The rows bypass the store, so the stats rollup is built the way migration 0005 builds it for old archives.
ROLLUP_SQL = ("INSERT INTO mention_days (entity_id, channel_id, day, posts) "
              "SELECT m.entity_id, p.channel_id, {day}, count(DISTINCT m.post_id) FROM matches m "
              "JOIN posts p ON p.id = m.post_id WHERE m.version = p.version GROUP BY m.entity_id, p.channel_id, {day}")


def _sqlite_dt(d: datetime) -> str:
    return d.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def fill_sqlite(path: Path, n: int) -> None:
    """Bulk-load with the sqlite3 module (one transaction), then build the FTS5 index from the shadow texts."""
    con = sqlite3.connect(path)
    now = _sqlite_dt(datetime.now(UTC))
    con.executemany("INSERT INTO channels (id, tg_id, username, title, source, status, cursor, backfill_done, "
                    "seen_count, polls, created_at) VALUES (?, ?, ?, ?, 'web', 'active', 0, 0, 0, 0, ?)",
                    [(c + 1, 2000 + c, f"channel{c}", f"Канал {c}", now) for c in range(CHANNELS)])
    con.executemany("INSERT INTO entities (id, name, silent, updated_at) VALUES (?, ?, 0, ?)",
                    [(e.lower(), e, now) for e in ENTITIES])
    posts: list[tuple[Any, ...]] = []
    matches: list[tuple[Any, ...]] = []
    pid = 0
    for ch, mid, when, text, found in generate(n):
        pid += 1
        posts.append((pid, ch + 1, mid, _sqlite_dt(when), text, 0, 0, 1, now, fulltext.lemmatize(text)))
        matches += [(pid, ENTITIES[e].lower(), s, t, surf, 1, 0) for e, s, t, surf in found]
        if len(posts) >= 50_000:
            _flush_sqlite(con, posts, matches)
    _flush_sqlite(con, posts, matches)
    con.execute("INSERT INTO posts_fts (posts_fts) VALUES ('rebuild')")
    con.execute(ROLLUP_SQL.format(day="substr(p.date, 1, 10)"))
    con.commit()
    con.close()


def _flush_sqlite(con: sqlite3.Connection, posts: list[tuple[Any, ...]], matches: list[tuple[Any, ...]]) -> None:
    con.executemany("INSERT INTO posts (id, channel_id, message_id, date, text, incomplete, deleted, version, "
                    "stored_at, search_lemmas) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", posts)
    con.executemany('INSERT INTO matches (post_id, entity_id, start, "end", surface, version, in_preview) '
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", matches)
    posts.clear()
    matches.clear()


async def fill_postgres(url: str, n: int) -> None:
    """COPY the rows in; the GIN index is dropped during the load and built afterwards (much faster)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    con = await asyncpg.connect(host=u.host, port=u.port or 5432, user=u.username or "postgres",
                                password=u.password, database=u.database)
    try:
        now = datetime.now(UTC)
        await con.copy_records_to_table("channels", records=[
            (c + 1, 2000 + c, f"channel{c}", f"Канал {c}", "web", "active", 0, False, 0, 0, now)
            for c in range(CHANNELS)], columns=["id", "tg_id", "username", "title", "source", "status", "cursor",
                                               "backfill_done", "seen_count", "polls", "created_at"])
        await con.copy_records_to_table("entities", records=[(e.lower(), e, False, now) for e in ENTITIES],
                                        columns=["id", "name", "silent", "updated_at"])
        await con.execute("DROP INDEX ix_posts_fts_tsv")
        posts: list[tuple[Any, ...]] = []
        matches: list[tuple[Any, ...]] = []
        pid = 0
        for ch, mid, when, text, found in generate(n):
            pid += 1
            posts.append((pid, ch + 1, mid, when, text, False, False, 1, now))
            matches += [(pid, ENTITIES[e].lower(), s, t, surf, 1, False) for e, s, t, surf in found]
            if len(posts) >= 50_000:
                await _flush_pg(con, posts, matches)
        await _flush_pg(con, posts, matches)
        await con.execute("SELECT setval(pg_get_serial_sequence('posts', 'id'), $1)", pid)
        await con.execute(ROLLUP_SQL.format(day="(p.date AT TIME ZONE 'UTC')::date"))
        await con.execute("SET maintenance_work_mem = '256MB'")
        await con.execute("CREATE INDEX ix_posts_fts_tsv ON posts USING gin (search_tsv)")
        # VACUUM as autovacuum would have by now on a live archive: without the visibility map it sets, counts
        # (the dashboard's posts per channel) cannot use index-only scans and read the whole table
        await con.execute("VACUUM ANALYZE")
    finally:
        await con.close()


async def _flush_pg(con: Any, posts: list[tuple[Any, ...]], matches: list[tuple[Any, ...]]) -> None:
    await con.copy_records_to_table("posts", records=posts, columns=[
        "id", "channel_id", "message_id", "date", "text", "incomplete", "deleted", "version", "stored_at"])
    await con.copy_records_to_table("matches", records=matches, columns=[
        "post_id", "entity_id", "start", "end", "surface", "version", "in_preview"])
    posts.clear()
    matches.clear()


async def timed(fn: Callable[[], Awaitable[int]], runs: int = 5) -> tuple[float, float, int]:
    """(cold ms, warm median ms, rows) of one query."""
    t = time.perf_counter()
    rows = await fn()
    cold = (time.perf_counter() - t) * 1000
    warm = []
    for _ in range(runs):
        t = time.perf_counter()
        await fn()
        warm.append((time.perf_counter() - t) * 1000)
    return cold, statistics.median(warm), rows


async def count(it: AsyncIterator[Any]) -> int:
    return sum([1 async for _ in it])


async def measure(url: str, label: str) -> None:
    engine = create_engine(url)
    try:
        month = Filters(entities=["Росатом"], since=datetime(2024, 6, 1, tzinfo=UTC),
                        until=datetime(2024, 7, 1, tzinfo=UTC))
        year = Filters(since=datetime(2024, 1, 1, tzinfo=UTC), until=datetime(2025, 1, 1, tzinfo=UTC))
        hits = await count(archive.iter_search(engine, "кислота"))
        results = {
            "mentions (1 entity, 1 month)": await timed(lambda: count(archive.iter_mentions(
                engine, entities=month.entities, since=month.since, until=month.until))),
            f"search «кислота», top 20 of {hits:,}": await timed(lambda: count(archive.iter_search(
                engine, "кислота", limit=20))),
            'search "серной кислоты" -рубль, top 20': await timed(lambda: count(archive.iter_search(
                engine, '"серной кислоты" -рубль', limit=20))),
            "stats (all entities, 12 months, by day)": await timed(lambda: _stats_rows(engine, year)),
            "stats (same, by week, csv rows too)": await timed(lambda: _stats_rows(engine, year, "week", True)),
        }
        for name, (cold, warm, rows) in results.items():
            flag = "ok" if warm < 200 else "SLOW"
            print(f"  {label:10} {name:42} {warm:8.1f} ms median  ({cold:7.1f} ms cold, {rows:,} rows)  {flag}")
    finally:
        await engine.dispose()


PAGE_TARGET_MS = 300


async def measure_pages(url: str, label: str, work: Path) -> None:
    """Time the dashboard's pages through HTTP against ``tgmonitor web`` running in a subprocess."""
    import os
    import socket
    import subprocess

    import httpx

    from monitor.dashboard.app import encode_cursor

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = work / f"web-{label}.toml"
    entities = "".join(f'[[entities]]\nname = "{e}"\n\n' for e in ENTITIES)
    cfg.write_text(f'[database]\nurl = "{url}"\n\n{entities}', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TGMONITOR_", "TG_"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "--config", str(cfg), "web", "--listen", f"127.0.0.1:{port}", env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deep = encode_cursor((datetime(2024, 7, 1, tzinfo=UTC), 0, 0))  # half a year back
    pages = {
        "overview (channels, outbox, 30-day chart)": "/",
        "mentions, newest page": "/mentions",
        "mentions, 1 entity, 1 month": "/mentions?entity=росатом&since=2024-06-01&until=2024-06-30",
        "mentions, a page 6 months deep (keyset)": f"/mentions?before={deep}",
        "search «кислота», first page": "/search?q=кислота",
        'search "серной кислоты" -рубль': '/search?q="серной кислоты" -рубль',
        "entities (with totals)": "/entities",
        "entity Газпром (chart per channel, forms)": "/entities/газпром",
        "channel, newest posts": "/channels/1",
        "channel, a deep page (keyset)": "/channels/1?before=1000",
        "alerts": "/alerts",
    }
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60, headers={"accept": "text/html"}) as client:
            for _ in range(300):
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.returncode is not None:
                    err = await proc.stderr.read()  # type: ignore[union-attr]
                    raise RuntimeError(f"tgmonitor web exited: {err.decode()[-500:]}")
                await asyncio.sleep(0.1)

            async def get(path: str) -> int:
                r = await client.get(path)
                r.raise_for_status()
                return len(r.content)

            for name, path in pages.items():
                cold, warm, size = await timed(lambda p=path: get(p))
                flag = "ok" if warm < PAGE_TARGET_MS else "SLOW"
                print(f"  {label:10} page: {name:44} {warm:8.1f} ms median  ({cold:7.1f} ms cold, "
                      f"{size / 1000:,.0f} kB)  {flag}")
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


async def _stats_rows(engine: Any, f: Filters, by: str = "day", rows: bool = False) -> int:
    st = await archive.stats(engine, filters=f, by=by, with_rows=rows)  # type: ignore[arg-type]
    return len(st.rows) if rows else len(st.periods) * len(st.entities)


async def run_sqlite(n: int, work: Path) -> None:
    path = work / "archive.db"
    url = f"sqlite+aiosqlite:///{path}"
    engine = create_engine(url)
    await migrate.upgrade(engine)
    await engine.dispose()
    t = time.perf_counter()
    await asyncio.to_thread(fill_sqlite, path, n)
    size = path.stat().st_size / 1e6
    print(f"sqlite: filled {n:,} posts in {time.perf_counter() - t:.0f} s ({size:,.0f} MB)")
    await measure(url, "sqlite")
    await measure_pages(f"sqlite:///{path}", "sqlite", work)


async def run_postgres(n: int) -> None:
    from sqlalchemy.engine import make_url

    name = f"tgm_bench_{uuid.uuid4().hex[:10]}"
    await admin(f'CREATE DATABASE "{name}"')
    url = make_url(PG_ADMIN_URL).set(database=name, drivername="postgresql+asyncpg").render_as_string(
        hide_password=False)
    try:
        engine = create_engine(url)
        await migrate.upgrade(engine)
        await engine.dispose()
        t = time.perf_counter()
        await fill_postgres(url, n)
        print(f"postgresql: filled {n:,} posts in {time.perf_counter() - t:.0f} s")
        await measure(url, "postgresql")
        with tempfile.TemporaryDirectory() as tmp:
            await measure_pages(url, "postgresql", Path(tmp))
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--posts", type=int, default=1_000_000)
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    args = ap.parse_args()
    print(f"archive benchmark: {args.posts:,} posts, {CHANNELS} channels, {len(ENTITIES)} entities, "
          f"{DAYS} days; target < 200 ms per query, < {PAGE_TARGET_MS} ms per dashboard page")
    with tempfile.TemporaryDirectory() as tmp:
        if args.db in ("sqlite", "both"):
            await run_sqlite(args.posts, Path(tmp))
        if args.db in ("postgresql", "both"):
            await run_postgres(args.posts)


if __name__ == "__main__":
    asyncio.run(main())
