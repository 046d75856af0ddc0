"""Load and validate ``tgmonitor.toml`` plus ``.env`` secrets into typed settings.

Every problem in a file is collected (not just the first) and reported as one line naming the file, the
key path (``channels[3].interval``), what is wrong and an example of a right value. Unknown keys are
errors: a typo must never silently disable a watch.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values

from monitor.logs import register_url_secrets
from monitor.matching import EntitySpec, validate_regex

DEFAULT_CONFIG = Path("tgmonitor.toml")
SQLITE_NAME = "tgmonitor.db"


class ConfigError(Exception):
    """A configuration file (or environment) that cannot be used; ``problems`` holds one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# --------------------------------------------------------------------------- typed settings


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    url: str  # always an async SQLAlchemy URL (sqlite+aiosqlite / postgresql+asyncpg)


@dataclass(frozen=True, slots=True)
class TelegramSettings:
    api_id: int | None = None
    api_hash: str | None = field(default=None, repr=False)
    session: str | None = field(default=None, repr=False)  # a StringSession from TG_SESSION
    session_file: Path | None = None
    client_factory: str | None = None
    proxy: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class WebSourceSettings:
    base_url: str = "https://t.me"
    proxy: str | None = field(default=None, repr=False)
    requests_per_minute: int = 20


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    interval: int = 300
    jitter: float = 0.1
    requests_per_minute: int = 20
    reread_hours: int = 48
    reread_every: int = 10
    lease_seconds: int = 60  # several services on one PostgreSQL: a dead one's channels move after this


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """One configured channel: by username, by numeric id, or both."""

    username: str | None = None
    id: int | None = None
    source: str = "telethon"
    interval: int | None = None
    enabled: bool = True
    alert_history: bool = False

    @property
    def key(self) -> str:
        """How people name this channel: ``@username`` or the numeric id."""
        return f"@{self.username}" if self.username else str(self.id)


