"""Posts from any source → matches → one store transaction (with outbox rows when they may alert).

Every source (Telethon, export, web) hands its pages of ``Post`` values to :class:`Ingestor`, so
storage, matching and alerting are shared, never copied."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from monitor import models as m
from monitor.matching import Watchlist
from monitor.posts import Post
from monitor.store import BatchItem, BatchResult, OutboxPlanner, Store


@dataclass(frozen=True, slots=True)
class AlertRule:
    """Which posts of a batch may alert.

    ``None`` (polls): ids above the channel's baseline, or all when the channel has ``alert_history``;
    and a post at or below the baseline whose edit was made after the baseline was set (an edit made after
    we started watching is news; the outbox alerts only for the entities the edit added). The web preview
    gives no edit time, so there such edits stay silent.
    ``True``/``False`` (backfill, import): every post, or none."""

    force: bool | None = None
    alert_history: bool = False

    def allows(self, channel: m.Channel, post: Post) -> bool:
        if self.force is not None:
            return self.force
        if self.alert_history:
            return True
        if channel.baseline_id is None:
            return False
        if post.message_id > channel.baseline_id:
            return True
        return (post.edit_date is not None and channel.baseline_at is not None
                and post.edit_date > channel.baseline_at)


class Ingestor:
    """Matches and stores pages of posts for one process (one watchlist, one outbox planner)."""

    def __init__(
        self,
        store: Store,
        watchlist: Watchlist,
        *,
        planner: OutboxPlanner | None = None,
        match_link_previews: bool = False,
    ) -> None:
        self.store = store
        self.watchlist = watchlist
        self.planner = planner
        self.match_link_previews = match_link_previews

    def items(self, channel: m.Channel, posts: Sequence[Post], rule: AlertRule) -> list[BatchItem]:
        """Match each post (pure CPU work, no I/O)."""
        out = []
        for p in posts:
            matches = self.watchlist.find(p.text) if p.text else []
            preview = (self.watchlist.find(p.link_preview)
                       if self.match_link_previews and p.link_preview else [])
            out.append(BatchItem(p, matches, rule.allows(channel, p), preview))
        return out

    async def ingest(
        self,
        channel: m.Channel,
        posts: Sequence[Post],
        *,
        rule: AlertRule = AlertRule(),
        cursor: int | None = None,
        seen: int = 0,
        backfill_low: int | None = None,
    ) -> BatchResult:
        """Match ``posts`` and store them with the new cursor in one transaction."""
        return await self.store.save_batch(
            channel.id, self.items(channel, posts, rule), cursor=cursor, seen=seen,
            backfill_low=backfill_low, planner=self.planner,
        )
