"""The archive commands through click's CliRunner on both databases: every command and format."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from test_archive import WATCHLIST, fill

from monitor.cli import main
from monitor.config import load_settings
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
    assert len(r.output.splitlines()) == 4


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
    assert r.exit_code == 0 and "https://t.me/birzha/11" in r.output and len(r.output.splitlines()) == 1
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
