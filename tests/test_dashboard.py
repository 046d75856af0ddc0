"""The web dashboard at the HTTP level (httpx against the real ASGI app) on SQLite and PostgreSQL: every
route, its status codes, the token and CSRF rules, the security headers, escaping, languages, totals and
keyset paging, over an archive filled by the demo pipeline plus a hostile channel.

The browser-level tests (a real chromium) are in tests/test_dashboard_browser.py."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from monitor import archive
from monitor import models as m
from monitor.config import AlertDestination, DatabaseSettings, Settings, to_async_url
from monitor.config.settings import DashboardSettings
from monitor.dashboard import create_app
from monitor.dashboard.security import CSRF_COOKIE, SESSION_COOKIE, session_value
from monitor.db import create_engine
from monitor.matching import EntitySpec
from monitor.posts import Post
from tests.conftest import IN_CI, PG_ADMIN_URL, _admin, _pg_reachable
from tests.tme_server import wait_until

TOKEN = "test-token-0123456789abcdef"
API_HASH = "0123456789abcdef0123456789abcdef"
HOOK_SECRET = "hooksecret0123456789"  # a webhook path part: registered as a secret, must never show
HOSTILE_TITLE = '<script>alert("title")</script>Злые новости'
HOSTILE_ENTITY = 'Зло"><img src=x onerror=alert(7)>'
XSS_TEXT = ('<script>alert(1)</script> Речсталь <img src=x onerror=alert(2)> [жми](javascript:alert(3)) '
            '**жирный** <a href="javascript:alert(4)">ссылка</a> <img src="https://evil.example/t.png">')


# ------------------------------------------------------------------------------------------ the archive


async def fill_archive(db_url: str, data_dir: Path) -> Settings:
    """Run the demo pipeline (``tgmonitor demo``'s own functions) into ``db_url``, then ingest a hostile
    channel: markup in its title, an entity name and post texts, an edited post, a repost of a demo story,
    and alerts to a destination that fails (max_attempts 1), so the outbox holds failed rows."""
    import monitor.demo as demo
    from monitor.alerts.deliver import deliver_due
    from monitor.ingest import AlertRule
    from monitor.runtime import open_runtime

    url = to_async_url(db_url)
    original = demo.demo_settings

    def on_db(dd: Path, wl: Path) -> Settings:
        return replace(original(dd, wl), database=DatabaseSettings(url=url))

    demo.demo_settings = on_db  # the demo's pipeline, on this database
    try:
        await demo.run_demo(data_dir, lambda _line: None)
        with resources.as_file(resources.files("monitor.demo") / "watchlist.toml") as wl:
            base = on_db(data_dir, wl)
    finally:
        demo.demo_settings = original
    settings = replace(
        base,
        entities=(*base.entities, EntitySpec(name=HOSTILE_ENTITY, aliases=("злодейская корпорация",))),
        alerts=(*base.alerts, AlertDestination(name="broken", url=f"json://127.0.0.1:9/{HOOK_SECRET}")),
        delivery=replace(base.delivery, max_attempts=1),
        telegram=replace(base.telegram, api_hash=API_HASH),
    )
    async with open_runtime(settings) as rt:
        async for mt in archive.iter_mentions(rt.engine, limit=1):
            story = mt.text
        ch = await rt.store.upsert_channel(username="hostile_news", tg_id=1999000777, title=HOSTILE_TITLE,
                                           source="web")
        t0 = datetime(2025, 4, 19, 9, 0, tzinfo=UTC)
        posts = [
            Post(message_id=1, date=t0, text=XSS_TEXT),
            Post(message_id=2, date=t0 + timedelta(minutes=5), text="Северный кредит открыл офис в Заречинске."),
            Post(message_id=3, date=t0 + timedelta(minutes=10), text=story),  # the same story: "also in"
            Post(message_id=4, date=t0 + timedelta(minutes=15), text="Злодейская корпорация купила завод."),
        ]
        await rt.ingestor.ingest(ch, posts, rule=AlertRule(force=True), cursor=4)
        edit = Post(message_id=2, date=t0 + timedelta(minutes=5), edit_date=t0 + timedelta(hours=1),
                    text="Северный кредит закрыл офис в Заречинске <b>навсегда</b>.")
        await rt.ingestor.ingest(ch, [edit], rule=AlertRule(force=True), cursor=4)
        await deliver_due(rt)  # console: sent; broken: failed after its one attempt
    return settings


@dataclass
class Filled:
    settings: Settings
    url: str


def _pg_database() -> Iterator[str]:
    if not _pg_reachable():
        if IN_CI:
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL} (CI must provide it)")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}")
    from sqlalchemy.engine import make_url

    name = f"tgm_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def filled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    """The demo's archive plus the hostile channel, on each database (filled once per module: the tests
    that change it — retries — come last)."""
    data = tmp_path_factory.mktemp("dash")
    if request.param == "sqlite":
        url = f"sqlite:///{data / 'dash.db'}"
        yield Filled(asyncio.run(fill_archive(url, data)), url)
        return
    gen = _pg_database()
    url = next(gen)
    try:
        yield Filled(asyncio.run(fill_archive(url, data)), url)
    finally:
        gen.close()


@pytest.fixture
async def client(filled: Filled) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the dashboard without a token (loopback use)."""
    engine = create_engine(filled.settings.database.url)
    app = create_app(filled.settings, engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080",
                                 headers={"accept": "text/html"}) as c:
        yield c
    await engine.dispose()


