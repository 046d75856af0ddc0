"""``[[telegram.accounts]]``: several Telegram accounts in one process (issue 16).

Each entry names an account and where its session is: ``TG_SESSION_<NAME>`` (a StringSession, from the
environment, ``.env`` or the systemd credential ``tg_session_<name>``) or its ``session_file`` (default
``tgmonitor-<name>.session`` in the data directory). ``proxy`` and ``requests_per_minute`` are the account's
own. Without the table the single account of ``[telegram]`` is used, exactly as before.

:func:`account_settings` gives the settings one account's client is built from: the whole configuration with
``[telegram]`` narrowed to that account, so that ``make_client``, ``session_path`` and a client factory see
the account's session and proxy (a factory tells accounts apart by ``settings.telegram.account``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monitor.config.env import credential
from monitor.config.errors import Checker, positive
from monitor.config.settings import Settings, TelegramAccountSettings
from monitor.config.values import port_problem
from monitor.logs import register_secret, register_url_secrets

#: the keys of one ``[[telegram.accounts]]`` entry (key -> example)
ACCOUNT_KEYS = {
    "name": 'name = "main"',
    "session_file": 'session_file = "/var/lib/tgmonitor/main.session"',
    "proxy": 'proxy = "socks5://user:pass@127.0.0.1:1080"',
    "requests_per_minute": "requests_per_minute = 20",
}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
PROXY_SCHEMES = re.compile(r"^(socks5|socks4|http|mtproxy)://")


def session_env(name: str) -> str:
    """The environment variable holding an account's StringSession: ``TG_SESSION_<NAME>``."""
    return f"TG_SESSION_{name.upper()}"


def read_accounts(chk: Checker, raw: Any, env: Mapping[str, str],
                  data_dir: Path) -> tuple[TelegramAccountSettings, ...]:
    """The ``[[telegram.accounts]]`` entries, checked: a name each (letters, digits, ``_``; unique in any letter
    case, since it becomes ``TG_SESSION_<NAME>``), no two sharing a session file."""
    if raw is None:
        return ()
    example = '[[telegram.accounts]]\nname = "main"'
    if not isinstance(raw, list) or not all(isinstance(x, dict) for x in raw):
        chk.fail("telegram.accounts", "must be an array of tables, one [[telegram.accounts]] per account", example)
        return ()
    out: list[TelegramAccountSettings] = []
    names: set[str] = set()
    files: dict[Path, str] = {}
    for i, entry in enumerate(raw):
        where = f"telegram.accounts[{i}]"
        chk.table(entry, where, ACCOUNT_KEYS)
        name = chk.get(entry, "name", f"{where}.name", str, None, 'name = "main"')
        if name is None:
            if "name" not in entry:
                chk.fail(f"{where}.name", "every account needs a name", 'name = "main"')
            continue
        if not _NAME.match(name):
            chk.fail(f"{where}.name", f"{name!r} must start with a letter and hold only letters, digits and _ "
                     "(at most 32): it names the environment variable TG_SESSION_<NAME>", 'name = "main"')
            continue
        if name.lower() in names:
            chk.fail(f"{where}.name", f"{name!r} is used by another account (names are compared in any case)",
                     f'name = "{name}2"')
            continue
        names.add(name.lower())
        proxy = chk.get(entry, "proxy", f"{where}.proxy", str, None, 'proxy = "socks5://127.0.0.1:1080"')
        if proxy is not None and not PROXY_SCHEMES.match(proxy):
            chk.fail(f"{where}.proxy", "must start with socks5://, socks4://, http:// or mtproxy://",
                     'proxy = "socks5://user:pass@127.0.0.1:1080"')
            proxy = None
        elif proxy is not None:
            register_url_secrets(proxy)
            if bad := port_problem(proxy):
                chk.fail(f"{where}.proxy", bad, 'proxy = "socks5://user:pass@127.0.0.1:1080"')
                proxy = None
        rpm = chk.get(entry, "requests_per_minute", f"{where}.requests_per_minute", int, None,
                      "requests_per_minute = 20", positive)
        file_raw = chk.get(entry, "session_file", f"{where}.session_file", str, None,
                           f'session_file = "/var/lib/tgmonitor/{name}.session"')
        session_file = Path(file_raw).expanduser() if file_raw else data_dir / f"tgmonitor-{name.lower()}.session"
        key = session_file if session_file.name.endswith(".session") else session_file.with_name(
            session_file.name + ".session")
        if key in files:
            chk.fail(f"{where}.session_file", f"{key} is also the session of account {files[key]!r}: one session "
                     "file per account", f'session_file = "/var/lib/tgmonitor/{name}.session"')
            continue
        files[key] = name
        session = env.get(session_env(name)) or credential(env, f"tg_session_{name.lower()}")
        if session:
            register_secret(session)
        out.append(TelegramAccountSettings(name=name, session_file=session_file, session=session, proxy=proxy,
                                           requests_per_minute=rpm))
    if not out and raw and not chk.problems:
        chk.fail("telegram.accounts", "lists no account", example)
    return tuple(out)


def account_names(settings: Settings) -> list[str]:
    """The configured accounts' names, in the file's order (empty: the single ``[telegram]`` account)."""
    return [a.name for a in settings.telegram.accounts]


def find_account(settings: Settings, name: str) -> TelegramAccountSettings | None:
    """The account named ``name`` (any letter case), or None."""
    return next((a for a in settings.telegram.accounts if a.name.lower() == name.lower()), None)


def account_settings(settings: Settings, name: str) -> Settings:
    """The configuration as one account's client sees it: ``[telegram]`` narrowed to that account's session,
    session file and proxy (the ``[telegram]`` proxy when it has none). KeyError for an unknown name."""
    acc = find_account(settings, name)
    if acc is None:
        raise KeyError(name)
    tg = dataclasses.replace(settings.telegram, session=acc.session, session_file=acc.session_file,
                             proxy=acc.proxy or settings.telegram.proxy, account=acc.name)
    return dataclasses.replace(settings, telegram=tg)


def account_rate(settings: Settings, name: str) -> int:
    """An account's requests per minute: its own, else ``[schedule] requests_per_minute``."""
    acc = find_account(settings, name)
    rpm = acc.requests_per_minute if acc is not None else None
    return rpm or settings.schedule.requests_per_minute
