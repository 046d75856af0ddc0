"""The dashboard's ASGI app: one handler per page, each a thin view over the queries the CLI runs.

Pages: overview (``/``), mentions feed, search, entities and one entity, one channel and one post's
versions, the alert outbox; exports of the current filter as CSV or JSON Lines (the lines
``tgmonitor export`` writes); a JSON status for scripts. Everything is read-only except "retry" on alerts
(POST with a CSRF token). Templates autoescape; see :mod:`monitor.dashboard.security` for access rules.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from monitor import archive, fulltext
from monitor import models as m
from monitor.alerts import outbox
from monitor.archive import ArchiveError, Filters, Mention
from monitor.config import Settings
from monitor.dashboard import queries, render
from monitor.dashboard.i18n import Translator, translator
from monitor.dashboard.security import (
    CSRF_FIELD,
    SESSION_COOKIE,
    Guard,
    LoginThrottle,
    cookie_header,
    csrf_ok,
    safe_next,
    session_value,
    token_matches,
)
from monitor.db import sessionmaker
from monitor.health import status_snapshot
from monitor.logs import redact, register_secret, register_url_secrets
from monitor.matching import EntitySpec, Watchlist

log = logging.getLogger(__name__)

MENTIONS_PAGE = 30  # posts a page (each with all its mentions)
SEARCH_PAGE = 20
SEARCH_MAX_PAGE = 50  # a ranked list deeper than 1,000 hits is a query to narrow, not to page through
CHANNEL_PAGE = 30
ALERTS_PAGE = 200
TOP_ENTITIES = 5
SESSION_DAYS = 30


@dataclass(slots=True)
class Dashboard:
    """What every handler needs: the settings, the engine, the token, and small caches."""

    settings: Settings
    engine: AsyncEngine
    token: str | None
    env: Environment
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    forms: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # entity id -> explain()


def create_app(settings: Settings, engine: AsyncEngine, *, token: str | None = None) -> Starlette:
    """The dashboard over ``engine`` (the caller owns it). ``token``: required on every request when set."""
    env = Environment(loader=PackageLoader("monitor.dashboard", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals.update(when=render.when, ago=render.ago, duration=render.duration, url=url,
                       entity_url=entity_url, CSRF_FIELD=CSRF_FIELD)
    env.filters["redact"] = redact  # error texts may quote a URL: never show a registered secret
    for secret in (token, settings.telegram.api_hash, settings.telegram.session):
        register_secret(secret)
    for dest in settings.alerts:
        register_url_secrets(dest.url)
    dash = Dashboard(settings, engine, token, env)

    def bind(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            return await handler(dash, request)
        endpoint.__name__ = handler.__name__
        return endpoint

    routes = [
        Route("/", bind(overview_page)),
        Route("/mentions", bind(mentions_page)),
        Route("/search", bind(search_page)),
        Route("/entities", bind(entities_page)),
        Route("/entities/{entity_id:path}", bind(entity_page)),
        Route("/channels/{channel_id:int}", bind(channel_page)),
        Route("/channels/{channel_id:int}/posts/{message_id:int}", bind(post_page)),
        Route("/alerts", bind(alerts_page)),
        Route("/alerts/{alert_id:int}/retry", bind(retry_alert), methods=["POST"]),
        Route("/alerts/retry-failed", bind(retry_failed), methods=["POST"]),
        Route("/export", bind(export)),
        Route("/api/status", bind(api_status)),
        Route("/login", bind(login_page), methods=["GET", "POST"]),
        Route("/logout", bind(logout), methods=["POST"]),
        Route("/healthz", healthz),
        Mount("/static", StaticFiles(packages=[("monitor.dashboard", "static")]), name="static"),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_page(dash, request, exc.status_code, str(exc.detail))

    async def archive_error(request: Request, exc: Exception) -> Response:
        return error_page(dash, request, 400, str(exc))

    async def database_error(request: Request, exc: Exception) -> Response:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        log.warning("dashboard: database error on %s: %s", request.url.path, redact(reason))
        return error_page(dash, request, 503, redact(f"database error: {reason}"))

    app = Starlette(routes=routes, middleware=[Middleware(Guard, token=token)], exception_handlers={
        HTTPException: http_error, ArchiveError: archive_error, SQLAlchemyError: database_error,
    })
    app.state.dashboard = dash  # DashboardServer.use_settings() swaps the settings after a reload
    return app


# ---------------------------------------------------------------------------------------------- helpers


def url(path: str, params: Mapping[str, Any] | None = None, **more: Any) -> str:
    """``path?query`` from the non-empty values (lists become repeated keys)."""
    merged = {**(params or {}), **more}
    pairs: list[tuple[str, str]] = []
    for k, v in merged.items():
        for item in (v if isinstance(v, list | tuple) else [v]):
            if item not in (None, "", False):
                pairs.append((k, str(item)))
    return path + ("?" + urlencode(pairs) if pairs else "")


def entity_url(entity_id: str) -> str:
    """The entity page's path (ids may hold any character: quoted whole)."""
    return "/entities/" + quote(entity_id, safe="")