@pytest.fixture
async def guarded(filled: Filled) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the dashboard with a token (no credentials sent unless a test adds them)."""
    engine = create_engine(filled.settings.database.url)
    app = create_app(filled.settings, engine, token=TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080") as c:
        yield c
    await engine.dispose()


async def entity_ids(settings: Settings) -> dict[str, str]:
    engine = create_engine(settings.database.url)
    try:
        async with engine.connect() as conn:
            return {name: eid for eid, name in (await conn.execute(select(m.Entity.id, m.Entity.name))).all()}
    finally:
        await engine.dispose()


async def channel_ids(settings: Settings) -> dict[str, int]:
    engine = create_engine(settings.database.url)
    try:
        async with engine.connect() as conn:
            return {u or str(g): cid for cid, u, g in
                    (await conn.execute(select(m.Channel.id, m.Channel.username, m.Channel.tg_id))).all()}
    finally:
        await engine.dispose()


def total_on(html: str) -> int:
    """The number in the page's total (``<small id="total">59 упоминаний</small>``)."""
    found = re.search(r'id="total">([\d\u202f,]+)', html)
    assert found, "the page shows no total"
    return int(re.sub(r"\D", "", found.group(1)))


# ------------------------------------------------------------------------------------------ pages


async def test_every_page_renders_with_totals_and_security_headers(client: httpx.AsyncClient,
                                                                   filled: Filled) -> None:
    ents = await entity_ids(filled.settings)
    chans = await channel_ids(filled.settings)
    ok = ["/", "/mentions", f"/mentions?entity={ents['Речсталь']}", "/mentions?channel=@hostile_news&since=2025-04",
          "/search", "/search?q=кредит", '/search?q="северный кредит" -офис', "/entities",
          f"/entities/{ents['Речсталь']}", f"/entities/{ents['Речсталь']}?by=week",
          f"/channels/{chans['hostile_news']}", f"/channels/{chans['hostile_news']}/posts/2", "/alerts",
          "/alerts?status=failed", "/healthz",
          "/static/style.css", "/static/app.js"]
    for path in ok:
        r = await client.get(path)
        assert r.status_code == 200, (path, r.text[:500])
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
    for path in ("/mentions", "/search?q=кредит", "/entities", f"/channels/{chans['hostile_news']}", "/alerts",
                 f"/entities/{ents['Речсталь']}"):
        assert total_on((await client.get(path)).text) > 0, path
    engine = create_engine(filled.settings.database.url)
    try:
        expected = await archive.count_mentions(engine)
    finally:
        await engine.dispose()
    assert total_on((await client.get("/mentions")).text) == expected


