"""The typed settings: one frozen dataclass per TOML table, its fields and defaults say what each key means.

Nothing here reads a file; :mod:`monitor.config.loader` builds these values from TOML, ``.env`` and the
environment, and the section readers in :mod:`monitor.config.sections` check each key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from monitor.matching import EntitySpec


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    url: str  # always an async SQLAlchemy URL (sqlite+aiosqlite / postgresql+asyncpg)


@dataclass(frozen=True, slots=True)
class TelegramAccountSettings:
    """One ``[[telegram.accounts]]`` entry (issue 16): a Telegram account of its own, with its own session,
    proxy and request budget. Its session comes from ``TG_SESSION_<NAME>`` or its ``session_file``."""

    name: str
    session_file: Path
    session: str | None = field(default=None, repr=False)  # a StringSession from TG_SESSION_<NAME>
    proxy: str | None = field(default=None, repr=False)
    requests_per_minute: int | None = None  # None: [schedule] requests_per_minute


@dataclass(frozen=True, slots=True)
class TelegramSettings:
    api_id: int | None = None
    api_hash: str | None = field(default=None, repr=False)
    session: str | None = field(default=None, repr=False)  # a StringSession from TG_SESSION
    session_file: Path | None = None
    client_factory: str | None = None
    proxy: str | None = field(default=None, repr=False)
    push: bool = True  # receive Telegram's push updates for joined channels (alerts in seconds)
    #: several accounts (``[[telegram.accounts]]``); empty: the one account of the keys above
    accounts: tuple[TelegramAccountSettings, ...] = ()
    #: the account these settings are for (set by :func:`monitor.config.accounts.account_settings`)
    account: str | None = None
    #: a flood wait this long (seconds) or longer takes the account out and moves its channels to the others
    failover_flood_wait: int = 300


@dataclass(frozen=True, slots=True)
class WebSourceSettings:
    base_url: str = "https://t.me"
    proxy: str | None = field(default=None, repr=False)
    requests_per_minute: int = 20
    min_interval: int = 60  # busy channels are polled this often at most (adaptive, within the budget)


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    interval: int = 300
    jitter: float = 0.1
    requests_per_minute: int = 20
    reread_hours: int = 48
    reread_every: int = 10
    lease_seconds: int = 60  # several services on one PostgreSQL: a dead one's channels move after this
    reconcile_interval: int = 900  # joined channels while push updates arrive: polling only closes gaps


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
    languages: tuple[str, ...] = ("ru", "kk", "en")  # Russian inflection, Kazakh endings, English possessives


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
class DashboardSettings:
    """``[web]``: the dashboard. ``listen`` also makes ``tgmonitor run`` serve it (default off); off the loopback
    interface every request needs ``token`` (``TGMONITOR_WEB_TOKEN`` wins)."""

    listen: str | None = None
    token: str | None = field(default=None, repr=False)


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
    dashboard: DashboardSettings = DashboardSettings()  # the [web] table ("web" is [sources.web] above)
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    def channel_interval(self, channel: ChannelConfig) -> int:
        return channel.interval if channel.interval is not None else self.schedule.interval

