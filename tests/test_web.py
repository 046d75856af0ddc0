"""The web-preview source against a real local HTTP server serving pages in t.me/s structure: baseline and
cursor, paging back past a burst longer than a page, edits as versions, 429 + Retry-After, a channel with
no preview, resumable backfill, and the ``backfill`` command."""

from __future__ import annotations

import html
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from monitor import models as m
from monitor.config import ChannelConfig, Settings
from monitor.jobs.web import WebJobs
from monitor.runtime import Runtime, open_runtime
from tests.tme_server import QuietHandler, serve

PAGE = 8
T0 = datetime(2025, 5, 1, 6, 0, tzinfo=UTC)


@dataclass
class Site:
    """Channels served as t.me/s pages; every request logged; 429 answers on cue."""

    channels: dict[str, list[list[Any]]] = field(default_factory=dict)  # name -> [[id, text], ...]
    requests: list[tuple[str, int | None]] = field(default_factory=list)
    too_many: int = 0  # answer the next N requests with 429
    retry_after: str = "0"
    renamed: dict[str, str] = field(default_factory=dict)  # old name -> new: /s/old redirects to /s/new
    headers: list[dict[str, str]] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)  # the next answers are bad pages of these kinds (see bad_page)
    nodate: set[int] = field(default_factory=set)  # posts rendered without their date (unreadable)
    forwards: dict[tuple[str, int], str] = field(default_factory=dict)  # (channel, id) -> origin link "src/77"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, n: int, text: Callable[[int], str] = lambda i: f"Росатом: новость номер {i}") -> None:
        with self.lock:
            posts = self.channels.setdefault(name, [])
            for _ in range(n):
                mid = (posts[-1][0] if posts else 1) + 1
                posts.append([mid, text(mid)])

    def edit(self, name: str, mid: int, text: str) -> None:
        with self.lock:
            next(p for p in self.channels[name] if p[0] == mid)[1] = text

    def render(self, name: str, before: int | None) -> bytes:
        posts = [p for p in self.channels[name] if before is None or p[0] < before]
        page = posts[-PAGE:]
        more = ""
        if page and page[0][0] > 2:
            more = (f'<div class="tgme_widget_message_centered js-messages_more_wrap"><a href="/s/{name}?before='
                    f'{page[0][0]}" class="tme_messages_more js-messages_more" data-before="{page[0][0]}"></a></div>')
        msgs = "".join(
            f'<div class="tgme_widget_message_wrap js-widget_message_wrap"><div class="tgme_widget_message '
            f'js-widget_message" data-post="{name}/{mid}"><div class="tgme_widget_message_bubble">'
            + (f'<div class="tgme_widget_message_forwarded_from accent_color">Forwarded from&nbsp;<a class="'
               f'tgme_widget_message_forwarded_from_name" href="https://t.me/{self.forwards[(name, mid)]}"><span '
               f'dir="auto">Источник</span></a></div>' if (name, mid) in self.forwards else "")
            + f'<div class="tgme_widget_message_text js-message_text" dir="auto">{html.escape(text)}</div>'
            f'<div class="tgme_widget_message_footer compact js-message_footer"><div class="tgme_widget_message_info">'
            f'<span class="tgme_widget_message_views">{mid}</span><span class="tgme_widget_message_meta">'
            + ("" if mid in self.nodate else
               f'<a class="tgme_widget_message_date" href="https://t.me/{name}/{mid}"><time datetime="'
               f'{(T0 + timedelta(hours=mid)).isoformat()}" class="time">x</time></a>')
            + '</span></div></div></div></div></div>'
            for mid, text in page)
        return (f'<!DOCTYPE html><html><body><div class="tgme_channel_info"><div class="tgme_channel_info_header">'
                f'<div class="tgme_channel_info_header_title"><span dir="auto">Канал {name}</span></div></div></div>'
                f'<section class="tgme_channel_history js-message_history">{more}{msgs}</section></body></html>'
                ).encode()

    def bad_page(self, kind: str, name: str, before: int | None) -> bytes:
        """A 200 answer that is not ``name``'s whole preview page."""
        if kind == "captcha":
            return b"<!DOCTYPE html><html><body><div class='captcha'>Please confirm you are human</div></body></html>"
        if kind == "garbage":
            return b"\x00\x17 upstream said: OK"
        if kind == "other":  # another channel's page (a cache or proxy mixing up answers)
            return self.render("otherchan", before)
        if kind == "cut":  # the connection broke inside the newest post, before its date
            full = self.render(name, before)
            return full[: full.rindex(b"<time")]
        raise ValueError(kind)


