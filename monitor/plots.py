"""``stats --plot``: mentions over time as a PNG chart (matplotlib, the optional ``plot`` extra)."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from monitor.archive import EntityStats, Stats

MAX_LINES = 8  # more lines than this is spaghetti: the rest are named in a note, not drawn
MAX_TICKS = 12
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


@dataclass(slots=True)
class _Group:
    """Entities with exactly the same series: drawn as one line with one legend entry."""

    names: list[str]
    series: list[int]
    total: int

    def label(self) -> str:
        if len(self.names) == 1:
            return "\n".join(textwrap.wrap(f"{self.names[0]} ({self.total})", 36))
        return "\n".join(textwrap.wrap(f"{', '.join(self.names)} ({self.total} each, same counts)", 36))


def _groups(entities: list[EntityStats]) -> list[_Group]:
    by_series: dict[tuple[int, ...], _Group] = {}
    for e in entities:  # busiest first, as archive.stats orders them
        g = by_series.get(tuple(e.series))
        if g is None:
            by_series[tuple(e.series)] = _Group([e.entity], list(e.series), e.total)
        else:
            g.names.append(e.entity)
    return list(by_series.values())


def plot_stats(stats: Stats, path: Path, *, title: str | None = None) -> Path:
    """Draw posts mentioning each entity per period to ``path`` (PNG) and return it.

    Several periods: one line per entity (the busiest eight; the rest are named in a note under the
    chart), entities with identical counts share one line and one legend entry, each line has its own
    marker and style and a tiny vertical offset so lines that meet stay visible, peaks are labelled
    with their count and the x axis shows one date per tick. One period: horizontal bars per entity.
    CPU-bound and synchronous: call it outside the event loop or through ``asyncio.to_thread``."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: render straight to a file
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable("--plot needs matplotlib: pip install 'tgmonitor[plot]' "
                              "(or uv sync --extra plot)") from None

    periods = stats.periods
    entities = [e for e in stats.entities if e.total > 0] or stats.entities
    one = len(periods) == 1
    height = max(4.0, 1.6 + 0.32 * min(len(entities), 40)) if one else 5.5
    fig, ax = plt.subplots(figsize=(11, height), dpi=110, layout="constrained")
    try:
        if not periods or not entities:
            ax.text(0.5, 0.5, "no mentions in this range", ha="center", va="center", fontsize=14, color="0.4",
                    transform=ax.transAxes)
            ax.set_axis_off()
        elif one:
            _bars(ax, stats, entities[:40])
            if len(entities) > 40:
                _note(fig, f"+ {len(entities) - 40} more entities with fewer posts (see `tgmonitor stats`)")
        else:
            _lines(plt, fig, ax, stats, entities)
        ax.set_title(title or _title(stats), loc="left", fontsize=13)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


def _bars(ax: object, stats: Stats, entities: list[EntityStats]) -> None:
    """One period: a column of dots says nothing, so one horizontal bar per entity, busiest on top."""
    names = [e.entity for e in entities][::-1]
    counts = [e.series[0] for e in entities][::-1]
    bars = ax.barh(names, counts, color="tab:blue", height=0.6)  # type: ignore[attr-defined]
    ax.bar_label(bars, padding=3, fontsize=9)  # type: ignore[attr-defined]
    ax.set_xlabel(f"posts in the {stats.by} of {_tick(stats.periods[0], stats.by, first=True)}")  # type: ignore[attr-defined]
    ax.xaxis.get_major_locator().set_params(integer=True)  # type: ignore[attr-defined]
    ax.set_xlim(0, max([*counts, 1]) * 1.1)  # type: ignore[attr-defined]
    ax.grid(True, axis="x", alpha=0.3)  # type: ignore[attr-defined]
    ax.spines[["top", "right"]].set_visible(False)  # type: ignore[attr-defined]