def page(dash: Dashboard, request: Request, name: str, *, http_status: int = 200, **ctx: Any) -> HTMLResponse:
    """Render a template with what every page shows: translations, nav, CSRF token, login state."""
    t = tr(request)
    html = dash.env.get_template(name).render(
        t=t, lang=t.lang, csrf=request.state.csrf, token_set=dash.token is not None,
        cookie_login=request.state.auth == "cookie", path=request.url.path, **ctx)
    return HTMLResponse(html, http_status, headers={"content-language": t.lang, "vary": "Accept-Language, Cookie"})


def tr(request: Request) -> Translator:
    return translator(request.headers.get("accept-language"))


def error_page(dash: Dashboard, request: Request, status: int, message: str) -> Response:
    if "text/html" not in request.headers.get("accept", "") and request.url.path.startswith(("/api/", "/export")):
        return PlainTextResponse(f"{status}: {message}\n", status)
    return page(dash, request, "error.html", http_status=status, status_code=status, message=message)


@dataclass(frozen=True, slots=True)
class FilterForm:
    """The CLI's filters as the page's form holds them (raw strings) and as the archive takes them."""

    entity: list[str]
    channel: list[str]
    since: str
    until: str
    filters: Filters

    @property
    def params(self) -> dict[str, Any]:
        return {"entity": self.entity, "channel": self.channel, "since": self.since, "until": self.until}


def read_filters(request: Request) -> FilterForm:
    """``entity``/``channel`` (repeatable) and ``since``/``until`` in the CLI's date syntax; a bad date is a
    400 page naming it (ArchiveError)."""
    q = request.query_params
    entity = [v.strip() for v in q.getlist("entity") if v.strip()]
    channel = [v.strip() for v in q.getlist("channel") if v.strip()]
    since, until = q.get("since", "").strip(), q.get("until", "").strip()
    f = Filters(entity, channel, archive.parse_when(since) if since else None,
                archive.parse_when(until, end=True) if until else None)
    return FilterForm(entity, channel, since, until, f)


def encode_cursor(key: archive.PostKey) -> str:
    """The next page's ``before=``: the last post shown (date, message id, row id), opaque in the URL."""
    d, mid, pid = key
    raw = json.dumps([d.isoformat(), mid, pid]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str | None) -> archive.PostKey | None:
    if not text:
        return None
    try:
        d, mid, pid = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        return (datetime.fromisoformat(d).astimezone(UTC), int(mid), int(pid))
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise HTTPException(400, "bad page link (before=…): open the first page again") from None


def int_param(request: Request, name: str, default: int | None = None, *, low: int = 1,
              high: int = 2**62) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPException(400, f"{name} must be a number, not {raw[:40]!r}") from None
    return min(max(value, low), high)


@dataclass(slots=True)
class Card:
    """One post on a feed: its mentions folded together, the snippet with every matched span marked."""

    post_id: int
    channel: str
    channel_id: int | None
    message_id: int
    date: datetime
    link: str
    text: str
    entities: dict[str, str] = field(default_factory=dict)  # id -> name, in order of appearance
    spans: list[tuple[int, int]] = field(default_factory=list)
    preview: bool = False
    also_in: list[str] = field(default_factory=list)
    edited: bool = False

    @property
    def snippet(self) -> Any:
        return render.highlight_spans(self.text, self.spans)


