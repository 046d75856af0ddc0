"""Telegram Desktop "Export chat history" (machine-readable JSON) → ``Post`` values, streamed.

Both layouts are read: a single-chat ``result.json`` (top-level ``name``, ``type``, ``id``, ``messages``)
and a full-account export (``chats.list[]``, ``left_chats.list[]``, each chat shaped like the single-chat
root). The file is parsed with ijson, event by event, so memory stays flat however large the export is;
only one message (or one album being assembled) is held at a time.

Field notes (tdesktop ``export_output_json.cpp``): ``date`` is the exporting computer's *local* time and
``date_unixtime`` (a string) is the truth; older exports lack ``date_unixtime`` and carry a numeric
``from_id``; ``text`` is a string or a list of strings and entity objects, ``text_entities`` always a
list; service and unsupported messages are skipped. An export has no grouped id: an album is several
media messages of one album kind next to each other in the file with the same timestamp, sender and forward
origin, ids within one album's span (a part deleted since leaves a gap), at most one of them with a caption
(whichever part holds it); it becomes ONE post with the lowest id. Album kinds are Telegram's: photos and
videos group together, files (documents) only with files; a photo and a PDF sent in the same second are two
posts. Media messages that each carry a caption are separate posts even in the same second. tdesktop writes a
control character in a text as ``\\xNN``, which is not JSON: the reader repairs it in the byte stream.

Hostile or wrong files fail early with one clear :class:`ExportError`: JSON nested far deeper than any export
(a few hundred KB of brackets would otherwise take gigabytes in ijson), a top level that is a list, a file
in another encoding than UTF-8 (named as such, not as "truncated"). What was passed over is counted in an
optional :class:`ExportStats`: service messages, malformed messages, posts dated by local time only (old
exports), and whole chats not selected (with their type and message count, so the caller can say which
chats were skipped and how to pick one).

Nothing here touches the database.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import IO, Any

import ijson

from monitor.posts import ForwardOrigin, Post

#: chat ``type`` values that are channels (what a full-account import takes by default)
CHANNEL_TYPES = frozenset({"public_channel", "private_channel"})
#: how chat types are named to people (tdesktop ``export_output_json.cpp`` writes these)
TYPE_NAMES = {"public_channel": "public channel", "private_channel": "private channel",
              "personal_chat": "personal chat", "bot_chat": "bot chat", "private_group": "private group",
              "private_supergroup": "private group", "public_supergroup": "public group",
              "saved_messages": "saved messages", "replies": "replies", "verification_codes": "verification codes"}
#: message ``type`` values that are not posts: nothing a reader said
_SERVICE_TYPES = frozenset({"service", "unsupported"})
#: ``media_type`` values of files that never form albums with anything (voice notes, round videos, stickers…)
_NOT_ALBUM_MEDIA = frozenset({"sticker", "voice_message", "video_message", "audio_file", "animation"})
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

    def describe(self, messages: int | None = None) -> str:
        """``«Друг» (personal chat, id 42, 3 messages)``: how a chat is named in reports."""
        kind = TYPE_NAMES.get(self.type or "", self.type or "type unknown")
        facts = [kind, *([f"id {self.id}"] if self.id is not None else []),
                 *([f"{messages} message{'s' if messages != 1 else ''}"] if messages is not None else [])]
        return f"«{self.name or 'untitled'}» ({', '.join(facts)})"


@dataclass(slots=True)
class ChatStats:
    """What the reader passed over in one chat, and how its dates were read."""

    service: int = 0  # service and unsupported messages: nothing a reader said
    malformed: int = 0  # not a message object, no numeric id, no readable date, an unknown type
    local_dates: int = 0  # posts dated by ``date`` alone (no ``date_unixtime``): read in ``local_tz``


@dataclass(frozen=True, slots=True)
class SkippedChat:
    """A chat of the export that was not selected, with its number of messages."""

    chat: ExportChat
    messages: int


@dataclass(slots=True)
class ExportStats:
    """Counts the reader fills as it goes (hand one to :func:`read_export`; read it when it is done)."""

    chats: dict[int, ChatStats] = field(default_factory=dict)  # by ExportChat.index
    skipped: list[SkippedChat] = field(default_factory=list)

    def of(self, chat: ExportChat) -> ChatStats:
        """The counts of one chat (zeros when nothing was passed over)."""
        return self.chats.setdefault(chat.index, ChatStats())


@dataclass(frozen=True, slots=True)
class ExportItem:
    """A chat's start (``post is None``) or one post of it."""

    chat: ExportChat
    post: Post | None
    skipped: int = 0  # service/unsupported messages passed over since the previous item


