"""A small line plot drawn with Pillow (matplotlib is not a dependency): training curves, benchmarks."""
from __future__ import annotations

import math

from PIL import Image, ImageDraw

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def line_plot(series: dict[str, list[tuple[float, float]]], title: str, xlabel: str, ylabel: str,
              log_y: bool = False, size: tuple[int, int] = (800, 480)) -> Image.Image:
    """One chart with a line per named series of (x, y) points; log_y plots log10(y) for y > 0."""
    width, height = size
    left, right, top, bottom = 70, 20, 40, 50
    points = {name: [(x, math.log10(y) if log_y else y) for x, y in pts if not log_y or y > 0]
              for name, pts in series.items()}
    xs = [x for pts in points.values() for x, _ in pts] or [0.0, 1.0]
    ys = [y for pts in points.values() for _, y in pts] or [0.0, 1.0]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

    def to_pixel(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (width - left - right),
                height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom))

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    draw.text((left, 12), title, fill="black")
    draw.text(((width - len(xlabel) * 6) / 2, height - 20), xlabel, fill="black")
    draw.text((5, 12), ylabel + (" (log10)" if log_y else ""), fill="black")
    for value, anchor in ((y0, height - bottom), (y1, top)):
        draw.text((5, anchor - 6), f"{value:.3g}", fill="black")
    for value, anchor in ((x0, left), (x1, width - right - 40)):
        draw.text((anchor, height - bottom + 5), f"{value:.4g}", fill="black")
    for i, (name, pts) in enumerate(points.items()):
        colour = COLOURS[i % len(COLOURS)]
        if len(pts) > 1:
            draw.line([to_pixel(x, y) for x, y in pts], fill=colour, width=2)
        elif pts:
            px, py = to_pixel(*pts[0])
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
        draw.text((width - right - 160, top + 8 + 14 * i), name, fill=colour)
    return image


def stack_plots(images: list[Image.Image]) -> Image.Image:
    """Charts one above the other in a single image (what `lnca bench all --plot` writes)."""
    width = max(image.width for image in images)
    stacked = Image.new("RGB", (width, sum(image.height for image in images)), "white")
    top = 0
    for image in images:
        stacked.paste(image, (0, top))
        top += image.height
    return stacked