@pytest.fixture
def site() -> Iterator[tuple[Site, str]]:
    s = Site()

    class H(QuietHandler):
        def do_GET(self) -> None:
            u = urlparse(self.path)
            name = u.path.rstrip("/").rpartition("/")[2]
            raw = parse_qs(u.query).get("before", [""])[0]
            before = int(raw) if raw.isdigit() else None
            with s.lock:
                s.requests.append((name, before))
                s.headers.append(dict(self.headers))
                if name in s.renamed and u.path.startswith("/s/"):
                    self.send_response(302)
                    self.send_header("Location", f"/s/{s.renamed[name]}" + (f"?{u.query}" if u.query else ""))
                    self.end_headers()
                    return
                if s.too_many:
                    s.too_many -= 1
                    self.send_response(429)
                    self.send_header("Retry-After", s.retry_after)
                    self.end_headers()
                    return
                known = name in s.channels and u.path.startswith("/s/")
                doc = s.render(name, before) if known else None  # like t.me: no public preview, no /s/ page
                if known and s.bad:
                    doc = s.bad_page(s.bad.pop(0), name, before)
            self.send_preview(name, doc)

    with serve(H) as port:
        yield s, f"http://127.0.0.1:{port}"


def config(base: str, *channels: str, alerts: bool = True) -> str:
    body = (f'[sources.web]\nbase_url = "{base}"\nrequests_per_minute = 6000\n\n'
            '[[entities]]\nname = "Росатом"\n\n')
    if alerts:  # a destination makes the outbox planner write rows; nothing is delivered in these tests
        body += '[[alerts]]\nname = "hook"\nurl = "json://127.0.0.1:9/hook"\n\n'
    for c in channels:
        body += f'[[channels]]\nusername = "{c}"\nsource = "web"\n\n'
    return body


@pytest.fixture
async def web_rt(site: tuple[Site, str], make_settings: Callable[..., Settings],
                 db_url: str) -> AsyncIterator[tuple[Runtime, Site]]:
    s, base = site
    async with open_runtime(make_settings(config(base, "newsone", "hidden_one"), db_url)) as rt:
        yield rt, s


async def scalar(rt: Runtime, q: Any) -> Any:
    async with rt.engine.connect() as c:
        return (await c.execute(q)).scalar_one()


async def channel_row(rt: Runtime, name: str) -> m.Channel:
    row = await rt.store.find_channel(username=name)
    assert row is not None
    return row


CH = ChannelConfig(username="newsone", source="web")


async def test_poll_baseline_burst_and_quiet(web_rt: tuple[Runtime, Site]) -> None:
    rt, site = web_rt
    site.add("newsone", 5)  # ids 2..6
    jobs = WebJobs(rt)
    try:
        [r1] = await jobs.poll([CH])
        assert (r1.new, r1.alerts, r1.error) == (5, 0, None)
        row = await channel_row(rt, "newsone")
        assert row.baseline_id == 6 and row.cursor == 6 and row.title == "Канал newsone"
        site.add("newsone", 20)  # ids 7..26: more than two pages arrive between polls
        site.requests.clear()
        [r2] = await jobs.poll([CH])
        assert (r2.new, r2.alerts) == (20, 20)
        assert site.requests == [("newsone", None), ("newsone", 19), ("newsone", 11)]
        assert await scalar(rt, select(func.count()).select_from(m.Post)) == 25
        site.requests.clear()
        [r3] = await jobs.poll([CH])  # nothing new: one request, no paging, nothing stored twice
        assert (r3.new, r3.alerts, r3.requests) == (0, 0, 1)
        assert await scalar(rt, select(func.count()).select_from(m.Alert)) == 20
    finally:
        await jobs.aclose()


