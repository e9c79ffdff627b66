"""What the joint-attention override needs to know per call, written where the host does not write it.

- JointTokenLayout (an APPLY_MODEL wrapper, every family): how many text tokens open each joint
  sequence of this model call, from the context the model is called with (Flux, SD3 and Qwen-Image
  embed the context token by token, so its length is the text part of every joint sequence).
- BlockIdentity (a patches_replace["dit"] block wrapper, SD3/SD3.5 only): SD3's MMDiT writes no block
  identity, so each joint block gets one that writes block_type "double" and block_index, and the
  block's image token count (an SD3.5 block's second attention is image-only: that is its length).
  A wrapper another pack put at the same key (core SkipLayerGuidanceDiT uses it) is called in place
  of the original block, so both take effect.

Both pass a copy of transformer_options on: nothing is written into the dicts they are given.
"""
from __future__ import annotations

from dataclasses import dataclass

from .joint_override import IMAGE_TOKENS, TEXT_TOKENS

TOKEN_LAYOUT_KEY = "aid.joint_token_layout"


class JointTokenLayout:
    """APPLY_MODEL wrapper: transformer_options[TEXT_TOKENS] = the context's token count, for this call."""

    def __deepcopy__(self, memo):
        return self

    def __call__(self, executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None,
                 **kwargs):
        options = dict(transformer_options or {})
        options[TEXT_TOKENS] = 0 if c_crossattn is None else int(c_crossattn.shape[1])
        return executor(x, t, c_concat, c_crossattn, control, options, **kwargs)


@dataclass(frozen=True, eq=False)
class BlockIdentity:
    """dit block wrapper for SD3's joint block `index`: writes the block identity, then runs the block."""

    index: int
    total: int
    previous: object = None  # another pack's wrapper found at ("double_block", index)

    def __deepcopy__(self, memo):
        return self

    def to(self, *args, **kwargs):
        """ModelPatcher moves replace patches with .to(device / dtype): pass it on to a chained wrapper."""
        if self.previous is not None and hasattr(self.previous, "to"):
            moved = self.previous.to(*args, **kwargs)
            if moved is not self.previous:
                return BlockIdentity(self.index, self.total, moved)
        return self

    def __call__(self, args: dict, extra: dict) -> dict:
        options = dict(args.get("transformer_options") or {})
        options.update(block_type="double", block_index=self.index, total_blocks=self.total)
        options[IMAGE_TOKENS] = int(args["img"].shape[1])
        if args.get("txt") is not None:
            options[TEXT_TOKENS] = int(args["txt"].shape[1])
        args = dict(args, transformer_options=options)
        if self.previous is not None:
            return self.previous(args, extra)
        return extra["original_block"](args)


def install_token_layout(model) -> None:
    """Add the JointTokenLayout wrapper to a ModelPatcher clone (once)."""
    import comfy.patcher_extension

    kind = comfy.patcher_extension.WrappersMP.APPLY_MODEL
    model.remove_wrappers_with_key(kind, TOKEN_LAYOUT_KEY)
    model.add_wrapper_with_key(kind, TOKEN_LAYOUT_KEY, JointTokenLayout())


def install_block_identity(model, blocks: int) -> None:
    """A BlockIdentity at ("double_block", i) for each of `blocks` joint blocks, chained to what is there."""
    dit = model.model_options.get("transformer_options", {}).get("patches_replace", {}).get("dit", {})
    for index in range(blocks):
        previous = dit.get(("double_block", index))
        if isinstance(previous, BlockIdentity):  # an earlier AID install: keep what it chained to
            previous = previous.previous
        model.set_model_patch_replace(BlockIdentity(index, blocks, previous), "dit", "double_block", index)
