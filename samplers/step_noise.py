"""Step noise of stochastic samplers shared across the frames of a sequence, on every sampling path.

Ancestral and SDE samplers (euler_ancestral, dpmpp_2m_sde, lcm, ...) draw fresh noise at every
step. Drawn for the whole batch, every frame would get its own, so endpoint B would not be the
plain generation of B and interior frames would flicker. Instead each frame gets
slerp(n_A, n_B, t_f) per step, where n_A (n_B) is exactly what the sampler draws for a one-image
run with seed A (B): the default Gaussian source or the Brownian tree, as the sampler would make it.

A sampler gets the shared source through its `noise_sampler` option, set for the duration of one
run by samplers/sequence_run.py. A sampler that takes no noise_sampler is deterministic (euler,
dpmpp_2m, uni_pc, ...) or has its own fixed noise (dpm_fast, dpm_adaptive at eta 0) and is left
alone.
"""
from __future__ import annotations

import contextlib
import inspect

import torch

from .noise import slerp

# k-diffusion sampler functions whose default step noise is a Brownian tree, with its `cpu` flag.
BROWNIAN_SAMPLERS = {
    "sample_dpmpp_sde": True, "sample_dpmpp_2m_sde": True, "sample_dpmpp_2m_sde_heun": True,
    "sample_dpmpp_3m_sde": True, "sample_dpmpp_sde_gpu": False, "sample_dpmpp_2m_sde_gpu": False,
    "sample_dpmpp_2m_sde_heun_gpu": False, "sample_dpmpp_3m_sde_gpu": False,
}


class SequenceSeed(int):
    """A sampling seed (endpoint A's) that also carries endpoint B's seed for the step noise.

    It is an int, so ComfyUI passes it through unchanged as the `seed` of a sampling run
    (AID Latent's NOISE.seed for SamplerCustomAdvanced, AID Sampler's runs).
    """

    def __new__(cls, seed_a: int, seed_b: int | None = None):
        value = super().__new__(cls, seed_a)
        value.seed_b = None if seed_b is None or seed_b == seed_a else int(seed_b)
        return value


class SharedStepNoise:
    """A noise_sampler(sigma, sigma_next) giving every frame slerp(n_A, n_B, t_f) of one-image draws."""

    def __init__(self, brownian_cpu, row, sigmas, coefficients, seed_a: int, seed_b: int | None = None):
        self.brownian_cpu = brownian_cpu  # None: Gaussian source; True/False: Brownian tree on CPU/device
        self.row = row
        self.sigmas = sigmas
        self.coefficients = tuple(coefficients)
        self.seeds = (seed_a,) if seed_b is None or seed_b == seed_a else (seed_a, seed_b)
        self._sources = None

    def _source(self, seed):
        import comfy.k_diffusion.sampling as k_sampling

        if self.brownian_cpu is not None:
            positive = self.sigmas[self.sigmas > 0]
            return k_sampling.BrownianTreeNoiseSampler(self.row, positive.min(), self.sigmas.max(), seed=seed,
                                                       cpu=self.brownian_cpu)
        return k_sampling.default_noise_sampler(self.row, seed=seed)

    def __call__(self, sigma, sigma_next):
        if self._sources is None:
            self._sources = [self._source(seed) for seed in self.seeds]
        noises = [source(sigma, sigma_next) for source in self._sources]
        frames = len(self.coefficients)
        if len(noises) == 1:
            return noises[0].repeat(frames, *([1] * (noises[0].dim() - 1)))
        return torch.cat([slerp(noises[0], noises[1], t) for t in self.coefficients], dim=0)


def draws_step_noise(sampler) -> bool:
    """True for a ComfyUI KSAMPLER whose function takes a noise_sampler that nobody has set."""
    function = getattr(sampler, "sampler_function", None)
    options = getattr(sampler, "extra_options", None)
    if function is None or not isinstance(options, dict) or options.get("noise_sampler") is not None:
        return False
    return "noise_sampler" in inspect.signature(function).parameters


@contextlib.contextmanager
def shared_step_noise(sampler, noise: torch.Tensor, sigmas, coefficients, seed):
    """Give `sampler` a SharedStepNoise for one run (its options are restored afterwards).

    `noise` is the run's initial noise [F, ...] (for the row shape and device); `seed` the run's seed,
    a SequenceSeed when B has its own. Yields whether the sampler draws step noise at all.
    """
    if seed is None or not draws_step_noise(sampler):
        yield False
        return
    brownian = BROWNIAN_SAMPLERS.get(getattr(sampler.sampler_function, "__name__", ""))
    shared = SharedStepNoise(brownian, torch.zeros_like(noise[:1]), sigmas, coefficients, int(seed),
                             getattr(seed, "seed_b", None))
    saved = sampler.extra_options
    sampler.extra_options = dict(saved, noise_sampler=shared)  # a new dict: KSAMPLER's default {} is shared
    try:
        yield True
    finally:
        sampler.extra_options = saved
