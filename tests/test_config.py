"""Configuration: every key of DESIGN.md's table, one clear message per problem, secrets from the env only."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from monitor.config import ConfigError, load_settings, load_watchlist, parse_channel_ref, redact_url, to_async_url


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    return exc.value.problems


def test_full_example_config_is_valid(monkeypatch: pytest.MonkeyPatch, write_config) -> None:
    monkeypatch.setenv("TG_ALERT_URL", "tgram://123456:ABCDEF/42")
    example = Path(__file__).parents[1] / "deploy" / "tgmonitor.example.toml"
    path = write_config(example.read_text(encoding="utf-8"))
    s = load_settings(path)
    assert s.channels, "the example config lists channels"
    assert s.entities, "the example config lists entities"
    assert any(a.url == "tgram://123456:ABCDEF/42" for a in s.alerts), "env: URLs are resolved"


def test_defaults_and_types(write_config) -> None:
    s = load_settings(write_config('[[channels]]\nusername = "@Rian_Ru"\n\n[[channels]]\nid = -1001234567890\n'
                                   'source = "telethon"\ninterval = 60\n'))
    assert s.schedule.interval == 300 and s.schedule.jitter == 0.1 and s.schedule.requests_per_minute == 20
    assert s.delivery.timezone == "UTC" and s.delivery.max_attempts == 8 and s.delivery.repost_window_hours == 24
    assert s.web.base_url == "https://t.me" and s.web.requests_per_minute == 20
    assert s.channels[0].username == "rian_ru" and s.channels[0].source == "telethon"
    assert s.channels[1].id == 1234567890 and s.channel_interval(s.channels[1]) == 60
    assert s.database.url.startswith("sqlite+aiosqlite:///") and s.database.url.endswith("data/tgmonitor.db")
    assert s.data_dir == Path.cwd() / "data"


def test_problems_name_file_key_and_fix(write_config) -> None:
    path = write_config(
        '[schedule]\nintervall = 60\njitter = 3\n\n[[channels]]\nusername = "https://t.me/"\ninterval = -5\n\n'
        '[[channels]]\nusername = "ok_channel"\nsource = "rss"\n\n'
        '[[entities]]\naliases = ["x"]\n\n[[alerts]]\nname = "a"\nurl = "json://h/p"\nformat = "pdf"\n'
        'body_template = "{nope}"\n\n[delivery]\ntimezone = "Mars/Olympus"\n\n[wat]\nx = 1\n'
    )
    out = problems(path)
    text = "\n".join(out)
    assert all(line.startswith(f"{path}: ") for line in out)
    assert "schedule.intervall: unknown key; did you mean 'interval'?" in text
    assert "schedule.jitter: must be between 0 and 1" in text
    assert "channels[0].username: the link has no channel name" in text
    assert "channels[0].interval: must be greater than 0, not -5" in text
    assert "channels[1].source: must be telethon or web, not 'rss'" in text
    assert "entities[0].name: is required" in text
    assert "alerts[0].format: must be text, markdown or html" in text
    assert "alerts[0].body_template: unknown placeholder {nope}" in text
    assert "delivery.timezone: 'Mars/Olympus' is not a known time zone" in text
    assert ": wat: unknown key" in text
    assert all("(for example: " in line or "unknown key" in line for line in out)


def test_secrets_only_from_environment(write_config, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    out = problems(write_config('[telegram]\napi_hash = "abc"\n'))
    assert any("telegram.api_hash: secrets are read only from the environment" in p for p in out)
    (tmp_path / ".env").write_text("TG_API_ID=123\nTG_API_HASH=0123456789abcdef\nTG_SESSION=1Aabc\n")
    s = load_settings(write_config(""))
    assert s.telegram.api_id == 123 and s.telegram.api_hash == "0123456789abcdef" and s.telegram.session == "1Aabc"
    assert "0123456789abcdef" not in repr(s.telegram), "secrets never appear in reprs (and so in logs)"
    monkeypatch.setenv("TG_API_HASH", "fromenv")
    assert load_settings(write_config("")).telegram.api_hash == "fromenv", "the real environment wins over .env"


def test_env_is_not_searched_upward(write_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("TG_API_ID=999\n")
    sub = tmp_path / "etc" / "deep"
    sub.mkdir(parents=True)
    cfg = sub / "tgmonitor.toml"
    cfg.write_text("")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert load_settings(cfg).telegram.api_id is None
    (sub / ".env").write_text("TG_API_ID=5\n")
    assert load_settings(cfg).telegram.api_id == 5


def test_database_url_env_override_and_async_mapping(write_config, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config('[database]\nurl = "postgresql://u@db/x"\n')
    assert load_settings(path).database.url == "postgresql+asyncpg://u@db/x"
    monkeypatch.setenv("TGMONITOR_DATABASE_URL", "sqlite:////tmp/x.db")
    assert load_settings(path).database.url == "sqlite+aiosqlite:////tmp/x.db"
    assert to_async_url("postgres://a@b/c") == "postgresql+asyncpg://a@b/c"


def test_missing_default_config_allowed_for_commands_that_need_none(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TGMONITOR_DATABASE_URL", raising=False)
    s = load_settings(None, require_file=False)
    assert s.path is None and s.channels == ()
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(None)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("rian_ru", ("rian_ru", None)),
        ("@Rian_Ru", ("rian_ru", None)),
        ("https://t.me/rian_ru", ("rian_ru", None)),
        ("t.me/rian_ru/123", ("rian_ru", None)),
        ("https://t.me/s/rian_ru", ("rian_ru", None)),
        ("https://t.me/c/1234567890/5", (None, 1234567890)),
        ("-1001234567890", (None, 1234567890)),
        ("1234567890", (None, 1234567890)),
    ],
)
def test_channel_refs(ref: str, expected: tuple[str | None, int | None]) -> None:
    assert parse_channel_ref(ref) == expected


@pytest.mark.parametrize("ref", ["https://t.me/", "@", "ab", "t.me/c/x", "has space"])
def test_bad_channel_refs(ref: str) -> None:
    with pytest.raises(ValueError):
        parse_channel_ref(ref)


def test_watchlist_file_and_ids(tmp_path: Path) -> None:
    p = tmp_path / "w.toml"
    p.write_text('[[entities]]\nname = "Росатом"\naliases = ["Rosatom"]\n\n[[entities]]\nname = "УКТМК"\n'
                 'id = "uktmk"\nsilent = true\n', encoding="utf-8")
    specs = load_watchlist(p)
    assert [s.name for s in specs] == ["Росатом", "УКТМК"]
    assert specs[1].id == "uktmk" and specs[1].silent
    assert specs[0].id, "an id is derived from the name when none is given"
    p.write_text('[[entities]]\nname = "A"\nid = "x"\n\n[[entities]]\nname = "B"\nid = "x"\n')
    with pytest.raises(ConfigError, match=r"entities\[1\]\.id: 'x' is used by entities\[0\] too"):
        load_watchlist(p)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("tgram://123456789:AAFakeBotTokenSECRETxyz/-100777", "tgram://***"),
        ("discord://webhook_id/webhook_token", "discord://***"),
        ("mailto://user:pass@gmail.com", "mailto://***"),
        ("json://user:pass@127.0.0.1:9/x?token=abc", "json://127.0.0.1:9/***"),
        ("https://hooks.example.org/in/SECRET", "https://hooks.example.org/***"),
        ("forms://h.example:8080", "forms://h.example:8080"),
        ("not a url", "***"),
    ],
)
def test_redact_url_keeps_only_a_webhook_host(url: str, shown: str) -> None:
    assert redact_url(url) == shown


WATCH = '[[entities]]\nname = "Росатом"\nid = "rosatom"\naliases = ["Rosatom"]\n\n'
CHANNELS = '[[channels]]\nusername = "@rian_ru"\n\n[[channels]]\nid = -1001234567890\n\n'


def test_alert_routes_must_name_configured_entities_and_channels(write_config) -> None:
    ok = load_settings(write_config(
        WATCH + CHANNELS + '[[alerts]]\nname = "a"\nurl = "console://"\nentities = ["РОСАТОМ", "rosatom", "rosATOM"]\n'
        'channels = ["https://t.me/Rian_Ru", "1234567890", "-1001234567890", "РИА Новости"]\n'))
    assert ok.alerts[0].entities == ("РОСАТОМ", "rosatom", "rosATOM"), "routing values are kept as written"
    out = problems(write_config(
        WATCH + CHANNELS + '[[alerts]]\nname = "a"\nurl = "console://"\nentities = ["Росатомм", "Газпром"]\n'
        'channels = ["@ria_ru", "t.me/rian_ru", "555", "@x"]\n'))
    text = "\n".join(out)
    assert ("alerts[0].entities: 'Росатомм' is not a configured entity (name, id or alias); "
            "did you mean 'Росатом'?") in text
    assert "alerts[0].entities: 'Газпром' is not a configured entity" in text
    assert "alerts[0].channels: '@ria_ru' is not a configured channel; did you mean '@rian_ru'?" in text
    assert "alerts[0].channels: '555' is not a configured channel" in text
    assert "alerts[0].channels: '@x':" in text
    assert "t.me/rian_ru" not in text
    assert len(out) == 5 and all("(for example: " in p for p in out)


def test_empty_entity_and_alert_tables_are_reported(write_config) -> None:
    out = problems(write_config('[[entities]]\n# name = "Росатом"\n\n[[alerts]]\n# name = "x"\n# url = "console://"\n'))
    text = "\n".join(out)
    assert "entities[0].name: is required" in text
    assert "alerts[0].name: is required" in text and "alerts[0].url: is required" in text


def test_secret_key_in_file_reported_once(write_config) -> None:
    out = problems(write_config('[telegram]\napi_hash = "abc"\napi_id = 1\nsession = "1A"\n'))
    assert len(out) == 3 and all("secrets are read only from the environment" in p for p in out), out
    assert not any("unknown key" in p for p in out)


def test_fix_hints_are_right(write_config) -> None:
    out = problems(write_config('[[entities]]\nname = "Росатом"\nregex = "(unclosed"\n'))
    example = out[0].split("(for example: ", 1)[1].removesuffix(")")
    assert tomllib.loads(example)["regex"], "the regex example is valid TOML when copied"
    out = problems(write_config('[schedule]\ninterval = 300\njitter = 0,1\n'))
    assert len(out) == 1 and ": line 3, column 11: not valid TOML: " in out[0] and "interval = 300" not in out[0]
    assert "quotes, brackets and commas on line 3" in out[0]
    out = problems(write_config('[schedule]\njitter = [0.1\n'))
    assert "not valid TOML: Unclosed array" in out[0] and "interval = 300" not in out[0]
    for link in ("https://t.me/+AbCdEf123", "t.me/joinchat/AbCdEf123"):
        out = problems(write_config(f'[[channels]]\nusername = "{link}"\n'))
        assert "private invite link" in out[0] and "numeric id" in out[0] and "id = 1234567890" in out[0]


def test_example_database_defaults_to_the_data_dir(monkeypatch: pytest.MonkeyPatch, write_config) -> None:
    monkeypatch.setenv("TG_ALERT_URL", "tgram://123456:ABCDEF/42")
    monkeypatch.delenv("TGMONITOR_DATABASE_URL", raising=False)
    example = Path(__file__).parents[1] / "deploy" / "tgmonitor.example.toml"
    path = write_config(example.read_text(encoding="utf-8").replace('[database]\n', '[database]\n', 1))
    s = load_settings(path)
    assert tomllib.loads(example.read_text(encoding="utf-8")).get("database", {}).get("url") is None
    assert s.database.url == f"sqlite+aiosqlite:///{s.data_dir / 'tgmonitor.db'}"


# --------------------------------------------------------------------------- hostile files and values


def _config_check(path: Path) -> tuple[int, str]:
    """``tgmonitor config check`` in a real process: (exit code, stderr + stdout)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "monitor", "--config", str(path), "config", "check"],
                          capture_output=True, text=True, cwd=path.parent)
    return proc.returncode, proc.stderr + proc.stdout


