"""The ``[[channels]]`` reader: one :class:`~monitor.config.settings.ChannelConfig` per table."""

from __future__ import annotations

from typing import Any

from monitor.config.errors import Checker
from monitor.config.errors import interval as interval_check
from monitor.config.settings import ChannelConfig
from monitor.config.values import INVITE_LINK, normalise_channel_id, parse_channel_ref

CHANNEL_KEYS = {
    "username": 'username = "@rian_ru"', "id": "id = 1234567890", "source": 'source = "web"',
    "interval": "interval = 300", "enabled": "enabled = false", "alert_history": "alert_history = true",
}


def read_channels(chk: Checker, raw: Any) -> tuple[ChannelConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        chk.fail("channels", "must be an array of tables", '[[channels]]\nusername = "@rian_ru"')
        return ()
    out: list[ChannelConfig] = []
    seen: dict[str, str] = {}
    for i, c in enumerate(raw):
        p = f"channels[{i}]"
        c = chk.table(c, p, CHANNEL_KEYS)
        if not isinstance(c, dict):
            continue
        username: str | None = None
        cid: int | None = None
        u = chk.get(c, "username", f"{p}.username", str, None, CHANNEL_KEYS["username"])
        if u is not None:
            try:
                username, cid = parse_channel_ref(u)
            except ValueError as exc:
                chk.fail(f"{p}.username", str(exc), "id = 1234567890 in place of username" if str(exc) == INVITE_LINK
                         else 'username = "@rian_ru" or "https://t.me/rian_ru"')
                u = None
        raw_id = chk.get(c, "id", f"{p}.id", int, None, CHANNEL_KEYS["id"])
        if raw_id is not None:
            cid = normalise_channel_id(raw_id)
        if "username" not in c and "id" not in c:
            chk.fail(p, "needs a username or an id", 'username = "@rian_ru"')
        source = chk.get(c, "source", f"{p}.source", str, "telethon", 'source = "web"',
                         lambda v: None if v in ("telethon", "web") else f"must be telethon or web, not {v!r}")
        interval = chk.get(c, "interval", f"{p}.interval", int, None, "interval = 300", interval_check)
        if source == "web" and username is None and (u is not None or raw_id is not None):
            chk.fail(f"{p}.username", "the web source needs the channel's public username",
                     'username = "rian_ru"')
        ch = ChannelConfig(
            username=username, id=cid, source=source, interval=interval,
            enabled=chk.get(c, "enabled", f"{p}.enabled", bool, True, "enabled = false"),
            alert_history=chk.get(c, "alert_history", f"{p}.alert_history", bool, False, "alert_history = true"),
        )
        if username is None and cid is None:
            continue
        if ch.key in seen:
            chk.fail(p, f"{ch.key} is configured twice (also {seen[ch.key]})", "remove one of them")
            continue
        seen[ch.key] = p
        out.append(ch)
    return tuple(out)
