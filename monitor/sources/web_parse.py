"""Parse one page of a public channel's web preview (``t.me/s/<name>``) into ``Post`` values.

Kept in one small module on purpose: Telegram changes this markup without notice, and every selector the
web source depends on is here. Selectors follow snscrape and RSSHub (see research/telegram.md §4) and
captures of real pages: ``div.tgme_widget_message[data-post]`` per post (``service_message`` ones are
pins and title changes), ``.tgme_widget_message_text`` for the text (``<br>`` is a line break, a block
edge breaks the line once, emoji images are their characters; reply quotes, link previews and forward
headers carry their own text blocks, which are not the post's words; an album's caption sits in two nested
text blocks), ``time[datetime]`` in the footer's date link, ``.tgme_widget_message_views`` (``12.5K``),
the word "edited" in ``.tgme_widget_message_meta`` (beside the signature, ``…_from_author``),
``.tgme_widget_message_forwarded_from`` (a link to a post, a user's page, or no link),
``a.tgme_widget_message_link_preview``, album items as ``…/<id>?single`` links, a post-level
``.message_media_not_supported`` ("Please open Telegram to view this post"; the same notice inside a video
player only says the browser cannot play that file) and ``a.tme_messages_more[data-before]`` for the next
(older) page. Pure: text in, values out.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from selectolax.lexbor import LexborHTMLParser, LexborNode

from monitor.posts import ForwardOrigin, Post

_POST_LINK = re.compile(r"(?:^|/)(?:s/)?(?P<user>[A-Za-z][A-Za-z0-9_]{2,31})/(?P<id>\d+)/?(?:[?#].*)?$")
#: a post of a channel without a username: ``t.me/c/<bare channel id>/<message id>``
_PRIVATE_POST_LINK = re.compile(r"(?:^|/)c/(?P<channel>\d+)/(?P<id>\d+)/?(?:[?#].*)?$")
_USERNAME = re.compile(r"@?([A-Za-z][A-Za-z0-9_]{2,31})")
_BEFORE = re.compile(r"[?&]before=(\d+)")
_VIEWS = re.compile(r"^\s*([\d.,\s\xa0]*\d)\s*([KMB]?)(?:\s+\w+)?\s*$", re.I)
_BLOCKS = frozenset({"div", "p", "blockquote", "pre", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "table",
                     "tr", "section", "article", "header", "footer", "figure", "figcaption", "hr", "details",
                     "summary"})
#: whitespace around a newline in the page's source: the markup's formatting, not a line of the post (t.me
#: writes the post's own line breaks as ``<br>``); it separates words like a space, as a browser shows it
_SOURCE_BREAK = re.compile(r"[ \t\f\r]*[\r\n][ \t\f\r\n]*")
#: containers inside a message whose text is not the post's own words
_FOREIGN = ("tgme_widget_message_reply", "tgme_widget_message_link_preview", "tgme_widget_message_forwarded_from",
            "tgme_widget_message_author", "tgme_widget_message_footer", "message_media_not_supported",
            "tgme_widget_message_poll", "tgme_widget_message_document_wrap", "tgme_widget_message_inline_keyboard")
#: media elements: a "not supported" notice inside one is about that file, not about the post
_MEDIA = ("tgme_widget_message_video_player", "tgme_widget_message_photo_wrap", "tgme_widget_message_grouped_wrap",
          "tgme_widget_message_roundvideo_player", "tgme_widget_message_voice_player",
          "tgme_widget_message_document_wrap", "tgme_widget_message_link_preview", "tgme_widget_message_reply",
          "link_preview_video_player", "tgme_widget_message_sticker_wrap", "tgme_widget_message_location_wrap")
#: parts of a message whose links are not its own media
_NOT_MEDIA = ("tgme_widget_message_reply", "tgme_widget_message_link_preview", "tgme_widget_message_text",
              "tgme_widget_message_forwarded_from", "tgme_widget_message_inline_keyboard")
#: labels of notices that only say a file cannot be played here ("This media is not supported in your
#: browser", "Media is too big"); the post itself is shown whole
_MEDIA_ONLY_NOTICE = re.compile(r"browser|too big|too large|браузер|слишком", re.I)


@dataclass(slots=True)
class WebPage:
    """One parsed page: posts oldest first, the ``before`` id of the next older page, channel facts."""

    is_channel: bool  # the page is a channel's message history (a redirect or plain page is not)
    posts: list[Post] = field(default_factory=list)
    before: int | None = None  # ?before= value for the next older page, None at the channel's start
    title: str | None = None
    service_ids: list[int] = field(default_factory=list)  # ids of service messages (pins, title changes)
    ids: list[int] = field(default_factory=list)  # every message id the page shows and read (posts and service)
    #: the channel the page is of, as it names itself (header ``@username``, else its posts' ``data-post``)
    channel: str | None = None
    #: ids of posts the page shows but that could not be read (no date: markup cut short or changed); a
    #: poll must not move its cursor past them
    unreadable: list[int] = field(default_factory=list)

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
        page.title = _clean(_text(title, [])) or None
    page.channel = _page_channel(tree, wraps)
    for node in wraps:
        ref = (node.attributes.get("data-post") or "").strip()
        user, _, num = ref.rpartition("/")
        if not num.isdigit():
            continue
        if username and user and user.lower() != username.lower():
            continue
        mid = int(num)
        if _has_class(node, "service_message") or node.css_first(".tgme_widget_message_service_date") is not None \
                or node.css_first(".service_message") is not None:
            page.ids.append(mid)
            page.service_ids.append(mid)
            continue
        post = parse_message(node, mid)
        if post is None:
            page.unreadable.append(mid)
            continue
        page.ids.append(mid)
        page.posts.append(post)
        page.ids.extend(i for i in post.member_ids if i != mid)
    page.posts.sort(key=lambda p: p.message_id)
    page.before = _before(tree)
    return page


def _page_channel(tree: LexborHTMLParser, wraps: list[LexborNode]) -> str | None:
    """The username the page is of: the channel header's ``@username``, else the one most of its posts'
    ``data-post`` name; None when the page names none (a page that is no preview at all)."""
    head = tree.css_first(".tgme_channel_info_header_username")
    if head is not None:
        m = _USERNAME.fullmatch(_clean(head.text(deep=True)))
        if m:
            return m.group(1)
    names: dict[str, int] = {}
    for node in wraps:
        user = (node.attributes.get("data-post") or "").strip().rpartition("/")[0]
        if _USERNAME.fullmatch(user):
            names[user] = names.get(user, 0) + 1
    return max(names, key=lambda k: names[k]) if names else None


def _before(tree: LexborHTMLParser) -> int | None:
    """The ``?before=`` id of the next older page: the "load more" link at the top of the history, else the
    head's ``<link rel="prev">``; None at the channel's start (neither is there)."""
    for more in tree.css("a.tme_messages_more[data-before], a.js-messages_more[data-before]"):
        b = (more.attributes.get("data-before") or "").strip()
        if b.isdigit() and int(b) > 0:
            return int(b)
    for link in tree.css("link[rel=prev][href]"):
        m = _BEFORE.search(link.attributes.get("href") or "")
        if m and int(m.group(1)) > 0:
            return int(m.group(1))
    return None


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
        options = [_text(o, []) for o in node.css(".tgme_widget_message_poll_option_text")]
        text = "\n".join(t for t in [_text(poll, []), *options] if t)
    incomplete = _unsupported(node)
    forward = _forward(node)
    preview, preview_href = _link_preview(node)
    members = _album_ids(node, mid)
    ids = sorted({mid, *members})
    raw: dict[str, Any] = {"source": "web", "data_post_id": mid}
    if links:
        raw["links"] = links
    if preview_href:
        raw["link_preview_url"] = preview_href
    if _edited(node):
        raw["edited"] = True  # the preview shows an "edited" mark but no edit time
    author = node.css_first(".tgme_widget_message_from_author")
    if author is not None and _clean(author.text(deep=True)):
        raw["author"] = _clean(author.text(deep=True))
    reply = node.css_first("a.tgme_widget_message_reply[href]")
    if reply is not None:
        m = _POST_LINK.search((reply.attributes.get("href") or "").split("://", 1)[-1])
        if m:
            raw["reply_to_message_id"] = int(m.group("id"))
    views = _views(node)
    return Post(
        message_id=ids[0], date=date, text=text, views=views, forward=forward,
        album_id=ids[0] if len(ids) > 1 else None, member_ids=tuple(ids) if len(ids) > 1 else (),
        link_preview=preview, incomplete=incomplete, raw=raw,
    )


def _has_class(node: LexborNode, cls: str) -> bool:
    return cls in (node.attributes.get("class") or "").split()


def _inside(node: LexborNode, stop: LexborNode, classes: tuple[str, ...]) -> bool:
    """Whether an ancestor of ``node`` below ``stop`` carries one of ``classes``."""
    p = node.parent
    while p is not None and p.mem_id != stop.mem_id:
        names = (p.attributes.get("class") or "").split()
        if any(c in names for c in classes):
            return True
        p = p.parent
    return False


def _own_text_node(node: LexborNode) -> LexborNode | None:
    """The post's own text block: not a quoted reply's, a link preview's or a forward header's."""
    for cand in node.css(".tgme_widget_message_text"):
        if not _inside(cand, node, _FOREIGN):
            return cand
    return None


def _unsupported(node: LexborNode) -> bool:
    """The preview cannot show this post whole ("Please open Telegram to view this post"). A notice inside a
    video, album or sticker ("This media is not supported in your browser", "Media is too big") is about
    playing that file, not about the post."""
    for box in node.css(".message_media_not_supported"):
        if _inside(box, node, _MEDIA):
            continue
        label = box.css_first(".message_media_not_supported_label")
        if _MEDIA_ONLY_NOTICE.search(_clean((label or box).text(deep=True))):
            continue
        return True
    return False


def _edited(node: LexborNode) -> bool:
    """The footer's meta holds the date link, an optional signature and, for an edited post, a word
    ("edited"): any word left once the date and the signature are taken out is the edit mark."""
    meta = node.css_first(".tgme_widget_message_meta")
    if meta is None:
        return False
    text = meta.text(deep=True)
    for cls in (".tgme_widget_message_date", ".tgme_widget_message_from_author", "time"):
        for sub in meta.css(cls):
            part = sub.text(deep=True)
            if part:
                text = text.replace(part, " ", 1)
    return re.search(r"[^\W\d_]", text) is not None


def _text(node: LexborNode, links: list[str]) -> str:
    """Visible text: ``<br>`` is a line break and so is the edge of a block (``<div>``, ``<blockquote>``,
    ``<pre>``; never two where a ``<br>`` already breaks the line), link texts are kept (their hrefs go to
    ``links``), emoji images are their characters, and whitespace around a newline in the page's source is
    one space (a browser shows it so; ``<pre>`` keeps its lines). Everything else is kept as written, so the
    text equals the message's own text as the API and an export give it."""
    out: list[str] = []
    state = {"block": False, "space": False}  # a block edge / a source line break waits before the next text

    def emit(s: str) -> None:
        if not s:
            return
        if state["block"] and out and not out[-1].endswith("\n") and not s.startswith("\n"):
            out.append("\n")
        elif state["space"] and out and not out[-1].endswith(("\n", " ", "\xa0")) \
                and not s.startswith(("\n", " ", "\xa0")):
            out.append(" ")
        state["block"] = state["space"] = False
        out.append(s)

    def walk(n: LexborNode, pre: bool) -> None:
        child = n.child
        while child is not None:
            tag = child.tag
            if tag == "-text":
                t = (child.text(deep=False) or "").replace("\r\n", "\n")
                if pre:
                    emit(t)
                else:
                    for i, piece in enumerate(_SOURCE_BREAK.split(t)):
                        if i:
                            state["space"] = True
                        emit(piece)
            elif tag == "br":
                emit("\n")
            elif tag in ("script", "style", "-comment", "svg", "template"):
                pass
            elif tag == "img":
                alt = child.attributes.get("alt")
                if alt and "emoji" in (child.attributes.get("class") or ""):
                    emit(alt)
            else:
                if tag == "a":
                    href = child.attributes.get("href")
                    if href:
                        links.append(_unescape_href(href))
                block = tag in _BLOCKS
                if block:
                    state["block"] = True
                walk(child, pre or tag == "pre")
                if block:
                    state["block"] = True
            child = child.next

    walk(node, False)
    return "".join(out).replace("\r", "\n").strip()


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
    """``44`` → 44, ``12.5K`` → 12500, ``1.2M`` → 1200000 (the preview rounds them); ``1,234`` → 1234."""
    m = _VIEWS.match(text or "")
    if not m:
        return None
    digits = re.sub(r"[\s\xa0]", "", m.group(1))
    suffix = m.group(2).upper()
    if not suffix:  # a plain count; any separator is a thousands separator
        plain = digits.replace(",", "").replace(".", "")
        return int(plain) if plain.isdigit() else None
    try:
        num = float(digits.replace(",", "."))
    except ValueError:
        return None
    return round(num * {"K": 1_000, "M": 1_000_000, "B": 1_000_000_000}[suffix])


