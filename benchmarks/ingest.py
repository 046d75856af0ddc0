"""Import throughput: a generated 100,000-post Telegram Desktop export into SQLite and PostgreSQL.

Matching is on (a generated 1,000-entity watchlist; about one post in five names an entity). Each database
is measured in its own child process so that its peak memory (ru_maxrss) is its own. Prints posts/s and
peak memory per database. Targets on the reference machine: >= 5,000 posts/s into SQLite, >= 3,000 posts/s
into PostgreSQL, peak memory < 300 MB whatever the file size (the parser streams).

    uv run python benchmarks/ingest.py                 # both databases, 100,000 posts
    uv run python benchmarks/ingest.py --posts 20000 --db sqlite
    TGMONITOR_TEST_PG_URL=postgresql://postgres@127.0.0.1:5432/test uv run python benchmarks/ingest.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
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


async def _child(db_url: str, export: Path, watchlist: Path, data_dir: Path) -> dict[str, float]:
    from monitor.config import DatabaseSettings, Settings, load_watchlist, to_async_url
    from monitor.jobs.importer import ImportJob
    from monitor.runtime import open_runtime

    settings = Settings(path=None, data_dir=data_dir, database=DatabaseSettings(url=to_async_url(db_url)),
                        entities=tuple(load_watchlist(watchlist)))
    t_open = time.perf_counter()
    async with open_runtime(settings) as rt:
        t0 = time.perf_counter()
        report = await ImportJob(rt, export).run()
        elapsed = time.perf_counter() - t0
        stored = await rt.store.count_posts()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"posts": report.posts, "stored": stored, "matches": sum(c.matches for c in report.chats),
            "seconds": elapsed, "setup_seconds": t0 - t_open, "posts_per_s": report.posts / elapsed,
            "peak_mb": peak_mb}


def run_child(kind: str, db_url: str, export: Path, watchlist: Path, data_dir: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", db_url, str(export), str(watchlist), str(data_dir)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--posts", type=int, default=100_000)
    ap.add_argument("--entities", type=int, default=1000)
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        db_url, export, watchlist, data_dir = args.child
        print(json.dumps(asyncio.run(_child(db_url, Path(export), Path(watchlist), Path(data_dir)))))
        return

    rng = random.Random(20250520)
    with tempfile.TemporaryDirectory(prefix="tgm-bench-") as tmp:
        work = Path(tmp)
        names = entity_names(args.entities, rng)
        write_watchlist(work / "watchlist.toml", names)
        export = work / "result.json"
        write_export(export, args.posts, names, rng)
        size_mb = export.stat().st_size / 2**20
        print(f"export: {args.posts:,} posts, {size_mb:.1f} MB; watchlist: {len(names):,} entities")
        results: dict[str, dict[str, float]] = {}
        if args.db in ("sqlite", "both"):
            results["sqlite"] = run_child("sqlite", f"sqlite:///{work / 'bench.db'}", export, work / "watchlist.toml",
                                          work / "data-sqlite")
        if args.db in ("postgresql", "both"):
            from sqlalchemy.engine import make_url

            name = f"tgm_bench_{uuid.uuid4().hex[:10]}"
            asyncio.run(admin(f'CREATE DATABASE "{name}"'))
            try:
                url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
                results["postgresql"] = run_child("postgresql", url, export, work / "watchlist.toml",
                                                  work / "data-pg")
            finally:
                asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        targets = {"sqlite": 5000, "postgresql": 3000}
        for kind, r in results.items():
            ok = r["posts_per_s"] >= targets[kind] and r["peak_mb"] < 300
            print(f"{kind:10}  {r['posts']:>7,.0f} posts ({r['stored']:,.0f} stored, {r['matches']:,.0f} matches) "
                  f"in {r['seconds']:6.1f} s = {r['posts_per_s']:>7,.0f} posts/s   peak memory {r['peak_mb']:5.0f} MB"
                  f"   (setup {r['setup_seconds']:.1f} s; target >= {targets[kind]:,}/s, < 300 MB: "
                  f"{'met' if ok else 'MISSED'})")


if __name__ == "__main__":
    main()