async def test_status_codes_for_bad_input(client: httpx.AsyncClient, filled: Filled) -> None:
    chans = await channel_ids(filled.settings)
    cases = {
        "/nope": 404, "/entities/no-such-entity": 404, "/channels/999999": 404,
        f"/channels/{chans['hostile_news']}/posts/999": 404, "/mentions?entity=nobody": 400,
        "/mentions?since=yesterday-ish": 400, "/mentions?before=!!!": 400, "/search?q=-only": 400,
        "/alerts?status=lost": 400, "/export?format=xml": 400, "/export?channel=@nobody_here": 400,
        f"/channels/{chans['hostile_news']}?before=abc": 400,
    }
    for path, code in cases.items():
        r = await client.get(path)
        assert r.status_code == code, (path, r.status_code, r.text[:300])
        if code == 400 and "text/html" in r.headers["content-type"]:
            assert 'class="error"' in r.text  # the reason is on the page, not a traceback
    assert (await client.get("/alerts/1/retry")).status_code == 405  # actions are POST only
    unknown = await client.get("/mentions?entity=nobody")
    assert "unknown entity &#39;nobody&#39;" in unknown.text and "Речсталь" in unknown.text


async def test_mentions_keyset_pages_cover_the_feed_once(client: httpx.AsyncClient, filled: Filled) -> None:
    engine = create_engine(filled.settings.database.url)
    try:
        want = [(mt.link, mt.entity) async for mt in archive.iter_mentions(engine)]
    finally:
        await engine.dispose()
    seen: list[tuple[str, str]] = []
    path: str | None = "/mentions"
    pages = 0
    while path:
        html = (await client.get(path)).text
        pages += 1
        for card in re.findall(r'<article class="card">(.*?)</article>', html, re.S):
            link = re.search(r'href="(https://t\.me/[^"]+)"', card).group(1)  # type: ignore[union-attr]
            for name in re.findall(r'class="badge" href="[^"]+">([^<]+)</a>', card):
                seen.append((link, name.replace("&#34;", '"').replace("&gt;", ">").replace("&lt;", "<")
                             .replace("&#39;", "'").replace("&amp;", "&")))
        nxt = re.search(r'rel="next" href="([^"]+)"', html)
        path = nxt.group(1).replace("&amp;", "&") if nxt else None
    assert pages >= 2
    assert len(seen) == len(set(seen))  # nothing twice across pages
    assert set(seen) == set(want)  # and nothing lost


async def test_hostile_text_is_escaped_everywhere(client: httpx.AsyncClient, filled: Filled) -> None:
    ents = await entity_ids(filled.settings)
    chans = await channel_ids(filled.settings)
    hostile = chans["hostile_news"]
    pages = ["/", "/mentions", "/mentions?channel=@hostile_news", f"/channels/{hostile}",
             f"/channels/{hostile}/posts/2", "/search?q=жирный", "/entities", f"/entities/{ents[HOSTILE_ENTITY]}",
             "/alerts"]
    for path in pages:
        html = (await client.get(path)).text
        assert "<script>alert" not in html and "<img src=x" not in html and "onerror=alert" not in html.replace(
            "onerror=alert(2)&gt;", "").replace("onerror=alert(7)&gt;", ""), path
        assert 'href="javascript:' not in html and "evil.example/t.png\"" not in html, path
        assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/app.js" defer>'], path
    feed = (await client.get("/mentions?channel=@hostile_news")).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in feed
    assert "**жирный**" in feed  # Markdown stays text
    page = (await client.get(f"/channels/{hostile}")).text
    assert "&lt;script&gt;alert(&#34;title&#34;)&lt;/script&gt;Злые новости" in page  # the title, as text
    versions = (await client.get(f"/channels/{hostile}/posts/2")).text
    assert "<del>открыл</del>" in versions and "<ins>закрыл</ins>" in versions  # the edit, side by side
    assert "&lt;b&gt;навсегда&lt;/b&gt;" in versions


async def test_also_in_and_highlighted_snippets(client: httpx.AsyncClient) -> None:
    feed = (await client.get("/mentions")).text
    assert "Также в" in feed  # the reposted demo story names the other channel
    assert re.search(r"Также в: [^<]*@hostile_news", feed)
    assert re.search(r"<mark>[^<]+</mark>", feed)


