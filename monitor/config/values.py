"""Parsers of single values found in the configuration: channel references, database and alert URLs,
quiet hours. Pure functions; each raises ValueError (or returns a safe form) and knows nothing of files.
"""

from __future__ import annotations

import re

_USERNAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{3,31}$")
TME_LINK = re.compile(r"^(?:https?://)?(?:www\.)?(?:t\.me|telegram\.me|telegram\.dog)/(?P<rest>.*)$", re.I)


INVITE_LINK = ("a private invite link (t.me/+… or t.me/joinchat/…) cannot be resolved by name; "
               "use the channel's numeric id instead")


def parse_channel_ref(value: str) -> tuple[str | None, int | None]:
    """Turn ``name``, ``@name``, ``https://t.me/name``, ``t.me/name/123``, ``t.me/s/name``,
    ``t.me/c/123/4`` or a numeric id into ``(username, id)``; raise ValueError if it names nothing."""
    text = value.strip()
    if re.fullmatch(r"-?\d+", text):
        return None, normalise_channel_id(int(text))
    m = TME_LINK.match(text)
    if m:
        parts = [p for p in m.group("rest").split("?")[0].split("/") if p]
        if parts and (parts[0].startswith("+") or parts[0] == "joinchat"):
            raise ValueError(INVITE_LINK)
        if parts and parts[0] == "s":
            parts = parts[1:]
        if parts and parts[0] == "c":
            if len(parts) >= 2 and parts[1].isdigit():
                return None, int(parts[1])
            raise ValueError("a t.me/c/ link needs the channel's number, e.g. https://t.me/c/1234567890")
        if not parts:
            raise ValueError("the link has no channel name after t.me/")
        text = parts[0]
    text = text.removeprefix("@")
    if not _USERNAME.match(text):
        raise ValueError(f"{value!r} is not a channel username (5-32 letters, digits or _)")
    return text.lower(), None


def normalise_channel_id(raw: int) -> int:
    """Bot-API style ids (-100XXXXXXXXXX) and bare ids both become the bare channel id."""
    if raw < 0:
        s = str(-raw)
        return int(s[3:]) if s.startswith("100") and len(s) > 3 else -raw
    return raw


def to_async_url(url: str) -> str:
    """Map plain ``sqlite:///`` and ``postgresql://`` URLs to the asyncio drivers we ship."""
    if url.startswith("sqlite:"):
        return "sqlite+aiosqlite:" + url[len("sqlite:") :]
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def port_problem(url: str) -> str | None:
    """What is wrong with the port of ``scheme://[user[:pass]@]host[:port]/…``, or None (no port is fine)."""
    from urllib.parse import urlsplit

    netloc = urlsplit(url.strip()).netloc.rsplit("@", 1)[-1]
    m = re.fullmatch(r"(?:\[[^\]]*\]|[^:]*)(?::(?P<port>.*))?", netloc)
    port = m.group("port") if m else None
    if port is None or port == "":
        return None
    if not port.isdigit():
        return f"the port {port!r} is not a number"
    if not 1 <= int(port) <= 65535:
        return f"the port {port} is not between 1 and 65535"
    return None


WEBHOOK_SCHEMES = frozenset({"json", "jsons", "xml", "xmls", "form", "forms", "http", "https"})


def redact_url(url: str) -> str:
    """A URL fit for logs: ``scheme://host[:port]/***`` for http-like webhooks, ``scheme://***`` otherwise.

    In most Apprise schemes the "host" is itself a secret (``tgram://BOT_TOKEN/CHAT``), so only the
    webhook schemes, whose host is a real server, keep it; userinfo, path and query never show."""
    m = re.match(r"^([a-zA-Z][\w+.-]*)://(.*)$", url.strip(), re.S)
    if not m:
        return "***"
    scheme, rest = m.groups()
    if scheme.lower() not in WEBHOOK_SCHEMES:
        return f"{scheme}://***"
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    host = netloc.rsplit("@", 1)[-1]
    return f"{scheme}://{host}/***" if rest != netloc or "@" in netloc else f"{scheme}://{host}"

_QUIET = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")


def parse_quiet_hours(text: str) -> tuple[int, int]:
    """``"23:00-07:00"`` → (1380, 420) minutes after midnight; ValueError when malformed."""
    m = _QUIET.match(text.strip())
    if not m:
        raise ValueError(text)
    h1, m1, h2, m2 = (int(x) for x in m.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ValueError(text)
    return h1 * 60 + m1, h2 * 60 + m2


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8080`` for IPv6) as ``(host, port)``; raise ValueError saying what is wrong."""
    m = re.fullmatch(r"\[(?P<v6>[0-9A-Fa-f:.]+)\]:(?P<p6>\d+)|(?P<host>[\w.\-]+):(?P<port>\d+)", value.strip())
    if not m:
        raise ValueError(f"{value!r} is not host:port")
    host = m.group("v6") or m.group("host")
    port = int(m.group("p6") or m.group("port"))
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is not between 1 and 65535")
    return host, port


def is_loopback(host: str) -> bool:
    """Whether a listen host is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other name may resolve to a public address
