"""Initial noise of a sequence: x_T(f) = slerp(n_A, n_B, t_f) (docs/how-it-works.md).

n_A and n_B are exactly the noise ComfyUI's KSampler draws for a one-image latent with seed A
and seed B, so the endpoints of a sequence start where plain generations start. With one
seed for both, every frame starts from the same noise.
"""
from __future__ import annotations

import torch

from ...attention.layout import FrameLayout
from ...errors import AIDInputError, plural
from .seeds import SequenceSeed


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, dim=None) -> torch.Tensor:
    """Spherical interpolation between a and b; along `dim`, or over the whole tensor if None.

    Returns a exactly at t = 0 and b at t = 1; falls back to lerp where a and b are (nearly) parallel.
    """
    if t == 0:
        return a.clone()
    if t == 1:
        return b.clone()
    a32, b32 = a.float(), b.float()
    if dim is None:
        a_flat, b_flat = a32.reshape(1, -1), b32.reshape(1, -1)
    else:
        a_flat, b_flat = a32.movedim(dim, -1), b32.movedim(dim, -1)
    a_norm = a_flat / a_flat.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b_norm = b_flat / b_flat.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos = (a_norm * b_norm).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(cos)
    sin_omega = torch.sin(omega)
    parallel = sin_omega.abs() < 1e-6
    safe = torch.where(parallel, torch.ones_like(sin_omega), sin_omega)
    weight_a = torch.where(parallel, torch.full_like(omega, 1 - t), torch.sin((1 - t) * omega) / safe)
    weight_b = torch.where(parallel, torch.full_like(omega, t), torch.sin(t * omega) / safe)
    mixed = weight_a * a_flat + weight_b * b_flat
    if dim is None:
        mixed = mixed.reshape(a.shape)
    else:
        mixed = mixed.movedim(-1, dim)
    return mixed.to(a.dtype)


def endpoint_noise(latent_row: torch.Tensor, seed: int) -> torch.Tensor:
    """The noise KSampler draws for a one-image latent [1, C, H, W] with `seed` (CPU)."""
    import comfy.sample

    return comfy.sample.prepare_noise(latent_row, seed)


def sequence_noise(latent: torch.Tensor, coefficients, seed_a: int, seed_b: int | None = None) -> torch.Tensor:
    """Noise [F, C, H, W] for an F-frame latent: frame f gets slerp(n_A, n_B, t_f).

    With seed_b None or equal to seed_a every frame gets n_A.
    """
    return layout_noise(latent, FrameLayout.between(coefficients), (seed_a, seed_a if seed_b is None else seed_b))


def layout_noise(latent: torch.Tensor, layout, key_seeds) -> torch.Tensor:
    """Noise [F, C, H, W] for a latent laid out by `layout`: row (a, b, t) gets slerp(n_a, n_b, t).

    n_k is the one-image noise of key k's seed (key_seeds[k]); keys with one seed share it exactly.
    """
    frames = latent.shape[0]
    if frames != layout.frames:
        raise ValueError(f"the latent has {plural(frames, 'frame')} but the schedule has {layout.frames}.")
    row = torch.zeros_like(latent[:1])
    noises = {seed: endpoint_noise(row, seed) for seed in set(key_seeds)}
    if len(noises) == 1:
        return next(iter(noises.values())).repeat(frames, *([1] * (latent.dim() - 1)))
    return torch.cat([noises[key_seeds[a]] if key_seeds[a] == key_seeds[b]
                      else slerp(noises[key_seeds[a]], noises[key_seeds[b]], t) for a, b, t in layout.rows], dim=0)


class SequenceNoise:
    """A NOISE for SamplerCustomAdvanced: slerp between the noise of two seeds along the schedule."""

    def __init__(self, coefficients, seed_a: int, seed_b: int | None = None, node_name: str = "AID Latent"):
        self.coefficients = tuple(coefficients)
        # SamplerCustomAdvanced passes `seed` on as the run's seed: carrying seed_b in it lets the
        # stochastic samplers' step noise slerp between both seeds too (samplers/sequence/step_noise.py).
        self.seed = SequenceSeed(seed_a, seed_b)
        self.seed_b = seed_b
        self.node_name = node_name

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        """Noise shaped like input_latent['samples'] (which must have one row per frame)."""
        samples = input_latent["samples"]
        if samples.shape[0] != len(self.coefficients):
            raise AIDInputError(self.node_name, "schedule",
                                f"the latent has {plural(samples.shape[0], 'frame')} but the noise was made for "
                                f"{len(self.coefficients)}.",
                                "use the LATENT and the NOISE of the same AID Latent node.")
        return sequence_noise(samples, self.coefficients, self.seed, self.seed_b)
