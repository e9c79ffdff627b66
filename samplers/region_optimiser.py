"""Per-image optimisation of the spatial-temporal weights w_i(s) for the CLIP objective (scoring/region_objective.py).

Two methods, both starting from the given weights and both keeping the best setting they evaluated (so
neither returns a worse one than its start), with the latent that setting sampled:
- gradient (the paper's): the weights [steps, objects] are a leaf tensor; each pass samples the image
  with gradients through the whole trajectory and the VAE decode, scores it, and takes one Adam step
  (default 3 passes, lr 0.005); a last pass without gradients scores the final weights. Memory is
  bounded by checkpointing (samplers/autograd.py). Adam's first steps move every weight by about the
  learning rate, so 3 passes at 0.005 move each weight by at most about 0.015: the start decides.
- search (gradient-free): each round samples M candidate settings as M rows of one batch with the same
  initial and step noise, scores them, and keeps the best; round 1 holds the start and M - 1
  perturbations of it, later rounds M perturbations of the best so far, at half the step size each
  round. A perturbation adds a random piecewise-linear offset per object (3 knots over the schedule),
  scaled to the size of the start's weights.
With the convex mix weights stay in 0..1; with the official one they are only kept non-negative by
search and not bounded at all by gradient (as in the paper's code). The result is a table over the
schedule percents of the run's steps (samplers/region_weights.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .autograd import (CheckpointedModelCall, decode_with_gradients, differentiable_sampler, gradients, normal_copy,
                       normal_tensors_)
from .region_layout import RegionLayout
from .region_run import region_model
from .region_weights import RegionWeights, RowWeights, run_percents
from .schedule_percent import SchedulePercent
from .step_noise import shared_step_noise

METHODS = ("gradient", "search")
SEARCH_KNOTS = 3
SEARCH_START_SCALE = 0.25


@dataclass
class RegionRequest:
    """One image to sample with regions; tensors have one row ([1, C, h, w])."""

    positive: list
    negative: list
    layout: RegionLayout
    weights: RegionWeights
    latent: torch.Tensor
    noise: torch.Tensor
    seed: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    denoise: float = 1.0
    noise_mask: torch.Tensor | None = None
    node_name: str = "Spatial-Temporal Sampler"
    mix: str = "convex"


@dataclass
class OptimisationResult:
    """The best setting found, its latent, and the objective of every evaluated setting per round."""

    method: str
    weights: RegionWeights
    latent: torch.Tensor
    names: tuple
    rounds: list = field(default_factory=list)  # per round: objectives of the settings evaluated in it
    best_terms: list = field(default_factory=list)  # 1 - cos for the image, then per region, of the best
    mix: str = "convex"
    largest_move: float = 0.0  # the largest change of any weight from its start (gradient: by the last pass)

    @property
    def start_objective(self) -> float:
        return self.rounds[0][0]

    @property
    def best_objective(self) -> float:
        return min(value for values in self.rounds for value in values)


def run_sigmas(model, request: RegionRequest) -> torch.Tensor:
    """The sigmas KSampler would use for these settings."""
    import comfy.samplers

    return comfy.samplers.KSampler(model, steps=request.steps, device=model.load_device, sampler=request.sampler_name,
                                   scheduler=request.scheduler, denoise=request.denoise,
                                   model_options=model.model_options).sigmas


def step_percents(model, sigmas) -> tuple[float, ...]:
    """The schedule percent of each step of a run with these sigmas."""
    return run_percents(sigmas, SchedulePercent(model.get_model_object("model_sampling")))


def _sample(clone, request: RegionRequest, sampler, sigmas, noise, latent, callback):
    """One run of the CFG guider (the path KSampler takes) on a region-patched clone."""
    import comfy.samplers
    import comfy.utils

    guider = comfy.samplers.CFGGuider(clone)
    guider.set_conds(request.positive, request.negative)
    guider.set_cfg(request.cfg)
    mask = request.noise_mask
    if mask is not None and latent.shape[0] > 1 and mask.shape[0] == 1:
        mask = mask.repeat(latent.shape[0], *([1] * (mask.dim() - 1)))
    return guider.sample(noise, latent, sampler, sigmas, denoise_mask=mask, callback=callback,
                         disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=request.seed)


def _callback(progress, offset: int, total: int):
    import comfy.model_management

    def callback(step, x0, x, total_steps):
        comfy.model_management.throw_exception_if_processing_interrupted()
        if progress is not None:
            progress(offset + step + 1, total, x0[:1].detach())

    return callback


def sample_fixed(model, request: RegionRequest, progress=None) -> torch.Tensor:
    """The image with the request's weights, no optimisation: latent [1, C, h, w] on the intermediate device."""
    import comfy.model_management
    import comfy.samplers

    clone = region_model(model, request.layout, request.weights, request.node_name, request.mix)
    sigmas = run_sigmas(clone, request)
    samples = _sample(clone, request, comfy.samplers.sampler_object(request.sampler_name), sigmas, request.noise,
                      request.latent, _callback(progress, 0, len(sigmas) - 1))
    return samples.to(comfy.model_management.intermediate_device())


