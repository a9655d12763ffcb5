"""The round history's picture, as a small hand-written SVG: per-era validation corr as bars,
Numerai's live scores over rounds as lines. The node image needs no plotting library for it."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from xml.sax.saxutils import escape

WIDTH, PANEL, GAP, MARGIN = 720, 180, 50, 48
# The live metrics drawn, with their colours (Numerai's names for them).
SERIES = {"v2_corr20": "#1f77b4", "mmc": "#ff7f0e"}
_GREEN, _RED, _GREY = "#2ca02c", "#d62728", "#888888"


def _scale(values: Sequence[float]) -> float:
    """The largest magnitude, so a panel is symmetric around zero (never zero itself)."""
    return max((abs(v) for v in values), default=0.0) or 1.0


def _panel(title: str, top: float, peak: float) -> list[str]:
    """A panel's frame: its title, the zero line and the +/- peak labels."""
    zero = top + PANEL / 2
    right = WIDTH - MARGIN / 2
    return [
        f'<text x="{MARGIN}" y="{top - 8:.1f}" font-weight="bold">{escape(title)}</text>',
        f'<rect x="{MARGIN}" y="{top}" width="{right - MARGIN}" height="{PANEL}" '
        f'fill="none" stroke="#ccc"/>',
        f'<line x1="{MARGIN}" y1="{zero}" x2="{right}" y2="{zero}" stroke="{_GREY}"/>',
        f'<text x="{MARGIN - 4}" y="{top + 10}" text-anchor="end">{peak:+.3f}</text>',
        f'<text x="{MARGIN - 4}" y="{zero + 4}" text-anchor="end">0</text>',
        f'<text x="{MARGIN - 4}" y="{top + PANEL}" text-anchor="end">{-peak:+.3f}</text>',
    ]


def _era_bars(per_era: Mapping[str, float], top: float) -> list[str]:
    values = list(per_era.values())
    peak = _scale(values)
    parts = _panel(f"Validation corr per era ({len(values)} eras)", top, peak)
    step = (WIDTH - 1.5 * MARGIN) / max(1, len(values))
    zero = top + PANEL / 2
    for i, (era, value) in enumerate(per_era.items()):
        height = abs(value) / peak * PANEL / 2
        y = zero - height if value >= 0 else zero
        parts.append(
            f'<rect class="era" x="{MARGIN + i * step:.1f}" y="{y:.1f}" '
            f'width="{max(step * 0.8, 0.5):.1f}" height="{height:.1f}" '
            f'fill="{_GREEN if value >= 0 else _RED}"><title>era {escape(era)}: '
            f"{value:+.4f}</title></rect>"
        )
    return parts


def _live_lines(live: Sequence[tuple[int, Mapping[str, float]]], top: float) -> list[str]:
    values = [v for _, scores in live for name, v in scores.items() if name in SERIES]
    peak = _scale(values)
    parts = _panel("Live scores per round (latest daily score)", top, peak)
    step = (WIDTH - 1.5 * MARGIN) / max(1, len(live))
    zero = top + PANEL / 2

    def x(i: int) -> float:
        return MARGIN + (i + 0.5) * step

    for i, (number, _) in enumerate(live):
        parts.append(
            f'<text x="{x(i):.1f}" y="{top + PANEL + 14}" text-anchor="middle">{number}</text>'
        )
    for n, (name, colour) in enumerate(SERIES.items()):
        points = [
            (x(i), zero - scores[name] / peak * PANEL / 2, number, scores[name])
            for i, (number, scores) in enumerate(live)
            if name in scores
        ]
        if len(points) > 1:
            line = " ".join(f"{px:.1f},{py:.1f}" for px, py, _, _ in points)
            parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}"/>')
        parts += [
            f'<circle class="{name}" cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}">'
            f"<title>round {number} {name}: {value:+.4f}</title></circle>"
            for px, py, number, value in points
        ]
        parts.append(
            f'<text x="{WIDTH - MARGIN / 2 - 110 + 60 * n}" y="{top - 8:.1f}" '
            f'fill="{colour}">{name}</text>'
        )
    return parts


def history_svg(
    per_era: Mapping[str, float], live: Sequence[tuple[int, Mapping[str, float]]]
) -> str:
    """The chart: per-era validation corr on top, live scores by round (oldest first) below;
    one point per round that has a score."""
    height = MARGIN + PANEL + GAP + PANEL + MARGIN
    body = _era_bars(per_era, MARGIN) + _live_lines(live, MARGIN + PANEL + GAP)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">'
        f'<rect width="100%" height="100%" fill="white"/>{"".join(body)}</svg>'
    )


def markdown_image(svg: str, alt: str) -> str:
    """The SVG as a markdown image with a data URI: the Prefect UI's markdown renderer makes
    an image token an `<img src>` as is; raw HTML (an inline `<svg>`) goes through DOMPurify."""
    encoded = base64.b64encode(svg.encode()).decode()
    return f"![{alt}](data:image/svg+xml;base64,{encoded})"
