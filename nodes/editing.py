"""Real-image editing: AID Invert Image records a photo's trajectory, AID Inversion Hold replays it (core path).

AID Sampler takes the same AID_INVERSION on its optional `inversion` input. A second photo's inversion on
`inversion_b` (AID Sampler, AID Inversion Hold) makes the sequence a morph with both endpoints held
(samplers/editing/morph.py).
"""
from __future__ import annotations

from ..errors import AIDInputError
from ..samplers.editing.inversion import (HELD_SAMPLERS, InversionSettings, check_fingerprint, check_sigmas, held_model,
                                  model_sigmas, record_inversion)
from ..samplers.editing.morph import B_INPUT, morph_model
from ..samplers.editing.inversion import HOLD_WRAPPER_KEY as HOLD_KEY, RUN_WRAPPER_KEY as HOLD_RUN_KEY
from ..samplers.sequence.run import WRAPPER_KEY as SEQUENCE_RUN_KEY
from .validation import check_choice, check_conditioning_for_model

INVERT_NODE = "AID Invert Image"
HOLD_NODE = "AID Inversion Hold"
MAX_REFINE_STEPS = 20


def check_edit_sampling(node: str, model, inversion, sampler_name: str, steps: int, scheduler: str,
                        denoise: float = 1.0, input_name: str = "inversion") -> None:
    """Before any work: the edit's model, sampler and schedule fit the recorded trajectory (on `input_name`)."""
    if sampler_name not in HELD_SAMPLERS:
        raise AIDInputError(node, "sampler_name", f"'{sampler_name}' cannot hold endpoint A on the inverted image: "
                            "only samplers whose every step is one Euler step at the recorded sigmas can.",
                            f"choose one of: {', '.join(HELD_SAMPLERS)}.")
    check_fingerprint(inversion, model, node, input_name)
    if inversion.settings.denoise <= 0.9999 and denoise > 0.9999:
        raise AIDInputError(node, input_name, f"the inversion covers part of the schedule (denoise "
                            f"{inversion.settings.denoise:g}) and {node} always denoises fully.",
                            "set AID Invert Image's denoise to 1, or edit through Apply AID + AID Inversion Hold and "
                            "a KSampler with the same denoise.")
    check_sigmas(inversion, model_sigmas(model, steps, scheduler, denoise), node, "the steps and scheduler",
                 input_name)


def edit_model(node: str, model, inversion, inversion_b, sampler_name: str, steps: int, scheduler: str):
    """Before any work, check a one-photo edit or (with inversion_b) a two-photo morph; its held model clone."""
    if inversion_b is not None and inversion is None:
        raise AIDInputError(node, B_INPUT, "photo B's inversion is connected without photo A's.",
                            "connect photo A's AID Invert Image to 'inversion' too (a morph holds both endpoints), "
                            "or move this one to 'inversion' for a one-photo edit.")
    check_edit_sampling(node, model, inversion, sampler_name, steps, scheduler)
    if inversion_b is None:
        return held_model(model, inversion, node)
    check_edit_sampling(node, model, inversion_b, sampler_name, steps, scheduler, input_name=B_INPUT)
    return morph_model(model, inversion, inversion_b, node)