def _decode(vae, latent: torch.Tensor) -> torch.Tensor:
    return vae.decode(latent)[..., :3]


def optimise_gradient(model, vae, objective, request: RegionRequest, passes: int = 3, learning_rate: float = 0.005,
                      progress=None) -> OptimisationResult:
    """The paper's method: Adam on the weights through sampling and decoding, one step per pass."""
    import comfy.model_management
    import comfy.samplers

    names = request.layout.names
    with gradients():
        sigmas = run_sigmas(model, request)
        steps = len(sigmas) - 1
        percents = step_percents(model, sigmas)
        start = request.weights.values_at(percents, names)
        parameter = start.clone().unsqueeze(1).requires_grad_(True)  # [steps, 1, N]
        optimizer = torch.optim.Adam([parameter], lr=learning_rate)
        clone = region_model(model, request.layout, RowWeights(parameter), request.node_name, request.mix)
        clone.set_model_unet_function_wrapper(CheckpointedModelCall(clone.model_options.get("model_function_wrapper")))
        grad_request = _normal_request(request)
        sampler = differentiable_sampler(request.sampler_name)
        comfy.model_management.load_model_gpu(objective.scorer.patcher)
        normal_tensors_(objective.scorer.model)
        total = (passes + 1) * steps
        result = OptimisationResult("gradient", request.weights, request.latent, names, mix=request.mix)
        best = None
        for index in range(passes):
            comfy.model_management.throw_exception_if_processing_interrupted()
            latent = _sample(clone, grad_request, sampler, sigmas, grad_request.noise, grad_request.latent,
                             _callback(progress, index * steps, total))
            if not latent.requires_grad:
                raise SamplerNotDifferentiableError(request.sampler_name)
            value = objective(decode_with_gradients(vae, latent))
            best = _keep_best(best, value, parameter, latent)
            result.rounds.append([float(value.total[0].detach())])
            optimizer.zero_grad()
            value.total.sum().backward()
            optimizer.step()
            if request.mix == "convex":
                with torch.no_grad():
                    parameter.clamp_(0.0, 1.0)
        with torch.no_grad():
            final_clone = region_model(model, request.layout, RowWeights(parameter.detach().clone()),
                                       request.node_name, request.mix)
            latent = _sample(final_clone, grad_request, comfy.samplers.sampler_object(request.sampler_name), sigmas,
                             grad_request.noise, grad_request.latent, _callback(progress, passes * steps, total))
            value = objective(_decode(vae, latent))
            best = _keep_best(best, value, parameter, latent)
            result.rounds.append([float(value.total[0])])
            result.largest_move = float((parameter.detach()[:, 0] - start).abs().max()) if start.numel() else 0.0
    return _finish(result, best, names, percents, request.mix)


class SamplerNotDifferentiableError(ValueError):
    """The sampler's function ran without gradients (it is not a plain k-diffusion function)."""

    def __init__(self, sampler_name: str):
        super().__init__(f"the sampler '{sampler_name}' cannot run with gradients.")
        self.sampler_name = sampler_name


