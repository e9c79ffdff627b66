"""AID Smooth Sampler: a sequence whose perceptual steps are even, by automatic Beta or dynamic selection."""
from __future__ import annotations

from ..attention.joint_override import DEFAULT_BLOCKS
from ..attention.layout import FrameLayout
from ..errors import AIDInputError, plural
from ..scoring.metrics import METRICS, SequenceDistances, lpips_unavailable_reason, make_frame_distance
from ..samplers.sequence.noise import sequence_noise
from ..samplers.sequence.schedule import InterpolationSchedule, linear_coefficients
from ..samplers.sequence.sampler import SequenceRequest, empty_sequence_latent
from ..samplers.smooth.selection import METHODS, auto_beta, default_bounds, dynamic_selection, planned_rounds
from ..samplers.smooth.sampling import DiffusionFrames
from .widgets import interpolation_options, sequence_sampler_inputs
from .conditioning import build_sequence_conditioning
from .ipadapter import check_image_endpoints
from .report import sequence_plot
from .progress import sampler_progress
from .shares import sequence_share
from .ui import save_preview
from .validation import (check_choice, check_conditioning_for_model, check_frames_per_batch, check_image_size,
                         check_prompt_lengths)

NODE_NAME = "AID Smooth Sampler"
PROBE = InterpolationSchedule((0.0, 0.5, 1.0), "custom")  # the first round of both searches
# Inputs that mean here what they mean on AID Sampler, taken from its definition.
PROMPT_INPUTS = ("positive_a", "positive_b", "negative")
SAMPLING_INPUTS = ("width", "height", "seed", "steps", "cfg", "sampler_name", "scheduler", "mode", "layers",
                   "start_percent", "end_percent", "max_frames_per_batch")
OPTIONAL_INPUTS = ("guidance", "seed_b", "blend", "fusion", "image_endpoints", "share", "dit_blocks")


