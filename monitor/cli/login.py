"""``tgmonitor login``: Telethon's interactive sign-in; the session is stored 0600 or printed for TG_SESSION."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from monitor.cli.app import EXIT_FAILURE, EXIT_USAGE, CliState, fail, main, pass_state, run
from monitor.config import Settings


async def login(
    settings: Settings, *, print_session: bool, phone: Any, code: Any, password: Any
) -> tuple[str, str | None]:
    """Sign in (phone, code, 2FA password through the callbacks) and return (message, session string or None).

    The session is a file in the data dir created 0600 before Telethon writes to it, or — with
    ``print_session`` — a StringSession returned to the caller. Phone, code, hash and session never reach
    logs or error messages."""
    from telethon import errors
    from telethon.sessions import StringSession

    from monitor.sources.telethon import (
        NETWORK_ERRORS,
        ClientSetupError,
        TelegramUnreachable,
        default_client,
        make_client,
        network_reason,
        session_path,
    )

    try:
        if settings.telegram.client_factory:
            client = make_client(settings)  # a factory owns its session (tests, custom deployments)
        elif print_session:
            client = default_client(settings, session=StringSession())
        else:
            client = default_client(settings, create_session_file=True)
    except ClientSetupError as exc:
        raise LoginError(str(exc), EXIT_USAGE) from None
    old_umask = os.umask(0o077)  # SQLite's journal files beside the session must be private too
    try:
        try:
            await client.connect()
            authorised = await client.is_user_authorized()
        except NETWORK_ERRORS as exc:  # IncompleteReadError is an EOFError: click would say only "Aborted!"
            raise LoginError(str(TelegramUnreachable(network_reason(exc))), EXIT_FAILURE) from None
        if authorised and not print_session:
            return "already logged in; the session is valid", None
        try:
            await client.start(phone=phone, code_callback=code, password=password, max_attempts=3)
        except errors.PhoneNumberInvalidError:
            raise LoginError("Telegram does not accept that phone number (use the international format, "
                             "e.g. +7...)", EXIT_FAILURE) from None
        except (errors.PhoneCodeInvalidError, errors.PhoneCodeExpiredError):
            raise LoginError("the login code was wrong or expired; run `tgmonitor login` again", EXIT_FAILURE) from None
        except errors.PasswordHashInvalidError:
            raise LoginError("the two-step verification password was wrong", EXIT_FAILURE) from None
        except errors.FloodWaitError as exc:
            raise LoginError(f"Telegram asks to wait {exc.seconds} s before trying to log in again",
                             EXIT_FAILURE) from None
        except errors.RPCError as exc:
            raise LoginError(f"login failed: Telegram error {exc.message}", EXIT_FAILURE) from None
        except NETWORK_ERRORS as exc:
            raise LoginError(str(TelegramUnreachable(network_reason(exc))), EXIT_FAILURE) from None
        except RuntimeError:  # Telethon gives up after max_attempts wrong codes or passwords
            raise LoginError("the login code or password was wrong 3 times; run `tgmonitor login` again",
                             EXIT_FAILURE) from None
        if print_session:
            saved = client.session.save() if isinstance(client.session, StringSession) else None
            if not saved:
                raise LoginError("logged in, but this client's session cannot be printed (a custom "
                                 "client_factory keeps its own session)", EXIT_FAILURE)
            return "logged in; put this line in .env beside the config (it is a password: keep it secret)", saved
        path = session_path(settings)
        if path.exists():
            os.chmod(path, 0o600)
        return f"logged in; the session is stored in {path} (mode 0600)", None
    finally:
        os.umask(old_umask)
        await client.disconnect()


def interactive() -> bool:
    """Can we ask for the phone, code and password? (stdin is a terminal)"""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):  # closed or detached stdin
        return False


class LoginError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@main.command("login")
@click.option("--print-session", is_flag=True,
              help="Print a session string for TG_SESSION in .env instead of writing a session file.")
@click.option("--account", default=None, metavar="NAME",
              help="With [[telegram.accounts]]: the account to log in (its session_file, or TG_SESSION_<NAME>).")
@pass_state
def login_cmd(state: CliState, print_session: bool, account: str | None) -> None:
    """Log the Telegram account in (phone, code, two-step password) for the Telethon source.

    Needs TG_API_ID and TG_API_HASH (from my.telegram.org) in the environment or .env. The session is
    stored as a file readable only by you in the data directory ([telegram] session_file), or printed
    with --print-session for TG_SESSION. Run it again when the service says the session is revoked.
    With several accounts ([[telegram.accounts]]) name the one to log in: --account NAME (its session goes
    to its session_file, or --print-session prints TG_SESSION_<NAME>=...).

    \b
    Examples:
      tgmonitor login
      tgmonitor --config /etc/tgmonitor/tgmonitor.toml login --print-session
      tgmonitor login --account reserve
    """
    if not interactive():
        # Before connecting: with no terminal the prompts would read EOF, leave an unauthorised session
        # file behind and end in a bare "Aborted!".
        fail("login needs an interactive terminal (run `tgmonitor login` in a terminal, e.g. over ssh; "
             "then copy the session file or use --print-session for TG_SESSION)", EXIT_FAILURE)
    s = state.settings()
    env_name = "TG_SESSION"
    if s.telegram.accounts or account is not None:
        from monitor.config import account_settings, find_account, session_env

        names = ", ".join(a.name for a in s.telegram.accounts)
        if account is None:
            fail(f"several accounts are configured: name the one to log in with --account ({names})", EXIT_USAGE)
        acc = find_account(s, account)
        if acc is None:
            fail(f"--account {account}: no such account in [[telegram.accounts]] "
                 f"({'configured: ' + names if names else 'none is configured'})", EXIT_USAGE)
        s = account_settings(s, acc.name)
        env_name = session_env(acc.name)
    try:
        message, session = run(login(
            s, print_session=print_session,
            phone=lambda: click.prompt("Phone number (international format)", err=True),
            code=lambda: click.prompt("Login code Telegram sent you", err=True),
            password=lambda: click.prompt("Two-step verification password", hide_input=True, err=True),
        ))
    except LoginError as exc:
        fail(str(exc), exc.code)
    except (KeyboardInterrupt, click.Abort):
        fail("login cancelled", EXIT_FAILURE)
    except Exception as exc:  # Telethon's own surprises: one line, never a traceback (and no secrets in it)
        fail(f"login failed: {type(exc).__name__}: {exc}", EXIT_FAILURE)
    click.echo(message, err=True)
    if session:
        click.echo(f"{env_name}={session}")