def _views(node: LexborNode) -> int | None:
    v = node.css_first(".tgme_widget_message_views")
    return parse_views(v.text(deep=True)) if v is not None else None


def _forward(node: LexborNode) -> ForwardOrigin | None:
    """``Forwarded from <a class="…_forwarded_from_name" href="https://t.me/src/77">Name</a>`` (the link
    is missing for a hidden sender, and points at a user or channel page rather than a post at times). A
    link to a post names the origin channel: by username (``t.me/src/77``, lower-cased) or, for a channel
    without one, by its id (``t.me/c/1234567/77``); a link to a page alone names no origin post."""
    box = node.css_first(".tgme_widget_message_forwarded_from")
    if box is None:
        return None
    name_node = box.css_first(".tgme_widget_message_forwarded_from_name")
    name = _clean(_text(name_node, [])) if name_node is not None else ""
    if not name:
        whole = _clean(_text(box, []))
        author = box.css_first(".tgme_widget_message_forwarded_from_author")
        if author is not None:
            whole = whole.replace(_clean(author.text(deep=True)), "").strip()
        name = re.sub(r"^\s*(?:Forwarded from|Переслано из)\s*:?\s*", "", whole, flags=re.I)
    msg_id: int | None = None
    channel_id: int | None = None
    origin: str | None = None
    href = (name_node.attributes.get("href") if name_node is not None else None) or (
        box.attributes.get("href") if box.tag == "a" else None)
    if href:
        where = href.split("://", 1)[-1]
        if m := _PRIVATE_POST_LINK.search(where):
            channel_id, msg_id = int(m.group("channel")), int(m.group("id"))
        elif m := _POST_LINK.search(where):
            origin, msg_id = m.group("user").lower(), int(m.group("id"))
    return ForwardOrigin(channel_id=channel_id, message_id=msg_id, name=name or None, username=origin)


