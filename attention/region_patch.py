"""The cross-attention replace patch of spatial-temporal attention control, and where it is installed.

Per call, the rows of every chunk whose prompt entry carries regions (the run state under REGION_RUN
says which, by the entry's uuid, and how its context splits into the full prompt and the local
prompts) get the per-pixel mix of attention/regions.py (convex, or the paper code's official one) with
the weights at the current sigma. Every other chunk (the negative prompt, other entries, extra passes
of SAG or PAG) gets plain attention over its own keys, so the unconditional branch is untouched.
The official mix reads g_u from the chunk of the run's negative prompt entry (by uuid, never by
position) in the same call, row by row (each chunk holds every latent row, in order); a call without
it cannot be mixed that way and stops with RegionMixError.

Coexistence with other patches at the same key:
- a patch found at install time becomes `previous` and is the attention function: it is called on the
  whole batch once per key set (the full prompt, then each local prompt), each row given the keys of
  that set; rows of other chunks keep their own keys. Key sets of different lengths are repeated to a
  common length, which softmax attention does not notice. Each call's output is a full attention
  output, so a term another pack adds inside its patch (IPAdapter_plus) is mixed with weights summing
  to 1 and counts once.
- AID's interpolation patch is always the inner one: installed after this one, AID puts itself
  inside (attention/install.py asks `stays_outermost`), because AID calls what it chains to with
  joined key sets [own; endpoint], which a patch that splits keys by token ranges cannot read.
- IPAdapter_plus, applied later, calls `.add(callback, **kwargs)` (its Attn2Replace protocol): the terms
  are added to the mixed output within their sigma range, as Attn2Replace adds them to plain attention.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace

import torch

from .install import UnsupportedModelError, existing_replace_patch, install_keys, transformer_block_keys
from .patch import comfy_attention, with_added_terms
from ..errors import AIDInputError
from .regions import (LayerMasks, RegionTokens, mix_coefficients, official_coefficients, official_mix, region_mix,
                      repeat_to_tokens)

REGION_RUN = "aid_region_run"  # key of the RegionRunState in transformer_options during a sampling run
MAX_TOKEN_REPEAT = 8


class RegionRunError(RuntimeError):
    """The patched model was called without a run state (outside a ComfyUI sampling run)."""


class RegionMixError(AIDInputError):
    """The official mix found no unconditional row for a regional chunk in the same model call."""


@dataclass
class RegionRunState:
    """What the patches need during one sampling run, written by samplers/region_run.py.

    layouts: uuid of each prompt entry with regions -> its RegionTokens. masks: the regions per layer.
    weights: the weights at a sigma, weights(sigma or None) -> [rows or 1, N] (rows: one per latent row, for
    candidate settings sampled side by side; samplers/region_weights.py maps the sigma onto the model's
    whole schedule). mix: "convex" or "official". negative: uuids of the run's negative prompt entries
    (the official mix's g_u).
    """

    layouts: dict
    masks: LayerMasks
    weights: object
    mix: str = "convex"
    negative: frozenset = frozenset()
    token_counts: dict = field(default_factory=dict)  # uuid -> the entry's own context length (before joining)

    def own_keys(self, uuid, keys: torch.Tensor) -> torch.Tensor:
        """One repetition of a chunk's keys: ComfyUI repeats a short context to the joined prompt's length,
        which softmax attention does not notice, so attending to one copy gives the same output, cheaper."""
        tokens = self.token_counts.get(uuid)
        if tokens and keys.shape[1] > tokens and keys.shape[1] % tokens == 0:
            return keys[:, :tokens]
        return keys

    def weights_now(self, extra_options: dict, device) -> torch.Tensor:
        """[rows or 1, N] weights at the current sigma."""
        sigmas = extra_options.get("sigmas")
        sigma = float(sigmas.reshape(-1)[0]) if sigmas is not None else None
        return self.weights(sigma).to(device)


@dataclass
class RegionPatch:
    """attn2 replace patch: regional mix on the rows of prompt entries with regions, plain elsewhere."""

    node_name: str = "Apply Spatial-Temporal Attention"
    previous: object = None
    added: list = field(default_factory=list)

    stays_outermost = True  # read by attention/install.py: AID's patch goes inside this one

    def __deepcopy__(self, memo):
        # ModelPatcher.clone() deep-copies model_options; the chained patch is shared, the added terms per clone.
        return replace(self, added=copy.copy(self.added))

    def with_previous(self, previous) -> "RegionPatch":
        """The same patch around another inner patch (AID installs itself inside with this)."""
        return replace(self, previous=previous, added=copy.copy(self.added))

    def add(self, callback, **kwargs):
        """IPAdapter_plus's protocol: add callback(out, q, k, v, extra_options, **kwargs) within its sigma range."""
        self.added.append((callback, kwargs))

    def to(self, *args, **kwargs):
        """ModelPatcher moves patch objects with .to(device) / .to(dtype): pass it on to the chained patch."""
        if self.previous is not None and hasattr(self.previous, "to"):
            previous = self.previous.to(*args, **kwargs)
            if previous is not self.previous:
                return replace(self, previous=previous)
        return self

    def __call__(self, q, k, v, extra_options):
        state = extra_options.get(REGION_RUN)
        if state is None:
            raise RegionRunError(
                f"{self.node_name}: the model was called outside a ComfyUI sampling run, so the local prompts "
                f"were never joined to the prompt. Fix: sample the patched model with a core sampler node "
                f"(KSampler, SamplerCustom, SamplerCustomAdvanced) or Spatial-Temporal Sampler.")
        uuids = extra_options["uuids"]
        chunk_rows = q.shape[0] // len(uuids)
        regional = {chunk: state.layouts[uuid] for chunk, uuid in enumerate(uuids) if uuid in state.layouts}
        if not regional:
            out = self._attend(q, k, v, extra_options)
        elif self.previous is None:
            out = self._regional(q, k, v, extra_options, state, regional, chunk_rows)
        else:
            out = self._regional_chained(q, k, v, extra_options, state, regional, chunk_rows)
        return with_added_terms(self.added, out, q, k, v, extra_options)

    def _attend(self, q, k, v, extra_options):
        if self.previous is not None:
            return self.previous(q, k, v, extra_options)
        return comfy_attention(extra_options)(q, k, v)

    def _coefficients(self, extra_options, state, q, rows: slice):
        """[rows or 1, N, tokens] mixing coefficients of one chunk at this layer and step."""
        weights = state.weights_now(extra_options, q.device)
        if weights.shape[0] > 1:
            weights = weights[: rows.stop - rows.start]
        masks = state.masks.for_layer(extra_options, q.shape[1], q.device, q.dtype)
        coefficients = official_coefficients if state.mix == "official" else mix_coefficients
        return coefficients(weights.to(q.dtype), masks)

    def _uncond_chunks(self, extra_options, state, regional) -> list[int]:
        """The chunks of the run's negative prompt in this call (the official mix's g_u); [] for the convex mix.

        Raises RegionMixError when a regional chunk has none beside it (cfg 1, a guider without a negative,
        or a call ComfyUI split because memory was short)."""
        if state.mix != "official" or not regional:
            return []
        chunks = [chunk for chunk, uuid in enumerate(extra_options["uuids"]) if uuid in state.negative]
        if not chunks:
            raise RegionMixError(
                self.node_name, "mix", "the official mix needs the negative prompt's rows (g_u) in the same model "
                "call as the positive prompt's, and this call has none (ComfyUI leaves them out at cfg 1 and runs "
                "them separately when memory is short).", "use mix 'convex', or a cfg above 1 with a negative "
                "prompt and enough free memory to batch both.")
        return chunks

    @staticmethod
    def _mix(state, global_out, local_outs, coefficients, uncond_out):
        if state.mix == "official":
            return official_mix(global_out, local_outs, coefficients, uncond_out)
        return region_mix(global_out, local_outs, coefficients)

    @staticmethod
    def _needed(coefficients: torch.Tensor) -> list[bool]:
        """Which local outputs the mix uses; all of them while weights need gradients (d out / d w != 0 at 0)."""
        if coefficients.requires_grad:
            return [True] * coefficients.shape[1]
        return [bool(coefficients[:, index].any()) for index in range(coefficients.shape[1])]

    def _regional(self, q, k, v, extra_options, state, regional, chunk_rows):
        """Plain attention through ComfyUI's backend: one call per plain chunk (over one repetition of its own
        keys), 1 + N per region chunk."""
        attention = comfy_attention(extra_options)
        uuids = extra_options["uuids"]
        chunks = q.shape[0] // chunk_rows
        pieces = {}
        for chunk in range(chunks):
            if chunk not in regional:
                rows = slice(chunk * chunk_rows, (chunk + 1) * chunk_rows)
                own_k, own_v = state.own_keys(uuids[chunk], k[rows]), state.own_keys(uuids[chunk], v[rows])
                pieces[chunk] = attention(q[rows], own_k, own_v)
        uncond = self._uncond_chunks(extra_options, state, regional)
        uncond_out = _mean([pieces[chunk] for chunk in uncond]) if uncond else None
        for chunk, layout in regional.items():
            rows = slice(chunk * chunk_rows, (chunk + 1) * chunk_rows)
            key_sets, value_sets = layout.split(k[rows]), layout.split(v[rows])
            global_out = attention(q[rows], key_sets[0], value_sets[0])
            coefficients = self._coefficients(extra_options, state, q, rows)
            needed = self._needed(coefficients)
            if not any(needed):
                pieces[chunk] = global_out
                continue
            local_outs = [attention(q[rows], key_sets[i + 1], value_sets[i + 1]) if use else None
                          for i, use in enumerate(needed)]
            pieces[chunk] = self._mix(state, global_out, local_outs, coefficients, uncond_out)
        ordered = [pieces[chunk] for chunk in range(chunks)]
        return torch.cat(ordered) if len(ordered) > 1 else ordered[0]

    def _regional_chained(self, q, k, v, extra_options, state, regional, chunk_rows):
        """Through the previous patch: one whole-batch call per key set (full prompt, then each local prompt)."""
        chunks = q.shape[0] // chunk_rows
        splits = {chunk: (layout.split(k[chunk * chunk_rows:(chunk + 1) * chunk_rows]),
                          layout.split(v[chunk * chunk_rows:(chunk + 1) * chunk_rows]))
                  for chunk, layout in regional.items()}
        set_count = 1 + max(len(layout.local_tokens) for layout in regional.values())
        coefficients = {chunk: self._coefficients(extra_options, state, q,
                                                  slice(chunk * chunk_rows, (chunk + 1) * chunk_rows))
                        for chunk in regional}
        per_chunk = [self._needed(c) for c in coefficients.values()]  # each check waits for the device: once
        needed = [True] + [any(chunk_needs[index] for chunk_needs in per_chunk) for index in range(set_count - 1)]
        outs = []
        for index, use in enumerate(needed):
            if not use:
                outs.append(None)
                continue
            keys, values = [], []
            for chunk in range(chunks):
                rows = slice(chunk * chunk_rows, (chunk + 1) * chunk_rows)
                if chunk in splits:
                    keys.append(splits[chunk][0][index])
                    values.append(splits[chunk][1][index])
                else:
                    keys.append(k[rows])
                    values.append(v[rows])
            outs.append(self.previous(q, *self._common_length(keys, values), extra_options))
        uncond = self._uncond_chunks(extra_options, state, regional)
        uncond_out = _mean([outs[0][chunk * chunk_rows:(chunk + 1) * chunk_rows] for chunk in uncond]) if uncond \
            else None
        pieces = []
        for chunk in range(chunks):
            rows = slice(chunk * chunk_rows, (chunk + 1) * chunk_rows)
            if chunk not in regional:
                pieces.append(outs[0][rows])
                continue
            local_outs = [out[rows] if out is not None else None for out in outs[1:]]
            pieces.append(self._mix(state, outs[0][rows], local_outs, coefficients[chunk], uncond_out))
        return torch.cat(pieces) if len(pieces) > 1 else pieces[0]

    def _common_length(self, keys, values):
        """Key and value sets of the chunks repeated to one token count, joined along rows."""
        lengths = {key.shape[1] for key in keys}
        tokens = math.lcm(*lengths)
        if tokens > MAX_TOKEN_REPEAT * max(lengths):
            raise ValueError(f"{self.node_name}: the prompts of one batch have token counts "
                             f"{sorted(lengths)} whose common multiple ({tokens}) is too long to attend to through "
                             f"the chained attention patch. Fix: use prompts of whole 77-token chunks (CLIP Text "
                             f"Encode makes them).")
        return (torch.cat([repeat_to_tokens(key, tokens) for key in keys]),
                torch.cat([repeat_to_tokens(value, tokens) for value in values]))


def _mean(outs: list) -> torch.Tensor:
    """g_u of several negative entries (ConditioningCombine): their mean; one entry's output as it is."""
    return outs[0] if len(outs) == 1 else torch.stack(outs).mean(dim=0)


def install_region_attention(model, node_name: str) -> int:
    """Install RegionPatch on every cross-attention layer of `model` (a ModelPatcher clone).

    An earlier region patch at a key is replaced (keeping what it chained to); any other patch is
    chained to. Returns the number of patched layers.
    """
    keys = transformer_block_keys(model.model.diffusion_model)
    if not keys:
        raise UnsupportedModelError("this model has no UNet transformer blocks (SD1.x, SD2.x and SDXL-family "
                                    "models have them).")
    replace_patches = model.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn2", {})
    for key, _ in install_keys(keys, "attn2", replace_patches):
        previous = existing_replace_patch(model.model_options, "attn2", key)
        if isinstance(previous, RegionPatch):
            previous = previous.previous
        model.set_model_attn2_replace(RegionPatch(node_name, previous), *key)
    return len(keys)
