"""``tgmonitor accounts`` (the Telegram accounts: state, channels, joined, requests, flood waits) and
``tgmonitor join`` (join public channels with the account that has room, slowly)."""

from __future__ import annotations

import json
from typing import Any

import click

from monitor.cli.app import EXIT_FAILURE, EXIT_USAGE, CliState, fail, main, pass_state, run


async def collect_accounts(settings: Any) -> list[dict[str, Any]]:
    """One dict per account (read-only: never migrates, never writes)."""
    from monitor.accounts.registry import summary
    from monitor.config import account_names
    from monitor.runtime import open_reader

    async with open_reader(settings) as engine:
        return await summary(engine, account_names(settings), settings.schedule.lease_seconds)


def _yes_no(v: bool | None) -> str:
    return "?" if v is None else "yes" if v else "NO"


def render_accounts(rows: list[dict[str, Any]]) -> str:
    """The human table: one line per account, then the reason of any account that is out."""
    head = ("ACCOUNT", "STATE", "AUTHORISED", "CHANNELS", "JOINED", "REQUESTS/1H", "FLOOD WAITS/1H", "RUNNING")
    table = [head]
    for r in rows:
        table.append((r["account"] + ("" if r["configured"] else " (not configured)"), r["state"],
                      _yes_no(r["authorised"]), str(r["channels"]), str(r["joined"]), str(r["requests_1h"]),
                      str(r["flood_waits_1h"]) + (f" (until {r['flood_wait_until'][11:19]})"
                                                  if r["flood_wait_until"] else ""),
                      r["owner"] or "-" if r["running"] else "no"))
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)).rstrip() for t in table]
    for r in rows:
        if r["reason"]:
            retry = f"; tried again at {r['retry_at'][:16].replace('T', ' ')} UTC" if r["retry_at"] else ""
            lines.append(f"{r['account']}: {r['state']} since {(r['since'] or '')[:16].replace('T', ' ')}: "
                         f"{r['reason']}{retry}")
    return "\n".join(lines)


@main.command("accounts")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Human table or one JSON document.")
@pass_state
def accounts_cmd(state: CliState, fmt: str) -> None:
    """Show each Telegram account: state, channels it reads, channels it joined, requests and flood waits.

    STATE is active, limited (PEER_FLOOD or a long flood wait: tried again later), unreachable (its proxy),
    banned or dead (run `tgmonitor login --account NAME`); the channels of an account that is out are read by
    the others. CHANNELS are the channels it reads now, JOINED those it has joined (a joined channel costs a
    share of one request a cycle, another one a request each). Works while the service runs (it only reads).

    \b
    Examples:
      tgmonitor accounts
      tgmonitor accounts --format json | jq '.[] | select(.state != "active")'
    """
    s = state.settings()
    if not s.telegram.accounts:
        if fmt == "json":  # scripts get JSON whatever the config: no accounts table → an empty list
            click.echo("[]")
        else:
            click.echo("one Telegram account ([telegram]); list several as [[telegram.accounts]] to see them here")
        return
    rows = run(collect_accounts(s))
    click.echo(json.dumps(rows, ensure_ascii=False, indent=2) if fmt == "json" else render_accounts(rows))


@main.command("join")
@click.argument("channels", nargs=-1, required=True)
@click.option("--account", default=None, metavar="NAME", help="Join with this account (default: the one with "
              "the most room; a channel an account is in already is left alone).")
@click.option("--delay", type=click.FloatRange(min=0), default=120.0, show_default=True, metavar="SECONDS",
              help="Seconds between two joins (±25 percent at random). Below 30 risks flood waits and a limited "
              "account.")
@click.option("--max", "per_account", type=click.IntRange(min=1, max=500), default=20, show_default=True,
              metavar="N", help="Joins per account in this run.")
@pass_state
def join_cmd(state: CliState, channels: tuple[str, ...], account: str | None, delay: float,
             per_account: int) -> None:
    """Join public channels with the account that has room, one every two minutes.

    CHANNELS are public channels: @name, name or a t.me link. Telegram limits how fast an account may join
    and caps it at 500 channels, so by default this joins one channel every ~2 minutes and at most 20 per
    account per run; a flood wait stops that account for this run. Joined channels are cheap to poll (a share
    of one request a cycle instead of one each). Needs the sessions, so the service must not be running.

    \b
    Examples:
      tgmonitor join @rian_ru @tass_agency
      tgmonitor join $(cat channels.txt) --account reserve --max 10
    """
    from monitor.jobs.join import CAREFUL_DELAY, JoinError, join_channels
    from monitor.lock import LockHeld, SessionLock, lock_path
    from monitor.runtime import open_runtime

    s = state.settings()
    if delay < CAREFUL_DELAY:
        click.echo(f"warning: --delay {delay:g} is faster than a careful person joins ({CAREFUL_DELAY:g} s or "
                   "more): Telegram may answer with long flood waits or limit the account", err=True)
    lock = SessionLock(lock_path(s))
    try:
        lock.acquire()
    except LockHeld as exc:
        fail(str(exc), EXIT_FAILURE)
    failed = 0

    def report(r: Any) -> None:
        nonlocal failed
        failed += r.outcome == "failed"
        who = f" ({r.account})" if r.account else ""
        click.echo(f"{r.channel}: {r.outcome}{who}{': ' + r.detail if r.detail else ''}")

    async def go() -> list[Any]:
        async with open_runtime(s) as rt:
            return await join_channels(rt, channels, account=account, delay=delay, per_account=per_account,
                                       report=report)

    try:
        results = run(go())
    except JoinError as exc:
        fail(str(exc), EXIT_USAGE if exc.code == 2 else exc.code)
    finally:
        lock.release()
    joined = sum(1 for r in results if r.outcome == "joined")
    click.echo(f"joined {joined} of {len(results)}", err=True)
    if failed:
        raise SystemExit(EXIT_FAILURE)
