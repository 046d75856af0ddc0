"""An in-process fake Telegram behind a real, never-connected ``TelegramClient``.

Only the network sender (``client._sender``) is replaced: its ``send(request)`` returns a future resolved
with real ``telethon.tl.types`` objects or an RPC error, so Telethon's own ``get_entity``, ``iter_messages``
paging, flood-wait memory and error mapping run unmodified (see ../shared/DESIGN.md, "Faking Telegram
honestly"). ``messages.GetHistory`` follows core.telegram.org/api/offsets: messages newest first, skip to
``offset_id``/``offset_date``, shift by ``add_offset`` (negative values reach newer messages), take ``limit``
(at most 100), then drop ids outside (``min_id``, ``max_id``).

Requests answered: contacts.ResolveUsername, messages.GetHistory, channels.GetMessages,
channels.GetChannels, channels.GetFullChannel, messages.GetPeerDialogs (joined channels only),
messages.GetDialogs, updates.GetState, updates.GetDifference, updates.GetChannelDifference, users.GetUsers,
help.GetConfig, and auth.SendCode/auth.SignIn for ``login``.

Push updates (issue 12): a client made with ``fake_client(server, updates=True)`` runs Telethon's own
``connect()`` (its update loop, catch-up from the session's saved state, the MessageBox's pts bookkeeping), and
the server puts real update containers — ``Updates`` holding ``UpdateNewChannelMessage`` /
``UpdateEditChannelMessage``, or ``UpdatesTooLong`` — into the sender's update queue, exactly where
``MTProtoSender`` puts what arrives from the network. Every post, service message and edit of a joined channel
consumes one channel pts and is pushed, unless dropped on cue: a "gap" drop consumes the pts but is not
delivered (Telethon notices the gap and asks ``updates.getChannelDifference``, which the server answers from
its log); a "silent" drop is never delivered and never in any difference (what Telethon issues #4345/#4361
describe: the post exists, no update ever says so) — only polling finds it.

Use in-process: ``server = FakeTelegram(); client = fake_client(server)``. From a ``tgmonitor`` subprocess:
``client_factory = "fake_telegram:make_client"`` with this folder on PYTHONPATH and ``FAKE_TG_SPEC`` naming
a JSON file ``{"channels": [{"id", "username", "title", "posts", "joined", "private"}], "revoked",
"delay", "unreachable", "unreachable_while"}``; ``FAKE_TG_LOG`` names a file that gets one line per request
(name and paging arguments).
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import os
import random
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from telethon import TelegramClient, errors
from telethon.sessions import StringSession
from telethon.tl import functions, types

T0 = datetime(2025, 5, 20, 6, 0, tzinfo=UTC)
SELF = types.User(id=42, is_self=True, first_name="Tester", access_hash=4242)


def _mk(cls: Any, **kw: Any) -> Any:
    """A TL object with the fields this Telethon layer knows; required ones not given get an empty value."""
    known = inspect.signature(cls.__init__).parameters
    filler = {"about": "", "bot_info": [], "chat_photo": types.PhotoEmpty(id=0),
              "notify_settings": types.PeerNotifySettings()}
    args = {k: v for k, v in kw.items() if k in known}
    for k, p in known.items():
        if k != "self" and k not in args and p.default is inspect.Parameter.empty:
            args[k] = filler.get(k, 0)
    return cls(**args)


@dataclass
class FakeChannel:
    """One channel's state on the fake server."""

    id: int
    username: str | None
    title: str
    access_hash: int
    joined: bool = True
    private: bool = False
    messages: dict[int, Any] = field(default_factory=dict)
    hidden: set[int] = field(default_factory=set)  # counted by the server but never returned ("local laws")
    next_id: int = 1
    server: FakeTelegram | None = field(default=None, repr=False)  # pushes this channel's updates

    def entity(self) -> types.Channel:
        return types.Channel(id=self.id, title=self.title, photo=types.ChatPhotoEmpty(), date=T0 - timedelta(days=400),
                             broadcast=True, access_hash=self.access_hash, username=self.username)

    def _id(self) -> int:
        i = self.next_id
        self.next_id += 1
        return i

    def post(self, text: str, *, date: datetime | None = None, grouped_id: int | None = None,
             fwd: tuple[int, int] | None = None, views: int | None = 100) -> int:
        """A new post; ``fwd`` = (source channel id, source message id)."""
        mid = self._id()
        fwd_from = None
        if fwd is not None:
            fwd_from = types.MessageFwdHeader(date=T0, from_id=types.PeerChannel(fwd[0]), channel_post=fwd[1])
        self.messages[mid] = types.Message(
            id=mid, peer_id=types.PeerChannel(self.id), date=date or T0 + timedelta(minutes=mid), message=text,
            post=True, views=views, forwards=0, fwd_from=fwd_from, grouped_id=grouped_id)
        if self.server is not None:
            self.server.published(self, self.messages[mid])
        return mid

    def album(self, caption: str, n: int, *, date: datetime | None = None, grouped_id: int | None = None) -> list[int]:
        """An album of ``n`` photos; the first carries the caption."""
        g = grouped_id or (10_000 + self.next_id)
        return [self.post(caption if i == 0 else "", date=date, grouped_id=g) for i in range(n)]

    def service(self, *, date: datetime | None = None) -> int:
        mid = self._id()
        self.messages[mid] = types.MessageService(
            id=mid, peer_id=types.PeerChannel(self.id), date=date or T0 + timedelta(minutes=mid),
            action=types.MessageActionPinMessage(), post=True)
        if self.server is not None:
            self.server.published(self, self.messages[mid])
        return mid

    def edit(self, mid: int, text: str, when: datetime) -> None:
        self.messages[mid].message = text
        self.messages[mid].edit_date = when
        if self.server is not None:
            self.server.published(self, self.messages[mid], edit=True)

    def delete(self, mid: int) -> None:
        self.messages.pop(mid, None)

    def top(self) -> int:
        return max(self.messages) if self.messages else 0


