"""Outbox cost and delivery of a backlog, on a fresh SQLite file with a local json:// webhook.

* plan:    storing N alertable posts (each naming 2 entities) in pages of 100, with and without the
           outbox planner (two destinations): the planner's share of the ingest time;
* deliver: one ``deliver_due`` pass over the resulting backlog at the default 20/min limit — how long,
           how many HTTP messages reached the webhook, and whether every alert id arrived exactly once.

    uv run python benchmarks/alerts.py
    uv run python benchmarks/alerts.py --posts 5000
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import re
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from monitor import models as m
from monitor.alerts.deliver import deliver_due
from monitor.config import load_settings
from monitor.db import sessionmaker
from monitor.ingest import AlertRule
from monitor.posts import Post
from monitor.runtime import open_runtime

ENTITIES = ["Росатом", "УКТМК", "Газпром", "Казатомпром", "Сбербанк"]


def start_sink() -> tuple[http.server.ThreadingHTTPServer, list[str]]:
    bodies: list[str] = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, bodies


async def ingest_all(cfg: Path, n: int, with_alerts: bool) -> tuple[float, Any]:
    settings = load_settings(cfg)
    async with open_runtime(settings) as rt:
        ch = await rt.store.upsert_channel(username="bench_chan", tg_id=42)
        t0 = datetime(2025, 1, 1, tzinfo=UTC)
        posts = [Post(message_id=i, date=t0 + timedelta(minutes=i),
                      text=f"Новость {i}: {ENTITIES[i % 5]} и {ENTITIES[(i + 2) % 5]} обсуждают сделку {i * 13}.")
                 for i in range(1, n + 1)]
        if not with_alerts:
            rt.ingestor.planner = None
        start = time.perf_counter()
        for k in range(0, n, 100):
            await rt.ingestor.ingest(ch, posts[k:k + 100], rule=AlertRule(force=True))
        return time.perf_counter() - start, settings


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=2000)
    args = ap.parse_args()
    srv, bodies = start_sink()
    url = f"json://127.0.0.1:{srv.server_address[1]}/hook"
    with tempfile.TemporaryDirectory() as d:
        watch = "".join(f'[[entities]]\nname = "{e}"\n\n' for e in ENTITIES)
        for name, with_alerts in (("plain", False), ("outbox", True)):
            cfg = Path(d) / f"{name}.toml"
            cfg.write_text(f'[database]\nurl = "sqlite:///{d}/{name}.db"\n\n{watch}'
                           f'[[alerts]]\nname = "a"\nurl = "{url}"\n\n[[alerts]]\nname = "b"\nurl = "console://"\n'
                           f'entities = ["Газпром"]\n', encoding="utf-8")
            secs, settings = await ingest_all(cfg, args.posts, with_alerts)
            print(f"ingest {args.posts} posts ({name:6}): {secs:6.2f} s  {args.posts / secs:8.0f} posts/s")
        settings = settings.__class__(**{**{f: getattr(settings, f) for f in settings.__dataclass_fields__},
                                         "alerts": settings.alerts[:1]})
        async with open_runtime(settings) as rt:
            async with sessionmaker(rt.engine)() as s:
                codes = set((await s.execute(select(m.Alert.code).where(m.Alert.destination == "a"))).scalars())
            start = time.perf_counter()
            delivered = await deliver_due(rt)
            secs = time.perf_counter() - start
    got = [c for b in bodies for c in re.findall(r"#([0-9a-f]{6})\b", json.loads(b)["message"])]
    print(f"deliver {len(codes)} alerts at 20/min: {secs:6.2f} s, {len(bodies)} messages, "
          f"{delivered} marked sent, ids received {len(set(got))}/{len(codes)}, duplicates {len(got) - len(set(got))}")
    srv.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
