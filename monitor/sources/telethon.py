"""Telegram through Telethon: the client (from a factory), channel resolution, message pages → ``Post`` values.

Nothing here touches the database: :mod:`monitor.jobs.telethon` decides what to fetch and stores it. Each
network method of :class:`TelethonSource` makes exactly one MTProto request (``find_in_dialogs`` may page),
so the caller can take one token of the request budget per call.

The client comes from ``[telegram] client_factory`` / ``TGMONITOR_CLIENT_FACTORY`` ("module:function",
called as ``factory(settings)``, returning an unconnected ``TelegramClient``); by default a real client with
the session from ``TG_SESSION`` (a StringSession) or the session file, the configured proxy and
``flood_sleep_threshold=0`` so that every flood wait reaches us instead of sleeping inside Telethon.

Push updates (issue 12): a client built with ``updates=True`` receives Telegram's updates and catches up at
connect (``receive_updates=True, catch_up=True``); :func:`channel_message` reads a channel's new or edited
message out of an update, and :func:`watch_state_loss` tells when Telegram says the update state is lost.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from telethon import TelegramClient, errors, utils
from telethon.sessions import StringSession
from telethon.tl import functions, types

from monitor.posts import ForwardOrigin, Post, utc

if TYPE_CHECKING:
    from monitor.config import Settings

#: Messages per GetHistory request (Telegram's maximum).
PAGE = 100
#: An album whose newest member is younger than this may still be arriving: a poll leaves it for the next.
ALBUM_SETTLE = timedelta(seconds=60)

LOGIN_MESSAGE = ("the Telegram session is not authorised (revoked, expired or never logged in): "
                 "run `tgmonitor login` again")

#: Errors meaning the session can no longer be used: stop, do not retry (exit 78).
SESSION_DEAD_ERRORS: tuple[type[BaseException], ...] = (
    errors.AuthKeyUnregisteredError,
    errors.SessionRevokedError,
    errors.SessionExpiredError,
    errors.UserDeactivatedError,
    errors.UserDeactivatedBanError,
    errors.AuthKeyDuplicatedError,
    errors.AuthKeyInvalidError,
    errors.AuthKeyPermEmptyError,
    errors.SessionPasswordNeededError,
)

#: Errors meaning this one channel cannot be read (private, banned, gone, a bad name): mark it unavailable.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    errors.ChannelPrivateError,
    errors.ChannelInvalidError,
    errors.ChannelPublicGroupNaError,
    errors.UsernameNotOccupiedError,
    errors.UsernameInvalidError,
    errors.PeerIdInvalidError,
)


#: What a connection that cannot be made or breaks off raises inside Telethon: a refused or reset socket
#: (OSError/ConnectionError), a stalled one (asyncio.TimeoutError), and a stream cut mid-packet —
#: ``asyncio.IncompleteReadError`` is an ``EOFError``, which click would turn into a bare "Aborted!".
NETWORK_ERRORS: tuple[type[BaseException], ...] = (EOFError, ConnectionError, OSError, asyncio.TimeoutError)

PROXY_HINT = "check the network or set [telegram] proxy"


class TelegramUnreachable(Exception):
    """Telegram cannot be reached (network failure, throttling, a proxy down): an operational condition that
    passes, not a dead session. ``reason`` is the underlying error in one line, without secrets."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"cannot reach Telegram: {reason}; {PROXY_HINT}")
        self.reason = reason


def network_reason(exc: BaseException) -> str:
    """One line naming a network error (``IncompleteReadError: 0 bytes read on a total of 8 expected bytes``)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


class ClientSetupError(Exception):
    """No Telegram client can be built (missing API credentials or session, a broken factory)."""


class NotAChannel(Exception):
    """The name resolves to a user, bot or group that is not a channel we can read."""


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """What resolution learns about a channel; stored so that polls never resolve again."""

    id: int  # bare channel id
    access_hash: int
    title: str | None
    username: str | None  # lower-case, no @


@dataclass(slots=True)
class Page:
    """One GetHistory answer: messages (service messages included, MessageEmpty dropped) and the server's
    total message count of the channel."""

    messages: list[Any]
    total: int | None
    chat: ChannelInfo | None = None  # the channel as the answer describes it (renames show up here)


@dataclass(slots=True)
class DialogState:
    """One GetPeerDialogs answer: per joined channel its newest message id and that message's date."""

    tops: dict[int, int] = field(default_factory=dict)
    dates: dict[int, datetime] = field(default_factory=dict)
    infos: list[ChannelInfo] = field(default_factory=list)


