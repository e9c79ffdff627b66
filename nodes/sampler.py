"""AID Sampler: the one-box path from two prompts to the latents of a whole sequence."""
from __future__ import annotations


from ..attention.layout import FrameLayout
from ..attention.joint_override import DEFAULT_BLOCKS
from ..errors import AIDInputError
from ..samplers.sequence.conditioning import BLENDS
from ..samplers.sequence.noise import sequence_noise
from ..samplers.sequence.sampler import SequenceRequest, empty_sequence_latent, sample_sequence
from .widgets import (dit_blocks_input, fusion_input, image_endpoints_input, interpolation_inputs, interpolation_options,
                      share_input)
from .conditioning import build_sequence_conditioning
from .editing import edit_model, inversion_b_input, inversion_input
from .ipadapter import check_image_endpoints
from .shares import sequence_share
from .validation import (check_choice, check_conditioning_for_model, check_frames_per_batch, check_image_size,
                         check_prompt_lengths)

NODE_NAME = "AID Sampler"
MAX_RESOLUTION = 16384


def sampler_progress(model):
    """A progress(done, total, x0) function that drives ComfyUI's progress bar with latent previews."""
    import comfy.utils
    import latent_preview

    previewer = latent_preview.get_previewer(model.load_device, model.model.latent_format)
    bar = comfy.utils.ProgressBar(1)

    def progress(done, total, x0):
        preview = previewer.decode_latent_to_preview_image("JPEG", x0) if previewer is not None else None
        bar.update_absolute(done, total, preview)

    return progress


