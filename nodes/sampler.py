"""AID Sampler: the one-box path from two prompts to the latents of a whole sequence."""
from __future__ import annotations


from ..attention.layout import FrameLayout
from ..attention.joint_override import DEFAULT_BLOCKS
from ..errors import AIDInputError
from ..samplers.sequence.noise import sequence_noise
from ..samplers.sequence.sampler import SequenceRequest, empty_sequence_latent, sample_sequence
from .widgets import interpolation_options, sequence_sampler_inputs
from .conditioning import build_sequence_conditioning
from .editing import edit_model
from .ipadapter import check_image_endpoints
from .progress import sampler_progress
from .shares import sequence_share
from .validation import (check_choice, check_conditioning_for_model, check_frames_per_batch, check_image_size,
                         check_prompt_lengths)

NODE_NAME = "AID Sampler"


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
        return sequence_sampler_inputs()

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
