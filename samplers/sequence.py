"""The batched sequence sampler: all frames of a sequence in one denoising run, endpoints inside.

Frame f depends only on itself and on the two endpoint trajectories, so a batch
[A, f_1 .. f_k, B] gives every frame at once (algorithm.md section 3). Long sequences are cut
into chunks that each hold both endpoints again; the endpoint rows of later chunks repeat
those of the first and are dropped. A participant of a split run (samplers/shares.py) samples only
its share: its frames and the endpoints they attend to.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..attention.interpolation import DEFAULT_MODE
from ..attention.joint_override import DEFAULT_BLOCKS
from ..attention.layout import FrameLayout
from ..attention.patch import InterpolationSettings
from ..attention.registry import install_for_model
from .branches import install_positive_branch_marker
from .conditioning import select_frames
from .sequence_run import install_sequence_run
from .shares import Share, ShareRun, share_runs
from .step_noise import SequenceSeed


@dataclass(frozen=True)
class InterpolationOptions:
    """User settings of interpolated attention, shared by Apply AID and AID Sampler."""

    mode: str = DEFAULT_MODE
    layers: str = "self and cross"
    start_percent: float = 0.0
    end_percent: float = 0.5
    fusion: str = "concat"
    blocks: str = DEFAULT_BLOCKS  # DiT block types to interpolate ("all", "double", "single"); UNets ignore it


def interpolation_settings(model, coefficients, options: InterpolationOptions, node_name: str,
                           layout: FrameLayout | None = None) -> InterpolationSettings:
    """Turn percents of the schedule into the sigma range the patch compares against."""
    model_sampling = model.get_model_object("model_sampling")
    layout = layout or FrameLayout.between(coefficients)
    return InterpolationSettings(
        coefficients=layout.coefficients, mode=options.mode,
        sigma_start=float(model_sampling.percent_to_sigma(options.start_percent)),
        sigma_end=float(model_sampling.percent_to_sigma(options.end_percent)),
        active=options.start_percent < options.end_percent, fusion=options.fusion, node_name=node_name,
        layout=layout)


def patched_model(model, coefficients, options: InterpolationOptions, node_name: str, image_endpoints=None,
                  layout: FrameLayout | None = None):
    """A clone of `model` with interpolation patches for a batch of frames with these coefficients.

    `layout` (attention/layout.py) describes a batch of keyframe segments instead; the coefficients
    are then its rows'.

    The attention patches are whatever the model's family needs (attention/registry.py: replace patches
    on UNets, the joint-attention override on DiTs). Every family gets the run wrappers every sampler
    goes through: the positive branch marker (samplers/branches.py) and the sequence checks, per-frame
    size and guidance conditioning and shared step noise (samplers/sequence_run.py). `image_endpoints`
    (attention.image_prompt.ImageEndpoints) adds IP-Adapter image attention to every cross-attention
    layer of a UNet, inside the same patch.
    """
    settings = interpolation_settings(model, coefficients, options, node_name, layout)
    clone = model.clone()
    branches = None
    if image_endpoints is not None:
        branches = image_endpoints.branches(clone.model.diffusion_model, options.mode, settings.layout)
    family = install_for_model(clone, settings, options.layers, options.blocks, image_branches=branches)
    install_positive_branch_marker(clone, node_name)
    install_sequence_run(clone, settings.layout, node_name, family)
    return clone


def empty_sequence_latent(model, frames: int, width: int, height: int) -> torch.Tensor:
    """Zeros for `frames` frames in the model's latent layout: [F, C, h, w], or [F, C, 1, h, w] for
    image models with video latents (Qwen-Image), as comfy.sample.fix_empty_latent_channels makes them."""
    latent_format = model.get_model_object("latent_format")
    shape = [frames, latent_format.latent_channels, height // 8, width // 8]
    if getattr(latent_format, "latent_dimensions", 2) == 3:
        shape.insert(2, 1)
    return torch.zeros(shape)


def plan_chunks(frames: int, max_frames_per_batch: int) -> list[list[int]]:
    """Frame indices of each sampling run; every run holds frames 0 and F-1, interiors split evenly.

    max_frames_per_batch 0 (or >= F) means one run. It must otherwise be at least 3.
    """
    if max_frames_per_batch <= 0 or max_frames_per_batch >= frames:
        return [list(range(frames))]
    if max_frames_per_batch < 3:
        raise ValueError("a batch needs room for both endpoints and at least one frame (3).")
    interior = list(range(1, frames - 1))
    runs = math.ceil(len(interior) / (max_frames_per_batch - 2))
    size, extra = divmod(len(interior), runs)
    chunks, start = [], 0
    for run in range(runs):
        end = start + size + (1 if run < extra else 0)
        chunks.append([0] + interior[start:end] + [frames - 1])
        start = end
    return chunks


@dataclass
class SequenceRequest:
    """Everything one sequence needs besides the model; tensors have one row per frame."""

    positive: list  # CONDITIONING with F rows per entry
    negative: list
    coefficients: tuple
    latent: torch.Tensor  # [F, C, H, W]
    noise: torch.Tensor  # [F, C, H, W]
    seed: int
    seed_b: int | None
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    denoise: float = 1.0
    options: InterpolationOptions = InterpolationOptions()
    max_frames_per_batch: int = 0
    node_name: str = "AID Sampler"
    image_endpoints: object = None  # attention.image_prompt.ImageEndpoints (IP-Adapter images), or None


def sample_sequence(model, request: SequenceRequest, progress=None, share: Share | None = None) -> torch.Tensor:
    """Denoise every frame of `request`, in as few runs as max_frames_per_batch allows; returns [F, C, H, W].

    With a `share` (samplers/shares.py, made for this request's F frames) only its rows are sampled and
    only its frames returned, [len(share.frames), C, H, W] in frame order.
    `progress(done_steps, total_steps, x0_of_a_frame)` is called after every step of every run.
    """
    import comfy.model_management
    import comfy.samplers
    import comfy.utils

    frames = len(request.coefficients)
    if share is not None and share.rows[-1] >= frames:
        raise ValueError(f"the share was made for a longer sequence than these {frames} frames.")
    if share is None:
        runs = [ShareRun(tuple(chunk), tuple(chunk) if number == 0 else tuple(chunk[1:-1]))
                for number, chunk in enumerate(plan_chunks(frames, request.max_frames_per_batch))]
    else:
        runs = share_runs(FrameLayout.between(request.coefficients), share, request.max_frames_per_batch)
    result = torch.empty_like(request.latent)
    for chunk_number, run in enumerate(runs):
        comfy.model_management.throw_exception_if_processing_interrupted()
        chunk = list(run.rows)
        coefficients = tuple(request.coefficients[i] for i in chunk)
        model_chunk = patched_model(model, coefficients, request.options, request.node_name, request.image_endpoints)
        ksampler = comfy.samplers.KSampler(model_chunk, steps=request.steps, device=model_chunk.load_device,
                                           sampler=request.sampler_name, scheduler=request.scheduler,
                                           denoise=request.denoise, model_options=model_chunk.model_options)
        sigmas = ksampler.sigmas
        steps_this_run = len(sigmas) - 1
        sampler = comfy.samplers.sampler_object(request.sampler_name)
        middle = len(chunk) // 2
        offset = chunk_number * steps_this_run
        total = steps_this_run * len(runs)

        def callback(step, x0, x, total_steps, offset=offset, total=total, middle=middle):
            comfy.model_management.throw_exception_if_processing_interrupted()
            if progress is not None:
                progress(offset + step + 1, total, x0[middle:middle + 1])

        index = torch.tensor(chunk)
        samples = comfy.samplers.sample(
            model_chunk, request.noise[index], select_frames(request.positive, chunk), request.negative,
            request.cfg, model_chunk.load_device, sampler, sigmas, model_chunk.model_options,
            latent_image=request.latent[index], callback=callback,
            disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=SequenceSeed(request.seed, request.seed_b))
        samples = samples.to(comfy.model_management.intermediate_device())
        for position, frame in enumerate(chunk):
            if frame in run.produces:
                result[frame] = samples[position]
    return result if share is None else result[list(share.frames)]
