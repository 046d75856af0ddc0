"""The Telegram Desktop export parser: both layouts, rich text, edits, forwards, albums, service messages,
old exports, truncated files and files that are not exports. Pure: no database."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from monitor.sources.export import ExportError, ExportItem, chat_selector, read_export

DATA = Path(__file__).parent / "data"


def items(path: Path, **kw: object) -> list[ExportItem]:
    with path.open("rb") as fh:
        return list(read_export(fh, **kw))  # type: ignore[arg-type]


def posts_of(path: Path, **kw: object) -> dict[int, object]:
    return {it.post.message_id: it.post for it in items(path, **kw) if it.post is not None}


class _Pipe(io.RawIOBase):
    """``data`` as a stream that cannot seek, handing out at most ``most`` bytes a read (all asked for if None)."""

    def __init__(self, data: bytes, most: int | None) -> None:
        self.buf = io.BytesIO(data)
        self.most = most

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        chunk = self.buf.read(len(b) if self.most is None else min(len(b), self.most))
        b[: len(chunk)] = chunk
        return len(chunk)


def pipe(data: bytes, most: int | None = None) -> io.BufferedReader:
    """A buffered non-seekable stream over ``data``, like a pipe: the reader must take the event path."""
    return io.BufferedReader(_Pipe(data, most))


def test_single_chat_export_fields() -> None:
    its = items(DATA / "export_single.json")
    assert its[0].post is None and its[0].chat.id == 1555000001 and its[0].chat.name == "Новости Тестовой области"
    posts = {it.post.message_id: it.post for it in its if it.post is not None}
    # service (1, 6) and unsupported (11) messages are skipped; the album 7-9 is one post with id 7
    assert sorted(posts) == [2, 3, 4, 5, 7, 10, 12, 13, 14]
    assert posts[2].date == datetime(2025, 1, 10, 12, 0, tzinfo=UTC)  # date_unixtime, not the local `date`
    assert posts[3].text == "Молния: в Росатоме опровергли слухи 🔥 #атом"
    assert posts[4].edit_date == datetime(2025, 1, 10, 14, 30, tzinfo=UTC)
    assert posts[5].forward is not None and posts[5].forward.name == "Пресс-служба Росатома"
    album = posts[7]
    assert album.member_ids == (7, 8, 9) and album.album_id == 7 and album.text == "Фоторепортаж с площадки Росатома"
    assert posts[10].text == "Годовой отчёт госкорпорации Росатом"  # a file's caption
    assert posts[12].text.startswith("Нужна ли области вторая АЭС Росатома?")  # a poll's question
    assert posts[13].text == ""  # a sticker: stored, nothing to match
    skipped = sum(it.skipped for it in its)
    assert skipped == 3


def test_text_as_list_without_text_entities() -> None:
    posts = posts_of(DATA / "export_old.json")
    assert posts[4985].text == "Росатом растёт"


def test_old_export_without_unixtime_uses_the_given_zone() -> None:
    msk = timezone(timedelta(hours=3))
    posts = posts_of(DATA / "export_old.json", local_tz=msk)
    assert posts[4984].date == datetime(2021, 1, 31, 18, 2, 29, tzinfo=UTC)
    assert posts[4985].edit_date == datetime(2021, 1, 31, 19, 5, tzinfo=UTC)
    chat = items(DATA / "export_old.json")[0].chat
    assert chat.id == 10083966286 and chat.is_channel


def test_account_export_takes_channels_by_default() -> None:
    its = items(DATA / "export_account.json")
    chats = [it.chat for it in its if it.post is None]
    assert [c.name for c in chats] == ["Канал Альфа", "Канал Бета", "Старый канал"]  # not the personal chat
    assert {it.post.message_id for it in its if it.post and it.chat.name == "Канал Альфа"} == {2, 3}


@pytest.mark.parametrize("wanted", ["Канал Бета", "канал бета", "1555000003", "-1001555000003"])
def test_account_export_pick_one_chat(wanted: str) -> None:
    its = items(DATA / "export_account.json", select=chat_selector(wanted))
    assert [it.chat.name for it in its if it.post is None] == ["Канал Бета"]
    assert [it.post.message_id for it in its if it.post] == [5]


def test_account_export_personal_chat_on_request() -> None:
    its = items(DATA / "export_account.json", select=chat_selector("Друг"))
    assert [it.post.text for it in its if it.post] == ["Росатом? Да ну."]


def test_not_json_and_not_export() -> None:
    with pytest.raises(ExportError, match="not JSON") as e1:
        items(DATA / "not_json.txt")
    assert not e1.value.truncated
    with pytest.raises(ExportError, match="not a Telegram Desktop export"):
        items(DATA / "not_export.json")
    with pytest.raises(ExportError):
        list(read_export(io.BytesIO(b"\xff\xfe\x00garbage")))


def test_truncated_file_yields_every_complete_post_then_fails(tmp_path: Path) -> None:
    raw = (DATA / "export_single.json").read_bytes()
    cut = raw.index(b'"id": 12,')  # break inside the messages list, after message 10
    path = tmp_path / "cut.json"
    path.write_bytes(raw[:cut])
    got: list[int] = []
    with path.open("rb") as fh, pytest.raises(ExportError) as exc:
        for it in read_export(fh):
            if it.post is not None:
                got.append(it.post.message_id)
    assert exc.value.truncated and "truncated" in str(exc.value)
    assert got == [2, 3, 4, 5, 7, 10]


def test_non_seekable_stream_takes_the_event_path() -> None:
    data = (DATA / "export_single.json").read_bytes()
    streamed = [it.post.message_id for it in read_export(pipe(data)) if it.post]
    assert streamed == [2, 3, 4, 5, 7, 10, 12, 13, 14]


def test_album_parts_with_several_captions_stay_separate(tmp_path: Path) -> None:
    base = {"type": "message", "date": "2025-01-01T00:00:00", "date_unixtime": "1735689600", "from_id": "channel1",
            "photo": "(File not included.)"}
    doc = {"name": "x", "type": "public_channel", "id": 1, "messages": [
        {**base, "id": 1, "text": "первое"}, {**base, "id": 2, "text": "второе"},
        {**base, "id": 3, "text": ""}, {**base, "id": 4, "date_unixtime": "1735689700", "text": "другое время"}]}
    path = tmp_path / "a.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    posts = posts_of(path)
    assert sorted(posts) == [1, 2, 3, 4]


def test_progress_counts_every_byte() -> None:
    seen: list[int] = []
    items(DATA / "export_single.json", on_read=seen.append)
    assert sum(seen) == (DATA / "export_single.json").stat().st_size


# --- exports as tdesktop writes them (export_output_json.cpp): every entity type, media fields, albums
# without a grouped id, forwards with forwarded_from_id, a control character written as "\x0B" -----------

REAL = DATA / "export_real.json"
T0 = datetime(2025, 2, 3, 9, 0, tzinfo=UTC)


def test_real_export_posts_and_skips() -> None:
    its = items(REAL)
    assert its[0].post is None and (its[0].chat.name, its[0].chat.id) == ("Экономика Live", 1987654321)
    posts = {it.post.message_id: it.post for it in its if it.post is not None}
    assert sorted(posts) == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 19, 22, 23, 24, 25, 26, 29, 30, 31, 32]
    assert sum(it.skipped for it in its) == 3  # two service messages and one unsupported


def test_real_export_every_entity_type_is_plain_text() -> None:
    p = posts_of(REAL)[2]
    assert p.text == ("Сбербанк и ВТБ — отчёт https://cbr.ru\n@cbr_news #банки $SBER 🔥\n"
                      "Цитата: Газпром ждёт роста\nРоснефть подчёркнуто зачёркнуто\nx = 1\ny = 2\n"
                      "ЛУКОЙЛ тел. +7 495 123-45-67, press@example.ru, карта 4111 1111 1111 1111, Иван /start прочее")
    assert p.date == T0 + timedelta(hours=1)  # date_unixtime; `date` is the exporter's local time (UTC+3)


def test_real_export_media_captions_and_fields() -> None:
    posts = posts_of(REAL)
    assert posts[3].edit_date == T0 + timedelta(hours=2, minutes=30) and posts[3].raw["author"] == "Анна Петрова"
    assert posts[4].text == "Подпись к фото: Газпром на выставке" and posts[4].album_id is None
    assert posts[5].text == "Интервью главы Сбера" and posts[5].raw["media_type"] == "video_file"
    assert posts[6].text == "" and posts[6].raw["sticker_emoji"] == "😂"
    assert posts[7].text == "Купит ли Газпромбанк «Северсталь»?\nДа\nНет, купит ВТБ"
    assert posts[8].text == "Офис Яндекса" and posts[8].raw["place_name"] == "Яндекс"
    assert posts[11].raw["reply_to_message_id"] == 3 and posts[12].raw["via_bot"] == "@rates_bot"
    assert posts[29].text.count("\n") == 199 and len(posts[29].text) > 8000  # a very long post, whole
    assert posts[31].album_id is None and posts[32].album_id is None  # voice messages are never album parts


def test_real_export_forwards() -> None:
    posts = posts_of(REAL)
    assert posts[9].forward is not None
    assert (posts[9].forward.name, posts[9].forward.channel_id) == ("Росатом", 1555000001)
    assert posts[10].forward is not None and posts[10].forward.name is None  # a deleted account: still a forward
    assert posts[2].forward is None


def test_real_export_albums_without_a_grouped_id() -> None:
    posts = posts_of(REAL)
    assert posts[13].member_ids == (13, 14, 15) and posts[13].text == "Альбом: Норникель в Норильске"
    assert posts[16].member_ids == (16, 17, 18) and posts[16].text == "Отчёты Аэрофлота за квартал"  # last caption
    assert posts[19].member_ids == (19, 21)  # a part deleted since: still one album
    assert posts[22].album_id is None and posts[23].album_id is None  # two captions: two posts
    assert [posts[i].album_id for i in (24, 25, 26)] == [None, None, None]  # never across a text message


def test_real_export_control_character_escape_is_read() -> None:
    assert posts_of(REAL)[30].text == "Новое: Ростех\x0bи «Ростелеком»"


def test_real_export_event_path_reads_the_same() -> None:
    streamed = [it.post for it in read_export(pipe(REAL.read_bytes(), most=777)) if it.post]
    assert streamed == [it.post for it in items(REAL) if it.post]


def test_escape_repair_across_every_chunk_boundary() -> None:
    from monitor.sources.export import _Source

    raw = b'{"a": "x\\x0By \\\\x41 \\\\\\x1F \\u00e9 \\"q\\" end\\\\"}'
    want = b'{"a": "x\\u000By \\\\x41 \\\\\\u001F \\u00e9 \\"q\\" end\\\\"}'
    assert json.loads(want)["a"] == 'x\x0by \\x41 \\\x1f é "q" end\\'

    class Chunks:
        def __init__(self, data: bytes, size: int) -> None:
            self.data, self.size = data, size

        def read(self, n: int = -1) -> bytes:
            out, self.data = self.data[: self.size], self.data[self.size:]
            return out

    for size in range(1, len(raw) + 1):
        src, got = _Source(Chunks(raw, size)), b""  # type: ignore[arg-type]
        while chunk := src.read(65536):
            got += chunk
        assert got == want, size
        assert src.pos == len(raw)


def test_utf8_bom_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + (DATA / "export_single.json").read_bytes())
    assert sorted(posts_of(path)) == [2, 3, 4, 5, 7, 10, 12, 13, 14]


def test_real_export_truncated_mid_album(tmp_path: Path) -> None:
    raw = REAL.read_bytes()
    path = tmp_path / "cut.json"
    path.write_bytes(raw[: raw.index(b'"id": 15,')])
    got: list[int] = []
    with path.open("rb") as fh, pytest.raises(ExportError) as exc:
        for it in read_export(fh):
            if it.post is not None:
                got.append(it.post.message_id)
    assert exc.value.truncated and got[-1] == 13  # the album read so far is kept


REAL_ACCOUNT = DATA / "export_real_account.json"


def test_real_account_export_channels_only_by_default() -> None:
    its = items(REAL_ACCOUNT)
    chats = [(c.name, c.type, c.id) for c in (it.chat for it in its if it.post is None)]
    assert chats == [("Закрытый канал", "private_channel", 1300000003),
                     ("Открытый канал", "public_channel", 1300000004),
                     (None, "public_channel", 1300000005), ("Покинутый канал", "public_channel", 1300000006)]
    # frequent_contacts lists a channel too (id, type, name) but holds no messages: not a chat of the export
    assert [it.post.message_id for it in its if it.post] == [12, 13, 14, 15, 16]


@pytest.mark.parametrize("wanted, ids", [("Открытая группа", [11]), ("1300000001", [10]), ("Покинутая группа", [17]),
                                         ("Пётр", [1])])
def test_real_account_export_any_chat_on_request(wanted: str, ids: list[int]) -> None:
    its = items(REAL_ACCOUNT, select=chat_selector(wanted))
    assert [it.post.message_id for it in its if it.post] == ids


def test_an_html_export_is_named(tmp_path: Path) -> None:
    path = tmp_path / "messages.html"
    path.write_text('<!DOCTYPE html>\n<html><head><meta charset="utf-8"/><title>Exported Data</title></head></html>')
    with pytest.raises(ExportError, match=r"HTML page.*Machine-readable JSON"):
        items(path)


# --- hostile and wrong files (issue 17 item 2, 12): refused early with one clear message --------------------

_BOMB = b"[" * 100_000 + b"]" * 100_000
_IN_TEXT = (b'{"name": "x", "type": "public_channel", "id": 1, "messages": [{"id": 1, "type": "message", '
            b'"date": "2025-01-01T00:00:00", "date_unixtime": "1735689600", "text": ' + b'{"a": ' * 50_000
            + b'"x"' + b"}" * 50_000 + b"}]}")


@pytest.mark.parametrize("name, data", [("brackets", _BOMB), ("inside a message", _IN_TEXT)])
def test_deeply_nested_json_is_refused_within_a_memory_bound(tmp_path: Path, name: str, data: bytes) -> None:
    """200 KB of nested brackets once grew the reader past 20 GB (ijson builds a path per event as long as the
    nesting). Run in a child process under a 400 MB address-space limit: the reader must refuse it, on both
    the seekable (sniffed) path and the stream path, without a MemoryError."""
    import subprocess
    import sys

    path = tmp_path / "bomb.json"
    path.write_bytes(data)
    script = f"""
