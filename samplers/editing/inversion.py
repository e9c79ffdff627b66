"""Real-image editing: record a latent's inversion trajectory, then hold endpoint A on it (docs/editing.md).

Record: starting from the image latent at the last sigma of the edit's own schedule, Euler steps run
the schedule backwards (DDIM-like inversion) under the source prompt, and the latent is kept at every
sigma. Optional fixed-point refinement solves each backward step for the point a forward Euler step
would start from (backward Euler), so plain re-generation from the inverted noise drifts less.

Hold (Direct / PnP inversion): in the edit run, row A of every batch is fed the recorded latent at
each step, so interior frames attend to the real image's keys and values, and row A's denoised
prediction is replaced by the one that makes the sampler's Euler step land on the next recorded
latent. Frame 0 therefore comes out as the input latent at any cfg. Every row starts from the
inverted noise, so endpoint B is the edit prompt's generation from the image's own noise.

Only Euler-step samplers (euler, ddim) are held: another solver would evaluate the model at sigmas
the recording lacks or combine past predictions, and is refused with a message before any work.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import AIDInputError
from .fingerprint import ModelFingerprint, model_fingerprint

HELD_SAMPLERS = ("euler", "ddim")  # KSampler names whose every step is one Euler step
RUN_WRAPPER_KEY = "aid.inversion_run"
HOLD_WRAPPER_KEY = "aid.inversion_hold"
SIGMA_RTOL = 1e-5


@dataclass(frozen=True)
class InversionSettings:
    """How a trajectory was recorded; quoted in error messages so the user can match the edit run."""

    steps: int
    scheduler: str
    denoise: float
    cfg: float
    refine_steps: int


@dataclass(frozen=True, eq=False)
class Inversion:
    """An inversion result (AID_INVERSION): the latent at every sigma of the schedule it will be replayed on.

    latents[i] is the latent at sigmas[i] in the model's sampling space; latents[0] is the inverted
    noise, latents[-1] the input image's latent (after the model's process_latent_in). `image_size` is
    (width, height) in pixels.
    """

    sigmas: torch.Tensor  # [N + 1], descending, CPU float32
    latents: torch.Tensor  # [N + 1, C, H, W], CPU float32
    fingerprint: ModelFingerprint
    settings: InversionSettings
    image_size: tuple[int, int]

    @property
    def steps(self) -> int:
        """Number of sampling steps N of the schedule."""
        return len(self.sigmas) - 1

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """(C, H, W) of one latent row."""
        return tuple(self.latents.shape[1:])

    def describe(self) -> str:
        """One line of how it was recorded, e.g. '10 steps of normal, denoise 1, cfg 1'."""
        s = self.settings
        return f"{s.steps} steps of '{s.scheduler}', denoise {s.denoise:g}, cfg {s.cfg:g}"

    def step_at(self, sigma: float) -> int:
        """Index i of the step that evaluates the model at `sigma` (the last one where sigmas repeat)."""
        sigmas = self.sigmas[:-1]
        matches = torch.nonzero(torch.isclose(sigmas, torch.tensor(float(sigma)), rtol=SIGMA_RTOL, atol=1e-8))
        if len(matches) == 0:
            raise ValueError(f"sigma {sigma:.6g} is not a step of the recorded schedule.")
        return int(matches[-1])


def landing_denoised(x: torch.Tensor, sigma, sigma_next, x_next: torch.Tensor) -> torch.Tensor:
    """The denoised prediction D for which the Euler step x + (sigma_next - sigma) (x - D) / sigma is x_next."""
    return x - sigma * (x_next - x) / (sigma_next - sigma)


class TrajectoryRecorder:
    """A ComfyUI sampler object that inverts its latent along `sigmas` run backwards and keeps every latent.

    Given to CFGGuider.sample like a KSAMPLER; the sigmas are the edit's forward schedule. Step i goes
    from sigmas[i + 1] up to sigmas[i] with the ODE derivative d = (x - D) / sigma; the model is not
    evaluated at sigma 0 (D would equal x there), the model's smallest sigma stands in. `refine_steps`
    fixed-point iterations then re-evaluate d at the step's target. After sampling, `latents` holds
    [N + 1, C, H, W] in forward order.
    """

    def __init__(self, refine_steps: int, sigma_floor: float):
        self.refine_steps = refine_steps
        self.sigma_floor = sigma_floor
        self.latents = None

    @torch.no_grad()  # as ComfyUI's own samplers: outside inference mode no autograd graph is kept
    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        import comfy.model_management

        x = latent_image
        s_in = x.new_ones([x.shape[0]])
        total = len(sigmas) - 1

        def derivative(x, sigma):
            denoised = model_wrap(x, sigma * s_in, **extra_args)
            return (x - denoised) / sigma, denoised

        recorded = [x]
        for step, i in enumerate(reversed(range(total))):
            comfy.model_management.throw_exception_if_processing_interrupted()
            sigma_from, sigma_to = sigmas[i + 1], sigmas[i]
            d, denoised = derivative(x, sigma_from if sigma_from > 0 else sigmas.new_tensor(self.sigma_floor))
            x_to = x + (sigma_to - sigma_from) * d
            for _ in range(self.refine_steps):
                d, denoised = derivative(x_to, sigma_to)
                x_to = x + (sigma_to - sigma_from) * d
            x = x_to
            recorded.append(x)
            if callback is not None:
                callback(step, denoised, x, total)
        self.latents = torch.stack(recorded[::-1])[:, 0]
        return x


def model_sigmas(model, steps: int, scheduler: str, denoise: float) -> torch.Tensor:
    """The sigmas a KSampler with an Euler-step sampler uses for these settings (CPU float32)."""
    import comfy.samplers

    ksampler = comfy.samplers.KSampler(model, steps=steps, device="cpu", sampler="euler", scheduler=scheduler,
                                       denoise=denoise)
    return ksampler.sigmas.float().cpu()


def record_inversion(model, positive, negative, latent: torch.Tensor, settings: InversionSettings,
                     image_size: tuple[int, int], callback=None) -> Inversion:
    """Invert a one-image latent [1, C, H, W] under `positive` on the schedule of `settings`.

    Runs through ComfyUI's CFGGuider, so the model's patches, model management and interruption
    apply as in any sampling run. `callback(step, x0, x, total)` is called after every step.
    """
    import comfy.sample
    import comfy.samplers
    import comfy.utils

    sigmas = model_sigmas(model, settings.steps, settings.scheduler, settings.denoise)
    fingerprint = model_fingerprint(model)
    latent = comfy.sample.fix_empty_latent_channels(model, latent)
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(settings.cfg)
    recorder = TrajectoryRecorder(settings.refine_steps, float(model.get_model_object("model_sampling").sigma_min))
    guider.sample(torch.zeros_like(latent), latent, recorder, sigmas, callback=callback,
                  disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=0)
    return Inversion(sigmas=sigmas, latents=recorder.latents.to("cpu", torch.float32), fingerprint=fingerprint,
                     settings=settings, image_size=image_size)


def held_sampler_name(sampler) -> str | None:
    """The KSampler name of a sampler object whose every step is one plain Euler step, else None."""
    import comfy.k_diffusion.sampling as k_sampling

    function = getattr(sampler, "sampler_function", None)
    options = getattr(sampler, "extra_options", None) or {}
    if function is not k_sampling.sample_euler or float(options.get("s_churn", 0.0)) > 0:
        return None
    random_inpaint = bool((getattr(sampler, "inpaint_options", None) or {}).get("random", False))
    return "ddim" if random_inpaint else "euler"


def sampler_label(sampler) -> str:
    """A readable name of a sampler object for messages ('dpmpp_2m', 'MySampler')."""
    function = getattr(sampler, "sampler_function", None)
    name = getattr(function, "__name__", "")
    return name.removeprefix("sample_") if name else type(sampler).__name__


def check_fingerprint(inversion: Inversion, model, node_name: str, input_name: str = "inversion") -> None:
    """The model is the one the trajectory was recorded with (same family, weights and weight patches)."""
    problem = inversion.fingerprint.difference(model_fingerprint(model))
    if problem is not None:
        raise AIDInputError(node_name, input_name, f"{problem}.", "connect the same MODEL (with the same LoRAs) to "
                            "AID Invert Image and to the edit, or run AID Invert Image again with this model.")


def check_sigmas(inversion: Inversion, sigmas: torch.Tensor, node_name: str, where: str,
                 input_name: str = "inversion") -> None:
    """The run's sigmas are the recorded ones; `where` names the settings to change in the fix."""
    run = sigmas.detach().float().cpu()
    recorded = inversion.sigmas
    if run.shape == recorded.shape and torch.allclose(run, recorded, rtol=SIGMA_RTOL, atol=1e-7):
        return
    raise AIDInputError(node_name, input_name, f"the trajectory was recorded on {inversion.describe()} "
                        f"({_sigma_range(recorded)}), but this run samples {_sigma_range(run)}.",
                        f"set {where} to {inversion.settings.steps} steps, scheduler "
                        f"'{inversion.settings.scheduler}' and denoise {inversion.settings.denoise:g} (the "
                        "inversion's), or run AID Invert Image again with the edit's settings.")


