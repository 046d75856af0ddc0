"""The archive's queries on both databases: mentions, Russian full-text search, stats, export, rematch."""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from monitor import archive, fulltext
from monitor import models as m
from monitor.archive import ArchiveError, Filters
from monitor.config import Settings
from monitor.posts import Post
from monitor.rematch import rematch
from monitor.runtime import Runtime, open_runtime

WATCHLIST = """
[[entities]]
name = "Казатомпром"
aliases = ["Kazatomprom"]

[[entities]]
name = "Газпром"
"""

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)  # a Monday

# (channel, message id, days after T0, text)
POSTS: list[tuple[str, int, int, str]] = [
    ("delovoy", 1, 0, "Казатомпром сократит добычу урана: на рудниках не хватает серной кислоты."),
    ("delovoy", 2, 0, "Газпром и Казатомпром подписали соглашение. Казатомпром доволен."),
    ("delovoy", 3, 1, "Серная кислота подорожала, пишут аналитики; уран тут ни при чём."),
    ("delovoy", 4, 8, "Кислоты хватит всем, заявил министр. Серной добычи это не касается."),
    ("birzha", 10, 2, "Акции Kazatomprom выросли на Лондонской бирже."),
    ("birzha", 11, 9, "Газпром снизил экспорт. Газпром ждёт зимы. Новости о Газпроме."),
    ("birzha", 12, 35, "Курс тенге укрепился, нефть дешевеет."),
]


async def fill(rt: Runtime, posts: list[tuple[str, int, int, str]] = POSTS) -> dict[str, m.Channel]:
    """Store the sample posts through the real ingest path (matching + store + index)."""
    channels: dict[str, m.Channel] = {}
    for name in dict.fromkeys(p[0] for p in posts):
        channels[name] = await rt.store.upsert_channel(username=name, tg_id=1000 + len(channels),
                                                       title=name.title(), source="web")
        batch = [Post(message_id=mid, date=T0 + timedelta(days=d), text=t) for ch, mid, d, t in posts if ch == name]
        await rt.ingestor.ingest(channels[name], batch)
    return channels


SettingsMaker = Callable[..., Settings]


@pytest.fixture
async def rt(make_settings: SettingsMaker, db_url: str):  # type: ignore[no-untyped-def]
    settings = make_settings(WATCHLIST, db_url)
    async with open_runtime(settings) as runtime:
        await fill(runtime)
        yield runtime


async def ids(it) -> list[int]:  # type: ignore[no-untyped-def]
    return [x.message_id async for x in it]


# ----------------------------------------------------------------------------------------------- search


async def test_search_finds_russian_word_forms(rt: Runtime) -> None:
    # «кислота» finds «кислоты», «кислота», «Кислоты»; and the other way round
    assert sorted(await ids(archive.iter_search(rt.engine, "кислота"))) == [1, 3, 4]
    assert sorted(await ids(archive.iter_search(rt.engine, "кислоты"))) == [1, 3, 4]
    assert sorted(await ids(archive.iter_search(rt.engine, "Газпромом"))) == [2, 11]
    assert await ids(archive.iter_search(rt.engine, "комбинат")) == []


async def test_search_phrase_and_exclusion(rt: Runtime) -> None:
    # the phrase needs the words side by side, in any form: post 4 has both words apart
    assert sorted(await ids(archive.iter_search(rt.engine, '"серная кислота"'))) == [1, 3]
    assert sorted(await ids(archive.iter_search(rt.engine, "серная кислота"))) == [1, 3, 4]
    assert sorted(await ids(archive.iter_search(rt.engine, "кислота -уран"))) == [4]
    assert sorted(await ids(archive.iter_search(rt.engine, 'кислота -"серная кислота"'))) == [4]
    assert sorted(await ids(archive.iter_search(rt.engine, "«серной кислоты» -министр"))) == [1, 3]


