"""Configuration: every key of DESIGN.md's table, one clear message per problem, secrets from the env only."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import ConfigError, load_settings, load_watchlist, parse_channel_ref, to_async_url


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