def _sigma_range(sigmas: torch.Tensor) -> str:
    steps = len(sigmas) - 1
    if steps < 1:
        return "no steps"
    return f"{steps} step{'s' if steps != 1 else ''}, sigma {float(sigmas[0]):.4g} to {float(sigmas[-1]):.4g}"


def check_latent_shape(inversion: Inversion, shape, node_name: str) -> None:
    """A sampled latent row [C, H, W] is the size of the inverted image."""
    if tuple(shape) == inversion.latent_shape:
        return
    c, h, w = inversion.latent_shape
    factor_h, factor_w = inversion.image_size[1] // h, inversion.image_size[0] // w
    got_w, got_h = shape[-1] * factor_w, shape[-2] * factor_h
    raise AIDInputError(node_name, "inversion", f"the sampled latent is {got_w}x{got_h} px ({shape[0]} channels) "
                        f"but the inverted image is {inversion.image_size[0]}x{inversion.image_size[1]} px "
                        f"({c} channels).", f"set the latent's width and height to {inversion.image_size[0]} and "
                        f"{inversion.image_size[1]} (AID Latent), the inverted image's size.")


class HoldRun:
    """SAMPLER_SAMPLE wrapper of an edit run: checks it fits the recording, starts every row from the inverted noise."""

    def __init__(self, inversion: Inversion, node_name: str):
        self.inversion = inversion
        self.node_name = node_name

    def __call__(self, executor, guider, sigmas, extra_args, callback, noise, latent_image, denoise_mask=None,
                 *args, **kwargs):
        self.check_sampler(executor.class_obj)
        check_sigmas(self.inversion, sigmas, self.node_name, "the sampler's steps")
        check_latent_shape(self.inversion, noise.shape[1:], self.node_name)
        check_fingerprint(self.inversion, guider.model_patcher, self.node_name)
        if denoise_mask is not None:
            raise AIDInputError(self.node_name, "inversion", "the latent has a noise mask; a held edit regenerates "
                                "the whole image (frame 0 is the input image exactly).",
                                "remove Set Latent Noise Mask (or the mask) from the edit's latent.")
        noise = self.start_noise(guider, executor.class_obj, sigmas, noise, latent_image)
        return executor(guider, sigmas, extra_args, callback, noise, latent_image, denoise_mask, *args, **kwargs)

    def check_sampler(self, sampler) -> None:
        """Only Euler-step samplers can be held on the recording."""
        if held_sampler_name(sampler) is None:
            raise AIDInputError(self.node_name, "inversion", f"the sampler is {sampler_label(sampler)}; a held "
                                "edit needs one whose every step is a single Euler step at the recorded sigmas.",
                                "choose sampler euler or ddim (KSampler's sampler_name, or KSamplerSelect).")

    def start_noise(self, guider, sampler, sigmas, noise, latent_image) -> torch.Tensor:
        """The noise the sampler's noise_scaling turns into the inverted latent, for every row."""
        start = self.inversion.latents[0].to(noise.device, noise.dtype).expand_as(noise)
        return noise_starting_at(start, guider, sampler, sigmas, noise, latent_image)


