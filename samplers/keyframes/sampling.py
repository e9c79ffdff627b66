"""Sample a planned keyframe sequence: every segment an AID interpolation between its two keys.

The plan (samplers/keyframes/plan.py) lists the rows to sample and the runs; this module gives each row
its noise (slerp of its keys' seeds' noise, samplers/sequence/noise.py), each run its per-row prompts
(samplers/sequence/conditioning.py keyframe_conditioning, built per run so a run only pays for the prompt
lengths it holds) and drives the runs through samplers/sequence/sampler.py sample_rows. Holds are copies
of their key's row.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...attention.layout import FrameLayout
from ..sequence.conditioning import common_token_count, keyframe_conditioning, layout_keys
from .plan import KeyframePlan, Keyframes, key_seeds
from ..sequence.noise import layout_noise
from ..sequence.sampler import InterpolationOptions, RowSampling, sample_rows
from ..sequence.seeds import SequenceSeed


# Contexts are repeated to the LCM of a run's token counts: 77/154/231/308/385-token keys in one run give 4620,
# 539, 616 and 693-token keys would give 38808 (the context's memory and cross-attention time grow with it).
MAX_RUN_TOKENS = 77 * 60


@dataclass
class KeyframeRequest:
    """Everything a keyframe sequence needs besides the model."""

    keyframes: Keyframes
    plan: KeyframePlan
    negative: list
    latent_shape: tuple  # one frame's latent: (channels, height // 8, width // 8), Qwen-Image (channels, 1, h, w)
    seed: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    denoise: float = 1.0
    blend: str = "lerp"
    options: InterpolationOptions = InterpolationOptions()
    node_name: str = "AID Keyframe Sampler"
    image_keys: object = None  # attention.image_prompt.ImageKeys (one IP-Adapter image per key), or None


def key_names(keyframes: Keyframes) -> list[str]:
    """How errors name each key: where it was written."""
    return [key.source or f"key {index + 1}" for index, key in enumerate(keyframes.keys)]


def segment_guidance(keyframes: Keyframes, plan: KeyframePlan) -> dict:
    """(key_a, key_b) -> the PAID guidance CONDITIONING of that segment (given on its first key)."""
    keys = keyframes.keys
    return {(segment.key_a, segment.key_b): keys[segment.key_a].guidance for segment in plan.timeline.segments
            if keys[segment.key_a].guidance is not None}


def run_conditioning(keyframes: Keyframes, plan: KeyframePlan, rows, blend: str = "lerp"):
    """The per-row positive CONDITIONING of a run holding these rows of the plan."""
    return keyframe_conditioning([key.conditioning for key in keyframes.keys], plan.layout.select(rows), blend,
                                 segment_guidance(keyframes, plan), names=key_names(keyframes))


def check_conditioning(keyframes: Keyframes, plan: KeyframePlan, blend: str = "lerp") -> int:
    """Build the prompts of a small stand-in batch per segment (its two keys and one frame between them) so
    that mismatched prompts stop the run before any sampling; returns the largest token count they get.

    Per segment, not all keys at once: the contexts are repeated to the LCM of the token counts they hold,
    and keys that never share a run must not pay for each other's lengths here either."""
    conditionings = [key.conditioning for key in keyframes.keys]
    guidance, names = segment_guidance(keyframes, plan), key_names(keyframes)
    largest = 0
    for segment in plan.timeline.segments:
        a, b = segment.key_a, segment.key_b
        stand_in = FrameLayout(((a, a, 0.0), (b, b, 0.0), (a, b, 0.5)))
        conditioning = keyframe_conditioning(conditionings, stand_in, blend, guidance, names=names)
        largest = max(largest, *(int(context.shape[1]) for context, _ in conditioning))
    return largest


def run_token_counts(keyframes: Keyframes, plan: KeyframePlan) -> list[int]:
    """The context length of each run's prompts: the LCM of the token counts of the keys (and guidance) it holds."""
    guidance = segment_guidance(keyframes, plan)
    counts = []
    for index in range(len(plan.runs)):
        layout = plan.run_layout(index)
        segments = {(a, b) for a, b, t in layout.rows if 0.0 < t < 1.0} & set(guidance)
        contexts = [keyframes.keys[k].conditioning[0][0] for k in layout_keys(layout)]
        contexts += [guidance[segment][0][0] for segment in segments]
        counts.append(common_token_count(*(int(c.shape[1]) for c in contexts)))
    return counts


def check_run_tokens(keyframes: Keyframes, plan: KeyframePlan, limit: int = MAX_RUN_TOKENS) -> list[int]:
    """Each run's context length (run_token_counts); raises ValueError naming the keys when one passes `limit`."""
    counts = run_token_counts(keyframes, plan)
    for index, count in enumerate(counts):
        if count > limit:
            layout = plan.run_layout(index)
            names = key_names(keyframes)
            lengths = ", ".join(f"{names[k]} {int(keyframes.keys[k].conditioning[0][0].shape[1])}"
                                for k in layout_keys(layout))
            raise ValueError(f"prompts of {lengths} tokens run together and would be repeated to their common "
                             f"multiple, {count} tokens (at most {limit}).")
    return counts


def sample_keyframes(model, request: KeyframeRequest, progress=None, frames=None) -> torch.Tensor:
    """Denoise the rows of the request's plan; returns [F, C, H, W] in frame order (holds are copies).

    `frames` (default: every frame of the sequence) are the output frames to return; a share's plan
    (samplers/keyframes/plan.py share_plan) samples only the rows of its frames, so pass the share's frames.
    """
    plan, keyframes = request.plan, request.keyframes
    frames = range(len(plan.frame_rows)) if frames is None else frames
    latent = torch.zeros((plan.layout.frames, *request.latent_shape))
    seeds = key_seeds(keyframes, request.seed)
    noise = layout_noise(latent, plan.layout, seeds)
    settings = RowSampling(request.negative, SequenceSeed(request.seed, key_seeds=seeds), request.steps, request.cfg,
                           request.sampler_name, request.scheduler, request.denoise, request.options,
                           request.node_name, request.image_keys)
    rows = sample_rows(model, plan.layout, [run.rows for run in plan.runs],
                       lambda run_rows: run_conditioning(keyframes, plan, run_rows, request.blend), noise, latent,
                       settings, sources=plan.sources(), progress=progress)
    return rows[torch.tensor([plan.frame_rows[frame] for frame in frames], dtype=torch.long)]