class AIDSampler:
    """Sample every frame of an AID/PAID sequence in one batched run (chunked when long)."""

    DESCRIPTION = ("Generates an interpolation sequence between prompt A and prompt B: all frames are denoised "
                   "together in one batch with the endpoints inside it, at about the cost of generating the same "
                   "number of plain images. Frame 0 and the last frame equal plain generations of A and B with the "
                   "same seed. Output: one latent per frame, in order; decode with VAE Decode.")
    CATEGORY = "AID"
    FUNCTION = "sample"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("One latent per frame of the schedule, frame 0 = A, last = B (with a share: this "
                       "participant's frames only, in order).",)

    @classmethod
    def INPUT_TYPES(cls):
        import comfy.samplers

        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The model: SD1.x, SD2.x, SDXL, Flux, SD3.5 or Qwen-Image; it is "
                                               "not changed, the node samples a patched copy."}),
                "positive_a": ("CONDITIONING", {"tooltip": "Prompt of endpoint A (frame 0)."}),
                "positive_b": ("CONDITIONING", {"tooltip": "Prompt of endpoint B (the last frame)."}),
                "negative": ("CONDITIONING", {"tooltip": "Negative prompt, shared by every frame."}),
                "schedule": ("AID_SCHEDULE", {"tooltip": "Coefficients from AID Schedule; sets the frame count."}),
                "width": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8,
                                  "tooltip": "Width of every frame in pixels (a multiple of 8)."}),
                "height": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8,
                                   "tooltip": "Height of every frame in pixels (a multiple of 8)."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff, "control_after_generate": True,
                                 "tooltip": "Seed of the noise every frame starts from (and of endpoint A)."}),
                "steps": ("INT", {"default": 25, "min": 1, "max": 10000,
                                  "tooltip": "Denoising steps, as in KSampler; the whole sequence takes them together."}),
                "cfg": ("FLOAT", {"default": 7.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01,
                                  "tooltip": "Classifier-free guidance scale, as in KSampler: higher follows the "
                                             "prompts more closely, too high burns the image."}),
                "sampler_name": (comfy.samplers.KSampler.SAMPLERS, {
                    "tooltip": "Sampling algorithm, as in KSampler. Ancestral and SDE samplers work too: every "
                               "frame gets the same step noise."}),
                "scheduler": (comfy.samplers.KSampler.SCHEDULERS, {
                    "tooltip": "Noise schedule over the steps, as in KSampler."}),
                **interpolation_inputs(),
                "max_frames_per_batch": ("INT", {"default": 0, "min": 0, "max": 4096,
                                                 "tooltip": "0: all frames in one batch. Otherwise the sequence runs "
                                                            "in chunks of at most this many frames (>= 3), each "
                                                            "holding both endpoints again; lowers peak memory."}),
            },
            "optional": {
                "guidance": ("AID_GUIDANCE", {"tooltip": "PAID guidance: interior frames use this prompt."}),
                "seed_b": ("INT", {"default": -1, "min": -1, "max": 0xffffffffffffffff,
                                   "tooltip": "Seed of endpoint B's noise; frames start from slerp of both. -1: "
                                              "same as seed."}),
                "blend": (list(BLENDS), {"default": "lerp", "tooltip": "How interior prompts mix A and B."}),
                **fusion_input(),
                **image_endpoints_input(),
                **inversion_input(),
                **share_input(),
                **dit_blocks_input(),
                **inversion_b_input(),
            },
        }

    def sample(self, model, positive_a, positive_b, negative, schedule, width, height, seed, steps, cfg,
               sampler_name, scheduler, mode, layers, start_percent, end_percent, max_frames_per_batch,
               guidance=None, seed_b=-1, blend="lerp", fusion="concat", image_endpoints=None, inversion=None,
               share=None, dit_blocks=DEFAULT_BLOCKS, inversion_b=None):
        import comfy.samplers

        check_choice(NODE_NAME, "sampler_name", sampler_name, comfy.samplers.KSampler.SAMPLERS)
        check_choice(NODE_NAME, "scheduler", scheduler, comfy.samplers.KSampler.SCHEDULERS)
        options = interpolation_options(NODE_NAME, mode, layers, start_percent, end_percent, fusion, dit_blocks,
                                        model)
        for name, conditioning in (("positive_a", positive_a), ("positive_b", positive_b), ("negative", negative)):
            check_conditioning_for_model(NODE_NAME, name, conditioning, model)
        if guidance is not None:
            check_conditioning_for_model(NODE_NAME, "guidance", guidance.conditioning, model)
        check_image_endpoints(NODE_NAME, image_endpoints, model)
        check_image_size(NODE_NAME, width, height)
        check_frames_per_batch(NODE_NAME, max_frames_per_batch)
        if inversion is not None or inversion_b is not None:  # a real photo: its size, endpoint A (and B) held
            model = edit_model(NODE_NAME, model, inversion, inversion_b, sampler_name, steps, scheduler)
            width, height = inversion.image_size
            if share is not None:
                raise AIDInputError(NODE_NAME, "share", "a held edit (inversion connected) cannot be split across "
                                    "servers yet.", "disconnect 'share' and run the edit on one server.")
        share = sequence_share(NODE_NAME, share, FrameLayout.between(schedule.coefficients))
        check_prompt_lengths(NODE_NAME, model, positive_a, positive_b, guidance)
        positive = build_sequence_conditioning(NODE_NAME, positive_a, positive_b, schedule, blend, guidance)
        latent = empty_sequence_latent(model, schedule.frames, width, height)
        seed_b = None if seed_b < 0 else seed_b
        request = SequenceRequest(
            positive=positive, negative=negative, coefficients=schedule.coefficients, latent=latent,
            noise=sequence_noise(latent, schedule.coefficients, seed, seed_b), seed=seed, seed_b=seed_b,
            steps=steps, cfg=cfg, sampler_name=sampler_name, scheduler=scheduler, options=options,
            max_frames_per_batch=max_frames_per_batch, node_name=NODE_NAME, image_endpoints=image_endpoints)
        samples = sample_sequence(model, request, progress=sampler_progress(model), share=share)
        return ({"samples": samples},)


NODE_CLASS_MAPPINGS = {"AIDSampler": AIDSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"AIDSampler": NODE_NAME}
