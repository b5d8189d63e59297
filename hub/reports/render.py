"""What every report shares: a self-contained HTML page (inline CSS, inline SVG charts, the MSP's
name and logo), and the PDF made from that same HTML by WeasyPrint.

WeasyPrint is chosen because it renders HTML and CSS (and inline SVG) to PDF without a browser, is
kept up to date, and lets the PDF be exactly the HTML page a user also opens.
"""

from __future__ import annotations

import base64
import html
import mimetypes
from pathlib import Path
from typing import Sequence

esc = html.escape

PALETTE = ("#1f5f99", "#9db7d5", "#d17a22", "#4c9a2a", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d")

_CSS = """
@page { size: A4; margin: 16mm 14mm; }
body { font-family: "DejaVu Sans", Arial, sans-serif; color: #1d2733; font-size: 11pt; margin: 0 auto;
       max-width: 60rem; padding: 1rem; }
header.report { display: flex; align-items: center; gap: 1rem; border-bottom: 2px solid #1f5f99;
                margin-bottom: 1rem; padding-bottom: .5rem; }
header.report img { max-height: 48px; }
header.report .msp { font-weight: bold; color: #1f5f99; }
h1 { font-size: 1.5rem; margin: 0; } h2 { font-size: 1.15rem; color: #1f5f99; margin-top: 1.4rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
th, td { border-bottom: 1px solid #d9e1ea; padding: .3rem .4rem; text-align: left; vertical-align: top; }
th { background: #eef3f8; } td.num, th.num { text-align: right; white-space: nowrap; }
.muted { color: #6b7785; } .small { font-size: .85em; }
.chart { margin: .5rem 0; } figure { margin: .5rem 0; } figcaption { font-size: .85em; color: #6b7785; }
"""


def data_uri(path: str | Path) -> str:
    """A file (the MSP's logo) as a data: URI, so the page needs nothing beside itself."""
    path = Path(path)
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"


def page(title: str, body: str, *, lang: str = "en", msp_name: str = "", logo: str | None = None,
         subtitle: str = "") -> str:
    """A complete HTML document: the header (logo, the MSP's name, the title), then ``body`` (HTML
    the caller escaped). ``logo`` is a data: URI (see ``data_uri``) or None."""
    logo_html = f'<img src="{esc(logo)}" alt="{esc(msp_name)}">' if logo else ""
    sub = f'<div class="muted">{esc(subtitle)}</div>' if subtitle else ""
    return (f'<!DOCTYPE html>\n<html lang="{esc(lang)}">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f'<header class="report">{logo_html}<div><div class="msp">{esc(msp_name)}</div>'
            f"<h1>{esc(title)}</h1>{sub}</div></header>\n{body}\n</body>\n</html>\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, numeric: Sequence[int] = ()) -> str:
    """An HTML table; cells are escaped; columns at ``numeric`` are right-aligned."""
    head = "".join(f'<th class="num">{esc(str(h))}</th>' if i in numeric else f"<th>{esc(str(h))}</th>"
                   for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td class="num">{esc(str(c))}</td>' if i in numeric else f"<td>{esc(str(c))}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value - round(value)) < 1e-9 else f"{value:.1f}"


def bar_chart(labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]], *,
              width: int = 640, height: int = 240, max_value: float | None = None, unit: str = "") -> str:
    """Grouped vertical bars as inline SVG: one group per label, one bar per series (name,
    values); a None value draws no bar and is written "—" (not measured is not 0)."""
    out, top, left, bottom, legend, plot_w, plot_h = _frame(series, width, height, max_value, unit)
    group_w = plot_w / max(len(labels), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    for gi, label in enumerate(labels):
        x0 = left + gi * group_w + group_w * 0.1
        for si, (_, vs) in enumerate(series):
            v = vs[gi] if gi < len(vs) else None
            x = x0 + si * bar_w
            if v is None:
                out.append(f'<text x="{x + bar_w / 2:.1f}" y="{10 + legend + plot_h - 3:.1f}" font-size="10" '
                           f'text-anchor="middle">—</text>')
                continue
            h = plot_h * min(max(v / top, 0), 1)
            out.append(f'<rect x="{x:.1f}" y="{10 + legend + plot_h - h:.1f}" width="{bar_w * 0.95:.1f}" '
                       f'height="{h:.1f}" fill="{PALETTE[si % len(PALETTE)]}"><title>{esc(label)}: '
                       f"{esc(_fmt(v))}{esc(unit)}</title></rect>")
        out.append(f'<text x="{left + gi * group_w + group_w / 2:.1f}" y="{height - bottom + 14}" font-size="10" '
                   f'text-anchor="middle">{esc(label)}</text>')
    out.extend(_legend(series, width))
    out.append("</svg>")
    return "".join(out)


def line_chart(labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]], *,
               width: int = 640, height: int = 240, max_value: float | None = None, unit: str = "") -> str:
    """Lines as inline SVG: one point per label per series; a None value breaks the line."""
    out, top, left, bottom, legend, plot_w, plot_h = _frame(series, width, height, max_value, unit)
    step = plot_w / max(len(labels), 1)
    x0 = left + step / 2   # each point in the middle of its slot: the first and last labels fit
    for si, (name, vs) in enumerate(series):
        color = PALETTE[si % len(PALETTE)]
        runs: list[list[str]] = [[]]
        for i, v in enumerate(vs):
            if v is None:
                runs.append([])
                continue
            x, y = x0 + i * step, 10 + legend + plot_h * (1 - min(max(v / top, 0), 1))
            runs[-1].append(f"{x:.1f},{y:.1f}")
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"><title>{esc(name)} '
                       f"{esc(labels[i])}: {esc(_fmt(v))}{esc(unit)}</title></circle>")
        for points in runs:
            if len(points) > 1:
                out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(points)}"/>')
    for i, label in enumerate(labels):
        out.append(f'<text x="{x0 + i * step:.1f}" y="{height - bottom + 14}" font-size="10" '
                   f'text-anchor="middle">{esc(label)}</text>')
    out.extend(_legend(series, width))
    out.append("</svg>")
    return "".join(out)