async def test_search_ranks_snippets_and_links(rt: Runtime) -> None:
    hits = [h async for h in archive.iter_search(rt.engine, "газпром")]
    assert [h.message_id for h in hits] == [11, 2]  # three mentions in a short post rank first
    assert hits[0].rank > hits[1].rank > 0
    assert "**Газпром**" in hits[0].snippet and "\n" not in hits[0].snippet
    assert hits[0].link == "https://t.me/birzha/11" and hits[0].channel == "@birzha"
    d = hits[0].as_dict()
    assert set(d) == {"channel", "message_id", "date", "rank", "snippet", "link"}
    limited = [h async for h in archive.iter_search(rt.engine, "газпром", limit=1)]
    assert [h.message_id for h in limited] == [11]


async def test_search_filters(rt: Runtime) -> None:
    assert await ids(archive.iter_search(rt.engine, "кислота", filters=Filters(channels=["@birzha"]))) == []
    since = T0 + timedelta(days=1)
    assert sorted(await ids(archive.iter_search(rt.engine, "кислота", filters=Filters(since=since)))) == [3, 4]
    until = archive.parse_when((T0 + timedelta(days=1)).date().isoformat(), end=True)
    assert sorted(await ids(archive.iter_search(rt.engine, "кислота", filters=Filters(until=until)))) == [1, 3]
    assert await ids(archive.iter_search(rt.engine, "кислота", filters=Filters(entities=["казатомпром"]))) == [1]


async def test_search_rejects_queries_with_nothing_to_find(rt: Runtime) -> None:
    with pytest.raises(ArchiveError):
        await ids(archive.iter_search(rt.engine, "-уран"))
    with pytest.raises(ArchiveError):
        await ids(archive.iter_search(rt.engine, '  "" !!! '))


async def test_edited_text_is_reindexed(rt: Runtime) -> None:
    ch = await rt.store.find_channel(username="delovoy")
    assert ch is not None
    await rt.ingestor.ingest(ch, [Post(message_id=3, date=T0 + timedelta(days=1), text="Теперь здесь про нефть.")])
    assert sorted(await ids(archive.iter_search(rt.engine, "кислота"))) == [1, 4]
    assert sorted(await ids(archive.iter_search(rt.engine, "нефтью"))) == [3, 12]
    # saving the same text again changes nothing (and does not double-index)
    await rt.ingestor.ingest(ch, [Post(message_id=3, date=T0 + timedelta(days=1), text="Теперь здесь про нефть.")])
    assert sorted(await ids(archive.iter_search(rt.engine, "нефть"))) == [3, 12]


async def test_index_rebuild_and_pending_rows(rt: Runtime) -> None:
    if rt.engine.dialect.name != "sqlite":
        assert not await fulltext.pending(rt.engine)
        assert await fulltext.build_index(rt.engine) == 0
        return
    # rows stored before migration 0003 have no shadow text: found by pending(), filled by build_index()
    async with rt.engine.begin() as conn:
        await conn.execute(text("UPDATE posts SET search_lemmas = NULL WHERE id IN (SELECT id FROM posts LIMIT 3)"))
        await conn.execute(text("INSERT INTO posts_fts (posts_fts) VALUES ('rebuild')"))
    assert await fulltext.pending(rt.engine)
    assert await fulltext.build_index(rt.engine, chunk=2) == 3
    assert not await fulltext.pending(rt.engine)
    assert sorted(await ids(archive.iter_search(rt.engine, "кислота"))) == [1, 3, 4]
    assert await fulltext.build_index(rt.engine, rebuild=True) == len(POSTS)
    assert sorted(await ids(archive.iter_search(rt.engine, "кислота"))) == [1, 3, 4]
    async with rt.engine.connect() as conn:  # FTS5's own consistency check of the external-content index
        await conn.execute(text("INSERT INTO posts_fts (posts_fts, rank) VALUES ('integrity-check', 1)"))


