"""The attn1/attn2 replace patch ComfyUI's ModelPatcher calls, and where to install it.

Inside the UNet one attention call sees rows = chunks x frames, one chunk per conditioning entry
the guider batched. In every positive chunk (attention/branches.py decides which: by what the
entry is, not its list position) the frame layout (attention/layout.py) says which rows are keys
(rows 0 and F-1, endpoints A and B, for a two-endpoint sequence) and which are interior frames
between two of them; only interior rows are replaced, and only while the sampler's sigma lies in
the active range. Key rows and other chunks get plain attention, so keys equal plain generations.

Coexistence with other packs' patches at the same key:
- a patch found when AID is installed becomes `previous` and is used as the plain attention
  function (called on the whole batch, as it expects);
- IPAdapter_plus, applied after AID, calls `.add(callback, **kwargs)` on the patch it finds (its
  Attn2Replace protocol): each added callback's term is added to AID's output in its sigma range,
  as Attn2Replace adds it to plain attention. Either order gives the same frames.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import torch

from ..errors import plural
from .branches import positive_chunks
from .interpolation import DEFAULT_MODE, attention_with_lse, interpolate
from .layout import FrameLayout

LAYERS = ("self and cross", "self only", "cross only")


class FrameCountError(ValueError):
    """The UNet batch does not hold the number of frames the schedule describes."""


def with_added_terms(added, out, q, k, v, extra_options):
    """`out` plus the .add()-ed terms (IPAdapter_plus's protocol) whose sigma range holds the current sigma,
    as IPAdapter_plus's own Attn2Replace adds them."""
    if not added:
        return out
    sigmas = extra_options.get("sigmas")
    sigma = float(sigmas.reshape(-1)[0]) if sigmas is not None else 999999999.9
    dtype = out.dtype
    for callback, kwargs in added:
        if kwargs.get("sigma_end", 0.0) <= sigma <= kwargs.get("sigma_start", float("inf")):
            out = out + callback(out, q, k, v, extra_options, **kwargs)
    return out.to(dtype)


@dataclass(frozen=True)
class InterpolationSettings:
    """What one installed patch needs: the frames in the batch, mode and active range.

    `coefficients` are the frames' coefficients between A and B; a keyframe run gives a `layout`
    instead (then `coefficients` are its rows' coefficients within their segments).
    """

    coefficients: tuple[float, ...]
    mode: str = DEFAULT_MODE
    sigma_start: float = float("inf")  # active while sigma_end <= sigma <= sigma_start
    sigma_end: float = 0.0
    active: bool = True  # False: the patch is a no-op (start percent == end percent)
    fusion: str = "concat"  # "concat" (the user's attention backend) or "lse"
    node_name: str = "Apply AID"
    layout: FrameLayout | None = None
    # Regional interpolation: callable (extra_options, query_tokens, device, dtype) -> c(x) [tokens] in 0..1;
    # None is c = 1 everywhere (plain AID). See InterpolationPatch._hold_outside_map.
    coefficient_map: object = None

    def __post_init__(self):
        if self.layout is None:
            object.__setattr__(self, "layout", FrameLayout.between(self.coefficients))

    def frame_layout(self) -> FrameLayout:
        """The rows' keys and coefficients: `layout`, or A -> B at `coefficients`."""
        return self.layout

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
    only) adds an image-prompt attention term: image_branch(q, extra_options, positive,
    layout, interpolating) -> tensor shaped like q (see attention/image_prompt.py).
    `added` holds the terms IPAdapter_plus-style packs add with `.add()`: (callback, kwargs) pairs.
    """

    settings: InterpolationSettings
    previous: object = None
    image_branch: object = None
    added: list = field(default_factory=list)

    def __deepcopy__(self, memo):
        # ModelPatcher.clone() deep-copies model_options. Settings, chained patch and image branch never
        # change and are shared; the added terms are per clone, since .add() changes them in place.
        return replace(self, added=copy.copy(self.added))

    def add(self, callback, **kwargs):
        """IPAdapter_plus's protocol: add callback(out, q, k, v, extra_options, **kwargs) within its sigma range."""
        self.added.append((callback, kwargs))

    def to(self, *args, **kwargs):
        """ModelPatcher moves patch objects with .to(device) and .to(dtype): pass it on to what holds weights."""
        previous, branch = self.previous, self.image_branch
        if previous is not None and hasattr(previous, "to"):
            previous = previous.to(*args, **kwargs)
        if branch is not None and hasattr(branch, "to"):
            branch = branch.to(*args, **kwargs)
        if previous is self.previous and branch is self.image_branch:
            return self
        return replace(self, previous=previous, image_branch=branch)

    def __call__(self, q, k, v, extra_options):
        settings = self.settings
        positive = positive_chunks(extra_options, settings.node_name)
        frames = q.shape[0] // len(positive)
        if frames != settings.frame_layout().frames:
            raise FrameCountError(
                f"{settings.node_name}: input 'schedule': the sampled latent batch has {plural(frames, 'frame')} "
                f"but the schedule has {settings.frame_layout().frames}. Fix: make the latent with AID Latent from "
                f"the same schedule (or set the schedule's frames to the batch size).")
        active = settings.is_active(extra_options) and any(positive) and settings.frame_layout().has_interior()
        if not active:
            out = self._plain(q, k, v, extra_options)
        elif self.previous is not None:
            out = self._chained(q, k, v, extra_options, positive, frames)
        else:
            out = self._interpolated(q, k, v, extra_options, positive, frames)
        if settings.coefficient_map is not None and settings.active and frames > 1 and any(positive):
            out = self._hold_outside_map(out, q, k, v, extra_options, positive, frames)
        if self.image_branch is not None:
            out = out + self.image_branch(q, extra_options, positive, settings.frame_layout(), active)
        return with_added_terms(self.added, out, q, k, v, extra_options)


    def _hold_outside_map(self, out, q, k, v, extra_options, positive, frames):
        """Regional interpolation: where c(x) < 1, frames after A (row 0) hold at A, at every step.

        On rows 1..F-1 of positive chunks, out(x) = (1 - c(x)) Attn(q_x, K_A, V_A) + c(x) out(x): outside the
        map a frame attends to endpoint A's keys only, inside it is interpolated as usual; c = 1 is plain
        AID exactly. The last frame therefore shows B inside the map and follows A outside it.
        """
        c = self.settings.coefficient_map(extra_options, q.shape[1], q.device, q.dtype).reshape(1, -1, 1)
        rows = [chunk * frames + f for chunk, is_positive in enumerate(positive) if is_positive
                for f in range(1, frames)]
        index = torch.tensor(rows, device=q.device)
        k_a, v_a = k.clone(), v.clone()
        for chunk, is_positive in enumerate(positive):
            if is_positive:
                first = chunk * frames
                k_a[first + 1:first + frames], v_a[first + 1:first + frames] = k[first], v[first]
        if self.previous is not None:
            hold = self.previous(q, k_a, v_a, extra_options)[index]
        else:
            hold = comfy_attention(extra_options)(q[index], k_a[index], v_a[index])
        result = out.clone()
        result[index] = (1.0 - c) * hold + c * out[index]
        return result

    def _interpolated(self, q, k, v, extra_options, positive, frames):
        settings = self.settings
        segments = settings.frame_layout().segments()
        interior = {c * frames + row for c, is_positive in enumerate(positive) if is_positive
                    for members in segments.values() for row, _ in members}
        out = torch.empty_like(q)
        plain_rows = sorted(set(range(q.shape[0])) - interior)
        if plain_rows:
            index = torch.tensor(plain_rows, device=q.device)
            out[index] = self._plain(q[index], k[index], v[index], extra_options)
        attention = comfy_attention(extra_options)
        lse = None
        if settings.fusion == "lse" and settings.mode.startswith("fused"):
            heads = extra_options["n_heads"]
            lse = lambda q_, k_, v_: attention_with_lse(q_, k_, v_, heads)  # noqa: E731
        for chunk, is_positive in enumerate(positive):
            if not is_positive:
                continue
            base = chunk * frames
            for (row_a, row_b), members in segments.items():
                rows = rows_index([base + row for row, _ in members], q.device)
                t = torch.tensor([t for _, t in members], dtype=torch.float32, device=q.device)
                a, b = slice(base + row_a, base + row_a + 1), slice(base + row_b, base + row_b + 1)
                out[rows] = interpolate(settings.mode, q[rows], k[rows], v[rows], k[a], v[a], k[b], v[b], t,
                                        attention, lse, extra_options["n_heads"])
        return out

    def _plain(self, q, k, v, extra_options):
        if self.previous is not None:
            return self.previous(q, k, v, extra_options)
        return comfy_attention(extra_options)(q, k, v)

    def _chained(self, q, k, v, extra_options, positive, frames):
        """Interpolate through the previous patch, calling it on the whole batch as it expects.

        The interpolated rows come from calls over joined key sets; every other row, from one call over
        the batch's own keys, made last, so a previous patch that records what it sees (SAG keeps the
        uncond attention map) records plain attention. The log-sum-exp fusion cannot see inside another
        patch, so chained layers always join key sets (concat).
        """
        mode = self.settings.mode
        rows = q.shape[0]
        t = torch.zeros(rows, dtype=torch.float32, device=q.device)
        k_a, v_a, k_b, v_b = k.clone(), v.clone(), k.clone(), v.clone()
        interior = torch.zeros(rows, dtype=torch.bool, device=q.device)
        segments = self.settings.frame_layout().segments()
        for chunk, is_positive in enumerate(positive):
            if not is_positive:
                continue
            base = chunk * frames
            for (row_a, row_b), members in segments.items():
                for row, coefficient in members:
                    t[base + row] = coefficient
                    interior[base + row] = True
                    k_a[base + row], v_a[base + row] = k[base + row_a], v[base + row_a]
                    k_b[base + row], v_b[base + row] = k[base + row_b], v[base + row_b]
        weight = t.to(q.dtype).reshape(-1, 1, 1)

        def previous(k_set, v_set):
            return self.previous(q, k_set, v_set, extra_options)

        if mode == "fused outer":
            interpolated = torch.lerp(previous(torch.cat([k, k_a], 1), torch.cat([v, v_a], 1)),
                                      previous(torch.cat([k, k_b], 1), torch.cat([v, v_b], 1)), weight)
        elif mode == "outer":
            interpolated = torch.lerp(previous(k_a, v_a), previous(k_b, v_b), weight)
        else:
            k_star, v_star = torch.lerp(k_a, k_b, weight), torch.lerp(v_a, v_b, weight)
            if mode == "fused inner":
                interpolated = previous(torch.cat([k, k_star], 1), torch.cat([v, v_star], 1))
            else:
                interpolated = previous(k_star, v_star)
        plain = previous(k, v)
        return torch.where(interior.reshape(-1, 1, 1), interpolated, plain)


def rows_index(rows: list[int], device):
    """A slice for a run of consecutive rows (a view), else an index tensor."""
    if rows == list(range(rows[0], rows[-1] + 1)):
        return slice(rows[0], rows[-1] + 1)
    return torch.tensor(rows, device=device)
