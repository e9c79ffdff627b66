"""Spatial-temporal sampling: Apply Spatial-Temporal Attention (core samplers), the weight optimiser, the one-box
sampler, and AID Regional Interpolation."""
from __future__ import annotations

from ..attention.install import UnsupportedModelError
from ..attention.regions import DEFAULT_MIX, MIXES
from ..errors import AIDInputError
from ..samplers.regions.layout import RegionLayout
from ..samplers.regions.optimiser import (METHODS, RegionRequest, SamplerNotDifferentiableError, optimise_gradient,
                                         optimise_search)
from ..samplers.regions.run import region_model
from ..samplers.regions.weights import RegionWeights, WeightsError
from ..samplers.regions.interpolation import NoInterpolationError, regional_interpolation_model
from ..scoring.region_objective import LOCAL_WEIGHT, RegionObjective, local_text
from .plotting import line_plot
from .region_weights import weights_plot
from .regions import CATEGORY, check_layout_for_model, refuse_diffusion_transformers
from .progress import sampler_progress
from .ui import save_preview
from .validation import check_choice, check_conditioning_for_model

APPLY_NODE = "Apply Spatial-Temporal Attention"
OPTIMISER_NODE = "Spatial-Temporal Weight Optimiser"
SAMPLER_NODE = "Spatial-Temporal Sampler"
REGIONAL_NODE = "AID Regional Interpolation"
FIXED = "fixed weights"


def weights_input() -> dict:
    return {"weights": ("AID_REGION_WEIGHTS", {"tooltip": "Weights over the schedule (Spatial-Temporal Weights or an "
                                                          "optimiser's output); default: 0.5 for every region and "
                                                          "step with the convex mix, 5 / N (N regions) with the "
                                                          "official one."})}


def mix_input() -> dict:
    """The widget choosing the paper's text (convex) or its code (official) mix."""
    return {"mix": (list(MIXES), {"default": DEFAULT_MIX, "tooltip": (
        "convex (the paper's text): inside a region out = (1 - w) g + w l, weights 0..1, overlaps kept convex. "
        "official (the paper's code): out = g + w (l - g_u), g_u the negative prompt's attention, weights "
        "unbounded (its start: 5 / N for N regions); needs cfg > 1 with a negative prompt.")})}


def default_weights(mix: str) -> RegionWeights:
    """The weights used when none are connected: 0.5 (convex), the paper code's 5 / N (official)."""
    return RegionWeights.official_start() if mix == "official" else RegionWeights()


def resolve_weights(node: str, weights, layout: RegionLayout, mix: str = DEFAULT_MIX) -> RegionWeights:
    """The weights to use (the mix's default when none is connected), checked against the region list and mix."""
    check_choice(node, "mix", mix, MIXES)
    weights = weights if weights is not None else default_weights(mix)
    if not isinstance(weights, RegionWeights):
        raise AIDInputError(node, "weights", "this is not a weight schedule.", "connect Spatial-Temporal Weights.")
    try:
        weights.check_names(layout.names)
    except WeightsError as error:
        raise AIDInputError(node, "weights", str(error), error.fix) from None
    largest = weights.largest(layout.names)
    if mix == "convex" and largest > 1.0:
        raise AIDInputError(node, "weights", f"a weight reaches {largest:g}, and the convex mix takes weights from 0 "
                            f"to 1 (1 = the local prompt only).", "use weights from 0 to 1, or mix 'official' "
                            "(whose weights push past the local prompt; the paper's code starts at 5 / N).")
    return weights


def patch_regions(node: str, model, layout, weights, mix: str = DEFAULT_MIX):
    """region_model with an unsupported model reported as the node's input error."""
    try:
        return region_model(model, layout, weights, node, mix)
    except UnsupportedModelError as error:
        raise AIDInputError(node, "model", str(error), "use an SD1.x, SD2.x or SDXL checkpoint.") from None