def test_lemmatize_and_query_building() -> None:
    shadow = fulltext.lemmatize("Стали ли цены на сталь? Ёлки!")
    assert shadow.split()[:6] == ["стать", "ли", "цена", "на", "сталь", "елка"]
    q = fulltext.parse_query('кислота "серной кислоты" -уран -"лондонская биржа"')
    assert q.include == (("кислота",), ("серной", "кислоты")) and q.exclude == (("уран",), ("лондонская", "биржа"))
    assert fulltext.fts5_query(q) == '(("кислота" AND "серный кислота") NOT "уран") NOT "лондонский биржа"'
    assert fulltext.websearch_query(q) == 'кислота "серной кислоты" -уран -"лондонская биржа"'
    snippet = fulltext.mark_snippet("Нет кислоты — нет урана. " * 20, ["кислота"], width=40)
    assert snippet.startswith("…") or snippet.startswith("Нет")
    assert "**кислоты**" in snippet and len(snippet) < 80


# --------------------------------------------------------------------------------------------- mentions


async def test_mentions_filters_and_snippets(rt: Runtime) -> None:
    all_ = [x async for x in archive.iter_mentions(rt.engine)]
    # newest first; a post naming an entity twice has two mentions
    assert [(x.message_id, x.entity) for x in all_][:3] == [(11, "Газпром"), (11, "Газпром"), (11, "Газпром")]
    assert len(all_) == 1 + 3 + 1 + 3  # post 1, post 2 (Газпром + Казатомпром×2), post 10, post 11 ×3
    assert {x.message_id for x in all_ if x.entity == "Казатомпром"} == {1, 2, 10}
    kz = [x async for x in archive.iter_mentions(rt.engine, entities=["казатомпром"])]
    assert [x.message_id for x in kz] == [10, 2, 2, 1]
    assert kz[0].surface == "Kazatomprom" and kz[0].snippet.startswith("Акции **Kazatomprom** выросли")
    d = kz[0].as_dict()
    assert set(d) >= {"channel", "message_id", "date", "entity", "surface", "link", "snippet"}
    feb = [x async for x in archive.iter_mentions(rt.engine, since=T0 + timedelta(days=1),
                                                  until=T0 + timedelta(days=9))]
    assert [x.message_id for x in feb] == [10]
    only = [x async for x in archive.iter_mentions(rt.engine, channels=["https://t.me/birzha"], limit=2)]
    assert [x.message_id for x in only] == [11, 11]
    with pytest.raises(ArchiveError, match="unknown entity"):
        [x async for x in archive.iter_mentions(rt.engine, entities=["Роснефть"])]
    with pytest.raises(ArchiveError, match="unknown channel"):
        [x async for x in archive.iter_mentions(rt.engine, channels=["@nowhere"])]


def test_parse_when() -> None:
    assert archive.parse_when("2025-03-01") == datetime(2025, 3, 1, tzinfo=UTC)
    assert archive.parse_when("2025-03-31", end=True) == datetime(2025, 4, 1, tzinfo=UTC)
    assert archive.parse_when("2025-12", end=True) == datetime(2026, 1, 1, tzinfo=UTC)
    assert archive.parse_when("2025-03-01T10:30+03:00") == datetime(2025, 3, 1, 7, 30, tzinfo=UTC)
    now = datetime(2025, 3, 10, tzinfo=UTC)
    assert archive.parse_when("7d", now=now) == datetime(2025, 3, 3, tzinfo=UTC)
    with pytest.raises(ArchiveError):
        archive.parse_when("вчера")


# ------------------------------------------------------------------------------------------------ stats


