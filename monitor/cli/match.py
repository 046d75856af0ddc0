"""``tgmonitor match``: run the matcher on JSON Lines, for tuning a watchlist and for evaluation."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import click

from monitor.cli.app import main
from monitor.config import ConfigError, load_watchlist
from monitor.config.entities import entity_warnings
from monitor.matching import Watchlist, WatchlistError


def match_lines(watchlist: Watchlist, lines: Iterable[bytes | str], out: IO[str], err: IO[str]) -> int:
    """Match every ``{"id": ..., "text": ...}`` line and write one JSON line per match to ``out``.

    A malformed line is reported on ``err`` as ``line N: <problem>`` and skipped, so one bad record
    never stops an evaluation run. Returns the number of malformed lines.
    """
    bad = 0
    for lineno, raw in enumerate(lines, start=1):
        problem, record = _parse(raw)
        if problem is not None:
            if problem:
                bad += 1
                err.write(f"line {lineno}: {problem}\n")
            continue
        assert record is not None
        text = record["text"]
        for m in watchlist.find(text):
            obj = {"id": record["id"], "entity": m.entity, "start": m.start, "end": m.end, "surface": m.surface}
            out.write(json.dumps(obj, ensure_ascii=False) + "\n")
    return bad


def _parse(raw: bytes | str) -> tuple[str | None, dict[str, Any] | None]:
    """(problem, record); problem "" means a blank line to skip silently."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"not valid UTF-8 ({exc.reason} at byte {exc.start})", None
    line = raw.strip().lstrip("\ufeff")
    if not line:
        return "", None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg} at column {exc.colno})", None
    if not isinstance(record, dict):
        return f'expected an object {{"id": ..., "text": "..."}}, got {type(record).__name__}', None
    if "id" not in record:
        return 'missing "id"', None
    if not isinstance(record.get("text"), str):
        return '"text" is missing or not a string', None
    return None, record


_LANG_TITLES = {"ru": "Russian forms", "kk": "Kazakh forms", "en": "English forms", "regex": "pattern"}


def explain_text(watchlist: Watchlist, name: str) -> str:
    """Human-readable list of the surface forms generated for one entity, by language (``--explain``)."""
    forms = watchlist.explain_forms(name)
    key = name.casefold()
    spec = next(
        (s for s in watchlist.entities.values() if s.id == name or s.name.casefold() == key),
        None,
    ) or next((s for s in watchlist.entities.values() if any(a.casefold() == key for a in s.aliases)), None)
    lines = [f"{spec.name} (id: {spec.id})" if spec else name]
    for alias, by_lang in forms.items():
        lines.append(f"  {alias}  ({sum(map(len, by_lang.values()))} forms)")
        for lang, fs in by_lang.items():
            lines.append(f"    {_LANG_TITLES.get(lang, lang)} ({len(fs)}):")
            lines.extend(f"      {f}" for f in fs)
    return "\n".join(lines)


def watchlist_languages(path: Path) -> tuple[str, ...]:
    """``[matching] languages`` of the watchlist file (all three when it does not say); ConfigError if bad."""
    from monitor.config import read_toml
    from monitor.config.errors import Checker
    from monitor.config.sections import read_matching

    chk = Checker(str(path))
    langs = read_matching(chk, read_toml(path)).languages
    if chk.problems:
        raise ConfigError(chk.problems)
    return langs


@main.command("match")
@click.option("--watchlist", "watchlist_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="TOML file with [[entities]] tables (the main config works too; "
              "default: the --config file).")
@click.option("--explain", "explain", metavar="NAME", default=None,
              help="Print the surface forms generated for entity NAME (name or id) and exit.")
@click.argument("input_file", metavar="[INPUT]", type=click.File("rb"), default="-")
@click.pass_context
def match_command(ctx: click.Context, watchlist_path: Path | None, explain: str | None,
                  input_file: IO[bytes]) -> None:
    """Find watchlist entities in JSON Lines posts.

    INPUT (default stdin) has one {"id": ..., "text": "..."} per line; the output has one
    {"id", "entity", "start", "end", "surface"} line per match, offsets into the original text.
    A malformed line is reported on stderr as "line N: ..." and skipped.

    \b
    Examples:
      tgmonitor match --watchlist watchlist.toml posts.jsonl
      echo '{"id": 1, "text": "Акции Росатома выросли"}' | tgmonitor match --watchlist w.toml
      tgmonitor match --watchlist watchlist.toml --explain Росатом
    """
    path = watchlist_path
    if path is None:
        path = getattr(ctx.obj, "config_path", None) or Path("tgmonitor.toml")
    try:
        specs = load_watchlist(path)
        for line in entity_warnings(specs, str(path)):
            click.echo(f"warning: {line}", err=True)
        watchlist = Watchlist.compile(specs, languages=watchlist_languages(path))
    except (ConfigError, WatchlistError) as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(2) from None
    except OSError as exc:
        click.echo(f"{path}: {exc.strerror or exc}", err=True)
        raise SystemExit(2) from None
    if explain is not None:
        try:
            click.echo(explain_text(watchlist, explain))
        except KeyError:
            click.echo(f"no entity named {explain!r} (name, alias or id) in {path}", err=True)
            raise SystemExit(2) from None
        return
    match_lines(watchlist, input_file, sys.stdout, sys.stderr)
    sys.stdout.flush()