ChatFilter = Callable[[ExportChat], bool]

#: chats named one by one in a report before "… and N more"
_LIST_AT_MOST = 20


def chat_notes(chat: ExportChat, counts: ChatStats, local_tz: tzinfo, *, redated: int = 0) -> list[str]:
    """What an import report says about one imported chat beyond its counts: that it is not a channel, how
    many malformed messages were passed over, that its dates were local times read in ``local_tz``."""
    notes: list[str] = []
    if chat.type is not None and not chat.is_channel:
        notes.append(f"{chat.describe()} is not a channel (tgmonitor watches channels): imported because "
                     f"--channel named it")
    if counts.malformed:
        notes.append(f"{_n(counts.malformed, 'malformed message')} skipped (not a message object, no numeric id "
                     f"or no readable date)")
    if counts.local_dates:
        zone = str(getattr(local_tz, "key", None) or local_tz)
        notes.append(f"{_n(counts.local_dates, 'post')} {'has' if counts.local_dates == 1 else 'have'} no "
                     f"date_unixtime (an export made before 2021): "
                     f"their local times were read as {zone}; if the exporting computer was in another zone, "
                     f"import again with --timezone ZONE (e.g. Europe/Moscow) and the stored dates are corrected")
    if redated:
        notes.append(f"corrected the stored dates of {_n(redated, 'post')} (local times now read as "
                     f"{getattr(local_tz, 'key', None) or local_tz})")
    return notes


def skipped_chats(stats: ExportStats) -> list[str]:
    """Report lines for the chats of a full-account export that were not imported (name, type, messages)
    and how to import one."""
    if not stats.skipped:
        return []
    lines = [f"skipped {_n(len(stats.skipped), 'chat')} that {'is' if len(stats.skipped) == 1 else 'are'} not "
             f"a channel; import one with --channel NAME (its title or id):"]
    lines += [f"  {c.chat.describe(c.messages)}" for c in stats.skipped[:_LIST_AT_MOST]]
    if len(stats.skipped) > _LIST_AT_MOST:
        lines.append(f"  … and {len(stats.skipped) - _LIST_AT_MOST} more")
    return lines


def nothing_selected(stats: ExportStats, wanted: str | None) -> str:
    """The error when no chat of the export was imported: which chats it holds and how to pick one."""
    chats = [c.chat.describe(c.messages) for c in stats.skipped[:_LIST_AT_MOST]]
    more = f"; … and {len(stats.skipped) - _LIST_AT_MOST} more" if len(stats.skipped) > _LIST_AT_MOST else ""
    held = "; ".join(chats) + more
    if wanted is not None:
        return (f"no chat named or numbered {wanted!r} in this export"
                + (f"; its chats: {held}" if held else " (it holds no chats)"))
    if not stats.skipped:
        return "this export holds no chats"
    one = stats.skipped[0].chat
    if len(stats.skipped) == 1:
        return (f"this export is of {held}, which is not a channel (tgmonitor watches channels); to import it "
                f"anyway: --channel {_quoted(one.name or str(one.id))}")
    return (f"this export holds no channel: {held}; to import one of these chats anyway, name it: "
            f"--channel NAME (its title or id)")


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _quoted(name: str) -> str:
    return name if re.fullmatch(r"[\w.@-]+", name) else '"' + name.replace('"', '\\"') + '"'


