"""A small log-log SVG writer for benchmarks/scale.py (matplotlib is not a dependency)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from xml.sax.saxutils import escape

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


def loglog_svg(series: Mapping[str, Sequence[tuple[float, float]]], *, x_label: str,
               y_unit: str, width: int = 720, height: int = 440) -> str:
    """A log-log plot of ``series`` (name -> ascending positive (x, y) points): one
    ``<path>`` per series with its name as ``<title>``, a legend, decades as grid lines and
    a dotted slope-1 reference through the first point of the highest series."""
    series = {name: list(points) for name, points in series.items() if points}
    left, right, top, bottom = 70, 190, 20, 50
    xs = [x for points in series.values() for x, _ in points] or [1e5, 1e6]
    ys = [y for points in series.values() for _, y in points] or [0.1, 1.0]
    x_low, x_high = math.floor(math.log10(min(xs))), math.ceil(math.log10(max(xs)))
    y_low, y_high = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    x_high, y_high = max(x_high, x_low + 1), max(y_high, y_low + 1)

    def at(x: float, y: float) -> tuple[float, float]:
        u = (math.log10(x) - x_low) / (x_high - x_low)
        v = (math.log10(y) - y_low) / (y_high - y_low)
        return (left + u * (width - left - right), height - bottom - v * (height - top - bottom))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>']
    for decade in range(x_low, x_high + 1):
        (x, _), (_, y_base) = at(10.0**decade, 10.0**y_low), at(10.0**x_low, 10.0**y_low)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{y_base:.1f}" '
                     'stroke="#ddd"/>')
        parts.append(f'<text x="{x:.1f}" y="{y_base + 16:.1f}" text-anchor="middle">'
                     f'1e{decade}</text>')
    for decade in range(y_low, y_high + 1):
        _, y = at(10.0**x_low, 10.0**decade)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
                     'stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f'1e{decade} {y_unit}</text>')
    parts.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 12}" '
                 f'text-anchor="middle">{escape(x_label)}</text>')
    parts += _reference_line(series, at, (x_low, x_high))
    for index, (name, points) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        drawn = [at(x, y) for x, y in points]
        path = " ".join(f"{'M' if i == 0 else 'L'}{u:.1f},{v:.1f}"
                        for i, (u, v) in enumerate(drawn))
        parts.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2">'
                     f'<title>{escape(name)}</title></path>')
        parts += [f'<circle cx="{u:.1f}" cy="{v:.1f}" r="3" fill="{colour}"/>'
                  for u, v in drawn]
        legend_y = top + 16 * index + 10
        parts.append(f'<line x1="{width - right + 12}" y1="{legend_y}" '
                     f'x2="{width - right + 32}" y2="{legend_y}" stroke="{colour}" '
                     'stroke-width="2"/>')
        parts.append(f'<text x="{width - right + 38}" y="{legend_y + 4}">{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _reference_line(series: Mapping[str, Sequence[tuple[float, float]]],
                    at: Callable[[float, float], tuple[float, float]],
                    decades: tuple[int, int]) -> list[str]:
    """A dotted line of slope 1 (linear growth) from the first point of the highest series."""
    if not series:
        return []
    x0, y0 = max((points[0] for points in series.values()), key=lambda p: p[1])
    x1 = 10.0 ** decades[1]
    (u0, v0), (u1, v1) = at(x0, y0), at(x1, y0 * x1 / x0)
    return [f'<line x1="{u0:.1f}" y1="{v0:.1f}" x2="{u1:.1f}" y2="{v1:.1f}" stroke="#999" '
            'stroke-dasharray="3,3"><title>slope 1 (linear)</title></line>']
