"""What every sampling run of a region-patched model does before its first step (a SAMPLER_SAMPLE wrapper).

Whatever node samples the model (Spatial-Temporal Sampler, KSampler, SamplerCustomAdvanced, ...):
- every positive prompt entry (samplers/branches.py decides which, by what they are) gets the local
  prompts of the regions joined to its context along the token axis, and the run state records how
  that context splits, by the entry's uuid;
- the weights of the run are resolved for its number of steps (samplers/region_weights.py);
- the state (attention/region_patch.py RegionRunState) goes into the run's transformer_options.
A ControlNet on a positive entry keeps seeing the full prompt alone (crossattn_controlnet).
"""
from __future__ import annotations

import logging

import torch

from ..attention.region_patch import REGION_RUN, RegionRunState, install_region_attention
from ..attention.regions import LayerMasks, RegionTokens
from ..errors import AIDInputError
from .branches import install_positive_branch_marker, positive_uuids
from .region_layout import RegionLayout

WRAPPER_KEY = "aid.region_run"


def local_contexts(layout: RegionLayout) -> list[torch.Tensor]:
    """The context [1, T_i, C] of every region's local prompt, in region order."""
    return [region.conditioning[0][0] for region in layout.regions]


def join_local_prompts(entry: dict, contexts, node_name: str) -> tuple[dict, RegionTokens]:
    """A copy of a processed cond `entry` whose cross-attention context is [own; local 1; ...; local N]."""
    import comfy.conds

    model_conds = dict(entry["model_conds"])
    context = model_conds["c_crossattn"].cond
    for index, local in enumerate(contexts):
        if local.shape[-1] != context.shape[-1]:
            raise AIDInputError(node_name, "regions", f"the local prompt of region {index + 1} was encoded for "
                                f"another model ({local.shape[-1]}-wide, the prompt is {context.shape[-1]}-wide).",
                                "encode every local prompt with the CLIP of the same checkpoint.")
    rows = context.shape[0]
    joined = torch.cat([context] + [local.to(context).expand(rows, -1, -1) for local in contexts], dim=1)
    model_conds["c_crossattn"] = comfy.conds.CONDCrossAttn(joined)
    if entry.get("control") is not None and "crossattn_controlnet" not in model_conds:
        model_conds["crossattn_controlnet"] = comfy.conds.CONDCrossAttn(context)
    updated = dict(entry, model_conds=model_conds)
    return updated, RegionTokens(int(context.shape[1]), tuple(int(local.shape[1]) for local in contexts))


class RegionRun:
    """SAMPLER_SAMPLE wrapper of a model patched for `layout` with `weights` (anything with rows_for)."""

    def __init__(self, layout: RegionLayout, weights, node_name: str):
        self.layout = layout
        self.weights = weights
        self.node_name = node_name

    def __deepcopy__(self, memo):
        return self  # never changed after construction; holds tensors ModelPatcher.clone() need not copy

    def __call__(self, executor, guider, sigmas, extra_args, callback, noise, *args, **kwargs):
        positive = positive_uuids(guider.conds, self.node_name)
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
        steps = len(sigmas) - 1
        weights = self.weights.rows_for(steps, self.layout.names).to(noise.device)
        if weights.shape[1] not in (1, noise.shape[0]):
            raise AIDInputError(self.node_name, "weights", f"{weights.shape[1]} weight rows for a latent batch of "
                                f"{noise.shape[0]}.", "use one weight setting for the whole batch.")
        state = RegionRunState(layouts, LayerMasks(self.layout.rasterise), weights,
                               tuple(float(sigma) for sigma in sigmas), token_counts)
        extra_args["model_options"].setdefault("transformer_options", {})[REGION_RUN] = state
        return executor(guider, sigmas, extra_args, callback, noise, *args, **kwargs)


def region_model(model, layout: RegionLayout, weights, node_name: str):
    """A clone of `model` with region attention on every cross-attention layer and the run wrappers."""
    import comfy.patcher_extension

    clone = model.clone()
    install_region_attention(clone, node_name)
    install_positive_branch_marker(clone, node_name)
    kind = comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE
    clone.remove_wrappers_with_key(kind, WRAPPER_KEY)
    clone.add_wrapper_with_key(kind, WRAPPER_KEY, RegionRun(layout, weights, node_name))
    return clone
