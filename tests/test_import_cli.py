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


# --- issue 17 items 2 and 12: what an import passes over is said; hostile and wrong files exit 2 -------------


def test_account_export_names_every_chat_it_skipped(write_config: WriteConfig, sqlite_url: str) -> None:
    cfg = write_config(WATCH, sqlite_url)
    r = tgm(cfg, "import", str(DATA / "export_real_account.json"), "--no-progress")
    assert r.exit_code == 0, r.output
    assert "skipped 5 chats that are not a channel; import one with --channel NAME (its title or id):" in r.output
    assert "«Пётр» (personal chat, id 5, 1 message)" in r.output
    assert "«Группа» (private group, id 1300000001, 1 message)" in r.output
    # picking one: a group is imported when named, and the report says it is not a channel
    r = tgm(cfg, "import", str(DATA / "export_real_account.json"), "--channel", "Группа", "--no-progress")
    assert r.exit_code == 0, r.output
    assert "«Группа» (private group, id 1300000001) is not a channel (tgmonitor watches channels): imported " \
           "because --channel named it" in r.output
    assert "skipped" not in r.output  # the user picked: the others are not listed
    r = tgm(cfg, "import", str(DATA / "export_real_account.json"), "--channel", "нет такого", "--no-progress")
    assert r.exit_code == 2 and "no chat named or numbered 'нет такого' in this export; its chats:" in r.output
    assert "«Пётр» (personal chat" in r.output and "Traceback" not in r.output


def test_a_personal_chat_export_is_refused_unless_named(write_config: WriteConfig, tmp_path: Path,
                                                        sqlite_url: str) -> None:
    doc = json.loads((DATA / "export_single.json").read_text(encoding="utf-8"))
    doc.update(name="Друг", type="personal_chat", id=42)
    path = tmp_path / "chat.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    cfg = write_config(WATCH, sqlite_url)
    r = tgm(cfg, "import", str(path), "--no-progress")
    assert r.exit_code == 2, r.output
    assert ("this export is of «Друг» (personal chat, id 42, 14 messages), which is not a channel (tgmonitor "
            "watches channels); to import it anyway: --channel Друг") in r.output
    assert counts(sqlite_url)["channels"] == 0
    r = tgm(cfg, "import", str(path), "--channel", "Друг", "--no-progress")
    assert r.exit_code == 0 and "9 posts read, 9 new" in r.output and "is not a channel" in r.output, r.output


def test_malformed_messages_are_counted(write_config: WriteConfig, tmp_path: Path, sqlite_url: str) -> None:
    doc = json.loads((DATA / "export_single.json").read_text(encoding="utf-8"))
    doc["messages"] += [{"id": "x", "type": "message"}, 17, {"id": 99, "type": "message", "date": "?", "text": "a"}]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    r = tgm(write_config(WATCH, sqlite_url), "import", str(path), "--no-progress")
    assert r.exit_code == 0, r.output
    assert "9 posts read, 9 new" in r.output
    assert "  3 malformed messages skipped (not a message object, no numeric id or no readable date)" in r.output


