"""The t.me/s page parser on a captured-structure fixture: ids, text, dates, views, forwards, previews,
albums, unsupported posts, service messages, paging."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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


# --- markup as t.me/s serves it (captures of real pages: svg bubble tails, text_not_supported_wrap on every
# message, nested album captions, "not supported in your browser" inside video players, signatures inside
# the meta, reactions, a data-after link at the bottom) --------------------------------------------------

REAL = (Path(__file__).parent / "data" / "tme_real_page.html").read_text(encoding="utf-8")


def real_posts() -> dict[int, Any]:
    return {p.message_id: p for p in parse_page(REAL, "realnews").posts}


def test_real_page_facts() -> None:
    page = parse_page(REAL, "realnews")
    assert page.is_channel and page.title == "Реальные новости 📰"
    assert page.before == 200  # the data-before link at the top, not the data-after one at the bottom
    assert page.service_ids == [200]  # "pinned «…»"
    assert sorted(real_posts()) == [201, 202, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215]
    assert page.oldest_id == 200 and page.newest_id == 215
    assert set(page.ids) == set(range(200, 216))  # album members 203-205 included


def test_real_rich_text_keeps_lines_links_emoji_and_signature() -> None:
    p = real_posts()[201]
    assert p.text == ("Минфин России сообщил о\xa0росте доходов\n\nПодробнее — на сайте 📈\n"
                      "#экономика @realnews")
    assert p.views == 4850 and p.date == datetime(2025, 3, 1, 9, 15, tzinfo=UTC)
    assert p.raw is not None and p.raw["links"][0] == "https://example.ru/news?id=1&utm=tg"
    assert p.raw["author"] == "Иван Редактор"
    assert "edited" not in p.raw  # a signature in the meta is not an edit mark
    assert not p.incomplete and p.forward is None


def test_real_album_with_videos_is_one_complete_post() -> None:
    p = real_posts()[202]
    assert p.member_ids == (202, 203, 204, 205) and p.album_id == 202
    assert p.text == "Фоторепортаж: Газпром открыл новый завод"  # the nested caption divs, once
    assert p.views == 436_600
    assert not p.incomplete  # "not supported in your browser" / "Media is too big" are about a video


def test_real_video_and_sticker_are_not_incomplete() -> None:
    posts = real_posts()
    assert posts[206].text == "Видео: глава Сбербанка Герман Греф на форуме" and not posts[206].incomplete
    assert posts[206].views == 2_730_000
    assert posts[207].text == "" and not posts[207].incomplete


def test_real_posts_the_preview_cannot_show() -> None:
    posts = real_posts()
    assert posts[208].incomplete and posts[208].text == "Розыгрыш от ВТБ: подробности в приложении"
    assert posts[209].incomplete and posts[209].text == "" and posts[209].views is None


def test_real_forwards_with_and_without_a_link() -> None:
    posts = real_posts()
    assert posts[210].forward is not None
    assert (posts[210].forward.name, posts[210].forward.message_id) == ("Пётр Сидоров", None)  # a user's page
    assert posts[211].forward is not None
    assert (posts[211].forward.name, posts[211].forward.message_id) == ("Upstream News", 77)
    assert posts[212].forward is not None
    assert (posts[212].forward.name, posts[212].forward.message_id) == ("Скрытый автор", None)  # no link


def test_real_blocks_break_lines_once_and_pre_keeps_its_lines() -> None:
    assert real_posts()[211].text == "Цитата дня:\nСбербанк повысил ставки\nпо вкладам\nКод:\nx = 1\ny = 2\nКонец"


def test_real_reply_quote_is_not_the_post_text() -> None:
    p = real_posts()[212]
    assert p.text == "Продолжение темы" and p.views == 1234
    assert p.raw is not None and p.raw["reply_to_message_id"] == 190


def test_real_link_preview() -> None:
    p = real_posts()[213]
    assert p.text == "Читайте: https://lenta.example/articles/1"
    assert p.link_preview == "Лента\nГазпромбанк выпустил отчёт\nПервая строка описания\nвторая строка"
    assert p.raw is not None and p.raw["link_preview_url"] == "https://lenta.example/articles/1"
    assert p.views == 3_400_000


def test_real_poll_becomes_its_question_and_options() -> None:
    p = real_posts()[214]
    assert p.text == "Кто купит «Северсталь»?\nГазпромбанк\nНикто" and p.views == 20_100


def test_real_document_caption_spoiler_custom_emoji_signature_and_edit() -> None:
    p = real_posts()[215]
    assert p.text == "Отчёт Роснефти за год 👍"  # not the file name, spoiler opened, custom emoji as its character
    assert p.raw is not None and p.raw["edited"] is True and p.raw["author"] == "Анна"
    assert p.date == datetime(2025, 3, 1, 15, 45, tzinfo=UTC)


def wrap_post(mid: int, inner: str, meta: str = "", name: str = "realnews") -> str:
    return (f'<section class="tgme_channel_history js-message_history"><div class="tgme_widget_message_wrap '
            f'js-widget_message_wrap"><div class="tgme_widget_message text_not_supported_wrap js-widget_message" '
            f'data-post="{name}/{mid}"><div class="tgme_widget_message_bubble">{inner}'
            f'<div class="tgme_widget_message_footer compact js-message_footer"><div class="tgme_widget_message_info">'
            f'<span class="tgme_widget_message_meta">{meta}<a class="tgme_widget_message_date" '
            f'href="https://t.me/{name}/{mid}"><time datetime="2025-03-01T10:00:00+00:00" class="time">10:00</time>'
            f'</a></span></div></div></div></div></div></section>')


def text_of(inner_html: str) -> str:
    page = parse_page(wrap_post(5, f'<div class="tgme_widget_message_text js-message_text" dir="auto">'
                                   f'{inner_html}</div>'), "realnews")
    return page.posts[0].text


@pytest.mark.parametrize("inner, text", [
    ("Цитата:<br/><blockquote>Газпром</blockquote><br/>После", "Цитата:\nГазпром\nПосле"),  # no doubled breaks
    ("Цитата:<blockquote>Газпром</blockquote>После", "Цитата:\nГазпром\nПосле"),
    ("<blockquote>Газпром</blockquote>", "Газпром"),
    ("a<br><br>b", "a\n\nb"),
    ("Росатом<div>Газпром</div>", "Росатом\nГазпром"),  # words across blocks never run together
    ("<b>Росатом</b><i>и</i> <u>Газпром</u>", "Росатоми Газпром"),  # inline tags join as written
    ("слово\n      <b>Газпром</b>\n    ", "слово Газпром"),  # the source's line breaks are spaces
    ("<code>a  b</code>", "a  b"),
    ("<pre>line 1\nline 2</pre>", "line 1\nline 2"),
    ("<span class=\"tg-spoiler\">скрыто</span> и <tg-spoiler>тоже</tg-spoiler>", "скрыто и тоже"),
    ('<i class="emoji" style="x"><b>❤️</b></i><i class="emoji"><b>🔥</b></i>', "❤️🔥"),
    ("&lt;b&gt; &amp; &quot;кавычки&quot;", '<b> & "кавычки"'),
    ("trailing  spaces  inside", "trailing  spaces  inside"),
])
def test_text_variants(inner: str, text: str) -> None:
    assert text_of(inner) == text


def test_very_long_post_is_kept_whole() -> None:
    body = "<br/>".join(f"Абзац {i}: Сбербанк и ВТБ обсуждают сделку" for i in range(300))
    text = text_of(body)
    assert len(text) > 10_000 and text.count("\n") == 299
    assert text.endswith("Абзац 299: Сбербанк и ВТБ обсуждают сделку")


@pytest.mark.parametrize("meta, edited", [
    ("edited &nbsp;", True), ("edited", True), ('<span class="tgme_widget_message_edited">edited</span>', True),
    ("изменено ", True), ('<span class="tgme_widget_message_from_author">Edited Team</span>,&nbsp;', False),
    ("", False),
])
def test_edit_mark(meta: str, edited: bool) -> None:
    page = parse_page(wrap_post(5, '<div class="tgme_widget_message_text">x</div>', meta), "realnews")
    assert (page.posts[0].raw or {}).get("edited", False) is edited


def test_channel_start_has_no_older_page() -> None:
    doc = wrap_post(2, '<div class="tgme_widget_message_text">Первый пост</div>').replace(
        "<section class=\"tgme_channel_history js-message_history\">",
        '<section class="tgme_channel_history js-message_history"><div class="tgme_widget_message_wrap '
        'js-widget_message_wrap"><div class="tgme_widget_message text_not_supported_wrap service_message '
        'js-widget_message" data-post="realnews/1"><div class="tgme_widget_message_bubble"><div '
        'class="tgme_widget_message_text js-message_text">Channel created</div><div '
        'class="tgme_widget_message_footer"><span class="tgme_widget_message_meta"><a '
        'class="tgme_widget_message_date" href="https://t.me/realnews/1"><time datetime="2023-03-03T09:36:39+00:00">'
        '</time></a></span></div></div></div></div>')
    page = parse_page(doc, "realnews")
    assert page.before is None and page.service_ids == [1] and [p.message_id for p in page.posts] == [2]


def test_no_posts_found_is_an_empty_history() -> None:
    doc = ('<section class="tgme_channel_history js-message_history"><div class="tgme_widget_message_wrap '
           'js-widget_message_wrap"><div class="tme_no_messages_found">No posts found</div></div></section>')
    page = parse_page(doc, "realnews")
    assert page.is_channel and page.posts == [] and page.ids == [] and page.before is None


def test_the_plain_channel_page_is_not_a_preview() -> None:
    doc = ('<html><body><div class="tgme_page_wrap"><div class="tgme_page"><div class="tgme_page_photo"></div>'
           '<div class="tgme_page_title"><span dir="auto">Закрытый канал</span></div><div class="tgme_page_extra">'
           '12 345 subscribers</div><div class="tgme_page_action"><a class="tgme_action_button_new shine" '
           'href="tg://resolve?domain=closed">View in Telegram</a></div></div></div></body></html>')
    page = parse_page(doc, "closed")
    assert not page.is_channel and page.posts == []


def test_rel_prev_is_the_fallback_for_paging() -> None:
    doc = '<html><head><link rel="prev" href="/s/realnews?before=42"></head><body>' + wrap_post(
        50, '<div class="tgme_widget_message_text">x</div>') + "</body></html>"
    assert parse_page(doc, "realnews").before == 42


def test_album_links_to_other_channels_are_not_members() -> None:
    inner = ('<div class="tgme_widget_message_grouped_wrap"><a class="tgme_widget_message_photo_wrap" '
             'href="https://t.me/realnews/49?single"></a><a class="tgme_widget_message_photo_wrap" '
             'href="https://t.me/realnews/50?single"></a><a href="https://t.me/other/7?single"></a></div>'
             '<div class="tgme_widget_message_text">подпись</div>')
    post = parse_page(wrap_post(50, inner), "realnews").posts[0]
    assert post.message_id == 49 and post.member_ids == (49, 50)


@pytest.mark.parametrize("text, n", [("4.85K", 4850), ("436.6K", 436_600), ("2.73M", 2_730_000),
                                     ("1.1B", 1_100_000_000), (" 7 ", 7), ("1.2K views", 1200), ("12,5K", 12500)])
def test_more_views(text: str, n: int) -> None:
    assert parse_views(text) == n


def test_web_text_equals_the_export_text_of_the_same_message() -> None:
    """The same message through both doors: t.me's HTML of export_real.json's message 2 (every entity type)
    reads as the export's text, so importing and then polling a channel finds no false edits."""
    import json

    export = json.loads((Path(__file__).parent / "data" / "export_real.json").read_text(encoding="utf-8")
                        .replace("\\x0B", "\\u000b"))
    want = "".join(p if isinstance(p, str) else p["text"] for p in export["messages"][1]["text"])
    emoji = '<i class="emoji" style="background-image:url(\'//telegram.org/img/emoji/40/F09F94A5.png\')"><b>🔥</b></i>'
    rendered = (
        '<b>Сбербанк</b> и <i>ВТБ</i> — <a href="https://example.ru/r?a=1&amp;amp;b=2" target="_blank" '
        'rel="noopener" onclick="return confirm(\'Open this link?\\n\\n\'+this.href);">отчёт</a> '
        '<a href="https://cbr.ru" target="_blank" rel="noopener">https://cbr.ru</a><br/>'
        '<a href="https://t.me/cbr_news">@cbr_news</a> <a href="?q=%23%D0%B1%D0%B0%D0%BD%D0%BA%D0%B8">#банки</a> '
        f'<a href="?q=%24SBER">$SBER</a> <tg-emoji emoji-id="5368324170671202286">{emoji}</tg-emoji><br/>'
        '<blockquote>Цитата: Газпром ждёт роста</blockquote><br/><tg-spoiler>Роснефть</tg-spoiler> '
        '<u>подчёркнуто</u> <s>зачёркнуто</s><br/><pre><code class="language-python">x = 1\ny = 2</code></pre><br/>'
        '<code>ЛУКОЙЛ</code> тел. +7 495 123-45-67, <a href="mailto:press@example.ru">press@example.ru</a>, карта '
        '4111 1111 1111 1111, <a href="tg://user?id=123456">Иван</a> /start прочее')
    assert text_of(rendered) == want
    # t.me may leave out the line breaks next to a block; the text is the same
    assert text_of(rendered.replace("<br/><blockquote>", "<blockquote>")
                   .replace("</blockquote><br/>", "</blockquote>")) == want