def _frame(series: Sequence[tuple[str, Sequence[float | None]]], width: int, height: int,
           max_value: float | None, unit: str) -> tuple[list[str], float, float, int, int, float, float]:
    """A chart's start: the SVG element and its value grid (0, half, top), and its geometry:
    (parts, top value, left edge, bottom margin, legend height, plot width, plot height)."""
    values = [v for _, vs in series for v in vs if v is not None]
    top = max_value if max_value is not None else (max(values) if values else 1.0) or 1.0
    left, bottom, legend = _axis_width(top, unit), 40, 18 * ((len(series) + 2) // 3)
    plot_w, plot_h = width - left - 10, height - bottom - 10 - legend
    out = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img">']
    for frac in (0, 0.5, 1):
        y = 10 + legend + plot_h * (1 - frac)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" stroke="#d9e1ea"/>'
                   f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">'
                   f"{esc(_fmt(top * frac))}{esc(unit)}</text>")
    return out, top, left, bottom, legend, plot_w, plot_h


def _axis_width(top: float, unit: str) -> int:
    """Room left of the plot for the longest value label (about 6 px a character at 10 px)."""
    return max(40, 6 * len(f"{_fmt(top)}{unit}") + 10)


def _legend(series: Sequence[tuple[str, Sequence[float | None]]], width: int) -> list[str]:
    out = []
    for si, (name, _) in enumerate(series):
        x, y = 40 + (si % 3) * (width - 50) / 3, 4 + 18 * (si // 3)
        out.append(f'<rect x="{x:.1f}" y="{y}" width="10" height="10" fill="{PALETTE[si % len(PALETTE)]}"/>'
                   f'<text x="{x + 14:.1f}" y="{y + 9}" font-size="10">{esc(name)}</text>')
    return out


def to_pdf(document: str) -> bytes:
    """The PDF of an HTML document made by ``page`` (WeasyPrint; only data: URIs are read, nothing
    is fetched from outside)."""
    import weasyprint
    from weasyprint.urls import URLFetcher

    return weasyprint.HTML(string=document, url_fetcher=URLFetcher(allowed_protocols={"data"})).write_pdf()
