"""``tgmonitor alerts test|list|retry``: check destinations and look after the outbox."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from monitor.cli.app import EXIT_FAILURE, EXIT_USAGE, CliState, fail, main, pass_state, run

if TYPE_CHECKING:
    from monitor.alerts import outbox
    from monitor.models import Alert

STATUSES = ("pending", "sent", "failed", "silent")  # monitor.alerts.outbox.STATUSES (checked by tests/test_cli.py)
FAILED = "failed"


@main.group("alerts")
def alerts_group() -> None:
    """Alert destinations and the outbox.

    \b
    Examples:
      tgmonitor alerts test
      tgmonitor alerts list --status failed
      tgmonitor alerts retry --failed
    """


@alerts_group.command("test")
@pass_state
def alerts_test(state: CliState) -> None:
    """Send a test message to every destination; one line each with ok or the error (exit 1 if any failed).

    \b
    Example:
      tgmonitor --config tgmonitor.toml alerts test
      team-chat: ok
      webhook: error: A Connection error occurred sending JSON notification to 127.0.0.1.
    """
    from monitor.alerts.deliver import send_test

    s = state.settings()
    if not s.alerts:
        fail("no [[alerts]] destinations are configured (add one, e.g. url = \"console://\")", EXIT_USAGE)
    results = run(send_test(s))
    for dest, res in results:
        click.echo(f"{dest.name}: ok" if res.ok else f"{dest.name}: error: {res.error}")
    if any(not r.ok for _, r in results):
        raise SystemExit(EXIT_FAILURE)


@alerts_group.command("list")
@click.option("--status", type=click.Choice(list(STATUSES)), default=None, help="Only alerts in this state.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N alerts (newest first).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "jsonl", "csv"]), default="table",
              show_default=True)
@pass_state
def alerts_list(state: CliState, status: str | None, limit: int | None, fmt: str) -> None:
    """List outbox rows, newest first.

    \b
    Examples:
      tgmonitor alerts list
      tgmonitor alerts list --status failed --format jsonl
    """
    from monitor.alerts import outbox
    from monitor.runtime import open_reader

    s = state.settings()

    async def go() -> list[outbox.AlertRow]:
        async with open_reader(s) as engine:  # only reads: no migration, no write, no file created
            return await outbox.list_alerts(engine, status=status, limit=limit)

    rows = run(go())
    docs = [r.as_dict() for r in rows]
    if fmt == "json":
        click.echo(json.dumps(docs, ensure_ascii=False, indent=2))
    elif fmt == "jsonl":
        for d in docs:
            click.echo(json.dumps(d, ensure_ascii=False))
    elif fmt == "csv":
        from monitor.archive import csv_line  # spreadsheet-safe cells, like every other CSV we write

        lines = [csv_line(_FIELDS)]
        for d in docs:
            lines.append(csv_line(", ".join(v) if isinstance(v, list) else ("" if v is None else v)
                                  for v in (d.get(k) for k in _FIELDS)))
        click.echo("\n".join(lines))
    else:
        if not rows:
            click.echo("no alerts")
            return
        click.echo(alerts_table(rows))


def alerts_table(rows: list[outbox.AlertRow]) -> str:
    """The human form of ``alerts list``: a header row and aligned columns (like ``status``)."""
    head = ("ID", "CODE", "STATUS", "TRIES", "DESTINATION", "KIND", "WHEN", "WHERE", "ENTITIES")
    table: list[tuple[str, ...]] = [head]
    errors = [""]
    for r in rows:
        table.append((str(r.id), f"#{r.code}", r.status, f"{r.attempts}x", r.destination, r.kind,
                      (r.sent_at or r.created_at).strftime("%Y-%m-%d %H:%M"),
                      f"{r.channel}/{r.message_id}" if r.channel else "-", ", ".join(r.entities) or "-"))
        err = " ".join((r.last_error or "").split())
        errors.append(f"({err})" if r.status == FAILED and err else "")
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    right = {0, 3}  # numbers
    lines = []
    for t, err in zip(table, errors, strict=True):
        cells = [v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(t, widths, strict=True))]
        lines.append(("  ".join(cells) + ("  " + err if err else "")).rstrip())
    return "\n".join(lines)


_FIELDS = ("id", "code", "destination", "kind", "status", "attempts", "channel", "message_id", "entities",
           "also_in", "created_at", "sent_at", "next_attempt_at", "last_error")


@alerts_group.command("retry")
@click.argument("ref", required=False)
@click.option("--failed", "all_failed", is_flag=True, help="Every failed alert.")
@pass_state
def alerts_retry(state: CliState, ref: str | None, all_failed: bool) -> None:
    """Make a failed (or waiting) alert due now, by id or code; or every failed one with --failed.

    The next `run --once` or the running service delivers it.

    \b
    Examples:
      tgmonitor alerts retry 42
      tgmonitor alerts retry k3x9d2m
      tgmonitor alerts retry --failed
    """
    if (ref is None) == (not all_failed):
        fail("give an alert id or code, or --failed (for example: tgmonitor alerts retry --failed)", EXIT_USAGE)
    from monitor.alerts import outbox
    from monitor.runtime import open_runtime

    s = state.settings()

    async def go() -> tuple[list[Alert], list[Alert]]:
        async with open_runtime(s) as rt:
            found = await outbox.find_alerts(rt.engine, ref) if ref is not None else []
            if len(found) > 1:  # an old 6-character code two alerts share, or an id that is also a code
                return [], found
            return list(await outbox.retry_alerts(rt.engine, ref=ref, failed=all_failed)), list(found)

    rows, found = run(go())
    if ref is not None and not found:
        fail(f"no alert with id or code {ref!r} (see tgmonitor alerts list)", EXIT_USAGE)
    if len(found) > 1:
        ids = ", ".join(str(a.id) for a in sorted(found, key=lambda a: a.id))
        fail(f"{ref!r} names {len(found)} alerts (ids {ids}; codes made before 7-character codes could repeat): "
             f"retry one by its id, e.g. tgmonitor alerts retry {min(a.id for a in found)}", EXIT_USAGE)
    if ref is not None and not rows:
        fail(f"alert {ref} is {found[0].status}; only failed or pending alerts can be retried", EXIT_FAILURE)
    click.echo(f"{len(rows)} alert(s) due again")
