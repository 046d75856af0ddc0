"""The ``Post`` value every source yields, and helpers for links."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ForwardOrigin:
    """Where a forwarded post came from (a channel and message when Telegram tells us, else a name).

    ``username`` is the origin channel's public username, lower-case, when that is all a source knows of
    it (the web preview links ``t.me/<username>/<id>`` and never shows a numeric id)."""

    channel_id: int | None = None
    message_id: int | None = None
    name: str | None = None
    username: str | None = None


@dataclass(frozen=True, slots=True)
class Post:
    """One channel message as every source sees it; everything after the source is shared.

    An album is one Post: the lowest message id of its group, the caption as text, ``member_ids``
    listing every id of the group."""

    message_id: int
    date: datetime  # timezone-aware UTC
    text: str = ""
    edit_date: datetime | None = None
    views: int | None = None
    forwards: int | None = None
    forward: ForwardOrigin | None = None
    album_id: int | None = None
    member_ids: tuple[int, ...] = ()
    link_preview: str | None = None
    incomplete: bool = False  # the source could not show the whole post (web preview limits)
    deleted: bool = False
    raw: dict[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.date.tzinfo is None:
            raise ValueError("Post.date must be timezone-aware")

    @property
    def ids(self) -> tuple[int, ...]:
        """Every Telegram message id this post stands for (album members included)."""
        return self.member_ids or (self.message_id,)


def utc(dt: datetime) -> datetime:
    """Aware UTC for any datetime (naive ones are taken to be UTC already)."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def message_link(username: str | None, channel_id: int | None, message_id: int) -> str:
    """``https://t.me/<username>/<id>``, or ``https://t.me/c/<channel id>/<id>`` without a username."""
    if username:
        return f"https://t.me/{username}/{message_id}"
    return f"https://t.me/c/{channel_id}/{message_id}"


def channel_subject(username: str | None, tg_id: int | None) -> str:
    """How ``status``, incidents and metrics name a channel: ``@username``, else the numeric id."""
    return f"@{username}" if username else str(tg_id)


def channel_label(username: str | None, title: str | None, channel_id: int | None) -> str:
    """How a channel is named to people: ``@username``, else its title, else its id."""
    if username:
        return f"@{username}"
    return title or str(channel_id)