async def test_stats_per_period_and_channel(rt: Runtime) -> None:
    st = await archive.stats(rt.engine, by="day")
    assert st.periods[0] == date(2025, 3, 3) and st.periods[-1] == date(2025, 3, 12)  # zero-filled days
    assert len(st.periods) == 10
    by_name = {e.entity: e for e in st.entities}
    kz, gp = by_name["Казатомпром"], by_name["Газпром"]
    assert kz.total == 3 and kz.series[:3] == [2, 0, 1]  # a post naming it twice counts once
    assert gp.total == 2 and gp.series[0] == 1 and gp.series[9] == 1
    assert kz.channels == [("@delovoy", 2), ("@birzha", 1)]
    assert [e.entity for e in st.entities] == ["Казатомпром", "Газпром"]  # busiest first
    week = await archive.stats(rt.engine, by="week")
    assert week.periods == [date(2025, 3, 3), date(2025, 3, 10)]
    assert {e.entity: e.series for e in week.entities} == {"Казатомпром": [3, 0], "Газпром": [1, 1]}
    month = await archive.stats(rt.engine, by="month", filters=Filters(entities=["Газпром"]))
    assert month.periods == [date(2025, 3, 1)] and [e.total for e in month.entities] == [2]
    assert {(r.period, r.entity, r.channel, r.mentions) for r in month.rows} == {
        (date(2025, 3, 1), "Газпром", "@delovoy", 1), (date(2025, 3, 1), "Газпром", "@birzha", 1)}
    window = await archive.stats(rt.engine, by="day", filters=Filters(since=datetime(2025, 3, 1, tzinfo=UTC),
                                                                       until=datetime(2025, 3, 4, tzinfo=UTC)))
    assert window.periods == [date(2025, 3, 1), date(2025, 3, 2), date(2025, 3, 3)]
    assert {e.entity: e.series for e in window.entities} == {"Казатомпром": [0, 0, 2], "Газпром": [0, 0, 1]}
    d = st.as_dict()
    assert d["by"] == "day" and len(d["entities"][0]["series"]) == 10  # type: ignore[index]


async def assert_rollup_is_exact(rt: Runtime) -> None:
    """The mention_days rollup the store maintains answers exactly as counting the matches does."""
    for by in archive.PERIODS:
        fast = await archive.stats(rt.engine, by=by)
        slow = await archive.stats(rt.engine, by=by, exact=True)
        assert fast.as_dict() == slow.as_dict()
        assert {(x.period, x.entity_id, x.channel, x.mentions) for x in fast.rows} == \
            {(x.period, x.entity_id, x.channel, x.mentions) for x in slow.rows}


async def test_stats_rollup_follows_edits(rt: Runtime) -> None:
    await assert_rollup_is_exact(rt)
    ch = await rt.store.find_channel(username="delovoy")
    assert ch is not None
    when = T0
    # post 2 stops naming Казатомпром, post 3 starts naming Газпром, a new post names both; re-saved twice
    edits = [Post(message_id=2, date=when, text="Газпром подписал соглашение."),
             Post(message_id=3, date=when + timedelta(days=1), text="Газпром: серная кислота подорожала."),
             Post(message_id=5, date=when + timedelta(days=20), text="Газпром и Казатомпром.")]
    await rt.ingestor.ingest(ch, edits)
    await rt.ingestor.ingest(ch, edits)
    await assert_rollup_is_exact(rt)
    st = await archive.stats(rt.engine, by="month")
    assert {e.entity: e.total for e in st.entities} == {"Газпром": 4, "Казатомпром": 3}


def test_sparkline() -> None:
    assert archive.sparkline([0, 1, 2, 4]) == "▁▃▅█"
    assert archive.sparkline([0, 0]) == "▁▁"
    assert len(archive.sparkline(list(range(365)), width=60)) == 60


# ----------------------------------------------------------------------------------------------- export


async def test_export_posts_with_matches(rt: Runtime) -> None:
    rows = [r async for r in archive.iter_export(rt.engine, chunk=2)]  # several keyset pages
    assert [r.message_id for r in rows] == [1, 2, 3, 10, 4, 11, 12]  # oldest first
    two = next(r for r in rows if r.message_id == 2)
    assert two.entities == ["Газпром", "Казатомпром"]
    assert [(mt.entity, two.text[mt.start:mt.end]) for mt in two.matches] == \
        [("Газпром", "Газпром"), ("Казатомпром", "Казатомпром"), ("Казатомпром", "Казатомпром")]
    d = two.as_dict()
    assert d["link"] == "https://t.me/delovoy/2" and len(d["matches"]) == 3  # type: ignore[arg-type]
    assert archive.export_csv_row(two)[9] == "Газпром; Казатомпром"
    matched = [r.message_id async for r in archive.iter_export(rt.engine, matched_only=True)]
    assert matched == [1, 2, 10, 11]
    kz = [r.message_id async for r in archive.iter_export(rt.engine, filters=Filters(entities=["казатомпром"]))]
    assert kz == [1, 2, 10]


