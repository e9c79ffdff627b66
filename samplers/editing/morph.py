"""Morphing two real photos: endpoint A held on one inversion, endpoint B on another (docs/editing.md).

Both photos are inverted on the same schedule (AID Invert Image, each under its own source prompt).
In the morph run, row A (the first row of every batch and chunk) is held on A's recording and row B
(the last row) on B's, as samplers/editing/inversion.py holds endpoint A: the rows are fed the
recorded latent at each step and their prediction lands the sampler's Euler step on the next
recorded latent, so frame 0 is photo A and the last frame photo B at any cfg. An interior row at
coefficient t starts from slerp(inverted noise A, inverted noise B, t); its attention interpolates
the two photos' keys and values as in any AID sequence.

The coefficients come from the sequence patch on the same model (Apply AID, or AID Sampler's own),
so the hold needs one: a plain model has no schedule to place the frames between the photos.
"""
from __future__ import annotations

import torch

from ...errors import AIDInputError
from ..sequence.noise import slerp
from ..sequence.run import WRAPPER_KEY as SEQUENCE_RUN_KEY
from .inversion import (HOLD_WRAPPER_KEY, RUN_WRAPPER_KEY, SIGMA_RTOL, HoldRun, Inversion, check_fingerprint,
                        check_latent_shape, check_sigmas, landing_denoised, noise_starting_at)

B_INPUT = "inversion_b"


def check_pair(inversion: Inversion, inversion_b: Inversion, node_name: str) -> None:
    """Photo B fits photo A: same size and channels, recorded on the same schedule (names inversion_b)."""
    if inversion_b.image_size != inversion.image_size or inversion_b.latent_shape != inversion.latent_shape:
        (wa, ha), (wb, hb) = inversion.image_size, inversion_b.image_size
        raise AIDInputError(node_name, B_INPUT, f"photo B is {wb}x{hb} px ({inversion_b.latent_shape[0]} latent "
                            f"channels) and photo A {wa}x{ha} px ({inversion.latent_shape[0]}); both endpoints of a "
                            "morph are frames of one sequence, so they need one size.",
                            f"crop or resize both photos to one size, width and height multiples of 8 (e.g. {wa}x{ha}"
                            " with Upscale Image or ImageCrop on photo B), and run AID Invert Image on it again.")
    a, b = inversion.sigmas, inversion_b.sigmas
    if a.shape != b.shape or not torch.allclose(a, b, rtol=SIGMA_RTOL, atol=1e-7):
        raise AIDInputError(node_name, B_INPUT, f"photo B was inverted on {inversion_b.describe()} and photo A on "
                            f"{inversion.describe()}; both endpoints are held on one schedule.",
                            "give both AID Invert Image nodes the same steps, scheduler and denoise.")


def check_morph_model(inversion: Inversion, inversion_b: Inversion, model, node_name: str) -> None:
    """Before any work: both recordings fit each other and were made with `model`."""
    check_fingerprint(inversion, model, node_name)
    check_fingerprint(inversion_b, model, node_name, B_INPUT)
    check_pair(inversion, inversion_b, node_name)


def sequence_coefficients(extra_args) -> tuple[float, ...] | None:
    """The coefficients of the batch rows, from the sequence patch of the sampled model (None without one)."""
    import comfy.patcher_extension

    runs = comfy.patcher_extension.get_wrappers_with_key(comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE,
                                                         SEQUENCE_RUN_KEY, extra_args.get("model_options", {}),
                                                         is_model_options=True)
    if not runs:
        return None
    layout = runs[-1].layout
    if any((a, b) != (0, 1) for a, b, _ in layout.rows):
        return ()  # a keyframe layout: more than two keys
    return layout.coefficients