def _check_source(image, vae, latent, model):
    """Exactly one of image (with its VAE) or latent, holding one picture that maps onto whole latent pixels."""
    if image is None and latent is None:
        raise AIDInputError(INVERT_NODE, "image", "neither an image nor a latent is connected.",
                            "connect Load Image to 'image' (and the checkpoint's VAE to 'vae'), or a LATENT to "
                            "'latent'.")
    if image is not None and latent is not None:
        raise AIDInputError(INVERT_NODE, "latent", "both an image and a latent are connected.",
                            "connect only one of them.")
    if image is not None:
        if vae is None:
            raise AIDInputError(INVERT_NODE, "vae", "an image needs a VAE to be encoded.",
                                "connect the checkpoint's VAE output.")
        if image.shape[0] != 1:
            raise AIDInputError(INVERT_NODE, "image", f"it is a batch of {image.shape[0]} images; an edit starts "
                                "from one picture.", "pick one image with Image From Batch (or invert each image "
                                "in its own run).")
        ratio = vae.spacial_compression_encode()
        height, width = int(image.shape[1]), int(image.shape[2])
        if height % ratio or width % ratio:
            fit_w, fit_h = width - width % ratio, height - height % ratio
            raise AIDInputError(INVERT_NODE, "image", f"it is {width}x{height} px; this VAE encodes whole blocks of "
                                f"{ratio} px, so it would crop the picture and frame 0 would not be your image.",
                                f"resize or crop it to a multiple of {ratio} first (e.g. {fit_w}x{fit_h} with "
                                "Upscale Image or ImageCrop).")
        return
    samples = latent["samples"]
    if samples.ndim not in (4, 5):  # [1, C, h, w], or [1, C, 1, h, w] for video-latent image models (Qwen-Image)
        raise AIDInputError(INVERT_NODE, "latent", f"it has shape {list(samples.shape)}, not one picture's latent.",
                            "connect VAE Encode's output (of one image).")
    if samples.shape[0] != 1:
        raise AIDInputError(INVERT_NODE, "latent", f"it holds {samples.shape[0]} latents; an edit starts from one "
                            "picture.", "pick one with Latent From Batch.")
    channels = model.get_model_object("latent_format").latent_channels
    if samples.shape[1] != channels:
        raise AIDInputError(INVERT_NODE, "latent", f"it has {samples.shape[1]} channels and the model's latents "
                            f"have {channels}.", "encode the image with the same checkpoint's VAE.")


def _check_plain_model(model):
    import comfy.patcher_extension

    if model.get_wrappers(comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE, SEQUENCE_RUN_KEY):
        raise AIDInputError(INVERT_NODE, "model", "this model is patched by Apply AID for a sequence; the "
                            "inversion runs one image.", "connect the checkpoint's MODEL (before Apply AID); use the "
                            "same model for the edit.")
    held = (model.get_wrappers(comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE, HOLD_RUN_KEY)
            or model.get_wrappers(comfy.patcher_extension.WrappersMP.PREDICT_NOISE, HOLD_KEY))
    if held:
        raise AIDInputError(INVERT_NODE, "model", "this model already carries AID Inversion Hold, which replays "
                            "another image's trajectory in every sampling run; inverting through it cannot record "
                            "this image.", "connect the checkpoint's MODEL (before AID Inversion Hold and Apply AID).")