# ---------------------------------------------------------------------------------------------- rematch


async def test_rematch_after_watchlist_change(make_settings: SettingsMaker, db_url: str) -> None:
    async with open_runtime(make_settings(WATCHLIST, db_url)) as rt1:
        await fill(rt1)
    # the watchlist loses Газпром and gains «серная кислота»
    changed = """
[[entities]]
name = "Казатомпром"
aliases = ["Kazatomprom"]

[[entities]]
name = "Серная кислота"
case_sensitive = false
"""
    async with open_runtime(make_settings(changed, db_url)) as rt2:
        assert [x async for x in archive.iter_mentions(rt2.engine, entities=["Серная кислота"])] == []
        rep = await rematch(rt2)
        assert rep.posts == len(POSTS)
        assert rep.by_entity["Серная кислота"] == 2 and rep.by_entity["Газпром"] == -4
        assert rep.changed == 4  # posts 1, 3 gain; 2, 11 lose Газпром
        got = [x.message_id async for x in archive.iter_mentions(rt2.engine, entities=["Серная кислота"])]
        assert got == [3, 1]
        assert [x async for x in archive.iter_mentions(rt2.engine, entities=["Газпром"])] == []
        # nothing alerts and nothing is fetched: no outbox rows, posts unchanged
        async with rt2.engine.connect() as conn:
            assert (await conn.execute(select(func.count()).select_from(m.Alert))).scalar_one() == 0
            assert (await conn.execute(select(func.count()).select_from(m.Post))).scalar_one() == len(POSTS)
        await assert_rollup_is_exact(rt2)
        again = await rematch(rt2)
        assert again.changed == 0 and again.added == again.removed == 0
        # since: only newer posts are looked at
        later = await rematch(rt2, since=T0 + timedelta(days=30))
        assert later.posts == 1


# ------------------------------------------------------------------------------------------------- plot


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib import image

    from monitor.plots import plot_stats

    periods = [date(2025, 1, 1) + timedelta(days=i) for i in range(90)]
    entities = [archive.EntityStats(f"Entity {k}", f"e{k}", 0, [(i * (k + 1)) % 7 for i in range(90)], [])
                for k in range(10)]  # more than MAX_LINES: the rest are named in a note, not summed
    st = archive.Stats(by="day", periods=periods, entities=entities)
    out = plot_stats(st, tmp_path / "out" / "mentions.png")
    w, h = png_size(out)
    assert w > 600 and h > 300
    pixels = image.imread(out)
    assert pixels.shape[0] == h and pixels.shape[1] == w
    assert pixels.std() > 0.01  # something was drawn
    empty = plot_stats(archive.Stats(by="day", periods=[]), tmp_path / "empty.png")
    assert png_size(empty)[0] > 0
    # one period: bars, not a column of dots; still a readable PNG
    one = archive.Stats(by="month", periods=[date(2025, 3, 1)],
                        entities=[archive.EntityStats(f"E{k}", f"e{k}", 5 - k, [5 - k], []) for k in range(5)])
    pixels = image.imread(plot_stats(one, tmp_path / "one.png"))
    assert pixels.std() > 0.01


def test_plot_groups_identical_series_and_ticks_dates_only() -> None:
    pytest.importorskip("matplotlib")
    from monitor.plots import _groups, _tick

    same = [1, 0, 1]
    ents = [archive.EntityStats("A", "a", 3, [2, 0, 1], []), archive.EntityStats("B", "b", 2, same, []),
            archive.EntityStats("C", "c", 2, list(same), [])]
    groups = _groups(ents)
    assert [g.names for g in groups] == [["A"], ["B", "C"]]
    assert groups[1].label() == "B, C (2 each, same counts)"  # both named: neither hides behind the other
    assert _tick(date(2025, 3, 5), "day", first=True) == "5 Mar 2025" and _tick(date(2025, 3, 5), "week",
                                                                                first=False) == "5 Mar"
    assert _tick(date(2025, 3, 1), "month", first=False) == "Mar" and _tick(date(2026, 1, 1), "month",
                                                                            first=False) == "Jan 2026"
