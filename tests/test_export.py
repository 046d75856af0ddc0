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
    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.buf = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            chunk = self.buf.read(len(b))
            b[: len(chunk)] = chunk
            return len(chunk)

    data = (DATA / "export_single.json").read_bytes()
    streamed = [it.post.message_id for it in read_export(io.BufferedReader(Pipe(data))) if it.post]
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