# --------------------------------------------------------------------------- the client


def load_factory(spec: str) -> Callable[[Settings], TelegramClient]:
    """Import ``module:function``; ClientSetupError naming the spec when it cannot be used."""
    mod_name, _, func_name = spec.partition(":")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ClientSetupError(f"client_factory {spec!r}: module {mod_name!r} cannot be imported ({exc})") from None
    factory = getattr(module, func_name, None)
    if not callable(factory):
        raise ClientSetupError(f"client_factory {spec!r}: {mod_name} has no function {func_name!r}")
    return factory


def make_client(settings: Settings, *, updates: bool = False) -> TelegramClient:
    """An unconnected client: the configured factory's, else :func:`default_client`. ``updates``: it will
    receive push updates and catch up at connect (the service with ``[telegram] push``); other commands
    never do, so that a one-off command does not fetch the account's update difference."""
    spec = settings.telegram.client_factory
    if spec:
        try:
            client = load_factory(spec)(settings)
        except ClientSetupError:
            raise
        except Exception as exc:  # a factory is user code: its failure is a setup problem, not a crash
            raise ClientSetupError(f"client_factory {spec!r} failed: {type(exc).__name__}: {exc}") from None
        if not isinstance(client, TelegramClient):
            raise ClientSetupError(f"client_factory {spec!r} returned {type(client).__name__}, not a TelegramClient")
        if updates:
            enable_updates(client)
        return client
    return default_client(settings, updates=updates)


def enable_updates(client: TelegramClient) -> None:
    """Make an unconnected client (e.g. a factory's) receive updates and catch up when it connects: what
    ``TelegramClient(receive_updates=True, catch_up=True)`` sets. Telethon 1.x keeps both only as these
    private flags (pinned with the sender seam, see tests/test_push.py)."""
    client._no_updates = False
    client._catch_up = True


def session_path(settings: Settings) -> Path:
    """The session file Telethon uses (it appends ``.session`` when the name lacks it)."""
    p = settings.telegram.session_file or settings.data_dir / "tgmonitor.session"
    return p if p.name.endswith(".session") else p.with_name(p.name + ".session")


def prepare_session_file(path: Path) -> None:
    """Create the session file (and its folder) private before Telethon's SQLite opens it: the session is
    a full-account credential, so it must never exist world-readable, not even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def default_client(settings: Settings, *, session: Any = None, create_session_file: bool = False,
                   updates: bool = False) -> TelegramClient:
    """A real Telethon client: TG_API_ID/TG_API_HASH, the StringSession from TG_SESSION or the session file,
    the proxy from ``[telegram] proxy``; ``flood_sleep_threshold=0`` (flood waits are ours to schedule).
    ``updates``: receive push updates and replay, at connect, what was missed while disconnected (a session
    file keeps the update state across restarts; a TG_SESSION string only within one process)."""
    tg = settings.telegram
    if not tg.api_id or not tg.api_hash:
        raise ClientSetupError("TG_API_ID and TG_API_HASH are not set (get them at my.telegram.org and put them "
                               "in .env beside the config), then run `tgmonitor login`")
    if session is None:
        if tg.session:
            try:
                session = StringSession(tg.session)
            except ValueError:
                raise ClientSetupError("TG_SESSION is not a valid session string: run "
                                       "`tgmonitor login --print-session` again") from None
        else:
            path = session_path(settings)
            if not path.exists() and not create_session_file:
                raise ClientSetupError(f"no Telegram session ({path} does not exist and TG_SESSION is not set): "
                                       "run `tgmonitor login`")
            prepare_session_file(path)
            session = str(path)
    kwargs: dict[str, Any] = {}
    if tg.proxy:
        connection, proxy = parse_proxy(tg.proxy)
        kwargs["proxy"] = proxy
        if connection is not None:
            kwargs["connection"] = connection
    return TelegramClient(session, tg.api_id, tg.api_hash, flood_sleep_threshold=0, receive_updates=updates,
                          catch_up=updates, device_model="tgmonitor", **kwargs)


def parse_proxy(url: str) -> tuple[Any, Any]:
    """``socks5://user:pass@host:port``, ``socks4://…``, ``http://…`` → (None, python-socks proxy dict);
    ``mtproxy://SECRET@host:port`` → (the MTProxy connection class, (host, port, secret))."""
    u = urlsplit(url)
    if not u.hostname or not u.port:
        raise ClientSetupError("[telegram] proxy needs a host and a port, e.g. socks5://user:pass@127.0.0.1:1080")
    if u.scheme == "mtproxy":
        from telethon.network.connection import ConnectionTcpMTProxyRandomizedIntermediate

        secret = unquote(u.username or "")
        if not secret:
            raise ClientSetupError("[telegram] proxy: an MTProxy URL needs the secret, e.g. mtproxy://SECRET@host:443")
        return ConnectionTcpMTProxyRandomizedIntermediate, (u.hostname, u.port, secret)
    proxy: dict[str, Any] = {"proxy_type": u.scheme, "addr": u.hostname, "port": u.port, "rdns": True}
    if u.username:
        proxy["username"] = unquote(u.username)
    if u.password:
        proxy["password"] = unquote(u.password)
    return None, proxy


