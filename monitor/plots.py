"""``stats --plot``: mentions over time as a PNG line chart (matplotlib, the optional ``plot`` extra)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

from monitor.archive import Stats

MAX_LINES = 8  # more lines than this is spaghetti: the rest are summed into one grey "other" line


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def plot_stats(stats: Stats, path: Path, *, title: str | None = None) -> Path:
    """Draw posts mentioning each entity per period to ``path`` (PNG) and return it.

    One line per entity (the busiest first; beyond eight the rest become one grey line), each peak
    labelled with its count, dates on the x axis, a legend with totals. CPU-bound and synchronous:
    call it outside the event loop or through ``asyncio.to_thread``."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: render straight to a file
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable("--plot needs matplotlib: pip install 'tgmonitor[plot]' "
                              "(or uv sync --extra plot)") from None

    periods = stats.periods
    lines = stats.entities[:MAX_LINES]
    rest = stats.entities[MAX_LINES:]
    fig, ax = plt.subplots(figsize=(11, 5.5), dpi=110, layout="constrained")
    try:
        if not periods or not stats.entities:
            ax.text(0.5, 0.5, "no mentions in this range", ha="center", va="center", fontsize=14, color="0.4",
                    transform=ax.transAxes)
            ax.set_axis_off()
        else:
            xs = [datetime(p.year, p.month, p.day) for p in periods]
            marker = "o" if len(xs) <= 40 else None
            colors = plt.get_cmap("tab10").colors
            for i, e in enumerate(lines):
                ax.plot(xs, e.series, label=f"{e.entity} ({e.total})", color=colors[i % len(colors)],
                        linewidth=2, marker=marker, markersize=4)
                _label_peak(ax, xs, e.series, colors[i % len(colors)])
            if rest:
                other = [sum(e.series[j] for e in rest) for j in range(len(periods))]
                ax.plot(xs, other, label=f"{len(rest)} others ({sum(other)})", color="0.6", linewidth=1.5,
                        linestyle="--")
            ax.set_ylim(bottom=0)
            ax.yaxis.get_major_locator().set_params(integer=True)
            locator = mdates.AutoDateLocator(minticks=4, maxticks=12)
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
            if len(xs) == 1:  # one point: give it some room instead of a zero-width axis
                ax.set_xlim(xs[0] - timedelta(days=1), xs[0] + timedelta(days=1))
            ax.set_ylabel(f"posts per {stats.by}")
            ax.grid(True, axis="y", alpha=0.3)
            ax.spines[["top", "right"]].set_visible(False)
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="entity (total)")
        ax.set_title(title or _title(stats), loc="left", fontsize=13)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


def _label_peak(ax: object, xs: list[datetime], ys: list[int], color: object) -> None:
    if not ys or max(ys) <= 0:
        return
    i = max(range(len(ys)), key=ys.__getitem__)
    ax.annotate(str(ys[i]), (xs[i], ys[i]), textcoords="offset points", xytext=(0, 6), ha="center",  # type: ignore[attr-defined]
                fontsize=9, color=color, fontweight="bold")


def _title(stats: Stats) -> str:
    if not stats.periods:
        return "Mentions"
    first, last = stats.periods[0], stats.periods[-1]
    return f"Posts mentioning each entity, per {stats.by}: {_fmt(first)} – {_fmt(last)}"


def _fmt(d: date) -> str:
    return d.isoformat()