import resource
resource.setrlimit(resource.RLIMIT_AS, (400 << 20, 400 << 20))
from monitor.sources.export import ExportError, read_export
from tests.test_export import pipe
raw = open({str(path)!r}, "rb").read()
for fh in (open({str(path)!r}, "rb"), pipe(raw)):  # the sniffed (seekable) path and the stream path
    try:
        list(read_export(fh))
    except ExportError as exc:
        assert not exc.truncated
        print("refused:", exc)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and all("not a Telegram Desktop export" in line for line in lines), done.stdout


def test_nesting_is_refused_before_the_parser_reads_on() -> None:
    """Structural: the first read that passes the nesting limit raises; the parser never gets that chunk."""
    reads: list[int] = []
    with pytest.raises(ExportError, match="nests more than 64 levels"):
        list(read_export(pipe(b'{"messages": ' + _BOMB + b"}", most=4096), on_read=reads.append))
    assert len(reads) == 1


def test_top_level_list_is_not_an_export() -> None:
    with pytest.raises(ExportError, match="top level is a list") as exc:
        list(read_export(io.BytesIO(b'[{"id": 1, "type": "message"}]')))
    assert not exc.value.truncated


def test_brackets_inside_strings_do_not_count() -> None:
    text = '[{\\"' * 5000 + '\\"]]' + "\\\\" + "{" * 100  # as written in JSON: escaped quotes and backslashes
    doc = ('{"name": "x", "type": "public_channel", "id": 1, "messages": [{"id": 1, "type": "message", '
           '"date": "2025-01-01T00:00:00", "date_unixtime": "1735689600", "text": "' + text + '"}]}')
    for fh in (io.BytesIO(doc.encode()), pipe(doc.encode(), most=7)):
        (post,) = [it.post for it in read_export(fh) if it.post]
        assert post.text == json.loads('"' + text + '"')


