"""``tgmonitor demo``: the whole pipeline on a bundled, made-up channel — offline, no config, no account.

The package ships ``sample_export.json`` (a Telegram Desktop export of «Вести Приречья», a made-up
Russian-language regional news channel: about 60 posts naming organisations, people and places in many
grammatical forms, with edits, forwards, an album, a poll and service messages) and ``watchlist.toml``.
The demo imports the export into a throw-away SQLite database a few posts at a time, delivering the alerts
each batch creates to a ``console://`` destination (so they print as they fire), then prints mentions per
entity and how to point tgmonitor at real channels.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from monitor.config import (
    AlertDestination,
    DatabaseSettings,
    DeliverySettings,
    Settings,
    load_watchlist,
    to_async_url,
)

SAMPLE = "sample_export.json"
WATCHLIST = "watchlist.toml"
#: posts per stored batch: small, so alerts appear in the order a live channel would produce them
DEMO_BATCH = 6

Echo = Callable[[str], None]


@dataclass(slots=True)
class EntityRow:
    """One line of the closing table."""

    entity: str
    mentions: int = 0
    posts: set[int] = field(default_factory=set)
    forms: dict[str, None] = field(default_factory=dict)  # ordered set of surface forms


@dataclass(slots=True)
class DemoResult:
    posts: int
    alerts: int
    delivered: int
    table: list[EntityRow]
    data_dir: Path


def demo_settings(data_dir: Path, watchlist: Path) -> Settings:
    """Settings for the demo: an SQLite file in ``data_dir``, the sample watchlist, a console destination."""
    db = data_dir / "demo.db"
    return Settings(
        path=None, data_dir=data_dir, database=DatabaseSettings(url=to_async_url(f"sqlite:///{db}")),
        entities=tuple(load_watchlist(watchlist)),
        # The console is not a chat service: no rate limit worth keeping people waiting for.
        delivery=DeliverySettings(rate_limit_per_minute=100_000),
        alerts=(AlertDestination(name="console", url="console://"),),
    )


async def run_demo(data_dir: Path, echo: Echo) -> DemoResult:
    """Import the bundled export with alerts on, delivering after every batch; then tabulate mentions."""
    from monitor import archive
    from monitor.alerts.deliver import deliver_due
    from monitor.jobs.importer import ChatReport, ImportJob
    from monitor.runtime import open_runtime

    pkg = resources.files(__package__)
    with resources.as_file(pkg / WATCHLIST) as wl_path, resources.as_file(pkg / SAMPLE) as sample:
        settings = demo_settings(data_dir, wl_path)
        delivered = 0
        async with open_runtime(settings) as rt:
            echo(f"Watching {len(settings.entities)} entities: " + ", ".join(e.name for e in settings.entities))
            echo("Importing the sample channel «Вести Приречья» (a made-up channel); alerts as they fire:\n")

            async def after(_rep: ChatReport) -> None:
                nonlocal delivered
                delivered += await deliver_due(rt)

            job = ImportJob(rt, sample, alert=True, batch=DEMO_BATCH)
            report = await job.run(after_batch=after)
            delivered += await deliver_due(rt)
            rows: dict[str, EntityRow] = {}
            async for mt in archive.iter_mentions(rt.engine):
                row = rows.setdefault(mt.entity, EntityRow(mt.entity))
                row.mentions += 1
                row.posts.add(mt.message_id)
                row.forms[mt.surface] = None
    table = sorted(rows.values(), key=lambda r: (-r.mentions, r.entity))
    return DemoResult(report.posts, report.alerts, delivered, table, data_dir)


def format_table(rows: list[EntityRow]) -> list[str]:
    """Mentions per entity, with the word forms that were found."""
    width = max([len("entity"), *(len(r.entity) for r in rows)])
    lines = [f"{'entity':<{width}}  mentions  posts  forms found", f"{'-' * width}  --------  -----  -----------"]
    for r in rows:
        forms = ", ".join(list(r.forms)[:6]) + (" …" if len(r.forms) > 6 else "")
        lines.append(f"{r.entity:<{width}}  {r.mentions:>8}  {len(r.posts):>5}  {forms}")
    return lines


NEXT_STEPS = """\
Next: point tgmonitor at real channels. Put this in tgmonitor.toml:

    [[channels]]
    username = "rian_ru"        # any public channel; "web" reads t.me/s/, no Telegram account needed
    source = "web"

    [[entities]]
    name = "Росатом"
    aliases = ["Rosatom", "госкорпорация Росатом"]

    [[alerts]]
    name = "me"
    url = "console://"          # or tgram://BOT_TOKEN/CHAT_ID, mailto://..., any Apprise URL

then:  tgmonitor config check && tgmonitor run
Already have history exported from Telegram Desktop?  tgmonitor import result.json --as rian_ru
To read channels through your own account (faster, private channels too): see `tgmonitor login --help`."""


def write_kept_config(data_dir: Path) -> Path:
    """A ``tgmonitor.toml`` beside a kept demo database, so every archive command works from that folder."""
    cfg = data_dir / "tgmonitor.toml"
    db = (data_dir / "demo.db").resolve()
    watchlist = (resources.files("monitor.demo") / "watchlist.toml").read_text(encoding="utf-8")
    cfg.write_text(f'[database]\nurl = "sqlite:///{db.as_posix()}"\n\n{watchlist}', encoding="utf-8")
    return cfg


def demo(echo: Echo, *, keep: Path | None = None) -> int:
    """Run the demo in a throw-away directory (or ``keep``); returns the exit code."""
    data_dir = keep if keep is not None else Path(tempfile.mkdtemp(prefix="tgmonitor-demo-"))
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(run_demo(data_dir, echo))
        echo(f"{result.posts} posts imported, {result.alerts} alerts raised, {result.delivered} delivered "
             f"to the console.\n")
        echo("Mentions per entity:")
        for line in format_table(result.table):
            echo("  " + line)
        echo("")
        echo(NEXT_STEPS)
        if keep is not None:
            write_kept_config(data_dir)
            echo(f"\nThe demo's database and a config for it are kept in {keep}; explore them with:\n"
                 f"    cd {keep} && tgmonitor mentions && tgmonitor stats && tgmonitor search кредит")
        return 0
    finally:
        if keep is None:
            shutil.rmtree(data_dir, ignore_errors=True)
