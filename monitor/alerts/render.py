"""Alert text: titles and bodies from templates, a highlighted snippet, escaping per destination format.

Everything that comes from a post (its text, the channel's title) is escaped for the destination's
format *before* it is put into a template, so a post cannot inject markup, mentions (``@everyone``) or
links into an alert. The template itself is the operator's and is used as written. Placeholders are
filled in one pass, so a value that happens to contain ``{link}`` is never expanded again.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from monitor.config import AlertDestination

SNIPPET_CHARS = 300
DIGEST_MAX_ITEMS = 50
DIGEST_MAX_CHARS = 3500  # Telegram refuses messages over 4096 characters; leave room for the title

DEFAULT_TITLE = "{entities} — {channel}"
DEFAULT_BODY = "{snippet}\n\n{channel}, {date}\n{link}\n#{alert_id}"

_WJ = "\u2060"  # WORD JOINER: invisible, but breaks mention and link detection
_MENTION = re.compile(r"([@＠])(?=[\w!])", re.UNICODE)  # @everyone, @here, @username; Slack's <!channel>
_SCHEME = re.compile(r"(?i)\b((?:https?|ftp|tg|mailto|javascript|data):)(//)?")
_WWW = re.compile(r"(?i)\b(www)\.")
_MD_ANYWHERE = re.compile(r"([\\`*_\[\]()<>~|#{}!])")
# Markdown reads these only at the start of a line: a list item ("- ", "+ ", "1. ", "1) "), a quote (">"),
# a setext heading's underline ("===", "---"). Only they are escaped there, and a numbered item by its
# "." or ")" (a backslash before a digit is no escape in Markdown: "04.12.2026" showed as "\04.12.2026").
_MD_LINE_START = re.compile(r"(?m)^(\s*)(?:([-+>])(?=\s|$)|(>)|(\d+)([.)])(?=\s|$)|([=-])(?=[=-]*\s*$))")
# A channel label that is a Telegram username (letters, digits, _): it carries no markup and no link, so it
# is shown as written — copyable, and a link to the channel where the chat app makes one — except the
# names chat apps treat as a mention of everybody.
_USERNAME_LABEL = re.compile(r"@[A-Za-z][A-Za-z0-9_]{2,31}")
_BROADCAST = frozenset({"all", "channel", "everyone", "group", "here"})
_PLACEHOLDER = re.compile(r"\{(entities|channel|date|snippet|link|alert_id)\}")
_SENTENCE_END = re.compile(r"[.!?…](?:[»\")\]]*)\s+|\n+")


@dataclass(slots=True)
class Message:
    """One message to one destination."""

    title: str
    body: str


@dataclass(slots=True)
class AlertView:
    """What rendering needs to know about one outbox row (loaded by deliver.py)."""

    code: str
    kind: str = "match"  # match | operator | followup
    entities: list[str] = field(default_factory=list)
    channel: str = ""
    also_in: list[str] = field(default_factory=list)
    date: datetime | None = None
    link: str | None = None
    text: str = ""
    spans: list[tuple[int, int]] = field(default_factory=list)
    title: str | None = None  # operator alerts carry their own text; a follow-up names the alert it follows
    body: str | None = None


# --------------------------------------------------------------------------- escaping


def neutralise(text: str) -> str:
    """Break mentions and link schemes with an invisible word joiner (every format)."""
    text = _MENTION.sub(lambda m: m.group(1) + _WJ, text)
    text = _SCHEME.sub(lambda m: m.group(1) + _WJ + (m.group(2) or ""), text)
    return _WWW.sub(lambda m: m.group(1) + _WJ + ".", text)


def _md_line_start(m: re.Match[str]) -> str:
    lead, mark, quote, digits, dot, rule = m.groups()
    if digits is not None:
        return f"{lead}{digits}\\{dot}"
    return f"{lead}\\{mark or quote or rule}"


def _markup(text: str, fmt: str) -> str:
    """``text`` with the format's markup characters escaped (no mention or link breaking)."""
    if fmt == "html":
        return html.escape(text, quote=True)
    if fmt == "markdown":
        return _MD_LINE_START.sub(_md_line_start, _MD_ANYWHERE.sub(r"\\\1", text))
    return text


def escape(text: str, fmt: str) -> str:
    """``text`` made inert for a ``text``, ``markdown`` or ``html`` message."""
    return neutralise(_markup(text, fmt))


