"""Load and validate ``tgmonitor.toml`` plus ``.env`` secrets into typed settings.

Every problem in a file is collected (not just the first) and reported as one line naming the file, the
key path (``channels[3].interval``), what is wrong and an example of a right value. Unknown keys are
errors: a typo must never silently disable a watch.

The parts: ``settings`` (the typed settings: what each key means), ``loader`` (files, ``.env``, the
environment; ``load_settings``), ``env`` (``.env``, credentials, data dir), ``sections`` (one reader per
``[table]``), ``channels`` / ``entities`` / ``alerts`` (the ``[[array]]`` tables), ``values`` (single-value
parsers) and ``errors`` (``ConfigError`` and the problem collector). Import from here: the names below are
the public surface and stay put when the parts move.
"""

from __future__ import annotations

from monitor.config.accounts import account_names, account_rate, account_settings, find_account, session_env
from monitor.config.env import credential, default_data_dir, load_env
from monitor.config.errors import ConfigError
from monitor.config.loader import DEFAULT_CONFIG, TOP, load_settings, load_watchlist, read_toml
from monitor.config.sections import SQLITE_NAME
from monitor.config.settings import (
    AlertDestination,
    ChannelConfig,
    DatabaseSettings,
    DeliverySettings,
    LoggingSettings,
    MatchingSettings,
    MetricsSettings,
    ScheduleSettings,
    Settings,
    TelegramAccountSettings,
    TelegramSettings,
    WebSourceSettings,
)
from monitor.config.values import (
    INVITE_LINK,
    WEBHOOK_SCHEMES,
    normalise_channel_id,
    parse_channel_ref,
    parse_quiet_hours,
    redact_url,
    to_async_url,
)

__all__ = [
    "DEFAULT_CONFIG", "INVITE_LINK", "SQLITE_NAME", "TOP", "WEBHOOK_SCHEMES",
    "AlertDestination", "ChannelConfig", "ConfigError", "DatabaseSettings", "DeliverySettings",
    "LoggingSettings", "MatchingSettings", "MetricsSettings", "ScheduleSettings", "Settings",
    "TelegramAccountSettings", "TelegramSettings", "WebSourceSettings",
    "account_names", "account_rate", "account_settings", "credential", "default_data_dir", "find_account",
    "load_env", "load_settings", "load_watchlist", "normalise_channel_id", "parse_channel_ref",
    "parse_quiet_hours", "read_toml", "redact_url", "session_env", "to_async_url",
]
