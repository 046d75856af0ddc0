"""``tgmonitor join``: join public channels with the account that has room, slowly (issue 16, off by default:
nothing joins anything unless this command is run).

Joining is what Telegram watches most closely after resolving names: accounts that join dozens of channels in
a row get ``FLOOD_WAIT`` of hours, or are limited. So the command joins one channel at a time, waits
``delay`` seconds between two joins (default 120 s, with ±25 % jitter: about 30 an hour), joins at most
``per_account`` channels per account per run (default 20), and never lets an account hold more than
``MAX_JOINED`` (Telegram's cap of 500 channels; ``CHANNELS_TOO_MUCH`` past it). A flood wait stops that
account for this run and says when to try again. An account that has joined a channel already is left
alone; otherwise the account with the most room joins it.

Joining makes a channel cost a share of one ``GetPeerDialogs`` a cycle instead of a ``GetHistory`` each, and
lets push updates reach it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from telethon import errors
from telethon.tl import functions, types

from monitor.accounts import registry
from monitor.accounts.registry import Fact
from monitor.config import Settings, account_settings, parse_channel_ref
from monitor.logs import event
from monitor.sources.telethon import (
    NETWORK_ERRORS,
    ClientSetupError,
    TelegramUnreachable,
    make_client,
    network_reason,
)

if TYPE_CHECKING:
    from telethon import TelegramClient

    from monitor.runtime import Runtime

log = logging.getLogger("monitor.jobs.join")

#: Telegram lets an account be in at most 500 channels (and 500 supergroups)
MAX_JOINED = 500
#: seconds between two joins by default (about 30 an hour), and the least that is not warned about
DEFAULT_DELAY, CAREFUL_DELAY = 120.0, 30.0
#: joins per account per run by default
DEFAULT_PER_ACCOUNT = 20


class JoinError(Exception):
    """The command cannot run (an unknown account, no usable session): one line, exit 2 or 1."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class Member:
    """One account as the join sees it: its client, the channels it is in, what it joined this run."""

    name: str | None  # None: the single [telegram] account
    client: TelegramClient
    channels: set[int] = field(default_factory=set)  # channel ids it has joined
    usernames: set[str] = field(default_factory=set)
    joined_now: int = 0
    stopped: str | None = None  # why it joins no more in this run

    @property
    def label(self) -> str:
        return self.name or "the account"

    def full(self, per_account: int) -> str:
        """Why it has no room (when it has none)."""
        if len(self.channels) >= MAX_JOINED:
            return f"in {len(self.channels)} channels, Telegram's cap is {MAX_JOINED}"
        return f"joined {self.joined_now} in this run (--max {per_account})"

    def room(self, per_account: int) -> int:
        if self.stopped:
            return 0
        return min(MAX_JOINED - len(self.channels), per_account - self.joined_now)


@dataclass(frozen=True, slots=True)
class JoinResult:
    """What happened to one channel."""

    channel: str
    account: str | None
    outcome: str  # joined | already | failed | skipped
    detail: str = ""


async def _dialog_channels(client: TelegramClient) -> tuple[set[int], set[str]]:
    """The channels (and supergroups: they count towards the same cap) the account is in."""
    ids: set[int] = set()
    names: set[str] = set()
    async for d in client.iter_dialogs(ignore_migrated=True):
        ent = d.entity
        if isinstance(ent, types.Channel) and not ent.left:
            ids.add(ent.id)
            if ent.username:
                names.add(ent.username.lower())
    return ids, names


async def _connect(settings: Settings, name: str | None) -> Member:
    try:
        client = make_client(account_settings(settings, name) if name else settings)
    except ClientSetupError as exc:
        raise JoinError(f"account {name}: {exc}" if name else str(exc), 2) from None
    try:
        if not client.is_connected():
            await client.connect()
        if not await client.is_user_authorized():
            who, hint = (f"account {name}", f"tgmonitor login --account {name}") if name else \
                ("the Telegram account", "tgmonitor login")
            raise JoinError(f"{who} is not logged in: run `{hint}`", 78)
        ids, names = await _dialog_channels(client)
    except NETWORK_ERRORS as exc:
        with contextlib.suppress(Exception):
            await client.disconnect()
        raise JoinError(str(TelegramUnreachable(network_reason(exc)))) from None
    except BaseException:
        with contextlib.suppress(Exception):
            await client.disconnect()
        raise
    return Member(name, client, ids, names)


