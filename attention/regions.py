"""Spatial attention control on the tensors a cross-attention replace patch receives.

Inside one cross-attention layer, for the rows of a prompt that carries regions, with g_c the attention
output over the full prompt's keys, l_i the output over object i's local prompt keys (same queries),
M_i the object's region at the layer's token grid and w_i(s) its weight at the current step, two mixes:
- convex (the paper's text and figure):
    out = (1 - sum_i c_i) * g_c + sum_i c_i * l_i,    c_i = w_i(s) * M_i
  Weights are clipped to [0, 1] and, where the c_i of overlapping regions add up to more than 1,
  scaled down so the sum is 1: a per-pixel convex combination, so outside every region the output is
  exactly g_c, and inside a region with weight 1 exactly l_i.
- official (what the paper's public code computes, and what made its figures):
    out = g_c + sum_i c_i * (l_i - g_u),    c_i = w_i(s) * M_i
  with g_u the full prompt's output of the same frame's unconditional (negative-prompt) row: an
  additive push, no clipping and no sum to 1. At weight 0 it is exactly g_c as well.

The local prompts travel inside the conditioning: the sampled prompt entry's context is
[full prompt; local prompt 1; ...; local prompt N] along the token axis (RegionTokens describes
the split); ComfyUI may repeat a whole context to a common token count with the other prompts of the
batch, which leaves softmax attention over it unchanged, so one repetition is used.

Masks come at the latent's resolution [N, H, W] and are pooled to each layer's grid (layer_grid).
Pure torch; tensors are [rows, tokens, heads * dim_head].
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


class LayerShapeError(ValueError):
    """The query tokens of a layer are not a downsampled grid of the latent."""


@dataclass(frozen=True)
class RegionTokens:
    """Token layout of a context joined from the full prompt and N local prompts."""

    global_tokens: int
    local_tokens: tuple[int, ...]

    @property
    def total(self) -> int:
        return self.global_tokens + sum(self.local_tokens)

    def ranges(self) -> list[tuple[int, int]]:
        """(start, end) of the full prompt's tokens, then of each local prompt's, in one repetition."""
        bounds, start = [], 0
        for count in (self.global_tokens, *self.local_tokens):
            bounds.append((start, start + count))
            start += count
        return bounds

    def split(self, keys: torch.Tensor) -> list[torch.Tensor]:
        """[rows, m * total, C] -> [full prompt keys, local keys 1, ...] (views of one repetition)."""
        tokens = keys.shape[1]
        if tokens % self.total:
            raise ValueError(f"the context has {tokens} tokens, not a multiple of the {self.total} tokens of the "
                             f"full prompt joined with its local prompts.")
        return [keys[:, start:end] for start, end in self.ranges()]


def layer_grid(latent_height: int, latent_width: int, tokens: int) -> tuple[int, int]:
    """(h, w) of a UNet layer with `tokens` query tokens: the latent halved k times, rounded up (stride-2 convs)."""
    height, width = latent_height, latent_width
    for _ in range(16):
        if height * width == tokens:
            return height, width
        if height * width < tokens:
            break
        height, width = math.ceil(height / 2), math.ceil(width / 2)
    raise LayerShapeError(f"{tokens} query tokens is no downsampled grid of a {latent_height}x{latent_width} latent.")


def pool_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Masks [N, H, W] -> [N, h * w]: the average of each layer cell's area (exact for box coverage)."""
    if tuple(masks.shape[-2:]) == tuple(size):
        pooled = masks
    else:
        pooled = F.adaptive_avg_pool2d(masks.unsqueeze(0).float(), size)[0]
    return pooled.reshape(masks.shape[0], -1).clamp(0.0, 1.0)


