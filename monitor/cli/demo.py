"""``tgmonitor demo``: see the whole pipeline work offline, with no config and no credentials."""

from __future__ import annotations

from pathlib import Path

import click

from monitor.cli.app import EXIT_FAILURE, fail, main
from monitor.logs import setup_logging


@main.command("demo")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="Keep the demo's data (SQLite database) in DIR instead of a throw-away folder.")
def demo_cmd(keep: Path | None) -> None:
    """Run the pipeline on a bundled sample channel: import, match, alert (to the console), summarise.

    Offline, no config file, no Telegram account; takes a few seconds.

    \b
    Examples:
      tgmonitor demo
      tgmonitor demo --keep ./demo-data && cd demo-data && tgmonitor mentions
    """
    from monitor.demo import demo

    setup_logging("warning", "text")  # the demo's own output is the story; routine log lines would drown it
    try:
        code = demo(click.echo, keep=keep)
    except Exception as exc:  # the first command a newcomer runs must never end in a traceback
        fail(f"the demo failed: {type(exc).__name__}: {exc}", EXIT_FAILURE)
    if code == 0:  # the last word: where to look at the results with something better than a terminal
        if keep is not None:
            click.echo(f"\nBrowse it in the web dashboard:  tgmonitor --config {keep / 'tgmonitor.toml'} web"
                       "   then open http://127.0.0.1:8080/")
        else:
            click.echo("\nTo browse the results in the web dashboard, keep them:  tgmonitor demo --keep DIR"
                       "  then  tgmonitor --config DIR/tgmonitor.toml web")
    raise SystemExit(code)