async def join_channels(
    rt: Runtime, refs: Sequence[str], *, account: str | None = None, delay: float = DEFAULT_DELAY,
    per_account: int = DEFAULT_PER_ACCOUNT, report: Callable[[JoinResult], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> list[JoinResult]:
    """Join the public channels ``refs`` (``@name``, ``name`` or a t.me link) as described in the module
    docstring; ``account`` picks the account (any letter case), else the one with most room. Each result is
    also passed to ``report`` as it happens."""
    s = rt.settings
    names: list[str | None]
    if account is not None:
        acc = next((a for a in s.telegram.accounts if a.name.lower() == account.lower()), None)
        if acc is None:
            known = ", ".join(a.name for a in s.telegram.accounts) or "none: [[telegram.accounts]] is not configured"
            raise JoinError(f"--account {account}: no such account (configured: {known})", 2)
        names = [acc.name]
    else:
        names = [a.name for a in s.telegram.accounts] or [None]
    wanted: list[str] = []
    out: list[JoinResult] = []

    def done(r: JoinResult) -> None:
        out.append(r)
        if report is not None:
            report(r)

    for ref in refs:
        try:
            username, cid = parse_channel_ref(ref)
        except ValueError as exc:
            done(JoinResult(ref, None, "failed", str(exc)))
            continue
        if username is None:
            done(JoinResult(ref, None, "failed", f"{cid} is a numeric id: only public channels can be joined, "
                                                 "by their @username"))
            continue
        wanted.append(username)
    if not wanted:
        return out
    members: list[Member] = []
    try:
        for n in names:
            members.append(await _connect(s, n))
        first = True
        for username in wanted:
            have = next((mb for mb in members if username in mb.usernames), None)
            if have is not None:
                done(JoinResult(f"@{username}", have.name, "already", f"{have.label} is in it already"))
                continue
            ready = [mb for mb in members if mb.room(per_account) > 0]
            if not ready:
                why = "; ".join(f"{mb.label}: {mb.stopped or mb.full(per_account)}" for mb in members)
                done(JoinResult(f"@{username}", None, "skipped", f"no account may join more now ({why})"))
                continue
            mb = max(ready, key=lambda x: (MAX_JOINED - len(x.channels), -(names.index(x.name))))
            if not first and delay > 0:
                await sleep(delay * random.uniform(0.75, 1.25))  # a person does not join on a timer
            first = False
            done(await _join_one(rt, mb, username))
    finally:
        for mb in members:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(mb.client.disconnect(), 5.0)
    return out


async def _join_one(rt: Runtime, mb: Member, username: str) -> JoinResult:
    label = f"@{username}"
    try:
        r = await mb.client(functions.contacts.ResolveUsernameRequest(username=username))
        chat = next((c for c in r.chats if isinstance(c, types.Channel)), None)
        if chat is None:
            return JoinResult(label, mb.name, "failed", "not a channel")
        if chat.id in mb.channels:
            mb.usernames.add(username)
            return JoinResult(label, mb.name, "already", f"{mb.label} is in it already")
        await mb.client(functions.channels.JoinChannelRequest(
            channel=types.InputChannel(channel_id=chat.id, access_hash=chat.access_hash or 0)))
    except errors.FloodWaitError as exc:
        mb.stopped = f"Telegram asked to wait {exc.seconds} s; run the command again later"
        return JoinResult(label, mb.name, "skipped", mb.stopped)
    except errors.ChannelsTooMuchError:
        mb.stopped = f"in {MAX_JOINED} channels already (Telegram's cap)"
        mb.channels |= set(range(-MAX_JOINED, 0))  # no room left, whatever the dialogs said
        return JoinResult(label, mb.name, "skipped", mb.stopped)
    except (errors.UsernameNotOccupiedError, errors.UsernameInvalidError):
        return JoinResult(label, mb.name, "failed", "no channel has this username")
    except errors.ChannelPrivateError:
        return JoinResult(label, mb.name, "failed", "private: it needs an invite link, which this command "
                                                    "does not use")
    except (errors.InviteRequestSentError, errors.ChannelInvalidError) as exc:
        return JoinResult(label, mb.name, "failed", f"Telegram refused it ({type(exc).__name__})")
    except errors.RPCError as exc:
        if exc.message in ("PEER_FLOOD", "USER_RESTRICTED"):
            mb.stopped = f"Telegram limits this account ({exc.message})"
            return JoinResult(label, mb.name, "skipped", mb.stopped)
        return JoinResult(label, mb.name, "failed", f"Telegram error {exc.message}")
    mb.channels.add(chat.id)
    mb.usernames.add(username)
    mb.joined_now += 1
    event(log, logging.INFO, "joined", channel=label, account=mb.label, channels=len(mb.channels))
    await _remember(rt, mb, chat)
    return JoinResult(label, mb.name, "joined", f"{mb.label} is in {len(mb.channels)} of {MAX_JOINED} channels")


async def _remember(rt: Runtime, mb: Member, chat: Any) -> None:
    """A configured channel joined: the plan knows it at once (the account's next dialog read would too)."""
    if mb.name is None:
        return
    row = await rt.store.find_channel(username=(chat.username or "").lower() or None, tg_id=chat.id)
    if row is None:
        return
    try:
        await registry.learn(rt.engine, mb.name, {row.id: Fact(joined=True, access_hash=chat.access_hash)})
    except Exception as exc:  # bookkeeping only: the join itself happened
        event(log, logging.WARNING, "join not recorded", channel=chat.id, error=str(exc))
