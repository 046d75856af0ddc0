"""Import throughput: a generated 100,000-post Telegram Desktop export into SQLite and PostgreSQL.

Matching is on (a generated 1,000-entity watchlist; about one post in five names an entity), and so is
everything the store keeps in step: SQLite's search index, the stats rollup, the cursor. Each database is
measured in its own child process so that its peak memory (ru_maxrss) is its own; the matching worker
processes' peak is printed beside it. Targets: >= 10,000 posts/s into SQLite, >= 8,000 posts/s into
PostgreSQL, peak memory < 300 MB whatever the file size (the parser streams).

Beside our figure each database gets its *bare-insert ceiling*, measured in the same run on a fresh
database of the same schema: exactly the ``posts`` rows the store writes (repost hash and, on SQLite, the
search lemmas included), computed before the clock starts and written straight through the driver
(sqlite3 ``executemany`` / asyncpg ``COPY`` into ``posts``), 2,000 a transaction: no parsing, matching,
lemmatising, matches, search index or rollup. "of it" is our median posts/s over that one.

``--pages 100`` also stores the first 20,000 posts through ``Ingestor.ingest`` one page of 100 at a time,
as ``tgmonitor backfill`` (Telethon pages are 100 messages) and the service's polls do, to show the
speed-up reaches them (that path is small pages: a thread matches them, no worker processes).

    uv run python benchmarks/ingest.py                 # both databases, 100,000 posts
    uv run python benchmarks/ingest.py --posts 20000 --db sqlite --repeat 3
    TGMONITOR_TEST_PG_URL=postgresql://postgres@127.0.0.1:5432/test uv run python benchmarks/ingest.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from _pg import PG_ADMIN_URL, admin

SYLLABLES = ["ра", "то", "ком", "лин", "вест", "гор", "сар", "мет", "нор", "тех", "дар", "вол", "кас", "рен",
             "бор", "зел", "мир", "трой", "стан", "лек", "пром", "нефт", "газ", "сиб", "ур", "дон", "кар", "тал"]
KINDS = ["", "", "", "банк ", "компания ", "холдинг ", "завод "]
FILLER = ("Сегодня в регионе прошло совещание по развитию транспорта. Эксперты ожидают роста цен на "
          "продовольствие и топливо. В министерстве рассказали о планах на следующий год. Жители жалуются "
          "на ремонт дорог и задержки автобусов. Курс рубля почти не изменился за неделю.").split(". ")
FORMS = ["{}", "{}а", "{}у", "{}ом", "{}е"]  # crude case endings for generated text; the matcher inflects


def entity_names(n: int, rng: random.Random) -> list[str]:
    names: set[str] = set()
    while len(names) < n:
        stem = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3)))
        names.add(stem.capitalize())
    return sorted(names)


def write_watchlist(path: Path, names: list[str]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i, name in enumerate(names):
            f.write(f'[[entities]]\nname = "{name}"\n')
            if i % 10 == 0:
                f.write(f'aliases = ["{KINDS[3 + i % 4].strip()} {name}"]\n')
            f.write("\n")


def write_export(path: Path, posts: int, names: list[str], rng: random.Random) -> None:
    """A single-chat export in tdesktop's shape (streamed out, never held in memory)."""
    t0 = 1_700_000_000
    with path.open("w", encoding="utf-8") as f:
        f.write('{\n "name": "Бенчмарк", "type": "public_channel", "id": 1888000001,\n "messages": [\n')
        f.write(' {"id": 1, "type": "service", "date": "2023-11-14T22:13:20", "date_unixtime": "1699999999", '
                '"actor": "Бенчмарк", "action": "create_channel", "title": "Бенчмарк", "text": "", '
                '"text_entities": []}')
        for i in range(posts):
            mid = i + 2
            sentences = rng.sample(FILLER, 3)
            if rng.random() < 0.2:
                name = rng.choice(names)
                sentences.insert(rng.randint(0, 3), f"{rng.choice(FORMS).format(name)} объявил о новых планах")
            text = ". ".join(sentences) + "."
            msg: dict[str, object] = {"id": mid, "type": "message", "date": "2023-11-15T00:00:00",
                                      "date_unixtime": str(t0 + 60 * i), "from": "Бенчмарк",
                                      "from_id": "channel1888000001"}
            if i % 2:
                msg["text"] = [{"type": "bold", "text": sentences[0]}, text[len(sentences[0]):]]
                msg["text_entities"] = [{"type": "bold", "text": sentences[0]},
                                        {"type": "plain", "text": text[len(sentences[0]):]}]
            else:
                msg["text"] = text
                msg["text_entities"] = [{"type": "plain", "text": text}]
            if i % 97 == 0:
                msg["edited"] = "2023-11-15T00:10:00"
                msg["edited_unixtime"] = str(t0 + 60 * i + 600)
            f.write(",\n " + json.dumps(msg, ensure_ascii=False))
        f.write("\n ]\n}\n")


