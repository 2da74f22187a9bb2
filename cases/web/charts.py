"""Charts drawn on the server as inline SVG: no script, no external request, readable without colour."""

import math

from django.utils.html import escape
from django.utils.safestring import mark_safe

# Calm, distinguishable colours (also told apart by the legend order and each bar's tooltip).
PALETTE = ["#2f5d62", "#c58940", "#6b8f71", "#8a3b12", "#5b6c8f", "#a0a07a", "#7a4e6b", "#4f8a8b"]
WIDTH, HEIGHT = 560, 190
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 34


def _nice_max(value):
    """A round axis top at or above `value`: 1, 2, 2.5 or 5 times a power of ten."""
    if value <= 0:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    return next(step * magnitude for step in (1, 2, 2.5, 5, 10) if step * magnitude >= value)


def _fmt(value, unit=""):
    if value is None:
        return "–"
    if unit == "s":
        return duration(value)
    if unit == "%":
        return f"{value:.0f} %"
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def duration(seconds):
    if seconds is None:
        return "–"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _frame(labels, top, unit):
    parts = []
    plot_h = HEIGHT - TOP - BOTTOM
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">'
                     f'{escape(_fmt(top * fraction, unit))}</text>')
    step = max(1, len(labels) // 6)
    slot = (WIDTH - LEFT - RIGHT) / max(1, len(labels))
    for n, label in enumerate(labels):
        if (len(labels) - 1 - n) % step == 0:  # evenly spaced, counted back from the latest
            x = LEFT + slot * (n + 0.5)
            parts.append(f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" class="axis" text-anchor="middle">'
                         f'{escape(label)}</text>')
    return parts, slot, plot_h


def _svg(title, parts, legend=()):
    keys = "".join(
        # An SVG fill, not an inline style: the Content-Security-Policy refuses inline styles.
        f'<li><svg class="swatch" viewBox="0 0 10 10" aria-hidden="true"><rect width="10" height="10" rx="2" '
        f'fill="{escape(colour)}"/></svg>{escape(name)}</li>' for name, colour in legend
    )
    body = "".join(parts)
    return mark_safe(  # noqa: S308 - every text inside was escaped above
        f'<figure class="chart"><figcaption>{escape(title)}</figcaption>'
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">{body}</svg>'
        + (f'<ul class="legend">{keys}</ul>' if keys else "") + "</figure>"
    )


def stacked_bars(title, labels, series, unit=""):
    """Bars per period, stacked by series ({name: [values]}); the first series sits at the bottom."""
    names = list(series)[: len(PALETTE)]
    totals = [sum(series[name][n] or 0 for name in names) for n in range(len(labels))]
    top = _nice_max(max(totals, default=0))
    parts, slot, plot_h = _frame(labels, top, unit)
    for n, label in enumerate(labels):
        y = TOP + plot_h
        for colour, name in zip(PALETTE, names, strict=False):
            value = series[name][n] or 0
            if not value:
                continue
            h = plot_h * value / top
            y -= h
            parts.append(f'<rect x="{LEFT + slot * n + slot * 0.15:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" '
                         f'height="{h:.1f}" fill="{colour}"><title>{escape(label)}: {escape(name)} '
                         f'{escape(_fmt(value, unit))}</title></rect>')
    legend = list(zip(names, PALETTE, strict=False)) if len(names) > 1 else []
    return _svg(title, parts, legend)


def bars(title, labels, values, unit=""):
    return stacked_bars(title, labels, {title: values}, unit)


def lines(title, labels, series, unit=""):
    """One line per series; gaps where a period has no value."""
    names = list(series)[: len(PALETTE)]
    top = _nice_max(max((v for name in names for v in series[name] if v is not None), default=0))
    parts, slot, plot_h = _frame(labels, top, unit)
    for colour, name in zip(PALETTE, names, strict=False):
        points = []
        for n, value in enumerate(series[name]):
            if value is None:
                if len(points) > 1:
                    parts.append(_polyline(points, colour))
                points = []
                continue
            x, y = LEFT + slot * (n + 0.5), TOP + plot_h * (1 - value / top)
            points.append((x, y))
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"><title>{escape(labels[n])}: '
                         f'{escape(name)} {escape(_fmt(value, unit))}</title></circle>')
        if len(points) > 1:
            parts.append(_polyline(points, colour))
    return _svg(title, parts, list(zip(names, PALETTE, strict=False)))


def _polyline(points, colour):
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>'
