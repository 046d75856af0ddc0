"""Telegram Desktop "Export chat history" (machine-readable JSON) → ``Post`` values, streamed.

Both layouts are read: a single-chat ``result.json`` (top-level ``name``, ``type``, ``id``, ``messages``)
and a full-account export (``chats.list[]``, ``left_chats.list[]``, each chat shaped like the single-chat
root). The file is parsed with ijson, event by event, so memory stays flat however large the export is;
only one message (or one album being assembled) is held at a time.

Field notes (tdesktop ``export_output_json.cpp``): ``date`` is the exporting computer's *local* time and
``date_unixtime`` (a string) is the truth; older exports lack ``date_unixtime`` and carry a numeric
``from_id``; ``text`` is a string or a list of strings and entity objects, ``text_entities`` always a
list; service and unsupported messages are skipped. An export has no grouped id: an album is several
media messages next to each other in the file with the same timestamp, sender and forward origin, ids within
one album's span (a part deleted since leaves a gap), at most one of them with a caption (whichever part
holds it); it becomes ONE post with the lowest id. Media messages
that each carry a caption are separate posts even in the same second. tdesktop writes a control character
in a text as ``\\xNN``, which is not JSON: the reader repairs it in the byte stream.

Nothing here touches the database.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import IO, Any

import ijson

from monitor.posts import ForwardOrigin, Post

#: chat ``type`` values that are channels (what a full-account import takes by default)
CHANNEL_TYPES = frozenset({"public_channel", "private_channel"})
#: media keys whose messages can be parts of an album
_ALBUM_MEDIA = ("photo", "file")
#: raw keys worth keeping with the post: what the columns do not hold (media, signature, reply, bot).
#: A plain text post keeps no raw at all: encoding a JSON document per post costs import speed.
_RAW_KEYS = ("author", "saved_from", "reply_to_message_id", "reply_to_peer_id", "via_bot", "media_type",
             "mime_type", "file_name", "photo", "file", "sticker_emoji", "poll", "forwarded_from_id",
             "location_information", "place_name", "address", "contact_information")


class ExportError(ValueError):
    """The file is not a Telegram Desktop JSON export, or it breaks off (``truncated``)."""

    def __init__(self, message: str, *, truncated: bool = False) -> None:
        super().__init__(message)
        self.truncated = truncated


@dataclass(frozen=True, slots=True)
class ExportChat:
    """One chat of an export: its title, kind and bare numeric id (``-100`` prefix removed)."""

    name: str | None
    type: str | None
    id: int | None
    index: int  # position in the file (0 for a single-chat export)

    @property
    def is_channel(self) -> bool:
        return self.type in CHANNEL_TYPES


@dataclass(frozen=True, slots=True)
class ExportItem:
    """A chat's start (``post is None``) or one post of it."""

    chat: ExportChat
    post: Post | None
    skipped: int = 0  # service/unsupported messages passed over since the previous item


ChatFilter = Callable[[ExportChat], bool]


def chat_selector(wanted: str | None) -> ChatFilter:
    """A filter for ``--channel``: a chat's title (case-insensitive) or numeric id; all channels when None."""
    if wanted is None:
        return lambda chat: chat.is_channel
    text = wanted.strip()
    as_id: int | None = None
    if text.lstrip("-").isdigit():
        as_id = _bare_id(int(text))
    folded = text.casefold().lstrip("@")
    return lambda chat: (as_id is not None and chat.id == as_id) or (chat.name or "").casefold() == folded


#: tdesktop writes a control character in a text (other than \n, \r, \t) as ``\x0B`` — not a JSON escape, so a
#: strict parser stops there. Read as the ``\u000B`` it means; every other escape is matched whole so that an
#: escaped backslash followed by an "x" stays what it is.
_ESCAPE = re.compile(rb"\\(?:x([0-9A-Fa-f]{2})|.)", re.S)
_BOM = b"\xef\xbb\xbf"


def _repair(data: bytes) -> bytes:
    if b"\\x" not in data:
        return data
    return _ESCAPE.sub(lambda m: b"\\u00" + m.group(1) if m.group(1) else m.group(0), data)