class ApplySpatialTemporalAttention:
    """MODEL -> MODEL with region-mixed cross-attention for the core samplers."""

    DESCRIPTION = ("Spatial-temporal attention control (Wu et al., ICCV 2023) for the core samplers: returns a patched "
                   "copy of the model (the input model is not changed). In every cross-attention layer the positive "
                   "prompt's rows mix, inside each region, the attention to the full prompt (g) with the attention to "
                   "the region's local prompt (l), by the region's weight at the current point of the schedule. mix "
                   "convex (the paper's text): out = (1 - sum w_i M_i) g + sum w_i M_i l_i; official (the paper's "
                   "code): out = g + sum w_i M_i (l_i - g_u), g_u the negative prompt's attention. Weight 0 everywhere "
                   "gives exactly the plain image of the prompt. The negative prompt is untouched. The weights follow "
                   "the model's whole schedule, so split runs (KSamplerAdvanced, SplitSigmas) get the weights of one "
                   "full run. Works with any sampler and core guider, SD1.x, SD2.x and SDXL, and next to Apply AID "
                   "and IP-Adapter patches.")
    CATEGORY = CATEGORY
    FUNCTION = "apply"
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The model with spatial-temporal attention control.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"model": ("MODEL", {"tooltip": "The checkpoint's model (or one patched by Apply AID); the "
                                                        "node returns a patched copy, the input is not changed."}),
                         "regions": ("AID_REGIONS", {"tooltip": "The objects and their local prompts."})},
            "optional": {**weights_input(), **mix_input()},
        }

    def apply(self, model, regions, weights=None, mix=DEFAULT_MIX):
        check_layout_for_model(APPLY_NODE, regions, model)
        resolved = resolve_weights(APPLY_NODE, weights, regions, mix)
        return (patch_regions(APPLY_NODE, model, regions, resolved, mix),)


def sampling_inputs() -> dict:
    """The inputs shared by the optimiser and the sampler."""
    import comfy.samplers

    return {
        "model": ("MODEL", {"tooltip": "The checkpoint's model; it is patched on a copy, the input is not changed."}),
        "positive": ("CONDITIONING", {"tooltip": "The full prompt (all objects), e.g. CLIP Text Encode or the Auto "
                                                 "Layout's positive output."}),
        "negative": ("CONDITIONING", {"tooltip": "The negative prompt (never region-mixed)."}),
        "regions": ("AID_REGIONS", {"tooltip": "The objects and their local prompts."}),
        "latent_image": ("LATENT", {"tooltip": "The latent to denoise, e.g. Empty Latent Image (one image)."}),
        "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff, "control_after_generate": True,
                         "tooltip": "Noise seed, as in KSampler: the same seed and settings give the same image."}),
        "steps": ("INT", {"default": 25, "min": 1, "max": 10000,
                          "tooltip": "Denoising steps, as in KSampler; the weights are resolved per step."}),
        "cfg": ("FLOAT", {"default": 7.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01,
                          "tooltip": "Classifier-free guidance scale, as in KSampler."}),
        "sampler_name": (comfy.samplers.KSampler.SAMPLERS, {"tooltip": "Sampling algorithm, as in KSampler."}),
        "scheduler": (comfy.samplers.KSampler.SCHEDULERS, {"tooltip": "Noise schedule over the steps, as in "
                                                                       "KSampler."}),
    }


def optimisation_inputs(methods) -> dict:
    return {
        "method": (list(methods), {"default": methods[0],
                                   "tooltip": "gradient: the paper's method, Adam on the weights through sampling and "
                                              "decoding (about 4x a plain sampling per pass, much memory; at lr "
                                              "0.005 three passes move each weight by at most ~0.015). search: "
                                              "gradient-free, `candidates` weight settings per round as one batch "
                                              "with the same noise, the best refined round after round."
                                   + (" fixed weights: no optimisation." if FIXED in methods else "")}),
        "iterations": ("INT", {"default": 3, "min": 1, "max": 100,
                               "tooltip": "gradient: sampling passes (one Adam step each); search: rounds."}),
        "learning_rate": ("FLOAT", {"default": 0.005, "min": 0.0001, "max": 1.0, "step": 0.0001,
                                    "tooltip": "gradient: Adam's learning rate (the paper: 0.005)."}),
        "candidates": ("INT", {"default": 4, "min": 2, "max": 64,
                               "tooltip": "search: weight settings per round (rows of one batch; memory grows "
                                          "with it)."}),
    }