def is_session_dead(exc: BaseException) -> bool:
    return isinstance(exc, SESSION_DEAD_ERRORS)


# --------------------------------------------------------------------------- push updates


@dataclass(frozen=True, slots=True)
class ChannelMessage:
    """A channel's new or edited message, as an update brought it."""

    channel_id: int  # bare channel id
    message: Any  # types.Message or types.MessageService
    edited: bool


#: The update types that carry a channel's messages.
CHANNEL_UPDATES = (types.UpdateNewChannelMessage, types.UpdateEditChannelMessage)


def channel_message(update: Any) -> ChannelMessage | None:
    """The channel message an update carries (None for every other update). Forward origins get the
    source channel's title from the update's chats, as history answers do (see :func:`_messages`)."""
    if not isinstance(update, CHANNEL_UPDATES):
        return None
    msg = update.message
    peer = getattr(msg, "peer_id", None)
    if not isinstance(peer, types.PeerChannel) or isinstance(msg, types.MessageEmpty):
        return None
    fwd = getattr(msg, "fwd_from", None)
    if fwd is not None and isinstance(fwd.from_id, types.PeerChannel) and not fwd.from_name:
        entities = getattr(update, "_entities", None) or {}
        src = entities.get(utils.get_peer_id(fwd.from_id))
        if src is not None:
            msg._tgm_fwd_title = getattr(src, "title", None)
    return ChannelMessage(peer.channel_id, msg, isinstance(update, types.UpdateEditChannelMessage))


def watch_state_loss(client: TelegramClient, on_lost: Callable[[], None]) -> None:
    """Call ``on_lost()`` whenever Telegram sends ``updatesTooLong`` (it has more updates for us than it will
    push, so the update state must be fetched again and pushes may have been lost).

    Telethon consumes that signal inside its update loop (it fetches the difference and tells no handler), so
    this watches the queue the network sender hands every update to (``client._updates_queue``, shared with
    ``client._sender``; pinned by tests/test_push.py). The client's own ``catch_up()`` puts the same object
    with ``put`` when it connects: that is us asking, not Telegram losing anything, so it is not reported."""
    queue = client._updates_queue
    put_nowait = queue.put_nowait

    def watched(item: Any) -> None:
        if isinstance(item, types.UpdatesTooLong):
            on_lost()
        put_nowait(item)

    async def put(item: Any) -> None:  # catch_up(): an unbounded queue never waits, so this is Queue.put
        put_nowait(item)

    queue.put_nowait = watched
    queue.put = put


# --------------------------------------------------------------------------- messages → posts


def is_service(msg: Any) -> bool:
    """Pins, title changes, "channel created": they take ids but are not posts."""
    return isinstance(msg, types.MessageService)


def _forward(msg: Any) -> ForwardOrigin | None:
    fwd = getattr(msg, "fwd_from", None)
    if fwd is None:
        return None
    channel_id = None
    src = fwd.from_id
    if isinstance(src, types.PeerChannel):
        channel_id = src.channel_id
    name = fwd.from_name or fwd.post_author
    title = getattr(msg, "_tgm_fwd_title", None)  # the source channel's title, from the answer's chats
    if title is None:
        forward = getattr(msg, "forward", None)  # iter_messages/get_messages fill this in themselves
        chat = getattr(forward, "chat", None) if forward is not None else None
        title = getattr(chat, "title", None)
    if title:
        name = title
    return ForwardOrigin(channel_id=channel_id, message_id=fwd.channel_post, name=name)


