"""The store on both databases: idempotent batches, versions, cursors, renames, one transaction a batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from monitor import models as m
from monitor.ingest import AlertRule
from monitor.posts import ForwardOrigin, Post

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def post(i: int, text: str | None = None, **kw: object) -> Post:
    return Post(message_id=i, date=T0 + timedelta(minutes=i), text=text or f"Новость {i}: Росатом строит АЭС",
                **kw)  # type: ignore[arg-type]


async def counts(rt) -> tuple[int, int, int]:
    async with rt.store.sessions() as s:
        out = [(await s.execute(select(func.count()).select_from(t))).scalar_one()
               for t in (m.Post, m.Match, m.PostVersion)]
    return out[0], out[1], out[2]


async def test_same_batch_twice_leaves_one_copy(runtime) -> None:
    rt = runtime
    ch = await rt.store.upsert_channel(username="Demo_Channel", source="web")
    batch = [post(i) for i in range(1, 51)]
    r1 = await rt.ingestor.ingest(ch, batch, cursor=55)
    assert (r1.new, r1.matches) == (50, 50)
    r2 = await rt.ingestor.ingest(ch, batch, cursor=55)
    assert (r2.new, r2.edited, r2.unchanged) == (0, 0, 50)
    assert await counts(rt) == (50, 50, 0)
    got = await rt.store.get_channel(ch.id)
    assert got.cursor == 55 and got.username == "demo_channel"
    assert got.last_post_at == T0 + timedelta(minutes=50)


async def test_edit_is_a_new_version_not_a_duplicate(runtime) -> None:
    rt = runtime
    ch = await rt.store.upsert_channel(username="edits", source="web")
    await rt.ingestor.ingest(ch, [post(1, "Совещание в правительстве")])
    r = await rt.ingestor.ingest(ch, [post(1, "Совещание в правительстве с участием Росатома",
                                           edit_date=T0 + timedelta(hours=1))])
    assert r.edited == 1 and r.saved[0].new_entity_ids == [rt.watchlist.entities[next(iter(rt.watchlist.entities))].id]
    assert await counts(rt) == (1, 1, 1)
    async with rt.store.sessions() as s:
        row = (await s.execute(select(m.Post))).scalar_one()
        old = (await s.execute(select(m.PostVersion))).scalar_one()
        mt = (await s.execute(select(m.Match))).scalar_one()
    assert row.version == 2 and row.text.endswith("Росатома") and old.text == "Совещание в правительстве"
    assert mt.version == 2 and mt.surface == "Росатома"
    # the same edit again changes nothing; an edit keeping the entity brings no new entity
    assert (await rt.ingestor.ingest(ch, [post(1, row.text)])).edited == 0
    r3 = await rt.ingestor.ingest(ch, [post(1, "Росатом и правительство")])
    assert r3.edited == 1 and r3.saved[0].new_entity_ids == []


async def test_cursor_only_moves_forward_and_counts_skipped_ids(runtime) -> None:
    rt = runtime
    ch = await rt.store.upsert_channel(username="cursor_ch", source="web")
    await rt.ingestor.ingest(ch, [post(10)], cursor=12, seen=3)  # 11, 12: service messages
    await rt.ingestor.ingest(ch, [post(5)], cursor=5, seen=1, backfill_low=5)
    got = await rt.store.get_channel(ch.id)
    assert got.cursor == 12 and got.seen_count == 4 and got.backfill_low == 5


async def test_albums_forwards_and_deletions_are_kept(runtime) -> None:
    rt = runtime
    ch = await rt.store.upsert_channel(username="albums", source="web")
    await rt.ingestor.ingest(ch, [post(20, "Фото", album_id=777, member_ids=(20, 21),
                                       forward=ForwardOrigin(channel_id=99, message_id=5, name="Источник"))])
    await rt.ingestor.ingest(ch, [post(20, "Фото", album_id=777, member_ids=(20, 21, 22))])
    assert (await rt.store.get_channel(ch.id)).cursor == 22
    assert await rt.store.mark_deleted(ch.id, [20]) == 1
    async with rt.store.sessions() as s:
        row = (await s.execute(select(m.Post))).scalar_one()
    assert row.member_ids == [20, 21, 22] and row.deleted and row.fwd_channel_id == 99 and row.fwd_message_id == 5


async def test_channel_rename_followed_by_id(runtime) -> None:
    rt = runtime
    a = await rt.store.upsert_channel(username="old_name", tg_id=1700000001, title="T", access_hash=42)
    b = await rt.store.upsert_channel(username="new_name", tg_id=1700000001)
    assert a.id == b.id and b.username == "new_name" and b.access_hash == 42
    c = await rt.store.upsert_channel(username="only_name")
    d = await rt.store.upsert_channel(username="only_name", tg_id=555)  # an export learns the id
    assert c.id == d.id and d.tg_id == 555
    assert len(await rt.store.channels()) == 2


async def test_baseline_is_set_once_and_rules_follow_it(runtime) -> None:
    rt = runtime
    ch = await rt.store.upsert_channel(username="base_ch", source="web")
    assert await rt.store.set_baseline(ch.id, 100)
    assert not await rt.store.set_baseline(ch.id, 200)
    ch = await rt.store.get_channel(ch.id)
    rule = AlertRule()
    assert not rule.allows(ch, post(100)) and rule.allows(ch, post(101))
    assert AlertRule(alert_history=True).allows(ch, post(1))
    assert AlertRule(force=False).allows(ch, post(500)) is False
    items = rt.ingestor.items(ch, [post(99), post(101)], rule)
    assert [i.alertable for i in items] == [False, True]
