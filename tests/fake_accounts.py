"""Several fake Telegram accounts over one fake Telegram (issue 16), built on :mod:`fake_telegram` without
changing it.

:class:`FakeWorld` holds the channels once (their posts, edits, deletions). Each :class:`FakeAccount` is a
:class:`~fake_telegram.FakeTelegram` of its own — its own sender (``fake_client(account)``), request counts and
failures on cue — that sees every world channel through a view of its own: the same messages (the view
shares the world channel's message dict), but its own ``joined`` flag, its own access hash (Telegram gives
every account a different one: a hash learned by one account is ``CHANNEL_INVALID`` for another), and for a
private channel, ``CHANNEL_PRIVATE`` unless the account is a member. So Telethon's own code runs unmodified for
every account, as in fake_telegram, and each account's GetDialogs/GetPeerDialogs answer only what it joined.

Failures on cue per account: ``banned`` (every request: ``USER_DEACTIVATED_BAN``, as Telegram answers a banned
account), ``revoked`` (the session: ``AUTH_KEY_UNREGISTERED``), ``peer_flood`` (reads: ``PEER_FLOOD``),
``flood_on(name, seconds)`` (a ``FLOOD_WAIT`` on cue), ``unreachable`` (its network or proxy).

The service and the CLI get a client per account from ``client_factory = "<this module>:factory"``: it reads
``settings.telegram.account`` (set by ``monitor.config.account_settings``) and connects to that account of
:data:`WORLD`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from fake_telegram import FakeChannel, FakeClient, FakeTelegram, fake_client
from telethon import errors
from telethon.tl import functions, types

#: the world the client factory connects to (set by the test or benchmark)
WORLD: FakeWorld | None = None

_UNWRAP = ("InvokeWithoutUpdatesRequest", "InvokeWithLayerRequest", "InitConnectionRequest")


class FakeAccount(FakeTelegram):
    """One account's view of the world: its channels (joined or not, private or readable), its own user."""

    def __init__(self, world: FakeWorld, name: str, index: int) -> None:
        super().__init__()
        self.world = world
        self.name = name
        self.index = index
        self.user = types.User(id=1000 + index, is_self=True, first_name=name, access_hash=5000 + index)
        self.banned = False
        self.peer_flood = False
        self.push = False  # several accounts: polling only (no update listeners)

    def view(self, ch: FakeChannel, *, joined: bool, member: bool) -> FakeChannel:
        """The account's view of a world channel: same messages, its own hash and membership."""
        v = FakeChannel(ch.id, ch.username, ch.title, access_hash=ch.access_hash + 1_000_003 * (self.index + 1),
                        joined=joined and (member or not ch.private), private=ch.private and not member,
                        messages=ch.messages, hidden=ch.hidden, server=None)
        self.channels[ch.id] = v
        return v

    def join(self, cid: int) -> None:
        self.channels[cid].joined = True

    def leave(self, cid: int) -> None:
        self.channels[cid].joined = False

    def _handle(self, req: Any) -> Any:
        while type(req).__name__ in _UNWRAP:
            req = req.query
        name = type(req).__name__
        if self.banned:
            self.counts[name] += 1
            self.calls.append(name)
            raise errors.UserDeactivatedBanError(request=req)
        if self.peer_flood and name in ("GetHistoryRequest", "GetPeerDialogsRequest"):
            self.counts[name] += 1
            self.calls.append(name)
            raise errors.PeerFloodError(request=req)
        if isinstance(req, functions.users.GetUsersRequest) and not (self.revoked or not self.authorized):
            self.counts[name] += 1
            self.calls.append(name)
            return [self.user]
        if isinstance(req, functions.channels.JoinChannelRequest):
            self.counts[name] += 1
            self.calls.append(name)
            ch = self._channel(req.channel)
            if sum(1 for c in self.channels.values() if c.joined) >= 500:
                raise errors.ChannelsTooMuchError(request=req)
            ch.joined = True
            return types.Updates(updates=[], users=[], chats=[ch.entity()], date=None, seq=0)
        return super()._handle(req)


class FakeWorld(FakeTelegram):
    """The channels once; ``account(name)`` adds an account seeing them; posts reach every account's view."""

    def __init__(self) -> None:
        super().__init__()
        self.push = False
        self.accounts: dict[str, FakeAccount] = {}
        self.members: dict[int, set[str] | None] = {}  # channel -> accounts that joined it (None: all)

    def account(self, name: str) -> FakeAccount:
        acc = FakeAccount(self, name, len(self.accounts))
        self.accounts[name] = acc
        for ch in self.channels.values():
            who = self.members.get(ch.id)
            acc.view(ch, joined=who is None or name in who, member=who is not None and name in who)
        return acc

    def add(self, cid: int, username: str | None, title: str | None = None, *, joined: bool = True,
            private: bool = False, joined_by: Collection[str] | None = None) -> FakeChannel:
        """A channel; ``joined_by`` names the accounts that joined it (default every one, or none when
        ``joined`` is false); a ``private`` channel is readable only by those."""
        ch = super().add(cid, username, title, joined=joined, private=private)
        who = set(joined_by) if joined_by is not None else (None if joined else set())
        self.members[cid] = who
        for acc in self.accounts.values():
            acc.view(ch, joined=who is None or acc.name in who, member=who is not None and acc.name in who)
        return ch

    def published(self, ch: FakeChannel, msg: Any, *, edit: bool = False) -> None:
        """Posts live in the world channel's message dict, which every view shares: nothing to copy."""
        return None

    def requests(self) -> dict[str, int]:
        """Requests each account received (every type)."""
        return {n: sum(a.counts.values()) for n, a in self.accounts.items()}


def factory(settings: Any = None) -> FakeClient:
    """``[telegram] client_factory`` for several accounts: a client of the account the settings are for."""
    assert WORLD is not None, "set fake_accounts.WORLD first"
    name = getattr(getattr(settings, "telegram", None), "account", None)
    if name is None:
        raise RuntimeError("the single-account client was asked for while [[telegram.accounts]] is configured")
    return fake_client(WORLD.accounts[name])


def factory_spec() -> str:
    """The ``client_factory`` naming :func:`factory` under the name this module was imported as."""
    return f"{__name__}:factory"