def chat_selector(wanted: str | None) -> ChatFilter:
    """A filter for ``--channel``: a chat's title (case-insensitive) or numeric id; when None, every channel
    (and a chat of no stated type: very old exports)."""
    if wanted is None:
        return lambda chat: chat.is_channel or chat.type is None
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


#: An export nests a dozen containers at most (account → chats → list → chat → messages → message → poll →
#: answers → answer → text → entity). ijson gives every event its path, a string as long as the nesting is
#: deep, and its C backend holds all the events of one read at once: 200 KB of nested brackets took more than
#: 20 GB. Anything nested deeper than this is not an export and is refused before the parser sees it.
MAX_DEPTH = 64
NOT_EXPORT = ("the file is JSON but not a Telegram Desktop export (no 'messages' list and no 'chats' section); "
              "export with Telegram Desktop: chat menu → Export chat history → format: Machine-readable JSON")
_ESCAPED = re.compile(rb"\\.", re.S)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_OPEN = frozenset(b"[{")


class _Depth:
    """How deep the JSON read so far nests, followed chunk by chunk with C-speed bytes operations (escapes
    dropped, strings cut out, everything but brackets dropped; a Python loop only over the brackets of a
    chunk that could pass the limit). Raises ExportError when the nesting passes MAX_DEPTH or the top level
    is a list. Chunks never end inside an escape (``_Source`` holds a trailing backslash run back)."""

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.root = False  # the first byte that is not whitespace was seen

    def feed(self, chunk: bytes, at: int) -> None:
        """Follow ``chunk``, which starts at byte ``at`` of the file."""
        end = at + len(chunk)
        if not self.root:
            head = chunk.lstrip()
            if not head:
                return
            self.root = True
            if head.startswith(b"["):
                raise ExportError(NOT_EXPORT.replace(" (no 'messages'", " (its top level is a list; no 'messages'"))
        if b"\\" in chunk:
            chunk = _ESCAPED.sub(b"", chunk)  # an escaped quote or backslash is no delimiter
        # Split at the quotes: the pieces alternate between outside and inside a string (the first one is
        # inside when a string ran on from the chunk before); only brackets outside strings nest.
        parts = chunk.split(b'"')
        start = 1 if self.in_string else 0
        self.in_string = (start + len(parts) - 1) % 2 == 1
        brackets = b"".join(parts[start::2]).translate(None, _NOT_BRACKET)
        opens = brackets.count(b"[") + brackets.count(b"{")
        if self.depth + opens <= MAX_DEPTH:
            self.depth += 2 * opens - len(brackets)
            return
        depth = self.depth
        for b in brackets:
            depth += 1 if b in _OPEN else -1
            if depth > MAX_DEPTH:
                raise ExportError(f"the file is not a Telegram Desktop export: its JSON nests more than {MAX_DEPTH} "
                                  f"levels deep within its first {end} bytes (an export nests about 10); export "
                                  f"with Telegram Desktop, format \"Machine-readable JSON\", and import its "
                                  f"result.json")
        self.depth = depth


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
        self.last = b""  # the last bytes read, to name a byte that is not UTF-8
        self.depth = _Depth()
        self.out = 0  # bytes handed to the parser

    def read(self, n: int = -1) -> bytes:
        chunk = self._read(n)
        self.depth.feed(chunk, self.out)
        self.out += len(chunk)
        return chunk

    def _read(self, n: int) -> bytes:
        while True:
            data = self.fh.read(n)
            if data:
                self.pos += len(data)
                self.last = data
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
    stats: ExportStats | None = None,
) -> Iterator[ExportItem]:
    """Stream the posts of an export.

    Yields an item with ``post=None`` when a selected chat starts (so callers can link it to a channel),
    then one item per post in file order. ``select`` picks chats of a full-account export (default: the
    channels); a single-chat export is always read when ``single_chat_any_type``, else only when selected.
    ``local_tz`` is the exporting computer's zone, used only for old exports without ``date_unixtime``
    (such a post keeps the exported local time in ``raw["date_local"]``). ``stats``, when given, counts what
    was passed over, per chat, and lists the chats not selected.

    Raises :class:`ExportError` for a file that is not JSON, not an export or not UTF-8, and, after yielding
    every complete post before the break, for a truncated file (``truncated=True``)."""
    select = select or chat_selector(None)
    state = _State(select, single_chat_any_type, local_tz, stats if stats is not None else ExportStats())
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
            elif state.chat is not None:
                state.stats.skipped.append(SkippedChat(state.chat, sum(
                    1 for _ in ijson.items(src, "messages.item", use_float=True))))
        else:
            for prefix, event, value in ijson.parse(src, use_float=True):
                yield from state.feed(prefix, event, value)
    except ijson.JSONError as exc:
        if (encoding := _not_utf8(exc, src)) is not None:
            raise ExportError(encoding) from None
        if not state.started:
            raise ExportError(_not_json(exc, src.head)) from None
        yield from state.flush()
        if isinstance(exc, ijson.IncompleteJSONError):
            raise ExportError(f"the file breaks off near byte {src.pos}: it is truncated or damaged ({_why(exc)})",
                              truncated=True) from None
        raise ExportError(f"invalid JSON near byte {src.pos} ({_why(exc)})", truncated=True) from None
    except UnicodeDecodeError as exc:
        raise ExportError(_not_utf8(exc, src) or "the file is not UTF-8 JSON text") from None
    yield from state.flush()
    if not state.is_export:
        raise ExportError(NOT_EXPORT)


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
    finally:
        fh.seek(start)
    return meta if found else None