def _link_preview(node: LexborNode) -> tuple[str | None, str | None]:
    box = node.css_first("a.tgme_widget_message_link_preview") or node.css_first(".tgme_widget_message_link_preview")
    if box is None:
        return None, None
    parts = []
    for cls in ("link_preview_site_name", "link_preview_title", "link_preview_description"):
        n = box.css_first("." + cls)
        if n is not None:
            t = _text(n, [])
            if t:
                parts.append(t)
    href = box.attributes.get("href")
    return ("\n".join(parts) or None), (_unescape_href(href) if href else None)


def _album_ids(node: LexborNode, mid: int) -> list[int]:
    """Ids of an album's items: each item (photo, video, document) links to ``https://t.me/<channel>/<id>?single``.
    Only links of this channel near the widget's id count (an album holds at most 10 items with consecutive
    ids, but for deleted ones), and none inside a quoted reply, a link preview or the text."""
    ids = []
    channel = ((node.attributes.get("data-post") or "").rpartition("/")[0]).lower()
    for a in node.css("a[href]"):
        href = a.attributes.get("href") or ""
        if "?single" not in href or _inside(a, node, _NOT_MEDIA):
            continue
        m = _POST_LINK.search(href.split("?", 1)[0].split("://", 1)[-1])
        if not m or (channel and m.group("user").lower() != channel):
            continue
        n = int(m.group("id"))
        if abs(n - mid) < 20:
            ids.append(n)
    return ids