def channel_ref(label: str, fmt: str) -> str:
    """A channel's label for a message: an ``@username`` as written (no invisible character in it, so it
    copies intact), a title or anything else escaped like post text."""
    if _USERNAME_LABEL.fullmatch(label) and label[1:].lower() not in _BROADCAST:
        return _markup(label, fmt)
    return escape(label, fmt)


def _channels(labels: Sequence[str], fmt: str) -> str:
    return ", ".join(channel_ref(c, fmt) for c in labels)


def mentions_phrase(n: int) -> str:
    """``1 упоминание``, ``3 упоминания``, ``5 упоминаний``, ``21 упоминание`` (Russian plural forms)."""
    if n % 10 == 1 and n % 100 != 11:
        word = "упоминание"
    elif 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        word = "упоминания"
    else:
        word = "упоминаний"
    return f"{n} {word}"


def _highlight(escaped: str, fmt: str) -> str:
    if fmt == "html":
        return f"<b>{escaped}</b>"
    if fmt == "markdown":
        return f"**{escaped}**"
    # Plain text has no bold; «» would read as the post's own quotes (Russian quotes names with them).
    return f"[{escaped}]"


def _link(url: str | None, fmt: str) -> str:
    if not url:
        return ""
    if fmt == "html":
        u = html.escape(url, quote=True)
        return f'<a href="{u}">{u}</a>'
    if fmt == "markdown":
        return f"<{url}>"
    return url


# --------------------------------------------------------------------------- snippet