def _why(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:120]


def _not_utf8(exc: Exception, src: _Source) -> str | None:
    """The message for a file that is not UTF-8 (re-saved as Windows-1251, say), or None when the parser's
    error is about something else. yajl says "invalid bytes in UTF8 string"; the bytes last read tell where."""
    if src.head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return ("the file is UTF-16 text, not UTF-8: import the result.json exactly as Telegram Desktop wrote it "
                "(an editor re-saved this one as \"Unicode\")")
    said = "UTF8" in str(exc) or isinstance(exc, UnicodeDecodeError)
    data, base = src.last, src.pos - len(src.last)
    lead = 0
    while lead < min(3, len(data)) and 0x80 <= data[lead] < 0xC0:
        lead += 1  # the read began inside a character whose first bytes came with the read before
    where: int | None = None
    try:
        data[lead:].decode("utf-8")
    except UnicodeDecodeError as bad:
        if bad.reason == "unexpected end of data":
            # A character cut off by the end of the file: the parser reads on across reads, so only the
            # file's end cuts one. That is a truncated file, not another encoding.
            return None
        where = lead + bad.start
    if where is None and not said:
        return None
    at = f" (byte 0x{data[where]:02X} at byte {base + where})" if where is not None else ""
    return (f"the file is not UTF-8 text{at}: it was probably re-saved in another encoding (such as "
            f"Windows-1251); import the result.json exactly as Telegram Desktop wrote it, or convert it to UTF-8")


def _not_json(exc: Exception, head: bytes = b"") -> str:
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return ("the file is an HTML page, not JSON: export the chat again with Telegram Desktop, format "
                "\"Machine-readable JSON\", and import its result.json")
    return f"the file is not JSON ({_why(exc)}); expected the result.json of a Telegram Desktop export"


