"""HTML pieces the templates cannot build safely on their own: highlighted snippets and SVG charts.

Everything that comes from the database (post text, channel titles, entity names) is escaped here or by
the templates' autoescaping; the only markup added is ``<mark>`` around matched words and the chart's
own SVG elements. Snippets are cut with :mod:`monitor.fulltext` (the CLI's snippet code) using private-use
characters as markers, so a post that itself contains ``**`` or ``<mark>`` cannot forge a highlight.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime

from markupsafe import Markup, escape

from monitor import fulltext
from monitor.health import age_label

# Private-use code points: never meaningful in a post, and one code point each, so swapping any that a post
# does contain for U+FFFD keeps every offset valid.
_OPEN, _CLOSE = "\ue000", "\ue001"
_MARKS = (_OPEN, _CLOSE)


def _clean(text: str) -> str:
    return text.replace(_OPEN, "\ufffd").replace(_CLOSE, "\ufffd")


def _to_html(marked: str) -> Markup:
    return Markup(str(escape(marked)).replace(_OPEN, "<mark>").replace(_CLOSE, "</mark>"))


def highlight_spans(text: str, spans: Iterable[tuple[int, int]], *, width: int = 320) -> Markup:
    """About ``width`` characters of ``text`` around the spans, each span in ``<mark>``, the rest escaped."""
    return _to_html(fulltext.mark_spans(_clean(text), sorted(set(spans)), width=width, mark=_MARKS))


def highlight_words(text: str, words: Sequence[str], *, width: int = 320) -> Markup:
    """A snippet of ``text`` with every form of the query's ``words`` in ``<mark>`` (the search page)."""
    return _to_html(fulltext.mark_snippet(_clean(text), words, width=width, mark=_MARKS))


def diff_html(before: str | None, after: str) -> Markup:
    """``after`` with what changed since ``before`` marked word by word: ``<del>`` removed, ``<ins>`` added.

    Both texts are escaped piece by piece; with no earlier version the text is shown as it is."""
    if before is None:
        return Markup(escape(after))
    a, b = _WORDS.findall(before), _WORDS.findall(after)
    out: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(str(escape("".join(b[j1:j2]))))
            continue
        if i2 > i1:
            out.append(f"<del>{escape(''.join(a[i1:i2]))}</del>")
        if j2 > j1:
            out.append(f"<ins>{escape(''.join(b[j1:j2]))}</ins>")
    return Markup("".join(out))


_WORDS = re.compile(r"\s+|\w+|[^\w\s]")


def ago(seconds: int | None) -> str:
    """``45s``, ``12m``, ``5h``, ``3d`` (the CLI's ``status`` units)."""
    return "—" if seconds is None else age_label(seconds)


def when(value: datetime | str | None) -> str:
    """A UTC time as ``2025-03-01 10:30`` (ISO strings from the status snapshot too)."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value[:16].replace("T", " ")
    return f"{value:%Y-%m-%d %H:%M}"


def duration(seconds: float | None) -> str:
    """A latency: ``850 ms``, ``12.4 s``, ``6.5 min``."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} d"  # an imported or backfilled old post alerted late


# --------------------------------------------------------------------------------------------- charts

PALETTE = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")


def line_chart(periods: Sequence[date], series: Sequence[tuple[str, Sequence[int]]], *, title: str,
               width: int = 760, height: int = 240) -> Markup:
    """An SVG line chart drawn on the server: one line per (name, values), a legend, y gridlines, date ticks.

    The SVG scales to its container (viewBox), needs no script (the CSP allows none inline), and each point
    carries a ``<title>`` tooltip. Names are escaped."""
    if not periods or not series:
        return Markup("")
    left, right, top, bottom = 44, 12, 12, 28
    legend_rows = (len(series) + 2) // 3
    total_h = height + legend_rows * 18
    pw, ph = width - left - right, height - top - bottom
    top_value = max(1, *(max(v, default=0) for _, v in series))
    step = _nice_step(top_value)
    y_max = step * -(-top_value // step)
    n = len(periods)

    def x(i: int) -> float:
        return left + (pw * i / (n - 1) if n > 1 else pw / 2)

    def y(v: float) -> float:
        return top + ph - ph * v / y_max

    out = [f'<svg class="chart" viewBox="0 0 {width} {total_h}" role="img" aria-label="{escape(title)}" '
           f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for k in range(0, y_max + 1, step):  # gridlines with their values
        out.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(k):.1f}" y2="{y(k):.1f}"/>'
                   f'<text class="tick" x="{left - 6}" y="{y(k) + 4:.1f}" text-anchor="end">{k}</text>')
    every = max(1, -(-n // 8))  # at most ~8 date labels
    for i in range(0, n, every):
        out.append(f'<text class="tick" x="{x(i):.1f}" y="{height - 8}" text-anchor="middle">'
                   f'{periods[i]:%d.%m}</text>')
    for idx, (name, values) in enumerate(series):
        color = PALETTE[idx % len(PALETTE)]
        pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        out.append(f'<g class="series"><polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>')
        for i, v in enumerate(values):
            if v:
                out.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="{color}">'
                           f"<title>{escape(name)}: {v} ({periods[i].isoformat()})</title></circle>")
        out.append("</g>")
        lx, ly = left + (idx % 3) * (pw / 3), height + 12 + (idx // 3) * 18
        out.append(f'<rect x="{lx:.1f}" y="{ly - 9}" width="12" height="4" fill="{color}"/>'
                   f'<text class="legend" x="{lx + 16:.1f}" y="{ly - 4}">{escape(_clip(name, 34))} '
                   f"({sum(values)})</text>")
    out.append("</svg>")
    return Markup("".join(out))


def _nice_step(top: int) -> int:
    """A gridline step giving 3–6 lines: 1, 2, 5, 10, 20, 50 …"""
    step = 1
    while top / step > 5:
        for mult in (2, 5, 10):
            if top / (step * mult) <= 5:
                return step * mult
        step *= 10
    return step


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