class FakeTelegram:
    """The server side: channels, a request log, errors and flood waits on cue."""

    def __init__(self, *, log_path: str | None = None) -> None:
        self.channels: dict[int, FakeChannel] = {}
        self.calls: list[str] = []
        self.counts: Counter[str] = Counter()
        self.revoked = False
        self.authorized = True
        self.floods: dict[str, list[tuple[int, int]]] = {}  # name -> [(nth call from now, seconds)]
        self.log_path = log_path
        self.delay = 0.0  # seconds before an answer (network latency, for crash tests)
        self.history_returned = 0  # messages GetHistory handed out (the crash test counts re-fetching)
        self.cpu = 0.0  # the fake's own CPU time (the benchmark subtracts it)
        # The network on cue: "IncompleteReadError" (a stream cut mid-packet, what throttled links give) or
        # "ConnectionError" makes connect() and every request fail; ``unreachable_while`` names a file: the
        # failure lasts while it exists (a subprocess test removes it to bring Telegram back).
        self.unreachable: str | None = None
        self.unreachable_while: str | None = None
        self.network_failures = 0
        # Push updates: the senders listening now, each joined channel's pts and its log of updates (what
        # getChannelDifference answers from), the account pts that moves with every channel event (what
        # getDifference answers from), and the updates dropped on cue.
        self.listeners: weakref.WeakSet[FakeSender] = weakref.WeakSet()
        self.push = True  # False: Telegram sends no updates at all (the pts still move)
        self.push_delay = 0.0  # seconds between a post and its update reaching the client
        self.pts: dict[int, int] = {}
        self.update_log: dict[int, list[tuple[int, Any]]] = {}
        self.account_pts = 1
        self.changed_at: dict[int, int] = {}  # channel -> account pts of its last event
        self.drop_rate = 0.0  # share of updates dropped at random (``drop_mode``), with ``rng``
        self.drop_mode = "silent"  # "silent" | "gap" (see the module docstring)
        self.drop_plan: list[str] = []  # the next updates' fates, first first: "silent", "gap" or "deliver"
        self.rng = random.Random(12)
        self.dropped: list[tuple[int, int, str]] = []  # (channel id, message id, how)
        self.pushed = 0
        self.channel_too_long: set[int] = set()  # getChannelDifference answers ChannelDifferenceTooLong
        self.difference_too_long = False  # getDifference answers DifferenceTooLong (the account state is lost)

    def add(self, cid: int, username: str | None, title: str | None = None, *, joined: bool = True,
            private: bool = False) -> FakeChannel:
        ch = FakeChannel(cid, username, title or f"Channel {cid}", access_hash=cid * 7 + 3, joined=joined,
                         private=private, server=self)
        self.channels[cid] = ch
        return ch

    # ------------------------------------------------------------------ push updates

    def published(self, ch: FakeChannel, msg: Any, *, edit: bool = False) -> None:
        """A post, service message or edit happened in ``ch``: consume a pts and push its update to the
        listening clients (unless the channel is not joined, push is off, or the drop plan says otherwise)."""
        if not ch.joined or ch.private:
            return
        fate = self.drop_plan.pop(0) if self.drop_plan else (
            self.drop_mode if self.drop_rate and self.rng.random() < self.drop_rate else "deliver")
        if fate == "silent":
            self.dropped.append((ch.id, msg.id, fate))
            return
        pts = self.pts.get(ch.id, 1) + 1
        self.pts[ch.id] = pts
        kind = types.UpdateEditChannelMessage if edit else types.UpdateNewChannelMessage
        upd = kind(message=copy.copy(msg), pts=pts, pts_count=1)
        self.update_log.setdefault(ch.id, []).append((pts, upd))
        self.account_pts += 1
        self.changed_at[ch.id] = self.account_pts
        if fate == "gap":
            self.dropped.append((ch.id, msg.id, fate))
            return
        if self.push:
            self.deliver(types.Updates(updates=[upd], users=[], chats=[ch.entity()], date=_now(), seq=0))

    def deliver(self, updates: Any) -> None:
        """Hand an update container to every listening client, as the network would (after ``push_delay``)."""
        targets = list(self.listeners)
        if not targets:
            return
        self.pushed += 1
        if self.push_delay:
            loop = asyncio.get_running_loop()
            for t in targets:
                loop.call_later(self.push_delay, t.updates_queue.put_nowait, updates)
        else:
            for t in targets:
                t.updates_queue.put_nowait(updates)

    def too_long(self) -> None:
        """Telegram tells the clients it has too many updates for them (``updatesTooLong``)."""
        self.deliver(types.UpdatesTooLong())

    def _state(self) -> Any:
        return types.updates.State(pts=self.account_pts, qts=0, date=_now(), seq=0, unread_count=0)

    def _difference(self, req: Any) -> Any:
        """updates.getDifference: the channels with events since the client's account pts, as
        ``updateChannelTooLong`` (Telegram never returns channel messages here: the client asks each channel)."""
        if self.difference_too_long:
            return types.updates.DifferenceTooLong(pts=self.account_pts)
        if req.pts >= self.account_pts:
            return types.updates.DifferenceEmpty(date=_now(), seq=0)
        moved = [self.channels[c] for c, at in self.changed_at.items() if at > req.pts and c in self.channels]
        return types.updates.Difference(
            new_messages=[], new_encrypted_messages=[],
            other_updates=[types.UpdateChannelTooLong(channel_id=c.id, pts=self.pts.get(c.id, 1)) for c in moved],
            chats=[c.entity() for c in moved], users=[], state=self._state())

    def _channel_difference(self, req: Any) -> Any:
        """updates.getChannelDifference: the channel's logged updates above ``pts``, at most ``limit``."""
        ch = self._channel(req.channel, readable=True)
        cur = self.pts.get(ch.id, 1)
        if ch.id in self.channel_too_long:
            top = [ch.messages[ch.top()]] if ch.messages else []
            dialog = _mk(types.Dialog, peer=types.PeerChannel(ch.id), top_message=ch.top(), read_inbox_max_id=0,
                         read_outbox_max_id=0, unread_count=0, notify_settings=types.PeerNotifySettings(), pts=cur)
            return types.updates.ChannelDifferenceTooLong(dialog=dialog, messages=top, chats=[ch.entity()],
                                                          users=[], final=True, timeout=None)
        todo = [(p, u) for p, u in self.update_log.get(ch.id, []) if p > req.pts]
        if not todo:
            return types.updates.ChannelDifferenceEmpty(pts=cur, final=True, timeout=None)
        take = todo[:max(1, req.limit)]
        return types.updates.ChannelDifference(
            pts=take[-1][0], final=len(take) == len(todo),
            new_messages=[u.message for _, u in take if isinstance(u, types.UpdateNewChannelMessage)],
            other_updates=[u for _, u in take if not isinstance(u, types.UpdateNewChannelMessage)],
            chats=[ch.entity()], users=[], timeout=None)

    def flood_on(self, name: str, seconds: int, nth: int = 1) -> None:
        """Raise FloodWaitError(seconds) on the ``nth`` request of ``name`` from now on."""
        self.floods.setdefault(name, []).append((self.counts[name] + nth, seconds))

    def count(self, name: str) -> int:
        return self.counts[name]

    def network_error(self) -> BaseException | None:
        """The error a connect or request meets now, or None while the network works."""
        if not self.unreachable or (self.unreachable_while and not os.path.exists(self.unreachable_while)):
            return None
        self.network_failures += 1
        if self.unreachable == "IncompleteReadError":
            return asyncio.IncompleteReadError(b"", 8)  # an EOFError, like Telethon's from a dropped stream
        if self.unreachable == "TimeoutError":
            return TimeoutError()
        return ConnectionError("Connection to Telegram failed 5 time(s)")

    # ------------------------------------------------------------------ dispatch

    def handle(self, req: Any) -> Any:
        import time

        t = time.process_time()
        try:
            return self._handle(req)
        finally:
            self.cpu += time.process_time() - t

    def _handle(self, req: Any) -> Any:
        while type(req).__name__ in ("InvokeWithoutUpdatesRequest", "InvokeWithLayerRequest",
                                     "InitConnectionRequest"):
            req = req.query
        name = type(req).__name__
        self.counts[name] += 1
        self.calls.append(name)
        self._log(req, name)
        for nth, secs in self.floods.get(name, []):
            if self.counts[name] == nth:
                raise errors.FloodWaitError(request=req, capture=secs)
        if isinstance(req, functions.auth.SendCodeRequest):
            return _mk(types.auth.SentCode, type=types.auth.SentCodeTypeApp(length=5), phone_code_hash="abc")
        if isinstance(req, functions.auth.SignInRequest):
            if req.phone_code != "12345":
                raise errors.PhoneCodeInvalidError(request=req)
            self.authorized, self.revoked = True, False
            return types.auth.Authorization(user=SELF)
        if self.revoked or not self.authorized:
            raise errors.AuthKeyUnregisteredError(request=req)
        if isinstance(req, functions.updates.GetStateRequest):
            return self._state()
        if isinstance(req, functions.users.GetUsersRequest):
            return [SELF]
        if isinstance(req, functions.updates.GetDifferenceRequest):  # after a login, a gap, or to catch up
            return self._difference(req)
        if isinstance(req, functions.updates.GetChannelDifferenceRequest):
            return self._channel_difference(req)
        if isinstance(req, functions.help.GetConfigRequest):  # Telethon's connect() sends it (InitConnection)
            return _mk(types.Config, date=_now(), expires=_now() + timedelta(hours=1), dc_options=[],
                       this_dc=2, dc_txt_domain_name="", me_url_prefix="https://t.me/")
        if isinstance(req, functions.contacts.ResolveUsernameRequest):
            u = req.username
            if not u.replace("_", "").isalnum() or len(u) < 4 or not u[0].isalpha():
                raise errors.UsernameInvalidError(request=req)
            ch = next((c for c in self.channels.values() if c.username and c.username.lower() == u.lower()), None)
            if ch is None:
                raise errors.UsernameNotOccupiedError(request=req)
            return types.contacts.ResolvedPeer(peer=types.PeerChannel(ch.id), chats=[ch.entity()], users=[])
        if isinstance(req, functions.messages.GetHistoryRequest):
            return self._history(req)
        if isinstance(req, functions.channels.GetMessagesRequest):
            ch = self._channel(req.channel, readable=True)
            out = [ch.messages.get(getattr(i, "id", 0)) or types.MessageEmpty(id=getattr(i, "id", 0),
                                                                               peer_id=types.PeerChannel(ch.id))
                   for i in req.id]
            return types.messages.ChannelMessages(pts=1, count=len(out), messages=out, topics=[],
                                                  chats=self._chats(ch), users=[])
        if isinstance(req, functions.channels.GetChannelsRequest):
            found = []
            for ic in req.id:
                ch = self.channels.get(getattr(ic, "channel_id", -1))
                if ch is not None and (ch.joined or ch.username) and ic.access_hash in (0, ch.access_hash):
                    found.append(ch.entity())
            return types.messages.Chats(chats=found)
        if isinstance(req, functions.channels.GetFullChannelRequest):
            ch = self._channel(req.channel, readable=True)
            full = _mk(types.ChannelFull, id=ch.id, about="", read_inbox_max_id=ch.top(), read_outbox_max_id=0,
                       unread_count=0, pts=1, participants_count=1000)
            return types.messages.ChatFull(full_chat=full, chats=[ch.entity()], users=[])
        if isinstance(req, functions.messages.GetPeerDialogsRequest):
            dialogs, msgs, chats = [], [], []
            for p in req.peers:
                ch = self._channel(p.peer)
                if not ch.joined or ch.private:
                    continue  # the account is not in this channel: no dialog for it
                dialogs.append(self._dialog(ch))
                msgs.extend([ch.messages[ch.top()]] if ch.messages else [])
                chats.append(ch.entity())
            return types.messages.PeerDialogs(dialogs=dialogs, messages=msgs, chats=chats, users=[],
                                              state=types.updates.State(pts=1, qts=0, date=T0, seq=0, unread_count=0))
        if isinstance(req, functions.messages.GetDialogsRequest):
            joined = [c for c in self.channels.values() if c.joined and not c.private]
            return types.messages.Dialogs(dialogs=[self._dialog(c) for c in joined],
                                          messages=[c.messages[c.top()] for c in joined if c.messages],
                                          chats=[c.entity() for c in joined], users=[])
        raise errors.RPCError(request=req, message=f"FAKE_UNSUPPORTED_{name}", code=400)

    def _dialog(self, ch: FakeChannel) -> Any:
        return _mk(types.Dialog, peer=types.PeerChannel(ch.id), top_message=ch.top(), read_inbox_max_id=ch.top(),
                   read_outbox_max_id=0, unread_count=0, notify_settings=types.PeerNotifySettings(), pts=1)

    def _chats(self, ch: FakeChannel) -> list[Any]:
        out = [ch.entity()]
        for m in ch.messages.values():
            src = getattr(getattr(m, "fwd_from", None), "from_id", None)
            if isinstance(src, types.PeerChannel) and src.channel_id in self.channels:
                out.append(self.channels[src.channel_id].entity())
        return out

    def _channel(self, peer: Any, *, readable: bool = False) -> FakeChannel:
        cid = getattr(peer, "channel_id", None)
        ch = self.channels.get(cid) if cid is not None else None
        if ch is None or getattr(peer, "access_hash", None) != ch.access_hash:
            raise errors.ChannelInvalidError(request=None)
        if readable and ch.private:
            raise errors.ChannelPrivateError(request=None)
        return ch

    def _history(self, req: Any) -> Any:
        ch = self._channel(req.peer, readable=True)
        msgs = sorted((m for i, m in ch.messages.items() if i not in ch.hidden), key=lambda m: m.id, reverse=True)
        if req.offset_id:
            idx = next((i for i, m in enumerate(msgs) if m.id < req.offset_id), len(msgs))
        elif req.offset_date:
            idx = next((i for i, m in enumerate(msgs) if m.date < req.offset_date), len(msgs))
        else:
            idx = 0
        start = idx + req.add_offset
        limit = min(req.limit, 100)
        page = msgs[max(0, start):max(0, start + limit)]
        if req.max_id:
            page = [m for m in page if m.id < req.max_id]
        if req.min_id:
            page = [m for m in page if m.id > req.min_id]
        self.history_returned += len(page)
        if self.log_path:
            with open(self.log_path, "a") as f:
                f.write(f"  returned={len(page)} ids={page[-1].id if page else 0}..{page[0].id if page else 0}\n")
        return types.messages.ChannelMessages(pts=1, count=len(ch.messages) + 0, messages=page, topics=[],
                                              chats=self._chats(ch), users=[])

    def _log(self, req: Any, name: str) -> None:
        if not self.log_path:
            return
        extra = ""
        if name == "GetHistoryRequest":
            extra = f" offset_id={req.offset_id} add_offset={req.add_offset} limit={req.limit} min_id={req.min_id}"
        with open(self.log_path, "a") as f:
            f.write(name + extra + "\n")


