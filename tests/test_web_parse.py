"""The t.me/s page parser on a captured-structure fixture: ids, text, dates, views, forwards, previews,
albums, unsupported posts, service messages, paging."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.sources.web_parse import parse_page, parse_views

PAGE = (Path(__file__).parent / "data" / "tme_page.html").read_text(encoding="utf-8")


def test_page_facts() -> None:
    page = parse_page(PAGE, "examplenews")
    assert page.is_channel and page.title == "Пример новостей"
    assert page.before == 101
    assert page.service_ids == [100]
    assert page.newest_id == 107 and page.oldest_id == 100
    assert [p.message_id for p in page.posts] == [101, 102, 103, 106, 107]


def test_text_links_breaks_emoji_and_preview() -> None:
    p = parse_page(PAGE, "examplenews").posts[0]
    assert p.text == "Молния: Росатом & партнёры\nвторая строка подробнее 🔥 #tag"
    assert p.date == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert p.views == 12500
    assert p.link_preview == "Example\nГазпром отчитался\nОписание статьи о Газпроме"
    assert p.raw is not None and p.raw["links"][0] == "https://example.org/a?x=1&y=2"  # t.me's '&amp;amp;' undone


def test_forward_reply_and_edit_mark() -> None:
    p = parse_page(PAGE, "examplenews").posts[1]
    assert p.text == "Пересланный пост"  # not the quoted reply's text
    assert p.forward is not None and p.forward.name == "Upstream News" and p.forward.message_id == 77
    assert p.raw is not None and p.raw.get("edited") is True


def test_album_is_one_post_with_the_lowest_id() -> None:
    p = parse_page(PAGE, "examplenews").posts[2]
    assert p.message_id == 103 and p.member_ids == (103, 104, 105) and p.views == 1_200_000
    assert p.text == "Альбом: стройка Росатома"


def test_posts_the_preview_cannot_show_are_incomplete_keeping_their_text() -> None:
    page = parse_page(PAGE, "examplenews")
    partial, hidden = page.posts[3], page.posts[4]
    assert partial.incomplete and partial.text == "Видео: визит в Росатом"
    assert hidden.incomplete and hidden.text == ""


def test_a_page_without_history_is_not_a_channel() -> None:
    page = parse_page("<html><body><div class='tgme_page'>x</div></body></html>", "x")
    assert not page.is_channel and page.posts == [] and page.before is None


@pytest.mark.parametrize("text, n", [("44", 44), ("12.5K", 12500), ("1.2M", 1_200_000), ("1,234", 1234),
                                     ("", None), ("many", None)])
def test_views(text: str, n: int | None) -> None:
    assert parse_views(text) == n