def noise_starting_at(start: torch.Tensor, guider, sampler, sigmas, noise, latent_image) -> torch.Tensor:
    """The noise (shaped like `noise`) that the sampler's noise_scaling turns into the latents `start` at sigmas[0]."""
    model_sampling = guider.inner_model.model_sampling
    if hasattr(sampler, "max_denoise"):
        max_denoise = sampler.max_denoise(guider, sigmas)
    else:
        max_denoise = float(sigmas[0]) >= float(model_sampling.sigma_max)
    offset = model_sampling.noise_scaling(sigmas[0], torch.zeros_like(noise), latent_image, max_denoise)
    scale = model_sampling.noise_scaling(sigmas[0], torch.ones_like(noise), torch.zeros_like(noise), max_denoise)
    return (start - offset) / scale


class EndpointHold:
    """PREDICT_NOISE wrapper holding `rows` (endpoint A) on the recorded trajectory at every step.

    The rows' model input is the recorded latent (their keys and values are the real image's), and
    their denoised prediction the one that lands the sampler's Euler step on the next recorded latent.
    """

    def __init__(self, inversion: Inversion, rows=(0,)):
        self.inversion = inversion
        self.rows = list(rows)
        self._latents = {}

    def latents_on(self, device, dtype) -> torch.Tensor:
        """The recorded latents on the sampling device, moved once per device."""
        key = (str(device), dtype)
        if key not in self._latents:
            self._latents = {key: self.inversion.latents.to(device, dtype)}
        return self._latents[key]

    def __call__(self, executor, x, timestep, model_options, seed, *args, **kwargs):
        step = self.inversion.step_at(float(timestep.reshape(-1)[0]))
        latents = self.latents_on(x.device, x.dtype)
        x_model = x.clone()
        x_model[self.rows] = latents[step]
        denoised = executor(x_model, timestep, model_options, seed, *args, **kwargs).clone()
        sigma, sigma_next = self.inversion.sigmas[step], self.inversion.sigmas[step + 1]
        if sigma_next != sigma:
            denoised[self.rows] = landing_denoised(x[self.rows], float(sigma), float(sigma_next), latents[step + 1])
        return denoised


