"""SQLAlchemy tables. Times are timezone-aware UTC; Telegram ids are 64-bit."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes; gives them back aware in UTC on SQLite too (it keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def now() -> datetime:
    return datetime.now(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Search objects that exist on one dialect only (migrations 0003, 0006) and that SQLAlchemy cannot describe
# portably: the FTS5 virtual table (and its shadow tables posts_fts_*), raw-SQL indexes, and PostgreSQL's
# stored tsvector column. Schema comparisons (alembic autogenerate, migration tests) skip every name
# starting with one of these.
DIALECT_ONLY_OBJECTS = ("posts_fts", "ix_posts_fts_ru", "ix_posts_fts_tsv", "ix_posts_search_pending", "search_tsv")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class Channel(Base):
    """A watched channel: identity, availability, cursor, baseline, backfill progress and lease."""

    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tg_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    username: Mapped[str | None] = mapped_column(String(64), unique=True)  # lower-case, no @
    title: Mapped[str | None] = mapped_column(String(256))
    access_hash: Mapped[int | None] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(16), default="telethon")
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | unavailable
    status_reason: Mapped[str | None] = mapped_column(Text)
    status_changed_at: Mapped[datetime | None]
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)  # highest message id stored or skipped
    baseline_id: Mapped[int | None] = mapped_column(BigInteger)  # ids at or below never alert by default
    baseline_at: Mapped[datetime | None]  # when the baseline was set: edits made later alert (migration 0010)
    backfill_low: Mapped[int | None] = mapped_column(BigInteger)  # lowest id reached walking back
    backfill_done: Mapped[bool] = mapped_column(Boolean, default=False)
    server_count: Mapped[int | None] = mapped_column(BigInteger)
    seen_count: Mapped[int] = mapped_column(BigInteger, default=0)  # ids seen, skipped ones included
    polls: Mapped[int] = mapped_column(Integer, default=0)
    last_poll_at: Mapped[datetime | None]
    last_post_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    not_before: Mapped[datetime | None]  # deferred by a flood wait or an unavailable retry
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=now)
    # The [[channels]] entry this row was resolved from (``@name`` or the id): a channel renamed on Telegram
    # keeps its row (and is never resolved again) while the config still names it by its old username.
    config_ref: Mapped[str | None] = mapped_column(String(128), index=True)
    # The Telegram account reading this channel now (several accounts, migration 0011; NULL: the only one).
    account: Mapped[str | None] = mapped_column(String(64))


class Post(Base):
    """The newest version of one channel message (an album is one post)."""

    __tablename__ = "posts"
    __table_args__ = (
        UniqueConstraint("channel_id", "message_id", name="uq_posts_channel_message"),
        Index("ix_posts_date", "date"),
        Index("ix_posts_channel_date", "channel_id", "date"),  # one channel's feed by date (migration 0012)
        # posts polling caught because push missed them, counted per channel (``status``, metrics)
        Index("ix_posts_push_missed", "channel_id", sqlite_where=text("push_missed"),
              postgresql_where=text("push_missed")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(BigInteger)
    date: Mapped[datetime]
    text: Mapped[str] = mapped_column(Text, default="")
    edit_date: Mapped[datetime | None]
    views: Mapped[int | None] = mapped_column(BigInteger)
    forwards: Mapped[int | None] = mapped_column(BigInteger)
    fwd_channel_id: Mapped[int | None] = mapped_column(BigInteger)
    fwd_message_id: Mapped[int | None] = mapped_column(BigInteger)
    fwd_name: Mapped[str | None] = mapped_column(String(256))
    fwd_username: Mapped[str | None] = mapped_column(String(64))  # the origin's username (web forwards)
    album_id: Mapped[int | None] = mapped_column(BigInteger)
    member_ids: Mapped[list[Any] | None]
    link_preview: Mapped[str | None] = mapped_column(Text)
    incomplete: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer, default=1)
    text_hash: Mapped[str | None] = mapped_column(String(64), index=True)  # normalised text, for reposts
    raw: Mapped[dict[str, Any] | None]
    stored_at: Mapped[datetime] = mapped_column(default=now)
    # How the post first reached us (push | poll | backfill | import | web; NULL before migration 0008) and
    # when (the update's arrival for push, else the fetch): post date → seen_at → alert sent_at is the latency.
    arrival: Mapped[str | None] = mapped_column(String(16))
    seen_at: Mapped[datetime | None]
    # A post of a channel covered by push updates that only a reconciling poll delivered: push missed it.
    push_missed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # SQLite only: the text with each word replaced by its lemma, indexed by the FTS5 table posts_fts
    # (monitor/fulltext.py); NULL there means "not indexed yet". PostgreSQL indexes the text itself.
    search_lemmas: Mapped[str | None] = mapped_column(Text)


class PostVersion(Base):
    """An earlier text of an edited post."""

    __tablename__ = "post_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    edit_date: Mapped[datetime | None]
    recorded_at: Mapped[datetime] = mapped_column(default=now)


class Entity(Base):
    """A watchlist entity as last seen in the config (its id is the stable key)."""

    __tablename__ = "entities"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    silent: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(default=now)


class Match(Base):
    """One span of one entity in one version of a post."""

    __tablename__ = "matches"
    __table_args__ = (
        UniqueConstraint("post_id", "entity_id", "start", "version", "in_preview", name="uq_matches_span"),
        Index("ix_matches_entity_post", "entity_id", "post_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), index=True)
    entity_id: Mapped[str] = mapped_column(ForeignKey("entities.id", ondelete="CASCADE"))
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)
    surface: Mapped[str] = mapped_column(String(512))
    version: Mapped[int] = mapped_column(Integer, default=1)
    in_preview: Mapped[bool] = mapped_column(Boolean, default=False)  # found in the link preview text


class MentionDay(Base):
    """Posts of one channel on one UTC day whose current version mentions one entity (monitor/rollup.py):
    the store keeps it in step with ``matches`` so that stats over a big archive stay fast."""

    __tablename__ = "mention_days"

    entity_id: Mapped[str] = mapped_column(ForeignKey("entities.id", ondelete="CASCADE"), primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    posts: Mapped[int] = mapped_column(Integer, default=0)


class Alert(Base):
    """The outbox: one row per (destination, post); ``dedupe_key`` makes it idempotent."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    code: Mapped[str] = mapped_column(String(16), index=True)  # short stable id shown to people
    destination: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16), default="match")  # match | operator | test
    post_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), index=True)
    entity_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    also_in: Mapped[list[Any]] = mapped_column(JSON, default=list)  # other channels with the same story
    title: Mapped[str | None] = mapped_column(Text)  # operator alerts carry their own text
    body: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|sent|failed|silent
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=now)
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=now)
    sent_at: Mapped[datetime | None]


