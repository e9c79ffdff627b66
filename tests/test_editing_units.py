"""The editing math on plain tensors: the landing prediction, the recorder on a known ODE, step lookup, fingerprints."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aid_pack.samplers.editing.inversion import Inversion, InversionSettings, TrajectoryRecorder, landing_denoised
from aid_pack.samplers.editing.fingerprint import ModelFingerprint

SIGMAS = torch.tensor([14.6, 6.0, 2.5, 1.0, 0.4, 0.1, 0.0])


@settings(max_examples=60, deadline=None)
@given(sigma=st.floats(0.01, 20.0), fraction=st.floats(0.0, 0.99), seed=st.integers(0, 2 ** 16))
def test_an_euler_step_with_the_landing_prediction_lands_on_the_target(sigma, fraction, seed):
    generator = torch.Generator().manual_seed(seed)
    x, target = torch.randn(2, 4, 8, 8, generator=generator, dtype=torch.float64)
    sigma_next = sigma * fraction  # includes sigma_next == 0, the last step
    denoised = landing_denoised(x, sigma, sigma_next, target)
    stepped = x + (x - denoised) / sigma * (sigma_next - sigma)  # k-diffusion's sample_euler step
    assert torch.allclose(stepped, target, rtol=1e-9, atol=1e-9)


def gaussian_denoiser(x, sigma, **_):
    """The exact denoiser of unit-variance Gaussian data: E[x0 | x0 + sigma n = x] = x / (1 + sigma^2)."""
    return x / (1 + sigma.reshape(-1, 1, 1, 1) ** 2)


def euler(x, sigmas):
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        x = x + (x - gaussian_denoiser(x, sigma.reshape(1))) / sigma * (sigma_next - sigma)
    return x


def record(latent, refine_steps):
    recorder = TrajectoryRecorder(refine_steps, sigma_floor=0.03)
    recorder.sample(gaussian_denoiser, SIGMAS, {}, None, None, latent_image=latent)
    return recorder.latents


def test_recorder_keeps_the_latent_at_every_sigma_and_refinement_cuts_the_drift():
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    errors = {}
    for refine_steps in (0, 1, 3, 30):
        latents = record(latent, refine_steps)
        assert latents.shape == (len(SIGMAS), 4, 8, 8)
        assert torch.equal(latents[-1], latent[0])  # the image itself at the last sigma
        errors[refine_steps] = float((euler(latents[:1], SIGMAS) - latent).abs().max() / latent.abs().max())
    assert errors[0] > errors[1] > errors[3] > errors[30]
    assert errors[0] > 1e-2 and errors[30] < 1e-5  # converged fixed points are backward Euler: forward Euler undoes it


def inversion_on(sigmas):
    return Inversion(sigmas=torch.tensor(sigmas), latents=torch.zeros(len(sigmas), 4, 8, 8),
                     fingerprint=ModelFingerprint("BaseModel (EPS)", "w", ""),
                     settings=InversionSettings(len(sigmas) - 1, "normal", 1.0, 1.0, 0), image_size=(64, 64))


def test_step_lookup_finds_the_step_of_a_sigma():
    inversion = inversion_on([10.0, 5.0, 5.0, 1.0, 0.0])
    assert inversion.step_at(10.0) == 0
    assert inversion.step_at(5.0) == 2  # repeated sigma: the step that moves on
    assert inversion.step_at(1.0 + 1e-7) == 3
    with pytest.raises(ValueError):
        inversion.step_at(0.0)  # the last sigma is never a model call
    with pytest.raises(ValueError):
        inversion.step_at(7.0)


def test_fingerprint_differences_are_said_in_words():
    base = ModelFingerprint("BaseModel (EPS)", "abc", "")
    assert base.difference(base) is None
    assert "SDXL" in base.difference(ModelFingerprint("SDXL (EPS)", "abc", ""))
    assert "another checkpoint" in base.difference(ModelFingerprint("BaseModel (EPS)", "abd", ""))
    assert "LoRA" in base.difference(ModelFingerprint("BaseModel (EPS)", "abc", "f00"))
