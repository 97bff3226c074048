"""Line charts drawn on the server as SVG: no chart library, nothing loaded from elsewhere, no script.
Colours are presentation attributes (our Content-Security-Policy forbids inline styles)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from markupsafe import Markup, escape

# Distinguishable for the common colour blindnesses (Okabe-Ito), dark enough on white.
COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7")
WIDTH, HEIGHT = 640, 236
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 44  # the bottom holds the times and the legend


@dataclass(frozen=True)
class Series:
    label: str
    points: list[tuple[dt.datetime, float]]


def _fmt(value: float, unit: str) -> str:
    return f"{value:.0f}{unit}" if value >= 10 or value == int(value) else f"{value:.1f}{unit}"


def line_chart(title: str, series: list[Series], unit: str = "", y_max: float | None = None) -> Markup:
    """One chart: time across, values up from 0 to `y_max` (default: the largest value); a legend
    names each line, and the title and a description say what it shows for screen readers."""
    points = [p for s in series for p in s.points]
    if not points:
        return Markup("")
    start = min(t for t, _ in points)
    end = max(t for t, _ in points)
    span = max((end - start).total_seconds(), 1.0)
    top = y_max if y_max is not None else max(max(v for _, v in points), 1.0)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: dt.datetime) -> float:
        return LEFT + (t - start).total_seconds() / span * plot_w

    def y(v: float) -> float:
        return TOP + plot_h - min(max(v, 0.0), top) / top * plot_h

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>",
             f"<desc>{escape(_describe(series, unit, start, end))}</desc>"]
    for fraction in (0, 0.5, 1):
        gy = y(top * fraction)
        parts.append(f'<line x1="{LEFT}" y1="{gy:.1f}" x2="{WIDTH - RIGHT}" y2="{gy:.1f}" stroke="#ccc"/>')
        parts.append(f'<text x="{LEFT - 4}" y="{gy + 4:.1f}" text-anchor="end" font-size="11" fill="#333">'
                     f"{escape(_fmt(top * fraction, unit))}</text>")
    for anchor, t, tx in (("start", start, LEFT), ("end", end, WIDTH - RIGHT)):
        parts.append(f'<text x="{tx}" y="{HEIGHT - 26}" text-anchor="{anchor}" font-size="11" fill="#333">'
                     f"{t:%Y-%m-%d %H:%M}</text>")
    for number, line in enumerate(series):
        colour = COLOURS[number % len(COLOURS)]
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in sorted(line.points))
        if len(line.points) == 1:
            (t, v), = line.points
            parts.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>')
        else:
            parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>')
        lx = LEFT + 8 + number * 150
        parts.append(f'<rect x="{lx}" y="{HEIGHT - 12}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{lx + 14}" y="{HEIGHT - 3}" font-size="11" fill="#222">{escape(line.label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _describe(series: list[Series], unit: str, start: dt.datetime, end: dt.datetime) -> str:
    said = []
    for line in series:
        values = [v for _, v in sorted(line.points)]
        said.append(f"{line.label}: from {_fmt(values[0], unit)} to {_fmt(values[-1], unit)}, "
                    f"highest {_fmt(max(values), unit)}")
    return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC. " + "; ".join(said)
