"""The batched sequence sampler: all frames of a sequence in one denoising run, endpoints inside.

Frame f depends only on itself and on the two endpoint trajectories, so a batch
[A, f_1 .. f_k, B] gives every frame at once (docs/how-it-works.md). Long sequences are cut
into chunks that each hold both endpoints again; the endpoint rows of later chunks repeat
those of the first and are dropped. A participant of a split run (samplers/sequence/shares.py) samples only
its share: its frames and the endpoints they attend to.

`sample_rows` is the run loop itself, for any frame layout (attention/layout.py): a run is a set of
rows plus the key rows they need. AID Sampler's two-endpoint chunks (`plan_chunks`) and keyframe
sequences (samplers/keyframes/plan.py) both go through it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from ...attention.install import coefficient_map_of
from ...attention.interpolation import DEFAULT_MODE
from ...attention.joint_override import DEFAULT_BLOCKS
from ...attention.layout import FrameLayout
from ...attention.patch import InterpolationSettings
from ...attention.registry import install_for_model
from ...errors import AIDInputError
from .branches import install_positive_branch_marker
from .conditioning import select_frames
from .run import install_sequence_run
from .shares import Share, share_runs
from .seeds import SequenceSeed


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


def with_regions_of(model, settings: InterpolationSettings) -> InterpolationSettings:
    """`settings` with the regional-interpolation map an earlier AID patch on `model` carries (AID Regional
    Interpolation), so patching the model again (AID Sampler, Apply AID again) keeps the regions.

    Regions hold the outside at row 0 of every batch, endpoint A in a two-endpoint sequence; a keyframe
    sequence's runs start at different keys, so it is refused there by name."""
    regions = coefficient_map_of(model)
    if regions is None:
        return settings
    keys = {key for a, b, _ in settings.frame_layout().rows for key in (a, b)}
    if len(keys) > 2:
        raise AIDInputError(settings.node_name, "model", "this model carries AID Regional Interpolation, which holds "
                            "the outside of its regions at endpoint A; a keyframe sequence has no one endpoint A "
                            "in every run.", "connect the model without AID Regional Interpolation, or use it "
                            "between two endpoints (Apply AID, AID Regional Interpolation, KSampler).")
    return replace(settings, coefficient_map=regions)


def patched_model(model, coefficients, options: InterpolationOptions, node_name: str, image_endpoints=None,
                  layout: FrameLayout | None = None):
    """A clone of `model` with interpolation patches for a batch of frames with these coefficients.

    `layout` (attention/layout.py) describes a batch of keyframe segments instead; the coefficients
    are then its rows'.

    The attention patches are whatever the model's family needs (attention/registry.py: replace patches
    on UNets, the joint-attention override on DiTs). Every family gets the run wrappers every sampler
    goes through: the positive branch marker (samplers/sequence/branches.py) and the sequence checks, per-frame
    size and guidance conditioning and shared step noise (samplers/sequence/run.py). `image_endpoints`
    (attention.image_prompt.ImageEndpoints) adds IP-Adapter image attention to every cross-attention
    layer of a UNet, inside the same patch.
    """
    settings = with_regions_of(model, interpolation_settings(model, coefficients, options, node_name, layout))
    clone = model.clone()
    branches = None
    if image_endpoints is not None:
        branches = image_endpoints.branches(clone.model.diffusion_model, options.mode, settings.layout)
    family = install_for_model(clone, settings, options.layers, options.blocks, image_branches=branches)
    install_positive_branch_marker(clone, node_name)
    active = (settings.sigma_end, settings.sigma_start) if settings.active else None
    install_sequence_run(clone, settings.layout, node_name, family, active)
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


@dataclass
class RowSampling:
    """The settings every run of a sequence shares (everything but its rows)."""

    negative: list
    seed: int  # a SequenceSeed when the keys have their own seeds (samplers/sequence/step_noise.py)
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    denoise: float = 1.0
    options: InterpolationOptions = InterpolationOptions()
    node_name: str = "AID Sampler"
    image_endpoints: object = None  # ImageEndpoints / ImageKeys (IP-Adapter images), or None