class MorphRun(HoldRun):
    """SAMPLER_SAMPLE wrapper of a morph: checks the run fits both recordings, starts each row from the slerp
    of the two inverted noises at its coefficient."""

    def __init__(self, inversion: Inversion, inversion_b: Inversion, node_name: str):
        super().__init__(inversion, node_name)
        self.inversion_b = inversion_b

    def __call__(self, executor, guider, sigmas, extra_args, callback, noise, latent_image, denoise_mask=None,
                 *args, **kwargs):
        self.check_sampler(executor.class_obj)
        check_sigmas(self.inversion, sigmas, self.node_name, "the sampler's steps")
        check_sigmas(self.inversion_b, sigmas, self.node_name, "the sampler's steps", B_INPUT)
        check_latent_shape(self.inversion, noise.shape[1:], self.node_name)
        check_fingerprint(self.inversion, guider.model_patcher, self.node_name)
        check_fingerprint(self.inversion_b, guider.model_patcher, self.node_name, B_INPUT)
        if denoise_mask is not None:
            raise AIDInputError(self.node_name, "inversion", "the latent has a noise mask; a held morph regenerates "
                                "the whole image (frame 0 and the last frame are the photos exactly).",
                                "remove Set Latent Noise Mask (or the mask) from the morph's latent.")
        coefficients = self.check_layout(sequence_coefficients(extra_args), noise.shape[0])
        start = self.start_latents(coefficients).to(noise.device, noise.dtype)
        noise = noise_starting_at(start, guider, executor.class_obj, sigmas, noise, latent_image)
        return executor(guider, sigmas, extra_args, callback, noise, latent_image, denoise_mask, *args, **kwargs)

    def check_layout(self, coefficients, rows: int) -> tuple[float, ...]:
        """The batch is an AID sequence [A, frames..., B]: its coefficients, one per row."""
        if coefficients is None:
            raise AIDInputError(self.node_name, B_INPUT, "the model carries no AID sequence patch, so the frames "
                                "between the two photos have no coefficients.", "connect Apply AID's MODEL (with the "
                                "morph's AID Schedule) to AID Inversion Hold, or sample with AID Sampler.")
        if not coefficients or coefficients[0] != 0.0 or coefficients[-1] != 1.0 or len(coefficients) != rows:
            raise AIDInputError(self.node_name, B_INPUT, "a morph holds the first row of every batch on photo A "
                                "and the last on photo B, but this run is not one two-endpoint sequence "
                                f"({len(coefficients)} coefficients for {rows} rows).",
                                "sample it with AID Sampler or a KSampler on an AID Schedule's AID Latent, "
                                "AID Conditioning and Apply AID (not a keyframe sequence).")
        return coefficients

    def start_latents(self, coefficients) -> torch.Tensor:
        """Row r starts from slerp(inverted noise A, inverted noise B, t_r): A and B exactly at t 0 and 1."""
        a, b = self.inversion.latents[0], self.inversion_b.latents[0]
        return torch.stack([slerp(a, b, float(t)) for t in coefficients])


class MorphHold:
    """PREDICT_NOISE wrapper holding the first row of every batch on A's recording and the last on B's."""

    def __init__(self, inversion: Inversion, inversion_b: Inversion):
        self.holds = ((0, inversion), (-1, inversion_b))
        self._latents = {}

    def latents_on(self, device, dtype) -> list[torch.Tensor]:
        """Both recordings on the sampling device, moved once per device."""
        key = (str(device), dtype)
        if key not in self._latents:
            self._latents = {key: [inversion.latents.to(device, dtype) for _, inversion in self.holds]}
        return self._latents[key]

    def __call__(self, executor, x, timestep, model_options, seed, *args, **kwargs):
        inversion = self.holds[0][1]
        step = inversion.step_at(float(timestep.reshape(-1)[0]))
        recordings = self.latents_on(x.device, x.dtype)
        x_model = x.clone()
        for (row, _), latents in zip(self.holds, recordings):
            x_model[row] = latents[step]
        denoised = executor(x_model, timestep, model_options, seed, *args, **kwargs).clone()
        sigma, sigma_next = float(inversion.sigmas[step]), float(inversion.sigmas[step + 1])
        if sigma_next != sigma:
            for (row, _), latents in zip(self.holds, recordings):
                denoised[row] = landing_denoised(x[row], sigma, sigma_next, latents[step + 1])
        return denoised


def install_morph_hold(model, inversion: Inversion, inversion_b: Inversion, node_name: str) -> None:
    """Add the two-photo hold to a ModelPatcher clone, replacing a hold (one- or two-photo) an earlier node added."""
    from comfy.patcher_extension import WrappersMP

    run_kind, hold_kind = WrappersMP.SAMPLER_SAMPLE, WrappersMP.PREDICT_NOISE
    model.remove_wrappers_with_key(run_kind, RUN_WRAPPER_KEY)
    model.remove_wrappers_with_key(hold_kind, HOLD_WRAPPER_KEY)
    model.add_wrapper_with_key(run_kind, RUN_WRAPPER_KEY, MorphRun(inversion, inversion_b, node_name))
    model.add_wrapper_with_key(hold_kind, HOLD_WRAPPER_KEY, MorphHold(inversion, inversion_b))


def morph_model(model, inversion: Inversion, inversion_b: Inversion, node_name: str):
    """A clone of `model` whose sampling runs hold frame 0 on photo A and the last frame on photo B (input unchanged)."""
    check_morph_model(inversion, inversion_b, model, node_name)
    clone = model.clone()
    install_morph_hold(clone, inversion, inversion_b, node_name)
    return clone