def test_grouped_documents_are_one_album_and_more_link_without_its_tme_class() -> None:
    docs = "".join(f'<a class="tgme_widget_message_document_wrap" href="https://t.me/realnews/{i}?single">'
                   f'<div class="tgme_widget_message_document_title">q{i}.pdf</div></a>' for i in (60, 61, 62))
    inner = (f'<div class="tgme_widget_message_grouped_wrap js-message_grouped_wrap">{docs}</div>'
             '<div class="tgme_widget_message_text js-message_text">Отчёты Аэрофлота</div>')
    doc = wrap_post(60, inner).replace('<section class="tgme_channel_history js-message_history">',
                                       '<section class="tgme_channel_history"><a class="js-messages_more" '
                                       'data-before="60"></a>')
    page = parse_page(doc, "realnews")
    assert page.before == 60
    assert page.posts[0].member_ids == (60, 61, 62) and page.posts[0].text == "Отчёты Аэрофлота"


def test_forward_links_name_the_origin_channel() -> None:
    posts = real_posts()
    assert posts[211].forward is not None and posts[211].forward.username == "upstream"  # t.me/upstream/77
    assert posts[210].forward is not None and posts[210].forward.username is None  # a user's page: no post
    assert posts[212].forward is not None and posts[212].forward.username is None  # no link at all
    private = parse_page(wrap_post(300, '<div class="tgme_widget_message_forwarded_from accent_color">Forwarded '
                                        'from <a class="tgme_widget_message_forwarded_from_name" '
                                        'href="https://t.me/c/1234567/89"><span dir="auto">Закрытый</span></a></div>'
                                        '<div class="tgme_widget_message_text">текст</div>'), "realnews").posts[0]
    assert private.forward is not None
    assert (private.forward.channel_id, private.forward.message_id, private.forward.username) == (1234567, 89, None)


def test_the_page_names_its_channel_and_unreadable_posts() -> None:
    page = parse_page(REAL, "realnews")
    assert page.channel == "realnews" and page.unreadable == []
    other = parse_page(REAL.replace("@realnews", "@someone_else"), "realnews")
    assert other.channel == "someone_else"
    # a post whose date is missing (a page cut inside it, or changed markup) is neither a post nor a read id
    cut = parse_page(wrap_post(301, '<div class="tgme_widget_message_text">текст</div>').replace("<time", "<tim"),
                     "realnews")
    assert cut.posts == [] and cut.unreadable == [301] and cut.ids == [] and cut.channel == "realnews"
