"""The region list of spatial-temporal attention control (AID_REGIONS): objects, where they go, their prompts.

A region is a box (x, y, width, height as fractions of the image), the paper code's disc around a box's
centre, or a MASK stretched over the whole image, with the object's description (its label), the text
its crop is scored against and the CONDITIONING of its local prompt. Fractions keep a layout valid at
any image size: boxes typed in pixels are divided by the canvas size they were typed for.

The disc is what the paper's public code uses: every cell of a layer's token grid whose top-left corner
lies less than 0.2 of the image side from the object's centre (a binary mask drawn at each layer's own
grid, not pooled from the latent's); its crop for the CLIP objective is the square of side 0.4 around
the centre, clipped to the image. On images that are not square the disc is round in pixels, with
radius 0.2 of the shorter side.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from ..attention.regions import pool_masks

DEFAULT_CANVAS = (512, 512)  # width, height
SHAPES = ("box", "disc")
DISC_RADIUS = 0.2  # of the image's (shorter) side, as in the paper's code


@dataclass(frozen=True, eq=False)
class Region:
    """One object: where it goes (box or mask), what it is (name) and its local prompt."""

    name: str
    box: tuple[float, float, float, float] | None = None  # x, y, width, height in fractions of the image
    mask: torch.Tensor | None = None  # [H, W] in 0..1, covering the whole image
    conditioning: list | None = None  # CONDITIONING of the local prompt (one entry)
    shape: str = "box"  # "box", or "disc": the paper code's disc around the box's centre
    local_text: str | None = None  # the text its crop is scored against (default: 'a photo of <name>')

    @property
    def centre(self) -> tuple[float, float]:
        """The box's centre (x, y) in fractions of the image."""
        x, y, w, h = self.box
        return x + w / 2, y + h / 2

    def disc_mask(self, height: int, width: int) -> torch.Tensor:
        """The disc at a grid of [height, width] cells: 1 where a cell's top-left corner lies inside it."""
        cx, cy = self.centre
        columns = torch.arange(width, dtype=torch.float64) / width - cx
        rows = torch.arange(height, dtype=torch.float64) / height - cy
        if height == width:  # the paper's own arithmetic, fractions of the side
            distance = columns.pow(2).unsqueeze(0) + rows.pow(2).unsqueeze(1)
            return (distance < DISC_RADIUS ** 2).float()
        shorter = min(height, width)
        distance = (columns * width / shorter).pow(2).unsqueeze(0) + (rows * height / shorter).pow(2).unsqueeze(1)
        return (distance < DISC_RADIUS ** 2).float()

    def grid_mask(self, latent_height: int, latent_width: int, grid: tuple[int, int]) -> torch.Tensor:
        """The region at a layer's token grid [h * w]: a disc drawn at that grid, else the latent mask pooled."""
        if self.shape == "disc" and self.mask is None:
            return self.disc_mask(*grid).reshape(-1)
        return pool_masks(self.latent_mask(latent_height, latent_width).unsqueeze(0), grid)[0]

    def latent_mask(self, height: int, width: int) -> torch.Tensor:
        """The region at a latent's resolution [height, width]: box coverage per cell, the disc, or the resized mask."""
        if self.shape == "disc" and self.mask is None:
            return self.disc_mask(height, width)
        if self.mask is not None:
            mask = self.mask.float().reshape(1, 1, *self.mask.shape[-2:])
            downsizing = mask.shape[-2] >= height and mask.shape[-1] >= width
            mask = F.interpolate(mask, size=(height, width), mode="area" if downsizing else "bilinear",
                                 **({} if downsizing else {"align_corners": False}))
            return mask[0, 0].clamp(0.0, 1.0)
        x, y, w, h = self.box
        rows = _coverage(y * height, (y + h) * height, height)
        return torch.outer(rows, _coverage(x * width, (x + w) * width, width))

    def pixel_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) in image pixels: the box, the disc's square (as the paper's code crops it), or
        the bounding box of the mask (>= 0.5)."""
        if self.shape == "disc" and self.mask is None:
            cx, cy = self.centre
            radius = DISC_RADIUS * min(height, width)
            left, right = int(max(cx * width - radius, 0)), int(min(cx * width + radius, width))
            top, bottom = int(max(cy * height - radius, 0)), int(min(cy * height + radius, height))
        elif self.mask is None:
            x, y, w, h = self.box
            left, top = math.floor(x * width), math.floor(y * height)
            right, bottom = math.ceil((x + w) * width), math.ceil((y + h) * height)
        else:
            mask = self.latent_mask(height, width)
            inside = mask >= 0.5 if bool((mask >= 0.5).any()) else mask > 0
            rows, cols = torch.nonzero(inside.any(dim=1)).flatten(), torch.nonzero(inside.any(dim=0)).flatten()
            if len(rows) == 0:
                return 0, 0, width, height
            left, top, right, bottom = int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
        left, top = min(max(left, 0), width - 1), min(max(top, 0), height - 1)
        return left, top, max(min(right, width), left + 1), max(min(bottom, height), top + 1)

    def area(self) -> float:
        """Fraction of the image the region covers (mask or disc mean, or the box inside the image)."""
        if self.shape == "disc" and self.mask is None:
            return float(self.disc_mask(256, 256).mean())
        if self.mask is not None:
            return float(self.mask.float().mean())
        x, y, w, h = self.box
        return max(0.0, min(1.0, x + w) - max(0.0, x)) * max(0.0, min(1.0, y + h) - max(0.0, y))


def _coverage(start: float, end: float, cells: int) -> torch.Tensor:
    """Fraction of each of `cells` unit cells covered by the interval [start, end)."""
    edges = torch.arange(cells, dtype=torch.float32)
    return (torch.minimum(edges + 1, torch.tensor(end)) - torch.maximum(edges, torch.tensor(start))).clamp(0.0, 1.0)


@dataclass(frozen=True, eq=False)
class RegionLayout:
    """AID_REGIONS: the objects in order; `canvas` is the image size (width, height) the preview is drawn at."""

    regions: tuple[Region, ...] = ()
    canvas: tuple[int, int] = DEFAULT_CANVAS

    def __len__(self) -> int:
        return len(self.regions)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(region.name for region in self.regions)

    def with_region(self, region: Region) -> "RegionLayout":
        """A new layout with `region` appended (layouts are never changed in place)."""
        return replace(self, regions=self.regions + (region,))

    def joined(self, other: "RegionLayout") -> "RegionLayout":
        """This layout's regions followed by `other`'s."""
        return replace(self, regions=self.regions + other.regions)

    def rasterise(self, height: int, width: int) -> torch.Tensor:
        """Masks [N, height, width] (float32, 0..1) of every region at a latent's resolution."""
        if not self.regions:
            return torch.zeros(0, height, width)
        return torch.stack([region.latent_mask(height, width) for region in self.regions])

    def layer_masks(self, height: int, width: int, grid: tuple[int, int]) -> torch.Tensor:
        """Masks [N, h * w] of every region at a layer's token grid, for a latent of [height, width]."""
        if not self.regions:
            return torch.zeros(0, grid[0] * grid[1])
        return torch.stack([region.grid_mask(height, width, grid) for region in self.regions])