async def cards_for(dash: Dashboard, mentions: Sequence[Mention]) -> list[Card]:
    """Group consecutive mentions of one post (and one text: the post or its link preview) into cards, with
    each post's channel, edit state and the other channels carrying the same story."""
    cards: list[Card] = []
    for mt in mentions:
        last = cards[-1] if cards else None
        if last is None or last.post_id != mt.post_id or last.text != mt.text:
            last = Card(mt.post_id, mt.channel, None, mt.message_id, mt.date, mt.link, mt.text)
            cards.append(last)
        last.entities.setdefault(mt.entity_id, mt.entity)
        last.spans.append((mt.start, mt.end))
    ids = list(dict.fromkeys(c.post_id for c in cards))
    if ids:
        info = await queries.page_posts(dash.engine, ids)
        for c in cards:
            pi = info.get(c.post_id)
            if pi is not None:
                c.channel_id, c.edited, c.also_in = pi.channel_id, pi.version > 1, pi.also_in
                c.preview = c.text != pi.text
    return cards


async def collect(gen: AsyncIterator[Any]) -> list[Any]:
    async with aclosing(gen):  # type: ignore[type-var]
        return [x async for x in gen]


async def filter_choices(dash: Dashboard) -> tuple[list[queries.EntityRow], list[queries.ChannelRef]]:
    return await asyncio.gather(queries.entities(dash.engine), queries.channels(dash.engine))


# ---------------------------------------------------------------------------------------------- pages


async def overview_page(dash: Dashboard, request: Request) -> Response:
    """Channels and their health, open incidents, outbox counts, alert latency, the 30-day chart."""
    snap, (chart_end, stats), latency, chans = await asyncio.gather(
        status_snapshot(dash.engine, dash.settings), _chart_stats(dash), queries.alert_latency(dash.engine),
        queries.channels(dash.engine))
    t = tr(request)
    top = [e for e in stats.entities if e.total][:TOP_ENTITIES]
    title = t("overview.chart") if chart_end is None else t("overview.chart_until", day=chart_end.isoformat())
    chart = render.line_chart(stats.periods, [(e.entity, e.series) for e in top], title=title)
    return page(dash, request, "overview.html", snap=snap, channels={c.subject: c for c in chans}, chart=chart,
                chart_title=title, top=top, latency=latency, seen_column=queries.has_seen_at())


async def _chart_stats(dash: Dashboard) -> tuple[date | None, archive.Stats]:
    """Mentions per day of the last 30 days (whole days: the rollup answers); an archive with none then (a
    kept demo, an import of old history) shows the 30 days up to its newest mention instead."""
    st = await archive.stats(dash.engine, filters=Filters(since=queries.month_ago()), by="day", with_rows=False)
    if any(e.total for e in st.entities):
        return None, st
    last = await queries.last_mention_day(dash.engine)
    if last is None:
        return None, st
    until = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    return last, await archive.stats(dash.engine, filters=Filters(since=queries.month_ago(last), until=until),
                                     by="day", with_rows=False)


async def mentions_page(dash: Dashboard, request: Request) -> Response:
    """The feed: newest first, the CLI's filters, keyset pages of whole posts with all their mentions."""
    form = read_filters(request)
    before = decode_cursor(request.query_params.get("before"))
    f = form.filters
    rows, total, (ents, chans) = await asyncio.gather(
        collect(archive.iter_mentions(dash.engine, entities=f.entities, channels=f.channels, since=f.since,
                                      until=f.until, posts=MENTIONS_PAGE + 1, before=before)),
        archive.count_mentions(dash.engine, f),
        filter_choices(dash))
    post_ids = list(dict.fromkeys(mt.post_id for mt in rows))
    more = len(post_ids) > MENTIONS_PAGE  # one post past the page says there is a next one
    if more:
        rows = [mt for mt in rows if mt.post_id != post_ids[-1]]
    cards = await cards_for(dash, rows)
    shown = sum(len(c.entities) for c in cards)
    next_url = url("/mentions", form.params, before=encode_cursor(rows[-1].key)) if more and rows else None
    return page(dash, request, "mentions.html", form=form, cards=cards, total=total, shown=shown,
                next_url=next_url, first_url=url("/mentions", form.params) if before else None,
                entities=ents, channels=chans)