class FakeSender:
    """Stands in for telethon.network.MTProtoSender: ``send`` returns a future, like the real one; with
    ``updates_queue`` (the client's), it also receives the server's pushed updates while connected."""

    def __init__(self, server: FakeTelegram, updates_queue: asyncio.Queue[Any] | None = None) -> None:
        self.server = server
        self.auth_key: Any = None
        self.updates_queue = updates_queue
        self._updates_queue = updates_queue  # MTProtoSender's own name for it
        self._disconnected: asyncio.Future[None] | None = None

    def is_connected(self) -> bool:
        return True

    async def connect(self, *_a: Any, **_k: Any) -> bool:
        if self.updates_queue is not None:
            self.server.listeners.add(self)
            self._disconnected = asyncio.get_running_loop().create_future()
        return True

    async def disconnect(self) -> None:
        self.server.listeners.discard(self)
        if self._disconnected is not None and not self._disconnected.done():
            self._disconnected.set_result(None)
        return None

    @property
    def disconnected(self) -> asyncio.Future[None]:
        """Resolved when the connection ends (Telethon's keep-alive loop waits on it)."""
        if self._disconnected is None:
            self._disconnected = asyncio.get_running_loop().create_future()
        return self._disconnected

    def _transport_connected(self) -> bool:
        return False  # no keep-alive pings: there is no transport

    def _keepalive_ping(self, _rnd: int) -> None:
        return None

    def send(self, request: Any, ordered: bool = False) -> Any:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def answer() -> None:
            err = self.server.network_error()
            if err is not None:
                fut.set_exception(err)
                return
            try:
                if isinstance(request, list):
                    fut.set_result([self.server.handle(r) for r in request])
                else:
                    fut.set_result(self.server.handle(request))
            except Exception as e:
                fut.set_exception(e)

        if self.server.delay:
            loop.call_later(self.server.delay, answer)
        else:
            answer()
        return fut