def test_a_cp1251_file_is_an_encoding_problem_not_a_truncated_one(tmp_path: Path) -> None:
    text = (DATA / "export_single.json").read_text(encoding="utf-8")
    path = tmp_path / "cp1251.json"
    path.write_bytes(text.encode("cp1251", errors="replace"))
    with pytest.raises(ExportError) as exc:
        items(path)
    assert not exc.value.truncated
    assert "not UTF-8" in str(exc.value) and "Windows-1251" in str(exc.value) and "truncated" not in str(exc.value)
    # far into a file whose first reads are ASCII: still an encoding problem, after the posts before it
    msgs = ", ".join(f'{{"id": {i}, "type": "message", "date": "2025-01-01T00:00:00", "date_unixtime": '
                     f'"1735689600", "text": "post {i}"}}' for i in range(1, 3000))
    late = ('{"name": "Latin", "type": "public_channel", "id": 5, "messages": [' + msgs
            + ', {"id": 5000, "type": "message", "date": "2025-01-01T00:00:00", "date_unixtime": "1735689600", '
              '"text": "Привет"}]}')
    for fh in (io.BytesIO(late.encode("cp1251")), pipe(late.encode("cp1251"))):
        got = []
        with pytest.raises(ExportError, match=r"not UTF-8 text \(byte 0xCF at byte \d+\)") as exc:
            for it in read_export(fh):
                got.append(it.post)
        assert not exc.value.truncated and len([p for p in got if p]) == 2999
    path.write_bytes(text.encode("utf-16"))
    with pytest.raises(ExportError, match="UTF-16"):
        items(path)


