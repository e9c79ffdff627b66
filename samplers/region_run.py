"""What every sampling run of a region-patched model does before its first step (a SAMPLER_SAMPLE wrapper).

Whatever node samples the model (Spatial-Temporal Sampler, KSampler, SamplerCustomAdvanced, ...):
- every positive prompt entry (samplers/branches.py decides which, by what they are) gets the local
  prompts of the regions joined to its context along the token axis, and the run state records how
  that context splits, by the entry's uuid;
- the weights follow the model's whole schedule: each call's sigma is mapped to its schedule percent
  (samplers/schedule_percent.py), so a partial run (KSamplerAdvanced, SplitSigmas) uses the weights the
  same sigmas get in one full run;
- for the official mix, the negative entries' uuids are recorded (g_u is read from their rows), a run
  that would never batch them with the positive rows is refused before its first step (cfg 1 on a
  core CFG guider, a guider without a negative), and a negative context whose token count ComfyUI
  would not batch with the joined positive context is repeated to a common length (softmax attention
  does not notice; the patch attends to one repetition);
- the state (attention/region_patch.py RegionRunState) goes into the run's transformer_options.
A ControlNet on a positive or negative entry keeps seeing its own context alone (crossattn_controlnet).
"""
from __future__ import annotations

import logging
import math

import torch

from ..attention.region_patch import REGION_RUN, RegionRunState, install_region_attention
from ..attention.regions import LayerMasks, RegionTokens
from ..errors import AIDInputError
from .branches import install_positive_branch_marker, positive_uuids
from .region_layout import RegionLayout
from .schedule_percent import SchedulePercent

WRAPPER_KEY = "aid.region_run"


def local_contexts(layout: RegionLayout) -> list[torch.Tensor]:
    """The context [1, T_i, C] of every region's local prompt, in region order."""
    return [region.conditioning[0][0] for region in layout.regions]


def _with_context(entry: dict, context: torch.Tensor, original: torch.Tensor) -> dict:
    """A copy of a processed cond `entry` with cross-attention `context`; a ControlNet keeps seeing `original`."""
    import comfy.conds

    model_conds = dict(entry["model_conds"])
    model_conds["c_crossattn"] = comfy.conds.CONDCrossAttn(context)
    if entry.get("control") is not None and "crossattn_controlnet" not in model_conds:
        model_conds["crossattn_controlnet"] = comfy.conds.CONDCrossAttn(original)
    return dict(entry, model_conds=model_conds)


def join_local_prompts(entry: dict, contexts, node_name: str) -> tuple[dict, RegionTokens]:
    """A copy of a processed cond `entry` whose cross-attention context is [own; local 1; ...; local N]."""
    context = entry["model_conds"]["c_crossattn"].cond
    for index, local in enumerate(contexts):
        if local.shape[-1] != context.shape[-1]:
            raise AIDInputError(node_name, "regions", f"the local prompt of region {index + 1} was encoded for "
                                f"another model ({local.shape[-1]}-wide, the prompt is {context.shape[-1]}-wide).",
                                "encode every local prompt with the CLIP of the same checkpoint.")
    rows = context.shape[0]
    joined = torch.cat([context] + [local.to(context).expand(rows, -1, -1) for local in contexts], dim=1)
    return _with_context(entry, joined, context), RegionTokens(int(context.shape[1]),
                                                               tuple(int(local.shape[1]) for local in contexts))


