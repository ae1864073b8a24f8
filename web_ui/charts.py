"""Charts drawn on the server as SVG (no script, no external library, CSP-clean: colours are
presentation attributes, not inline styles). Each chart has a title for screen readers and a
<title> tooltip per mark."""
from __future__ import annotations

import math
from typing import Callable, Sequence

from web_ui.html import Markup, fmt, join

OK = "#2da44e"
BAD = "#e5534b"
ACCENT = "#1f6feb"
WARN = "#d29922"


def _nice_max(v: float) -> float:
    """A round axis maximum >= v (1, 2, 2.5, 5 x 10^n)."""
    if v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def _frame(width: int, height: int, label: str, body: Markup) -> Markup:
    return fmt('<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="{}" preserveAspectRatio="xMidYMid meet">'
               '<title>{}</title>{}</svg>', width, height, label, label, body)


def _y_axis(left: int, top: int, right: int, bottom: int, vmax: float,
            fmt_value: Callable[[float], str], ticks: int = 0) -> Markup:
    if not ticks:
        ticks = next((n for n in (5, 4, 2) if abs(vmax / n - round(vmax / n)) < 1e-9 or vmax < 1), 4)
    parts = []
    for i in range(ticks + 1):
        v = vmax * i / ticks
        y = bottom - (bottom - top) * i / ticks
        parts.append(fmt('<line class="grid" x1="{}" x2="{}" y1="{:.1f}" y2="{:.1f}"/>'
                         '<text x="{}" y="{:.1f}" text-anchor="end">{}</text>',
                         left, right, y, y, left - 6, y + 4, fmt_value(v)))
    parts.append(fmt('<line class="axis" x1="{}" x2="{}" y1="{}" y2="{}"/>', left, right, bottom, bottom))
    return join(parts)


def _x_labels(labels: Sequence[str], xs: Sequence[float], bottom: int, max_labels: int = 12) -> Markup:
    step = max(1, math.ceil(len(labels) / max_labels))
    return join(fmt('<text x="{:.1f}" y="{}" text-anchor="middle">{}</text>', x, bottom + 16, lab)
                for i, (lab, x) in enumerate(zip(labels, xs)) if i % step == 0)


def stacked_bars(label: str, labels: Sequence[str], series: Sequence[tuple[str, str, Sequence[float]]],
                 fmt_value: Callable[[float], str], *, width: int = 760, height: int = 240) -> Markup:
    """Bars per label stacked from `series` = [(name, colour, values)]."""
    left, right, top, bottom = 44, width - 8, 10, height - 24
    n = max(1, len(labels))
    totals = [sum(s[2][i] for s in series) for i in range(len(labels))]
    vmax = _nice_max(max(totals, default=0))
    slot = (right - left) / n
    bw = max(1.0, slot * 0.72)
    marks = []
    xs = []
    for i, lab in enumerate(labels):
        x = left + slot * i + (slot - bw) / 2
        xs.append(x + bw / 2)
        y = float(bottom)
        for name, colour, values in series:
            v = values[i]
            if v <= 0:
                continue
            h = (bottom - top) * v / vmax
            y -= h
            marks.append(fmt('<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="{}" rx="1.5">'
                             '<title>{}: {} {}</title></rect>', x, y, bw, h, colour, lab, name, fmt_value(v)))
    body = join([_y_axis(left, top, right, bottom, vmax, fmt_value), join(marks), _x_labels(labels, xs, bottom, max(4, width // 64))])
    return _frame(width, height, label, body)


def line_chart(label: str, labels: Sequence[str], series: Sequence[tuple[str, str, Sequence[float | None]]],
               fmt_value: Callable[[float], str], *, width: int = 760, height: int = 220,
               vmax: float | None = None) -> Markup:
    """Lines (with points) over the labels; None values leave a gap."""
    left, right, top, bottom = 52, width - 10, 10, height - 24
    n = len(labels)
    values = [v for s in series for v in s[2] if v is not None]
    vmax = vmax if vmax is not None else _nice_max(max(values, default=0))
    def x_of(i: int) -> float:
        return left + (right - left) * (i / (n - 1) if n > 1 else 0.5)
    parts = [_y_axis(left, top, right, bottom, vmax, fmt_value)]
    for name, colour, vals in series:
        path, pen = [], False
        for i, v in enumerate(vals):
            if v is None:
                pen = False
                continue
            y = bottom - (bottom - top) * min(v, vmax) / vmax
            path.append(f"{'L' if pen else 'M'}{x_of(i):.1f},{y:.1f}")
            pen = True
            parts.append(fmt('<circle cx="{:.1f}" cy="{:.1f}" r="2.6" fill="{}"><title>{}: {} {}</title></circle>',
                             x_of(i), y, colour, labels[i], name, fmt_value(v)))
        if path:
            parts.insert(1, fmt('<path d="{}" fill="none" stroke="{}" stroke-width="2"/>', " ".join(path), colour))
    parts.append(_x_labels(labels, [x_of(i) for i in range(n)], bottom, max(4, width // 64)))
    return _frame(width, height, label, join(parts))


def heatmap(label: str, rows: Sequence[str], cols: Sequence[str], counts: Sequence[Sequence[float]],
            missed: Sequence[Sequence[float]], fmt_value: Callable[[float], str], missed_name: str,
            total_name: str, *, width: int = 760) -> Markup:
    """Weekday x hour grid: blue intensity = calls, a red dot sized by the missed share."""
    left, top = 40, 18
    cw = (width - left - 6) / max(1, len(cols))
    ch = 24
    height = top + ch * len(rows) + 6
    vmax = max((v for r in counts for v in r), default=0) or 1
    parts = []
    for j, c in enumerate(cols):
        if len(cols) <= 24 and (j % 2 == 0 or width >= 900):
            parts.append(fmt('<text x="{:.1f}" y="12" text-anchor="middle">{}</text>', left + cw * j + cw / 2, c))
    for i, r in enumerate(rows):
        y = top + ch * i
        parts.append(fmt('<text x="{}" y="{:.1f}" text-anchor="end">{}</text>', left - 6, y + ch / 2 + 4, r))
        for j in range(len(cols)):
            v = counts[i][j]
            m = missed[i][j]
            a = 0.06 + 0.94 * (v / vmax) if v else 0.0
            x = left + cw * j
            tip = f"{r} {cols[j]}: {total_name} {fmt_value(v)}, {missed_name} {fmt_value(m)}"
            parts.append(fmt('<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{}" rx="3" fill="{}" fill-opacity="{:.2f}" '
                             'stroke="#fff"><title>{}</title></rect>',
                             x + 1, y + 1, cw - 2, ch - 2, ACCENT if v else "#eef1f5", a if v else 1, tip))
            if m:
                rad = 2 + 6 * math.sqrt(m / v if v else 1)
                parts.append(fmt('<circle cx="{:.1f}" cy="{:.1f}" r="{:.1f}" fill="{}" stroke="#fff" stroke-width="1">'
                                 '<title>{}</title></circle>', x + cw / 2, y + ch / 2, min(rad, ch / 2 - 2), BAD, tip))
    return _frame(width, int(height), label, join(parts))