async def test_search_uses_the_cli_query_language(client: httpx.AsyncClient, filled: Filled) -> None:
    engine = create_engine(filled.settings.database.url)
    try:
        for q in ("кредит", '"северный кредит"', "кредит -офис"):
            n = await archive.count_search(engine, q)
            html = (await client.get("/search", params={"q": q})).text
            assert total_on(html) == n, q
            assert n == 0 or "<mark>" in html
    finally:
        await engine.dispose()


async def test_interface_language_follows_accept_language(client: httpx.AsyncClient) -> None:
    ru = (await client.get("/mentions")).text
    assert "Упоминания" in ru and '<html lang="ru">' in ru
    en = await client.get("/mentions", headers={"accept-language": "en-GB,en;q=0.9"})
    assert en.headers["content-language"] == "en" and "Mentions" in en.text and "Упоминания" not in en.text
    mixed = await client.get("/mentions", headers={"accept-language": "en;q=0.4, ru;q=0.8"})
    assert mixed.headers["content-language"] == "ru"
    other = await client.get("/mentions", headers={"accept-language": "de-DE"})
    assert other.headers["content-language"] == "ru"  # Russian by default


async def test_export_is_the_cli_export(client: httpx.AsyncClient, filled: Filled) -> None:
    ents = await entity_ids(filled.settings)
    engine = create_engine(filled.settings.database.url)
    try:
        for fmt in ("csv", "jsonl"):
            f = archive.Filters(entities=[ents["Речсталь"]])
            want = [line async for line in archive.export_lines(archive.iter_export(engine, filters=f,
                                                                                      matched_only=True), fmt)]
            r = await client.get("/export", params={"format": fmt, "entity": ents["Речсталь"]})
            assert r.status_code == 200
            assert "attachment" in r.headers["content-disposition"]
            assert r.text == "".join(line + "\n" for line in want)
            assert len(want) > 2
        rows = [json.loads(x) for x in (await client.get("/export", params={"format": "jsonl"})).text.splitlines()]
        assert any(r["text"] == XSS_TEXT for r in rows)  # data, unescaped: it is not HTML
    finally:
        await engine.dispose()