def test_a_non_utf8_config_is_one_line_with_its_position(write_config, tmp_path: Path) -> None:
    path = write_config()
    path.write_bytes('[[entities]]\nname = "Росатом"\n'.encode("cp1251"))
    assert problems(path) == [f"{path}: line 2, column 9: not UTF-8 text (byte 0xd0); save the file as UTF-8, "
                              f"e.g. iconv -f cp1251 -t utf-8 tgmonitor.toml > tgmonitor.utf8.toml"]
    code, out = _config_check(path)
    assert code == 2 and out.count("\n") == 1 and "Traceback" not in out and "line 2, column 9" in out


def test_a_binary_config_or_env_file_is_one_line(write_config, tmp_path: Path) -> None:
    path = write_config()
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00\xd0\xff" * 20)
    [line] = problems(path)
    assert line.startswith(f"{path}: is not a text file") and "--config" in line
    code, out = _config_check(path)
    assert code == 2 and out.count("\n") == 1 and "Traceback" not in out
    path.write_text('[[entities]]\nname = "Росатом"\n', encoding="utf-8")
    (tmp_path / ".env").write_bytes("TG_API_HASH=пароль\n".encode("cp1251"))
    [line] = problems(path)
    assert line.startswith(f"{tmp_path / '.env'}: line 1, column 13: not UTF-8 text")
    code, out = _config_check(path)
    assert code == 2 and out.count("\n") == 1 and "Traceback" not in out