class AlertEntity(Base):
    """(destination, channel, message, entity) already alerted: edits and re-polls never alert twice."""

    __tablename__ = "alert_entities"
    __table_args__ = (
        UniqueConstraint("destination", "channel_id", "message_id", "entity_id", name="uq_alert_entities_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    destination: Mapped[str] = mapped_column(String(128))
    channel_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[int] = mapped_column(BigInteger)
    entity_id: Mapped[str] = mapped_column(String(128))
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", ondelete="SET NULL"))


class FetchRun(Base):
    """One poll, re-read, backfill step or import: when, how many posts, what went wrong."""

    __tablename__ = "fetch_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # poll | reread | backfill | import
    started_at: Mapped[datetime] = mapped_column(default=now, index=True)
    finished_at: Mapped[datetime | None]
    posts: Mapped[int] = mapped_column(Integer, default=0)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)


class BackfillRequest(Base):
    """A backfill queued for the running service (the CLI cannot share the Telegram session)."""

    __tablename__ = "backfill_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(128))
    since: Mapped[datetime | None]
    limit: Mapped[int | None] = mapped_column(Integer)
    alert: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|done|failed
    stored: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(default=now)
    finished_at: Mapped[datetime | None]


class Incident(Base):
    """An operator problem (channel unavailable, dead session, count gap, failing destination)."""

    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_open", "kind", "subject", "closed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(256))
    detail: Mapped[str | None] = mapped_column(Text)
    opened_at: Mapped[datetime] = mapped_column(default=now)
    closed_at: Mapped[datetime | None]
    notified: Mapped[bool] = mapped_column(Boolean, default=False)


class FloodWait(Base):
    """A FloodWaitError Telegram returned: the request type and the time it is refused until."""

    __tablename__ = "flood_waits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_type: Mapped[str] = mapped_column(String(64), index=True)
    seconds: Mapped[int] = mapped_column(Integer)
    until: Mapped[datetime]
    recorded_at: Mapped[datetime] = mapped_column(default=now)
    account: Mapped[str | None] = mapped_column(String(64))  # the account it was given to (migration 0011)


class ServiceNode(Base):
    """A running ``tgmonitor run`` process: its heartbeat tells the others how to share channel leases."""

    __tablename__ = "service_nodes"

    owner: Mapped[str] = mapped_column(String(128), primary_key=True)  # host + lock path: one per session
    host: Mapped[str] = mapped_column(String(256))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=now)
    seen_at: Mapped[datetime] = mapped_column(default=now, index=True)


class DestinationRate(Base):
    """One alert destination's messages of the last minute: the per-destination rate limit, shared by every
    process on the database (a message takes a slot with a conditional UPDATE on ``version``)."""

    __tablename__ = "destination_rates"

    destination: Mapped[str] = mapped_column(String(128), primary_key=True)
    sends: Mapped[list[Any]] = mapped_column(JSON, default=list)  # ISO times (database clock), oldest first
    version: Mapped[int] = mapped_column(Integer, default=0)


class TelegramAccount(Base):
    """One Telegram account of ``[[telegram.accounts]]`` (migration 0011): its state, the process running it
    and its requests of the last hour (``tgmonitor accounts``)."""

    __tablename__ = "telegram_accounts"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(128))  # the ``tgmonitor run`` process running it
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), default="active")  # active | limited | banned | dead
    state_reason: Mapped[str | None] = mapped_column(Text)
    state_changed_at: Mapped[datetime | None]
    retry_at: Mapped[datetime | None]  # a limited account is tried again from then on
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)  # its budget (other processes plan with it)
    requests: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [[minute ISO, requests], …] last hour
    seen_at: Mapped[datetime | None]  # the running process's last word about it


class ChannelAccount(Base):
    """What one account knows of one channel: joined (from its dialogs) and readable (a private channel
    only its members can read). Assignment prefers joined, never gives a channel to an account that
    cannot read it."""

    __tablename__ = "channel_accounts"

    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True)
    account: Mapped[str] = mapped_column(ForeignKey("telegram_accounts.name", ondelete="CASCADE"),
                                         primary_key=True, index=True)
    joined: Mapped[bool] = mapped_column(Boolean, default=False)
    readable: Mapped[bool | None] = mapped_column(Boolean)  # None: not tried yet
    access_hash: Mapped[int | None] = mapped_column(BigInteger)  # Telegram gives each account its own
    checked_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
