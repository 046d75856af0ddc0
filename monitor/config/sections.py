"""Readers of the single ``[table]`` sections: one function per table, each checks its keys (unknown keys are
errors) and returns its settings value. A new key of an existing table goes into that table's function here
(allowed keys with an example, and a ``chk.get``) and into its dataclass in :mod:`monitor.config.settings`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from monitor.config.accounts import read_accounts
from monitor.config.env import credential
from monitor.config.errors import MAX_INTERVAL, Checker, fraction, hours, interval, positive
from monitor.config.settings import (
    DashboardSettings,
    DeliverySettings,
    LoggingSettings,
    MatchingSettings,
    MetricsSettings,
    ScheduleSettings,
    TelegramSettings,
    WebSourceSettings,
)
from monitor.config.values import is_loopback, parse_listen, port_problem
from monitor.logs import register_secret, register_url_secrets
from monitor.matching import LANGUAGES

SQLITE_NAME = "tgmonitor.db"
_SECRET_KEYS = frozenset({"api_id", "api_hash", "session"})


def read_database(chk: Checker, data: Mapping[str, Any], env: Mapping[str, str], data_dir: Path) -> str:
    """``[database] url`` (``TGMONITOR_DATABASE_URL`` wins), as written: the caller makes it async."""
    db = chk.table(data.get("database"), "database", {"url": 'url = "sqlite:///data/tgmonitor.db"'})
    url = chk.get(db, "url", "database.url", str, None, 'url = "postgresql://user@127.0.0.1/tgmonitor"')
    if env.get("TGMONITOR_DATABASE_URL"):
        url = env["TGMONITOR_DATABASE_URL"]
    if url is None:
        url = f"sqlite:///{data_dir / SQLITE_NAME}"
    elif not re.match(r"^(sqlite|postgres|postgresql)(\+\w+)?://", url):
        chk.fail("database.url", "must be an sqlite:/// or postgresql:// URL",
                 'url = "sqlite:////var/lib/tgmonitor/tgmonitor.db"')
    else:
        register_url_secrets(url)
        if not url.startswith("sqlite") and (bad := port_problem(url)):
            where = "TGMONITOR_DATABASE_URL" if env.get("TGMONITOR_DATABASE_URL") else "database.url"
            chk.fail(where, bad, 'url = "postgresql://tgmonitor@127.0.0.1:5432/tgmonitor"')
    return str(url)


def read_telegram(chk: Checker, data: Mapping[str, Any], env: Mapping[str, str], data_dir: Path) -> TelegramSettings:
    """``[telegram]``; the API id, hash and session come only from the environment, ``.env`` or credentials."""
    tg = chk.table(data.get("telegram"), "telegram", {
        "client_factory": 'client_factory = "mypackage.clients:make_client"',
        "proxy": 'proxy = "socks5://user:pass@127.0.0.1:1080"',
        "session_file": 'session_file = "/var/lib/tgmonitor/tgmonitor.session"',
        "push": "push = true",
        "accounts": '[[telegram.accounts]] name = "main"',
        "failover_flood_wait": "failover_flood_wait = 300",
    }, reported=_SECRET_KEYS)
    for secret in sorted(_SECRET_KEYS):
        if secret in tg:
            chk.fail(f"telegram.{secret}", "secrets are read only from the environment or .env",
                     f"TG_{secret.upper()}=... in .env")
    api_id_raw = env.get("TG_API_ID")
    api_id: int | None = None
    if api_id_raw:
        if api_id_raw.strip().isdigit():
            api_id = int(api_id_raw)
        else:
            chk.problems.append("environment: TG_API_ID must be a number (for example: TG_API_ID=1234567)")
    session_file = chk.get(tg, "session_file", "telegram.session_file", str, None, "session_file = \"x\"")
    proxy = chk.get(tg, "proxy", "telegram.proxy", str, None, 'proxy = "socks5://127.0.0.1:1080"')
    if proxy is not None and not re.match(r"^(socks5|socks4|http|mtproxy)://", proxy):
        chk.fail("telegram.proxy", "must start with socks5://, socks4://, http:// or mtproxy://",
                 'proxy = "socks5://user:pass@127.0.0.1:1080"')
    elif proxy is not None:
        register_url_secrets(proxy)
        if bad := port_problem(proxy):
            chk.fail("telegram.proxy", bad, 'proxy = "socks5://user:pass@127.0.0.1:1080"')
    factory = env.get("TGMONITOR_CLIENT_FACTORY") or chk.get(
        tg, "client_factory", "telegram.client_factory", str, None, 'client_factory = "pkg.mod:func"')
    if factory is not None and not re.match(r"^[\w.]+:\w+$", factory):
        chk.fail("telegram.client_factory", "must be module:function", 'client_factory = "pkg.mod:make"')
    return TelegramSettings(
        api_id=api_id, api_hash=env.get("TG_API_HASH") or credential(env, "tg_api_hash"),
        session=env.get("TG_SESSION") or credential(env, "tg_session"),
        session_file=Path(session_file).expanduser() if session_file else data_dir / "tgmonitor.session",
        client_factory=factory, proxy=proxy,
        push=chk.get(tg, "push", "telegram.push", bool, True, "push = false"),
        accounts=read_accounts(chk, tg.get("accounts"), env, data_dir),
        failover_flood_wait=chk.get(tg, "failover_flood_wait", "telegram.failover_flood_wait", int, 300,
                                    "failover_flood_wait = 300", interval),
    )


def read_web(chk: Checker, data: Mapping[str, Any]) -> WebSourceSettings:
    """``[sources.web]``: the public t.me/s/ preview source."""
    sources = chk.table(data.get("sources"), "sources", {"web": "[sources.web]"})
    w = chk.table(sources.get("web"), "sources.web", {
        "base_url": 'base_url = "https://t.me"', "proxy": 'proxy = "http://127.0.0.1:3128"',
        "requests_per_minute": "requests_per_minute = 20", "min_interval": "min_interval = 60"})
    base_url = chk.get(w, "base_url", "sources.web.base_url", str, "https://t.me", 'base_url = "https://t.me"')
    if not re.match(r"^https?://[^/]+", base_url):
        chk.fail("sources.web.base_url", "must be an http(s) URL", 'base_url = "https://t.me"')
    web_proxy = chk.get(w, "proxy", "sources.web.proxy", str, None, 'proxy = "http://127.0.0.1:3128"')
    if web_proxy is not None:
        register_url_secrets(web_proxy)
        if bad := port_problem(web_proxy):
            chk.fail("sources.web.proxy", bad, 'proxy = "http://127.0.0.1:3128"')
    return WebSourceSettings(
        base_url=base_url.rstrip("/"),
        proxy=web_proxy,
        requests_per_minute=chk.get(w, "requests_per_minute", "sources.web.requests_per_minute", int, 20,
                                    "requests_per_minute = 20", positive),
        min_interval=chk.get(w, "min_interval", "sources.web.min_interval", int, 60, "min_interval = 60",
                             interval),
    )


def read_schedule(chk: Checker, data: Mapping[str, Any]) -> ScheduleSettings:
    """``[schedule]``: poll intervals, jitter, the request budget, re-reads and leases."""
    s = chk.table(data.get("schedule"), "schedule", {
        "interval": "interval = 300", "jitter": "jitter = 0.1", "requests_per_minute": "requests_per_minute = 20",
        "reread_hours": "reread_hours = 48", "reread_every": "reread_every = 10",
        "lease_seconds": "lease_seconds = 60", "reconcile_interval": "reconcile_interval = 900"})
    return ScheduleSettings(
        interval=chk.get(s, "interval", "schedule.interval", int, 300, "interval = 300", interval),
        jitter=chk.get(s, "jitter", "schedule.jitter", float, 0.1, "jitter = 0.1", fraction),
        requests_per_minute=chk.get(s, "requests_per_minute", "schedule.requests_per_minute", int, 20,
                                    "requests_per_minute = 20", positive),
        reread_hours=chk.get(s, "reread_hours", "schedule.reread_hours", int, 48, "reread_hours = 48", hours),
        reread_every=chk.get(s, "reread_every", "schedule.reread_every", int, 10, "reread_every = 10", positive),
        lease_seconds=chk.get(s, "lease_seconds", "schedule.lease_seconds", int, 60, "lease_seconds = 60",
                              lambda v: f"must be at least 3 seconds, not {v}" if v < 3 else
                              None if v <= MAX_INTERVAL else f"must be at most {MAX_INTERVAL} seconds, not {v}"),
        reconcile_interval=chk.get(s, "reconcile_interval", "schedule.reconcile_interval", int, 900,
                                   "reconcile_interval = 900", interval),
    )


def read_matching(chk: Checker, data: Mapping[str, Any]) -> MatchingSettings:
    """``[matching]``."""
    example = 'languages = ["ru", "kk", "en"]'
    m = chk.table(data.get("matching"), "matching", {"match_link_previews": "match_link_previews = true",
                                                    "languages": example})
    langs: tuple[str, ...] = LANGUAGES
    if "languages" in m:
        given = chk.str_list(m, "languages", "matching.languages", example)
        bad = [x for x in given if x not in LANGUAGES]
        if bad:
            chk.fail("matching.languages", f"unknown language {bad[0]!r}: the known ones are ru, kk and en", example)
        elif isinstance(m["languages"], list) and not given:
            chk.fail("matching.languages", "must name at least one language", example)
        elif given:
            langs = tuple(dict.fromkeys(given))
    return MatchingSettings(match_link_previews=chk.get(
        m, "match_link_previews", "matching.match_link_previews", bool, False, "match_link_previews = true"),
        languages=langs)


def read_delivery(chk: Checker, data: Mapping[str, Any]) -> DeliverySettings:
    """``[delivery]``: time zone, rate limits, retries, forwards and reposts."""
    d = chk.table(data.get("delivery"), "delivery", {
        "timezone": 'timezone = "Asia/Almaty"', "rate_limit_per_minute": "rate_limit_per_minute = 20",
        "max_attempts": "max_attempts = 8", "alert_on_forwards": "alert_on_forwards = true",
        "repost_window_hours": "repost_window_hours = 24"})

    def _tz(v: str) -> str | None:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            return f"{v!r} is not a known time zone"
        return None

    return DeliverySettings(
        timezone=chk.get(d, "timezone", "delivery.timezone", str, "UTC", 'timezone = "Asia/Almaty"', _tz),
        rate_limit_per_minute=chk.get(d, "rate_limit_per_minute", "delivery.rate_limit_per_minute", int, 20,
                                      "rate_limit_per_minute = 20", positive),
        max_attempts=chk.get(d, "max_attempts", "delivery.max_attempts", int, 8, "max_attempts = 8", positive),
        alert_on_forwards=chk.get(d, "alert_on_forwards", "delivery.alert_on_forwards", bool, False,
                                  "alert_on_forwards = true"),
        repost_window_hours=chk.get(d, "repost_window_hours", "delivery.repost_window_hours", int, 24,
                                    "repost_window_hours = 24", hours),
    )


def read_metrics(chk: Checker, data: Mapping[str, Any]) -> MetricsSettings:
    """``[metrics]``: the Prometheus endpoint."""
    mt = chk.table(data.get("metrics"), "metrics", {"listen": 'listen = "127.0.0.1:9108"'})
    listen = chk.get(mt, "listen", "metrics.listen", str, None, 'listen = "127.0.0.1:9108"',
                     lambda v: "must be host:port" if not re.match(r"^[\w.\-\[\]:]+:\d+$", v)
                     else None if 1 <= int(v.rsplit(":", 1)[1]) <= 65535
                     else f"the port {v.rsplit(':', 1)[1]} is not between 1 and 65535")
    return MetricsSettings(listen=listen)


def read_logging(chk: Checker, data: Mapping[str, Any]) -> LoggingSettings:
    """``[logging]``."""
    lg = chk.table(data.get("logging"), "logging", {"format": 'format = "json"', "level": 'level = "info"'})
    return LoggingSettings(
        format=chk.get(lg, "format", "logging.format", str, "text", 'format = "json"',
                       lambda v: None if v in ("text", "json") else f"must be text or json, not {v!r}"),
        level=chk.get(lg, "level", "logging.level", str, "info", 'level = "info"',
                      lambda v: None if v.lower() in ("debug", "info", "warning", "error")
                      else f"must be debug, info, warning or error, not {v!r}"),
    )


def read_dashboard(chk: Checker, data: Mapping[str, Any], env: Mapping[str, str]) -> DashboardSettings:
    """``[web]``: the dashboard's address (also served by ``tgmonitor run`` when set) and its access token."""
    w = chk.table(data.get("web"), "web", {"listen": 'listen = "127.0.0.1:8080"',
                                           "token": "token = \"a long random string\" (or TGMONITOR_WEB_TOKEN)"})

    def _listen(v: str) -> str | None:
        try:
            parse_listen(v)
        except ValueError as exc:
            return str(exc)
        return None

    listen = chk.get(w, "listen", "web.listen", str, None, 'listen = "127.0.0.1:8080"', _listen)
    token = env.get("TGMONITOR_WEB_TOKEN") or chk.get(
        w, "token", "web.token", str, None, 'token = "…" (better: TGMONITOR_WEB_TOKEN in .env)',
        lambda v: None if len(v.strip()) >= 16 else "must be at least 16 characters (e.g. `openssl rand -hex 24`)")
    if token is not None:
        token = token.strip()
        register_secret(token)
        if len(token) < 16:  # only the environment's can be short here: the file's was checked above
            chk.problems.append("environment: TGMONITOR_WEB_TOKEN must be at least 16 characters "
                                "(for example: TGMONITOR_WEB_TOKEN=$(openssl rand -hex 24))")
            token = None
    if listen is not None and token is None and _listen(listen) is None and not is_loopback(parse_listen(listen)[0]):
        chk.fail("web.listen", f"{listen} is reachable from other machines: set [web] token or TGMONITOR_WEB_TOKEN "
                 "(or listen on 127.0.0.1)", 'listen = "127.0.0.1:8080"')
    return DashboardSettings(listen=listen, token=token)
