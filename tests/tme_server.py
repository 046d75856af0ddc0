"""Real HTTP servers on 127.0.0.1 for the service tests: a t.me/s-like preview of many channels, and an
alert sink that records every Apprise ``json://`` POST.

The preview serves ``/s/<name>`` (and ``/<prefix>/s/<name>``: give each service process its own prefix in
``[sources.web] base_url`` and the request log tells which process polled which channel). Posts are
appended by the test while the service runs; a page holds ``PAGE`` posts, older pages via ``?before=``."""

from __future__ import annotations

import asyncio
import html
import http.server
import inspect
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlparse

PAGE = 8


@dataclass
class Channel:
    name: str
    title: str
    posts: list[tuple[int, str, str]] = field(default_factory=list)  # (message id, text, ISO date)

    def add(self, text: str) -> int:
        mid = (self.posts[-1][0] if self.posts else 1) + 1  # message 1 is the channel's creation
        self.posts.append((mid, text, datetime.now(UTC).replace(microsecond=0).isoformat()))
        return mid


class Preview:
    """The channels and the request log, shared with the handler thread."""

    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}
        self.requests: list[tuple[float, str, str, int | None]] = []  # (time, prefix, channel, before)
        self.lock = threading.Lock()

    def channel(self, name: str, title: str | None = None) -> Channel:
        with self.lock:
            return self.channels.setdefault(name, Channel(name, title or name))

    def add(self, name: str, text: str) -> int:
        ch = self.channel(name)
        with self.lock:
            return ch.add(text)

    def polls(self, since: float = 0.0) -> list[tuple[str, str]]:
        """(prefix, channel) of every request for a channel's newest page (one per poll) after ``since``."""
        with self.lock:
            return [(p, c) for t, p, c, b in self.requests if t >= since and b is None]

    def render(self, name: str, before: int | None) -> bytes | None:
        with self.lock:
            ch = self.channels.get(name)
            if ch is None:
                return None
            visible = [p for p in ch.posts if before is None or p[0] < before]
            page = visible[-PAGE:]
            title = ch.title
        more = ""
        if page and page[0][0] > 2:
            b = page[0][0]
            more = (f'<div class="tgme_widget_message_centered js-messages_more_wrap"><a href="/s/{name}?before={b}" '
                    f'class="tme_messages_more js-messages_more" data-before="{b}"></a></div>')
        msgs = "".join(_message(name, title, mid, text, when) for mid, text, when in page)
        return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)} – Telegram</title>'
                f'</head><body><div class="tgme_channel_info"><div class="tgme_channel_info_header">'
                f'<div class="tgme_channel_info_header_title"><span dir="auto">{html.escape(title)}</span></div>'
                f'<div class="tgme_channel_info_header_username"><a href="https://t.me/{name}">@{name}</a></div>'
                f'</div></div><section class="tgme_channel_history js-message_history">{more}{msgs}</section>'
                f'</body></html>').encode()


def _message(name: str, title: str, mid: int, text: str, when: str) -> str:
    body = "<br/>".join(html.escape(x) for x in text.split("\n"))
    return (f'<div class="tgme_widget_message_wrap js-widget_message_wrap"><div class="tgme_widget_message '
            f'js-widget_message" data-post="{name}/{mid}" data-view="x"><div class="tgme_widget_message_bubble">'
            f'<div class="tgme_widget_message_author accent_color"><a class="tgme_widget_message_owner_name" '
            f'href="https://t.me/{name}"><span dir="auto">{html.escape(title)}</span></a></div>'
            f'<div class="tgme_widget_message_text js-message_text" dir="auto">{body}</div>'
            f'<div class="tgme_widget_message_footer compact js-message_footer"><div class="tgme_widget_message_info '
            f'short js-message_info"><span class="tgme_widget_message_views">{100 + mid}</span>'
            f'<span class="tgme_widget_message_meta"><a class="tgme_widget_message_date" '
            f'href="https://t.me/{name}/{mid}"><time datetime="{when}" class="time">{when[11:16]}</time></a></span>'
            f'</div></div></div></div></div>')


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A handler that logs nothing and can answer a request for a channel's preview as t.me does."""

    def send_preview(self, name: str, doc: bytes | None) -> None:
        """The page ``doc``; ``None`` (a channel without a preview) is sent away from /s/ to its plain page."""
        if doc is None:
            self.send_response(302)
            self.send_header("Location", f"/{name}")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(doc)))
        self.end_headers()
        self.wfile.write(doc)

    def log_message(self, *args: object) -> None:
        pass


def _handler(preview: Preview) -> type[http.server.BaseHTTPRequestHandler]:
    class H(QuietHandler):
        def do_GET(self) -> None:
            u = urlparse(self.path)
            parts = [p for p in u.path.split("/") if p]
            prefix = ""
            if len(parts) == 3 and parts[1] == "s":
                prefix, parts = parts[0], parts[1:]
            if len(parts) != 2 or parts[0] != "s":
                self.send_response(404)
                self.end_headers()
                return
            name = parts[1]
            raw = parse_qs(u.query).get("before", [""])[0]
            before = int(raw) if raw.isdigit() else None
            with preview.lock:
                preview.requests.append((time.time(), prefix, name, before))
            self.send_preview(name, preview.render(name, before))

    return H


class Sink:
    """Every POST body received (Apprise json:// sends one per alert message)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []
        self.lock = threading.Lock()

    def count(self) -> int:
        with self.lock:
            return len(self.bodies)

    def texts(self) -> list[str]:
        with self.lock:
            return [f"{b.get('title', '')}\n{b.get('message', '')}" for b in self.bodies]


def _sink_handler(sink: Sink) -> type[http.server.BaseHTTPRequestHandler]:
    class H(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                doc = json.loads(body)
            except ValueError:
                doc = {"raw": body.decode("utf-8", "replace")}
            with sink.lock:
                sink.bodies.append(doc if isinstance(doc, dict) else {"raw": doc})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

    return H


@contextmanager
def serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


@contextmanager
def preview_server() -> Iterator[tuple[Preview, int]]:
    p = Preview()
    with serve(_handler(p)) as port:
        yield p, port


@contextmanager
def alert_sink() -> Iterator[tuple[Sink, int]]:
    s = Sink()
    with serve(_sink_handler(s)) as port:
        yield s, port


def wait_for(cond: object, timeout: float, step: float = 0.2) -> bool:
    """Poll ``cond()`` until true or ``timeout`` seconds pass (waiting, never asserting on time)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(step)
    return bool(cond())  # type: ignore[operator]


async def wait_until(cond: Callable[[], object], within: float, step: float = 0.05) -> bool:
    """:func:`wait_for` for a test running on the event loop: ``cond`` may be a plain function or return an
    awaitable (a database query); checked every ``step`` seconds while the loop runs the code under test.
    False after ``within`` seconds: the caller asserts the result, so a wait that never came true fails."""

    async def check() -> bool:
        v = cond()
        return bool(await v) if inspect.isawaitable(v) else bool(v)

    end = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < end:
        if await check():
            return True
        await asyncio.sleep(step)  # the condition has no event to wait on: it is the system's state
    return await check()
