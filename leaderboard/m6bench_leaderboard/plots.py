"""Inline SVG plots, rendered on the server: no JavaScript library, no network.

Every label that came from a record passes through :func:`markupsafe.escape`; numbers are
formatted here.  Colours and strokes are CSS classes (``assets/style.css``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 340
LEFT, RIGHT, TOP, BOTTOM = 64, 20, 16, 48
MIN_COST = 0.01  # seconds: faster models are drawn at this time (log axes have no zero)


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000 or magnitude < 0.001:
        return f"{value:.2g}"
    if magnitude >= 10:
        return f"{value:.0f}"
    if magnitude >= 1:
        return f"{value:.3g}"
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    step = 10 ** math.floor(math.log10((high - low) / count))
    for factor in (1, 2, 5, 10):
        if (high - low) / (step * factor) <= count:
            step *= factor
            break
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


class _Axis:
    def __init__(self, values: Sequence[float], start: float, end: float, *, log: bool = False,
                 pad: float = 0.05, integer: bool = False) -> None:
        self.log = log
        self.integer = integer
        data = [math.log10(v) for v in values] if log else list(values)
        low, high = (min(data), max(data)) if data else (0.0, 1.0)
        if high == low:  # one value: centre it in a small band
            half = 0.5 if log else max(abs(low) * 0.1, 0.05)
            low, high = low - half, high + half
        span = high - low
        self.low, self.high = low - span * pad, high + span * pad
        self.start, self.end = start, end

    def __call__(self, value: float) -> float:
        v = math.log10(value) if self.log else value
        return self.start + (v - self.low) / (self.high - self.low) * (self.end - self.start)

    def ticks(self) -> list[tuple[float, str]]:
        if self.log:
            lo, hi = math.floor(self.low), math.ceil(self.high)
            out = []
            mantissas = (1, 2, 5) if hi - lo <= 3 else (1,)
            for exponent in range(lo, hi + 1):
                for mantissa in mantissas:
                    value = mantissa * 10.0 ** exponent
                    if self.low <= math.log10(value) <= self.high:
                        out.append((value, _fmt(value)))
            return out
        ticks = _ticks(self.low, self.high)
        if self.integer:
            ticks = [t for t in ticks if float(t).is_integer()] or [round(self.low + (
                self.high - self.low) / 2)]
        return [(t, _fmt(t)) for t in ticks]


def _frame(x: _Axis, y: _Axis, x_label: str, y_label: str) -> list[str]:
    parts = [f'<rect class="plot-bg" x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" '
             f'height="{HEIGHT - TOP - BOTTOM}"/>']
    for value, label in x.ticks():
        px = x(value)
        parts.append(f'<line class="grid" x1="{px:.1f}" x2="{px:.1f}" y1="{TOP}" '
                     f'y2="{HEIGHT - BOTTOM}"/>')
        parts.append(f'<text class="tick" x="{px:.1f}" y="{HEIGHT - BOTTOM + 16}" '
                     f'text-anchor="middle">{escape(label)}</text>')
    for value, label in y.ticks():
        py = y(value)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py:.1f}" '
                     f'y2="{py:.1f}"/>')
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{py + 4:.1f}" '
                     f'text-anchor="end">{escape(label)}</text>')
    parts.append(f'<text class="axis-label" x="{(LEFT + WIDTH - RIGHT) / 2:.0f}" '
                 f'y="{HEIGHT - 8}" text-anchor="middle">{escape(x_label)}</text>')
    middle = (TOP + HEIGHT - BOTTOM) / 2
    parts.append(f'<text class="axis-label" transform="translate(14 {middle:.0f}) rotate(-90)" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    return parts


def _svg(parts: Sequence[str], title: str, css: str) -> Markup:
    body = "".join(parts)
    # every text interpolated into ``parts`` and here went through escape()
    return Markup(
        f'<svg class="plot {css}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>{body}</svg>"
    )


def _empty(title: str, message: str) -> Markup:
    return _svg([f'<text class="empty" x="{WIDTH / 2:.0f}" y="{HEIGHT / 2:.0f}" '
                 f'text-anchor="middle">{escape(message)}</text>'], title, "plot-empty")


def pareto_plot(points: Sequence[Mapping[str, Any]], *, x_label: str, y_label: str,
                title: str, lower_is_better: bool = False, unit: str = "s",
                empty: str = "no models with both a training time and a score") -> Markup:
    """Quality against cost, one dot per model; the Pareto front is joined and marked.

    ``points``: dicts with ``label``, ``x`` (cost, > 0, in ``unit``), ``y`` (quality),
    ``pareto``.  ``empty`` is the message drawn when no point has both values.
    """
    usable = [p for p in points if p.get("x") is not None and p.get("y") is not None]
    if not usable:
        return _empty(title, empty)
    xs = [max(float(p["x"]), MIN_COST) for p in usable]
    log = min(xs) > 0 and max(xs) / min(xs) > 20
    x = _Axis(xs, LEFT, WIDTH - RIGHT, log=log)
    y = _Axis([float(p["y"]) for p in usable], HEIGHT - BOTTOM, TOP)
    parts = _frame(x, y, x_label + (" (log scale)" if log else ""), y_label)
    front = sorted((p for p in usable if p.get("pareto")), key=lambda p: float(p["x"]))
    if len(front) > 1:
        path = " ".join(f"{x(max(float(p['x']), MIN_COST)):.1f},{y(float(p['y'])):.1f}"
                        for p in front)
        parts.append(f'<polyline class="front" points="{path}"/>')
    for point in usable:
        px, py = x(max(float(point["x"]), MIN_COST)), y(float(point["y"]))
        css = "dot front-dot" if point.get("pareto") else "dot"
        label = escape(point["label"])
        right = px > LEFT + (WIDTH - LEFT - RIGHT) * 0.7  # label on the left of the dot
        tx, anchor = (px - 8, "end") if right else (px + 8, "start")
        parts.append(f'<g class="point"><circle class="{css}" cx="{px:.1f}" cy="{py:.1f}" '
                     f'r="{6 if point.get("pareto") else 4.5}"><title>{label}: '
                     f'{escape(_fmt(float(point["y"])))} at '
                     f'{escape(_fmt(float(point["x"])))} {escape(unit)}'
                     f'</title></circle><text class="dot-label" x="{tx:.1f}" y="{py - 6:.1f}" '
                     f'text-anchor="{anchor}">{label}</text></g>')
    return _svg(parts, title, "plot-pareto")


def line_plot(series: Mapping[str, Sequence[tuple[float, float]]], *, x_label: str,
              y_label: str, title: str) -> Markup:
    """One line per series name (a loss, a validation metric) against the epoch."""
    series = {k: [(float(a), float(b)) for a, b in v if b is not None and math.isfinite(b)]
              for k, v in series.items()}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return _empty(title, "no per-epoch values (a model fitted in one step)")
    x = _Axis([p[0] for v in series.values() for p in v], LEFT, WIDTH - RIGHT, pad=0.02,
              integer=True)
    y = _Axis([p[1] for v in series.values() for p in v], HEIGHT - BOTTOM, TOP)
    parts = _frame(x, y, x_label, y_label)
    legend: list[str] = []
    for index, (name, points) in enumerate(series.items()):
        css = f"series series-{index % 6}"
        path = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in points)
        parts.append(f'<polyline class="{css}" points="{path}"><title>{escape(name)}</title>'
                     "</polyline>")
        for a, b in points if len(points) <= 60 else ():
            parts.append(f'<circle class="{css} marker" cx="{x(a):.1f}" cy="{y(b):.1f}" r="2.5">'
                         f"<title>{escape(name)} epoch {escape(_fmt(a))}: {escape(_fmt(b))}"
                         "</title></circle>")
        legend.append(f'<text class="legend {css}-text" x="{WIDTH - RIGHT - 6}" '
                      f'y="{TOP + 16 + 16 * index}" text-anchor="end">{escape(name)}</text>')
    if series:  # the legend sits on a white box over the lines
        width = 9 + 7 * max(len(name) for name in series)
        parts.append(f'<rect class="legend-box" x="{WIDTH - RIGHT - width - 4}" y="{TOP + 3}" '
                     f'width="{width}" height="{16 * len(series) + 4}"/>')
        parts.extend(legend)
    return _svg(parts, title, "plot-lines")


def history_plot(trials: Sequence[Mapping[str, Any]], *, metric: str, maximize: bool,
                 title: str) -> Markup:
    """A sweep's trials in order: each trial's validation score and the best so far."""
    scored = [(i, t) for i, t in enumerate(trials) if t.get("value") is not None]
    if not trials:
        return _empty(title, "no trials recorded for this sweep")
    numbers = [float(t.get("trial") if t.get("trial") is not None else i)
               for i, t in enumerate(trials)]
    values = [float(t["value"]) for _, t in scored] or [0.0, 1.0]
    x = _Axis([min(numbers) - 0.5, max(numbers) + 0.5], LEFT, WIDTH - RIGHT, pad=0.0,
              integer=True)
    y = _Axis(values, HEIGHT - BOTTOM, TOP)
    parts = _frame(x, y, "trial", f"validation {metric}")
    best: float | None = None
    steps = []
    for index, trial in enumerate(trials):
        value = trial.get("value")
        px = x(numbers[index])
        status = str(trial.get("status"))
        if value is None:
            parts.append(f'<text class="trial-failed" x="{px:.1f}" y="{HEIGHT - BOTTOM - 4}" '
                         f'text-anchor="middle">x<title>trial {escape(_fmt(numbers[index]))}: '
                         f"{escape(status)}</title></text>")
            continue
        value = float(value)
        css = "trial-dot" if status == "ok" else "trial-dot trial-pruned"
        parts.append(f'<circle class="{css}" cx="{px:.1f}" cy="{y(value):.1f}" r="4">'
                     f"<title>trial {escape(_fmt(numbers[index]))} ({escape(status)}): "
                     f"{escape(_fmt(value))}</title></circle>")
        if status == "ok" and (best is None or (value > best if maximize else value < best)):
            if best is not None:
                steps.append((px, y(best)))
            best = value
            steps.append((px, y(best)))
    if steps:
        steps.append((x.end, steps[-1][1]))
        path = " ".join(f"{a:.1f},{b:.1f}" for a, b in steps)
        parts.append(f'<polyline class="best-so-far" points="{path}"/>')
    return _svg(parts, title, "plot-history")


def _steps(points: Sequence[tuple[float, float]], x: _Axis, y: _Axis) -> str:
    """A best-so-far curve as a staircase: it holds its value until the next improvement."""
    path: list[tuple[float, float]] = []
    for a, b in points:
        if path:
            path.append((x(a), path[-1][1]))
        path.append((x(a), y(b)))
    return " ".join(f"{a:.1f},{b:.1f}" for a, b in path)


LABEL_GUTTER = 104  # px right of an anytime panel's axis where its curves are named
LABEL_GAP = 13  # px between two names stacked in the gutter


def _spread_labels(wanted: Sequence[float], low: float, high: float) -> list[float]:
    """Heights for labels that want ``wanted`` (SVG y, top ``low``, bottom ``high``), each
    as close to its wish as keeps them ``LABEL_GAP`` apart: names of curves that end at
    nearly the same value would otherwise print over each other."""
    order = sorted(range(len(wanted)), key=lambda i: wanted[i])
    placed = [0.0] * len(wanted)
    floor = low
    for i in order:  # top to bottom, each at least a gap below the one above
        placed[i] = max(wanted[i], floor)
        floor = placed[i] + LABEL_GAP
    ceiling = high
    for i in reversed(order):  # then lift the stack off the bottom edge if it overflowed
        placed[i] = min(placed[i], ceiling)
        ceiling = placed[i] - LABEL_GAP
    return placed


def series_class(index: int) -> str:
    """Six colours, then the same six dashed and dotted: 18 curves told apart."""
    return f"series series-{index % 6} dash-{index // 6 % 3}"


def _anytime_panel(curves: Mapping[str, Sequence[tuple[float, float]]], y: _Axis, *,
                   x_label: str, y_label: str, log: bool) -> list[str]:
    xs = [max(a, MIN_COST) if log else a for points in curves.values() for a, _ in points]
    x = _Axis(xs, LEFT, WIDTH - RIGHT - LABEL_GUTTER, log=log, pad=0.02, integer=not log)
    parts = _frame(x, y, x_label, y_label)
    ends = []
    for index, (name, points) in enumerate(curves.items()):
        css = series_class(index)
        shown = [(max(a, MIN_COST) if log else a, b) for a, b in points]
        parts.append(f'<polyline class="{css}" points="{_steps(shown, x, y)}">'
                     f"<title>{escape(name)}: best {escape(_fmt(points[-1][1]))}</title>"
                     "</polyline>")
        ends.append((x(shown[-1][0]), y(shown[-1][1])))
        # the end as a dot: a one-trial row (pop, random) has no staircase to see
        parts.append(f'<circle class="series-{index % 6} marker" cx="{ends[-1][0]:.1f}" '
                     f'cy="{ends[-1][1]:.1f}" r="2.5"/>')
    heights = _spread_labels([end_y for _, end_y in ends], TOP + 4, HEIGHT - BOTTOM)
    gutter = x.end + 8
    for index, (name, (end_x, end_y), height) in enumerate(zip(curves, ends, heights)):
        # a dotted leader from the curve's end to its name: the end is where it stopped
        parts.append(f'<path class="leader" d="M{end_x:.1f} {end_y:.1f} H{gutter - 2:.1f} '
                     f'L{gutter + 4:.1f} {height:.1f}"/>')
        parts.append(f'<text class="legend series-{index % 6}-text" x="{gutter + 6:.1f}" '
                     f'y="{height + 4:.1f}">{escape(name)}</text>')
    return parts


def anytime_plot(curves: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]], *,
                 metric: str, title: str) -> Markup:
    """Two panels side by side: every model's best validation ``metric`` so far against
    trials (left) and against seconds of trials (right, log scale)."""
    curves = {k: v for k, v in curves.items() if v.get("by_trials")}
    if not curves:
        return _empty(title, "no trials recorded for these rows")
    y = _Axis([b for v in curves.values() for _, b in v["by_trials"]], HEIGHT - BOTTOM, TOP)
    label = f"best validation {metric}"
    left = _anytime_panel({k: v["by_trials"] for k, v in curves.items()}, y,
                          x_label="trials finished", y_label=label, log=False)
    right = _anytime_panel({k: v["by_seconds"] for k, v in curves.items()}, y,
                           x_label="seconds of trials (log)", y_label=label, log=True)
    body = "".join(left) + f'<g transform="translate({WIDTH} 0)">' + "".join(right) + "</g>"
    # every text interpolated into the panels went through escape()
    return Markup(
        f'<svg class="plot plot-anytime" viewBox="0 0 {2 * WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>{body}</svg>"
    )
