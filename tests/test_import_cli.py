"""``tgmonitor import`` through the CLI on both databases: storing and matching, alerts delivered once to a
real local webhook, idempotent re-imports, newer exports, linking by id and by ``--as``, bad files."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from monitor import models as m
from monitor.cli import main as cli
from monitor.config import to_async_url
from monitor.db import create_engine
from tests.conftest import WriteConfig
from tests.tme_server import alert_sink

DATA = Path(__file__).parent / "data"
WATCH = '[[entities]]\nname = "Росатом"\n\n[[entities]]\nname = "Газпром"\n'


def tgm(cfg: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(cfg), *args])


def counts(db_url: str) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        engine = create_engine(to_async_url(db_url))
        try:
            async with engine.connect() as c:
                out: dict[str, Any] = {}
                for name, table in (("posts", m.Post), ("matches", m.Match), ("alerts", m.Alert),
                                    ("channels", m.Channel), ("versions", m.PostVersion)):
                    out[name] = (await c.execute(select(func.count()).select_from(table))).scalar_one()
                out["channel_rows"] = [tuple(r) for r in await c.execute(
                    select(m.Channel.username, m.Channel.tg_id, m.Channel.title, m.Channel.cursor)
                    .order_by(m.Channel.id))]
                out["album"] = (await c.execute(select(m.Post.member_ids).where(m.Post.message_id == 7))).scalar()
                return out
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_import_alerts_once_and_reimport_changes_nothing(write_config: WriteConfig, db_url: str) -> None:
    with alert_sink() as (sink, port):
        cfg = write_config(WATCH + f'\n[[alerts]]\nname = "hook"\nurl = "json://127.0.0.1:{port}/hook"\n', db_url)
        r = tgm(cfg, "import", str(DATA / "export_single.json"), "--alert", "--no-progress")
        assert r.exit_code == 0, r.output
        first = counts(db_url)
        assert first["posts"] == 9 and first["channels"] == 1
        assert first["album"] == [7, 8, 9]
        # posts naming Росатом: 2, 3, 4, 5 (the forward's text does not), 7, 10, 12 → 6 of them alert
        # (forwards do not alert by default)
        assert first["alerts"] >= 1
        sent = sink.count()
        assert 1 <= sent <= first["alerts"]
        assert "9 posts read, 9 new" in r.output
        r2 = tgm(cfg, "import", str(DATA / "export_single.json"), "--alert", "--no-progress")
        assert r2.exit_code == 0, r2.output
        assert "0 new, 0 changed" in r2.output
        again = counts(db_url)
        assert again == first
        assert sink.count() == sent


def test_import_without_alert_stores_and_matches_silently(write_config: WriteConfig, sqlite_url: str) -> None:
    with alert_sink() as (sink, port):
        cfg = write_config(WATCH + f'\n[[alerts]]\nname = "hook"\nurl = "json://127.0.0.1:{port}/hook"\n',
                           sqlite_url)
        r = tgm(cfg, "import", str(DATA / "export_single.json"), "--no-progress")
        assert r.exit_code == 0, r.output
        c = counts(sqlite_url)
        assert c["matches"] == 6 and c["alerts"] == 0 and sink.count() == 0
        r = tgm(cfg, "mentions", "--format", "jsonl")
        mentions = [json.loads(line) for line in r.output.splitlines() if line.strip()]
        assert {d["message_id"] for d in mentions} == {2, 3, 4, 7, 10, 12}
        assert all(d["link"].startswith("https://t.me/c/1555000001/") for d in mentions)


def test_newer_export_adds_only_what_is_new(write_config: WriteConfig, tmp_path: Path, sqlite_url: str) -> None:
    doc = json.loads((DATA / "export_single.json").read_text(encoding="utf-8"))
    older = dict(doc, messages=doc["messages"][:5])
    (tmp_path / "old.json").write_text(json.dumps(older, ensure_ascii=False), encoding="utf-8")
    cfg = write_config(WATCH, sqlite_url)
    r = tgm(cfg, "import", str(tmp_path / "old.json"), "--no-progress")
    assert r.exit_code == 0 and "4 posts read, 4 new" in r.output, r.output
    # the newer export also carries an edit of post 2: a new version, not a duplicate
    doc["messages"][1]["text"] = doc["messages"][1]["text_entities"][0]["text"] = "Росатом и Газпром построят станцию."
    (tmp_path / "new.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    r = tgm(cfg, "import", str(tmp_path / "new.json"), "--no-progress")
    assert r.exit_code == 0, r.output
    assert "9 posts read, 5 new, 1 changed" in r.output
    c = counts(sqlite_url)
    assert c["posts"] == 9 and c["versions"] == 1 and c["channel_rows"][0][3] == 14


def test_id_links_to_the_configured_channel(write_config: WriteConfig, db_url: str) -> None:
    cfg = write_config(WATCH + '\n[[channels]]\nusername = "testnews"\nid = 1555000001\n', db_url)
    r = tgm(cfg, "import", str(DATA / "export_single.json"), "--no-progress")
    assert r.exit_code == 0, r.output
    assert counts(db_url)["channel_rows"] == [("testnews", 1555000001, "Новости Тестовой области", 14)]
    r = tgm(cfg, "mentions", "--format", "jsonl")
    assert "https://t.me/testnews/2" in r.output


def test_as_links_a_channel_known_by_username(write_config: WriteConfig, db_url: str) -> None:
    cfg = write_config(WATCH + '\n[[channels]]\nusername = "testnews"\nsource = "web"\n', db_url)

    async def web_channel_first() -> None:  # as the web source's first poll leaves it: a name, no id
        from monitor.config import load_settings
        from monitor.runtime import open_runtime

        async with open_runtime(load_settings(cfg)) as rt:
            await rt.store.upsert_channel(username="testnews", source="web")

    asyncio.run(web_channel_first())
    r = tgm(cfg, "import", str(DATA / "export_single.json"), "--as", "@testnews", "--no-progress")
    assert r.exit_code == 0, r.output
    assert counts(db_url)["channel_rows"] == [("testnews", 1555000001, "Новости Тестовой области", 14)]
    # from now on the id alone finds it: a plain re-import duplicates nothing
    r = tgm(cfg, "import", str(DATA / "export_single.json"), "--no-progress")
    assert r.exit_code == 0 and "0 new" in r.output, r.output
    assert counts(db_url)["posts"] == 9


def test_account_export_all_channels_or_one(write_config: WriteConfig, sqlite_url: str) -> None:
    cfg = write_config(WATCH, sqlite_url)
    r = tgm(cfg, "import", str(DATA / "export_account.json"), "--channel", "Канал Бета", "--no-progress")
    assert r.exit_code == 0, r.output
    assert [row[1] for row in counts(sqlite_url)["channel_rows"]] == [1555000003]
    r = tgm(cfg, "import", str(DATA / "export_account.json"), "--no-progress")
    assert r.exit_code == 0, r.output
    c = counts(sqlite_url)
    assert sorted(row[1] for row in c["channel_rows"]) == [1555000002, 1555000003, 1555000004]
    assert c["posts"] == 4  # the personal chat is not a channel
    r = tgm(cfg, "import", str(DATA / "export_account.json"), "--channel", "нет такого", "--no-progress")
    assert r.exit_code == 2 and "no chat named" in r.output


@pytest.mark.parametrize("name, words", [("not_json.txt", "not JSON"),
                                         ("not_export.json", "not a Telegram Desktop export")])
def test_a_file_that_is_not_an_export_exits_2(write_config: WriteConfig, sqlite_url: str, name: str,
                                              words: str) -> None:
    cfg = write_config(WATCH, sqlite_url)
    r = tgm(cfg, "import", str(DATA / name), "--no-progress")
    assert r.exit_code == 2
    assert words in r.output and "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_truncated_file_keeps_what_it_read_and_exits_2(write_config: WriteConfig, tmp_path: Path,
                                                       sqlite_url: str) -> None:
    raw = (DATA / "export_single.json").read_bytes()
    (tmp_path / "cut.json").write_bytes(raw[: raw.index(b'"id": 12,')])
    cfg = write_config(WATCH, sqlite_url)
    r = tgm(cfg, "import", str(tmp_path / "cut.json"), "--no-progress")
    assert r.exit_code == 2 and "truncated" in r.output and "Traceback" not in r.output
    assert counts(sqlite_url)["posts"] == 6
    r = tgm(cfg, "import", str(DATA / "export_single.json"), "--no-progress")
    assert r.exit_code == 0 and "3 new" in r.output
    assert counts(sqlite_url)["posts"] == 9


def test_help_has_an_example() -> None:
    r = CliRunner().invoke(cli, ["import", "--help"])
    assert r.exit_code == 0 and "tgmonitor import result.json --as" in r.output


def test_real_export_mentions_by_message_id_and_reimport(write_config: WriteConfig, sqlite_url: str) -> None:
    """An export as tdesktop writes it (a "\\x0B" escape included): mentions land on the right message ids
    (an album on its lowest id, whichever part holds the caption), and importing again changes nothing."""
    watch = "".join(f'[[entities]]\nname = "{n}"\n\n' for n in ("Аэрофлот", "Норникель", "Ростех", "Сургутнефтегаз",
                                                                  "Росатом", "Яндекс"))
    cfg = write_config(watch, sqlite_url)
    r = tgm(cfg, "import", str(DATA / "export_real.json"), "--no-progress")
    assert r.exit_code == 0, r.output
    assert "23 posts read, 23 new" in r.output
    out = tgm(cfg, "mentions", "--format", "jsonl")
    assert out.exit_code == 0, out.output
    pairs = {(json.loads(line)["message_id"], json.loads(line)["entity"]) for line in out.output.splitlines()
             if line.strip()}
    assert {(16, "Аэрофлот"), (13, "Норникель"), (30, "Ростех"), (19, "Сургутнефтегаз"), (9, "Росатом"),
            (8, "Яндекс")} <= pairs
    assert {mid for mid, _ in pairs} <= {8, 9, 13, 16, 19, 29, 30}  # 29: the long post names Норникель
    first = counts(sqlite_url)
    r2 = tgm(cfg, "import", str(DATA / "export_real.json"), "--no-progress")
    assert r2.exit_code == 0 and "0 new, 0 changed" in r2.output, r2.output
    assert counts(sqlite_url) == first


def test_real_account_export_imports_every_channel(write_config: WriteConfig, sqlite_url: str) -> None:
    cfg = write_config(WATCH, sqlite_url)
    r = tgm(cfg, "import", str(DATA / "export_real_account.json"), "--no-progress")
    assert r.exit_code == 0, r.output
    c = counts(sqlite_url)
    assert c["posts"] == 5 and sorted(row[1] for row in c["channel_rows"]) == [1300000003, 1300000004, 1300000005,
                                                                               1300000006]


def _store(cfg: Path, **values: Any) -> None:
    """A web channel as the web source leaves it: a username, maybe a title, never the numeric id."""
    async def go() -> None:
        from monitor.config import load_settings
        from monitor.runtime import open_runtime

        async with open_runtime(load_settings(cfg)) as rt:
            row = await rt.store.upsert_channel(username="testnews", source="web")
            if values:
                await rt.store.update_channel(row.id, **values)

    asyncio.run(go())


WEB = WATCH + '\n[[channels]]\nusername = "testnews"\nsource = "web"\n'


def test_title_links_a_web_channel_without_id(write_config: WriteConfig, db_url: str) -> None:
    cfg = write_config(WEB, db_url)
    _store(cfg, title="Новости Тестовой области")
    r = tgm(cfg, "import", str(DATA / "export_single.json"), "--no-progress")
    assert r.exit_code == 0, r.output
    assert "linked to @testnews by its title" in r.output
    assert counts(db_url)["channel_rows"] == [("testnews", 1555000001, "Новости Тестовой области", 14)]


def test_separate_channel_is_reported_and_as_merges_the_duplicate(write_config: WriteConfig, db_url: str) -> None:
    cfg = write_config(WEB, db_url)
    _store(cfg)
    assert tgm(cfg, "import", str(DATA / "export_single.json"), "--as", "testnews", "--no-progress").exit_code == 0
    _store(cfg, tg_id=None, title="Деловой")  # as if polled over the web: all posts, another title, no id
    r = tgm(cfg, "import", str(DATA / "export_single.json"), "--no-progress")
    assert r.exit_code == 0, r.output
    assert "stored as a separate channel «Новости Тестовой области» (id 1555000001)" in r.output
    assert "--as USERNAME" in r.output
    assert counts(db_url)["posts"] == 18
    r = tgm(cfg, "import", str(DATA / "export_single.json"), "--as", "testnews", "--no-progress")
    assert r.exit_code == 0, r.output
    assert "merged the separate channel" in r.output and "0 new" in r.output
    c = counts(db_url)
    assert c["posts"] == 9 and c["channels"] == 1
    assert c["channel_rows"] == [("testnews", 1555000001, "Деловой", 14)]
    r = tgm(cfg, "mentions", "--format", "jsonl")
    assert r.exit_code == 0 and "None" not in r.output and len(r.output.splitlines()) == 6, r.output
    r = tgm(cfg, "import", str(DATA / "export_single.json"), "--no-progress")
    assert r.exit_code == 0 and "0 new" in r.output and counts(db_url)["posts"] == 9, r.output


def test_as_refuses_to_split_two_stored_channels(write_config: WriteConfig, db_url: str) -> None:
    cfg = write_config(WEB, db_url)
    _store(cfg)  # the web channel has none of the export's posts: nothing can be merged safely
    r = tgm(cfg, "import", str(DATA / "export_single.json"), "--no-progress")
    assert r.exit_code == 0 and "separate channel" in r.output, r.output
    before = counts(db_url)
    r = tgm(cfg, "import", str(DATA / "export_single.json"), "--as", "testnews", "--no-progress")
    assert r.exit_code == 2, r.output
    assert "@testnews" in r.output and "«Новости Тестовой области»" in r.output and "9 posts" in r.output
    assert counts(db_url) == before


def test_as_must_name_a_known_channel(write_config: WriteConfig, sqlite_url: str) -> None:
    cfg = write_config(WEB, sqlite_url)
    r = tgm(cfg, "import", str(DATA / "export_single.json"), "--as", "testnew", "--no-progress")
    assert r.exit_code == 2, r.output
    assert "did you mean --as testnews?" in r.output and "known: testnews" in r.output
    assert counts(sqlite_url)["channels"] == 0