def optimise_search(model, vae, objective, request: RegionRequest, rounds: int = 3, candidates: int = 4,
                    progress=None) -> OptimisationResult:
    """Gradient-free: `candidates` settings per round as rows of one batch, the best refined round after round."""
    import comfy.model_management
    import comfy.samplers

    names = request.layout.names
    sigmas = run_sigmas(model, request)
    steps = len(sigmas) - 1
    percents = step_percents(model, sigmas)
    start = request.weights.values_at(percents, names)
    generator = torch.Generator().manual_seed(int(request.seed) & 0xFFFFFFFFFFFF)
    result = OptimisationResult("search", request.weights, request.latent, names, mix=request.mix)
    upper = 1.0 if request.mix == "convex" else None
    best, scale = None, SEARCH_START_SCALE * max(1.0, float(start.abs().max()) if start.numel() else 1.0)
    total = rounds * steps
    for index in range(rounds):
        comfy.model_management.throw_exception_if_processing_interrupted()
        centre = start if best is None else best[2][:, 0]
        tables = ([start] if index == 0 else []) + [perturbed(centre, scale, generator, upper)
                                                    for _ in range(candidates - (1 if index == 0 else 0))]
        rows = torch.stack(tables, dim=1)  # [steps, M, N]
        clone = region_model(model, request.layout, RowWeights(rows), request.node_name, request.mix)
        batch = rows.shape[1]
        noise = request.noise.repeat(batch, 1, 1, 1)
        latent = request.latent.repeat(batch, 1, 1, 1)
        sampler = comfy.samplers.sampler_object(request.sampler_name)
        with shared_step_noise(sampler, noise, sigmas, (0.0,) * batch, request.seed):
            samples = _sample(clone, request, sampler, sigmas, noise, latent, _callback(progress, index * steps, total))
        value = objective(_decode(vae, samples))
        result.rounds.append([float(v) for v in value.total])
        for row in range(batch):
            if best is None or float(value.total[row]) < best[0]:
                best = (float(value.total[row]), value.terms[row].tolist(), rows[:, row:row + 1].clone(),
                        samples[row:row + 1].detach())
        scale *= 0.5
    result.largest_move = float((best[2][:, 0] - start).abs().max()) if start.numel() else 0.0
    return _finish(result, best, names, percents, request.mix)


def perturbed(table: torch.Tensor, scale: float, generator: torch.Generator, upper: float | None = 1.0) -> torch.Tensor:
    """table [steps, N] plus a random piecewise-linear offset per object (SEARCH_KNOTS knots), clipped to
    0..upper (no upper bound for None)."""
    steps, objects = table.shape
    knots = torch.randn(SEARCH_KNOTS, objects, generator=generator) * scale
    positions = torch.linspace(0, SEARCH_KNOTS - 1, steps) if steps > 1 else torch.zeros(1)
    low = positions.floor().long().clamp(max=SEARCH_KNOTS - 2)
    fraction = (positions - low).unsqueeze(1)
    offsets = knots[low] * (1 - fraction) + knots[low + 1] * fraction
    return (table + offsets).clamp(0.0, upper)


def _normal_request(request: RegionRequest) -> RegionRequest:
    """The request with normal (not inference-mode) tensors, for autograd."""
    from dataclasses import replace

    return replace(request, positive=normal_copy(request.positive), negative=normal_copy(request.negative),
                   latent=normal_copy(request.latent), noise=normal_copy(request.noise),
                   noise_mask=normal_copy(request.noise_mask))


def _keep_best(best, value, parameter, latent):
    objective = float(value.total[0].detach())
    if best is None or objective < best[0]:
        return objective, value.terms[0].detach().tolist(), parameter.detach().clone(), latent.detach().clone()
    return best


def _finish(result: OptimisationResult, best, names, percents, mix: str) -> OptimisationResult:
    import comfy.model_management

    _, terms, rows, latent = best
    result.weights = RegionWeights.from_table(rows[:, 0], names, percents, clip=mix == "convex")
    result.latent = latent.to(comfy.model_management.intermediate_device())
    result.best_terms = terms
    return result
