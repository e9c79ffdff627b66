"""Spatial-temporal attention control on the real host (tiny random SD1.5, 64 px, 2 steps).

Exactness follows from the convex form: weight 0 everywhere is the plain image of the full prompt, one
region over the whole image at weight 1 the plain image of its local prompt. Latents are compared with
aid_harness.compare.close (batching other prompts next to these changes only float rounding).
"""
import copy

import pytest
import torch

from aid_harness.compare import close
from aid_pack.errors import AIDInputError
from aid_pack.nodes.region_sampler import ApplySpatialTemporalAttention, SpatialTemporalSampler
from aid_pack.nodes.region_weights import SpatialTemporalWeights
from aid_pack.nodes.regions import SpatialTemporalRegion

SIZE, STEPS, CFG, SEED = 64, 2, 5.0, 11


@pytest.fixture(scope="module")
def texts(sd15_tiny, encode):
    clip = sd15_tiny[1]
    return {name: encode(clip, text) for name, text in (
        ("full", "a photo of a cat to the left of a dog"), ("cat", "a photo of a cat"), ("dog", "a photo of a dog"),
        ("neg", "blurry, low quality"))}


def weights(value):
    return SpatialTemporalWeights().build("constant", value, 0.0, 0.0, "")["result"][0]


def region(description, conditioning, box, regions=None, **extra):
    x, y, w, h = box
    return SpatialTemporalRegion().add(description, "fractions", x, y, w, h, local_prompt=conditioning,
                                       regions=regions, **extra)["result"][0]