class _Source:
    """The export as the JSON parser reads it: bytes counted as they are read (for the progress bar and
    error positions), a leading BOM dropped, tdesktop's ``\\xNN`` escapes repaired. A chunk never ends
    inside an escape: a trailing run of backslashes waits for the next read."""

    def __init__(self, fh: IO[bytes], on_read: Callable[[int], None] | None = None) -> None:
        self.fh = fh
        self.pos = 0
        self.on_read = on_read
        self.carry = b""
        self.first = True
        self.head = b""  # the file's first bytes, to name what it is when it is not JSON

    def read(self, n: int = -1) -> bytes:
        while True:
            data = self.fh.read(n)
            if data:
                self.pos += len(data)
                if self.on_read is not None:
                    self.on_read(len(data))
            if len(self.head) < 64:
                self.head += data[: 64 - len(self.head)]
            buf = self.carry + data
            if self.first and buf:
                if len(buf) < len(_BOM) and data and _BOM.startswith(buf):
                    self.carry = buf
                    continue
                self.first = False
                if buf.startswith(_BOM):
                    buf = buf[len(_BOM):]
            if not data:  # end of file
                self.carry = b""
                return _repair(buf)
            cut = len(buf)
            tail = buf.rfind(b"\\", max(0, len(buf) - 3))
            if tail != -1:
                cut = tail
                while cut > 0 and buf[cut - 1] == 0x5C:
                    cut -= 1
            self.carry = buf[cut:]
            if cut:
                return _repair(buf[:cut])


def read_export(
    fh: IO[bytes],
    *,
    select: ChatFilter | None = None,
    single_chat_any_type: bool = True,
    local_tz: tzinfo = UTC,
    on_read: Callable[[int], None] | None = None,
) -> Iterator[ExportItem]:
    """Stream the posts of an export.

    Yields an item with ``post=None`` when a selected chat starts (so callers can link it to a channel),
    then one item per post in file order. ``select`` picks chats of a full-account export (default: the
    channels); a single-chat export is always read when ``single_chat_any_type``. ``local_tz`` is the
    exporting computer's zone, used only for old exports without ``date_unixtime``.

    Raises :class:`ExportError` for a file that is not JSON or not an export, and, after yielding every
    complete post before the break, for a truncated file (``truncated=True``)."""
    select = select or chat_selector(None)
    state = _State(select, single_chat_any_type, local_tz)
    meta = _sniff(fh) if fh.seekable() else None
    src = _Source(fh, on_read)
    try:
        if meta is not None:
            # A single-chat export (the common case): ijson's C backend builds each message object
            # itself, about ten times faster than feeding events through a Python object builder.
            state.started = state.is_export = True
            state.meta, state.chat_index = meta, 0
            state.start_chat(single=True)
            if state.chat is not None and state.active:
                yield ExportItem(state.chat, None)
            for msg in ijson.items(src, "messages.item", use_float=True):
                yield from state.message(msg)
        else:
            for prefix, event, value in ijson.parse(src, use_float=True):
                yield from state.feed(prefix, event, value)
    except ijson.IncompleteJSONError as exc:
        if not state.started:
            raise ExportError(_not_json(exc, src.head)) from None
        yield from state.flush()
        raise ExportError(f"the file breaks off near byte {src.pos}: it is truncated or damaged ({_why(exc)})",
                          truncated=True) from None
    except ijson.JSONError as exc:
        if not state.started:
            raise ExportError(_not_json(exc, src.head)) from None
        yield from state.flush()
        raise ExportError(f"invalid JSON near byte {src.pos} ({_why(exc)})", truncated=True) from None
    except UnicodeDecodeError:
        raise ExportError("the file is not UTF-8 JSON text") from None
    yield from state.flush()
    if not state.is_export:
        raise ExportError("the file is JSON but not a Telegram Desktop export (no 'messages' list and no "
                          "'chats' section); export with Telegram Desktop: chat menu → Export chat history → "
                          "format: Machine-readable JSON")


def _sniff(fh: IO[bytes]) -> dict[str, Any] | None:
    """The root ``name``/``type``/``id`` of a single-chat export (read from the top of the file, then
    rewound), or None for any other shape (a full-account export, not JSON, not an export): those take
    the general event-by-event path, which also produces the right error."""
    start = fh.tell()
    meta: dict[str, Any] = {}
    found = False
    try:
        for prefix, event, value in ijson.parse(_Source(fh), use_float=True):
            if prefix in ("name", "type", "id") and event in ("string", "number"):
                meta[prefix] = value
            elif prefix == "messages" and event == "start_array":
                found = True
                break
            elif prefix in ("chats", "left_chats") and event == "start_map":
                break
    except (ijson.JSONError, UnicodeDecodeError):
        found = False
    fh.seek(start)
    return meta if found else None


def _why(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:120]


def _not_json(exc: Exception, head: bytes = b"") -> str:
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return ("the file is an HTML page, not JSON: export the chat again with Telegram Desktop, format "
                "\"Machine-readable JSON\", and import its result.json")
    return f"the file is not JSON ({_why(exc)}); expected the result.json of a Telegram Desktop export"