class AIDSmoothSampler:
    """Explore coefficients with batched AID sampling and keep the sequence with the most even steps."""

    DESCRIPTION = ("Generates an F-frame AID/PAID sequence whose steps look even, choosing the coefficients itself. "
                   "'dynamic selection' explores frames where the gaps are widest and keeps the F frames with the "
                   "most even distances (good for any curve; the schedule is a custom list). 'auto beta' searches "
                   "the Beta(alpha, beta) schedule with the smoothest trial sequence (a schedule you can reuse with "
                   "more frames or other seeds). Each round's new frames are sampled in one batch with both "
                   "endpoints. Outputs the frames, the schedule used (feed it to AID Sampler to get the same "
                   "frames) and their distances. Split across GPUs (share input), every participant runs the "
                   "whole search and outputs only its share of the kept frames.")
    CATEGORY = "AID"
    FUNCTION = "sample"
    RETURN_TYPES = ("LATENT", "IMAGE", "AID_SCHEDULE", "AID_DISTANCES")
    RETURN_NAMES = ("latent", "images", "schedule", "distances")
    OUTPUT_TOOLTIPS = (
        "One latent per kept frame, frame 0 = A, last = B (as AID Sampler gives them for the schedule); with a "
        "share, this participant's frames only.",
        "The kept frames, decoded with the VAE (the images the distances were measured on); with a share, this "
        "participant's frames only.",
        "The coefficients of the kept frames: beta(alpha, beta) for auto beta, a custom list for dynamic selection.",
        "Distances between neighbouring kept frames with their metric and coefficients, for other AID nodes.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        shared = sequence_sampler_inputs()
        required, optional = shared["required"], shared["optional"]
        return {
            "required": {
                "model": required["model"],
                "vae": ("VAE", {"tooltip": "Decodes the explored frames so their distances can be measured."}),
                **{name: required[name] for name in PROMPT_INPUTS},
                "frames": ("INT", {"default": 7, "min": 3, "max": 256,
                                   "tooltip": "Frames F of the result, both endpoints included."}),
                "method": (list(METHODS), {"default": METHODS[0],
                                           "tooltip": "dynamic selection: explore frames in the widest gaps, keep "
                                                      "the F with the most even steps (any curve). auto beta: search "
                                                      "Beta(alpha, beta) for the smoothest F-frame sequence (a "
                                                      "reusable schedule; fits when the change follows an S-curve "
                                                      "or leans to one end)."}),
                "exploration_frames": ("INT", {"default": 24, "min": 3, "max": 256,
                                               "tooltip": "dynamic selection: frames explored in all, endpoints "
                                                          "included, before F are kept (at least F; more gives "
                                                          "more even steps)."}),
                "max_trials": ("INT", {"default": 12, "min": 1, "max": 200,
                                       "tooltip": "auto beta: the most (alpha, beta) trial sequences to make."}),
                "target_smoothness": ("FLOAT", {"default": 0.9, "min": 0.0, "max": 1.0, "step": 0.01,
                                                "tooltip": "auto beta: stop as soon as a trial is this smooth "
                                                           "(1 - Gini of its distances)."}),
                "frames_per_round": ("INT", {"default": 4, "min": 1, "max": 256,
                                             "tooltip": "New frames sampled together in one batch with the two "
                                                        "endpoints per round (auto beta: whole trials that fit). "
                                                        "Larger is cheaper per frame; smaller adapts more often."}),
                "metric": (list(METRICS), {"default": "auto",
                                           "tooltip": "Distance between frames. auto: CLIP vision if connected, "
                                                      "else LPIPS if installed with its weights, else pixel."}),
                **{name: required[name] for name in SAMPLING_INPUTS},
            },
            "optional": {
                "clip_vision": ("CLIP_VISION", {"tooltip": "A CLIP vision model for the clip-vision metric."}),
                "max_alpha_beta": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 100.0, "step": 0.5,
                                             "tooltip": "auto beta: alpha and beta are searched in 1 .. this. 0: "
                                                        "the number of interpolated steps (at least 3), as the "
                                                        "reference does."}),
                **{name: optional[name] for name in OPTIONAL_INPUTS},
            },
        }

    def sample(self, model, vae, positive_a, positive_b, negative, frames, method, exploration_frames, max_trials,
               target_smoothness, frames_per_round, metric, width, height, seed, steps, cfg, sampler_name,
               scheduler, mode, layers, start_percent, end_percent, max_frames_per_batch, clip_vision=None,
               guidance=None, seed_b=-1, blend="lerp", max_alpha_beta=0.0, fusion="concat", image_endpoints=None,
               share=None, dit_blocks=DEFAULT_BLOCKS):
        import comfy.model_management
        import comfy.samplers

        check_choice(NODE_NAME, "method", method, METHODS)
        check_choice(NODE_NAME, "sampler_name", sampler_name, comfy.samplers.KSampler.SAMPLERS)
        check_choice(NODE_NAME, "scheduler", scheduler, comfy.samplers.KSampler.SCHEDULERS)
        options = interpolation_options(NODE_NAME, mode, layers, start_percent, end_percent, fusion, dit_blocks,
                                        model)
        prompts = {"positive_a": positive_a, "positive_b": positive_b, "negative": negative}
        if guidance is not None:
            prompts["guidance"] = guidance.conditioning
        for name, conditioning in prompts.items():
            check_conditioning_for_model(NODE_NAME, name, conditioning, model)
        check_image_endpoints(NODE_NAME, image_endpoints, model)
        check_prompt_lengths(NODE_NAME, model, positive_a, positive_b, guidance)
        probe_prompts = build_sequence_conditioning(NODE_NAME, positive_a, positive_b, PROBE, blend, guidance)
        check_image_size(NODE_NAME, width, height)
        check_frames_per_batch(NODE_NAME, max_frames_per_batch)
        if method == "dynamic selection" and exploration_frames < frames:
            raise AIDInputError(NODE_NAME, "exploration_frames", f"{exploration_frames} explored frames cannot "
                                f"give {frames} frames.", f"explore at least {frames} (more gives more even steps).")
        distance = frame_distance(metric, clip_vision)
        # A share takes frames by position, so any F-frame layout names the same ones as the result's.
        share = sequence_share(NODE_NAME, share, FrameLayout.between(linear_coefficients(frames)))
        bounds = (1.0, max_alpha_beta) if max_alpha_beta > 0 else default_bounds(steps * (end_percent - start_percent))
        if method == "auto beta" and bounds[1] < 1.0:
            raise AIDInputError(NODE_NAME, "max_alpha_beta", f"{max_alpha_beta} is below 1.",
                                "use 0 (automatic) or a value >= 1.")

        latent = empty_sequence_latent(model, PROBE.frames, width, height)
        seed_b = None if seed_b < 0 else seed_b
        guidance_conditioning = guidance.conditioning if guidance is not None else None
        probe = SequenceRequest(
            positive=probe_prompts, negative=negative, coefficients=PROBE.coefficients, latent=latent,
            noise=sequence_noise(latent, PROBE.coefficients, seed, seed_b), seed=seed, seed_b=seed_b, steps=steps,
            cfg=cfg, sampler_name=sampler_name, scheduler=scheduler, options=options,
            max_frames_per_batch=max_frames_per_batch, node_name=NODE_NAME, image_endpoints=image_endpoints)
        bar = RoundsBar(sampler_progress(model))
        source = DiffusionFrames(model, vae, probe, positive_a, positive_b, blend, guidance_conditioning, bar,
                                 planned_rounds(method, frames, exploration_frames, frames_per_round, max_trials))
        stop_if_interrupted = lambda _: comfy.model_management.throw_exception_if_processing_interrupted()  # noqa: E731
        if method == "dynamic selection":
            result = dynamic_selection(source, distance, frames, exploration_frames, frames_per_round,
                                       on_round=stop_if_interrupted)
            schedule = InterpolationSchedule(result.coefficients, "custom")
        else:
            result = auto_beta(source, distance, frames, max_trials, target_smoothness, bounds, frames_per_round,
                               on_round=stop_if_interrupted)
            schedule = InterpolationSchedule(result.coefficients, "beta", result.alpha, result.beta)
        bar.finish()

        measured = SequenceDistances(result.distances, distance.name, result.coefficients)
        summary = (f"{result.describe()}; {plural(sum(source.batch_frames), 'frame')} sampled in "
                   f"{plural(len(source.batch_frames), 'batch', 'batches')}; {distance.name} distance; coefficients "
                   + ", ".join(f"{t:.4f}" for t in result.coefficients))
        kept, images = result.coefficients, result.frames
        if share is not None:  # the search ran whole, as on every participant; only the output is shared
            kept = [result.coefficients[f] for f in share.frames]
            images = result.frames[list(share.frames)]
            summary += f"; this participant outputs {share.describe()}"
        ui = {"images": save_preview([sequence_plot(measured)], "aid_smooth"), "text": [summary]}
        latent = {"samples": source.frame_latents(kept)}
        return {"ui": ui, "result": (latent, images, schedule, measured)}