async def search_page(dash: Dashboard, request: Request) -> Response:
    """Full-text search in the CLI's query language, ranked, the query's words marked in each snippet."""
    form = read_filters(request)
    q = request.query_params.get("q", "").strip()
    n = int_param(request, "page", 1, high=SEARCH_MAX_PAGE) or 1
    ents, chans = await filter_choices(dash)
    ctx: dict[str, Any] = {"form": form, "q": q, "hits": [], "total": 0, "page_no": n, "next_url": None,
                           "prev_url": None, "entities": ents, "channels": chans, "pending": False}
    if not q:
        return page(dash, request, "search.html", **ctx)
    try:
        words = fulltext.parse_query(q).words
    except fulltext.QueryError as exc:
        raise ArchiveError(str(exc)) from None
    hits, total, pending = await asyncio.gather(
        collect(archive.iter_search(dash.engine, q, filters=form.filters, limit=SEARCH_PAGE,
                                    offset=(n - 1) * SEARCH_PAGE)),
        archive.count_search(dash.engine, q, filters=form.filters),
        fulltext.pending(dash.engine))
    by_label = {c.label: c.id for c in chans}
    ctx.update(
        hits=[(h, render.highlight_words(h.text, words), by_label.get(h.channel)) for h in hits], total=total,
        pending=pending, shown_from=(n - 1) * SEARCH_PAGE + 1 if hits else 0,
        shown_to=(n - 1) * SEARCH_PAGE + len(hits),
        next_url=url("/search", form.params, q=q, page=n + 1) if n * SEARCH_PAGE < total and n < SEARCH_MAX_PAGE
        else None,
        prev_url=url("/search", form.params, q=q, page=n - 1) if n > 1 else None)
    return page(dash, request, "search.html", **ctx)


async def entities_page(dash: Dashboard, request: Request) -> Response:
    rows = await queries.entities(dash.engine)
    configured = {s.id for s in dash.settings.entities}
    return page(dash, request, "entities.html", rows=rows, configured=configured)


def _spec(dash: Dashboard, entity_id: str) -> EntitySpec | None:
    return next((s for s in dash.settings.entities if s.id == entity_id), None)


async def explain(dash: Dashboard, spec: EntitySpec) -> dict[str, list[str]]:
    """What ``tgmonitor match --explain`` prints for one entity: each alias and its generated forms.
    Compiled for this one entity (milliseconds), off the event loop, cached for the process."""
    if spec.id not in dash.forms:
        dash.forms[spec.id] = await asyncio.to_thread(lambda: Watchlist.compile([spec]).explain(spec.id))
    return dash.forms[spec.id]


async def _range_by(dash: Dashboard, request: Request, form: FilterForm, entity_id: str) -> tuple[Filters, str]:
    """The entity page's range and period. Default: the 90 days up to today, or up to the entity's newest
    mention when that is older (old history still draws); by day up to ~3 months, then by week."""
    f = form.filters
    if f.since is None and f.until is None:
        last = await queries.last_mention_day(dash.engine, entity_id)
        until = None
        if last is not None and last < datetime.now(UTC).date() - timedelta(days=89):
            until = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
        f = Filters(f.entities, f.channels, queries.month_ago(last if until else None, days=90), until)
    by = request.query_params.get("by", "")
    if by not in archive.PERIODS:
        end = f.until or datetime.now(UTC)
        by = "day" if f.since is None or (end - f.since).days <= 92 else "week"
    return f, by