class _State:
    """The event-driven reader: chat metadata, the message being built, the album being assembled."""

    def __init__(self, select: ChatFilter, single_any: bool, local_tz: tzinfo) -> None:
        self.select = select
        self.single_any = single_any
        self.local_tz = local_tz
        self.started = False  # one JSON event parsed: the file is JSON
        self.is_export = False
        self.chat_index = -1
        self.meta: dict[str, Any] = {}
        self.meta_prefix = ""
        self.chat: ExportChat | None = None
        self.active = False  # the current chat is selected
        self.builder: ijson.ObjectBuilder | None = None
        self.msg_prefix = ""
        self.album: list[dict[str, Any]] = []
        self.skipped = 0

    def feed(self, prefix: str, event: str, value: Any) -> Iterator[ExportItem]:
        self.started = True
        if self.builder is not None:
            if prefix == self.msg_prefix and event == "end_map":
                msg = self.builder.value
                self.builder = None
                yield from self.message(msg)
            else:
                self.builder.event(event, value)
            return
        if event == "start_map" and prefix in ("chats.list.item", "left_chats.list.item"):
            self.chat_index += 1
            self.meta, self.meta_prefix, self.chat = {}, prefix, None
            return
        if event in ("string", "number") and prefix.count(".") == (0 if not self.meta_prefix else 3):
            base, _, key = prefix.rpartition(".")
            if base == self.meta_prefix and key in ("name", "type", "id"):
                self.meta[key] = value
            return
        if event == "start_array" and prefix in ("messages", "chats.list.item.messages",
                                                  "left_chats.list.item.messages"):
            self.is_export = True
            if prefix == "messages":
                self.chat_index = 0
                self.meta_prefix = ""
                self.meta = {k: v for k, v in self.meta.items()}
            self.start_chat(single=prefix == "messages")
            if self.active and self.chat is not None:
                yield ExportItem(self.chat, None)
            return
        if event == "start_map" and self.active and prefix in ("messages.item", "chats.list.item.messages.item",
                                                               "left_chats.list.item.messages.item"):
            self.msg_prefix = prefix
            self.builder = ijson.ObjectBuilder()
            self.builder.event(event, value)
            return
        if event == "end_array" and self.active and prefix in ("messages", "chats.list.item.messages",
                                                               "left_chats.list.item.messages"):
            yield from self.flush()
            self.active = False
            return
        if prefix in ("chats", "left_chats") and event == "start_map":
            self.is_export = True

    def start_chat(self, *, single: bool) -> None:
        raw_id = self.meta.get("id")
        cid = _bare_id(int(raw_id)) if isinstance(raw_id, int | float) else None
        name = self.meta.get("name")
        self.chat = ExportChat(name=name if isinstance(name, str) else None,
                               type=self.meta.get("type") if isinstance(self.meta.get("type"), str) else None,
                               id=cid, index=max(self.chat_index, 0))
        self.active = (single and self.single_any) or self.select(self.chat)
        self.album, self.skipped = [], 0

    def message(self, msg: Any) -> Iterator[ExportItem]:
        if not isinstance(msg, dict) or msg.get("type") != "message" or not isinstance(msg.get("id"), int | float):
            self.skipped += 1  # service, unsupported or malformed: nothing a reader said
            return
        if self.album and not _same_album(self.album, msg):
            yield from self.flush()
        if _album_part(msg):
            self.album.append(msg)
            if len(self.album) >= 10:  # Telegram albums hold at most 10 items
                yield from self.flush()
            return
        yield from self.flush()
        post = self._post([msg])
        if post is not None:
            yield self._item(post)

    def flush(self) -> Iterator[ExportItem]:
        """Emit the album being assembled (as one post, or one post per part when it is not one)."""
        group, self.album = self.album, []
        if not group:
            return
        captions = [m for m in group if _text_of(m)[0]]
        if len(group) > 1 and len(captions) > 1:
            # Several captions: these are separate posts that happen to share a second; keep each.
            for m in group:
                post = self._post([m])
                if post is not None:
                    yield self._item(post)
            return
        post = self._post(group)
        if post is not None:
            yield self._item(post)

    def _item(self, post: Post) -> ExportItem:
        assert self.chat is not None
        item = ExportItem(self.chat, post, self.skipped)
        self.skipped = 0
        return item

    def _post(self, group: list[dict[str, Any]]) -> Post | None:
        first = group[0]
        ids = sorted(int(m["id"]) for m in group)
        text = ""
        for m in group:
            t = _text_of(m)[0]
            if t:
                text = t
                break
        date = _date(first, "date", self.local_tz)
        if date is None:
            self.skipped += len(group)
            return None
        edit_dates = [d for d in (_date(m, "edited", self.local_tz) for m in group) if d is not None]
        forward = _forward(first)
        raw = {k: first[k] for k in _RAW_KEYS if k in first}
        if len(group) > 1:
            raw["album_parts"] = ids
        return Post(
            message_id=ids[0], date=date, text=text, edit_date=max(edit_dates) if edit_dates else None,
            forward=forward, album_id=ids[0] if len(group) > 1 else None,
            member_ids=tuple(ids) if len(group) > 1 else (), raw=raw or None,
        )