def scorer_inputs(required: bool) -> dict:
    return {
        "vae": ("VAE", {"tooltip": "Decodes the candidates for scoring" + ("" if required else
                                                                             " (needed when optimising)") + "."}),
        "scorer": ("AID_CLIP_SCORER", {"tooltip": "A CLIP model from AID CLIP Scorer Loader (models/clip_scoring)"
                                                  + ("" if required else "; needed when optimising") + "."}),
        "prompt_text": ("STRING", {"multiline": True, "default": "",
                                   "tooltip": "The full prompt as text: CLIP scores the whole image against it "
                                              "(each region's crop is scored against 'a photo of <description>')."}),
    }


def _check_sampling(node, model, positive, negative, regions, latent_image, sampler_name, scheduler):
    import comfy.samplers

    check_choice(node, "sampler_name", sampler_name, comfy.samplers.KSampler.SAMPLERS)
    check_choice(node, "scheduler", scheduler, comfy.samplers.KSampler.SCHEDULERS)
    check_conditioning_for_model(node, "positive", positive, model)
    check_conditioning_for_model(node, "negative", negative, model)
    check_layout_for_model(node, regions, model)
    if not isinstance(latent_image, dict) or "samples" not in latent_image:
        raise AIDInputError(node, "latent_image", "this is not a LATENT.", "connect Empty Latent Image.")


def _request(node, model, positive, negative, regions, weights, latent_image, seed, steps, cfg, sampler_name,
             scheduler, denoise, mix=DEFAULT_MIX):
    import comfy.sample

    samples = comfy.sample.fix_empty_latent_channels(model, latent_image["samples"])
    if samples.shape[0] != 1:
        raise AIDInputError(node, "latent_image", f"the latent holds {samples.shape[0]} images; the weights are "
                            "optimised per image.", "use a batch size of 1 (Empty Latent Image batch_size 1).")
    noise = comfy.sample.prepare_noise(samples, seed, latent_image.get("batch_index"))
    return RegionRequest(positive, negative, regions, resolve_weights(node, weights, regions, mix), samples, noise,
                         seed, steps, cfg, sampler_name, scheduler, denoise, latent_image.get("noise_mask"), node, mix)


def optimise(node, method, model, vae, scorer, prompt_text, request, iterations, learning_rate, candidates):
    """Run one optimiser with the node's progress bar; errors become the node's input errors."""
    if vae is None or scorer is None:
        missing = "vae" if vae is None else "scorer"
        raise AIDInputError(node, missing, f"optimising the weights needs a {missing}.",
                            f"connect it, or use method '{FIXED}'." if node == SAMPLER_NODE else "connect it.")
    if not prompt_text or not prompt_text.strip():
        raise AIDInputError(node, "prompt_text", "the prompt text is empty.",
                            "type the full prompt (the text of the positive conditioning).")
    layout = request.layout
    objective = RegionObjective(scorer, prompt_text, layout.names,
                                lambda height, width: [region.pixel_box(height, width) for region in layout.regions],
                                local_texts=[region.local_text or local_text(region.name) for region in layout.regions])
    progress = sampler_progress(model)
    try:
        if method == "gradient":
            return optimise_gradient(model, vae, objective, request, iterations, learning_rate, progress)
        return optimise_search(model, vae, objective, request, iterations, candidates, progress)
    except SamplerNotDifferentiableError as error:
        raise AIDInputError(node, "sampler_name", str(error), "use a k-diffusion sampler such as euler, heun, "
                            "dpmpp_2m or euler_ancestral, or the search method.") from None


def optimisation_report(result, method, iterations, learning_rate, candidates) -> str:
    """What the node shows: the objective before and after, per round, and the best setting's terms."""
    settings = (f"{iterations} passes, lr {learning_rate:g}" if method == "gradient"
                else f"{iterations} rounds of {candidates} candidates")
    lines = [f"method {method} ({settings}), mix {result.mix}; objective J = (1 - cos image/prompt) + "
             f"{LOCAL_WEIGHT:g} x sum of "
             f"(1 - cos crop/local prompt), lower is better",
             f"objective before: {result.start_objective:.4f}   after: {result.best_objective:.4f}   "
             f"(change {result.best_objective - result.start_objective:+.4f})"]
    best_so_far = float("inf")
    for index, values in enumerate(result.rounds):
        best_so_far = min(best_so_far, min(values))
        label = "final weights" if method == "gradient" and index == len(result.rounds) - 1 else f"round {index + 1}"
        lines.append(f"{label}: " + ", ".join(f"{v:.4f}" for v in values) + f"   best so far {best_so_far:.4f}")
    if result.best_terms:
        parts = [f"image {result.best_terms[0]:.4f}"] + [f"{name} {term:.4f}"
                                                         for name, term in zip(result.names, result.best_terms[1:])]
        lines.append("best setting, 1 - cos: " + ", ".join(parts))
    moved = "the last pass's weights" if method == "gradient" else "the best setting"
    lines.append(f"largest change of a weight from its start ({moved}): {result.largest_move:.4f}")
    lines.append("weights per step:\n" + result.weights.describe())
    return "\n".join(lines)


