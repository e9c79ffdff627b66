"""The optimized_attention_override that interpolates joint attention in the blocks of a diffusion transformer.

ComfyUI routes every attention call made with transformer_options through
transformer_options["optimized_attention_override"] when one is set (comfy/ldm/modules/attention.py
wrap_attn): override(func, q, k, v, heads, [mask], **kwargs), func being the backend the user runs
(SDPA, sage, flash, ...). One override per options dict, so one that another pack set first becomes
`previous` and is called in place of func, for every attention AID makes.

Inside a block one call sees rows = chunks x frames, one chunk per conditioning entry the guider
batched. In every positive chunk (attention/branches.py decides which, by what the entry is) the frame layout
(attention/layout.py) says which rows are keys (rows 0 and F-1, endpoints A and B, for a two-endpoint
sequence) and which are interior frames between two of them; only interior rows get interpolated
attention (attention/interpolation.py) against their own segment's two key rows, only in the blocks chosen and
only while the sampler's sigma lies in the active range. Key rows and other chunks get plain
attention, so keys equal plain generations.

Which call belongs to which block, and how many of its tokens are text, is read from
transformer_options: Flux and Qwen-Image write block_type and block_index themselves; the run
wrappers of attention/dit_blocks.py write the text token count for every family and, on SD3, the block
identity and the image token count (an SD3.5 block's second, image-only attention has that length).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

from ..errors import plural
from .branches import positive_chunks
from .interpolation import interpolate
from .lse_attention import attention_with_lse
from .patch import FrameCountError, InterpolationSettings
from .rows import attend_rows

OVERRIDE_KEY = "optimized_attention_override"
TEXT_TOKENS = "aid_text_tokens"  # text tokens at the start of every joint sequence of this model call
IMAGE_TOKENS = "aid_image_tokens"  # image tokens of the current block (written where the family needs it)
BLOCKS = ("all", "double", "single")
DEFAULT_BLOCKS = "all"
# The pack's `layers` choice as a key subset of joint attention.
KEY_SUBSETS = {"self and cross": "all", "self only": "image", "cross only": "text"}


def interpolated_tokens(layers: str, tokens: int, text_tokens: int) -> slice:
    """The endpoint key tokens `layers` interpolates, for a sequence of `tokens` with `text_tokens` first."""
    subset = KEY_SUBSETS[layers]
    if subset == "all":
        return slice(0, tokens)
    if subset == "image":
        return slice(text_tokens, tokens)
    return slice(0, text_tokens)


class JointMaskError(ValueError):
    """An attention mask reached an interpolated joint attention (regional conditioning)."""


@dataclass(frozen=True)
class JointTargets:
    """Where the override interpolates: `layers` as a key subset, `blocks` as block types."""

    layers: str = "self and cross"
    blocks: str = "all"

    def takes(self, block_type) -> bool:
        """True for a block this setting interpolates ("double" / "single" as the model names them)."""
        return block_type is not None and self.blocks in ("all", block_type)


@dataclass(frozen=True, eq=False)
class JointAttentionOverride:
    """optimized_attention_override(func, q, k, v, heads, ...) with interpolated attention on interior rows."""

    settings: InterpolationSettings
    targets: JointTargets = JointTargets()
    previous: object = None  # another pack's override found when AID was installed

    def __deepcopy__(self, memo):
        # ModelPatcher.clone() deep-copies model_options; this object never changes, so clones share it.
        return self

    def __call__(self, func, *args, **kwargs):
        options = kwargs.get("transformer_options") or {}
        if not (self.targets.takes(options.get("block_type")) and self.settings.is_active(options)):
            return self._backend(func, *args, **kwargs)
        q, k, v, heads, mask, rest = _arguments(args, kwargs)
        positive = positive_chunks(options, self.settings.node_name)
        self._check_frames(q.shape[0], len(positive))
        skip_reshape, skip_output_reshape = kwargs.get("skip_reshape", False), kwargs.get("skip_output_reshape", False)
        q4, k4, v4 = (x if skip_reshape else x.reshape(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)
                      for x in (q, k, v))
        interpolated = interpolated_tokens(self.targets.layers, q4.shape[2], self._text_tokens(options, q4.shape[2]))
        plan = self.settings.row_plan(positive, q.device)
        if not plan.has_interior() or interpolated.stop <= interpolated.start:
            return self._backend(func, *args, **kwargs)
        if mask is not None:
            raise JointMaskError(
                f"{self.settings.node_name}: input 'model': this sampling passes an attention mask to the "
                f"transformer (regional or masked conditioning), and interpolated joint attention does not join "
                f"masked key sets. Fix: remove the attention mask from the conditioning, or set start_percent "
                f"equal to end_percent (plain attention).")

        def attention(q_, k_, v_):
            return self._backend(func, q_, k_, v_, heads, skip_reshape=True, skip_output_reshape=True, **rest)

        lse = attention_with_lse if self.settings.fusion == "lse" and self.previous is None else None
        segment = partial(interpolate, self.settings.mode, attention=attention, attention_lse=lse,
                          interpolated=interpolated)
        out = attend_rows(plan, q4, k4, v4, attention, segment)
        if skip_output_reshape:
            return out
        rows, _, tokens, _ = out.shape
        return out.transpose(1, 2).reshape(rows, tokens, -1)

    def _backend(self, func, *args, **kwargs):
        """Plain attention: the previous override in place of func when there is one."""
        if self.previous is not None:
            return self.previous(func, *args, **kwargs)
        return func(*args, **kwargs)

    def _check_frames(self, rows: int, chunks: int) -> None:
        """The batch holds one row per frame of the schedule in every chunk."""
        expected = self.settings.frame_layout().frames
        if rows % chunks or rows // chunks != expected:
            raise FrameCountError(
                f"{self.settings.node_name}: input 'schedule': the transformer's batch has {plural(rows, 'row')} in "
                f"{plural(chunks, 'chunk')}, not {expected} frames each as the schedule says. Fix: make the latent "
                f"with AID Latent from the same schedule (or set the schedule's frames to the batch size).")

    @staticmethod
    def _text_tokens(options: dict, tokens: int) -> int:
        """Text tokens at the start of this call's sequence (0 for an image-only attention)."""
        if options.get(IMAGE_TOKENS) == tokens:
            return 0
        text = options.get(TEXT_TOKENS)
        if text is None or text > tokens:
            raise RuntimeError("AID: the joint attention call came without its token layout (the run wrapper of "
                               "attention/dit_blocks.py is missing).")
        return int(text)


def _arguments(args: tuple, kwargs: dict):
    """(q, k, v, heads, mask, other keyword arguments) of a backend call, whichever were passed by name."""
    names = ("q", "k", "v", "heads", "mask")
    values = dict(zip(names, args))
    for name in names:
        if name in kwargs:
            values[name] = kwargs[name]
    rest = {key: value for key, value in kwargs.items()
            if key not in names and key not in ("skip_reshape", "skip_output_reshape")}
    return values["q"], values["k"], values["v"], values["heads"], values.get("mask"), rest


def warn_if_lse_is_chained(override: JointAttentionOverride) -> None:
    """Say in the log when the log-sum-exp fusion falls back to joined key sets (another override is chained)."""
    settings = override.settings
    if override.previous is not None and settings.fusion == "lse" and settings.active:
        logging.warning("%s: fusion 'lse' cannot see inside another pack's attention override; interpolated joint "
                        "attention joins key sets (concat) instead.", settings.node_name)