def frame_distance(metric: str, clip_vision):
    """The FrameDistance for the metric input, refusing what cannot run here."""
    check_choice(NODE_NAME, "metric", metric, METRICS)
    if metric == "clip-vision" and clip_vision is None:
        raise AIDInputError(NODE_NAME, "clip_vision", "the clip-vision metric needs a CLIP vision model.",
                            "connect Load CLIP Vision, or choose 'auto' or 'pixel'.")
    if metric == "lpips" and lpips_unavailable_reason() is not None:
        raise AIDInputError(NODE_NAME, "metric", f"LPIPS cannot run: {lpips_unavailable_reason()}",
                            "choose 'auto' or 'pixel', or make the files above available.")
    return make_frame_distance(metric, clip_vision)


class RoundsBar:
    """The progress callback for DiffusionFrames, and a full bar at the end when a search stops early."""

    def __init__(self, progress):
        self.progress = progress
        self.last = None

    def __call__(self, done, total, x0):
        self.last = (total, x0)
        self.progress(done, total, x0)

    def finish(self):
        if self.last is not None:
            self.progress(self.last[0], self.last[0], self.last[1])


NODE_CLASS_MAPPINGS = {"AIDSmoothSampler": AIDSmoothSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"AIDSmoothSampler": NODE_NAME}