def batchable_negative(entry: dict, positive_lengths) -> dict:
    """`entry` (a negative prompt) with its context repeated so ComfyUI batches it with every joined positive
    context (core concatenates contexts whose lengths' common multiple is at most 4x the shorter); as it is
    when it already batches or no repetition helps."""
    context = entry["model_conds"]["c_crossattn"].cond
    tokens = int(context.shape[1])

    def batches(length, other):
        return math.lcm(length, other) // min(length, other) <= 4

    if all(batches(tokens, length) for length in positive_lengths):
        return entry
    target = math.lcm(tokens, *positive_lengths)
    if not all(batches(target, length) for length in positive_lengths):
        return entry
    return _with_context(entry, context.repeat(1, target // tokens, 1), context)


def uses_cfg1_shortcut(guider, model_options: dict) -> bool:
    """True when a core CFG guider will leave the negative prompt out of every model call (cfg 1)."""
    import comfy.samplers

    predict = getattr(type(guider), "predict_noise", None)
    cfg = getattr(guider, "cfg", None)
    return (predict is comfy.samplers.CFGGuider.predict_noise and isinstance(cfg, (int, float))
            and math.isclose(cfg, 1.0) and not model_options.get("disable_cfg1_optimization", False))


class RegionRun:
    """SAMPLER_SAMPLE wrapper of a model patched for `layout` with `weights` (anything with lookup) and `mix`."""

    def __init__(self, layout: RegionLayout, weights, node_name: str, mix: str = "convex"):
        self.layout = layout
        self.weights = weights
        self.node_name = node_name
        self.mix = mix

    def __deepcopy__(self, memo):
        return self  # never changed after construction; holds tensors ModelPatcher.clone() need not copy

    def __call__(self, executor, guider, sigmas, extra_args, callback, noise, *args, **kwargs):
        positive = positive_uuids(guider.conds, self.node_name)
        negative = frozenset(entry["uuid"] for entry in guider.conds.get("negative") or [])
        if self.mix == "official":
            self._check_official(guider, negative, extra_args["model_options"])
        contexts = local_contexts(self.layout)
        layouts, token_counts = {}, {}
        for entries in guider.conds.values():
            for index, entry in enumerate(entries or []):
                if "c_crossattn" in entry.get("model_conds", {}):
                    token_counts[entry["uuid"]] = int(entry["model_conds"]["c_crossattn"].cond.shape[1])
                if entry["uuid"] not in positive or "c_crossattn" not in entry.get("model_conds", {}):
                    continue
                if entry.get("area") is not None:
                    logging.warning("%s: a positive prompt with an area (ConditioningSetArea) keeps its own "
                                    "attention; regions apply to whole-image prompts.", self.node_name)
                    continue
                entries[index], layouts[entry["uuid"]] = join_local_prompts(entry, contexts, self.node_name)
        if self.mix == "official":
            self._batch_negatives(guider.conds, layouts)
        model_sampling = guider.model_patcher.get_model_object("model_sampling")
        weights = self.weights.lookup(self.layout.names, SchedulePercent(model_sampling), sigmas)
        rows = weights(float(sigmas[0])).shape[0]
        if rows not in (1, noise.shape[0]):
            raise AIDInputError(self.node_name, "weights", f"{rows} weight rows for a latent batch of "
                                f"{noise.shape[0]}.", "use one weight setting for the whole batch.")
        state = RegionRunState(layouts, LayerMasks(self.layout.rasterise, self.layout.layer_masks), weights,
                               self.mix, negative, token_counts)
        extra_args["model_options"].setdefault("transformer_options", {})[REGION_RUN] = state
        return executor(guider, sigmas, extra_args, callback, noise, *args, **kwargs)

    def _check_official(self, guider, negative, model_options) -> None:
        """Refuse, before the first step, a run whose model calls would never hold the negative prompt's rows."""
        if not negative:
            raise AIDInputError(self.node_name, "mix", "the official mix adds w (l - g_u), g_u being the negative "
                                "prompt's attention, and this sampler's guider passes no negative prompt.",
                                "use mix 'convex', or a guider with a negative prompt (KSampler, CFGGuider).")
        if uses_cfg1_shortcut(guider, model_options):
            raise AIDInputError(self.node_name, "mix", "at cfg 1 ComfyUI never evaluates the negative prompt, and "
                                "the official mix reads the negative prompt's attention (g_u).",
                                "use mix 'convex' at cfg 1, or a cfg above 1.")

    @staticmethod
    def _batch_negatives(conds: dict, layouts: dict) -> None:
        """Repeat negative contexts where ComfyUI would otherwise run them apart from the joined positive ones."""
        lengths = [layout.total for layout in layouts.values()]
        if not lengths:
            return
        entries = conds.get("negative") or []
        for index, entry in enumerate(entries):
            if "c_crossattn" in entry.get("model_conds", {}):
                entries[index] = batchable_negative(entry, lengths)


def region_model(model, layout: RegionLayout, weights, node_name: str, mix: str = "convex"):
    """A clone of `model` with region attention on every cross-attention layer and the run wrappers."""
    import comfy.patcher_extension

    clone = model.clone()
    install_region_attention(clone, node_name)
    install_positive_branch_marker(clone, node_name)
    kind = comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE
    clone.remove_wrappers_with_key(kind, WRAPPER_KEY)
    clone.add_wrapper_with_key(kind, WRAPPER_KEY, RegionRun(layout, weights, node_name, mix))
    return clone