def _settings(db_url: str, watchlist: Path, data_dir: Path):  # type: ignore[no-untyped-def]
    from monitor.config import DatabaseSettings, Settings, load_watchlist, to_async_url

    return Settings(path=None, data_dir=data_dir, database=DatabaseSettings(url=to_async_url(db_url)),
                    entities=tuple(load_watchlist(watchlist)))


async def _child(db_url: str, export: Path, watchlist: Path, data_dir: Path) -> dict[str, float]:
    from monitor.jobs.importer import ImportJob
    from monitor.runtime import open_runtime

    settings = _settings(db_url, watchlist, data_dir)
    t_open = time.perf_counter()
    async with open_runtime(settings) as rt:
        t0 = time.perf_counter()
        report = await ImportJob(rt, export).run()
        elapsed = time.perf_counter() - t0
        workers = rt.ingestor.workers
        rt.ingestor.close()  # reaped, so that RUSAGE_CHILDREN holds the workers' peak
        stored = await rt.store.count_posts()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"posts": report.posts, "stored": stored, "matches": sum(c.matches for c in report.chats),
            "seconds": elapsed, "setup_seconds": t0 - t_open, "posts_per_s": report.posts / elapsed,
            "peak_mb": peak_mb, "worker_mb": worker_mb, "workers": workers}


async def _child_pages(db_url: str, export: Path, watchlist: Path, data_dir: Path, page: int,
                       limit: int = 20_000) -> dict[str, float]:
    """The backfill/poll path: pages of ``page`` posts through Ingestor.ingest, each with its cursor."""
    from monitor.ingest import AlertRule
    from monitor.runtime import open_runtime
    from monitor.sources.export import read_export

    with export.open("rb") as fh:
        posts = [it.post for it in read_export(fh) if it.post is not None][:limit]
    async with open_runtime(_settings(db_url, watchlist, data_dir)) as rt:
        ch = await rt.store.upsert_channel(username="bench_pages", source="telethon")
        t0 = time.perf_counter()
        for i in range(0, len(posts), page):
            chunk = posts[i:i + page]
            await rt.ingestor.ingest(ch, chunk, rule=AlertRule(force=False), cursor=chunk[-1].message_id,
                                     seen=len(chunk))
        elapsed = time.perf_counter() - t0
    return {"posts": len(posts), "seconds": elapsed, "posts_per_s": len(posts) / elapsed}


async def _child_bare(db_url: str, export: Path, watchlist: Path, data_dir: Path) -> dict[str, float]:
    """The bare-insert ceiling (see the module docstring); only the database calls are timed."""
    from datetime import UTC, datetime

    from sqlalchemy.engine import make_url

    from monitor import migrate
    from monitor import models as m
    from monitor.db import bind_rows, create_engine
    from monitor.fulltext import lemmatize, text_hash
    from monitor.sources.export import read_export
    from monitor.store import POST_BATCH_COLUMNS, POST_OWN_COLUMNS, _post_own

    url = to_url(db_url)
    engine = create_engine(url)
    await migrate.upgrade(engine)
    dialect = engine.dialect
    await engine.dispose()
    sqlite = url.startswith("sqlite")
    cols = [*POST_BATCH_COLUMNS, *POST_OWN_COLUMNS]
    now = datetime.now(UTC)

    def rows(fh):  # type: ignore[no-untyped-def]
        """Batches of exactly the rows the store writes (its hash and search lemmas included), converted
        for the driver as the store converts them; made before the clock starts."""
        batch = []
        for it in read_export(fh):
            p = it.post
            if p is None:
                continue
            batch.append((1, now, "import", now, False,
                          *_post_own(p, text_hash(p.text), lemmatize(p.text) if sqlite else None)))
            if len(batch) == 2000:
                yield bind_rows(dialect, m.Post.__table__, cols, batch)
                batch = []
        if batch:
            yield bind_rows(dialect, m.Post.__table__, cols, batch)

    spent = 0.0
    n = 0
    channel = ("INSERT INTO channels (id, username, source, status, cursor, seen_count, polls, backfill_done, "
               "created_at) VALUES (1, 'bare', 'telethon', 'active', 0, 0, 0, false, '2020-01-01')")
    with export.open("rb") as fh:
        if sqlite:
            import sqlite3

            con = sqlite3.connect(make_url(url).database, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute(channel)
            sql = f"INSERT INTO posts ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            for batch in rows(fh):
                t = time.perf_counter()
                con.execute("BEGIN")
                con.executemany(sql, batch)
                con.execute("COMMIT")
                spent += time.perf_counter() - t
                n += len(batch)
            con.close()
        else:
            import asyncpg

            u = make_url(url)
            con = await asyncpg.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password,
                                        database=u.database)
            await con.execute(channel)
            for batch in rows(fh):
                t = time.perf_counter()
                async with con.transaction():
                    await con.copy_records_to_table("posts", records=batch, columns=cols)
                spent += time.perf_counter() - t
                n += len(batch)
            await con.close()
    return {"posts": n, "seconds": spent, "posts_per_s": n / spent}