def optimisation_plot(result):
    rounds = list(range(1, len(result.rounds) + 1))
    best, running = [], float("inf")
    for values in result.rounds:
        running = min(running, min(values))
        best.append(running)
    return line_plot([("round best", rounds, [min(values) for values in result.rounds]),
                      ("best so far", rounds, best)], title=f"objective per round ({result.method})",
                     x_label="round", y_label="J", size=(384, 240))


def optimisation_ui(result, report) -> dict:
    return {"images": save_preview([optimisation_plot(result), weights_plot(result.weights)], "aid_region_optimiser"),
            "text": [report]}


class SpatialTemporalWeightOptimiser:
    """Finds the weights per image that maximise CLIP fidelity of the image and of each region's crop."""

    DESCRIPTION = ("Optimises the weight of every region at every step for one image, for the paper's objective: "
                   "CLIP similarity of the whole image to the prompt plus 5x the similarity of each region's crop to "
                   "'a photo of <object>'. gradient: Adam through sampling and decoding (the paper); search: a "
                   "gradient-free batched search. Keeps the best setting it evaluated (never worse than the start) "
                   "and shows the objective per round. Use its weights with Apply Spatial-Temporal Attention and a "
                   "KSampler with the same seed and settings to get the image again (or use Spatial-Temporal Sampler).")
    CATEGORY = CATEGORY
    FUNCTION = "optimise"
    RETURN_TYPES = ("AID_REGION_WEIGHTS", "STRING")
    RETURN_NAMES = ("weights", "report")
    OUTPUT_TOOLTIPS = ("The optimised weights, one value per region and step.",
                       "The objective before and after, per round.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {**sampling_inputs(), **scorer_inputs(True), **optimisation_inputs(METHODS)},
                "optional": {**weights_input(),
                             "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                                   "tooltip": "Denoise, as in KSampler: below 1 starts from the "
                                                              "latent's image."}),
                             **mix_input()}}

    def optimise(self, model, positive, negative, regions, latent_image, seed, steps, cfg, sampler_name, scheduler,
                 vae, scorer, prompt_text, method, iterations, learning_rate, candidates, weights=None, denoise=1.0,
                 mix=DEFAULT_MIX):
        check_choice(OPTIMISER_NODE, "method", method, METHODS)
        _check_sampling(OPTIMISER_NODE, model, positive, negative, regions, latent_image, sampler_name, scheduler)
        request = _request(OPTIMISER_NODE, model, positive, negative, regions, weights, latent_image, seed, steps, cfg,
                           sampler_name, scheduler, denoise, mix)
        result = optimise(OPTIMISER_NODE, method, model, vae, scorer, prompt_text, request, iterations, learning_rate,
                          candidates)
        report = optimisation_report(result, method, iterations, learning_rate, candidates)
        return {"ui": optimisation_ui(result, report), "result": (result.weights, report)}


