"""Parse one page of a public channel's web preview (``t.me/s/<name>``) into ``Post`` values.

Kept in one small module on purpose: Telegram changes this markup without notice, and every selector the
web source depends on is here. Selectors follow snscrape and RSSHub (see research/telegram.md §4):
``div.tgme_widget_message[data-post]`` per post, ``.tgme_widget_message_text`` for the text (``<br>`` is
a line break; reply quotes and link previews carry their own text blocks, which are not the post's
words), ``time[datetime]`` in the footer's date link, ``.tgme_widget_message_views`` (``12.5K``),
``.tgme_widget_message_forwarded_from``, ``a.tgme_widget_message_link_preview``,
``.message_media_not_supported`` ("Please open Telegram to view this post") and
``a.tme_messages_more[data-before]`` for the next (older) page. Pure: text in, values out.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from selectolax.lexbor import LexborHTMLParser, LexborNode

from monitor.posts import ForwardOrigin, Post

_POST_LINK = re.compile(r"(?:^|/)(?:s/)?(?P<user>[A-Za-z][A-Za-z0-9_]{2,31})/(?P<id>\d+)(?:[?#].*)?$")
_VIEWS = re.compile(r"^\s*([\d.,]+)\s*([KMB]?)\s*$", re.I)
_BLOCKS = {"div", "p", "blockquote", "pre", "li", "ul", "ol", "h1", "h2", "h3", "h4"}
#: containers inside a message whose text is not the post's own words
_FOREIGN = ("tgme_widget_message_reply", "tgme_widget_message_link_preview", "tgme_widget_message_forwarded_from",
            "tgme_widget_message_author", "tgme_widget_message_footer", "message_media_not_supported")


@dataclass(slots=True)
class WebPage:
    """One parsed page: posts oldest first, the ``before`` id of the next older page, channel facts."""

    is_channel: bool  # the page is a channel's message history (a redirect or plain page is not)
    posts: list[Post] = field(default_factory=list)
    before: int | None = None  # ?before= value for the next older page, None at the channel's start
    title: str | None = None
    service_ids: list[int] = field(default_factory=list)  # ids of service messages (pins, title changes)
    ids: list[int] = field(default_factory=list)  # every message id the page shows (posts and service)

    @property
    def newest_id(self) -> int | None:
        return max(self.ids) if self.ids else None

    @property
    def oldest_id(self) -> int | None:
        return min(self.ids) if self.ids else None


def parse_page(doc: str, username: str | None = None) -> WebPage:
    """Parse the HTML of ``/s/<username>`` (optionally ``?before=N``). Posts of other channels (a page
    never holds them, but a changed layout might) are ignored when ``username`` is given."""
    tree = LexborHTMLParser(doc)
    history = tree.css_first(".tgme_channel_history")
    wraps = tree.css("div.tgme_widget_message[data-post]")
    page = WebPage(is_channel=history is not None or bool(wraps))
    title = tree.css_first(".tgme_channel_info_header_title")
    if title is not None:
        page.title = _clean(title.text(deep=True)) or None
    for node in wraps:
        ref = (node.attributes.get("data-post") or "").strip()
        user, _, num = ref.rpartition("/")
        if not num.isdigit():
            continue
        if username and user and user.lower() != username.lower():
            continue
        mid = int(num)
        page.ids.append(mid)
        if _has_class(node, "service_message") or node.css_first(".tgme_widget_message_service_date") is not None \
                or node.css_first(".service_message") is not None:
            page.service_ids.append(mid)
            continue
        post = parse_message(node, mid)
        if post is not None:
            page.posts.append(post)
            page.ids.extend(i for i in post.member_ids if i != mid)
    page.posts.sort(key=lambda p: p.message_id)
    more = tree.css_first("a.tme_messages_more[data-before]")
    if more is not None:
        b = (more.attributes.get("data-before") or "").strip()
        if b.isdigit():
            page.before = int(b)
    return page


def parse_message(node: LexborNode, mid: int) -> Post | None:
    """One ``div.tgme_widget_message`` → Post (None when it has no date: not a real message)."""
    date = _date(node)
    if date is None:
        return None
    text_node = _own_text_node(node)
    links: list[str] = []
    text = _text(text_node, links) if text_node is not None else ""
    poll = node.css_first(".tgme_widget_message_poll_question")
    if not text and poll is not None:
        options = [_clean(o.text(deep=True)) for o in node.css(".tgme_widget_message_poll_option_text")]
        text = "\n".join([_clean(poll.text(deep=True)), *options])
    incomplete = node.css_first(".message_media_not_supported") is not None
    forward = _forward(node)
    preview, preview_href = _link_preview(node)
    members = _album_ids(node)
    ids = sorted({mid, *members})
    meta = node.css_first(".tgme_widget_message_meta")
    edited = meta is not None and "edited" in meta.text(deep=True).lower()
    raw: dict[str, Any] = {"source": "web", "data_post_id": mid}
    if links:
        raw["links"] = links
    if preview_href:
        raw["link_preview_url"] = preview_href
    if edited:
        raw["edited"] = True  # the preview shows an "edited" mark but no edit time
    views = _views(node)
    return Post(
        message_id=ids[0], date=date, text=text, views=views, forward=forward,
        album_id=ids[0] if len(ids) > 1 else None, member_ids=tuple(ids) if len(ids) > 1 else (),
        link_preview=preview, incomplete=incomplete, raw=raw,
    )


def _has_class(node: LexborNode, cls: str) -> bool:
    return cls in (node.attributes.get("class") or "").split()


def _inside_foreign(node: LexborNode, stop: LexborNode) -> bool:
    p = node.parent
    while p is not None and p is not stop and p.mem_id != stop.mem_id:
        classes = (p.attributes.get("class") or "").split()
        if any(c in classes for c in _FOREIGN):
            return True
        p = p.parent
    return False


def _own_text_node(node: LexborNode) -> LexborNode | None:
    """The post's own text block: not a quoted reply's, a link preview's or a forward header's."""
    for cand in node.css(".tgme_widget_message_text"):
        if not _inside_foreign(cand, node):
            return cand
    return None


def _text(node: LexborNode, links: list[str]) -> str:
    """Visible text with ``<br>`` as newlines, link texts kept (hrefs collected), emoji as characters."""
    out: list[str] = []

    def walk(n: LexborNode) -> None:
        child = n.child
        while child is not None:
            tag = child.tag
            if tag == "-text":
                out.append(child.text(deep=False) or "")
            elif tag == "br":
                out.append("\n")
            elif tag in ("script", "style", "-comment"):
                pass
            else:
                if tag == "a":
                    href = child.attributes.get("href")
                    if href:
                        links.append(_unescape_href(href))
                if tag in _BLOCKS and out and not out[-1].endswith("\n"):
                    out.append("\n")
                walk(child)
                if tag in _BLOCKS and out and not out[-1].endswith("\n"):
                    out.append("\n")
            child = child.next

    walk(node)
    text = "".join(out).replace("\xa0", " ").replace("\r", "")
    return "\n".join(line.rstrip() for line in text.strip("\n").split("\n")).strip()


def _unescape_href(href: str) -> str:
    # Since 2024 t.me/s double-escapes '&' in links ('&amp;amp;'): the parser undoes one level, we the other.
    return html.unescape(href) if "&amp;" in href else href


def _clean(s: str | None) -> str:
    return " ".join((s or "").split())


def _date(node: LexborNode) -> datetime | None:
    t = node.css_first(".tgme_widget_message_date time[datetime]") or node.css_first("time[datetime]")
    if t is None:
        return None
    value = (t.attributes.get("datetime") or "").strip()
    try:
        d = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)


def parse_views(text: str) -> int | None:
    """``44`` → 44, ``12.5K`` → 12500, ``1.2M`` → 1200000 (the preview rounds them)."""
    m = _VIEWS.match(text or "")
    if not m:
        return None
    digits, suffix = m.group(1), m.group(2).upper()
    if not suffix:  # a plain count; any separator is a thousands separator
        plain = digits.replace(",", "").replace(".", "")
        return int(plain) if plain else None
    try:
        num = float(digits.replace(",", "."))
    except ValueError:
        return None
    return round(num * {"K": 1_000, "M": 1_000_000, "B": 1_000_000_000}[suffix])


def _views(node: LexborNode) -> int | None:
    v = node.css_first(".tgme_widget_message_views")
    return parse_views(v.text(deep=True)) if v is not None else None


def _forward(node: LexborNode) -> ForwardOrigin | None:
    box = node.css_first(".tgme_widget_message_forwarded_from")
    if box is None:
        return None
    name_node = box.css_first(".tgme_widget_message_forwarded_from_name")
    name = _clean(name_node.text(deep=True)) if name_node is not None else ""
    if not name:
        name = re.sub(r"^\s*Forwarded from\s*", "", _clean(box.text(deep=True)), flags=re.I)
    msg_id: int | None = None
    href = name_node.attributes.get("href") if name_node is not None else None
    if href:
        m = _POST_LINK.search(href.split("://", 1)[-1])
        if m:
            msg_id = int(m.group("id"))
    return ForwardOrigin(channel_id=None, message_id=msg_id, name=name or None)


def _link_preview(node: LexborNode) -> tuple[str | None, str | None]:
    box = node.css_first("a.tgme_widget_message_link_preview") or node.css_first(".tgme_widget_message_link_preview")
    if box is None:
        return None, None
    parts = []
    for cls in ("link_preview_site_name", "link_preview_title", "link_preview_description"):
        n = box.css_first("." + cls)
        if n is not None:
            links: list[str] = []
            t = _text(n, links)
            if t:
                parts.append(t)
    href = box.attributes.get("href")
    return ("\n".join(parts) or None), (_unescape_href(href) if href else None)


def _album_ids(node: LexborNode) -> list[int]:
    """Ids of an album's items (their links end in ``/<id>?single``)."""
    ids = []
    for a in node.css(".tgme_widget_message_grouped_wrap a[href]"):
        href = a.attributes.get("href") or ""
        if "?single" in href:
            m = _POST_LINK.search(href.split("?", 1)[0].split("://", 1)[-1])
            if m:
                ids.append(int(m.group("id")))
    return ids