def _link_preview(msg: Any) -> str | None:
    media = getattr(msg, "media", None)
    if isinstance(media, types.MessageMediaWebPage) and isinstance(media.webpage, types.WebPage):
        parts = [media.webpage.title, media.webpage.description]
        text = "\n".join(p for p in parts if p)
        return text or None
    return None


def to_post(msg: Any) -> Post:
    """One (non-service) message as a Post; ``.message`` is the raw text (for media: the caption)."""
    media = getattr(msg, "media", None)
    raw: dict[str, Any] = {}
    if media is not None:
        raw["media"] = type(media).__name__
    if getattr(msg, "post_author", None):
        raw["author"] = msg.post_author
    return Post(
        message_id=msg.id,
        date=utc(msg.date),
        text=msg.message or "",
        edit_date=utc(msg.edit_date) if msg.edit_date else None,
        views=msg.views,
        forwards=msg.forwards,
        forward=_forward(msg),
        album_id=msg.grouped_id,
        link_preview=_link_preview(msg),
        raw=raw or None,
    )


def album_post(msgs: Sequence[Any]) -> Post:
    """An album (messages sharing a ``grouped_id``) as one Post: the lowest id, the caption(s) as text."""
    ordered = sorted(msgs, key=lambda m: m.id)
    first = to_post(ordered[0])
    if len(ordered) == 1:
        return replace(first, member_ids=(ordered[0].id,)) if ordered[0].grouped_id else first
    captions = [m.message for m in ordered if m.message]
    edits = [utc(m.edit_date) for m in ordered if m.edit_date]
    views = [m.views for m in ordered if m.views is not None]
    return replace(
        first,
        text="\n\n".join(captions),
        edit_date=max(edits) if edits else None,
        views=max(views) if views else None,
        forward=first.forward or next((f for f in (_forward(m) for m in ordered) if f), None),
        member_ids=tuple(m.id for m in ordered),
        link_preview=first.link_preview or next((p for p in (_link_preview(m) for m in ordered) if p), None),
    )


def assemble(msgs: Sequence[Any]) -> list[Post]:
    """Messages (any order, service ones included) → Posts in id order, albums merged, service skipped."""
    groups: dict[int, list[Any]] = {}
    singles: list[Any] = []
    for m in msgs:
        if m is None or is_service(m) or isinstance(m, types.MessageEmpty):
            continue
        if m.grouped_id:
            groups.setdefault(m.grouped_id, []).append(m)
        else:
            singles.append(m)
    posts = [to_post(m) for m in singles] + [album_post(g) for g in groups.values()]
    posts.sort(key=lambda p: p.message_id)
    return posts


def trailing_group(msgs: Sequence[Any]) -> int:
    """How many messages at the end of ``msgs`` (ascending ids) belong to the last message's album."""
    if not msgs or not getattr(msgs[-1], "grouped_id", None):
        return 0
    g = msgs[-1].grouped_id
    n = 0
    for m in reversed(msgs):
        if getattr(m, "grouped_id", None) != g:
            break
        n += 1
    return n


def leading_group(msgs: Sequence[Any]) -> int:
    """How many messages at the start of ``msgs`` (ascending ids) belong to the first message's album."""
    if not msgs or not getattr(msgs[0], "grouped_id", None):
        return 0
    g = msgs[0].grouped_id
    n = 0
    for m in msgs:
        if getattr(m, "grouped_id", None) != g:
            break
        n += 1
    return n


def channel_info(chat: Any) -> ChannelInfo | None:
    """A ``types.Channel`` as ChannelInfo (None for anything else, e.g. ``ChannelForbidden``)."""
    if not isinstance(chat, types.Channel) or chat.access_hash is None:
        return None
    username = chat.username
    if not username and getattr(chat, "usernames", None):
        active = [u.username for u in chat.usernames if getattr(u, "active", False)]
        username = active[0] if active else None
    return ChannelInfo(id=chat.id, access_hash=chat.access_hash, title=chat.title,
                       username=username.lower() if username else None)


# --------------------------------------------------------------------------- the gateway


