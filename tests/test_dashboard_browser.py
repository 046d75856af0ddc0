"""The dashboard in a real browser: Debian's chromium driven by Playwright (never Playwright's own browser
download), against a real uvicorn server on 127.0.0.1 over an SQLite archive filled by the demo pipeline
plus a hostile channel (tests/test_dashboard.py's ``fill_archive``).

Covers: logging in with the token, every page (a screenshot of each under the test's temp dir), the
filters, search, following links, paging, retrying an alert, the XSS cases (no dialog, no request to
another host, markup shown as text), English by Accept-Language, and a phone-width layout."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from monitor.config import Settings
from monitor.config.settings import DashboardSettings
from tests.conftest import IN_CI
from tests.test_dashboard import HOSTILE_ENTITY, TOKEN, fill_archive

CHROMIUM = "/usr/bin/chromium"

if not os.path.exists(CHROMIUM):
    if IN_CI:
        pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium", pytrace=False)
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Browser, BrowserContext, Page, Request, expect, sync_playwright  # noqa: E402


class ServerThread:
    """The dashboard server (the same DashboardServer ``tgmonitor web`` runs) on its own event loop."""

    def __init__(self, settings: Settings) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.settings = replace(settings, dashboard=DashboardSettings(listen=f"127.0.0.1:{self.port}", token=TOKEN))
        self.base = f"http://127.0.0.1:{self.port}"
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dashboard", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self.error: BaseException | None = None

    def _run(self) -> None:
        from monitor.dashboard.server import DashboardServer

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._server = DashboardServer(self.settings, embedded=True)
            task = asyncio.ensure_future(self._server.serve())
            while not self._server.started and not task.done():  # noqa: ASYNC110 - uvicorn has a flag, no event
                await asyncio.sleep(0.02)
            self._ready.set()
            await task

        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced by start()
            self.error = exc
            self._ready.set()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(30), "the dashboard did not start"
        if self.error is not None:
            raise self.error
        # the wait above also ends when serve() returned without an error and without serving
        assert self._server is not None and self._server.started, "the dashboard stopped before it served"

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.stop)
        self._thread.join(15)
        assert not self._thread.is_alive(), "the dashboard did not stop within 15 s"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    data = tmp_path_factory.mktemp("browser")
    settings = asyncio.run(fill_archive(f"sqlite:///{data / 'dash.db'}", data))
    srv = ServerThread(settings)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser(server: ServerThread) -> Iterator[Browser]:
    # after the server: sync Playwright runs an event loop in this thread, and the archive is filled with
    # asyncio.run() before it starts
    args = ["--no-sandbox"] if os.geteuid() == 0 else []  # chromium refuses root without it
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        yield b
        b.close()


class Watch:
    """What a page did that it must not: dialogs (alert/confirm), requests to other hosts, CSP or script
    errors in the console."""

    def __init__(self, page: Page, base: str) -> None:
        self.dialogs: list[str] = []
        self.foreign: list[str] = []
        self.errors: list[str] = []
        host = base.split("//", 1)[1]

        def on_dialog(d: Any) -> None:
            self.dialogs.append(d.message)
            d.dismiss()

        def on_request(r: Request) -> None:
            if not r.url.startswith(("data:", "about:")) and r.url.split("//", 1)[-1].split("/", 1)[0] != host:
                self.foreign.append(r.url)

        page.on("dialog", on_dialog)
        page.on("request", on_request)
        # script errors and CSP violations; a 401 after a wrong token is the page working, not an error
        page.on("console", lambda msg: self.errors.append(msg.text)
                if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
        page.on("response", lambda r: self.errors.append(f"{r.status} {r.url}") if r.status >= 500 else None)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def clean(self) -> None:
        assert self.dialogs == [], self.dialogs
        assert self.foreign == [], self.foreign
        assert self.errors == [], self.errors


def login(page: Page, base: str) -> None:
    page.goto(base + "/")
    expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    expect(page).to_have_url(base + "/")


@pytest.fixture
def context(browser: Browser, server: ServerThread) -> Iterator[BrowserContext]:
    ctx = browser.new_context(locale="ru-RU", viewport={"width": 1280, "height": 900})
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext, server: ServerThread) -> Page:
    """A logged-in page."""
    p = context.new_page()
    login(p, server.base)
    return p


def shot(page: Page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5000
    return path


# ------------------------------------------------------------------------------------------------ tests


def test_login_with_the_token(context: BrowserContext, server: ServerThread, tmp_path: Path) -> None:
    page = context.new_page()
    watch = Watch(page, server.base)
    page.goto(server.base + "/mentions?since=2025-04")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    shot(page, tmp_path, "login")
    page.fill("input[name=token]", "a-wrong-token-0000000000")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_have_text("Неверный токен.")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    expect(page).to_have_url(server.base + "/mentions?since=2025-04")  # back where it was going
    expect(page.locator("h1")).to_contain_text("Упоминания")
    cookies = {c["name"]: c for c in context.cookies()}
    assert cookies["tgm_session"]["httpOnly"] and cookies["tgm_session"]["value"] != TOKEN
    page.click("button.link")  # log out
    expect(page).to_have_url(re.compile(r"/login"))
    watch.clean()


def test_every_page_with_a_screenshot(page: Page, server: ServerThread, tmp_path: Path) -> None:
    watch = Watch(page, server.base)
    page.goto(server.base + "/")
    expect(page.locator("svg.chart")).to_be_visible()  # the 30-day chart
    expect(page.locator("table.channels tbody tr")).to_have_count(2)
    shot(page, tmp_path, "overview")
    page.click("nav >> text=Упоминания")
    expect(page.locator("article.card").first).to_be_visible()
    expect(page.locator("#total")).to_contain_text("упоминани")
    shot(page, tmp_path, "mentions")
    page.click("nav >> text=Поиск")
    page.fill("input[name=q]", "кредит")
    page.keyboard.press("Enter")
    expect(page.locator("article.card mark").first).to_be_visible()
    shot(page, tmp_path, "search")
    page.click("nav >> text=Объекты")
    expect(page.locator("#total")).to_contain_text("9 объектов")
    shot(page, tmp_path, "entities")
    page.click("table >> text=Речсталь")
    expect(page.locator("h1")).to_contain_text("Речсталь")
    expect(page.locator("details summary").first).to_contain_text("Речсталь")  # the generated forms
    expect(page.locator("svg.chart")).to_be_visible()
    shot(page, tmp_path, "entity")
    page.locator("ol.toplist a").first.click()  # a top channel → its page
    expect(page.locator("h2").first).to_contain_text("Посты")
    shot(page, tmp_path, "channel")
    page.goto(server.base + "/alerts")
    expect(page.locator("table.alerts tbody tr").first).to_be_visible()
    shot(page, tmp_path, "alerts")
    watch.clean()
    assert len(list(tmp_path.glob("*.png"))) == 7


def test_filters_paging_and_links(page: Page, server: ServerThread) -> None:
    watch = Watch(page, server.base)
    page.goto(server.base + "/mentions")
    everything = int(re.sub(r"\D", "", page.locator("#total").inner_text()))
    page.select_option("select[name=entity]", label="Северный кредит")  # applies itself (app.js)
    expect(page).to_have_url(re.compile(r"entity=%D1%81%D0%B5%D0%B2"))
    some = int(re.sub(r"\D", "", page.locator("#total").inner_text()))
    assert 0 < some < everything
    badges = page.locator("article.card .badge").all_inner_texts()
    assert badges and set(badges) == {"Северный кредит"}
    page.fill("input[name=since]", "2025-04-15")
    page.click("form.filters button[type=submit]")
    expect(page).to_have_url(re.compile(r"since=2025-04-15"))
    assert int(re.sub(r"\D", "", page.locator("#total").inner_text())) < some
    for t in page.locator("article.card time").all():
        assert t.get_attribute("datetime") >= "2025-04-15"  # type: ignore[operator]
    page.fill("input[name=since]", "next tuesday")
    page.click("form.filters button[type=submit]")
    expect(page.locator(".error")).to_contain_text("is not a date")
    # keyset paging: the second page continues where the first stopped
    page.goto(server.base + "/mentions")
    first = page.locator("article.card time").all_inner_texts()
    page.click("a[rel=next]")
    expect(page).to_have_url(re.compile(r"before="))
    second = page.locator("article.card time").all_inner_texts()
    assert second and max(second) <= min(first)
    # follow links: a badge to its entity, the channel to its page, the edited post to its versions
    page.goto(server.base + "/mentions?channel=@hostile_news")
    page.locator("article.card .badge", has_text="Северный кредит").first.click()
    expect(page.locator("h1")).to_contain_text("Северный кредит")
    page.goto(server.base + "/mentions?channel=@hostile_news")
    page.locator("article.card a.channel").first.click()
    expect(page.locator("h1")).to_contain_text("@hostile_news")
    page.locator("a.badge", has_text="v2").first.click()
    expect(page.locator("section.version")).to_have_count(2)
    expect(page.locator("section.version.current del")).to_have_text("открыл")
    expect(page.locator("section.version.current ins").first).to_have_text("закрыл")
    tme = page.locator("a[target=_blank]").first
    assert tme.get_attribute("href") == "https://t.me/hostile_news/2"
    assert "noopener" in (tme.get_attribute("rel") or "")
    watch.clean()


def test_search_query_language(page: Page, server: ServerThread) -> None:
    page.goto(server.base + "/search")
    page.fill("input[name=q]", '"северный кредит"')
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"q=%22"))
    phrase = int(re.sub(r"\D", "", page.locator("#total").inner_text()))
    assert phrase > 0
    expect(page.locator("article.card mark").first).to_be_visible()
    page.fill("input[name=q]", '"северный кредит" -офис')
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"q=.*-%D0%BE%D1%84%D0%B8%D1%81"))  # the new results, not the old page
    fewer = int(re.sub(r"\D", "", page.locator("#total").inner_text()))
    assert fewer < phrase
    assert "офис" not in " ".join(page.locator("article.card .snippet").all_inner_texts()).lower()


def test_retry_a_failed_alert(page: Page, server: ServerThread, tmp_path: Path) -> None:
    watch = Watch(page, server.base)
    page.goto(server.base + "/alerts?status=failed")
    failed = int(re.sub(r"\D", "", page.locator("#total").inner_text()))
    assert failed >= 1
    row = page.locator("table.alerts tbody tr").first
    row_id = row.get_attribute("id")
    expect(row.locator(".status")).to_have_text("ошибка")
    row.locator("button", has_text="Повторить").click()
    expect(page.locator("#retried")).to_have_text("Поставлено в очередь снова: 1.")
    assert int(re.sub(r"\D", "", page.locator("#total").inner_text())) == failed - 1
    page.goto(server.base + "/alerts")
    expect(page.locator(f"#{row_id} .status")).to_have_text("ждёт")
    shot(page, tmp_path, "alerts-after-retry")
    watch.clean()


def test_hostile_posts_render_as_text(page: Page, server: ServerThread, tmp_path: Path) -> None:
    watch = Watch(page, server.base)
    for path in ("/mentions?channel=@hostile_news", "/search?q=жирный", "/mentions", "/entities", "/",
                 "/alerts"):
        page.goto(server.base + path)
        page.wait_for_load_state("networkidle")
    page.goto(server.base + "/mentions?channel=@hostile_news")
    text = page.locator("main").inner_text()
    assert "<script>alert(1)</script>" in text and "<img src=x onerror=alert(2)>" in text
    assert "[жми](javascript:alert(3))" in text and "**жирный**" in text
    assert page.locator("main img").count() == 0
    assert page.locator("a[href^='javascript:']").count() == 0
    page.locator("a.channel").first.click()
    expect(page.locator("h1 small")).to_have_text('<script>alert("title")</script>Злые новости')
    page.goto(server.base + "/entities")
    page.locator("table a", has_text="Зло").click()
    expect(page.locator("h1")).to_contain_text(HOSTILE_ENTITY)
    page.wait_for_load_state("networkidle")
    shot(page, tmp_path, "hostile-entity")
    watch.clean()  # no alert() ran, nothing was fetched from evil.example, no CSP violation


def test_english_and_a_phone(browser: Browser, server: ServerThread, tmp_path: Path) -> None:
    ctx = browser.new_context(locale="en-US", viewport={"width": 390, "height": 844}, is_mobile=True,
                              has_touch=True, device_scale_factor=2)
    try:
        page = ctx.new_page()
        login(page, server.base)
        for path, heading in (("/", "Overview"), ("/mentions", "Mentions"), ("/alerts", "Alerts"),
                              ("/search?q=кредит", "Search")):
            page.goto(server.base + path)
            expect(page.locator("h1")).to_contain_text(heading)
            # nothing wider than the phone: wide tables scroll inside their own box
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, (path, width)
        page.goto(server.base + "/mentions")
        expect(page.locator("#total")).to_contain_text("mentions")
        shot(page, tmp_path, "mentions-phone")
    finally:
        ctx.close()