async def test_api_status_is_the_status_snapshot(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/status")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    snap = r.json()
    assert {"channels", "outbox", "incidents"} <= set(snap)
    assert snap["outbox"]["failed"] >= 1 and snap["outbox"]["sent"] >= 1


async def test_the_account_per_channel_is_in_api_status_and_an_overview_column_only_when_used(
        client: httpx.AsyncClient, filled: Filled) -> None:
    """Several Telegram accounts (issue 16): the snapshot ``status`` and the dashboard share names the account
    reading each channel; the overview shows an Account column only when some channel has one."""
    from monitor.health import channel_subject

    header = re.compile(r"<th>(Аккаунт|Account)</th>")
    snap = (await client.get("/api/status")).json()
    assert all(c["account"] is None for c in snap["channels"])
    assert not header.search((await client.get("/")).text)  # one account: no column
    engine = create_engine(filled.settings.database.url)
    try:
        async with engine.connect() as conn:
            first = (await conn.execute(select(m.Channel.id, m.Channel.username, m.Channel.tg_id)
                                        .order_by(m.Channel.id))).first()
            assert first is not None
            await conn.execute(update(m.Channel).where(m.Channel.id == first.id).values(account="reserve_acc"))
            await conn.commit()
        snap = (await client.get("/api/status")).json()
        accounts = {c["channel"]: c["account"] for c in snap["channels"]}
        assert accounts[channel_subject(first.username, first.tg_id)] == "reserve_acc"
        assert sum(1 for a in accounts.values() if a) == 1
        html = (await client.get("/")).text
        assert header.search(html) and "<td>reserve_acc</td>" in html
    finally:
        async with engine.connect() as conn:
            await conn.execute(update(m.Channel).values(account=None))
            await conn.commit()
        await engine.dispose()


async def test_no_secret_on_any_page(client: httpx.AsyncClient, filled: Filled) -> None:
    chans = await channel_ids(filled.settings)
    for path in ("/", "/alerts", "/alerts?status=failed", f"/channels/{chans['hostile_news']}", "/api/status"):
        body = (await client.get(path)).text
        assert HOOK_SECRET not in body and API_HASH not in body, path
    failed = (await client.get("/alerts?status=failed")).text
    assert "broken" in failed  # the failed rows are there, with their (redacted) error


# ------------------------------------------------------------------------------------------ access


async def test_token_rules(guarded: httpx.AsyncClient) -> None:
    # a script without the token: 401 with a Bearer challenge; a browser: to the login form, and back after
    r = await guarded.get("/mentions")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    r = await guarded.get("/mentions?since=30d", headers={"accept": "text/html"})
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fmentions%3Fsince%3D30d"
    assert (await guarded.get("/", headers={"authorization": "Bearer wrong-token-0000000000"})).status_code == 401
    for path in ("/", "/mentions", "/api/status", "/export?format=csv"):
        r = await guarded.get(path, headers={"authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200, path
        assert TOKEN not in r.text
    for path in ("/login", "/healthz", "/static/style.css"):  # open: the form needs its styles
        assert (await guarded.get(path)).status_code == 200, path
    assert (await guarded.post("/alerts/retry-failed")).status_code == 401


async def test_a_proxied_request_needs_a_token(client: httpx.AsyncClient, guarded: httpx.AsyncClient) -> None:
    """Without a token the dashboard serves this machine only: a request relayed by a reverse proxy (which
    could come from anywhere) is refused until a token is set."""
    r = await client.get("/mentions", headers={"x-forwarded-for": "203.0.113.7"})
    assert r.status_code == 403 and "set [web] token" in r.text
    r = await guarded.get("/mentions", headers={"x-forwarded-for": "203.0.113.7",
                                                "authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200


async def test_login_form_sets_a_session_cookie(guarded: httpx.AsyncClient) -> None:
    form = await guarded.get("/login?next=/alerts", headers={"accept": "text/html"})
    csrf = guarded.cookies[CSRF_COOKIE]
    assert f'value="{csrf}"' in form.text
    bad = await guarded.post("/login", data={"token": "not-the-token-000000", "csrf": csrf, "next": "/alerts"})
    assert bad.status_code == 401 and "Неверный токен" in bad.text
    no_csrf = await guarded.post("/login", data={"token": TOKEN, "next": "/alerts"})
    assert no_csrf.status_code == 403
    ok = await guarded.post("/login", data={"token": TOKEN, "csrf": csrf, "next": "/alerts"})
    assert ok.status_code == 303 and ok.headers["location"] == "/alerts"
    cookie = next(v for k, v in ok.headers.multi_items() if k == "set-cookie" and v.startswith(SESSION_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    assert guarded.cookies[SESSION_COOKIE] == session_value(TOKEN)
    assert (await guarded.get("/alerts", headers={"accept": "text/html"})).status_code == 200
    # an open redirect is refused: after login only a path of this site
    evil = await guarded.post("/login", data={"token": TOKEN, "csrf": csrf, "next": "//evil.example/x"})
    assert evil.headers["location"] == "/"
    out = await guarded.post("/logout", data={"csrf": csrf})
    assert out.status_code == 303
    assert (await guarded.get("/alerts", headers={"accept": "text/html"})).status_code == 303


async def test_login_is_throttled(guarded: httpx.AsyncClient) -> None:
    await guarded.get("/login")
    csrf = guarded.cookies[CSRF_COOKIE]
    codes = [(await guarded.post("/login", data={"token": f"guess-{i:020d}", "csrf": csrf})).status_code
             for i in range(11)]
    assert codes[:10] == [401] * 10 and codes[10] == 429
    # even the right token waits now
    assert (await guarded.post("/login", data={"token": TOKEN, "csrf": csrf})).status_code == 429


# ------------------------------------------------------------------------------------------ the CLI


def test_web_refuses_an_open_address_without_a_token(write_config: object, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from monitor.cli import main as cli

    monkeypatch.delenv("TGMONITOR_WEB_TOKEN", raising=False)
    cfg = write_config("", f"sqlite:///{tmp_path / 'x.db'}")  # type: ignore[operator]
    r = CliRunner().invoke(cli, ["--config", str(cfg), "web", "--listen", "0.0.0.0:8080"])
    assert r.exit_code == 2
    assert r.output.strip().count("\n") == 0  # one line
    assert "refusing to listen on 0.0.0.0:8080 without a token" in r.output and "TGMONITOR_WEB_TOKEN" in r.output
    r = CliRunner().invoke(cli, ["--config", str(cfg), "web", "--listen", "nonsense"])
    assert r.exit_code == 2 and "not host:port" in r.output
    cfg2 = write_config('[web]\nlisten = "0.0.0.0:8080"\n', f"sqlite:///{tmp_path / 'x.db'}",  # type: ignore[operator]
                        name="open.toml")
    r = CliRunner().invoke(cli, ["--config", str(cfg2), "config", "check"])
    assert r.exit_code == 2 and "web.listen" in r.output and "token" in r.output


def test_web_on_an_unmigrated_database_says_to_upgrade(write_config: object, tmp_path: Path) -> None:
    from monitor.cli import main as cli

    db = tmp_path / "empty.db"
    cfg = write_config("", f"sqlite:///{db}")  # type: ignore[operator]
    r = CliRunner().invoke(cli, ["--config", str(cfg), "web", "--listen", "127.0.0.1:8089"])
    assert r.exit_code == 1
    assert "tgmonitor db upgrade" in r.output


async def test_the_service_serves_the_dashboard_and_stops_it(filled: Filled) -> None:
    """What ``tgmonitor run`` does with ``[web] listen``: start_in_service over the service's engine, a
    background task, stopped at shutdown; a port already taken is logged, not fatal."""
    import socket

    from monitor.dashboard.server import start_in_service

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = replace(filled.settings, dashboard=DashboardSettings(listen=f"127.0.0.1:{port}"))
    engine = create_engine(settings.database.url)
    tasks: list[asyncio.Task[None]] = []
    try:
        server = start_in_service(settings, engine, lambda coro, name: tasks.append(
            asyncio.ensure_future(coro)))
        assert server is not None and len(tasks) == 1
        assert await wait_until(lambda: server.started, 10), "the dashboard did not start"
        async with httpx.AsyncClient() as c:
            r = await c.get(f"http://127.0.0.1:{port}/mentions", headers={"accept": "text/html"})
            assert r.status_code == 200 and total_on(r.text) > 0
        assert start_in_service(settings, engine, lambda coro, name: coro.close()) is None  # port taken
        # a reload: the entities shown are the new ones (the address and token stay)
        server.use_settings(replace(settings, entities=settings.entities[:1]))
        async with httpx.AsyncClient() as c:
            r = await c.get(f"http://127.0.0.1:{port}/entities", headers={"accept": "text/html"})
            assert r.text.count("нет в конфигурации") == len(settings.entities) - 1
        server.stop()
        await asyncio.wait_for(tasks[0], 10)  # raises if the server did not stop, or stopped with an error
    finally:
        await engine.dispose()


# ------------------------------------------------------------------------------------------ actions (last)


async def test_retry_needs_csrf_and_makes_the_alert_due(client: httpx.AsyncClient, filled: Filled) -> None:
    engine = create_engine(filled.settings.database.url)
    try:
        async with engine.connect() as conn:
            failed = [r[0] for r in (await conn.execute(select(m.Alert.id).where(m.Alert.status == "failed")))]
        assert len(failed) >= 2
        page = await client.get("/alerts?status=failed")
        csrf = client.cookies[CSRF_COOKIE]
        assert f'action="/alerts/{failed[0]}/retry"' in page.text
        assert (await client.post(f"/alerts/{failed[0]}/retry", data={})).status_code == 403  # no token
        assert (await client.post(f"/alerts/{failed[0]}/retry", data={"csrf": "x" * 32})).status_code == 403
        cross = await client.post(f"/alerts/{failed[0]}/retry", data={"csrf": csrf},
                                  headers={"origin": "https://evil.example"})
        assert cross.status_code == 403  # right token, another site
        r = await client.post(f"/alerts/{failed[0]}/retry", data={"csrf": csrf, "status": "failed"})
        assert r.status_code == 303 and r.headers["location"] == "/alerts?status=failed&retried=1"
        assert (await client.post("/alerts/999999/retry", data={"csrf": csrf})).status_code == 404
        async with engine.connect() as conn:
            row = (await conn.execute(select(m.Alert.status, m.Alert.attempts).where(m.Alert.id == failed[0]))).one()
        assert tuple(row) == ("pending", 0)
        done = await client.get(r.headers["location"])
        assert 'id="retried"' in done.text
        all_failed = await client.post("/alerts/retry-failed", data={"csrf": csrf})
        assert all_failed.status_code == 303 and all_failed.headers["location"] == f"/alerts?retried={len(failed) - 1}"
        async with engine.connect() as conn:
            assert (await conn.execute(select(m.Alert.id).where(m.Alert.status == "failed"))).first() is None
            await conn.execute(update(m.Alert).where(m.Alert.id.in_(failed)).values(status="failed"))
            await conn.commit()
    finally:
        await engine.dispose()


async def test_bearer_scripts_retry_without_csrf(filled: Filled) -> None:
    engine = create_engine(filled.settings.database.url)
    app = create_app(filled.settings, engine, token=TOKEN)
    try:
        async with engine.connect() as conn:
            aid = (await conn.execute(select(m.Alert.id).where(m.Alert.status == "failed"))).scalars().first()
        assert aid is not None
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as c:
            r = await c.post(f"/alerts/{aid}/retry", headers={"authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 303
            r = await c.post(f"/alerts/{aid}/retry", headers={"authorization": "Bearer wrong-0000000000000000"})
            assert r.status_code == 401
    finally:
        await engine.dispose()


async def test_overview_latency_is_the_status_figures_by_channel(client: httpx.AsyncClient, filled: Filled) -> None:
    """Post date → alert sent (and seen → sent) per channel over 24 h: the numbers ``status`` computes."""
    from monitor import arrivals
    from monitor.dashboard import queries

    engine = create_engine(filled.settings.database.url)
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(m.Alert.id, m.Alert.post_id, m.Alert.status)
                                       .where(m.Alert.kind == "match").order_by(m.Alert.id))).all()
            picked = rows[:2]
            assert len(picked) == 2
            saved = [(r.id, r.status) for r in picked]
            for (aid, pid, _), (delay, ours) in zip(picked, [(40, 10), (20, 6)], strict=True):
                await conn.execute(update(m.Alert).where(m.Alert.id == aid).values(status="sent", sent_at=now))
                await conn.execute(update(m.Post).where(m.Post.id == pid).values(
                    date=now - timedelta(seconds=delay), seen_at=now - timedelta(seconds=ours), arrival="poll"))
            # the demo's other alerts, sent now, are of imported (old) posts: history, not monitoring latency
            await conn.execute(update(m.Alert).where(m.Alert.id.not_in([a for a, _ in saved]),
                                                     m.Alert.status == "sent").values(sent_at=now))
            await conn.commit()
        status_side = await arrivals.alert_latency(engine)
        page_side = await queries.alert_latency(engine)
        assert len(status_side) == len(page_side) >= 1
        assert sorted((v.alerts, v.p50, v.p95, v.seen_p50) for v in status_side.values()) == sorted(
            (v.alerts, v.p50, v.p95, v.seen_p50) for v in page_side)  # the same figures, other labels
        async with engine.connect() as conn:
            demo_title = (await conn.execute(select(m.Channel.title).join(m.Post, m.Post.channel_id == m.Channel.id)
                                             .where(m.Post.id == picked[0].post_id))).scalar_one()
        shown = next(v for v in page_side if v.channel.startswith(demo_title))
        # only the two live posts count: the demo's imported posts alerted now are left out
        assert (shown.alerts, shown.p50, shown.p95, shown.seen_p50) == (2, 30.0, 39.0, 8.0)
        html = (await client.get("/")).text
        assert 'class="latency"' in html and demo_title.split(" ")[0] in html
    finally:
        async with engine.connect() as conn:
            for aid, status in saved:
                await conn.execute(update(m.Alert).where(m.Alert.id == aid).values(status=status))
            await conn.commit()
        await engine.dispose()