class LayerMasks:
    """Region masks per layer grid, made once per (grid, device, dtype) from masks at the latent's resolution.

    `rasterise(height, width)` returns the masks [N, H, W] at a latent size; it is called once per size.
    `at_grid(height, width, grid)`, when given, makes the [N, h * w] masks of a layer grid itself (the
    paper's discs are drawn at every layer's own grid, not pooled from the latent's).
    """

    def __init__(self, rasterise, at_grid=None):
        self.rasterise = rasterise
        self.at_grid = at_grid
        self._latent = {}
        self._layers = {}

    def latent_masks(self, height: int, width: int) -> torch.Tensor:
        if (height, width) not in self._latent:
            self._latent[(height, width)] = self.rasterise(height, width)
        return self._latent[(height, width)]

    def for_layer(self, extra_options: dict, tokens: int, device, dtype) -> torch.Tensor:
        """[N, tokens] masks of the layer whose queries have `tokens` tokens (latent size from original_shape)."""
        height, width = (int(x) for x in extra_options["original_shape"][-2:])
        key = (height, width, tokens, str(device), dtype)
        if key not in self._layers:
            grid = layer_grid(height, width, tokens)
            if self.at_grid is not None:
                masks = self.at_grid(height, width, grid)
            else:
                masks = pool_masks(self.latent_masks(height, width), grid)
            self._layers[key] = masks.to(device=device, dtype=dtype)
        return self._layers[key]


MIXES = ("convex", "official")
DEFAULT_MIX = "convex"


def mix_coefficients(weights: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Convex mix: c_i = w_i * M_i per row and token, weights clipped to 0..1, scaled where their sum exceeds 1.

    weights [rows or 1, N], masks [N, tokens] -> [rows or 1, N, tokens]; differentiable in the weights.
    """
    coefficients = weights.clamp(0.0, 1.0).unsqueeze(-1) * masks.unsqueeze(0)
    total = coefficients.sum(dim=1, keepdim=True)
    return coefficients / total.clamp(min=1.0)


def official_coefficients(weights: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Official mix: c_i = w_i * M_i as they are (no clipping, no sum to 1); [rows or 1, N] x [N, T] -> [rows or 1, N, T]."""
    return weights.unsqueeze(-1) * masks.unsqueeze(0)


def region_mix(global_out: torch.Tensor, local_outs, coefficients: torch.Tensor) -> torch.Tensor:
    """(1 - sum_i c_i) g + sum_i c_i l_i, per row and query token.

    global_out [rows, T, C], local_outs N tensors like it, coefficients [rows or 1, N, T]. Written in the
    convex form so that c = 0 gives g and a single c = 1 gives l_i bit for bit.
    """
    c = coefficients.to(global_out.dtype).unsqueeze(-1)  # [rows, N, T, 1]
    out = (1.0 - c.sum(dim=1)) * global_out
    for index, local in enumerate(local_outs):
        if local is not None:
            out = out + c[:, index] * local
    return out


def official_mix(global_out: torch.Tensor, local_outs, coefficients: torch.Tensor,
                 uncond_out: torch.Tensor) -> torch.Tensor:
    """g_c + sum_i c_i (l_i - g_u), per row and query token (the paper's code).

    global_out g_c and uncond_out g_u [rows, T, C] (g_u: the same frames' unconditional rows), local_outs N
    tensors like g_c (None where c_i is 0 everywhere), coefficients [rows or 1, N, T]. c = 0 gives g_c bit for bit.
    """
    c = coefficients.to(global_out.dtype).unsqueeze(-1)  # [rows, N, T, 1]
    out = global_out
    for index, local in enumerate(local_outs):
        if local is not None:
            out = out + c[:, index] * (local - uncond_out)
    return out


def repeat_to_tokens(keys: torch.Tensor, tokens: int) -> torch.Tensor:
    """Repeat a key set [rows, T, C] along tokens to `tokens` (a multiple of T); softmax attention is unchanged."""
    if keys.shape[1] == tokens:
        return keys
    return keys.repeat(1, tokens // keys.shape[1], 1)


class CoefficientMap:
    """c(x) of regional interpolation (InterpolationSettings.coefficient_map): the union of region masks.

    Called as (extra_options, query_tokens, device, dtype) -> [tokens], the per-pixel maximum of the
    regions' masks at that layer's grid.
    """

    def __init__(self, masks: LayerMasks):
        self.masks = masks

    def __call__(self, extra_options: dict, tokens: int, device, dtype) -> torch.Tensor:
        return self.masks.for_layer(extra_options, tokens, device, dtype).amax(dim=0)
