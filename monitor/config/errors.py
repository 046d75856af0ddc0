"""The error reporter: ``ConfigError`` and the ``Checker`` that collects every problem of one file as one
line each (file, key path, what is wrong, an example of a right value), with "did you mean" hints.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A configuration file (or environment) that cannot be used; ``problems`` holds one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Checker:
    """Collects problems while reading one TOML document."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def fail(self, key: str, what: str, example: str) -> None:
        self.problems.append(f"{self.source}: {key}: {what} (for example: {example})")

    def table(self, data: Any, key: str, allowed: Mapping[str, str],
              reported: frozenset[str] = frozenset()) -> dict[str, Any]:
        """Check ``data`` is a table and has only ``allowed`` keys (key -> example); keys in ``reported``
        get their own message from the caller, so no "unknown key" line here."""
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.fail(key, "must be a table", f"[{key}]")
            return {}
        for k in data:
            if k not in allowed and k not in reported:
                near = _nearest(k, allowed)
                hint = f"did you mean '{near}'? " if near else ""
                self.problems.append(
                    f"{self.source}: {key + '.' if key else ''}{k}: unknown key; {hint}"
                    f"allowed keys here: {', '.join(sorted(allowed))}"
                )
        return data

    def get(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        kind: type | tuple[type, ...],
        default: Any,
        example: str,
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        if key not in data:
            return default
        value = data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok and float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            names = " or ".join(_type_name(k) for k in kinds)
            self.fail(path, f"must be {names}, not {value!r}", example)
            return default
        if check is not None:
            msg = check(value)
            if msg:
                self.fail(path, msg, example)
                return default
        return value

    def str_list(self, data: Mapping[str, Any], key: str, path: str, example: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(path, "must be a list of strings", example)
            return ()
        return tuple(value)


def _type_name(t: type) -> str:
    return {int: "a whole number", float: "a number", str: "a string", bool: "true or false",
            list: "a list", dict: "a table"}.get(t, t.__name__)


def _nearest(word: str, allowed: Mapping[str, str]) -> str | None:
    import difflib

    m = difflib.get_close_matches(word, list(allowed), n=1, cutoff=0.7)
    return m[0] if m else None


def positive(v: Any) -> str | None:
    """A ``check`` for ``Checker.get``: the number must be above zero."""
    return None if v > 0 else f"must be greater than 0, not {v}"


MAX_INTERVAL = 30 * 86400  # seconds: a longer poll interval is a typo (and overflows the scheduler's dates)
MAX_HOURS = 365 * 24  # a window longer than a year is a typo (and overflows date arithmetic)


def interval(v: Any) -> str | None:
    """A ``check`` for poll intervals in seconds: above zero and at most 30 days."""
    if v <= 0:
        return positive(v)
    return None if v <= MAX_INTERVAL else f"must be at most {MAX_INTERVAL} seconds (30 days), not {v}"


def hours(v: Any) -> str | None:
    """A ``check`` for windows in hours: 0 or more and at most a year."""
    if v < 0:
        return f"must be 0 or more, not {v}"
    return None if v <= MAX_HOURS else f"must be at most {MAX_HOURS} hours (a year), not {v}"


def fraction(v: Any) -> str | None:
    """A ``check`` for ``Checker.get``: the number must be between 0 and 1."""
    return None if 0 <= v <= 1 else f"must be between 0 and 1, not {v}"


def encoding_problem(path: Path, raw: bytes, exc: UnicodeDecodeError) -> str:
    """A file that is not UTF-8 text: where, and how to fix it (binary files are told apart)."""
    if b"\0" in raw[:8192]:
        if path.name == ".env":
            return (f"{path}: is not a text file (it holds binary data); .env holds KEY=value lines in UTF-8 "
                    f"(e.g. TG_API_ID=1234567)")
        return (f"{path}: is not a text file (it holds binary data); a configuration is a UTF-8 TOML file "
                f"(check the path given to --config, e.g. --config /etc/tgmonitor/tgmonitor.toml)")
    line = raw.count(b"\n", 0, exc.start) + 1
    column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
    return (f"{path}: line {line}, column {column}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file "
            f"as UTF-8, e.g. iconv -f cp1251 -t utf-8 {path.name} > {path.stem}.utf8{path.suffix}")


def toml_problem(path: Path, exc: tomllib.TOMLDecodeError) -> str:
    """tomllib's own words and position, and what usually causes it."""
    msg = str(exc)
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)\s*$", msg)
    if m:
        what = msg[: m.start()]
        line = m.group(1)
        return (f"{path}: line {line}, column {m.group(2)}: not valid TOML: {what} (check the quotes, "
                f"brackets and commas on line {line}: strings need matching quotes, a backslash inside "
                f"\"...\" must be doubled or the string written in single quotes, e.g. regex = 'Росатом\\w*')")
    return (f"{path}: not valid TOML: {msg} (check for an unclosed quote, bracket or table header, "
            f"e.g. name = \"Росатом\" and [[entities]])")
