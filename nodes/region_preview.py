"""A picture of a region layout: every region's box or mask in its own colour, labelled with its number and name."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..samplers.region_layout import DISC_RADIUS, RegionLayout

PALETTE = ((66, 133, 244), (234, 67, 53), (52, 168, 83), (251, 188, 4), (171, 71, 188), (0, 172, 193),
           (255, 112, 67), (158, 157, 36))
LONG_SIDE = 384


def layout_preview(layout: RegionLayout, title: str = "") -> Image.Image:
    """RGB image of the layout at the canvas's aspect ratio (long side LONG_SIDE px)."""
    canvas_w, canvas_h = layout.canvas
    scale = LONG_SIDE / max(canvas_w, canvas_h)
    width, height = max(16, round(canvas_w * scale)), max(16, round(canvas_h * scale))
    base = np.full((height, width, 3), 48, dtype=np.float32)
    for index, region in enumerate(layout.regions):
        colour = np.array(PALETTE[index % len(PALETTE)], dtype=np.float32)
        alpha = region.latent_mask(height, width).numpy()[..., None] * 0.35
        base = base * (1 - alpha) + colour * alpha
    image = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    for index, region in enumerate(layout.regions):
        colour = PALETTE[index % len(PALETTE)]
        left, top, right, bottom = region.pixel_box(height, width)
        if region.shape == "disc" and region.mask is None:
            cx, cy = region.centre
            radius = DISC_RADIUS * min(width, height)
            draw.ellipse([cx * width - radius, cy * height - radius, cx * width + radius, cy * height + radius],
                         outline=colour, width=2)
        else:
            draw.rectangle([left, top, right - 1, bottom - 1], outline=colour, width=2)
        name = region.name if len(region.name) <= 40 else region.name[:39] + "..."  # PIL draws bounded text only
        label = f"{index + 1} {name}" + ("" if region.conditioning is not None else " (no prompt)")
        draw.rectangle([left + 2, top + 2, left + 8 + 6 * len(label), top + 15], fill=(0, 0, 0))
        draw.text((left + 5, top + 3), label, fill=colour, font=font)
    if title:
        draw.text((6, height - 14), title, fill=(220, 220, 220), font=font)
    if not layout.regions:
        draw.text((6, 6), "no regions", fill=(220, 220, 220), font=font)
    return image
