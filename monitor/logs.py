"""Structured logs: one line per event, ``text`` (key=value) or ``json``, never with secrets."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

_SECRET_PATTERNS = [
    re.compile(r"(?P<k>(?:api_hash|session|token|password|passwd|secret)\s*[=:]\s*)\S+", re.I),
    re.compile(r"(?P<k>[a-z][\w+.-]*://[^/\s:@]*:)[^@\s/]+(?=@)", re.I),  # user:PASSWORD@host
    re.compile(r"(?P<k>(?<![0-9])\d{6,12}:)[A-Za-z0-9_-]{30,}"),  # Telegram bot tokens (also in /bot<token>/)
    re.compile(r"(?P<k>\b1[A-Za-z0-9_-]{0,3})[A-Za-z0-9_-]{300,}={0,2}"),  # StringSession blobs
]
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Never print this exact value (API hash, session string, alert URL with a token)."""
    if value and len(value) >= 6:
        _secrets.add(value)


# http-like webhooks: the host is a real server, not a token (monitor.config.WEBHOOK_SCHEMES)
_WEBHOOK_SCHEMES = frozenset({"json", "jsons", "xml", "xmls", "form", "forms", "http", "https"})
# database and proxy URLs: only the password is secret (their host and path are what an operator debugs)
_PLAIN_SCHEMES = frozenset({"sqlite", "postgres", "postgresql", "socks4", "socks5", "socks5h"})
_MIN_PART = 8


def register_url_secrets(url: str | None) -> None:
    """Never print the secret parts of ``url``, in our lines or a library's (Apprise debug lines show
    ``https://api.telegram.org/bot<token>/sendMessage``): the password of any URL; for Apprise schemes
    whose host and path are tokens (``tgram://``, ``discord://`` …) every part of 8+ characters of the
    netloc, path and query; for webhooks the path parts and query values of 8+ characters."""
    if not url or "://" not in url:
        return
    try:
        parts = urlsplit(url.strip())
        password = parts.password
    except ValueError:
        register_secret(url)
        return
    scheme = parts.scheme.lower().split("+", 1)[0]
    for pw in (password, unquote(password or "")):
        register_secret(pw)  # a shorter one is still masked inside a URL (user:PASSWORD@host)
    if scheme in _PLAIN_SCHEMES:
        return
    pieces: list[str] = []
    if scheme not in _WEBHOOK_SCHEMES:
        netloc = parts.netloc
        pieces += [netloc, netloc.rsplit("@", 1)[-1], *re.split(r"[:@]", netloc)]
    pieces += re.split(r"/+", parts.path)
    for _k, v in parse_qsl(parts.query, keep_blank_values=True):
        pieces += [v, *v.split(",")]  # values only: the keys are Apprise's option names
    if scheme not in _WEBHOOK_SCHEMES:
        pieces += [p for p in parts.query.split("&") if "=" not in p]
    for piece in pieces:
        for form in (piece, unquote(piece)):
            if len(form) >= _MIN_PART:
                _secrets.add(form)


def redact(text: str) -> str:
    """Mask registered secrets and anything that looks like one."""
    for p in _SECRET_PATTERNS:  # first: a registered part inside a token must not hide it from these
        text = p.sub(lambda mm: mm.group("k") + "***", text)
    for s in sorted(_secrets, key=len, reverse=True):
        if s in text:
            text = text.replace(s, "***")
    return text


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        fields = getattr(record, "fields", {})
        extra = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
        line = f"{ts} {record.levelname.lower():7} {record.name.removeprefix('monitor.')}: {record.getMessage()}"
        if extra:
            line += " " + extra
        if record.exc_info and record.levelno >= logging.ERROR and logging.getLogger().level <= logging.DEBUG:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        doc.update(getattr(record, "fields", {}))
        if record.exc_info:
            doc["error"] = repr(record.exc_info[1])
        return redact(json.dumps(doc, ensure_ascii=False, default=str))


def _fmt(v: Any) -> str:
    s = str(v)
    return json.dumps(s, ensure_ascii=False) if (" " in s or not s) else s


def setup_logging(level: str = "info", fmt: str = "text", *, verbose: int = 0) -> None:
    """Configure the root logger once per process (stderr; journald reads it)."""
    lvl = logging.DEBUG if verbose else getattr(logging, level.upper(), logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(lvl)
    for noisy in ("telethon", "apscheduler", "httpx", "httpcore", "aiosqlite", "asyncio", "alembic"):
        logging.getLogger(noisy).setLevel(max(lvl, logging.WARNING))


def event(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    """Log one event with structured fields: ``event(log, logging.INFO, "poll done", channel="@x")``."""
    logger.log(level, message, extra={"fields": fields})