def _widget(name: str, mid: int, text: str, members: tuple[int, ...] = ()) -> str:
    grouped = ""
    if members:
        grouped = ('<div class="tgme_widget_message_grouped_wrap js-message_grouped_wrap">' + "".join(
            f'<a class="tgme_widget_message_photo_wrap grouped_media_wrap" href="https://t.me/{name}/{i}?single"></a>'
            for i in members) + "</div>")
    return (f'<div class="tgme_widget_message_wrap js-widget_message_wrap"><div class="tgme_widget_message '
            f'text_not_supported_wrap js-widget_message" data-post="{name}/{mid}">'
            f'<div class="tgme_widget_message_bubble">{grouped}'
            f'<div class="tgme_widget_message_text js-message_text" dir="auto">{html.escape(text)}</div>'
            f'<div class="tgme_widget_message_footer compact js-message_footer"><div class="tgme_widget_message_info">'
            f'<span class="tgme_widget_message_meta"><a class="tgme_widget_message_date" href="https://t.me/{name}/'
            f'{mid}"><time datetime="{(T0 + timedelta(hours=mid)).isoformat()}" class="time">x</time></a></span>'
            f'</div></div></div></div></div>')


async def test_paging_back_past_an_album_whose_widget_id_is_not_its_lowest(web_rt: tuple[Runtime, Site]) -> None:
    """t.me may show an album under the id of its captioned (last) part and point ?before= at that id, above
    a member id the page shows: the poll still pages back to the cursor instead of taking it for a loop."""
    import httpx

    from monitor.budget import RequestBudget
    from monitor.sources.web import WebClient

    rt, _site = web_rt
    name = "albumchan"
    state = {"newest": 15}
    seen: list[int | None] = []

    def page(before: int | None) -> str:
        top = state["newest"] + 1 if before is None else before
        if state["newest"] == 15:
            widgets, more = [_widget(name, i, f"пост {i}") for i in range(8, min(top, 16))], 8
        elif top > 32:  # the newest page: an album 30-32 shown as widget 32, then 33..40
            widgets = [_widget(name, 32, "альбом про Росатом", (30, 31, 32))]
            widgets += [_widget(name, i, f"Росатом {i}") for i in range(33, 41)]
            more = 32
        else:
            lo = max(top - 8, 8)
            widgets, more = [_widget(name, i, f"Росатом {i}") for i in range(lo, min(top, 30))], lo
        link = (f'<a href="/s/{name}?before={more}" class="tme_messages_more js-messages_more" '
                f'data-before="{more}"></a>') if more > 8 else ""
        return (f'<html><body><section class="tgme_channel_history js-message_history">{link}{"".join(widgets)}'
                '</section></body></html>')

    def handler(request: httpx.Request) -> httpx.Response:
        raw = request.url.params.get("before")
        before = int(raw) if raw else None
        seen.append(before)
        return httpx.Response(200, text=page(before), headers={"Content-Type": "text/html; charset=utf-8"})

    client = WebClient(rt.settings.web, budget=RequestBudget(6000, burst=100), transport=httpx.MockTransport(handler))
    jobs = WebJobs(rt, client=client)
    ch = ChannelConfig(username=name, source="web")
    try:
        [r1] = await jobs.poll([ch])
        assert r1.error is None and (await channel_row(rt, name)).cursor == 15
        state["newest"] = 40
        seen.clear()
        [r2] = await jobs.poll([ch])
        assert r2.error is None and seen == [None, 32, 24]
        assert r2.new == 14 + 8 + 1  # 16..29 one by one, 33..40, and the album 30-32 as one post
        row = await channel_row(rt, name)
        assert row.cursor == 40
        album = await scalar(rt, select(m.Post.member_ids).where(m.Post.channel_id == row.id,
                                                                   m.Post.message_id == 30))
        assert album == [30, 31, 32]
    finally:
        await jobs.aclose()


