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
from functools import partial

import torch

from ..errors import plural
from .branches import positive_chunks
from .interpolation import DEFAULT_MODE, attention_on_tokens, heads_view, interpolate, tokens_view
from .layout import FrameLayout
from .lse_attention import attention_with_lse
from .rows import RowPlan, RowPlans, attend_rows

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
    # which rows get which attention, per positive chunks and device (shared by every layer of the model)
    row_plans: RowPlans = field(init=False, compare=False, repr=False)
    # (the last sigmas tensor seen, whether it was active): one read of the sigma per model call, not per layer
    _last_sigmas: tuple = field(init=False, compare=False, repr=False, default=(None, False))

    def __post_init__(self):
        if self.layout is None:
            object.__setattr__(self, "layout", FrameLayout.between(self.coefficients))
        object.__setattr__(self, "row_plans", RowPlans(self.layout))

    def frame_layout(self) -> FrameLayout:
        """The rows' keys and coefficients: `layout`, or A -> B at `coefficients`."""
        return self.layout

    def row_plan(self, positive, device) -> RowPlan:
        """The rows of a call with these positive chunks (attention/rows.py), made once per chunks and device."""
        return self.row_plans.get(positive, device)

    def is_active(self, extra_options: dict) -> bool:
        """True while the sampler's current sigma lies in [sigma_end, sigma_start]."""
        if not self.active:
            return False
        sigmas = extra_options.get("sigmas")
        if sigmas is None:
            return True
        last, active = self._last_sigmas
        if sigmas is not last:  # every layer of one model call gets the same tensor; reading it may wait for the device
            sigma = float(sigmas.reshape(-1)[0])
            active = self.sigma_end <= sigma <= self.sigma_start
            object.__setattr__(self, "_last_sigmas", (sigmas, active))
        return active


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
        plan = settings.row_plan(positive, q.device)
        active = settings.is_active(extra_options) and plan.has_interior()
        if not active:
            out = self._plain(q, k, v, extra_options)
        elif self.previous is not None:
            out = self._chained(q, k, v, extra_options, plan)
        else:
            out = self._interpolated(q, k, v, extra_options, plan)
        if settings.coefficient_map is not None and settings.active and frames > 1 and any(positive):
            out = self._hold_outside_map(out, q, k, v, extra_options, plan)
        if self.image_branch is not None:
            out = out + self.image_branch(q, extra_options, positive, settings.frame_layout(), active)
        return with_added_terms(self.added, out, q, k, v, extra_options)

    def _hold_outside_map(self, out, q, k, v, extra_options, plan: RowPlan):
        """Regional interpolation: where c(x) < 1, frames after A (row 0) hold at A, at every step.

        On rows 1..F-1 of positive chunks, out(x) = (1 - c(x)) Attn(q_x, K_A, V_A) + c(x) out(x): outside the
        map a frame attends to endpoint A's keys only, inside it is interpolated as usual; c = 1 is plain
        AID exactly. The last frame therefore shows B inside the map and follows A outside it.
        """
        c = self.settings.coefficient_map(extra_options, q.shape[1], q.device, q.dtype).reshape(1, -1, 1)
        held = plan.held
        if self.previous is not None:  # the whole batch, every row of a positive chunk with its row 0's keys
            hold = self.previous(q, k[plan.first_row], v[plan.first_row], extra_options)[held]
        else:
            first = plan.first_row[held]
            hold = comfy_attention(extra_options)(q[held], k[first], v[first])
        result = out.clone()
        result[held] = (1.0 - c) * hold + c * out[held]
        return result

    def _interpolated(self, q, k, v, extra_options, plan: RowPlan):
        """Plain attention on plain rows, interpolated on each segment's interior rows, all through ComfyUI's backend."""
        settings = self.settings
        heads = extra_options["n_heads"]
        attention = attention_on_tokens(comfy_attention(extra_options), heads)
        lse = attention_with_lse if settings.fusion == "lse" else None
        segment = partial(interpolate, settings.mode, attention=attention, attention_lse=lse)
        return tokens_view(attend_rows(plan, *(heads_view(x, heads) for x in (q, k, v)), attention, segment))

    def _plain(self, q, k, v, extra_options):
        if self.previous is not None:
            return self.previous(q, k, v, extra_options)
        return comfy_attention(extra_options)(q, k, v)

    def _chained(self, q, k, v, extra_options, plan: RowPlan):
        """Interpolate through the previous patch, calling it on the whole batch as it expects.

        The interpolated rows come from calls over joined key sets; every other row, from one call over
        the batch's own keys, made last, so a previous patch that records what it sees (SAG keeps the
        uncond attention map) records plain attention. The log-sum-exp fusion cannot see inside another
        patch, so chained layers always join key sets (concat).
        """
        heads = extra_options["n_heads"]
        attention = attention_on_tokens(lambda q_, k_, v_: self.previous(q_, k_, v_, extra_options), heads)
        q4, k4, v4 = (heads_view(x, heads) for x in (q, k, v))
        ends = (heads_view(x[index], heads) for index in (plan.key_a, plan.key_b) for x in (k, v))  # each row's keys
        interpolated = tokens_view(interpolate(self.settings.mode, q4, k4, v4, *ends, plan.t, attention))
        plain = tokens_view(attention(q4, k4, v4))
        return torch.where(plan.interior.reshape(-1, 1, 1), interpolated, plain)