@pytest.fixture(scope="module")
def ksample(comfy, texts):
    def run(model, positive, seed=SEED, sampler="euler", negative=None):
        latent = {"samples": torch.zeros(1, 4, SIZE // 8, SIZE // 8)}
        return comfy["nodes"].common_ksampler(model, seed, STEPS, CFG, sampler, "normal", positive,
                                              negative or texts["neg"], latent)[0]["samples"]
    return run


@pytest.fixture(scope="module")
def plain_full(sd15_tiny, texts, ksample):
    return ksample(sd15_tiny[0], texts["full"])


@pytest.fixture(scope="module")
def two_regions(texts):
    cats = region("cat", texts["cat"], (0.0, 0.1, 0.5, 0.8))
    return region("dog", texts["dog"], (0.5, 0.1, 0.5, 0.8), regions=cats)


def test_weight_zero_everywhere_is_the_plain_image_of_the_full_prompt(sd15_tiny, texts, ksample, plain_full,
                                                                      two_regions):
    patched = ApplySpatialTemporalAttention().apply(sd15_tiny[0], two_regions, weights(0.0))[0]
    assert close(ksample(patched, texts["full"]), plain_full)


def test_one_full_region_at_weight_one_is_the_plain_image_of_its_local_prompt(sd15_tiny, texts, ksample, plain_full):
    everywhere = region("dog", texts["dog"], (0.0, 0.0, 1.0, 1.0))
    patched = ApplySpatialTemporalAttention().apply(sd15_tiny[0], everywhere, weights(1.0))[0]
    image = ksample(patched, texts["full"])
    assert close(image, ksample(sd15_tiny[0], texts["dog"]))
    assert not close(image, plain_full, rel=1e-2)


def test_regions_change_the_image_and_the_input_model_is_unchanged(sd15_tiny, texts, ksample, plain_full,
                                                                   two_regions):
    model = sd15_tiny[0]
    before = copy.deepcopy(model.model_options)
    patched = ApplySpatialTemporalAttention().apply(model, two_regions)[0]
    assert patched is not model and model.model_options == before
    assert not close(ksample(patched, texts["full"]), plain_full, rel=1e-2)


def test_the_one_box_sampler_with_fixed_weights_is_apply_plus_ksampler(sd15_tiny, texts, ksample, two_regions):
    ramp = SpatialTemporalWeights().build("linear ramp", 0.5, 0.9, 0.1, "")["result"][0]
    latent = {"samples": torch.zeros(1, 4, SIZE // 8, SIZE // 8)}
    out, used, report = SpatialTemporalSampler().sample(
        sd15_tiny[0], texts["full"], texts["neg"], two_regions, latent, SEED, STEPS, CFG, "euler", "normal",
        "fixed weights", 3, 0.005, 4, weights=ramp)["result"]
    patched = ApplySpatialTemporalAttention().apply(sd15_tiny[0], two_regions, ramp)[0]
    assert used is ramp and report == ""
    assert close(out["samples"], ksample(patched, texts["full"]))


def test_dual_cfg_with_the_negative_as_middle_is_plain_cfg(sd15_tiny, texts, two_regions):
    """The positive rows are found by what they are: DualCFGGuider passes [negative, middle, positive]."""
    import comfy.sample
    import comfy.samplers
    from comfy_extras.nodes_custom_sampler import Guider_DualCFG

    patched = ApplySpatialTemporalAttention().apply(sd15_tiny[0], two_regions)[0]
    latent = torch.zeros(1, 4, SIZE // 8, SIZE // 8)
    noise = comfy.sample.prepare_noise(latent, SEED)
    sigmas = comfy.samplers.calculate_sigmas(patched.get_model_object("model_sampling"), "normal", STEPS)
    sampler = comfy.samplers.sampler_object("euler")
    dual = Guider_DualCFG(patched)
    dual.set_conds(texts["full"], texts["neg"], texts["neg"])
    dual.set_cfg(CFG, 3.0)
    plain = comfy.samplers.CFGGuider(patched)
    plain.set_conds(texts["full"], texts["neg"])
    plain.set_cfg(CFG)
    assert close(dual.sample(noise, latent, sampler, sigmas, disable_pbar=True, seed=SEED),
                 plain.sample(noise, latent, sampler, sigmas, disable_pbar=True, seed=SEED))


def test_bad_inputs_name_the_node_and_the_input(sd15_tiny, texts, encode):
    apply = ApplySpatialTemporalAttention()
    no_prompt = SpatialTemporalRegion().add("cat", "fractions", 0, 0, 0.5, 1)["result"][0]
    with pytest.raises(AIDInputError, match="Apply Spatial-Temporal Attention: input 'regions'.*no local prompt"):
        apply.apply(sd15_tiny[0], no_prompt)
    with pytest.raises(AIDInputError, match="Spatial-Temporal Region: input 'x'"):
        SpatialTemporalRegion().add("cat", "fractions", 1.5, 0, 0.5, 1, local_prompt=texts["cat"])
    with pytest.raises(AIDInputError, match="input 'width'"):
        SpatialTemporalRegion().add("cat", "pixels", 0, 0, 0, 64, local_prompt=texts["cat"])
    with pytest.raises(AIDInputError, match="input 'description'"):
        SpatialTemporalRegion().add("  ", "fractions", 0, 0, 0.5, 1, local_prompt=texts["cat"])
    with pytest.raises(AIDInputError, match="input 'description'.*characters"):  # the fuzz test's 1 MB string
        SpatialTemporalRegion().add("a" * 1_000_000, "fractions", 0, 0, 0.5, 1, local_prompt=texts["cat"])
    with pytest.raises(AIDInputError, match="input 'local_prompt'.*one local prompt"):
        SpatialTemporalRegion().add("cat", "fractions", 0, 0, 0.5, 1, local_prompt=texts["cat"] + texts["dog"])
    with pytest.raises(AIDInputError, match="input 'mask'.*black"):
        SpatialTemporalRegion().add("cat", "fractions", 0, 0, 0.5, 1, mask=torch.zeros(1, 64, 64))
    sdxl_wide = [[torch.zeros(1, 77, 2048), {}]]
    wrong = region("cat", sdxl_wide, (0, 0, 0.5, 1))
    with pytest.raises(AIDInputError, match="encoded for a SDXL model"):
        apply.apply(sd15_tiny[0], wrong)
    with pytest.raises(AIDInputError, match="Spatial-Temporal Weights: input 'knots'"):
        SpatialTemporalWeights().build("knots", 0.5, 0, 0, "0:0.5, 0.2")


def test_pixel_boxes_and_masks_are_fractions_of_the_canvas(texts):
    from_pixels = SpatialTemporalRegion().add("cat", "pixels", 128, 0, 256, 512, local_prompt=texts["cat"],
                                              canvas_width=512, canvas_height=512)
    assert from_pixels["result"][0].regions[0].box == (0.25, 0.0, 0.5, 1.0)
    assert from_pixels["ui"]["images"], "the node shows the layout"
    mask = torch.zeros(1, 32, 32)
    mask[:, :, 16:] = 1
    from_mask = SpatialTemporalRegion().add("dog", "fractions", 0, 0, 0.1, 0.1, local_prompt=texts["dog"], mask=mask,
                                            regions=from_pixels["result"][0])["result"][0]
    assert from_mask.names == ("cat", "dog")
    assert from_mask.regions[1].latent_mask(2, 4).tolist() == [[0, 0, 1, 1], [0, 0, 1, 1]]
    assert from_mask.regions[1].pixel_box(64, 64) == (32, 0, 64, 64)


def test_sdxl_every_transformer_block_is_patched_and_weight_zero_is_plain():
    import comfy.sample

    from aid_harness.models import sdxl_conditioning, tiny_sdxl_model
    from aid_pack.attention.install import transformer_block_keys

    model = tiny_sdxl_model()
    full, negative = sdxl_conditioning(1), sdxl_conditioning(3)
    regions = region("cat", [[sdxl_conditioning(2)[0][0], {}]], (0.0, 0.0, 0.5, 1.0))
    patched = ApplySpatialTemporalAttention().apply(model, regions, weights(0.0))[0]
    keys = transformer_block_keys(model.model.diffusion_model)
    assert set(patched.model_options["transformer_options"]["patches_replace"]["attn2"]) == set(keys)
    latent = torch.zeros(1, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, SEED)

    def sample(m):
        return comfy.sample.sample(m, noise, STEPS, 4.0, "euler", "normal", full, negative, latent)

    plain = sample(model)
    assert close(sample(patched), plain)
    strong = ApplySpatialTemporalAttention().apply(model, regions, weights(1.0))[0]
    assert not close(sample(strong), plain, rel=1e-2)


# ---------------------------------------------------------------------------------------------------------------
# the official mix (the paper's code) on the real host
# ---------------------------------------------------------------------------------------------------------------

def apply_official(model, regions, weights_value=None):
    chosen = weights(weights_value) if weights_value is not None else None
    return ApplySpatialTemporalAttention().apply(model, regions, chosen, mix="official")[0]


class ModelCalls:
    """A UNet function wrapper that counts the model calls and the chunks each one holds."""

    def __init__(self):
        self.chunks = []

    def __call__(self, apply_model, args):
        self.chunks.append(len(args["cond_or_uncond"]))
        return apply_model(args["input"], args["timestep"], **args["c"])


def test_official_mix_at_weight_zero_is_the_plain_image_of_the_full_prompt(sd15_tiny, texts, ksample, plain_full,
                                                                           two_regions):
    assert close(ksample(apply_official(sd15_tiny[0], two_regions, 0.0), texts["full"]), plain_full)


def test_official_mix_changes_the_image_with_its_weight_and_starts_at_five_over_n(sd15_tiny, texts, ksample,
                                                                                  plain_full, two_regions):
    images = {w: ksample(apply_official(sd15_tiny[0], two_regions, w), texts["full"]) for w in (0.5, 1.0, 2.5)}
    for w, image in images.items():
        assert not close(image, plain_full, rel=1e-2), f"weight {w} changes the image"
    assert not close(images[0.5], images[1.0], rel=1e-2) and not close(images[1.0], images[2.5], rel=1e-2)
    default = ksample(apply_official(sd15_tiny[0], two_regions), texts["full"])
    assert close(default, images[2.5]), "no weights connected: the paper code's 5 / N, 2.5 for two regions"


def test_official_mix_at_cfg_1_is_refused_before_the_first_step(comfy, sd15_tiny, texts, two_regions):
    patched = apply_official(sd15_tiny[0], two_regions, 1.0)
    calls = ModelCalls()
    patched.set_model_unet_function_wrapper(calls)
    latent = {"samples": torch.zeros(1, 4, SIZE // 8, SIZE // 8)}
    with pytest.raises(AIDInputError, match="Apply Spatial-Temporal Attention: input 'mix': at cfg 1"):
        comfy["nodes"].common_ksampler(patched, SEED, STEPS, 1.0, "euler", "normal", texts["full"], texts["neg"],
                                       latent)
    assert calls.chunks == [], "refused before any model call"


def test_official_mix_batches_the_negative_with_four_joined_local_prompts(sd15_tiny, texts, ksample, plain_full):
    """Four local prompts make the positive context 5 x 77 tokens, which core would not batch with the negative's
    77: the run repeats the negative context, so each step is one call holding both (and weight 0 stays plain)."""
    quarters = None
    for index, name in enumerate(("cat", "dog", "cat", "dog")):
        quarters = region(name, texts[name], (index * 0.25, 0.0, 0.25, 1.0), regions=quarters)
    patched = apply_official(sd15_tiny[0], quarters, 0.0)
    calls = ModelCalls()
    patched.set_model_unet_function_wrapper(calls)
    assert close(ksample(patched, texts["full"]), plain_full)
    assert calls.chunks == [2] * STEPS
    pushed = ksample(apply_official(sd15_tiny[0], quarters, 1.0), texts["full"])
    assert not close(pushed, plain_full, rel=1e-2)


def test_official_mix_whose_negative_runs_in_another_call_names_the_fix(sd15_tiny, texts, ksample, two_regions):
    """A negative context of 76 tokens cannot be batched with the joined 231 (core runs it apart): no g_u."""
    context, options = texts["neg"][0]
    odd_negative = [[context[:, :76].clone(), dict(options)]]
    with pytest.raises(AIDInputError, match="input 'mix': the official mix needs the negative prompt's rows"):
        ksample(apply_official(sd15_tiny[0], two_regions, 1.0), texts["full"], negative=odd_negative)
    convex = ApplySpatialTemporalAttention().apply(sd15_tiny[0], two_regions, weights(1.0))[0]
    assert torch.isfinite(ksample(convex, texts["full"], negative=odd_negative)).all(), "the convex mix needs no g_u"


def test_convex_mix_refuses_weights_above_one(sd15_tiny, two_regions):
    with pytest.raises(AIDInputError, match="input 'weights': a weight reaches 2.5.*mix 'official'"):
        ApplySpatialTemporalAttention().apply(sd15_tiny[0], two_regions, weights(2.5))


# ---------------------------------------------------------------------------------------------------------------
# partial runs: the weights follow the model's whole schedule
# ---------------------------------------------------------------------------------------------------------------

PARTIAL_STEPS, SPLIT = 6, 3


class RecordedWeights:
    """Weights that record what every model call of a run got, by sigma (wrapping real RegionWeights)."""

    def __init__(self, weights):
        self.weights = weights
        self.seen = {}

    def lookup(self, names, to_percent, sigmas=None):
        inner = self.weights.lookup(names, to_percent, sigmas)

        def record(sigma):
            value = inner(sigma)
            self.seen.setdefault(sigma, value.clone())
            return value

        return record


def partial_weights(kind, model, names):
    from aid_pack.samplers.region_optimiser import step_percents
    from aid_pack.samplers.region_weights import RegionWeights

    if kind == "curve":
        return SpatialTemporalWeights().build("knots", 0.5, 0, 0, "0:0, 0.4:1, 1:0.1")["result"][0]
    import comfy.samplers

    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", PARTIAL_STEPS)
    table = torch.rand(PARTIAL_STEPS, len(names), generator=torch.Generator().manual_seed(3))
    return RegionWeights.from_table(table, names, step_percents(model, sigmas))


@pytest.mark.parametrize("kind", ["curve", "table"])
def test_two_ksampler_advanced_stages_get_the_weights_of_one_full_run(comfy, sd15_tiny, texts, two_regions, kind):
    """Stages 0-3 and 3-6 of 6 (KSamplerAdvanced) give the image of one 0-6 run: each sigma gets the same weights."""
    from aid_pack.samplers.region_run import region_model

    ksampler = comfy["nodes"].common_ksampler
    model = sd15_tiny[0]
    chosen = partial_weights(kind, model, two_regions.names)
    latent = {"samples": torch.zeros(1, 4, SIZE // 8, SIZE // 8)}
    args = (SEED, PARTIAL_STEPS, CFG, "euler", "normal", texts["full"], texts["neg"])

    whole = RecordedWeights(chosen)
    single = ksampler(region_model(model, two_regions, whole, "test"), *args, latent)[0]
    split = RecordedWeights(chosen)
    staged = region_model(model, two_regions, split, "test")
    first = ksampler(staged, *args, latent, start_step=0, last_step=SPLIT, force_full_denoise=False)[0]
    second = ksampler(staged, *args, first, disable_noise=True, start_step=SPLIT, last_step=PARTIAL_STEPS,
                      force_full_denoise=True)[0]
    assert sorted(split.seen) == sorted(whole.seen)
    assert all(torch.equal(split.seen[sigma], whole.seen[sigma]) for sigma in whole.seen)
    assert len({tuple(value.flatten().tolist()) for value in whole.seen.values()}) > 2, "the weights do vary"
    assert close(second["samples"], single["samples"])
    patched = ApplySpatialTemporalAttention().apply(model, two_regions, chosen)[0]
    node_first = ksampler(patched, *args, latent, start_step=0, last_step=SPLIT, force_full_denoise=False)[0]
    node_second = ksampler(patched, *args, node_first, disable_noise=True, start_step=SPLIT,
                           last_step=PARTIAL_STEPS, force_full_denoise=True)[0]
    assert close(node_second["samples"], ksampler(patched, *args, latent)[0]["samples"])
