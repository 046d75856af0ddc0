"""Log lines never carry a secret: ours, and the libraries' (Apprise prints Bot API URLs at debug level)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from monitor.config import load_settings
from monitor.logs import _TextFormatter, redact, register_url_secrets


def line(message: str) -> str:
    """``message`` as a third-party logger's record comes out of our text formatter."""
    rec = logging.LogRecord("apprise", logging.DEBUG, __file__, 1, message, None, None)
    return _TextFormatter().format(rec)


def test_telegram_api_url_of_a_registered_alert_url_is_redacted() -> None:
    register_url_secrets("tgram://987654321:ShortFakeTokenQQ/-100555")
    out = line("Telegram POST URL: https://api.telegram.org/bot987654321:ShortFakeTokenQQ/sendMessage")
    assert "ShortFakeTokenQQ" not in out and "987654321" not in out
    assert "https://api.telegram.org/bot***/sendMessage" in out


def test_real_shaped_bot_token_is_redacted_inside_bot_api_paths_unregistered() -> None:
    token = "1234567890:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw9"
    out = redact(f"https://api.telegram.org/bot{token}/getMe")
    assert "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw9" not in out


def test_url_parts_registered_by_scheme() -> None:
    register_url_secrets("discord://webhookid12345/webhooktokenABCDEF")
    register_url_secrets("json://someone:pw-Secret-77@hooks.example.org:8443/in/pathSecret88?token=queryToken99")
    text = redact("webhookid12345 webhooktokenABCDEF pw-Secret-77 pathSecret88 queryToken99 hooks.example.org")
    assert text == "*** *** *** *** *** hooks.example.org", "a webhook's host stays readable"


def test_database_and_proxy_urls_hide_only_the_password() -> None:
    register_url_secrets("postgresql://monitor_user:dbPassw0rd!@db.internal:5432/tgmonitor_prod")
    register_url_secrets("socks5://proxyuser:pr0xyPassw0rd@10.1.2.3:1080")
    assert redact("dbPassw0rd! pr0xyPassw0rd db.internal tgmonitor_prod") == "*** *** db.internal tgmonitor_prod"


def test_loading_settings_registers_alert_proxy_and_database_secrets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TGMONITOR_DATABASE_URL", raising=False)
    monkeypatch.setenv("BOT_URL", "tgram://111222333:EnvFakeTokenZZ/42")
    cfg = tmp_path / "tgmonitor.toml"
    cfg.write_text('[database]\nurl = "postgresql://u:dbSecretPW1@127.0.0.1/x"\n\n'
                   '[telegram]\nproxy = "socks5://u:proxySecretPW2@127.0.0.1:1080"\n\n'
                   '[[alerts]]\nname = "bot"\nurl = "env:BOT_URL"\n\n'
                   '[[alerts]]\nname = "inline"\nurl = "tgram://444555666:InlineFakeTokenYY/7"\n', encoding="utf-8")
    load_settings(cfg)
    out = line("x EnvFakeTokenZZ InlineFakeTokenYY dbSecretPW1 proxySecretPW2 y")
    assert out.endswith("apprise: x *** *** *** *** y")
