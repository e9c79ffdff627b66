"""Small line plots drawn with PIL (ComfyUI ships no plotting library); used for node previews."""
from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

COLOURS = ((66, 133, 244), (234, 67, 53), (52, 168, 83), (251, 188, 4))


def line_plot(series, title: str = "", x_label: str = "", y_label: str = "", size=(512, 320),
              y_range=None) -> Image.Image:
    """Draw one or more (name, xs, ys) series as lines with dots on a white RGB image."""
    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    left, right, top, bottom = 52, 16, 28, 36
    xs_all = [x for _, xs, _ in series for x in xs]
    ys_all = [y for _, _, ys in series for y in ys]
    x_min, x_max = (min(xs_all), max(xs_all)) if xs_all else (0.0, 1.0)
    y_min, y_max = y_range if y_range else ((min(ys_all), max(ys_all)) if ys_all else (0.0, 1.0))
    if x_max == x_min:
        x_max = x_min + 1.0
    if y_max == y_min:
        y_max = y_min + (abs(y_min) or 1.0)

    def to_pixel(x, y):
        px = left + (x - x_min) / (x_max - x_min) * (width - left - right)
        py = height - bottom - (y - y_min) / (y_max - y_min) * (height - top - bottom)
        return px, py

    draw.rectangle([left, top, width - right, height - bottom], outline=(160, 160, 160))
    for fraction in (0.0, 0.5, 1.0):
        y = y_min + fraction * (y_max - y_min)
        _, py = to_pixel(x_min, y)
        draw.line([left - 4, py, left, py], fill=(120, 120, 120))
        draw.text((4, py - 6), f"{y:.3g}", fill="black", font=font)
        x = x_min + fraction * (x_max - x_min)
        px, _ = to_pixel(x, y_min)
        draw.line([px, height - bottom, px, height - bottom + 4], fill=(120, 120, 120))
        draw.text((px - 10, height - bottom + 6), f"{x:.3g}", fill="black", font=font)
    draw.text((left, 8), title, fill="black", font=font)
    draw.text((width // 2 - 20, height - 14), x_label, fill=(80, 80, 80), font=font)
    draw.text((4, top - 20), y_label, fill=(80, 80, 80), font=font)
    for index, (name, xs, ys) in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        points = [to_pixel(x, y) for x, y in zip(xs, ys)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for px, py in points:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
        if name:
            draw.text((width - right - 120, top + 4 + 12 * index), name, fill=colour, font=font)
    return image
