"""The diffusion side of the smooth searches: `generate(coefficients)` as batched AID sampling runs.

Each call (a search round) samples [A, new frames..., B] in one sample_sequence run, with the noise,
prompts and settings AID Sampler would give those coefficients, so a frame equals the AID Sampler
frame at the same coefficient (docs/smooth.md: frames are independent given the endpoints).
The endpoints are sampled again in every round (the new frames attend to them) but kept from the
first round; later rounds only check that they came out the same. Latents and decoded images are
kept per coefficient, so nothing is sampled or decoded twice.
"""
from __future__ import annotations

import logging
from dataclasses import replace

import torch

from ..sequence.conditioning import sequence_conditioning
from ..sequence.noise import sequence_noise
from ..sequence.sampler import SequenceRequest, sample_sequence

ENDPOINT_WARNING = 1e-3  # relative change of a re-sampled endpoint worth a log line


class DiffusionFrames:
    """`generate(coefficients) -> IMAGE [n, H, W, C]` for samplers/smooth/selection.py, over a MODEL and a VAE.

    `request` is a SequenceRequest for any coefficients (e.g. the {0, 0.5, 1} probe) with the
    sampling settings; each round replaces its coefficients, prompts, latent and noise, so every other
    field (seeds, steps, sampler, interpolation options, chunking, anything added later) is passed on
    unchanged. Prompts per frame come from `positive_a`, `positive_b`, `blend` and the PAID `guidance`
    CONDITIONING, as AID Conditioning makes them.

    `progress(done, total, x0)` (optional) sees one bar over all rounds: `planned_rounds` rounds of
    the run's steps each (the end moves out if a search runs longer). `batch_frames` records the
    frames of each run, endpoints included, for cost accounting.
    """

    def __init__(self, model, vae, request: SequenceRequest, positive_a, positive_b, blend: str = "lerp",
                 guidance=None, progress=None, planned_rounds: int = 1):
        self.model = model
        self.vae = vae
        self.request = request
        self.prompts = (positive_a, positive_b, blend, guidance)
        self.progress = progress
        self.planned_rounds = planned_rounds
        self.latents: dict[float, torch.Tensor] = {}
        self.images: dict[float, torch.Tensor] = {}
        self.batch_frames: list[int] = []
        self.endpoint_change = 0.0  # largest relative change of an endpoint latent between rounds

    def __call__(self, coefficients) -> torch.Tensor:
        wanted = [float(t) for t in coefficients]
        new = sorted({t for t in wanted if t not in self.latents and 0.0 < t < 1.0})
        if new or 0.0 not in self.latents:
            self._sample(new)
        return torch.stack([self.images[t] for t in wanted])

    def frame_latents(self, coefficients) -> torch.Tensor:
        """Latents [n, C, h, w] of sampled coefficients, in order."""
        return torch.stack([self.latents[float(t)] for t in coefficients])

    def frame_images(self, coefficients) -> torch.Tensor:
        """Decoded images [n, H, W, C] of sampled coefficients, in order."""
        return torch.stack([self.images[float(t)] for t in coefficients])

    def _sample(self, interior: list[float]) -> None:
        coefficients = (0.0, *interior, 1.0)
        positive_a, positive_b, blend, guidance = self.prompts
        latent = torch.zeros([len(coefficients), *self.request.latent.shape[1:]])
        request = replace(self.request, coefficients=coefficients, latent=latent,
                          positive=sequence_conditioning(positive_a, positive_b, coefficients, blend, guidance),
                          noise=sequence_noise(latent, coefficients, self.request.seed, self.request.seed_b))
        samples = sample_sequence(self.model, request, progress=self._round_progress(len(self.batch_frames)))
        self.batch_frames.append(len(coefficients))
        if 0.0 in self.latents:
            self._check_endpoints(samples[0], samples[-1])
            keep = list(range(1, len(coefficients) - 1))
        else:
            keep = list(range(len(coefficients)))
        if not keep:
            return
        images = self.vae.decode(samples[keep]).cpu()
        if images.ndim == 5:  # video VAEs return [B, T, H, W, C]
            images = images.reshape(-1, *images.shape[-3:])
        for position, index in enumerate(keep):
            self.latents[coefficients[index]] = samples[index]
            self.images[coefficients[index]] = images[position]

    def _check_endpoints(self, first, last) -> None:
        for kept, again in ((self.latents[0.0], first), (self.latents[1.0], last)):
            scale = max(float(kept.abs().max()), 1e-6)
            change = float((kept - again).abs().max()) / scale
            self.endpoint_change = max(self.endpoint_change, change)
        if self.endpoint_change > ENDPOINT_WARNING:
            logging.warning("%s: an endpoint changed by %.2g (relative) between rounds; the frames of later "
                            "rounds attend to the re-sampled one.", self.request.node_name, self.endpoint_change)

    def _round_progress(self, round_index: int):
        if self.progress is None:
            return None

        def progress(done, total, x0):
            rounds = max(self.planned_rounds, round_index + 1)
            self.progress(round_index * total + done, rounds * total, x0)

        return progress


def unet_rows_per_step(batch_frames, cfg: float) -> int:
    """UNet rows one denoising step costs over all rounds: every frame of every run, twice with CFG.

    (cfg 1 skips the negative branch.) Assumes one run per round (max_frames_per_batch 0).
    """
    return sum(batch_frames) * (1 if cfg == 1.0 else 2)