async def test_edit_becomes_a_version_and_429_is_honoured(web_rt: tuple[Runtime, Site]) -> None:
    rt, site = web_rt
    site.add("newsone", 6)
    jobs = WebJobs(rt)
    try:
        await jobs.poll([CH])
        site.edit("newsone", 5, "Исправлено: Росатом и партнёры")
        site.too_many = 1  # the next request is refused once with Retry-After: 0
        [r] = await jobs.poll([CH])
        assert r.error is None and r.edited == 1 and r.requests == 2
        text = await scalar(rt, select(m.Post.text).where(m.Post.message_id == 5))
        assert text == "Исправлено: Росатом и партнёры"
        assert await scalar(rt, select(func.count()).select_from(m.PostVersion)) == 1
    finally:
        await jobs.aclose()


async def test_long_retry_after_defers_and_stores_nothing(web_rt: tuple[Runtime, Site]) -> None:
    rt, site = web_rt
    site.add("newsone", 3)
    site.too_many, site.retry_after = 1, "3600"
    jobs = WebJobs(rt)
    try:
        [r] = await jobs.poll([CH])
        assert r.deferred_until is not None and r.new == 0
        row = await channel_row(rt, "newsone")
        assert row.not_before is not None and row.not_before > datetime.now(UTC) + timedelta(minutes=50)
        assert row.baseline_id is None
        [again] = await jobs.poll([CH])  # still deferred: no request goes out
        assert again.deferred_until is not None and again.requests == 0 and len(site.requests) == 1
    finally:
        await jobs.aclose()


async def test_channel_without_preview_is_unavailable(web_rt: tuple[Runtime, Site]) -> None:
    rt, _site = web_rt
    jobs = WebJobs(rt)
    try:
        [r] = await jobs.poll([ChannelConfig(username="hidden_one", source="web")])
        assert r.unavailable and "no public web preview" in (r.error or "")
        row = await channel_row(rt, "hidden_one")
        assert row.status == "unavailable" and "redirects" in (row.status_reason or "")
        [again] = await jobs.poll([ChannelConfig(username="hidden_one", source="web")])
        assert again.unavailable and again.requests == 0  # retried later, not hammered
    finally:
        await jobs.aclose()


async def test_a_redirect_within_the_preview_is_followed(site: tuple[Site, str]) -> None:
    """A renamed channel (/s/old → /s/new) is read under its new name, ?before= kept; a redirect loop is an
    error, not an endless walk; pages are asked for in English with a real User-Agent."""
    from monitor.budget import RequestBudget
    from monitor.config import WebSourceSettings
    from monitor.sources.web import WebClient, WebSourceError

    s, base = site
    s.add("newname", 20)
    s.renamed["oldname"] = "newname"
    s.renamed["loop_a"], s.renamed["loop_b"] = "loop_b", "loop_a"
    client = WebClient(WebSourceSettings(base_url=base), budget=RequestBudget(6000, burst=100))
    try:
        page = await client.page("oldname", before=15)
        assert [p.message_id for p in page.posts] == list(range(7, 15))
        assert s.requests[-2:] == [("oldname", 15), ("newname", 15)]
        with pytest.raises(WebSourceError, match="redirect"):
            await client.page("loop_a")
    finally:
        await client.aclose()
    assert s.headers[0]["Accept-Language"].startswith("en") and "Mozilla" in s.headers[0]["User-Agent"]


