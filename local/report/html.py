"""HTML pieces of the report pages: escaping, number formats, tables and SVG line charts (no JavaScript
library, so a page works offline).
"""
import html
import math

COLORS = {"train": "#1f77b4", "valid": "#ff7f0e", "unigram": "#2ca02c", "uniform": "#7f7f7f",
          "judge_genre_accuracy": "#9467bd", "judge_flatness_ratio": "#8c564b",
          "judge_onset_rate_ratio": "#e377c2"}


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --- HTML pieces ---------------------------------------------------------------------------------------

def _e(value):
    return html.escape(str(value), quote=True)


def _fmt(value):
    """A short human form of a value: 4 significant digits for floats, thousands separators for ints."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10000 else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:,.0f}" if abs(value) >= 10000 else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _table(rows, header=None, css=""):
    """An HTML table of (key, value) or longer rows; every cell escaped."""
    out = [f'<table class="{_e(css)}">' if css else "<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{_e(_fmt(c))}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _nice_ticks(low, high, count=5):
    """About ``count`` round tick values covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    first = math.ceil(low / step) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def svg_chart(series, title, y_label, x_label="step", hlines=(), width=720, height=320):
    """An inline SVG line chart.

    series  list of (name, xs, ys) (points with a non-finite y are skipped); colours from :data:`COLORS`
    hlines  list of (name, y): dashed horizontal lines (the baselines)
    """
    pad_left, pad_right, pad_top, pad_bottom = 56, 150, 28, 40
    points = [(x, y) for _, xs, ys in series for x, y in zip(xs, ys) if _finite(x) and _finite(y)]
    ys_all = [y for _, y in points] + [y for _, y in hlines if _finite(y)]
    xs_all = [x for x, _ in points]
    if not ys_all or not xs_all:
        return ""
    x_low, x_high = min(xs_all + [0]), max(xs_all)
    y_low, y_high = min(ys_all), max(ys_all)
    if y_high - y_low < 1e-9:
        y_low, y_high = y_low - 0.5, y_high + 0.5
    margin = 0.05 * (y_high - y_low)
    y_low, y_high = y_low - margin, y_high + margin
    x_high = x_high if x_high > x_low else x_low + 1
    plot_w, plot_h = width - pad_left - pad_right, height - pad_top - pad_bottom

    def px(x):
        return pad_left + (x - x_low) / (x_high - x_low) * plot_w

    def py(y):
        return pad_top + (y_high - y) / (y_high - y_low) * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">',
           f'<text x="{pad_left}" y="18" class="title">{_e(title)}</text>',
           f'<rect x="{pad_left}" y="{pad_top}" width="{plot_w}" height="{plot_h}" class="frame"/>']
    for tick in _nice_ticks(y_low, y_high):
        out.append(f'<line x1="{pad_left}" x2="{pad_left + plot_w}" y1="{py(tick):.1f}" y2="{py(tick):.1f}" '
                   f'class="grid"/><text x="{pad_left - 6}" y="{py(tick) + 4:.1f}" class="tick" '
                   f'text-anchor="end">{_e(_fmt(float(tick)))}</text>')
    for tick in _nice_ticks(x_low, x_high):
        out.append(f'<text x="{px(tick):.1f}" y="{pad_top + plot_h + 16}" class="tick" '
                   f'text-anchor="middle">{_e(_fmt(int(tick) if float(tick).is_integer() else tick))}</text>')
    out.append(f'<text x="{pad_left + plot_w / 2:.0f}" y="{height - 6}" class="label" '
               f'text-anchor="middle">{_e(x_label)}</text>')
    out.append(f'<text x="14" y="{pad_top + plot_h / 2:.0f}" class="label" text-anchor="middle" '
               f'transform="rotate(-90 14 {pad_top + plot_h / 2:.0f})">{_e(y_label)}</text>')
    legend_y = pad_top + 10
    for name, y in hlines:
        if not _finite(y):
            continue
        color = COLORS.get(name, "#444")
        out.append(f'<line x1="{pad_left}" x2="{pad_left + plot_w}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
                   f'stroke="{color}" stroke-dasharray="6 4" stroke-width="1.5"/>')
        out.append(f'<line x1="{width - pad_right + 10}" x2="{width - pad_right + 34}" y1="{legend_y}" '
                   f'y2="{legend_y}" stroke="{color}" stroke-dasharray="6 4" stroke-width="1.5"/>'
                   f'<text x="{width - pad_right + 40}" y="{legend_y + 4}" class="tick">'
                   f'{_e(name)} {_e(_fmt(float(y)))}</text>')
        legend_y += 18
    for name, xs, ys in series:
        pts = [(px(x), py(y)) for x, y in zip(xs, ys) if _finite(x) and _finite(y)]
        if not pts:
            continue
        color = COLORS.get(name, "#444")
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
                   + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
        if len(pts) <= 60:
            out.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"/>' for x, y in pts)
        out.append(f'<line x1="{width - pad_right + 10}" x2="{width - pad_right + 34}" y1="{legend_y}" '
                   f'y2="{legend_y}" stroke="{color}" stroke-width="2"/><text x="{width - pad_right + 40}" '
                   f'y="{legend_y + 4}" class="tick">{_e(name)}</text>')
        legend_y += 18
    out.append("</svg>")
    return "\n".join(out)