def _lines(plt: object, fig: object, ax: object, stats: Stats, entities: list[EntityStats]) -> None:
    periods = stats.periods
    groups = _groups(entities)
    shown, rest = groups[:MAX_LINES], groups[MAX_LINES:]
    xs = [datetime(p.year, p.month, p.day) for p in periods]
    ymax = max(max(g.series) for g in shown) or 1
    colors = plt.get_cmap("tab10").colors  # type: ignore[attr-defined]
    dense = len(xs) > 40
    step = 0.008 * ymax  # lines that meet are nudged apart by this much: visible, far below one post
    labelled: set[tuple[int, int]] = set()
    for i, g in enumerate(shown):
        color = colors[i % len(colors)]
        offset = (i - (len(shown) - 1) / 2) * step
        ax.plot(xs, [y + offset for y in g.series], label=g.label(), color=color,  # type: ignore[attr-defined]
                linewidth=2.2 if i == 0 else 1.8, linestyle=LINESTYLES[(i // len(MARKERS)) % len(LINESTYLES)]
                if not dense else "-", marker=None if dense else MARKERS[i % len(MARKERS)],
                markersize=6, markeredgecolor="white", markeredgewidth=0.8, alpha=0.9)
        j = max(range(len(g.series)), key=g.series.__getitem__)
        if g.series[j] > 0 and (j, g.series[j]) not in labelled:  # one count label per spot
            labelled.add((j, g.series[j]))
            ax.annotate(str(g.series[j]), (xs[j], g.series[j] + offset), textcoords="offset points",  # type: ignore[attr-defined]
                        xytext=(0, 7), ha="center", fontsize=9, color=color, fontweight="bold")
    ax.set_ylim(bottom=-(len(shown) / 2) * step - 0.03 * ymax, top=ymax * 1.15 + 0.2)  # type: ignore[attr-defined]
    ax.yaxis.get_major_locator().set_params(integer=True)  # type: ignore[attr-defined]
    every = max(1, math.ceil(len(xs) / MAX_TICKS))
    ticks = list(range(0, len(xs), every))
    ax.set_xticks([xs[k] for k in ticks],  # type: ignore[attr-defined]
                  [_tick(periods[k], stats.by, first=n == 0 or periods[k].year != periods[ticks[n - 1]].year)
                   for n, k in enumerate(ticks)])
    ax.xaxis.set_minor_locator(plt.NullLocator())  # type: ignore[attr-defined]
    span = xs[-1] - xs[0]
    ax.set_xlim(xs[0] - span * 0.03, xs[-1] + span * 0.03)  # type: ignore[attr-defined]
    ax.set_ylabel(f"posts per {stats.by}")  # type: ignore[attr-defined]
    if stats.by == "week":
        ax.set_xlabel("week starting (Monday, UTC)")  # type: ignore[attr-defined]
    ax.grid(True, axis="y", alpha=0.3)  # type: ignore[attr-defined]
    ax.spines[["top", "right"]].set_visible(False)  # type: ignore[attr-defined]
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="entity (total posts)")  # type: ignore[attr-defined]
    if rest:
        names = [n for g in rest for n in g.names]
        more = sum(g.total * len(g.names) for g in rest)
        _note(fig, f"Not drawn: {len(names)} quieter entities ({more} posts in all): "
                   f"{_clip(', '.join(names), 140)}. See `tgmonitor stats` for every entity.")


def _note(fig: object, text: str) -> None:
    fig.supxlabel(text, fontsize=9, color="0.35", x=0.01, ha="left")  # type: ignore[attr-defined]


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _tick(d: date, by: str, *, first: bool) -> str:
    """A date at the chart's granularity: 3 Mar (day, week) or Mar 2025 (month); the year where it starts."""
    if by == "month":
        return f"{MONTHS[d.month - 1]} {d.year}" if first or d.month == 1 else MONTHS[d.month - 1]
    return f"{d.day} {MONTHS[d.month - 1]}" + (f" {d.year}" if first else "")


def _title(stats: Stats) -> str:
    if not stats.periods:
        return "Mentions"
    first, last = stats.periods[0], stats.periods[-1]
    if first == last:
        return f"Posts mentioning each entity, {stats.by} of {_fmt(first)}"
    return f"Posts mentioning each entity, per {stats.by}: {_fmt(first)} – {_fmt(last)}"


def _fmt(d: date) -> str:
    return d.isoformat()