async def test_backfill_resumes_completes_and_repeats_nothing(web_rt: tuple[Runtime, Site]) -> None:
    rt, site = web_rt
    site.add("newsone", 30)  # ids 2..31
    seen: list[tuple[int, int | None]] = []
    jobs = WebJobs(rt)
    try:
        r1 = await jobs.backfill(CH, limit=10, progress=lambda n, total: seen.append((n, total)))
        assert r1.new == 10 and r1.alerts == 0
        row = await channel_row(rt, "newsone")
        assert row.backfill_low == 22 and not row.backfill_done
        r2 = await jobs.backfill(CH)  # resumes below id 22
        assert r2.new == 20 and r2.error is None
        row = await channel_row(rt, "newsone")
        assert row.backfill_done and row.cursor == 31
        assert await scalar(rt, select(func.count()).select_from(m.Post)) == 30
        site.requests.clear()
        r3 = await jobs.backfill(CH)
        assert r3.new == 0 and len(site.requests) == 1
        assert await scalar(rt, select(func.count()).select_from(m.Alert)) == 0
        assert seen and seen[0][0] <= 10
        # a first poll after the backfill: baseline at the newest id, nothing alerts
        [p] = await jobs.poll([CH])
        assert p.alerts == 0 and (await channel_row(rt, "newsone")).baseline_id == 31
    finally:
        await jobs.aclose()


async def test_backfill_since_and_alert(web_rt: tuple[Runtime, Site]) -> None:
    rt, site = web_rt
    site.add("newsone", 12)  # ids 2..13 dated T0 + id hours
    jobs = WebJobs(rt)
    try:
        r = await jobs.backfill(CH, since=T0 + timedelta(hours=8), alert=True)
        assert r.new == 6 and r.alerts == 6  # ids 8..13
        row = await channel_row(rt, "newsone")
        assert not row.backfill_done and row.backfill_low == 8
    finally:
        await jobs.aclose()