def _forward(msg: dict[str, Any]) -> ForwardOrigin | None:
    """``forwarded_from`` is the origin's name (null for a deleted account: still a forward); newer
    exports add ``forwarded_from_id`` (``"channel<bare id>"``, ``"user<id>"``), which names a channel."""
    if "forwarded_from" not in msg and "forwarded_from_id" not in msg:
        return None
    name = msg.get("forwarded_from")
    ref = msg.get("forwarded_from_id")
    channel_id = None
    if isinstance(ref, str) and ref.startswith("channel") and ref[7:].isdigit():
        channel_id = int(ref[7:])
    return ForwardOrigin(channel_id=channel_id, name=name if isinstance(name, str) and name else None)


def _album_part(msg: dict[str, Any]) -> bool:
    return any(k in msg for k in _ALBUM_MEDIA) and msg.get("media_type") not in (
        "sticker", "voice_message", "video_message", "audio_file", "animation")


def _same_album(group: list[dict[str, Any]], msg: dict[str, Any]) -> bool:
    """Album parts: the next message of the file, media on each, the same second, the same sender and
    forward origin, ids within one album's span (at most 10 items with consecutive ids; a part deleted
    since leaves a gap, which is why the ids need not be consecutive)."""
    last = group[-1]
    mid = int(msg["id"])
    return (_album_part(msg) and int(last["id"]) < mid < int(group[0]["id"]) + 10
            and _stamp(msg) == _stamp(last) and msg.get("from_id") == last.get("from_id")
            and msg.get("forwarded_from") == last.get("forwarded_from")
            and msg.get("forwarded_from_id") == last.get("forwarded_from_id"))


def _stamp(msg: dict[str, Any]) -> Any:
    return msg.get("date_unixtime") or msg.get("date")


def _text_of(msg: dict[str, Any]) -> tuple[str, list[str]]:
    """The message text (or caption) and the links in it. ``text_entities`` is preferred: it is always a
    list of objects; ``text`` is a string or a list of strings and objects. A poll without text becomes
    its question and answers, so a poll that names an entity is found too."""
    links: list[str] = []
    parts: list[str] = []
    ents = msg.get("text_entities")
    source = ents if isinstance(ents, list) and ents else msg.get("text")
    if isinstance(source, str):
        parts.append(source)
    elif isinstance(source, list):
        for part in source:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict):
                t = part.get("text")
                if isinstance(t, str):
                    parts.append(t)
                href = part.get("href")
                if isinstance(href, str):
                    links.append(href)
                elif part.get("type") == "link" and isinstance(t, str):
                    links.append(t)
    text = "".join(parts)
    if not text.strip():
        poll = msg.get("poll")
        question = _plain(poll.get("question")) if isinstance(poll, dict) else ""
        if question:
            answers = [_plain(a.get("text")) for a in poll.get("answers") or [] if isinstance(a, dict)]
            text = "\n".join([question, *(a for a in answers if a)])
        else:
            text = ""
    return text, links


def _plain(value: Any) -> str:
    """A string, or a text given as parts (newer exports write poll questions and answers with their
    entities, like ``text``): the parts' text joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return _plain(value.get("text"))
    if isinstance(value, list):
        return "".join(_plain(v) for v in value)
    return ""


def _date(msg: dict[str, Any], key: str, local_tz: tzinfo) -> datetime | None:
    """``<key>_unixtime`` (epoch seconds as a string), else ``<key>`` read as the exporter's local time."""
    unix = msg.get(f"{key}_unixtime")
    if isinstance(unix, str | int | float) and str(unix).strip().lstrip("-").isdigit():
        return datetime.fromtimestamp(int(unix), UTC)
    local = msg.get(key)
    if isinstance(local, str) and local:
        try:
            d = datetime.fromisoformat(local)
        except ValueError:
            return None
        return (d if d.tzinfo else d.replace(tzinfo=local_tz)).astimezone(UTC)
    return None


def _bare_id(raw: int) -> int:
    """Bot-API ids (-100XXXXXXXXXX) and bare ids both become the bare channel id."""
    if raw < 0:
        s = str(-raw)
        return int(s[3:]) if s.startswith("100") and len(s) > 3 else -raw
    return raw
