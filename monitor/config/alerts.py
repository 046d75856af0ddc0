"""The ``[[alerts]]`` reader: Apprise destinations, their routing (checked against the configured entities
and channels), quiet hours and templates. Alert URLs are registered as secrets so logs never show them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from monitor.config.errors import Checker
from monitor.config.settings import AlertDestination, ChannelConfig
from monitor.config.values import TME_LINK, parse_channel_ref, parse_quiet_hours
from monitor.logs import register_url_secrets
from monitor.matching import EntitySpec

ALERT_KEYS = {
    "name": 'name = "team-chat"', "url": 'url = "tgram://BOT_TOKEN/CHAT_ID" or "env:TG_ALERT_URL"',
    "format": 'format = "html"', "entities": 'entities = ["Росатом"]', "channels": 'channels = ["@rian_ru"]',
    "quiet_hours": 'quiet_hours = "23:00-07:00"', "operator": "operator = true",
    "title_template": 'title_template = "{entities} — {channel}"',
    "body_template": 'body_template = "{snippet}\\n{link}"',
}
_PLACEHOLDERS = {"entities", "channel", "date", "snippet", "link", "alert_id"}


def _close(word: str, choices: Mapping[str, str]) -> str:
    """`` (did you mean 'X'?)`` for the nearest of ``choices`` (folded form -> shown form), or ``""``."""
    import difflib

    m = difflib.get_close_matches(word.casefold().strip(), list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{choices[m[0]]}'?" if m else ""


def _check_routes(chk: Checker, p: str, wanted_entities: Sequence[str], wanted_channels: Sequence[str],
                  entities: Sequence[EntitySpec], channels: Sequence[ChannelConfig]) -> None:
    """Every name in a destination's ``entities`` / ``channels`` must name something configured: an
    unknown one would silently route nothing there (the same matching rules as the outbox routing)."""
    known: dict[str, str] = {}
    for spec in entities:
        for n in (spec.name, spec.id, *spec.aliases):
            if n:
                known.setdefault(n.casefold().strip(), n)
    for ref in wanted_entities:
        if ref.casefold().strip() not in known:
            names = ", ".join(f'"{x.name}"' for x in entities[:5]) or "none"
            chk.fail(f"{p}.entities", f"{ref!r} is not a configured entity (name, id or alias){_close(ref, known)}; "
                     f"configured: {names}{' …' if len(entities) > 5 else ''}",
                     f'entities = ["{entities[0].name}"]' if entities else 'a [[entities]] table with name = "..."')
    usernames = {c.username for c in channels if c.username}
    ids = {c.id for c in channels if c.id is not None}
    shown = {u: f"@{u}" for u in usernames} | {str(i): str(i) for i in ids}
    for ref in wanted_channels:
        text = ref.strip()
        try:
            u, i = parse_channel_ref(text)
        except ValueError as exc:
            if text.startswith("@") or TME_LINK.match(text) or re.fullmatch(r"-?\d+", text):
                chk.fail(f"{p}.channels", f"{ref!r}: {exc}", 'channels = ["@rian_ru"]')
            continue  # a channel title ("РИА Новости") is accepted as is: titles come from Telegram
        if (u is not None and u in usernames) or (i is not None and i in ids):
            continue
        key = u if u is not None else str(i)
        hint = _close(key, shown)
        if i is not None and not hint and any(c.id is None for c in channels):
            hint = "; a channel configured by username only is named here by its @username"
        chk.fail(f"{p}.channels", f"{ref!r} is not a configured channel{hint}",
                 f'channels = ["{channels[0].key}"]' if channels else '[[channels]] username = "@rian_ru"')
def read_alerts(chk: Checker, raw: Any, env: Mapping[str, str], entities: Sequence[EntitySpec] = (),
            channels: Sequence[ChannelConfig] = ()) -> tuple[AlertDestination, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        chk.fail("alerts", "must be an array of tables", '[[alerts]]\nname = "me"\nurl = "console://"')
        return ()
    out: list[AlertDestination] = []
    names: set[str] = set()
    for i, a in enumerate(raw):
        p = f"alerts[{i}]"
        if not isinstance(a, dict):
            chk.table(a, p, ALERT_KEYS)
            continue
        a = chk.table(a, p, ALERT_KEYS)
        name = chk.get(a, "name", f"{p}.name", str, None, ALERT_KEYS["name"])
        url = chk.get(a, "url", f"{p}.url", str, None, ALERT_KEYS["url"])
        if not name:
            chk.fail(f"{p}.name", "is required", ALERT_KEYS["name"])
        elif name in names:
            chk.fail(f"{p}.name", f"'{name}' is used twice; names must be unique", f'name = "{name}-2"')
        if not url:
            chk.fail(f"{p}.url", "is required", ALERT_KEYS["url"])
        elif url.startswith("env:"):
            var = url[4:]
            if not env.get(var):
                chk.fail(f"{p}.url", f"the environment variable {var} is not set (in the environment or .env)",
                         f"{var}=tgram://BOT_TOKEN/CHAT_ID in .env")
                url = None
            else:
                url = env[var]
        elif "://" not in url:
            chk.fail(f"{p}.url", "must be an Apprise URL", ALERT_KEYS["url"])
        fmt = chk.get(a, "format", f"{p}.format", str, "text", 'format = "html"',
                      lambda v: None if v in ("text", "markdown", "html")
                      else f"must be text, markdown or html, not {v!r}")
        quiet: tuple[int, int] | None = None
        qh = chk.get(a, "quiet_hours", f"{p}.quiet_hours", str, None, ALERT_KEYS["quiet_hours"])
        if qh is not None:
            try:
                quiet = parse_quiet_hours(qh)
            except ValueError:
                chk.fail(f"{p}.quiet_hours", f"{qh!r} is not HH:MM-HH:MM", ALERT_KEYS["quiet_hours"])
        templates: dict[str, str | None] = {}
        for t in ("title_template", "body_template"):
            v = chk.get(a, t, f"{p}.{t}", str, None, ALERT_KEYS[t])
            if v is not None:
                unknown = set(re.findall(r"\{(\w+)\}", v)) - _PLACEHOLDERS
                if unknown:
                    chk.fail(f"{p}.{t}", f"unknown placeholder {{{sorted(unknown)[0]}}}; known: "
                             + " ".join("{" + x + "}" for x in sorted(_PLACEHOLDERS)), ALERT_KEYS[t])
                    v = None
            templates[t] = v
        want_entities = chk.str_list(a, "entities", f"{p}.entities", ALERT_KEYS["entities"])
        want_channels = chk.str_list(a, "channels", f"{p}.channels", ALERT_KEYS["channels"])
        _check_routes(chk, p, want_entities, want_channels, entities, channels)
        if not name or not url:
            continue
        register_url_secrets(url)
        names.add(name)
        out.append(AlertDestination(
            name=name, url=url, format=fmt,
            entities=want_entities,
            channels=want_channels,
            quiet_hours=quiet,
            operator=chk.get(a, "operator", f"{p}.operator", bool, False, "operator = true"),
            title_template=templates["title_template"], body_template=templates["body_template"],
        ))
    return tuple(out)
