"""Where secrets and paths come from outside the TOML file: ``.env`` files, the process environment,
systemd credentials and the data directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

from monitor.config.errors import ConfigError, encoding_problem


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
        try:
            values = dotenv_values(p)
        except UnicodeDecodeError as exc:  # a cp1251 or binary .env: where, not a traceback
            raise ConfigError([encoding_problem(p, p.read_bytes(), exc)]) from None
        merged.update({k: v for k, v in values.items() if v is not None})
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