def sample_rows(model, layout: FrameLayout, runs, positive_for, noise: torch.Tensor, latent: torch.Tensor,
                settings: RowSampling, sources: dict | None = None, progress=None) -> torch.Tensor:
    """Denoise the rows of `layout` in sampling runs; returns [R, C, H, W], one result per row.

    `runs[i]` lists the rows of run i; each run holds the key rows its interior rows need and is sampled as
    one batch laid out by layout.select(runs[i]). `positive_for(rows)` gives the run's per-row CONDITIONING;
    `noise` and `latent` have one row per layout row. A row in several runs (a key) is taken from run
    `sources[row]` (default: the first run holding it). `progress(done_steps, total_steps, x0_of_a_row)` is
    called after every step of every run.
    """
    import comfy.model_management
    import comfy.samplers
    import comfy.utils

    if sources is None:
        sources = {}
        for number, rows in enumerate(runs):
            for row in rows:
                sources.setdefault(row, number)
    result = torch.empty_like(latent)
    for number, rows in enumerate(runs):
        comfy.model_management.throw_exception_if_processing_interrupted()
        rows = list(rows)
        run_layout = layout.select(rows)
        model_run = patched_model(model, run_layout.coefficients, settings.options, settings.node_name,
                                  settings.image_endpoints, layout=run_layout)
        ksampler = comfy.samplers.KSampler(model_run, steps=settings.steps, device=model_run.load_device,
                                           sampler=settings.sampler_name, scheduler=settings.scheduler,
                                           denoise=settings.denoise, model_options=model_run.model_options)
        sigmas = ksampler.sigmas
        steps_this_run = len(sigmas) - 1
        sampler = comfy.samplers.sampler_object(settings.sampler_name)
        middle = len(rows) // 2
        offset = number * steps_this_run
        total = steps_this_run * len(runs)

        def callback(step, x0, x, total_steps, offset=offset, total=total, middle=middle):
            comfy.model_management.throw_exception_if_processing_interrupted()
            if progress is not None:
                progress(offset + step + 1, total, x0[middle:middle + 1])

        index = torch.tensor(rows)
        samples = comfy.samplers.sample(
            model_run, noise[index], positive_for(rows), settings.negative, settings.cfg, model_run.load_device,
            sampler, sigmas, model_run.model_options, latent_image=latent[index], callback=callback,
            disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=settings.seed)
        samples = samples.to(comfy.model_management.intermediate_device())
        for position, row in enumerate(rows):
            if sources.get(row) == number:
                result[row] = samples[position]
    return result


def sample_sequence(model, request: SequenceRequest, progress=None, share: Share | None = None) -> torch.Tensor:
    """Denoise every frame of `request`, in as few runs as max_frames_per_batch allows; returns [F, C, H, W].

    With a `share` (samplers/sequence/shares.py, made for this request's F frames) only its rows are sampled and
    only its frames returned, [len(share.frames), C, H, W] in frame order.
    `progress(done_steps, total_steps, x0_of_a_frame)` is called after every step of every run.
    """
    frames = len(request.coefficients)
    layout = FrameLayout.between(request.coefficients)
    if share is not None and share.rows[-1] >= frames:
        raise ValueError(f"the share was made for a longer sequence than these {frames} frames.")
    if share is None:
        runs, sources = plan_chunks(frames, request.max_frames_per_batch), None
    else:
        share_plan = share_runs(layout, share, request.max_frames_per_batch)
        runs = [run.rows for run in share_plan]
        sources = {row: number for number, run in enumerate(share_plan) for row in run.produces}
    settings = RowSampling(request.negative, SequenceSeed(request.seed, request.seed_b), request.steps, request.cfg,
                           request.sampler_name, request.scheduler, request.denoise, request.options,
                           request.node_name, request.image_endpoints)
    result = sample_rows(model, layout, runs, lambda rows: select_frames(request.positive, rows), request.noise,
                         request.latent, settings, sources=sources, progress=progress)
    return result if share is None else result[list(share.frames)]