def test_backfill_command_dispatches_by_source(site: tuple[Site, str], write_config: Callable[..., Any],
                                               sqlite_url: str) -> None:
    from monitor.cli import main as cli

    s, base = site
    s.add("newsone", 11)
    cfg = write_config(config(base, "newsone", alerts=False), sqlite_url)
    r = CliRunner().invoke(cli, ["--config", str(cfg), "backfill", "@newsone", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "@newsone: 11 new posts" in r.output
    r = CliRunner().invoke(cli, ["--config", str(cfg), "backfill", "https://t.me/newsone", "--no-progress"])
    assert r.exit_code == 0 and "0 new posts" in r.output, r.output
    r = CliRunner().invoke(cli, ["--config", str(cfg), "backfill", "@unknown_chan", "--no-progress"])
    assert r.exit_code == 2 and "not a configured channel" in r.output
    r = CliRunner().invoke(cli, ["--config", str(cfg), "backfill", "@newsone", "--since", "yesterday"])
    assert r.exit_code == 2 and "--since" in r.output


# --- issue 17 item 3: a bad answer of 200 is a transient error, never "unavailable", never stored -----------


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries without the real pauses (2, 4, 8 s)."""
    import monitor.sources.web as web

    monkeypatch.setattr(web, "RETRY_PAUSE", 0.001)


async def test_a_bad_page_is_retried_then_a_transient_error(web_rt: tuple[Runtime, Site], quick_retries: None) -> None:
    rt, site = web_rt
    site.add("newsone", 5)  # ids 2..6
    jobs = WebJobs(rt)
    try:
        await jobs.poll([CH])
        site.add("newsone", 3)  # ids 7..9
        site.bad = ["captcha"]  # once: the retry reads the real page
        [r] = await jobs.poll([CH])
        assert (r.error, r.new, r.alerts, r.requests) == (None, 3, 3, 2)
        site.add("newsone", 2)  # ids 10, 11
        for kinds in (["captcha"] * 4, ["garbage"] * 4):
            site.bad = list(kinds)
            [r] = await jobs.poll([CH])
            assert r.error is not None and "not a channel's preview page" in r.error and "4 tries" in r.error
            assert (r.new, r.unavailable, r.deferred_until, r.requests) == (0, False, None, 4)
            row = await channel_row(rt, "newsone")
            assert row.status == "active" and row.not_before is None and row.cursor == 9
            assert "captcha" in (row.last_error or "")
        [r] = await jobs.poll([CH])  # the next poll, at the channel's normal turn, reads what was missed
        assert (r.error, r.new, r.alerts) == (None, 2, 2)
        assert (await channel_row(rt, "newsone")).last_error is None
    finally:
        await jobs.aclose()


async def test_a_page_of_another_channel_is_refused(web_rt: tuple[Runtime, Site], quick_retries: None) -> None:
    rt, site = web_rt
    site.add("newsone", 5)
    site.add("otherchan", 12)
    site.bad = ["other"] * 4
    jobs = WebJobs(rt)
    try:
        [r] = await jobs.poll([CH])
        assert r.error is not None and "another channel (@otherchan, not @newsone)" in r.error
        row = await channel_row(rt, "newsone")
        assert row.baseline_id is None and row.cursor == 0 and row.status == "active"
        assert await scalar(rt, select(func.count()).select_from(m.Post)) == 0
        [r] = await jobs.poll([CH])
        assert r.error is None and r.new == 5 and (await channel_row(rt, "newsone")).baseline_id == 6
    finally:
        await jobs.aclose()


async def test_a_page_cut_inside_a_post_stores_nothing(web_rt: tuple[Runtime, Site], quick_retries: None) -> None:
    rt, site = web_rt
    site.add("newsone", 5)  # ids 2..6
    jobs = WebJobs(rt)
    try:
        await jobs.poll([CH])
        site.add("newsone", 3)  # ids 7..9; the page breaks off inside post 9
        site.bad = ["cut"] * 4
        [r] = await jobs.poll([CH])
        assert r.error is not None and "cut short" in r.error and r.new == 0
        assert (await channel_row(rt, "newsone")).cursor == 6
        assert await scalar(rt, select(func.count()).select_from(m.Post)) == 5
        [r] = await jobs.poll([CH])
        assert (r.error, r.new, r.alerts) == (None, 3, 3) and (await channel_row(rt, "newsone")).cursor == 9
    finally:
        await jobs.aclose()


async def test_an_unreadable_post_holds_the_cursor_below_it(web_rt: tuple[Runtime, Site]) -> None:
    """A whole page whose post 8 shows no date: 7 is stored, 8 and 9 wait (the cursor stays at 7); once 8
    reads, both are stored and alert, each once."""
    rt, site = web_rt
    site.add("newsone", 5)  # ids 2..6
    jobs = WebJobs(rt)
    try:
        await jobs.poll([CH])
        site.add("newsone", 3)  # ids 7..9
        site.nodate = {8}
        [r] = await jobs.poll([CH])
        assert (r.new, r.alerts) == (1, 1) and r.error is not None and "post 8 of @newsone" in r.error
        row = await channel_row(rt, "newsone")
        assert row.cursor == 7 and "post 8" in (row.last_error or "") and row.status == "active"
        site.nodate = set()
        [r] = await jobs.poll([CH])
        assert (r.error, r.new, r.alerts) == (None, 2, 2)
        assert (await channel_row(rt, "newsone")).cursor == 9
        assert await scalar(rt, select(func.count()).select_from(m.Alert)) == 3
    finally:
        await jobs.aclose()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_unreachable_site_ends_the_round(make_settings: Callable[..., Settings], db_url: str,
                                                  quick_retries: None) -> None:
    from monitor.sources.web import WebUnreachable

    base = f"http://127.0.0.1:{_closed_port()}"
    async with open_runtime(make_settings(config(base, "newsone", "second"), db_url)) as rt:
        jobs = WebJobs(rt)
        try:
            with pytest.raises(WebUnreachable, match=r"cannot reach the web preview at http://127\.0\.0\.1:\d+: "
                                                     r"ConnectError.*set \[sources\.web\] proxy"):
                await jobs.poll([CH, ChannelConfig(username="second", source="web")])
            assert jobs.client.requests == 4  # one channel's request and its 3 retries; the other not tried
            row = await channel_row(rt, "newsone")
            assert "cannot reach" in (row.last_error or "") and row.status == "active" and row.not_before is None
        finally:
            await jobs.aclose()


def test_run_once_exits_1_when_the_web_source_is_unreachable(write_config: Callable[..., Any], sqlite_url: str,
                                                             quick_retries: None) -> None:
    from monitor.cli import main as cli

    cfg = write_config(config(f"http://127.0.0.1:{_closed_port()}", "newsone", alerts=False), sqlite_url)
    r = CliRunner().invoke(cli, ["--config", str(cfg), "run", "--once"])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    assert "cannot reach the web preview at http://127.0.0.1:" in r.output and "Traceback" not in r.output


def test_run_once_exits_0_when_the_web_source_answers(site: tuple[Site, str], write_config: Callable[..., Any],
                                                      sqlite_url: str) -> None:
    from monitor.cli import main as cli

    s, base = site
    s.add("newsone", 3)
    cfg = write_config(config(base, "newsone", alerts=False), sqlite_url)
    r = CliRunner().invoke(cli, ["--config", str(cfg), "run", "--once"])
    assert r.exit_code == 0, r.output


# --- issue 17 item 13: a web forward keeps its origin, so forwards of one story alert once ------------------


async def test_one_origin_forwarded_into_two_web_channels_alerts_once(
        site: tuple[Site, str], make_settings: Callable[..., Settings], db_url: str) -> None:
    s, base = site
    s.add("newsone", 3)
    s.add("newstwo", 3)
    async with open_runtime(make_settings(config(base, "newsone", "newstwo"), db_url)) as rt:
        jobs = WebJobs(rt)
        two = ChannelConfig(username="newstwo", source="web")
        try:
            await jobs.poll([CH, two])  # baselines
            s.add("newsone", 1, lambda i: "Росатом открыл новый энергоблок")
            s.add("newstwo", 1, lambda i: "Переслано: Росатом открыл новый энергоблок!")
            s.forwards[("newsone", 5)] = s.forwards[("newstwo", 5)] = "Upstream_News/77"
            [r1] = await jobs.poll([CH])
            [r2] = await jobs.poll([two])
            assert (r1.new, r1.alerts, r2.new, r2.alerts) == (1, 1, 1, 0)
            async with rt.engine.connect() as c:
                alerts = (await c.execute(select(m.Alert.also_in, m.Alert.kind))).all()
                fwd = (await c.execute(select(m.Post.fwd_username, m.Post.fwd_message_id, m.Post.fwd_channel_id)
                                       .where(m.Post.message_id == 5))).all()
            assert alerts == [(["@newstwo"], "match")]
            assert fwd == [("upstream_news", 77, None), ("upstream_news", 77, None)]
        finally:
            await jobs.aclose()


async def test_a_web_forward_of_a_channel_with_a_known_id_takes_its_id(
        site: tuple[Site, str], make_settings: Callable[..., Settings], db_url: str) -> None:
    """The origin is a stored channel whose Telegram id is known (polled through Telethon, say): the web
    forward gets that id, so it is one story with the origin post itself and with Telethon forwards of it."""
    s, base = site
    s.add("newsone", 3)
    async with open_runtime(make_settings(config(base, "newsone"), db_url)) as rt:
        await rt.store.upsert_channel(username="upstream_news", tg_id=1500000077, source="telethon")
        jobs = WebJobs(rt)
        try:
            await jobs.poll([CH])
            s.add("newsone", 1, lambda i: "Росатом открыл новый энергоблок")
            s.forwards[("newsone", 5)] = "upstream_news/77"
            await jobs.poll([CH])
            fwd = await scalar(rt, select(m.Post.fwd_channel_id).where(m.Post.message_id == 5))
            assert fwd == 1500000077
        finally:
            await jobs.aclose()
