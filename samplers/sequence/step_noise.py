"""Step noise of stochastic samplers shared across the frames of a sequence, on every sampling path.

Ancestral and SDE samplers (euler_ancestral, dpmpp_2m_sde, lcm, ...) draw fresh noise at every
step. Drawn for the whole batch, every frame would get its own, so endpoint B would not be the
plain generation of B and interior frames would flicker. Instead each frame between keys a and b
gets slerp(n_a, n_b, t_f) per step, where n_k is exactly what the sampler draws for a one-image run
with key k's seed (A's and B's for a two-endpoint sequence): the default Gaussian source or the
Brownian tree, as the sampler would make it.

A sampler gets the shared source through its `noise_sampler` option, set for the duration of one
run by samplers/sequence/run.py. A sampler that takes no noise_sampler is deterministic (euler,
dpmpp_2m, uni_pc, ...) or has its own fixed noise (dpm_fast, dpm_adaptive at eta 0) and is left
alone.
"""
from __future__ import annotations

import contextlib
import inspect

import torch

from .noise import slerp
from .seeds import key_seeds_of

# k-diffusion sampler functions whose default step noise is a Brownian tree, with its `cpu` flag.
BROWNIAN_SAMPLERS = {
    "sample_dpmpp_sde": True, "sample_dpmpp_2m_sde": True, "sample_dpmpp_2m_sde_heun": True,
    "sample_dpmpp_3m_sde": True, "sample_dpmpp_sde_gpu": False, "sample_dpmpp_2m_sde_gpu": False,
    "sample_dpmpp_2m_sde_heun_gpu": False, "sample_dpmpp_3m_sde_gpu": False,
}


class SharedStepNoise:
    """A noise_sampler(sigma, sigma_next): row (key_a, key_b, t) gets slerp(n_a, n_b, t) of one-image draws.

    n_k is what the sampler draws for a one-image run with key k's seed; keys with the same seed share
    one source, so with one seed every frame gets the same step noise.
    """

    def __init__(self, brownian_cpu, row, sigmas, layout, key_seeds):
        self.brownian_cpu = brownian_cpu  # None: Gaussian source; True/False: Brownian tree on CPU/device
        self.row = row
        self.sigmas = sigmas
        self.layout = layout
        self.key_seeds = tuple(key_seeds)
        self._sources = None

    def _seed(self, key: int) -> int:
        return self.key_seeds[key] if key < len(self.key_seeds) else self.key_seeds[0]

    def _source(self, seed):
        import comfy.k_diffusion.sampling as k_sampling

        if self.brownian_cpu is not None:
            positive = self.sigmas[self.sigmas > 0]
            return k_sampling.BrownianTreeNoiseSampler(self.row, positive.min(), self.sigmas.max(), seed=seed,
                                                       cpu=self.brownian_cpu)
        return k_sampling.default_noise_sampler(self.row, seed=seed)

    def __call__(self, sigma, sigma_next):
        rows = self.layout.rows
        seeds = [(self._seed(a), self._seed(b)) for a, b, _ in rows]
        if self._sources is None:
            self._sources = {seed: self._source(seed) for pair in seeds for seed in pair}
        noises = {seed: source(sigma, sigma_next) for seed, source in self._sources.items()}
        if len(noises) == 1:
            noise = next(iter(noises.values()))
            return noise.repeat(len(rows), *([1] * (noise.dim() - 1)))
        return torch.cat([noises[seed_a] if seed_a == seed_b else slerp(noises[seed_a], noises[seed_b], t)
                          for (seed_a, seed_b), (_, _, t) in zip(seeds, rows)], dim=0)


def draws_step_noise(sampler) -> bool:
    """True for a ComfyUI KSAMPLER whose function takes a noise_sampler that nobody has set."""
    function = getattr(sampler, "sampler_function", None)
    options = getattr(sampler, "extra_options", None)
    if function is None or not isinstance(options, dict) or options.get("noise_sampler") is not None:
        return False
    return "noise_sampler" in inspect.signature(function).parameters


@contextlib.contextmanager
def shared_step_noise(sampler, noise: torch.Tensor, sigmas, layout, seed):
    """Give `sampler` a SharedStepNoise for one run laid out by `layout` (its options are restored afterwards).

    `noise` is the run's initial noise [F, ...] (for the row shape and device); `seed` the run's seed,
    a SequenceSeed when the keys have their own. Yields whether the sampler draws step noise at all.
    """
    if seed is None or not draws_step_noise(sampler):
        yield False
        return
    brownian = BROWNIAN_SAMPLERS.get(getattr(sampler.sampler_function, "__name__", ""))
    shared = SharedStepNoise(brownian, torch.zeros_like(noise[:1]), sigmas, layout, key_seeds_of(seed))
    saved = sampler.extra_options
    sampler.extra_options = dict(saved, noise_sampler=shared)  # a new dict: KSAMPLER's default {} is shared
    try:
        yield True
    finally:
        sampler.extra_options = saved
