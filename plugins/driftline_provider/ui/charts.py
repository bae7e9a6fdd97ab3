"""Server-rendered SVG charts for the driftline pages: no JavaScript, no CDN, nothing fetched
at run time. Each point and bar carries a ``<title>`` (the browser's tooltip) and may link
somewhere."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 48, 16, 56


@dataclass(frozen=True)
class Point:
    """One value on a line chart.

    :param label: the x-axis label (a version, an interval).
    :param value: the y value; ``None`` is drawn as a gap (e.g. labels pending).
    :param tooltip: what hovering the point says.
    :param marked: drawn larger, with the chart's marker colour (the champion, a crossing).
    :param href: where clicking the point goes (relative URL).
    """

    label: str
    value: float | None
    tooltip: str = ""
    marked: bool = False
    href: str | None = None


@dataclass(frozen=True)
class Bar:
    """One horizontal bar: a column's drift score."""

    label: str
    value: float
    tooltip: str = ""
    flagged: bool = False


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _scale(values: list[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = (high - low) * 0.1 or abs(high) * 0.1 or 1.0
    return low - pad, high + pad


@dataclass(frozen=True)
class _Frame:
    """Maps point index and value to SVG coordinates."""

    count: int
    low: float
    high: float
    plot_w: float = WIDTH - LEFT - RIGHT
    plot_h: float = HEIGHT - TOP - BOTTOM

    def x(self, i: int) -> float:
        if self.count == 1:
            return LEFT + self.plot_w / 2
        return LEFT + i * self.plot_w / (self.count - 1)

    def y(self, v: float) -> float:
        return TOP + self.plot_h * (1 - (v - self.low) / (self.high - self.low))


def _axes(frame: _Frame, y_label: str) -> list[str]:
    bottom, mid = TOP + frame.plot_h, TOP + frame.plot_h / 2
    parts = [f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}"/>',
             f'<line class="axis" x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" '
             f'y2="{bottom}"/>',
             f'<text class="y-label" x="12" y="{mid}" transform="rotate(-90 12 {mid})">'
             f"{escape(y_label)}</text>"]
    for k in range(5):
        v = frame.low + (frame.high - frame.low) * k / 4
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{frame.y(v) + 4:.1f}">'
                     f"{_fmt(v)}</text>")
    return parts


def _lines(frame: _Frame, points: list[Point]) -> list[str]:
    """One polyline per run of points with values (a missing value breaks the line)."""
    parts, segment = [], []
    for i, p in enumerate([*points, Point("", None)]):
        if p.value is not None:
            segment.append(f"{frame.x(i):.1f},{frame.y(p.value):.1f}")
            continue
        if len(segment) > 1:
            parts.append(f'<polyline class="series" points="{" ".join(segment)}"/>')
        segment = []
    return parts


def _dots(frame: _Frame, points: list[Point]) -> list[str]:
    parts = []
    label_every = max(1, len(points) // 12)
    label_y = TOP + frame.plot_h + 14
    for i, p in enumerate(points):
        x = frame.x(i)
        if i % label_every == 0:
            parts.append(f'<text class="x-label" x="{x:.1f}" y="{label_y}" '
                         f'transform="rotate(30 {x:.1f} {label_y})">{escape(p.label)}</text>')
        if p.value is None:
            continue
        dot = (f'<circle class="point{" marked" if p.marked else ""}" cx="{x:.1f}" '
               f'cy="{frame.y(p.value):.1f}" r="{6 if p.marked else 4}">'
               f"<title>{escape(p.tooltip or f'{p.label}: {_fmt(p.value)}')}</title></circle>")
        parts.append(f'<a href="{escape(p.href)}">{dot}</a>' if p.href else dot)
    return parts


def line_chart(points: list[Point], *, title: str, y_label: str,
               threshold: float | None = None, threshold_label: str = "threshold",
               css_class: str = "chart") -> str:
    """A line over ``points`` in order, evenly spaced, with an optional dashed threshold.

    :return: an ``<svg>`` element; an empty string when no point has a value.
    """
    values = [p.value for p in points if p.value is not None]
    if not values:
        return ""
    frame = _Frame(len(points), *_scale(values + ([threshold] if threshold is not None
                                                  else [])))
    parts = [f'<svg class="{escape(css_class)}" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>", *_axes(frame, y_label)]
    if threshold is not None:
        ty = frame.y(threshold)
        parts.append(f'<line class="threshold" x1="{LEFT}" x2="{WIDTH - RIGHT}" '
                     f'y1="{ty:.1f}" y2="{ty:.1f}">'
                     f"<title>{escape(threshold_label)} {_fmt(threshold)}</title></line>")
    parts += _lines(frame, points) + _dots(frame, points)
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(bars: list[Bar], *, title: str, threshold: float | None = None,
              css_class: str = "chart bars") -> str:
    """Horizontal bars, one per row, with an optional dashed threshold; flagged bars (a
    drifted column) take the warning colour.

    :return: an ``<svg>`` element; an empty string without bars.
    """
    if not bars:
        return ""
    row, left = 18, 150
    plot_w = WIDTH - left - RIGHT - 40
    height = TOP + row * len(bars) + 24
    high = max([b.value for b in bars] + ([threshold] if threshold is not None else [])) or 1.0
    parts = [f'<svg class="{escape(css_class)}" role="img" viewBox="0 0 {WIDTH} {height}" '
             f'width="{WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>"]
    for i, b in enumerate(bars):
        top = TOP + i * row
        width = plot_w * max(b.value, 0) / high
        parts.append(f'<text class="bar-label" x="{left - 6}" y="{top + 12}">'
                     f"{escape(b.label)}</text>")
        parts.append(f'<rect class="bar{" flagged" if b.flagged else ""}" x="{left}" '
                     f'y="{top + 2}" width="{width:.1f}" height="{row - 5}">'
                     f"<title>{escape(b.tooltip or f'{b.label}: {_fmt(b.value)}')}</title>"
                     "</rect>")
        parts.append(f'<text class="bar-value" x="{left + width + 4:.1f}" y="{top + 12}">'
                     f"{_fmt(b.value)}</text>")
    if threshold is not None:
        tx = left + plot_w * threshold / high
        parts.append(f'<line class="threshold" x1="{tx:.1f}" x2="{tx:.1f}" y1="{TOP - 4}" '
                     f'y2="{TOP + row * len(bars)}"><title>threshold {_fmt(threshold)}</title>'
                     "</line>")
    parts.append("</svg>")
    return "".join(parts)