def test_a_file_cut_inside_a_character_is_truncated(tmp_path: Path) -> None:
    raw = (DATA / "export_single.json").read_bytes()
    path = tmp_path / "cut.json"
    path.write_bytes(raw[: raw.index("Глава Росатома".encode()) + 1])  # inside the two bytes of "Г"
    got = []
    with path.open("rb") as fh, pytest.raises(ExportError) as exc:
        for it in read_export(fh):
            if it.post:
                got.append(it.post.message_id)
    assert exc.value.truncated and "truncated" in str(exc.value) and got == [2, 3]


def _doc(messages: list[dict[str, object]], **root: object) -> bytes:
    return json.dumps({"name": "x", "type": "public_channel", "id": 1, **root, "messages": messages},
                      ensure_ascii=False).encode()


def test_only_media_of_one_album_kind_group() -> None:
    base = {"type": "message", "date": "2025-01-01T00:00:00", "date_unixtime": "1735689600", "from_id": "channel1",
            "text": ""}
    photo = {"photo": "(File not included.)"}
    pdf = {"file": "(File not included.)", "mime_type": "application/pdf"}
    video = {"file": "(File not included.)", "media_type": "video_file", "mime_type": "video/mp4"}
    doc = _doc([{**base, "id": 1, **photo, "text": "фото"}, {**base, "id": 2, **pdf},  # a photo and a PDF: two posts
                {**base, "id": 3, "date_unixtime": "1735689700", **photo},  # a photo and a video: one album
                {**base, "id": 4, "date_unixtime": "1735689700", **video},
                {**base, "id": 5, "date_unixtime": "1735689800", **pdf},  # two documents: one album
                {**base, "id": 6, "date_unixtime": "1735689800", **pdf}])
    posts = {it.post.message_id: it.post for it in read_export(io.BytesIO(doc)) if it.post}
    assert sorted(posts) == [1, 2, 3, 5]
    assert posts[1].album_id is None and posts[1].text == "фото" and posts[2].album_id is None
    assert posts[3].member_ids == (3, 4) and posts[5].member_ids == (5, 6)