def to_url(db_url: str) -> str:
    from monitor.config import to_async_url

    return to_async_url(db_url)


CHILDREN = {"import": _child, "bare": _child_bare}


def run_child(kind: str, mode: str, db_url: str, export: Path, watchlist: Path, data_dir: Path,
              *extra: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", mode, db_url, str(export), str(watchlist),
                          str(data_dir), *extra], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{kind} {mode} run failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--posts", type=int, default=100_000)
    ap.add_argument("--entities", type=int, default=1000)
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--repeat", type=int, default=1, help="runs per database (the machine may be shared): "
                                                           "best and median are printed")
    ap.add_argument("--pages", type=int, default=0, metavar="N",
                    help="also store 20,000 posts in pages of N through Ingestor.ingest (backfill/poll path)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, db_url, export, watchlist, data_dir, *extra = args.child
        if mode == "pages":
            coro = _child_pages(db_url, Path(export), Path(watchlist), Path(data_dir), int(extra[0]))
        else:
            coro = CHILDREN[mode](db_url, Path(export), Path(watchlist), Path(data_dir))
        print(json.dumps(asyncio.run(coro)))
        return

    rng = random.Random(20250520)
    with tempfile.TemporaryDirectory(prefix="tgm-bench-") as tmp:
        work = Path(tmp)
        names = entity_names(args.entities, rng)
        write_watchlist(work / "watchlist.toml", names)
        export = work / "result.json"
        write_export(export, args.posts, names, rng)
        size_mb = export.stat().st_size / 2**20
        print(f"export: {args.posts:,} posts, {size_mb:.1f} MB; watchlist: {len(names):,} entities; "
              f"{os.cpu_count()} cores")
        targets = {"sqlite": 10_000, "postgresql": 8_000}
        kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
        for kind in kinds:
            runs: list[dict[str, float]] = []
            bare: list[dict[str, float]] = []
            pages: list[dict[str, float]] = []
            for i in range(args.repeat):
                for mode, out in (("import", runs), ("bare", bare)) + ((("pages", pages),) if args.pages else ()):
                    with scratch_db(kind, work, f"{mode}{i}") as url:
                        extra = (str(args.pages),) if mode == "pages" else ()
                        out.append(run_child(kind, mode, url, export, work / "watchlist.toml",
                                             work / f"data-{kind}-{mode}{i}", *extra))
            best = max(runs, key=lambda r: r["posts_per_s"])
            med = statistics.median(r["posts_per_s"] for r in runs)
            ceiling = statistics.median(r["posts_per_s"] for r in bare)
            peak = max(r["peak_mb"] for r in runs)
            worker = max(r["worker_mb"] for r in runs)
            ok = med >= targets[kind] and peak < 300
            r = best
            print(f"{kind:10}  {r['posts']:>7,.0f} posts ({r['stored']:,.0f} stored, {r['matches']:,.0f} matches) "
                  f"in {r['seconds']:6.1f} s = {r['posts_per_s']:>7,.0f} posts/s"
                  + (f" (best of {len(runs)}; median {med:,.0f})" if len(runs) > 1 else "")
                  + f"   peak memory {peak:3.0f} MB (+ {r['workers']:.0f} matching worker(s), {worker:.0f} MB each)"
                  f"   (setup {r['setup_seconds']:.1f} s)")
            print(f"{'':10}  bare-insert ceiling {ceiling:>7,.0f} posts/s; ours is {med / ceiling:.0%} of it   "
                  f"target >= {targets[kind]:,}/s, < 300 MB: {'met' if ok else 'MISSED'}")
            if pages:
                pm = statistics.median(p["posts_per_s"] for p in pages)
                print(f"{'':10}  pages of {args.pages} through Ingestor.ingest (backfill/poll path): "
                      f"{pm:,.0f} posts/s (median of {len(pages)}, {pages[0]['posts']:,.0f} posts)")
        print("(figures from a machine shared with other work vary from run to run; use --repeat)")


@contextlib.contextmanager
def scratch_db(kind: str, work: Path, tag: str) -> Iterator[str]:
    """A fresh database for one measured run: a new SQLite file, or a new PostgreSQL database (dropped)."""
    if kind == "sqlite":
        yield f"sqlite:///{work / f'bench-{tag}.db'}"
        for suffix in ("", "-wal", "-shm"):
            (work / f"bench-{tag}.db{suffix}").unlink(missing_ok=True)
        return
    from sqlalchemy.engine import make_url

    name = f"tgm_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
