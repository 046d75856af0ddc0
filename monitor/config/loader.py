"""The loader: reads ``tgmonitor.toml`` (or a watchlist file), merges ``.env`` and the environment, and runs
every section reader so that all problems of a file are reported at once as one ``ConfigError``.

A new top-level table goes into ``TOP`` here, a reader function in :mod:`monitor.config.sections` (called
from ``load_settings`` below) and a field of ``Settings`` in :mod:`monitor.config.settings`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from monitor.config.alerts import read_alerts
from monitor.config.channels import read_channels
from monitor.config.entities import read_entities
from monitor.config.env import default_data_dir, load_env
from monitor.config.errors import Checker, ConfigError, encoding_problem, toml_problem
from monitor.config.sections import (
    read_dashboard,
    read_database,
    read_delivery,
    read_logging,
    read_matching,
    read_metrics,
    read_schedule,
    read_telegram,
    read_web,
)
from monitor.config.settings import DatabaseSettings, Settings
from monitor.config.values import to_async_url
from monitor.matching import EntitySpec

DEFAULT_CONFIG = Path("tgmonitor.toml")

#: the top-level tables a configuration file may have (table -> how it is written)
TOP = {
    "database": "[database]", "telegram": "[telegram]", "sources": "[sources.web]",
    "schedule": "[schedule]", "channels": "[[channels]]", "entities": "[[entities]]",
    "matching": "[matching]", "delivery": "[delivery]", "alerts": "[[alerts]]",
    "metrics": "[metrics]", "logging": "[logging]", "web": "[web]",
}


def read_toml(path: Path) -> dict[str, Any]:
    """Parse one TOML file; a missing, unreadable or malformed file is a ConfigError naming the fix."""
    try:
        with path.open("rb") as fh:
            raw = fh.read()
        return tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found (create it from deploy/tgmonitor.example.toml, "
                           f"or pass --config PATH)"]) from None
    except UnicodeDecodeError as exc:  # a cp1251 file or a binary one: where, not a traceback
        raise ConfigError([encoding_problem(path, raw, exc)]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([toml_problem(path, exc)]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot be read: {exc.strerror}"]) from None


def load_watchlist(path: Path) -> list[EntitySpec]:
    """The ``[[entities]]`` of a watchlist file (or of a full config file; other tables are ignored)."""
    data = read_toml(path)
    chk = Checker(str(path))
    specs = read_entities(chk, data.get("entities"))
    if chk.problems:
        raise ConfigError(chk.problems)
    return list(specs)


def load_settings(path: Path | None = None, *, require_file: bool = True) -> Settings:
    """Read and validate the configuration; raise ConfigError listing every problem.

    ``require_file=False`` lets commands that need no config (``db upgrade`` with the env URL) run
    when the default ``tgmonitor.toml`` is absent."""
    cfg_path = path if path is not None else DEFAULT_CONFIG
    if cfg_path.exists() or require_file:
        data = read_toml(cfg_path)
        src_path: Path | None = cfg_path
    else:
        data, src_path = {}, None
    env = load_env(src_path)
    chk = Checker(str(cfg_path))
    chk.table(data, "", TOP)

    data_dir = default_data_dir(src_path, env)
    # The readers run in file order so that problems are reported in the order a reader of the file meets them.
    url = read_database(chk, data, env, data_dir)
    telegram = read_telegram(chk, data, env, data_dir)
    web = read_web(chk, data)
    schedule = read_schedule(chk, data)
    channels = read_channels(chk, data.get("channels"))
    entities = read_entities(chk, data.get("entities"))
    matching = read_matching(chk, data)
    delivery = read_delivery(chk, data)
    alerts = read_alerts(chk, data.get("alerts"), env, entities, channels)
    metrics = read_metrics(chk, data)
    logging_settings = read_logging(chk, data)
    dashboard = read_dashboard(chk, data, env)

    if chk.problems:
        raise ConfigError(chk.problems)
    return Settings(
        path=src_path, data_dir=data_dir, database=DatabaseSettings(url=to_async_url(url)),
        telegram=telegram, web=web, schedule=schedule, channels=channels, entities=entities,
        matching=matching, delivery=delivery, alerts=alerts, metrics=metrics,
        logging=logging_settings, dashboard=dashboard, env=env,
    )