def test_stats_count_what_was_passed_over() -> None:
    from monitor.sources.export import ExportStats

    ok = {"type": "message", "date": "2025-01-01T00:00:00", "date_unixtime": "1735689600", "text": "t"}
    doc = _doc([{**ok, "id": 1}, {"id": 2, "type": "service", "action": "pin_message"},
                {"id": 3, "type": "unsupported"}, {**ok, "id": "four"}, "not an object",
                {**ok, "id": 5, "date": "вчера", "date_unixtime": ""},
                {**ok, "id": 6, "type": "strange"}, {"id": 7, "type": "message", "date": "2021-01-31T21:02:29",
                                                     "text": "old"}])
    for fh in (io.BytesIO(doc), pipe(doc)):
        stats = ExportStats()
        its = list(read_export(fh, stats=stats))
        posts = {it.post.message_id: it.post for it in its if it.post}
        assert sorted(posts) == [1, 7]
        counts = stats.of(its[0].chat)
        assert (counts.service, counts.malformed, counts.local_dates) == (2, 4, 1)
        assert posts[7].raw == {"date_local": "2021-01-31T21:02:29"} and posts[1].raw is None
        assert sum(it.skipped for it in its) == 6  # every message passed over is seen


def test_stats_list_the_chats_not_selected() -> None:
    from monitor.sources.export import ExportStats, nothing_selected, skipped_chats

    stats = ExportStats()
    its = items(REAL_ACCOUNT, stats=stats)
    assert len([it for it in its if it.post is None]) == 4
    assert [(c.chat.name, c.chat.type, c.messages) for c in stats.skipped] == [
        (None, "saved_messages", 1), ("Пётр", "personal_chat", 1), ("Группа", "private_supergroup", 1),
        ("Открытая группа", "public_supergroup", 1), ("Покинутая группа", "public_supergroup", 1)]
    assert skipped_chats(stats) == [
        "skipped 5 chats that are not a channel; import one with --channel NAME (its title or id):",
        "  «untitled» (saved messages, id 777, 1 message)", "  «Пётр» (personal chat, id 5, 1 message)",
        "  «Группа» (private group, id 1300000001, 1 message)",
        "  «Открытая группа» (public group, id 1300000002, 1 message)",
        "  «Покинутая группа» (public group, id 1300000007, 1 message)"]
    assert "no chat named or numbered 'нет' in this export; its chats: «" in nothing_selected(stats, "нет")


def test_single_chat_export_of_a_personal_chat_is_read_only_when_named(tmp_path: Path) -> None:
    from monitor.sources.export import ExportStats, nothing_selected

    ok = {"type": "message", "date": "2025-01-01T00:00:00", "date_unixtime": "1735689600", "text": "привет"}
    doc = _doc([{**ok, "id": 1}, {**ok, "id": 2}], name="Друг", type="personal_chat", id=42)
    path = tmp_path / "chat.json"
    path.write_bytes(doc)
    for fh in (path.open("rb"), pipe(doc)):
        stats = ExportStats()
        assert list(read_export(fh, single_chat_any_type=False, stats=stats)) == []
        assert [(c.chat.name, c.messages) for c in stats.skipped] == [("Друг", 2)]
        assert nothing_selected(stats, None) == (
            "this export is of «Друг» (personal chat, id 42, 2 messages), which is not a channel (tgmonitor "
            "watches channels); to import it anyway: --channel Друг")
    named = list(read_export(path.open("rb"), single_chat_any_type=False, select=chat_selector("друг")))
    assert [it.post.message_id for it in named if it.post] == [1, 2]
