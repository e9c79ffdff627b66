"""The attn1/attn2 replace patch ComfyUI's ModelPatcher calls, and where to install it.

Inside the UNet one attention call sees rows = len(cond_or_uncond) chunks x frames. In every
positive chunk (cond_or_uncond entry 0) rows 0 and F-1 are endpoints A and B and the rows
between are interior frames; only those are replaced, and only while the sampler's sigma lies
in the active range. Endpoints and negative chunks get plain attention, so the endpoints equal
plain generations.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..errors import plural
from .interpolation import DEFAULT_MODE, attention_with_lse, interpolate

LAYERS = ("self and cross", "self only", "cross only")


class FrameCountError(ValueError):
    """The UNet batch does not hold the number of frames the schedule describes."""


@dataclass(frozen=True)
class InterpolationSettings:
    """What one installed patch needs: coefficients of the frames in the batch, mode and active range."""

    coefficients: tuple[float, ...]
    mode: str = DEFAULT_MODE
    sigma_start: float = float("inf")  # active while sigma_end <= sigma <= sigma_start
    sigma_end: float = 0.0
    active: bool = True  # False: the patch is a no-op (start percent == end percent)
    fusion: str = "concat"  # "concat" (the user's attention backend) or "lse"
    node_name: str = "Apply AID"

    def is_active(self, extra_options: dict) -> bool:
        """True while the sampler's current sigma lies in [sigma_end, sigma_start]."""
        if not self.active:
            return False
        sigmas = extra_options.get("sigmas")
        if sigmas is None:
            return True
        sigma = float(sigmas.reshape(-1)[0])
        return self.sigma_end <= sigma <= self.sigma_start


def comfy_attention(extra_options: dict):
    """Plain attention through ComfyUI's optimized_attention (the user's backend), as an (q, k, v) function."""
    import comfy.ldm.modules.attention as comfy_attention_module

    heads = extra_options["n_heads"]
    precision = extra_options.get("attn_precision")

    def attention(q, k, v):
        return comfy_attention_module.optimized_attention(q, k, v, heads, attn_precision=precision,
                                                          transformer_options=extra_options)

    return attention


@dataclass
class InterpolationPatch:
    """Replace patch for one attention layer: interpolated attention on interior positive rows.

    `previous` is another pack's replace patch found at the same key; it is used as the plain
    attention function (with joined key sets), so both take effect. `image_branch` (attn2
    only) adds an image-prompt attention term: image_branch(q, extra_options, chunks,
    coefficients, interpolating) -> tensor shaped like q (see attention/image_prompt.py).
    """

    settings: InterpolationSettings
    previous: object = None
    image_branch: object = None

    def __deepcopy__(self, memo):
        # ModelPatcher.clone() deep-copies model_options; the patch is immutable, share it.
        return self

    def to(self, *args, **kwargs):
        """ModelPatcher moves patch objects with .to(device) and .to(dtype); only an image branch holds weights."""
        if self.image_branch is None or not hasattr(self.image_branch, "to"):
            return self
        return replace(self, image_branch=self.image_branch.to(*args, **kwargs))

    def __call__(self, q, k, v, extra_options):
        settings = self.settings
        chunks = extra_options.get("cond_or_uncond") or [0]
        frames = q.shape[0] // len(chunks)
        if frames != len(settings.coefficients):
            raise FrameCountError(
                f"{settings.node_name}: input 'schedule': the sampled latent batch has {plural(frames, 'frame')} but the "
                f"schedule has {len(settings.coefficients)}. Fix: make the latent with AID Latent from the same "
                f"schedule (or set the schedule's frames to the batch size).")
        active = settings.is_active(extra_options)
        if not active:
            out = self._plain(q, k, v, extra_options)
        elif self.previous is not None:
            out = self._chained(q, k, v, extra_options, chunks, frames)
        else:
            out = self._interpolated(q, k, v, extra_options, chunks, frames)
        if self.image_branch is not None:
            out = out + self.image_branch(q, extra_options, chunks, settings.coefficients, active)
        return out

    def _interpolated(self, q, k, v, extra_options, chunks, frames):
        settings = self.settings
        interior = [c * frames + f for c, kind in enumerate(chunks) if kind == 0 for f in range(1, frames - 1)]
        if not interior:
            return self._plain(q, k, v, extra_options)
        out = torch.empty_like(q)
        plain_rows = sorted(set(range(q.shape[0])) - set(interior))
        if plain_rows:
            index = torch.tensor(plain_rows, device=q.device)
            out[index] = self._plain(q[index], k[index], v[index], extra_options)
        attention = comfy_attention(extra_options)
        lse = None
        if settings.fusion == "lse" and settings.mode.startswith("fused"):
            heads = extra_options["n_heads"]
            lse = lambda q_, k_, v_: attention_with_lse(q_, k_, v_, heads)  # noqa: E731
        t = torch.tensor(settings.coefficients[1:-1], dtype=torch.float32, device=q.device)
        for chunk, kind in enumerate(chunks):
            if kind != 0:
                continue
            first, last = chunk * frames, chunk * frames + frames - 1
            rows = slice(first + 1, last)
            out[rows] = interpolate(settings.mode, q[rows], k[rows], v[rows], k[first:first + 1], v[first:first + 1],
                                    k[last:last + 1], v[last:last + 1], t, attention, lse,
                                    extra_options["n_heads"])
        return out

    def _plain(self, q, k, v, extra_options):
        if self.previous is not None:
            return self.previous(q, k, v, extra_options)
        return comfy_attention(extra_options)(q, k, v)

    def _chained(self, q, k, v, extra_options, chunks, frames):
        """Interpolate through the previous patch, calling it on the whole batch as it expects.

        Rows that are not interpolated get their own keys joined with themselves ([K; K]), which
        leaves softmax attention unchanged, so one call serves every row.
        """
        mode = self.settings.mode
        rows = q.shape[0]
        t = torch.zeros(rows, dtype=torch.float32, device=q.device)
        k_a, v_a, k_b, v_b = k.clone(), v.clone(), k.clone(), v.clone()
        for chunk, kind in enumerate(chunks):
            if kind != 0:
                continue
            first, last = chunk * frames, chunk * frames + frames - 1
            t[first + 1:last] = torch.tensor(self.settings.coefficients[1:-1], device=q.device)
            k_a[first + 1:last], v_a[first + 1:last] = k[first], v[first]
            k_b[first + 1:last], v_b[first + 1:last] = k[last], v[last]
        weight = t.to(q.dtype).reshape(-1, 1, 1)

        def previous(k_set, v_set):
            return self.previous(q, k_set, v_set, extra_options)

        if mode == "fused outer":
            out_a = previous(torch.cat([k, k_a], 1), torch.cat([v, v_a], 1))
            out_b = previous(torch.cat([k, k_b], 1), torch.cat([v, v_b], 1))
            return torch.lerp(out_a, out_b, weight)
        if mode == "outer":
            return torch.lerp(previous(k_a, v_a), previous(k_b, v_b), weight)
        k_star, v_star = torch.lerp(k_a, k_b, weight), torch.lerp(v_a, v_b, weight)
        if mode == "fused inner":
            return previous(torch.cat([k, k_star], 1), torch.cat([v, v_star], 1))
        return previous(k_star, v_star)