@pytest.mark.parametrize(("body", "expected"), [
    ('[database]\nurl = "postgresql://tgm:pw@127.0.0.1:fivefourthreetwo/tgm"\n',
     "database.url: the port 'fivefourthreetwo' is not a number (for example: url = \"postgresql://"),
    ('[database]\nurl = "postgresql://tgm@127.0.0.1:70000/tgm"\n',
     "database.url: the port 70000 is not between 1 and 65535"),
    ('[telegram]\nproxy = "socks5://127.0.0.1:port"\n', "telegram.proxy: the port 'port' is not a number"),
    ('[sources.web]\nproxy = "http://[::1]:99999"\n', "sources.web.proxy: the port 99999 is not between 1 and 65535"),
    ('[metrics]\nlisten = "127.0.0.1:65536"\n', "metrics.listen: the port 65536 is not between 1 and 65535"),
    ("[schedule]\ninterval = 99999999999999999999\n",
     "schedule.interval: must be at most 2592000 seconds (30 days), not 99999999999999999999 (for example: "),
    ('[[channels]]\nusername = "@rian_ru"\ninterval = 31536000\n',
     "channels[0].interval: must be at most 2592000 seconds (30 days), not 31536000"),
    ("[schedule]\nreread_hours = 1000000000\n", "schedule.reread_hours: must be at most 8760 hours (a year)"),
    ("[schedule]\nlease_seconds = 100000000000\n", "schedule.lease_seconds: must be at most 2592000 seconds"),
    ("[delivery]\nrepost_window_hours = 100000000000\n", "delivery.repost_window_hours: must be at most 8760 hours"),
], ids=["db-port-word", "db-port-range", "tg-proxy-port", "web-proxy-port", "metrics-port", "huge-interval",
        "huge-channel-interval", "huge-reread", "huge-lease", "huge-repost-window"])