class TelethonSource:
    """The Telegram calls the jobs make, each one request, each answering plain values."""

    def __init__(self, client: TelegramClient) -> None:
        self.client = client

    async def open(self) -> None:
        """Connect; raise a session-dead error when the account is not logged in (asked of the client), and
        :class:`TelegramUnreachable` when the connection cannot be made or breaks off."""
        try:
            if not self.client.is_connected():
                await self.client.connect()
            authorised = await self.client.is_user_authorized()
        except NETWORK_ERRORS as exc:
            await self.close_quietly()
            raise TelegramUnreachable(network_reason(exc)) from None
        if not authorised:
            raise errors.AuthKeyUnregisteredError(request=None)

    async def close(self) -> None:
        if self.client.is_connected():
            await self.client.disconnect()

    async def close_quietly(self) -> None:
        """Drop a broken connection so that the next :meth:`open` connects afresh (never raises)."""
        try:
            await asyncio.wait_for(self.close(), 5.0)
        except Exception:  # a connection that is already broken may fail to close too
            pass

    @staticmethod
    def peer(channel_id: int, access_hash: int) -> types.InputPeerChannel:
        """The input peer built from what we stored: no resolution, no request."""
        return types.InputPeerChannel(channel_id=channel_id, access_hash=access_hash)

    async def resolve_username(self, username: str) -> ChannelInfo:
        """``contacts.ResolveUsername`` (the call Telegram punishes hardest: use once per channel)."""
        r = await self.client(functions.contacts.ResolveUsernameRequest(username=username))
        if isinstance(r.peer, types.PeerChannel):
            for chat in r.chats:
                if chat.id == r.peer.channel_id:
                    info = channel_info(chat)
                    if info is not None:
                        return info
                    raise errors.ChannelPrivateError(request=None)
        raise NotAChannel(f"@{username} is not a channel")

    def cached(self, channel_id: int) -> ChannelInfo | None:
        """The channel from the session's entity cache (no request), if the session has seen it."""
        try:
            peer = self.client.session.get_input_entity(utils.get_peer_id(types.PeerChannel(channel_id)))
        except (ValueError, KeyError, TypeError):
            return None
        if isinstance(peer, types.InputPeerChannel) and peer.access_hash:
            return ChannelInfo(id=channel_id, access_hash=peer.access_hash, title=None, username=None)
        return None

    async def channel_by_id(self, channel_id: int) -> ChannelInfo | None:
        """``channels.GetChannels`` with a zero access hash (accepted for channels the account can see)."""
        r = await self.client(functions.channels.GetChannelsRequest(
            id=[types.InputChannel(channel_id=channel_id, access_hash=0)]))
        for chat in r.chats:
            if chat.id == channel_id:
                return channel_info(chat)
        return None

    async def find_in_dialogs(self, channel_id: int) -> ChannelInfo | None:
        """Look for a joined channel among the account's dialogs (``messages.GetDialogs``)."""
        async for d in self.client.iter_dialogs(ignore_migrated=True):
            if isinstance(d.entity, types.Channel) and d.entity.id == channel_id:
                return channel_info(d.entity)
        return None

    async def dialog_tops(self, peers: Sequence[types.InputPeerChannel]) -> tuple[dict[int, int], list[ChannelInfo]]:
        """One ``messages.GetPeerDialogs`` for up to 100 joined channels: their newest message ids (channels the
        account has not joined are absent) and the channels as Telegram describes them now."""
        r = await self.client(functions.messages.GetPeerDialogsRequest(
            peers=[types.InputDialogPeer(peer=p) for p in peers]))
        tops: dict[int, int] = {}
        for d in r.dialogs:
            if isinstance(d.peer, types.PeerChannel):
                tops[d.peer.channel_id] = d.top_message
        infos = [i for i in (channel_info(c) for c in r.chats) if i is not None]
        return tops, infos

    async def dialog_state(self, peers: Sequence[types.InputPeerChannel]) -> DialogState:
        """``messages.GetPeerDialogs`` for up to 100 channels (one request): the newest message id and date of
        each joined channel (channels not joined are absent) and the channels as Telegram describes them."""
        r = await self.client(functions.messages.GetPeerDialogsRequest(
            peers=[types.InputDialogPeer(peer=p) for p in peers]))
        dates: dict[tuple[int, int], datetime] = {}
        for msg in r.messages:
            peer = getattr(msg, "peer_id", None)
            if isinstance(peer, types.PeerChannel) and getattr(msg, "date", None) is not None:
                dates[(peer.channel_id, msg.id)] = utc(msg.date)
        state = DialogState()
        for d in r.dialogs:
            if isinstance(d.peer, types.PeerChannel):
                state.tops[d.peer.channel_id] = d.top_message
                when = dates.get((d.peer.channel_id, d.top_message))
                if when is not None:
                    state.dates[d.peer.channel_id] = when
        state.infos = [i for i in (channel_info(c) for c in r.chats) if i is not None]
        return state

    async def history_after(self, peer: types.InputPeerChannel, min_id: int, limit: int = PAGE) -> Page:
        """The oldest ``limit`` messages with an id above ``min_id``, oldest first: exactly one GetHistory,
        with the offsets Telethon's ``iter_messages(min_id=…, reverse=True)`` uses (offset_id=min_id+1,
        add_offset=-limit; core.telegram.org/api/offsets "newer than"). Telegram does not honour a server-side
        min_id reliably (Telethon #816), so the filter is ours too. A short page ends this poll, never the
        channel: the next poll starts from the stored cursor again, so nothing is skipped."""
        r = await self.client(functions.messages.GetHistoryRequest(
            peer=peer, offset_id=min_id + 1, offset_date=None, add_offset=-limit, limit=limit, max_id=0, min_id=0,
            hash=0))
        msgs = sorted((m for m in _messages(r) if m.id > min_id), key=lambda m: m.id)
        return Page(msgs, getattr(r, "count", None), _chat_of(r, peer))

    async def history_before(self, peer: types.InputPeerChannel, offset_id: int, limit: int = PAGE) -> Page:
        """The newest ``limit`` messages with an id below ``offset_id`` (0: the newest), newest first: exactly
        one GetHistory (offset_id, add_offset=0, limit — the backwards walk of ``iter_messages``)."""
        r = await self.client(functions.messages.GetHistoryRequest(
            peer=peer, offset_id=offset_id, offset_date=None, add_offset=0, limit=limit, max_id=0, min_id=0,
            hash=0))
        msgs = sorted((m for m in _messages(r) if not offset_id or m.id < offset_id), key=lambda m: -m.id)
        return Page(msgs, getattr(r, "count", None), _chat_of(r, peer))

    async def server_count(self, peer: types.InputPeerChannel) -> tuple[int, int]:
        """(the server's message count, the newest id): one GetHistory with limit 1."""
        r = await self.client.get_messages(peer, limit=1)
        newest = r[0].id if r else 0
        return int(r.total or 0), newest

    async def by_ids(self, peer: types.InputPeerChannel, ids: Sequence[int]) -> dict[int, Any]:
        """``channels.GetMessages`` for ≤ 100 ids: id → message, or None when it is gone."""
        msgs = await self.client.get_messages(peer, ids=list(ids))
        return {i: (m if m is not None and not isinstance(m, types.MessageEmpty) else None)
                for i, m in zip(ids, msgs, strict=True)}


def _messages(r: Any) -> list[Any]:
    """The real messages of an answer, with forward origins' names filled in from the answer's chats."""
    if isinstance(r, types.messages.MessagesNotModified):
        return []
    titles = {c.id: getattr(c, "title", None) for c in getattr(r, "chats", [])}
    out = []
    for msg in r.messages:
        if isinstance(msg, types.MessageEmpty):
            continue
        fwd = getattr(msg, "fwd_from", None)
        if fwd is not None and isinstance(fwd.from_id, types.PeerChannel) and not fwd.from_name:
            msg._tgm_fwd_title = titles.get(fwd.from_id.channel_id)
        out.append(msg)
    return out


def _chat_of(r: Any, peer: types.InputPeerChannel) -> ChannelInfo | None:
    for c in getattr(r, "chats", []):
        if c.id == peer.channel_id:
            return channel_info(c)
    return None


def sorted_by_date(posts: Sequence[Post]) -> list[Post]:
    return sorted(posts, key=lambda p: (p.date, p.message_id))


def newest_date(msgs: Sequence[Any]) -> datetime | None:
    dates = [utc(m.date) for m in msgs if getattr(m, "date", None)]
    return max(dates) if dates else None