class AIDInvertImage:
    """IMAGE (or LATENT) + its prompt -> the latent at every sigma of the edit's schedule."""

    DESCRIPTION = ("First step of editing a photo with AID: inverts the image under its own prompt (Euler / DDIM-like "
                   "inversion, optionally refined) on the schedule the edit will use, and records the latent at every "
                   "step. Connect the result to AID Sampler's 'inversion' (or to AID Inversion Hold for a core "
                   "KSampler): frame 0 of the edit sequence is then this image exactly, at any cfg, and the frames "
                   "towards the edit prompt keep its layout.")
    CATEGORY = "AID/editing"
    FUNCTION = "invert"
    RETURN_TYPES = ("AID_INVERSION", "LATENT")
    RETURN_NAMES = ("inversion", "latent")
    OUTPUT_TOOLTIPS = ("The recorded trajectory, for AID Sampler's 'inversion' or AID Inversion Hold.",
                       "The image's latent (what frame 0 of the edit will be).")

    @classmethod
    def INPUT_TYPES(cls):
        import comfy.samplers

        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The checkpoint's model, before Apply AID. The edit must use the same "
                                               "model (and LoRAs)."}),
                "positive": ("CONDITIONING", {"tooltip": "Source prompt: what the photo shows. Use it as endpoint "
                                                         "A (positive_a) of the edit."}),
                "negative": ("CONDITIONING", {"tooltip": "Negative prompt (only used when cfg is not 1)."}),
                "steps": ("INT", {"default": 25, "min": 1, "max": 10000,
                                  "tooltip": "Steps of the edit's schedule; the edit's sampler must use the same."}),
                "cfg": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01,
                                  "tooltip": "Guidance of the inversion. 1 inverts under the source prompt alone "
                                             "(usual for DDIM inversion). Frame 0 is exact at any edit cfg either "
                                             "way."}),
                "scheduler": (comfy.samplers.KSampler.SCHEDULERS, {"default": "normal",
                                                                   "tooltip": "The edit's scheduler."}),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 1.0, "step": 0.01,
                                      "tooltip": "How far to invert. Below 1 the edit starts from a partly noised "
                                                 "image and changes less (core KSampler path with the same denoise)."}),
                "refine_steps": ("INT", {"default": 0, "min": 0, "max": MAX_REFINE_STEPS,
                                         "tooltip": "Fixed-point refinement per step: each costs one more model "
                                                    "call per step and brings the inverted noise closer to one that "
                                                    "regenerates the image; 0 is plain DDIM-like inversion."}),
            },
            "optional": {
                "image": ("IMAGE", {"tooltip": "The photo (one image; width and height multiples of 8)."}),
                "vae": ("VAE", {"tooltip": "The checkpoint's VAE, to encode the image."}),
                "latent": ("LATENT", {"tooltip": "Instead of image + vae: an already encoded latent (one)."}),
            },
        }

    def invert(self, model, positive, negative, steps, cfg, scheduler, denoise, refine_steps, image=None, vae=None,
               latent=None):
        import comfy.samplers
        import latent_preview

        check_choice(INVERT_NODE, "scheduler", scheduler, comfy.samplers.KSampler.SCHEDULERS)
        check_conditioning_for_model(INVERT_NODE, "positive", positive, model)
        check_conditioning_for_model(INVERT_NODE, "negative", negative, model)
        _check_plain_model(model)
        _check_source(image, vae, latent, model)
        if not 0.0 < denoise <= 1.0:
            raise AIDInputError(INVERT_NODE, "denoise", f"{denoise} is outside (0, 1].", "use a value above 0, to 1.")
        if not 0 <= refine_steps <= MAX_REFINE_STEPS:
            raise AIDInputError(INVERT_NODE, "refine_steps", f"{refine_steps} is outside 0..{MAX_REFINE_STEPS}.",
                                f"use 0 to {MAX_REFINE_STEPS}.")
        if image is not None:
            samples = vae.encode(image[:, :, :, :3])
            image_size = (int(image.shape[2]), int(image.shape[1]))
        else:
            samples = latent["samples"]
            image_size = (int(samples.shape[-1]) * 8, int(samples.shape[-2]) * 8)
        settings = InversionSettings(steps=steps, scheduler=scheduler, denoise=float(denoise), cfg=float(cfg),
                                     refine_steps=refine_steps)
        callback = latent_preview.prepare_callback(model, steps)
        inversion = record_inversion(model, positive, negative, samples, settings, image_size, callback)
        return (inversion, {"samples": samples})


class AIDInversionHold:
    """MODEL (from Apply AID) + AID_INVERSION -> MODEL whose sampling runs hold endpoint A on the real image."""

    DESCRIPTION = ("Editing on the core samplers: returns a copy of the model (from Apply AID) whose sampling runs "
                   "start every frame from the inverted noise and hold frame 0 on the recorded trajectory, so it "
                   "comes out as the input image and the other frames attend to the real image. Sample with "
                   "AID Latent (the image's width and height) and AID Conditioning (source prompt as A, edit prompt "
                   "as B) on a KSampler or SamplerCustomAdvanced with sampler euler or ddim and the inversion's steps, "
                   "scheduler and denoise. With a second photo's inversion on inversion_b the last frame is held on "
                   "that photo too: a morph between two photos (prompts: each photo's source prompt as A and B).")
    CATEGORY = "AID/editing"
    FUNCTION = "apply"
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The model with endpoint A held on the inverted image (and endpoint B on photo B's, with "
                       "inversion_b).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "Apply AID's output, patched from the model the image was inverted with."}),
            "inversion": ("AID_INVERSION", {"tooltip": "AID Invert Image's result."}),
        }, "optional": {
            B_INPUT: ("AID_INVERSION", {"tooltip": "Morph two photos: photo B's AID Invert Image (same size, model "
                                                   "and schedule). The last row of every batch is then held on photo "
                                                   "B and the frames between start from slerp of both inverted "
                                                   "noises; needs Apply AID's model."}),
        }}

    def apply(self, model, inversion, inversion_b=None):
        if inversion_b is not None:
            return (morph_model(model, inversion, inversion_b, HOLD_NODE),)
        return (held_model(model, inversion, HOLD_NODE),)


NODE_CLASS_MAPPINGS = {"AIDInvertImage": AIDInvertImage, "AIDInversionHold": AIDInversionHold}
NODE_DISPLAY_NAME_MAPPINGS = {"AIDInvertImage": INVERT_NODE, "AIDInversionHold": HOLD_NODE}