def test_bad_ports_and_huge_numbers_are_one_line_naming_the_key(write_config, body: str, expected: str) -> None:
    path = write_config(body + '\n[[entities]]\nname = "Росатом"\n')
    [line] = problems(path)
    assert line.startswith(f"{path}: ") and expected in line and ":pw@" not in line  # no password shown


def test_existing_messages_for_small_numbers_are_unchanged(write_config) -> None:
    path = write_config('[schedule]\ninterval = 0\nreread_hours = -1\n\n[[channels]]\nusername = "@rian_ru"\n'
                        'interval = -5\n\n[delivery]\nrepost_window_hours = -2\n')
    assert problems(path) == [
        f"{path}: schedule.interval: must be greater than 0, not 0 (for example: interval = 300)",
        f"{path}: schedule.reread_hours: must be 0 or more, not -1 (for example: reread_hours = 48)",
        f"{path}: channels[0].interval: must be greater than 0, not -5 (for example: interval = 300)",
        f"{path}: delivery.repost_window_hours: must be 0 or more, not -2 (for example: repost_window_hours = 24)",
    ]


def test_config_check_names_an_unknown_or_unusable_apprise_url(write_config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_URL", "tgram://not-a-bot-token-at-all")
    path = write_config('[[entities]]\nname = "Росатом"\n\n'
                        '[[alerts]]\nname = "chat"\nurl = "tgrm://123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ/42"\n\n'
                        '[[alerts]]\nname = "ops"\nurl = "env:OPS_URL"\noperator = true\n\n'
                        '[[alerts]]\nname = "console"\nurl = "console://"\n\n'
                        '[[alerts]]\nname = "hook"\nurl = "json://127.0.0.1:9/hook"\n')
    code, out = _config_check(path)
    assert code == 2, out
    lines = out.strip().splitlines()
    assert lines == [
        f"{path}: alerts[0].url: unknown Apprise scheme 'tgrm://'; did you mean 'tgram://'? (for example: url = "
        '"tgram://BOT_TOKEN/CHAT_ID"; every scheme: https://github.com/caronc/apprise/wiki)',
        f"{path}: alerts[1].url: Apprise cannot use this tgram:// URL (a part is missing or malformed; for "
        "example: see https://github.com/caronc/apprise/wiki for the tgram:// form)",
    ]
    assert "ABCDEFGHIJ" not in out and "not-a-bot" not in out  # the URLs hold tokens: never printed