def snippet_bounds(text: str, spans: Sequence[tuple[int, int]], limit: int = SNIPPET_CHARS) -> tuple[int, int]:
    """A window of about ``limit`` characters around the first match, cut at a sentence or word boundary."""
    n = len(text)
    if n <= limit:
        return 0, n
    first = min((s for s, _ in spans), default=0)
    first_end = min((e for s, e in spans if s == first), default=first)
    start = max(0, min(first - limit // 3, n - limit))
    if start > 0:
        # the earliest sentence start between the window start and the match keeps the most context
        m = next((m for m in _SENTENCE_END.finditer(text, max(0, start - 1), first) if m.end() >= start), None)
        if m is not None and m.end() <= first:
            start = m.end()
        else:
            ws = text.find(" ", start, first)
            start = ws + 1 if ws != -1 else start
    end = min(n, start + limit)
    if end < n:
        cut = None
        for m in _SENTENCE_END.finditer(text, max(first_end, start + limit * 6 // 10), end):
            cut = m.start() + 1 if text[m.start()] != "\n" else m.start()
        if cut is None:
            ws = text.rfind(" ", max(first_end, start + limit // 2), end)
            cut = ws if ws != -1 else end
        end = max(cut, first_end)
    return start, end


def snippet(text: str, spans: Sequence[tuple[int, int]], fmt: str, limit: int = SNIPPET_CHARS) -> str:
    """The escaped snippet with every match inside it highlighted; ``…`` where text was cut."""
    if not text:
        return ""
    start, end = snippet_bounds(text, spans, limit)
    inside = sorted((max(s, start), min(e, end)) for s, e in spans if s < end and e > start)
    out: list[str] = []
    pos = start
    for s, e in inside:
        if s < pos:  # overlapping spans (an alias inside a longer one): keep the first
            continue
        out.append(escape(text[pos:s], fmt))
        out.append(_highlight(escape(text[s:e], fmt), fmt))
        pos = e
    out.append(escape(text[pos:end], fmt))
    body = "".join(out).strip()
    return ("… " if start > 0 else "") + body + (" …" if end < len(text) else "")


# --------------------------------------------------------------------------- messages


def format_date(dt: datetime | None, tz: ZoneInfo) -> str:
    """``20.05.2025 13:00 MSK`` in the delivery time zone."""
    if dt is None:
        return ""
    local = dt.astimezone(tz)
    return local.strftime("%d.%m.%Y %H:%M ") + (local.tzname() or tz.key)


def fill(template: str, values: dict[str, str]) -> str:
    """Replace the known placeholders in one pass (values are never expanded again)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), template)


def render_alert(view: AlertView, dest: AlertDestination, tz: ZoneInfo) -> Message:
    """One alert (a match or an operator alert) for one destination."""
    fmt = dest.format
    if view.kind == "operator":
        return Message(title=escape(view.title or "tgmonitor", fmt),
                       body=escape(view.body or "", fmt) + f"\n#{view.code}")
    values = {
        "entities": escape(", ".join(view.entities), fmt),
        "channel": channel_ref(view.channel, fmt),
        "date": escape(format_date(view.date, tz), fmt),
        "snippet": snippet(view.text, view.spans, fmt),
        "link": _link(view.link, fmt),
        "alert_id": view.code,
    }
    title = fill(dest.title_template or DEFAULT_TITLE, values)
    body = fill(dest.body_template or DEFAULT_BODY, values)
    if view.also_in:
        body += "\n" + escape("Также в: ", fmt) + _channels(view.also_in, fmt)
    return Message(title=title, body=body)


def followup_lines(views: Sequence[AlertView], fmt: str) -> list[str]:
    """``#a1b2c3 также в: @b, @c`` for already sent alerts whose story other channels reposted."""
    by_code: dict[str, list[str]] = {}
    for v in views:
        chans = by_code.setdefault(v.title or v.code, [])
        chans.extend(c for c in v.also_in if c not in chans)
    return [f"#{code} " + escape("также в: ", fmt) + _channels(chans, fmt) for code, chans in by_code.items()]


def with_followups(msg: Message, followups: Sequence[AlertView], fmt: str) -> Message:
    """``msg`` with a closing section about earlier alerts' reposts (they ride along, no extra ping)."""
    if not followups:
        return msg
    head = escape("Ранее отправленные истории повторили:", fmt)
    return Message(msg.title, msg.body + "\n\n" + head + "\n" + "\n".join(followup_lines(followups, fmt)))


def render_followups(followups: Sequence[AlertView], dest: AlertDestination) -> Message:
    """A message of follow-ups alone (sent only when nothing else has gone to the destination for a while)."""
    fmt = dest.format
    return Message(escape("Повторы уже отправленных историй", fmt), "\n".join(followup_lines(followups, fmt)))


def _digest_line(view: AlertView, fmt: str, tz: ZoneInfo) -> str:
    if view.kind == "operator":
        return "⚠ " + escape(f"{view.title or ''}: {view.body or ''}", fmt) + f" #{view.code}"
    head = escape(f"{', '.join(view.entities)} — ", fmt) + channel_ref(view.channel, fmt)
    if fmt == "html":
        head = f"<b>{head}</b>"
    elif fmt == "markdown":
        head = f"**{head}**"
    parts = [f"• {head}", escape(format_date(view.date, tz), fmt), _link(view.link, fmt), f"#{view.code}"]
    line = " ".join(p for p in parts if p)
    if view.also_in:
        line += " " + escape("(также в: ", fmt) + _channels(view.also_in, fmt) + escape(")", fmt)
    return line


def render_digests(
    views: Sequence[AlertView],
    followups: Sequence[AlertView],
    dest: AlertDestination,
    tz: ZoneInfo,
    *,
    reason: str,
) -> list[tuple[Message, list[int]]]:
    """The alerts as digest messages (each within Telegram's size limit), with the indexes they carry.

    ``reason`` is a short Russian phrase for the title (``после тихих часов``, ``много упоминаний``)."""
    fmt = dest.format
    lines = [_digest_line(v, fmt, tz) for v in views]
    chunks: list[list[int]] = []
    cur: list[int] = []
    size = 0
    for i, line in enumerate(lines):
        if cur and (len(cur) >= DIGEST_MAX_ITEMS or size + len(line) + 1 > DIGEST_MAX_CHARS):
            chunks.append(cur)
            cur, size = [], 0
        cur.append(i)
        size += len(line) + 1
    if cur:
        chunks.append(cur)
    out: list[tuple[Message, list[int]]] = []
    for n, idx in enumerate(chunks, 1):
        part = f" (часть {n}/{len(chunks)})" if len(chunks) > 1 else ""
        title = escape(f"Сводка: {mentions_phrase(len(views))}, {reason}{part}", fmt)
        msg = Message(title, "\n".join(lines[i] for i in idx))
        if n == len(chunks):
            msg = with_followups(msg, followups, fmt)
        out.append((msg, idx))
    return out


def render_test(dest: AlertDestination) -> Message:
    """The ``alerts test`` message."""
    return Message(escape("tgmonitor: проверка", dest.format),
                   escape(f"Тестовое сообщение для «{dest.name}»: доставка работает.", dest.format))