@dataclass(frozen=True, slots=True)
class MatchingSettings:
    match_link_previews: bool = False


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    timezone: str = "UTC"
    rate_limit_per_minute: int = 20
    max_attempts: int = 8
    alert_on_forwards: bool = False
    repost_window_hours: int = 24

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class AlertDestination:
    name: str
    url: str = field(repr=False)  # may hold a token: never log it
    format: str = "text"
    entities: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    quiet_hours: tuple[int, int] | None = None  # minutes after midnight: start, end
    operator: bool = False
    title_template: str | None = None
    body_template: str | None = None


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    listen: str | None = None


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    format: str = "text"
    level: str = "info"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service needs, validated."""

    path: Path | None
    data_dir: Path
    database: DatabaseSettings
    telegram: TelegramSettings = TelegramSettings()
    web: WebSourceSettings = WebSourceSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    channels: tuple[ChannelConfig, ...] = ()
    entities: tuple[EntitySpec, ...] = ()
    matching: MatchingSettings = MatchingSettings()
    delivery: DeliverySettings = DeliverySettings()
    alerts: tuple[AlertDestination, ...] = ()
    metrics: MetricsSettings = MetricsSettings()
    logging: LoggingSettings = LoggingSettings()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    def channel_interval(self, channel: ChannelConfig) -> int:
        return channel.interval if channel.interval is not None else self.schedule.interval


# --------------------------------------------------------------------------- helpers


_USERNAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{3,31}$")
_TME = re.compile(r"^(?:https?://)?(?:www\.)?(?:t\.me|telegram\.me|telegram\.dog)/(?P<rest>.*)$", re.I)


INVITE_LINK = ("a private invite link (t.me/+… or t.me/joinchat/…) cannot be resolved by name; "
               "use the channel's numeric id instead")


def parse_channel_ref(value: str) -> tuple[str | None, int | None]:
    """Turn ``name``, ``@name``, ``https://t.me/name``, ``t.me/name/123``, ``t.me/s/name``,
    ``t.me/c/123/4`` or a numeric id into ``(username, id)``; raise ValueError if it names nothing."""
    text = value.strip()
    if re.fullmatch(r"-?\d+", text):
        return None, normalise_channel_id(int(text))
    m = _TME.match(text)
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


def load_env(config_path: Path | None) -> dict[str, str]:
    """The process environment over ``.env`` in the working directory over ``.env`` beside the config.

    Never searched upward: a stray ``.env`` in a parent folder must not inject secrets."""
    merged: dict[str, str] = {}
    candidates = []
    if config_path is not None:
        candidates.append(config_path.resolve().parent / ".env")
    candidates.append(Path.cwd() / ".env")
    seen: set[Path] = set()
    for p in candidates:
        if p in seen or not p.is_file():
            continue
        seen.add(p)
        merged.update({k: v for k, v in dotenv_values(p).items() if v is not None})
    merged.update(os.environ)
    return merged


def credential(env: Mapping[str, str], name: str) -> str | None:
    """A systemd credential (``LoadCredential=NAME:/path``): ``$CREDENTIALS_DIRECTORY/NAME``, stripped, or
    None. Keeps the session out of the environment, where children and /proc/PID/environ would see it."""
    folder = env.get("CREDENTIALS_DIRECTORY")
    if not folder:
        return None
    try:
        value = (Path(folder) / name).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return value or None


def default_data_dir(config_path: Path | None, env: Mapping[str, str]) -> Path:
    """``TGMONITOR_DATA_DIR``, systemd's ``STATE_DIRECTORY``, else ``data/`` beside the config file
    (or in the working directory)."""
    if env.get("TGMONITOR_DATA_DIR"):
        return Path(env["TGMONITOR_DATA_DIR"]).expanduser()
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    base = config_path.resolve().parent if config_path is not None else Path.cwd()
    return base / "data"


# --------------------------------------------------------------------------- validation


class _Checker:
    """Collects problems while reading one TOML document."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def fail(self, key: str, what: str, example: str) -> None:
        self.problems.append(f"{self.source}: {key}: {what} (for example: {example})")

    def table(self, data: Any, key: str, allowed: Mapping[str, str],
              reported: frozenset[str] = frozenset()) -> dict[str, Any]:
        """Check ``data`` is a table and has only ``allowed`` keys (key -> example); keys in ``reported``
        get their own message from the caller, so no "unknown key" line here."""
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.fail(key, "must be a table", f"[{key}]")
            return {}
        for k in data:
            if k not in allowed and k not in reported:
                near = _nearest(k, allowed)
                hint = f"did you mean '{near}'? " if near else ""
                self.problems.append(
                    f"{self.source}: {key + '.' if key else ''}{k}: unknown key; {hint}"
                    f"allowed keys here: {', '.join(sorted(allowed))}"
                )
        return data

    def get(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        kind: type | tuple[type, ...],
        default: Any,
        example: str,
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        if key not in data:
            return default
        value = data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok and float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            names = " or ".join(_type_name(k) for k in kinds)
            self.fail(path, f"must be {names}, not {value!r}", example)
            return default
        if check is not None:
            msg = check(value)
            if msg:
                self.fail(path, msg, example)
                return default
        return value

    def str_list(self, data: Mapping[str, Any], key: str, path: str, example: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(path, "must be a list of strings", example)
            return ()
        return tuple(value)


def _type_name(t: type) -> str:
    return {int: "a whole number", float: "a number", str: "a string", bool: "true or false",
            list: "a list", dict: "a table"}.get(t, t.__name__)


def _nearest(word: str, allowed: Mapping[str, str]) -> str | None:
    import difflib

    m = difflib.get_close_matches(word, list(allowed), n=1, cutoff=0.7)
    return m[0] if m else None


def _positive(v: Any) -> str | None:
    return None if v > 0 else f"must be greater than 0, not {v}"


def _fraction(v: Any) -> str | None:
    return None if 0 <= v <= 1 else f"must be between 0 and 1, not {v}"


_SECRET_KEYS = frozenset({"api_id", "api_hash", "session"})
_TOP = {
    "database": "[database]", "telegram": "[telegram]", "sources": "[sources.web]",
    "schedule": "[schedule]", "channels": "[[channels]]", "entities": "[[entities]]",
    "matching": "[matching]", "delivery": "[delivery]", "alerts": "[[alerts]]",
    "metrics": "[metrics]", "logging": "[logging]",
}
_ENTITY_KEYS = {
    "name": 'name = "Росатом"', "aliases": 'aliases = ["Rosatom", "госкорпорация Росатом"]',
    "id": 'id = "rosatom"', "case_sensitive": "case_sensitive = true",
    "exclude": 'exclude = ["Мир во всём мире"]', "require_any": 'require_any = ["банк", "карта"]',
    "regex": r"regex = 'Росатом\w*'", "silent": "silent = true", "enabled": "enabled = false",
}
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


def _entities(chk: _Checker, raw: Any) -> tuple[EntitySpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        chk.fail("entities", "must be an array of tables", '[[entities]]\nname = "Росатом"')
        return ()
    out: list[EntitySpec] = []
    seen: dict[str, str] = {}
    for i, e in enumerate(raw):
        p = f"entities[{i}]"
        if not isinstance(e, dict):
            chk.table(e, p, _ENTITY_KEYS)
            continue
        e = chk.table(e, p, _ENTITY_KEYS)
        name = chk.get(e, "name", f"{p}.name", str, None, _ENTITY_KEYS["name"])
        if not name or not name.strip():
            if "name" not in e:
                chk.fail(f"{p}.name", "is required", _ENTITY_KEYS["name"])
            elif name is not None:
                chk.fail(f"{p}.name", "must not be empty", _ENTITY_KEYS["name"])
            continue
        regex = chk.get(e, "regex", f"{p}.regex", str, None, _ENTITY_KEYS["regex"])
        if regex is not None:
            err = validate_regex(regex)
            if err:
                chk.fail(f"{p}.regex", f"is not a valid pattern: {err}", _ENTITY_KEYS["regex"])
                regex = None
        cs = chk.get(e, "case_sensitive", f"{p}.case_sensitive", bool, None, "case_sensitive = true")
        spec = EntitySpec(
            name=name.strip(),
            aliases=tuple(a for a in chk.str_list(e, "aliases", f"{p}.aliases", _ENTITY_KEYS["aliases"])
                          if a.strip()),
            id=chk.get(e, "id", f"{p}.id", str, "", _ENTITY_KEYS["id"]),
            case_sensitive=cs,
            exclude=chk.str_list(e, "exclude", f"{p}.exclude", _ENTITY_KEYS["exclude"]),
            require_any=chk.str_list(e, "require_any", f"{p}.require_any", _ENTITY_KEYS["require_any"]),
            regex=regex,
            silent=chk.get(e, "silent", f"{p}.silent", bool, False, "silent = true"),
            enabled=chk.get(e, "enabled", f"{p}.enabled", bool, True, "enabled = false"),
        )
        if spec.id in seen:
            chk.fail(f"{p}.id", f"'{spec.id}' is used by {seen[spec.id]} too; ids must be unique",
                     f'id = "{spec.id}-2"')
            continue
        seen[spec.id] = p
        out.append(spec)
    return tuple(out)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found (create it from deploy/tgmonitor.example.toml, "
                           f"or pass --config PATH)"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_toml_problem(path, exc)]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot be read: {exc.strerror}"]) from None


def _toml_problem(path: Path, exc: tomllib.TOMLDecodeError) -> str:
    """tomllib's own words and position, and what usually causes it."""
    msg = str(exc)
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)\s*$", msg)
    if m:
        what = msg[: m.start()]
        line = m.group(1)
        return (f"{path}: line {line}, column {m.group(2)}: not valid TOML: {what} (check the quotes, "
                f"brackets and commas on line {line}: strings need matching quotes, a backslash inside "
                f"\"...\" must be doubled or the string written in single quotes, e.g. regex = 'Росатом\\w*')")
    return (f"{path}: not valid TOML: {msg} (check for an unclosed quote, bracket or table header, "
            f"e.g. name = \"Росатом\" and [[entities]])")


def load_watchlist(path: Path) -> list[EntitySpec]:
    """The ``[[entities]]`` of a watchlist file (or of a full config file; other tables are ignored)."""
    data = _read_toml(path)
    chk = _Checker(str(path))
    specs = _entities(chk, data.get("entities"))
    if chk.problems:
        raise ConfigError(chk.problems)
    return list(specs)


def load_settings(path: Path | None = None, *, require_file: bool = True) -> Settings:
    """Read and validate the configuration; raise ConfigError listing every problem.

    ``require_file=False`` lets commands that need no config (``db upgrade`` with the env URL) run
    when the default ``tgmonitor.toml`` is absent."""
    cfg_path = path if path is not None else DEFAULT_CONFIG
    if cfg_path.exists() or require_file:
        data = _read_toml(cfg_path)
        src_path: Path | None = cfg_path
    else:
        data, src_path = {}, None
    env = load_env(src_path)
    chk = _Checker(str(cfg_path))
    chk.table(data, "", _TOP)

    data_dir = default_data_dir(src_path, env)

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

    tg = chk.table(data.get("telegram"), "telegram", {
        "client_factory": 'client_factory = "mypackage.clients:make_client"',
        "proxy": 'proxy = "socks5://user:pass@127.0.0.1:1080"',
        "session_file": 'session_file = "/var/lib/tgmonitor/tgmonitor.session"',
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
    factory = env.get("TGMONITOR_CLIENT_FACTORY") or chk.get(
        tg, "client_factory", "telegram.client_factory", str, None, 'client_factory = "pkg.mod:func"')
    if factory is not None and not re.match(r"^[\w.]+:\w+$", factory):
        chk.fail("telegram.client_factory", "must be module:function", 'client_factory = "pkg.mod:make"')
    telegram = TelegramSettings(
        api_id=api_id, api_hash=env.get("TG_API_HASH") or credential(env, "tg_api_hash"),
        session=env.get("TG_SESSION") or credential(env, "tg_session"),
        session_file=Path(session_file).expanduser() if session_file else data_dir / "tgmonitor.session",
        client_factory=factory, proxy=proxy,
    )

    sources = chk.table(data.get("sources"), "sources", {"web": "[sources.web]"})
    w = chk.table(sources.get("web"), "sources.web", {
        "base_url": 'base_url = "https://t.me"', "proxy": 'proxy = "http://127.0.0.1:3128"',
        "requests_per_minute": "requests_per_minute = 20"})
    base_url = chk.get(w, "base_url", "sources.web.base_url", str, "https://t.me", 'base_url = "https://t.me"')
    if not re.match(r"^https?://[^/]+", base_url):
        chk.fail("sources.web.base_url", "must be an http(s) URL", 'base_url = "https://t.me"')
    web_proxy = chk.get(w, "proxy", "sources.web.proxy", str, None, 'proxy = "http://127.0.0.1:3128"')
    if web_proxy is not None:
        register_url_secrets(web_proxy)
    web = WebSourceSettings(
        base_url=base_url.rstrip("/"),
        proxy=web_proxy,
        requests_per_minute=chk.get(w, "requests_per_minute", "sources.web.requests_per_minute", int, 20,
                                    "requests_per_minute = 20", _positive),
    )

    s = chk.table(data.get("schedule"), "schedule", {
        "interval": "interval = 300", "jitter": "jitter = 0.1", "requests_per_minute": "requests_per_minute = 20",
        "reread_hours": "reread_hours = 48", "reread_every": "reread_every = 10",
        "lease_seconds": "lease_seconds = 60"})
    schedule = ScheduleSettings(
        interval=chk.get(s, "interval", "schedule.interval", int, 300, "interval = 300", _positive),
        jitter=chk.get(s, "jitter", "schedule.jitter", float, 0.1, "jitter = 0.1", _fraction),
        requests_per_minute=chk.get(s, "requests_per_minute", "schedule.requests_per_minute", int, 20,
                                    "requests_per_minute = 20", _positive),
        reread_hours=chk.get(s, "reread_hours", "schedule.reread_hours", int, 48, "reread_hours = 48",
                             lambda v: None if v >= 0 else f"must be 0 or more, not {v}"),
        reread_every=chk.get(s, "reread_every", "schedule.reread_every", int, 10, "reread_every = 10", _positive),
        lease_seconds=chk.get(s, "lease_seconds", "schedule.lease_seconds", int, 60, "lease_seconds = 60",
                              lambda v: None if v >= 3 else f"must be at least 3 seconds, not {v}"),
    )

    channels = _channels(chk, data.get("channels"))
    entities = _entities(chk, data.get("entities"))

    m = chk.table(data.get("matching"), "matching", {"match_link_previews": "match_link_previews = true"})
    matching = MatchingSettings(match_link_previews=chk.get(
        m, "match_link_previews", "matching.match_link_previews", bool, False, "match_link_previews = true"))

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

    delivery = DeliverySettings(
        timezone=chk.get(d, "timezone", "delivery.timezone", str, "UTC", 'timezone = "Asia/Almaty"', _tz),
        rate_limit_per_minute=chk.get(d, "rate_limit_per_minute", "delivery.rate_limit_per_minute", int, 20,
                                      "rate_limit_per_minute = 20", _positive),
        max_attempts=chk.get(d, "max_attempts", "delivery.max_attempts", int, 8, "max_attempts = 8", _positive),
        alert_on_forwards=chk.get(d, "alert_on_forwards", "delivery.alert_on_forwards", bool, False,
                                  "alert_on_forwards = true"),
        repost_window_hours=chk.get(d, "repost_window_hours", "delivery.repost_window_hours", int, 24,
                                    "repost_window_hours = 24",
                                    lambda v: None if v >= 0 else f"must be 0 or more, not {v}"),
    )

    alerts = _alerts(chk, data.get("alerts"), env, entities, channels)

    mt = chk.table(data.get("metrics"), "metrics", {"listen": 'listen = "127.0.0.1:9108"'})
    listen = chk.get(mt, "listen", "metrics.listen", str, None, 'listen = "127.0.0.1:9108"',
                     lambda v: None if re.match(r"^[\w.\-\[\]:]+:\d+$", v) else "must be host:port")

    lg = chk.table(data.get("logging"), "logging", {"format": 'format = "json"', "level": 'level = "info"'})
    logging_settings = LoggingSettings(
        format=chk.get(lg, "format", "logging.format", str, "text", 'format = "json"',
                       lambda v: None if v in ("text", "json") else f"must be text or json, not {v!r}"),
        level=chk.get(lg, "level", "logging.level", str, "info", 'level = "info"',
                      lambda v: None if v.lower() in ("debug", "info", "warning", "error")
                      else f"must be debug, info, warning or error, not {v!r}"),
    )

    if chk.problems:
        raise ConfigError(chk.problems)
    return Settings(
        path=src_path, data_dir=data_dir, database=DatabaseSettings(url=to_async_url(url)),
        telegram=telegram, web=web, schedule=schedule, channels=channels, entities=entities,
        matching=matching, delivery=delivery, alerts=alerts, metrics=MetricsSettings(listen=listen),
        logging=logging_settings, env=env,
    )


_CHANNEL_KEYS = {
    "username": 'username = "@rian_ru"', "id": "id = 1234567890", "source": 'source = "web"',
    "interval": "interval = 300", "enabled": "enabled = false", "alert_history": "alert_history = true",
}


def _channels(chk: _Checker, raw: Any) -> tuple[ChannelConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        chk.fail("channels", "must be an array of tables", '[[channels]]\nusername = "@rian_ru"')
        return ()
    out: list[ChannelConfig] = []
    seen: dict[str, str] = {}
    for i, c in enumerate(raw):
        p = f"channels[{i}]"
        c = chk.table(c, p, _CHANNEL_KEYS)
        if not isinstance(c, dict):
            continue
        username: str | None = None
        cid: int | None = None
        u = chk.get(c, "username", f"{p}.username", str, None, _CHANNEL_KEYS["username"])
        if u is not None:
            try:
                username, cid = parse_channel_ref(u)
            except ValueError as exc:
                chk.fail(f"{p}.username", str(exc), "id = 1234567890 in place of username" if str(exc) == INVITE_LINK
                         else 'username = "@rian_ru" or "https://t.me/rian_ru"')
                u = None
        raw_id = chk.get(c, "id", f"{p}.id", int, None, _CHANNEL_KEYS["id"])
        if raw_id is not None:
            cid = normalise_channel_id(raw_id)
        if "username" not in c and "id" not in c:
            chk.fail(p, "needs a username or an id", 'username = "@rian_ru"')
        source = chk.get(c, "source", f"{p}.source", str, "telethon", 'source = "web"',
                         lambda v: None if v in ("telethon", "web") else f"must be telethon or web, not {v!r}")
        interval = chk.get(c, "interval", f"{p}.interval", int, None, "interval = 300", _positive)
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


_ALERT_KEYS = {
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


def _check_routes(chk: _Checker, p: str, wanted_entities: Sequence[str], wanted_channels: Sequence[str],
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
            if text.startswith("@") or _TME.match(text) or re.fullmatch(r"-?\d+", text):
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


def _alerts(chk: _Checker, raw: Any, env: Mapping[str, str], entities: Sequence[EntitySpec] = (),
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
            chk.table(a, p, _ALERT_KEYS)
            continue
        a = chk.table(a, p, _ALERT_KEYS)
        name = chk.get(a, "name", f"{p}.name", str, None, _ALERT_KEYS["name"])
        url = chk.get(a, "url", f"{p}.url", str, None, _ALERT_KEYS["url"])
        if not name:
            chk.fail(f"{p}.name", "is required", _ALERT_KEYS["name"])
        elif name in names:
            chk.fail(f"{p}.name", f"'{name}' is used twice; names must be unique", f'name = "{name}-2"')
        if not url:
            chk.fail(f"{p}.url", "is required", _ALERT_KEYS["url"])
        elif url.startswith("env:"):
            var = url[4:]
            if not env.get(var):
                chk.fail(f"{p}.url", f"the environment variable {var} is not set (in the environment or .env)",
                         f"{var}=tgram://BOT_TOKEN/CHAT_ID in .env")
                url = None
            else:
                url = env[var]
        elif "://" not in url:
            chk.fail(f"{p}.url", "must be an Apprise URL", _ALERT_KEYS["url"])
        fmt = chk.get(a, "format", f"{p}.format", str, "text", 'format = "html"',
                      lambda v: None if v in ("text", "markdown", "html")
                      else f"must be text, markdown or html, not {v!r}")
        quiet: tuple[int, int] | None = None
        qh = chk.get(a, "quiet_hours", f"{p}.quiet_hours", str, None, _ALERT_KEYS["quiet_hours"])
        if qh is not None:
            try:
                quiet = parse_quiet_hours(qh)
            except ValueError:
                chk.fail(f"{p}.quiet_hours", f"{qh!r} is not HH:MM-HH:MM", _ALERT_KEYS["quiet_hours"])
        templates: dict[str, str | None] = {}
        for t in ("title_template", "body_template"):
            v = chk.get(a, t, f"{p}.{t}", str, None, _ALERT_KEYS[t])
            if v is not None:
                unknown = set(re.findall(r"\{(\w+)\}", v)) - _PLACEHOLDERS
                if unknown:
                    chk.fail(f"{p}.{t}", f"unknown placeholder {{{sorted(unknown)[0]}}}; known: "
                             + " ".join("{" + x + "}" for x in sorted(_PLACEHOLDERS)), _ALERT_KEYS[t])
                    v = None
            templates[t] = v
        want_entities = chk.str_list(a, "entities", f"{p}.entities", _ALERT_KEYS["entities"])
        want_channels = chk.str_list(a, "channels", f"{p}.channels", _ALERT_KEYS["channels"])
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