def install_inversion_hold(model, inversion: Inversion, node_name: str, hold_endpoint: bool = True) -> None:
    """Add the hold of endpoint A (row 0 of every batch) on `inversion` to a ModelPatcher clone.

    Replaces a hold an earlier node added; AID's sequence wrappers are left as they are. With
    `hold_endpoint` False the runs only start from the inverted noise (plain re-generation, which drifts).
    """
    from comfy.patcher_extension import WrappersMP

    run_kind, hold_kind = WrappersMP.SAMPLER_SAMPLE, WrappersMP.PREDICT_NOISE
    model.remove_wrappers_with_key(run_kind, RUN_WRAPPER_KEY)
    model.remove_wrappers_with_key(hold_kind, HOLD_WRAPPER_KEY)
    model.add_wrapper_with_key(run_kind, RUN_WRAPPER_KEY, HoldRun(inversion, node_name))
    if hold_endpoint:
        model.add_wrapper_with_key(hold_kind, HOLD_WRAPPER_KEY, EndpointHold(inversion))


def held_model(model, inversion: Inversion, node_name: str, hold_endpoint: bool = True):
    """A clone of `model` whose sampling runs hold endpoint A on `inversion` (the input model is not changed)."""
    check_fingerprint(inversion, model, node_name)
    clone = model.clone()
    install_inversion_hold(clone, inversion, node_name, hold_endpoint)
    return clone