class _State:
    """The event-driven reader: chat metadata, the message being built, the album being assembled."""

    def __init__(self, select: ChatFilter, single_any: bool, local_tz: tzinfo, stats: ExportStats) -> None:
        self.select = select
        self.single_any = single_any
        self.local_tz = local_tz
        self.stats = stats
        self.counts = ChatStats()  # the current chat's
        self.passed = 0  # messages of the current chat when it is not selected
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
        if event in ("string", "number", "boolean", "null", "start_array") and prefix in (
                "messages.item", "chats.list.item.messages.item", "left_chats.list.item.messages.item"):
            # a list item that is not an object (a string, a number, a list): not a message
            if self.active:
                yield from self.message(value if event != "start_array" else [])
            else:
                self.passed += 1
            return
        if event == "start_map" and prefix in ("messages.item", "chats.list.item.messages.item",
                                               "left_chats.list.item.messages.item"):
            if not self.active:
                self.passed += 1  # a chat not selected: counted for the report, not built
                return
            self.msg_prefix = prefix
            self.builder = ijson.ObjectBuilder()
            self.builder.event(event, value)
            return
        if event == "end_array" and prefix in ("messages", "chats.list.item.messages",
                                               "left_chats.list.item.messages"):
            if self.active:
                yield from self.flush()
                self.active = False
            elif self.chat is not None:
                self.stats.skipped.append(SkippedChat(self.chat, self.passed))
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
        self.album, self.skipped, self.passed = [], 0, 0
        self.counts = self.stats.of(self.chat) if self.active else ChatStats()

    def message(self, msg: Any) -> Iterator[ExportItem]:
        if not isinstance(msg, dict) or msg.get("type") != "message" or not isinstance(msg.get("id"), int | float):
            self.skipped += 1  # passed over: counted in the next item (how many messages a chat had)
            if isinstance(msg, dict) and msg.get("type") in _SERVICE_TYPES:
                self.counts.service += 1  # service or unsupported: nothing a reader said
            else:
                self.counts.malformed += 1
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
            self.counts.malformed += len(group)
            return None
        edit_dates = [d for d in (_date(m, "edited", self.local_tz) for m in group) if d is not None]
        forward = _forward(first)
        raw = {k: first[k] for k in _RAW_KEYS if k in first}
        if len(group) > 1:
            raw["album_parts"] = ids
        if _unix(first, "date") is None:
            # An old export: the time is the exporting computer's local time, read in local_tz. Kept as
            # written, so a later import with the right --timezone can tell which stored dates to correct.
            raw["date_local"] = first.get("date")
            self.counts.local_dates += 1
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


def _album_kind(msg: dict[str, Any]) -> str | None:
    """Which album a media message could be part of: ``"visual"`` (photos and videos, which Telegram groups
    together), ``"files"`` (documents: grouped only with documents), None (no media, or media that never
    form an album: stickers, GIFs, voice notes, round videos, music)."""
    if "photo" in msg:
        return "visual"
    if "file" not in msg:
        return None
    kind = msg.get("media_type")
    if kind == "video_file":
        return "visual"
    if kind is None:
        return "files"
    return None if kind in _NOT_ALBUM_MEDIA else "other"


def _album_part(msg: dict[str, Any]) -> bool:
    return _album_kind(msg) is not None


def _same_album(group: list[dict[str, Any]], msg: dict[str, Any]) -> bool:
    """Album parts: the next message of the file, media of the same album kind on each (a photo and a PDF of
    the same second are two posts), the same second, the same sender and forward origin, ids within one
    album's span (at most 10 items with consecutive ids; a part deleted since leaves a gap, which is why the
    ids need not be consecutive)."""
    last = group[-1]
    mid = int(msg["id"])
    return (_album_kind(msg) is not None and _album_kind(msg) == _album_kind(group[0])
            and int(last["id"]) < mid < int(group[0]["id"]) + 10
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
        poll: Any = msg.get("poll")
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


def _unix(msg: dict[str, Any], key: str) -> int | None:
    """``<key>_unixtime`` (epoch seconds, written as a string), when the message has a readable one."""
    unix = msg.get(f"{key}_unixtime")
    if isinstance(unix, str | int | float) and str(unix).strip().lstrip("-").isdigit():
        return int(unix)
    return None


def _date(msg: dict[str, Any], key: str, local_tz: tzinfo) -> datetime | None:
    """``<key>_unixtime`` (epoch seconds as a string), else ``<key>`` read as the exporter's local time."""
    unix = _unix(msg, key)
    if unix is not None:
        return datetime.fromtimestamp(unix, UTC)
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