def _dates(db_url: str) -> tuple[dict[int, str], dict[str, int]]:
    """Stored post dates by message id, and the stats rollup (mention_days) as {day: posts}."""
    async def go() -> tuple[dict[int, str], dict[str, int]]:
        engine = create_engine(to_async_url(db_url))
        try:
            async with engine.connect() as c:
                posts = {mid: d.isoformat() for mid, d in await c.execute(select(m.Post.message_id, m.Post.date))}
                days = {d.isoformat(): n for d, n in await c.execute(select(m.MentionDay.day, m.MentionDay.posts))
                        if n}
                return posts, days
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_old_export_dates_are_warned_about_and_corrected_by_a_reimport(write_config: WriteConfig,
                                                                       db_url: str) -> None:
    """An export without date_unixtime: its local times are read as UTC by default, which the report says;
    importing it again with the right --timezone moves the stored dates, and the stats rollup with them."""
    cfg = write_config(WATCH, db_url)
    r = tgm(cfg, "import", str(DATA / "export_old.json"), "--no-progress")
    assert r.exit_code == 0, r.output
    assert ("2 posts have no date_unixtime (an export made before 2021): their local times were read as UTC; if "
            "the exporting computer was in another zone, import again with --timezone ZONE") in r.output
    posts, days = _dates(db_url)
    assert posts == {4984: "2021-01-31T21:02:29+00:00", 4985: "2021-01-31T22:00:00+00:00"}
    assert days == {"2021-01-31": 1}  # 4985 names Росатом
    r = tgm(cfg, "import", str(DATA / "export_old.json"), "--timezone", "America/New_York", "--no-progress")
    assert r.exit_code == 0, r.output
    assert "0 new, 0 changed" in r.output
    assert "corrected the stored dates of 2 posts (local times now read as America/New_York)" in r.output
    posts, days = _dates(db_url)
    assert posts == {4984: "2021-02-01T02:02:29+00:00", 4985: "2021-02-01T03:00:00+00:00"}
    assert days == {"2021-02-01": 1}  # the mention moved to its new UTC day
    r = tgm(cfg, "stats", "--entity", "Росатом", "--since", "2021-01-30", "--format", "json")
    assert r.exit_code == 0, r.output
    series = {p["period"]: p["mentions"] for p in json.loads(r.output)["entities"][0]["series"]}
    assert series["2021-01-31"] == 0 and series["2021-02-01"] == 1
    r = tgm(cfg, "import", str(DATA / "export_old.json"), "--timezone", "America/New_York", "--no-progress")
    assert r.exit_code == 0 and "corrected the stored dates" not in r.output, r.output  # the same zone: nothing to do
    assert _dates(db_url)[0] == posts


def test_a_cp1251_export_is_an_encoding_problem(write_config: WriteConfig, tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "cp1251.json"
    path.write_bytes((DATA / "export_single.json").read_text(encoding="utf-8").encode("cp1251", errors="replace"))
    r = tgm(write_config(WATCH, sqlite_url), "import", str(path), "--no-progress")
    assert r.exit_code == 2, r.output
    assert "not UTF-8 text (byte 0xCD at byte 12)" in r.output and "Windows-1251" in r.output
    assert "truncated" not in r.output and "Traceback" not in r.output


def test_nested_brackets_exit_2_in_one_line(write_config: WriteConfig, tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "bomb.json"
    path.write_bytes(b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    r = tgm(write_config(WATCH, sqlite_url), "import", str(path), "--no-progress")
    assert r.exit_code == 2, r.output
    assert len(r.output.strip().splitlines()) == 1 and "nests more than 64 levels deep" in r.output
    assert counts(sqlite_url)["channels"] == 0


def test_import_and_backfill_refuse_a_missing_database_the_data_directory_used(
        write_config: WriteConfig, tmp_path: Path) -> None:
    """A SQLite file deleted (or moved away) is never replaced by an empty one behind the user's back: ``import``
    and ``backfill`` refuse in one line, like ``run``, until ``tgmonitor db upgrade`` starts afresh on purpose."""
    db = tmp_path / "arch.db"
    url = f"sqlite:///{db}"
    cfg = write_config(WATCH + '\n[[channels]]\nusername = "gone_chan"\n', url)
    assert tgm(cfg, "import", str(DATA / "export_single.json"), "--no-progress").exit_code == 0
    assert counts(url)["posts"] == 9
    db.unlink()
    for args in (("import", str(DATA / "export_single.json"), "--no-progress"), ("backfill", "gone_chan")):
        r = tgm(cfg, *args)
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert r.exit_code == 1 and len(lines) == 1, (args, r.output)
        assert f"the database file {db} is missing" in lines[0] and "tgmonitor db upgrade" in lines[0]
        assert not db.exists()  # no empty database created in its place
    r = tgm(cfg, "db", "upgrade")
    assert r.exit_code == 0 and db.exists(), r.output
    r = tgm(cfg, "import", str(DATA / "export_single.json"), "--no-progress")
    assert r.exit_code == 0 and "9 new" in r.output, r.output