class FakeClient(TelegramClient):
    """A real TelegramClient that never opens a socket: connecting is a no-op, everything else is Telethon's
    own code over :class:`FakeSender` (``is_user_authorized`` included: it asks the fake with GetState).

    A client that receives updates connects with Telethon's own ``connect()`` instead (over the fake sender):
    its update loop, catch-up and MessageBox then run exactly as against Telegram."""

    _fake_up = False

    async def connect(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        server = getattr(self._sender, "server", None)
        err = server.network_error() if server is not None else None
        if err is not None:
            raise err
        if not self._no_updates and not self._fake_up:
            self._fake_up = True
            await TelegramClient.connect(self)

    def is_connected(self) -> bool:
        return True if self._no_updates else self._fake_up

    async def _disconnect_coro(self) -> None:
        if self._fake_up:
            self._fake_up = False
            await TelegramClient._disconnect_coro(self)


def fake_client(server: FakeTelegram, session: Any = None, *, updates: bool = False) -> FakeClient:
    """A client over ``server``; ``updates``: it receives push updates and catches up at connect."""
    c = FakeClient(session if session is not None else StringSession(), 1, "0" * 32, flood_sleep_threshold=0,
                   receive_updates=updates, catch_up=updates)
    if c.session.auth_key is None:  # what a real connect leaves behind: a key, so the session can be saved
        from telethon.crypto import AuthKey

        c.session.auth_key = AuthKey(bytes(256))
        c.session.set_dc(2, "149.154.167.51", 443)
    c._sender = FakeSender(server, c._updates_queue)
    c._sender.auth_key = c.session.auth_key
    return c


def server_from_spec(spec: dict[str, Any], log_path: str | None = None) -> FakeTelegram:
    """A deterministic server from a JSON spec (for subprocesses): channel i's post n reads
    "Пост n: новости Росатома" on every 7th post, else "Пост n"."""
    server = FakeTelegram(log_path=log_path)
    server.revoked = bool(spec.get("revoked"))
    server.authorized = not spec.get("logged_out", False)
    server.delay = float(spec.get("delay", 0))
    server.unreachable = spec.get("unreachable")
    server.unreachable_while = spec.get("unreachable_while")
    for c in spec.get("channels", []):
        ch = server.add(c["id"], c.get("username"), c.get("title"), joined=c.get("joined", True),
                        private=c.get("private", False))
        for n in range(1, int(c.get("posts", 0)) + 1):
            ch.post(f"Пост {n}: новости Росатома" if n % 7 == 0 else f"Пост {n}")
    return server


def make_client(settings: Any = None) -> FakeClient:
    """The client factory a ``tgmonitor`` subprocess loads (``fake_telegram:make_client``)."""
    path = os.environ.get("FAKE_TG_SPEC")
    spec = json.load(open(path)) if path else {"channels": []}
    return fake_client(server_from_spec(spec, os.environ.get("FAKE_TG_LOG")))


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class FakeClock:
    """Wall and monotonic time that only move when a test says so."""

    def __init__(self, start: datetime = T0 + timedelta(days=30)) -> None:
        self.t = start
        self.mono = 1000.0

    def now(self) -> datetime:
        return self.t

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)
        self.mono += seconds


async def no_sleep(seconds: float) -> None:
    raise AssertionError(f"the code tried to sleep {seconds} s")


Factory = Callable[[Any], FakeClient]
