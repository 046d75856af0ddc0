"""Alert text: escaping per format (post markup stays inert), snippets, templates, digests."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from monitor.alerts.render import (
    AlertView,
    escape,
    fill,
    render_alert,
    render_digests,
    snippet,
    snippet_bounds,
)
from monitor.config import AlertDestination

WJ = "\u2060"
EVIL = "<b>bold</b> *bold* [x](http://evil) @everyone <!channel> «Росатом» снова в новостях"


def _view(text: str = EVIL, entity: str = "Росатом") -> AlertView:
    start = text.index(entity)
    return AlertView(code="a1b2c3", entities=["Росатом", "УКТМК"], channel="@news_ru",
                     date=datetime(2025, 5, 20, 10, 0, tzinfo=UTC), link="https://t.me/news_ru/5", text=text,
                     spans=[(start, start + len(entity))])


def _dest(fmt: str, **kw: object) -> AlertDestination:
    return AlertDestination(name="d", url="json://127.0.0.1/x", format=fmt, **kw)  # type: ignore[arg-type]


def test_html_alert_keeps_post_markup_inert() -> None:
    msg = render_alert(_view(), _dest("html"), ZoneInfo("Europe/Moscow"))
    assert "<b>bold</b>" not in msg.body and "&lt;b&gt;bold&lt;/b&gt;" in msg.body
    assert 'href="http://evil' not in msg.body and "http:" + WJ + "//evil" in msg.body
    assert "@everyone" not in msg.body and "@" + WJ + "everyone" in msg.body
    assert "&lt;!channel&gt;" in msg.body
    # our own markup: the match highlighted, the link to the post, the alert id, the date in the zone
    assert "<b>Росатом</b>" in msg.body
    assert '<a href="https://t.me/news_ru/5">' in msg.body
    assert "#a1b2c3" in msg.body and "20.05.2025 13:00 MSK" in msg.body
    assert msg.title == "Росатом, УКТМК — @news_ru"  # the channel's username copies intact (no U+2060 in it)


def test_markdown_alert_keeps_post_markup_inert() -> None:
    msg = render_alert(_view(), _dest("markdown"), ZoneInfo("UTC"))
    assert r"\*bold\*" in msg.body and " *bold* " not in msg.body
    assert r"\[x\]\(http:" + WJ + r"//evil\)" in msg.body and "](http://evil)" not in msg.body
    assert r"\<b\>" in msg.body
    assert "@" + WJ + "everyone" in msg.body
    assert "**Росатом**" in msg.body and "<https://t.me/news_ru/5>" in msg.body


def test_text_alert_breaks_mentions_and_links() -> None:
    msg = render_alert(_view(), _dest("text"), ZoneInfo("UTC"))
    assert "@everyone" not in msg.body and "http://evil" not in msg.body
    assert "«[Росатом]»" in msg.body  # highlighted inside the post's own quotes
    assert "https://t.me/news_ru/5" in msg.body  # our own link is intact


@pytest.mark.parametrize("fmt", ["text", "markdown", "html"])
def test_escape_neutralises_mentions_in_every_format(fmt: str) -> None:
    for s in ("@everyone", "@here", "＠everyone", "www.evil.example", "javascript:alert(1)"):
        out = escape(s, fmt)
        assert WJ in out, (fmt, s, out)


def test_snippet_is_about_300_chars_cut_at_sentence_boundaries() -> None:
    before = " ".join(f"Предложение номер {i} о погоде." for i in range(30))
    after = " ".join(f"Дальше идёт фраза {i} без упоминаний." for i in range(30))
    text = f"{before} Вчера Росатом подписал соглашение с УКТМК. {after}"
    s = text.index("Росатом")
    start, end = snippet_bounds(text, [(s, s + 7)])
    assert start < s < end and end - start <= 300
    assert text[start - 2:start] == ". "  # starts at a sentence start
    assert text[end - 1] == "."  # ends at a sentence end
    out = snippet(text, [(s, s + 7)], "html")
    assert out.startswith("… ") and out.endswith(" …") and "<b>Росатом</b>" in out


def test_snippet_without_sentence_cuts_at_word() -> None:
    text = " ".join(["слово"] * 200) + " Росатом " + " ".join(["хвост"] * 200)
    s = text.index("Росатом")
    start, end = snippet_bounds(text, [(s, s + 7)])
    assert text[start - 1] == " " and text[end] == " "
    assert end - start <= 300


def test_short_text_is_whole() -> None:
    assert snippet("Росатом и УКТМК", [(0, 7), (10, 15)], "text") == "[Росатом] и [УКТМК]"


def test_templates_fill_in_one_pass() -> None:
    view = _view("Пост с {link} и {alert_id} внутри про Росатом")
    dest = _dest("text", title_template="[{alert_id}] {entities}", body_template="{snippet} | {link}")
    msg = render_alert(view, dest, ZoneInfo("UTC"))
    assert msg.title == "[a1b2c3] Росатом, УКТМК"
    assert msg.body == "Пост с {link} и {alert_id} внутри про [Росатом] | https://t.me/news_ru/5"
    assert fill("{unknown} {channel}", {"channel": "c"}) == "{unknown} c"


def test_also_in_line_names_other_channels() -> None:
    view = _view()
    view.also_in = ["@second", "@third"]
    msg = render_alert(view, _dest("text"), ZoneInfo("UTC"))
    assert msg.body.replace(WJ, "").endswith("Также в: @second, @third")


def test_digest_lists_every_alert_within_size_limits() -> None:
    views = [AlertView(code=f"c{i:05d}", entities=["Росатом"], channel="@chan", link=f"https://t.me/chan/{i}",
                       date=datetime(2025, 5, 20, tzinfo=UTC)) for i in range(200)]
    parts = render_digests(views, [], _dest("html"), ZoneInfo("UTC"), reason="много")
    assert 1 < len(parts) <= 20
    carried = [i for _, idx in parts for i in idx]
    assert carried == list(range(200))
    for msg, _ in parts:
        assert len(msg.body) < 4000
    assert all(f"#c{i:05d}" in "".join(m.body for m, _ in parts) for i in range(200))


@pytest.mark.parametrize("fmt", ["text", "markdown", "html"])
def test_channel_usernames_copy_intact_but_titles_and_broadcast_names_stay_inert(fmt: str) -> None:
    view = _view()
    view.channel, view.also_in = "@rian_ru", ["@kz_news", "Новости @everyone", "@everyone"]
    msg = render_alert(view, _dest(fmt), ZoneInfo("UTC"))
    plain = "@rian\\_ru" if fmt == "markdown" else "@rian_ru"  # Markdown shows "\_" as "_"
    assert msg.title == "Росатом, УКТМК — " + plain and WJ not in msg.title
    last = msg.body.splitlines()[-1]
    assert last.startswith("Также в: @kz" + ("\\_" if fmt == "markdown" else "_") + "news, ")
    assert "@everyone" not in last and last.count("@" + WJ + "everyone") == 2  # a title's and a label's
    [(digest, _)] = render_digests([view], [], _dest(fmt), ZoneInfo("UTC"), reason="после тихих часов")
    assert plain in digest.body and "@" + WJ + "rian" not in digest.body


def test_markdown_escapes_only_what_markdown_reads() -> None:
    view = _view()
    dest = _dest("markdown", body_template="{date}\n{snippet}")
    msg = render_alert(view, dest, ZoneInfo("Europe/Moscow"))
    assert msg.body.startswith("20.05.2025 13:00 MSK\n")  # was "\\20.05.2025": no escape before a digit
    assert escape("04.12.2026 и 1. пункт", "markdown") == "04.12.2026 и 1. пункт"
    assert escape("1. пункт\n2) второй\n- дефис\n+ плюс\n> цитата\n===", "markdown") == (
        "1\\. пункт\n2\\) второй\n\\- дефис\n\\+ плюс\n\\> цитата\n\\===")
    assert escape("-5% и +7 999", "markdown") == "-5% и +7 999"  # not a list: left alone


@pytest.mark.parametrize(("n", "words"), [(1, "1 упоминание"), (2, "2 упоминания"), (4, "4 упоминания"),
                                          (5, "5 упоминаний"), (11, "11 упоминаний"), (12, "12 упоминаний"),
                                          (21, "21 упоминание"), (22, "22 упоминания"), (111, "111 упоминаний")])
def test_digest_title_uses_the_russian_plural(n: int, words: str) -> None:
    views = [AlertView(code=f"c{i:05d}", entities=["Росатом"], channel="@chan", link=f"https://t.me/chan/{i}",
                       date=datetime(2025, 5, 20, tzinfo=UTC)) for i in range(n)]
    parts = render_digests(views, [], _dest("text"), ZoneInfo("UTC"), reason="после тихих часов")
    assert parts[0][0].title.startswith(f"Сводка: {words}, после тихих часов")