class SpatialTemporalSampler:
    """One box: optimise the weights (or not) and sample the image with them."""

    DESCRIPTION = ("Samples one image with spatial-temporal attention control. With 'fixed weights' it is Apply "
                   "Spatial-Temporal Attention + KSampler in one node; with 'search' or 'gradient' it first "
                   "optimises the weights for this image and seed (see Spatial-Temporal Weight Optimiser) and returns "
                   "the image of the best setting, without sampling it again. Shows progress and stops when "
                   "cancelled.")
    CATEGORY = CATEGORY
    FUNCTION = "sample"
    RETURN_TYPES = ("LATENT", "AID_REGION_WEIGHTS", "STRING")
    RETURN_NAMES = ("latent", "weights", "report")
    OUTPUT_TOOLTIPS = ("The sampled latent; decode with VAE Decode.", "The weights it used (optimised or as given).",
                       "What the optimisation did (empty for fixed weights).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {**sampling_inputs(), **optimisation_inputs((FIXED,) + METHODS)},
                "optional": {**weights_input(), **scorer_inputs(False),
                             "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                                   "tooltip": "Denoise, as in KSampler: below 1 starts from the "
                                                              "latent's image."}),
                             **mix_input()}}

    def sample(self, model, positive, negative, regions, latent_image, seed, steps, cfg, sampler_name, scheduler,
               method, iterations, learning_rate, candidates, weights=None, vae=None, scorer=None, prompt_text="",
               denoise=1.0, mix=DEFAULT_MIX):
        import nodes

        check_choice(SAMPLER_NODE, "method", method, (FIXED,) + METHODS)
        _check_sampling(SAMPLER_NODE, model, positive, negative, regions, latent_image, sampler_name, scheduler)
        if method == FIXED:
            resolved = resolve_weights(SAMPLER_NODE, weights, regions, mix)
            patched = patch_regions(SAMPLER_NODE, model, regions, resolved, mix)
            (latent,) = nodes.common_ksampler(patched, seed, steps, cfg, sampler_name, scheduler, positive, negative,
                                              latent_image, denoise=denoise)
            return {"ui": {"images": save_preview([weights_plot(resolved)], "aid_region_weights")},
                    "result": (latent, resolved, "")}
        request = _request(SAMPLER_NODE, model, positive, negative, regions, weights, latent_image, seed, steps, cfg,
                           sampler_name, scheduler, denoise, mix)
        result = optimise(SAMPLER_NODE, method, model, vae, scorer, prompt_text, request, iterations, learning_rate,
                          candidates)
        latent = dict(latent_image, samples=result.latent)
        report = optimisation_report(result, method, iterations, learning_rate, candidates)
        return {"ui": optimisation_ui(result, report), "result": (latent, result.weights, report)}


class AIDRegionalInterpolation:
    """Restrict an AID sequence's interpolation to regions: they travel from A to B, the rest holds at A."""

    DESCRIPTION = ("Regional interpolation: connect after Apply AID. The union of the regions' masks is a per-pixel "
                   "coefficient map c: where c = 1 the frames interpolate from A to B as AID makes them; where c = 0 "
                   "every frame after A keeps attending to endpoint A's keys and values (in every interpolated layer, "
                   "at every step), so that part of the image holds while the region changes. Grey mask values blend "
                   "the two. The last frame shows B inside the regions. Local prompts of the regions are not needed "
                   "(add Apply Spatial-Temporal Attention for those).")
    CATEGORY = CATEGORY
    FUNCTION = "apply"
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The AID model whose interpolation follows the regions.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "A model patched by Apply AID."}),
            "regions": ("AID_REGIONS", {"tooltip": "Where the image travels from A to B (boxes or masks)."}),
        }}

    def apply(self, model, regions):
        refuse_diffusion_transformers(REGIONAL_NODE, model, "the patches of regional interpolation",
                                      ", or leave this node out: AID then interpolates the whole image")
        check_layout_for_model(REGIONAL_NODE, regions, need_prompts=False)
        try:
            return (regional_interpolation_model(model, regions),)
        except NoInterpolationError:
            raise AIDInputError(REGIONAL_NODE, "model", "the model has no AID interpolation patch.",
                                "connect the output of Apply AID.") from None


NODE_CLASS_MAPPINGS = {
    "AIDApplySpatialTemporalAttention": ApplySpatialTemporalAttention,
    "AIDSpatialTemporalWeightOptimiser": SpatialTemporalWeightOptimiser,
    "AIDSpatialTemporalSampler": SpatialTemporalSampler,
    "AIDRegionalInterpolation": AIDRegionalInterpolation,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "AIDApplySpatialTemporalAttention": APPLY_NODE,
    "AIDSpatialTemporalWeightOptimiser": OPTIMISER_NODE,
    "AIDSpatialTemporalSampler": SAMPLER_NODE,
    "AIDRegionalInterpolation": REGIONAL_NODE,
}
