"""Which account reads which Telethon channel: pure, deterministic, no I/O.

Rules, in this order:

1. An account that cannot read a channel (``CHANNEL_PRIVATE`` and the like, recorded per account) never gets
   it while another usable account might read it. A private channel readable by one account stays with it.
2. An account that has joined the channel is preferred: a joined channel costs a hundredth of one
   ``messages.GetPeerDialogs`` a cycle (plus a ``GetHistory`` when it posted), a channel not joined one
   ``GetHistory`` every cycle. Then an account known to read it, then one that has not tried.
3. No account is given more than its budget (``requests_per_minute`` less headroom for re-reads and
   resolutions) while another candidate has room; when none has, the one least over its budget takes it (it
   is polled slower, never dropped), and the account is reported over budget.
4. Among equals the choice is rendezvous hashing (highest ``blake2b(channel, account)``), so the result does
   not depend on the order of the input, every process computes the same one, and when an account leaves
   only its channels move — and move back when it returns (a recovered account gets exactly what it had).

The most constrained channels are placed first (fewest candidates), so a private channel's only reader is
never already full of channels others could have taken.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

#: Requests a poll of a joined channel costs on average: its share of one GetPeerDialogs per 100 channels, plus
#: a GetHistory now and then when it posted, plus its share of re-reads.
JOINED_COST = 0.05
#: Requests a poll of a channel the account has not joined costs: one GetHistory, every time.
OTHER_COST = 1.0
#: Share of an account's requests_per_minute that polls may plan for (the rest: re-reads, resolutions, backfill).
HEADROOM = 0.8

JOINED, READABLE, UNKNOWN, UNREADABLE = 3, 2, 1, 0


@dataclass(frozen=True, slots=True)
class AccountSlot:
    """An account that may read channels now, and its request budget (requests per minute)."""

    name: str
    requests_per_minute: float

    @property
    def capacity(self) -> float:
        return self.requests_per_minute * HEADROOM


@dataclass(frozen=True, slots=True)
class ChannelNeed:
    """One channel to place: its row id, poll interval (seconds) and what the accounts know of it."""

    id: int
    interval: float = 300.0
    joined: frozenset[str] = frozenset()  # accounts that have joined it (they can read it)
    readable: frozenset[str] = frozenset()  # accounts that read it without having joined it
    unreadable: frozenset[str] = frozenset()  # accounts Telegram refused it to

    def rank(self, account: str) -> int:
        """How well ``account`` reads this channel (JOINED > READABLE > UNKNOWN > UNREADABLE)."""
        if account in self.joined:
            return JOINED
        if account in self.unreadable:
            return UNREADABLE
        if account in self.readable:
            return READABLE
        return UNKNOWN

    def cost(self, account: str) -> float:
        """Requests per minute this channel costs ``account``."""
        per_poll = JOINED_COST if account in self.joined else OTHER_COST
        return per_poll * 60.0 / max(1.0, self.interval)


@dataclass(slots=True)
class Assignment:
    """The outcome: channel id -> account name (None: no usable account at all), the planned load of each
    account (requests per minute) and the accounts planned over their budget."""

    by_channel: dict[int, str | None] = field(default_factory=dict)
    load: dict[str, float] = field(default_factory=dict)
    over_budget: set[str] = field(default_factory=set)

    def channels_of(self, account: str) -> list[int]:
        """The channel ids given to ``account``, ascending."""
        return sorted(c for c, a in self.by_channel.items() if a == account)

    def counts(self) -> dict[str, int]:
        """Channels per account."""
        out = {a: 0 for a in self.load}
        for a in self.by_channel.values():
            if a is not None:
                out[a] = out.get(a, 0) + 1
        return out


def weight(channel_id: int, account: str) -> int:
    """The rendezvous-hashing weight of (channel, account): stable across processes and Python runs."""
    h = hashlib.blake2b(f"{channel_id}\x00{account}".encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big")


def candidates(need: ChannelNeed, accounts: Iterable[str]) -> list[str]:
    """The accounts that may be given the channel: every one not known unable to read it; when all are (a
    channel no account can read now), all of them, so that it is still tried — and reported unavailable —
    by someone, and found again when an account is let in."""
    names = list(accounts)
    able = [a for a in names if need.rank(a) > UNREADABLE]
    return able or names


def assign(channels: Iterable[ChannelNeed], accounts: Iterable[AccountSlot]) -> Assignment:
    """Place every channel on one account (see the module docstring for the rules). Deterministic: the same
    input, in any order, gives the same output."""
    slots = {a.name: a for a in sorted(accounts, key=lambda a: a.name)}
    out = Assignment(load={n: 0.0 for n in slots})
    needs = sorted(channels, key=lambda c: c.id)
    if not slots:
        out.by_channel = {c.id: None for c in needs}
        return out

    def constraint(c: ChannelNeed) -> tuple[int, int, int]:
        cands = candidates(c, slots)
        best = max(c.rank(a) for a in cands)
        return len([a for a in cands if c.rank(a) == best]), len(cands), c.id

    for c in sorted(needs, key=constraint):
        cands = candidates(c, slots)

        def fits(a: str, c: ChannelNeed = c) -> bool:
            return out.load[a] + c.cost(a) <= slots[a].capacity

        roomy = [a for a in cands if fits(a)]
        if roomy:
            chosen = max(roomy, key=lambda a: (c.rank(a), weight(c.id, a)))
        else:
            # every candidate is full: the best reader that ends least over its budget
            best = max(c.rank(a) for a in cands)
            chosen = min((a for a in cands if c.rank(a) == best),
                         key=lambda a: ((out.load[a] + c.cost(a)) / max(slots[a].capacity, 1e-9),
                                        -weight(c.id, a)))
            out.over_budget.add(chosen)
        out.by_channel[c.id] = chosen
        out.load[chosen] += c.cost(chosen)
    return out


def needs_from(intervals: Mapping[int, float], knowledge: Mapping[int, Mapping[str, tuple[bool, bool | None]]]
               ) -> list[ChannelNeed]:
    """Build the input from channel intervals and per-account knowledge ``{channel: {account: (joined,
    readable)}}`` (readable None: not tried)."""
    out = []
    for cid, iv in intervals.items():
        known = knowledge.get(cid, {})
        out.append(ChannelNeed(
            id=cid, interval=iv,
            joined=frozenset(a for a, (j, _r) in known.items() if j),
            readable=frozenset(a for a, (j, r) in known.items() if not j and r),
            unreadable=frozenset(a for a, (j, r) in known.items() if not j and r is False)))
    return out