async def entity_page(dash: Dashboard, request: Request) -> Response:
    """An entity: aliases and generated forms, mentions per channel over time, top channels, latest mentions."""
    entity_id = request.path_params["entity_id"]
    async with dash.engine.connect() as conn:
        row = (await conn.execute(select(m.Entity.id, m.Entity.name, m.Entity.silent)
                                  .where(m.Entity.id == entity_id))).first()
    if row is None:
        raise HTTPException(404, f"no entity with id {entity_id!r}")
    form = read_filters(request)
    f, by = await _range_by(dash, request, form, row.id)
    f = Filters([row.id], f.channels, f.since, f.until)
    spec = _spec(dash, row.id)
    st, latest, total, forms = await asyncio.gather(
        archive.stats(dash.engine, filters=f, by=by, top_channels=10),  # type: ignore[arg-type]
        collect(archive.iter_mentions(dash.engine, entities=[row.id], posts=15)),
        archive.count_mentions(dash.engine, Filters([row.id])),
        explain(dash, spec) if spec is not None else _none())
    per_channel: dict[str, list[int]] = {}
    index = {p: i for i, p in enumerate(st.periods)}
    for r in st.rows:
        per_channel.setdefault(r.channel, [0] * len(st.periods))[index[r.period]] += r.mentions
    ordered = sorted(per_channel.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    t = tr(request)
    chart = render.line_chart(st.periods, ordered[:6], title=f"{row.name}: {t('entity.chart')}")
    es = st.entities[0] if st.entities else None
    chans = {c.label: c.id for c in await queries.channels(dash.engine)}
    return page(dash, request, "entity.html", entity=row, spec=spec, forms=forms, chart=chart, by=by,
                range_total=es.total if es else 0, top_channels=es.channels if es else [], channel_ids=chans,
                hidden_channels=max(0, len(ordered) - 6), cards=await cards_for(dash, latest), total=total, form=form,
                range_since=f.since, periods=st.periods)


async def _none() -> None:
    return None


async def _channel(dash: Dashboard, channel_id: int) -> tuple[queries.ChannelRef, Any]:
    chans = await queries.channels(dash.engine)
    ch = next((c for c in chans if c.id == channel_id), None)
    if ch is None:
        raise HTTPException(404, f"no channel with id {channel_id}")
    async with sessionmaker(dash.engine)() as session:
        return ch, await session.get(m.Channel, channel_id)


async def channel_page(dash: Dashboard, request: Request) -> Response:
    """A channel: its state, its posts (keyset pages by message id), its edited posts, its latest mentions."""
    ch, row = await _channel(dash, request.path_params["channel_id"])
    before = int_param(request, "before")
    (posts, total, more), (edited, edited_total), mentions, mention_total = await asyncio.gather(
        queries.channel_posts(dash.engine, ch, before=before, limit=CHANNEL_PAGE),
        queries.edited_posts(dash.engine, ch, limit=20),
        collect(archive.iter_mentions(dash.engine, channels=[ch.ref], posts=15)),
        archive.count_mentions(dash.engine, Filters(channels=[ch.ref])))
    next_url = url(request.url.path, before=posts[-1].message_id) if more and posts else None
    return page(dash, request, "channel.html", ch=ch, row=row, posts=posts, total=total, next_url=next_url,
                first_url=request.url.path if before else None, edited=edited, edited_total=edited_total,
                cards=await cards_for(dash, mentions), mention_total=mention_total)


async def post_page(dash: Dashboard, request: Request) -> Response:
    """One post and its stored versions side by side, each change marked against the version before."""
    ch, _row = await _channel(dash, request.path_params["channel_id"])
    found = await queries.post_versions(dash.engine, ch, request.path_params["message_id"])
    if found is None:
        raise HTTPException(404, f"no post {request.path_params['message_id']} in {ch.label}")
    post, versions = found
    shown = []
    for i, v in enumerate(versions):
        prev = versions[i - 1].text if i else None
        shown.append((v, render.diff_html(prev, v.text)))
    return page(dash, request, "post.html", ch=ch, post=post, versions=shown)


async def alerts_page(dash: Dashboard, request: Request) -> Response:
    """The outbox, newest first, by status; failed and pending alerts can be retried."""
    status = request.query_params.get("status", "")
    if status and status not in outbox.STATUSES:
        raise HTTPException(400, f"status must be one of {', '.join(outbox.STATUSES)}")
    rows, counts = await asyncio.gather(outbox.list_alerts(dash.engine, status=status or None, limit=ALERTS_PAGE),
                                        queries.alert_counts(dash.engine))
    total = counts.get(status, 0) if status else sum(counts.values())
    retried = int_param(request, "retried", None, low=0)
    return page(dash, request, "alerts.html", rows=rows, counts=counts, status=status, total=total,
                statuses=outbox.STATUSES, retried=retried)


async def _check_csrf(request: Request) -> Mapping[str, Any]:
    form = await request.form()
    value = form.get(CSRF_FIELD)
    if not csrf_ok(request.scope, value if isinstance(value, str) else None):
        raise HTTPException(403, tr(request)("error.csrf"))
    return form


async def retry_alert(dash: Dashboard, request: Request) -> Response:
    """POST: make one failed (or pending) alert due now — ``tgmonitor alerts retry ID``."""
    form = await _check_csrf(request)
    alert_id = request.path_params["alert_id"]
    if not await outbox.find_alerts(dash.engine, str(alert_id)):
        raise HTTPException(404, f"no alert with id {alert_id}")
    rows = await outbox.retry_alerts(dash.engine, ref=str(alert_id))
    back = form.get("status")
    return RedirectResponse(url("/alerts", status=back if back in outbox.STATUSES else None, retried=len(rows)),
                            303)


async def retry_failed(dash: Dashboard, request: Request) -> Response:
    """POST: make every failed alert due now — ``tgmonitor alerts retry --failed``."""
    await _check_csrf(request)
    rows = await outbox.retry_alerts(dash.engine, failed=True)
    return RedirectResponse(url("/alerts", retried=len(rows)), 303)


async def export(dash: Dashboard, request: Request) -> Response:
    """The current filter as CSV or JSON Lines: the lines ``tgmonitor export`` writes, streamed."""
    fmt = request.query_params.get("format", "csv")
    if fmt not in archive.EXPORT_FORMATS:
        raise HTTPException(400, f"format must be one of {', '.join(archive.EXPORT_FORMATS)}")
    form = read_filters(request)
    matched = request.query_params.get("matched", "1") not in ("0", "")
    async with dash.engine.connect() as conn:  # a bad filter is a 400 now, not a broken download later
        await archive.resolve_filters(conn, form.filters)

    async def body() -> AsyncIterator[bytes]:
        lines = archive.export_lines(archive.iter_export(dash.engine, filters=form.filters, matched_only=matched),
                                     fmt)
        batch: list[str] = []
        async with aclosing(lines):  # type: ignore[type-var]
            async for line in lines:
                batch.append(line)
                if len(batch) >= 500:
                    yield ("\n".join(batch) + "\n").encode()
                    batch = []
        if batch:
            yield ("\n".join(batch) + "\n").encode()

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson; charset=utf-8"
    return StreamingResponse(body(), media_type=media, headers={
        "content-disposition": f'attachment; filename="tgmonitor-{stamp}.{fmt}"'})


async def api_status(dash: Dashboard, request: Request) -> Response:
    """``tgmonitor status --format json`` over HTTP (for scripts: ``Authorization: Bearer``)."""
    return JSONResponse(await status_snapshot(dash.engine, dash.settings))


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def login_page(dash: Dashboard, request: Request) -> Response:
    """GET: the form. POST: check the token (throttled per client), set the session cookie, go back."""
    nxt = safe_next(request.query_params.get("next"))
    if dash.token is None:
        return RedirectResponse(nxt, 303)
    error = None
    status = 200
    if request.method == "POST":
        form = await request.form()
        nxt = safe_next(str(form.get("next") or "/"))
        client = request.client.host if request.client else "?"
        csrf_value = form.get(CSRF_FIELD)
        if not csrf_ok(request.scope, csrf_value if isinstance(csrf_value, str) else None):
            error, status = tr(request)("error.csrf"), 403
        elif dash.throttle.blocked(client):
            error, status = tr(request)("login.throttled"), 429
        elif token_matches(str(form.get("token") or "").strip(), dash.token):
            dash.throttle.succeeded(client)
            resp = RedirectResponse(nxt, 303)
            resp.headers.append("set-cookie", cookie_header(SESSION_COOKIE, session_value(dash.token),
                                                            secure=request.url.scheme == "https",
                                                            max_age=SESSION_DAYS * 86400).decode("latin-1"))
            return resp
        else:
            dash.throttle.failed(client)
            log.warning("dashboard: wrong token from %s", client)
            error, status = tr(request)("login.wrong"), 401
    return page(dash, request, "login.html", http_status=status, error=error, next=nxt)


async def logout(dash: Dashboard, request: Request) -> Response:
    await _check_csrf(request)
    resp = RedirectResponse("/login", 303)
    resp.headers.append("set-cookie", cookie_header(SESSION_COOKIE, "", secure=request.url.scheme == "https",
                                                    max_age=0).decode("latin-1"))
    return resp

